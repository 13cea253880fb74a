"""Rate-quality hulls: each shot's convex hull, and the equal-slope (Lagrangian) allocation across shots.

Units: rates are kbps, quality is VMAF (0-100), a slope is VMAF per kbps. A title's bitrate is
bits over time, sum(kbps_i * duration_i) / sum(duration_i); its VMAF is the duration-weighted mean
of its shots' VMAF (the per-frame mean at a constant frame rate). Weighting both by duration is
what makes the allocation exact: maximising sum(d_i * vmaf_i) - slope * sum(d_i * kbps_i) splits
into each shot maximising vmaf_i - slope * kbps_i on its own, with the same slope for every shot.

Choices made here, and why:
- A shot's hull keeps only the vertices where the slope strictly decreases: a point collinear with
  its neighbours (or a duplicate) is never the unique best choice at any slope, and dropping it
  makes every hull slope a distinct breakpoint. Points of equal rate and quality are broken
  toward the lower resolution, then the lower CRF, so the result never depends on input order.
- At a slope equal to a hull segment's slope both ends of the segment are optimal; the shot takes
  the lower-rate end. The title hull is therefore exactly one allocation per distinct segment
  slope, plus the all-at-top one.
- Between two adjacent title-hull allocations only the shots whose segment has that slope change
  (usually one). A target rate or quality between them is met by moving those shots along their
  segment by the same fraction: planned kbps and VMAF on the segment's chord (a time-share of the
  two encodes, and a lower bound of a concave rate-quality curve, so delivered VMAF tends to come
  out a little above plan), and a fractional CRF from the rate model x264's CRF follows, log(rate)
  linear in CRF, so the encode lands on the planned rate. Shots changing resolution on a segment
  are never interpolated (no single encode lies between two resolutions); the bracketing
  allocation on the safe side is returned instead.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from typing import overload

from reelflow.errors import StageError


class HullError(StageError):
    """Rate-quality points that no hull or allocation can be made of (none, not finite, no common grid)."""


@dataclass(frozen=True)
class RdPoint:
    """One encode of a shot (or a whole title, or a planned point between two encodes)."""

    kbps: float
    vmaf: float
    width: int
    height: int
    crf: float      # trial encodes use whole CRFs; a point planned between two of them may not


@dataclass(frozen=True)
class ShotPoints:
    """One shot's trial encodes, over every resolution and CRF tried."""

    index: int
    duration_s: float
    points: tuple[RdPoint, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))  # a list passed in stays hashable
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):
            raise HullError(f"shot {self.index}: duration {self.duration_s!r} s is not a positive number")
        if not self.points:
            raise HullError(f"shot {self.index} has no trial points")
        for p in self.points:
            _check_point(p, f"shot {self.index}")


@dataclass(frozen=True)
class Allocation:
    """One choice of point per shot, and the title's rate and quality that it gives."""

    kbps: float                        # duration-weighted mean over the shots
    vmaf: float                        # duration-weighted mean over the shots
    slope: float                       # a slope at which this is the optimum (0: quality at any rate)
    choices: tuple[RdPoint, ...]       # one per shot, by ascending shot index
    indices: tuple[int, ...] = field(repr=False)       # the shots' indices, ascending
    durations: tuple[float, ...] = field(repr=False)   # the shots' durations, same order


@dataclass(frozen=True)
class _ShotHull:
    points: tuple[RdPoint, ...]
    slopes: tuple[float, ...]   # slopes[j]: segment points[j] -> points[j + 1]; strictly positive, decreasing

    def choice(self, slope: float) -> int:
        # Climb while the next segment is strictly steeper than the slope: ties stay at the lower rate.
        return sum(1 for s in self.slopes if s > slope)


def _check_point(p: RdPoint, where: str) -> None:
    if not (math.isfinite(p.kbps) and p.kbps > 0):
        raise HullError(f"{where}: rate {p.kbps!r} kbps is not a positive number ({p})")
    if not math.isfinite(p.vmaf):
        raise HullError(f"{where}: VMAF {p.vmaf!r} is not a number ({p})")


def _cross(o: RdPoint, a: RdPoint, b: RdPoint) -> float:
    """> 0 when o -> a -> b turns left (a lies under the chord o -> b), 0 when collinear."""
    return (a.kbps - o.kbps) * (b.vmaf - o.vmaf) - (a.vmaf - o.vmaf) * (b.kbps - o.kbps)


def upper_hull(points: Iterable[RdPoint]) -> list[RdPoint]:
    """Points on the upper-left convex frontier of quality over rate, by ascending rate.

    Rate and quality both strictly increase along the result and its slopes strictly decrease;
    dominated points (more rate for no more quality), points under the frontier, collinear
    interior points and duplicates are dropped. One point gives itself.
    """
    pts = list(points)
    for p in pts:
        _check_point(p, "hull")
    if not pts:
        raise HullError("no rate-quality points to build a hull from")
    # Best quality first at each rate, so the first point seen at a rate is the one kept.
    pts.sort(key=lambda p: (p.kbps, -p.vmaf, p.height, p.width, p.crf))
    hull: list[RdPoint] = []
    for p in pts:
        if hull and p.kbps == hull[-1].kbps:
            continue
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    # Past its highest quality the upper hull only descends: more rate for less quality.
    best = max(p.vmaf for p in hull)
    top = next(i for i, p in enumerate(hull) if p.vmaf == best)
    return hull[: top + 1]


def _shot_hull(points: Iterable[RdPoint]) -> _ShotHull:
    hull = upper_hull(points)
    slopes = tuple((b.vmaf - a.vmaf) / (b.kbps - a.kbps) for a, b in pairwise(hull))
    return _ShotHull(tuple(hull), slopes)


def _ordered(shots: Sequence[ShotPoints]) -> list[ShotPoints]:
    if not shots:
        raise HullError("no shots to allocate")
    ordered = sorted(shots, key=lambda s: s.index)
    for a, b in pairwise(ordered):
        if a.index == b.index:
            raise HullError(f"shot {a.index} is given twice")
    return ordered


def _title(choices: tuple[RdPoint, ...], durations: tuple[float, ...]) -> tuple[float, float]:
    total = math.fsum(durations)
    kbps = math.fsum(p.kbps * d for p, d in zip(choices, durations, strict=True)) / total
    vmaf = math.fsum(p.vmaf * d for p, d in zip(choices, durations, strict=True)) / total
    return kbps, vmaf


def _allocation(choices: tuple[RdPoint, ...], slope: float, indices: tuple[int, ...],
                durations: tuple[float, ...]) -> Allocation:
    kbps, vmaf = _title(choices, durations)
    return Allocation(kbps, vmaf, slope, choices, indices, durations)


def allocate(shots: Sequence[ShotPoints], slope: float) -> Allocation:
    """Every shot at its hull point maximising vmaf - slope * kbps (ties: the lower rate)."""
    if not math.isfinite(slope):
        raise HullError(f"slope {slope!r} is not a number")
    ordered = _ordered(shots)
    hulls = [_shot_hull(s.points) for s in ordered]
    choices = tuple(h.points[h.choice(slope)] for h in hulls)
    return _allocation(choices, slope, tuple(s.index for s in ordered), tuple(s.duration_s for s in ordered))


class TitleHull(Sequence[Allocation]):
    """A title's hull as a sequence of allocations by ascending rate, each made when it is asked for.

    A long title has thousands of breakpoints and thousands of shots; keeping every vertex's
    choices would take their product in memory, so only the vertices' rates, qualities and slopes
    are kept, and a vertex's choices are rebuilt from them on demand.
    """

    __slots__ = ("_vertex", "kbps", "slopes", "vmaf")

    def __init__(self, kbps: Sequence[float], vmaf: Sequence[float], slopes: Sequence[float],
                 vertex: Callable[[int], Allocation]) -> None:
        self.kbps = tuple(kbps)          # each vertex's title rate, ascending
        self.vmaf = tuple(vmaf)          # each vertex's title quality, ascending
        self.slopes = tuple(slopes)      # each vertex's Allocation.slope, descending
        self._vertex = vertex

    def __len__(self) -> int:
        return len(self.kbps)

    @overload
    def __getitem__(self, k: int) -> Allocation: ...
    @overload
    def __getitem__(self, k: slice) -> list[Allocation]: ...
    def __getitem__(self, k: int | slice) -> Allocation | list[Allocation]:
        if isinstance(k, slice):
            return [self._vertex(i) for i in range(*k.indices(len(self)))]
        if k < 0:
            k += len(self)
        if not 0 <= k < len(self):
            raise IndexError(k)
        return self._vertex(k)

    def __repr__(self) -> str:
        return f"TitleHull({len(self)} vertices, {self.kbps[0]:.6g}-{self.kbps[-1]:.6g} kbps, " \
               f"VMAF {self.vmaf[0]:.4g}-{self.vmaf[-1]:.4g})"


# Every finite float is an integer multiple of 2**-1074, so sums of floats scaled by this are exact.
_EXACT = 2**1074


def _exact(x: float) -> int:
    num, den = x.as_integer_ratio()         # den is a power of two, at most 2**1074
    return num * (_EXACT // den)


def title_hull(shots: Sequence[ShotPoints]) -> TitleHull:
    """The title's convex hull of (kbps, VMAF): one allocation per breakpoint of the slope.

    The slope sweeps down through every distinct slope of the shots' hull segments; at each one the
    shots with a segment of that slope climb one vertex. The first allocation has every shot at its
    lowest-rate hull point, the last every shot at its best quality (slope 0). Each vertex equals
    ``allocate(shots, vertex.slope)``.
    """
    ordered = _ordered(shots)
    indices = tuple(s.index for s in ordered)
    durations = tuple(s.duration_s for s in ordered)
    total = math.fsum(durations)
    hulls = [_shot_hull(s.points) for s in ordered]
    climbs: dict[float, list[int]] = {}
    for i, h in enumerate(hulls):
        for slope in h.slopes:
            climbs.setdefault(slope, []).append(i)
    # Exact running sums of kbps * duration and vmaf * duration: each vertex's title values are then
    # the correctly rounded sums, bit for bit what math.fsum gives when the vertex is rebuilt.
    at = [0] * len(hulls)
    bits = sum(_exact(h.points[0].kbps * d) for h, d in zip(hulls, durations, strict=True))
    score = sum(_exact(h.points[0].vmaf * d) for h, d in zip(hulls, durations, strict=True))
    kbps, vmaf, slopes = [], [], []
    for slope in [*sorted(climbs, reverse=True), 0.0]:
        kbps.append(bits / _EXACT / total)         # int / int: the correctly rounded float
        vmaf.append(score / _EXACT / total)
        slopes.append(slope)
        for i in climbs.get(slope, ()):   # nothing at the closing 0.0: every hull slope is > 0
            old, new, d = hulls[i].points[at[i]], hulls[i].points[at[i] + 1], durations[i]
            bits += _exact(new.kbps * d) - _exact(old.kbps * d)
            score += _exact(new.vmaf * d) - _exact(old.vmaf * d)
            at[i] += 1

    def vertex(k: int) -> Allocation:
        choices = tuple(h.points[h.choice(slopes[k])] for h in hulls)
        return Allocation(kbps[k], vmaf[k], slopes[k], choices, indices, durations)

    return TitleHull(kbps, vmaf, slopes, vertex)


def per_title_hull(shots: Sequence[ShotPoints]) -> TitleHull:
    """The hull of whole-title encodes: every shot at the same resolution and CRF.

    A title point for one (resolution, CRF) combines every shot's trial at it; only combinations
    that every shot was tried at count. Each allocation's slope is that of the hull segment above
    it (0 for the top), so a slope means the same as in ``title_hull``.
    """
    ordered = _ordered(shots)
    indices = tuple(s.index for s in ordered)
    durations = tuple(s.duration_s for s in ordered)
    grids: list[dict[tuple[int, int, float], RdPoint]] = []
    for s in ordered:
        grid: dict[tuple[int, int, float], RdPoint] = {}
        for p in s.points:
            key = (p.width, p.height, p.crf)
            if grid.setdefault(key, p) != p:
                raise HullError(f"shot {s.index} has two different trials at {p.width}x{p.height} CRF {p.crf}")
        grids.append(grid)
    common = set(grids[0]).intersection(*grids[1:])
    if not common:
        raise HullError("no resolution and CRF that every shot was tried at")
    combos: dict[RdPoint, tuple[RdPoint, ...]] = {}
    for key in common:
        choices = tuple(g[key] for g in grids)
        kbps, vmaf = _title(choices, durations)
        combos[RdPoint(kbps, vmaf, key[0], key[1], key[2])] = choices
    hull = upper_hull(combos)
    slopes = [(b.vmaf - a.vmaf) / (b.kbps - a.kbps) for a, b in pairwise(hull)] + [0.0]
    vertices = [Allocation(p.kbps, p.vmaf, s, combos[p], indices, durations) for p, s in zip(hull, slopes, strict=True)]
    return TitleHull([p.kbps for p in hull], [p.vmaf for p in hull], slopes, vertices.__getitem__)


def at_height(shots: Sequence[ShotPoints], height: int) -> list[ShotPoints]:
    """The shots with only their trials at one height (one rung has one resolution)."""
    out = []
    for s in shots:
        points = tuple(p for p in s.points if p.height == height)
        if not points:
            raise HullError(f"shot {s.index} has no trial at height {height}")
        widths = {p.width for p in points}
        if len(widths) > 1:
            raise HullError(f"shot {s.index} has trials at height {height} with widths {sorted(widths)}")
        out.append(ShotPoints(s.index, s.duration_s, points))
    return out


def _check_hull(hull: Sequence[Allocation]) -> None:
    if not hull:
        raise HullError("empty title hull")


def _between(a: Allocation, b: Allocation, t: float) -> Allocation | None:
    """The allocation a fraction t of the way from a to b (adjacent on a hull); None across resolutions."""
    changed = [i for i, (p, q) in enumerate(zip(a.choices, b.choices, strict=True)) if p != q]
    if any((a.choices[i].width, a.choices[i].height) != (b.choices[i].width, b.choices[i].height) for i in changed):
        return None
    # One fractional CRF step u for all changing shots, from their combined rate: log(rate) is
    # about linear in CRF, so this u puts the encodes on the planned rate.
    k0 = math.fsum(a.choices[i].kbps * a.durations[i] for i in changed)
    k1 = math.fsum(b.choices[i].kbps * b.durations[i] for i in changed)
    kt = k0 + t * (k1 - k0)
    u = math.log(kt / k0) / math.log(k1 / k0) if k1 > k0 > 0 and kt > 0 else t
    choices = list(a.choices)
    for i in changed:
        p, q = a.choices[i], b.choices[i]
        choices[i] = RdPoint(p.kbps + t * (q.kbps - p.kbps), p.vmaf + t * (q.vmaf - p.vmaf),
                             p.width, p.height, p.crf + u * (q.crf - p.crf))
    return Allocation(a.kbps + t * (b.kbps - a.kbps), a.vmaf + t * (b.vmaf - a.vmaf), a.slope,
                      tuple(choices), a.indices, a.durations)


def at_kbps(hull: Sequence[Allocation], kbps: float, *, interpolate: bool = True) -> Allocation:
    """The best allocation on a title hull whose rate is at most ``kbps``.

    With ``interpolate``, the point on the hull at exactly that rate (see the module docstring);
    without, the hull vertex. Clamped: below the hull's lowest rate its first allocation, above
    its highest its last.
    """
    _check_hull(hull)
    rates = hull.kbps if isinstance(hull, TitleHull) else [a.kbps for a in hull]
    if kbps <= rates[0]:
        return hull[0]
    if kbps >= rates[-1]:
        return hull[-1]
    i = bisect.bisect_right(rates, kbps) - 1      # rates[i] <= kbps < rates[i + 1]
    a, b = hull[i], hull[i + 1]
    if not interpolate or kbps == rates[i]:
        return a
    return _between(a, b, (kbps - a.kbps) / (b.kbps - a.kbps)) or a


def at_vmaf(hull: Sequence[Allocation], vmaf: float, *, interpolate: bool = True) -> Allocation:
    """The cheapest allocation on a title hull reaching ``vmaf``.

    With ``interpolate``, the point on the hull at exactly that quality; without, the hull vertex.
    Clamped: a quality the hull cannot reach gives its last (best) allocation.
    """
    _check_hull(hull)
    scores = hull.vmaf if isinstance(hull, TitleHull) else [a.vmaf for a in hull]
    if vmaf <= scores[0]:
        return hull[0]
    if vmaf >= scores[-1]:
        return hull[-1]
    j = bisect.bisect_left(scores, vmaf)          # scores[j - 1] < vmaf <= scores[j]
    a, b = hull[j - 1], hull[j]
    if not interpolate or vmaf == scores[j]:
        return b
    return _between(a, b, (vmaf - a.vmaf) / (b.vmaf - a.vmaf)) or b
