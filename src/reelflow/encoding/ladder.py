"""Ladder selection: the rungs, each at one resolution with its per-shot CRFs, chosen on the title's hulls.

The algorithm, from trial points to rungs:

1. One curve per resolution. For every height that each shot was tried at (and that the rules
   allow), the title's hull at that height only: ``title_hull`` in per-shot mode (each shot its
   own CRF, equal slope), ``per_title_hull`` in per-title mode (one CRF for the whole title). A
   rung is a point on one of these curves, so it has one resolution, as a manifest declares it.
2. The envelope. At a rate R, each resolution offers the best point of its curve costing at most
   R (its top if R is above its range; nothing if R is below its cheapest point); the rung at R
   takes the resolution offering the highest VMAF (ties: lower rate, then lower height). The
   envelope's VMAF never falls as R grows. Below every curve's range, the cheapest point overall.
3. Top rung: the lowest rate at which any resolution reaches the aim VMAF (``top_vmaf_aim``, by
   default the middle of [top_vmaf_min, top_vmaf_max], so a delivered rung within 1 VMAF of its
   plan stays inside the window; no bits are spent above top_vmaf_max). A title that cannot
   reach the aim gets its best quality at the lowest rate that gives it; one whose cheapest
   trial already exceeds the aim gets that trial (quality above the window, but for fewer bits).
4. Walking down. From a rung at rate r and quality v, the next rung's rate lies in
   [r / max_step_ratio, r / min_step_ratio]; within that window it is the highest rate whose
   envelope VMAF is at most v - min_vmaf_step (found by bisection; the envelope is monotone), or
   the window's lowest rate when no rate in it drops that far (the ratio bound is hard, the
   VMAF step "about"). The window is further kept to rates from which the bottom can be reached
   in whole steps: not between max_step_ratio and min_step_ratio squared times the bottom, and
   not above bottom * max_step_ratio ** k when only k rungs are left after this one. So near
   the bottom a step can be held to an edge of the window and come out short of the VMAF step.
5. Bottom. When r is within [min_step_ratio, max_step_ratio] times ``bottom_kbps`` the last rung
   is placed at ``bottom_kbps``; when r is already closer than min_step_ratio, r is the bottom.
   When only one rung is left under ``max_rungs``, or r sits in the gap of step 4, the next rung
   is the bottom whatever the ratio. A bottom above the top gives a one-rung ladder.
6. Each rung's per-shot CRFs come from the allocation at its rate on its resolution's curve,
   interpolated between trial CRFs as ``hull.at_kbps`` documents (fractional CRFs, which x264
   accepts); in per-title mode every shot gets the same CRF.

7. UHD titles (curves both up to and above 1080 lines, scored with different VMAF models): steps
   3-5 on the curves up to 1080 lines, then the UHD rungs stacked on top (``_uhd_rungs``).

Where a curve has gaps (a resolution's best point is cheaper than the window, or the trials do not
reach down to the window), the rung's actual rate can fall outside the ratio window; the rules
hold wherever the hulls allow them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reelflow.encoding.hull import (
    Allocation,
    HullError,
    ShotPoints,
    TitleHull,
    at_height,
    at_kbps,
    at_vmaf,
    per_title_hull,
    title_hull,
)
from reelflow.encoding.vmaf import HD_LINES
from reelflow.errors import ConfigError, StageError
from reelflow.infra.settings import LadderConfig

log = logging.getLogger(__name__)

Mode = Literal["per-title", "per-shot"]

# The spacing rules live with the other settings; the ladder reads only its rules fields.
LadderRules = LadderConfig

# Bisection steps on log(rate) over a window of at most a few x: far below a kbps of precision.
_BISECT_STEPS = 60
# Relative slack on ratio tests, so a rung placed exactly at a bound is not lost to rounding.
_EPS = 1e-9


class LadderError(StageError):
    """No ladder can be made from these trial points (no resolution covers every shot)."""


@dataclass(frozen=True)
class ShotPlan:
    """One shot's encode in one rung."""

    index: int
    crf: float          # fractional where the plan lies between two trial CRFs
    kbps: float         # planned
    vmaf: float         # planned


@dataclass(frozen=True)
class PlannedRung:
    """One rung: one resolution, its planned title rate and quality, and every shot's CRF."""

    width: int
    height: int
    kbps: float         # duration-weighted over the shots
    vmaf: float         # duration-weighted over the shots
    shots: tuple[ShotPlan, ...]

    @property
    def name(self) -> str:
        return f"{self.height}p_{round(self.kbps)}k"

    @property
    def crfs(self) -> tuple[float, ...]:
        return tuple(s.crf for s in self.shots)


@dataclass(frozen=True)
class _Curve:
    """One resolution's title hull; the walk reads its vertices' rates and qualities only."""

    height: int
    hull: TitleHull

    @property
    def kbps(self) -> tuple[float, ...]:
        return self.hull.kbps

    @property
    def vmaf(self) -> tuple[float, ...]:
        return self.hull.vmaf

    def offer(self, rate: float) -> tuple[float, float] | None:
        """(VMAF, kbps) of the best point costing at most rate: the hull's chord, as ``at_kbps``."""
        if rate < self.kbps[0]:
            return None
        return _frontier_at(self.kbps, self.vmaf, rate)


def _frontier_at(rates: Sequence[float], scores: Sequence[float], rate: float) -> tuple[float, float]:
    """(VMAF, kbps) on a hull's piecewise-linear frontier at ``rate``, clamped to its ends."""
    if rate <= rates[0]:
        return scores[0], rates[0]
    if rate >= rates[-1]:
        return scores[-1], rates[-1]
    lo, hi = 0, len(rates) - 1
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if rates[mid] <= rate:
            lo = mid
        else:
            hi = mid
    t = (rate - rates[lo]) / (rates[hi] - rates[lo])
    return scores[lo] + t * (scores[hi] - scores[lo]), rate


def _curves(shots: Sequence[ShotPoints], rules: LadderRules, mode: Mode) -> list[_Curve]:
    heights = sorted({p.height for s in shots for p in s.points})
    if rules.heights is not None:
        heights = [h for h in heights if h in rules.heights]
    curves = []
    for h in heights:
        if not all(any(p.height == h for p in s.points) for s in shots):
            log.debug("height %d: not every shot was tried at it", h)
            continue
        sub = at_height(shots, h)
        if mode == "per-title":
            crfs = set.intersection(*({p.crf for p in s.points} for s in sub))
            if not crfs:
                log.debug("height %d: no CRF that every shot was tried at", h)
                continue
            curves.append(_Curve(h, per_title_hull(sub)))
        else:
            curves.append(_Curve(h, title_hull(sub)))
    if not curves:
        raise LadderError("no resolution has trial points for every shot" +
                          (" (at the allowed heights)" if rules.heights is not None else ""))
    return curves


def _best(curves: Sequence[_Curve], rate: float) -> tuple[_Curve, float, float]:
    """The rung the envelope gives at a rate: (curve, its VMAF, its actual kbps)."""
    offers = [(c, o) for c in curves if (o := c.offer(rate)) is not None]
    if not offers:
        cheapest = min(curves, key=lambda c: (c.kbps[0], -c.vmaf[0], c.height))
        return cheapest, cheapest.vmaf[0], cheapest.kbps[0]
    c, (vmaf, kbps) = max(offers, key=lambda co: (co[1][0], -co[1][1], -co[0].height))
    return c, vmaf, kbps


def _highest_rate_at_most(curves: Sequence[_Curve], lo: float, hi: float, vmaf: float) -> float | None:
    """The highest rate in [lo, hi] where the envelope's VMAF is at most vmaf, or None."""
    if _best(curves, hi)[1] <= vmaf:
        return hi
    if _best(curves, lo)[1] > vmaf:
        return None
    a, b = math.log(lo), math.log(hi)        # invariant: ok at a, too good at b
    for _ in range(_BISECT_STEPS):
        m = (a + b) / 2
        if _best(curves, math.exp(m))[1] <= vmaf:
            a = m
        else:
            b = m
    return max(lo, min(hi, math.exp(a)))


def _top(curves: Sequence[_Curve], rules: LadderRules) -> tuple[_Curve, Allocation]:
    aim = min(rules.aim, max(c.vmaf[-1] for c in curves))
    reaching = [c for c in curves if c.vmaf[-1] >= aim]
    picks = [(c, at_vmaf(c.hull, aim)) for c in reaching]
    return min(picks, key=lambda ca: (ca[1].kbps, -ca[1].vmaf, ca[0].height))


def _next_rate(curves: Sequence[_Curve], rules: LadderRules, rate: float, vmaf: float, rungs_after: int) -> float:
    lo_ratio, hi_ratio, bottom = rules.min_step_ratio, rules.max_step_ratio, rules.bottom_kbps
    window = (rate / hi_ratio, rate / lo_ratio)
    # Rates from which the bottom is reachable in whole steps: one step, or at least two, and in
    # no more steps than max_rungs leaves.
    cap = bottom * hi_ratio ** rungs_after
    allowed = [(lo_ratio * bottom, min(cap, hi_ratio * bottom)), (lo_ratio * lo_ratio * bottom, cap)]
    pieces = [(max(window[0], a), min(window[1], b)) for a, b in allowed]
    pieces = [(a, b) for a, b in pieces if a <= b] or [window]
    found = [r for a, b in pieces if (r := _highest_rate_at_most(curves, a, b, vmaf - rules.min_vmaf_step)) is not None]
    if found:
        return max(found)
    return min(a for a, _ in pieces)        # no rate drops the VMAF step: the widest ratio allowed


def _rung(curve: _Curve, allocation: Allocation) -> PlannedRung:
    first = allocation.choices[0]
    shots = tuple(ShotPlan(i, p.crf, p.kbps, p.vmaf)
                  for i, p in zip(allocation.indices, allocation.choices, strict=True))
    return PlannedRung(first.width, first.height, allocation.kbps, allocation.vmaf, shots)


def select_ladder(shots: Sequence[ShotPoints], rules: LadderRules, mode: Mode = "per-shot") -> list[PlannedRung]:
    """The rungs for a title, by ascending rate; the module docstring has the algorithm.

    A title with curves on both sides of 1080 lines (a UHD source) gets two ladders stacked: the
    rungs up to 1080p chosen as above on those curves only (scored with the HD VMAF model), and
    on top the UHD rungs (``_uhd_rungs``) on the curves above 1080 lines (the 4K model).
    """
    if mode not in ("per-title", "per-shot"):
        raise ConfigError(f"ladder mode {mode!r} is not per-title or per-shot")
    if not shots:
        raise HullError("no shots to plan a ladder for")
    curves = _curves(shots, rules, mode)
    hd = [c for c in curves if c.height <= HD_LINES]
    uhd = [c for c in curves if c.height > HD_LINES]
    if not hd or not uhd:
        return _walk(curves, rules)
    below = _walk(hd, rules)
    return below + _uhd_rungs(uhd, rules, below[-1].kbps, max(1, rules.max_rungs - len(below)))


def _uhd_rungs(curves: Sequence[_Curve], rules: LadderRules, hd_top_kbps: float, room: int) -> list[PlannedRung]:
    """The rungs above 1080p of a UHD title, on its curves above 1080 lines only, by ascending rate.

    Why stacked rather than one envelope: VMAF's HD model (3 picture heights, on the source scaled
    to 1080 lines) and its 4K model (1.5 picture heights, at 2160 lines) are not on one scale. The
    HD model never sees detail that a 1080p rung lost against a 2160p source, so on one envelope the
    1080p curve would reach the aim long before any UHD curve and no UHD rung would ever be chosen;
    re-scoring everything with the 4K model would instead judge the HD rungs for a viewing they are
    not made for (phones and HD screens). So each viewer's rungs sit on their own model's hull,
    and the two ladders are joined by rate only: the UHD rungs start at least ``min_step_ratio``
    above the HD top. The top UHD rung is at the tallest UHD height (a UHD title's top rung is
    native UHD, what a UHD device and store badge promise), at the aim VMAF in the 4K model, or
    that step above the HD top where the aim comes cheaper; below it, rungs walk down the UHD
    curves' envelope as step 4 of the module docstring does, while they stay that step above the
    HD top, within ``room`` rungs.
    """
    lo_ratio, hi_ratio = rules.min_step_ratio, rules.max_step_ratio
    floor = hd_top_kbps * lo_ratio
    tallest = max(curves, key=lambda c: c.height)
    top = at_vmaf(tallest.hull, min(rules.aim, tallest.vmaf[-1]))
    if top.kbps < floor:
        top = at_kbps(tallest.hull, floor)
    picked = [(tallest, top)]
    while len(picked) < room:
        rate, vmaf = picked[-1][1].kbps, picked[-1][1].vmaf
        lo, hi = max(floor, rate / hi_ratio), rate / lo_ratio
        if hi < floor * (1 - _EPS):
            break
        target = _highest_rate_at_most(curves, lo, hi, vmaf - rules.min_vmaf_step) or lo
        curve, _, kbps = _best(curves, target)
        if kbps < floor * (1 - _EPS) or rate / kbps < lo_ratio * (1 - _EPS):
            break
        picked.append((curve, at_kbps(curve.hull, target)))
    return [_rung(c, a) for c, a in reversed(picked)]


def _walk(curves: Sequence[_Curve], rules: LadderRules) -> list[PlannedRung]:
    """Steps 3-5 of the module docstring on one envelope: top, walking down, bottom."""
    bottom, lo_ratio, hi_ratio = rules.bottom_kbps, rules.min_step_ratio, rules.max_step_ratio
    picked = [_top(curves, rules)]
    while len(picked) < rules.max_rungs:
        rate, vmaf = picked[-1][1].kbps, picked[-1][1].vmaf
        x = rate / bottom
        if x < lo_ratio * (1 - _EPS):
            break                              # this rung is the bottom
        last = x <= hi_ratio or x < lo_ratio * lo_ratio or len(picked) == rules.max_rungs - 1
        target = bottom if last else _next_rate(curves, rules, rate, vmaf, rules.max_rungs - len(picked) - 1)
        curve, _, kbps = _best(curves, target)
        if rate / kbps < lo_ratio * (1 - _EPS):
            break                              # the trials reach no lower
        picked.append((curve, at_kbps(curve.hull, target)))
        if last:
            break
    return [_rung(c, a) for c, a in reversed(picked)]
