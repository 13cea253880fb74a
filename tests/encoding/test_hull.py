"""hull: per-shot convex hulls, the equal-slope allocation, the title hull and points on it."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelflow.encoding.hull import (
    Allocation,
    HullError,
    RdPoint,
    ShotPoints,
    allocate,
    at_height,
    at_kbps,
    at_vmaf,
    per_title_hull,
    title_hull,
    upper_hull,
)
from reelflow.errors import StageError

# Whole kbps and VMAF in eighths are exact in binary, so the hull's cross products are exact and
# the properties below can be checked exactly, with Fractions, instead of with a tolerance.
points_st = st.builds(
    RdPoint,
    kbps=st.integers(1, 20_000).map(float),
    vmaf=st.integers(0, 800).map(lambda n: n / 8),
    width=st.just(1280),
    height=st.just(720),
    crf=st.integers(10, 51).map(float),
)
point_lists = st.lists(points_st, min_size=1, max_size=25)


def p(kbps: float, vmaf: float, crf: float = 23, height: int = 720) -> RdPoint:
    return RdPoint(kbps, vmaf, height * 16 // 9, height, crf)


def frontier(hull: Sequence[RdPoint] | Sequence[Allocation], kbps: float) -> float:
    """The hull's piecewise-linear quality at a rate (flat past its top)."""
    if kbps >= hull[-1].kbps:
        return hull[-1].vmaf
    points: list[RdPoint | Allocation] = list(hull)
    for a, b in itertools.pairwise(points):
        if a.kbps <= kbps <= b.kbps:
            return a.vmaf + (kbps - a.kbps) * (b.vmaf - a.vmaf) / (b.kbps - a.kbps)
    raise AssertionError(f"{kbps} is below the hull")


def weighted(choices: tuple[RdPoint, ...], shots: list[ShotPoints]) -> tuple[float, float]:
    """The title's (kbps, VMAF) for one choice per shot: duration-weighted means."""
    total = sum(s.duration_s for s in shots)
    return (sum(c.kbps * s.duration_s for c, s in zip(choices, shots, strict=True)) / total,
            sum(c.vmaf * s.duration_s for c, s in zip(choices, shots, strict=True)) / total)


def exact_slopes(hull: list[RdPoint]) -> list[Fraction]:
    return [(Fraction(b.vmaf) - Fraction(a.vmaf)) / (Fraction(b.kbps) - Fraction(a.kbps))
            for a, b in itertools.pairwise(hull)]


# -- upper_hull ---------------------------------------------------------------------------------


@given(point_lists)
def test_every_point_is_on_or_under_the_hull(points: list[RdPoint]) -> None:
    hull = upper_hull(points)
    assert set(hull) <= set(points)
    for q in points:
        assert q.kbps >= hull[0].kbps
        assert q.vmaf <= frontier(hull, q.kbps) + 1e-9


@given(point_lists)
def test_hull_rises_with_strictly_falling_slopes(points: list[RdPoint]) -> None:
    hull = upper_hull(points)
    assert all(a.kbps < b.kbps and a.vmaf < b.vmaf for a, b in itertools.pairwise(hull))
    slopes = exact_slopes(hull)
    assert all(s > 0 for s in slopes)
    assert all(a > b for a, b in itertools.pairwise(slopes))
    assert hull[-1].vmaf == max(q.vmaf for q in points)


@given(point_lists, st.randoms(use_true_random=False))
def test_hull_is_idempotent_and_ignores_input_order(points: list[RdPoint], rnd: random.Random) -> None:
    hull = upper_hull(points)
    assert upper_hull(hull) == hull
    shuffled = points[:]
    rnd.shuffle(shuffled)
    assert upper_hull(shuffled) == hull


def test_hull_by_hand() -> None:
    a, b, c, d = p(100, 40), p(200, 60), p(400, 70), p(800, 72)
    under = p(300, 50)          # under the chord b -> c
    dominated = p(900, 72)      # more rate for the same quality
    past_top = p(1000, 71)
    assert upper_hull([d, under, c, past_top, a, dominated, b]) == [a, b, c, d]


def test_single_point_and_duplicates() -> None:
    assert upper_hull([p(500, 80)]) == [p(500, 80)]
    assert upper_hull([p(500, 80), p(500, 80), p(500, 70)]) == [p(500, 80)]
    # Same rate and quality at two resolutions: the lower one, whatever the order.
    low, high = p(500, 80, height=540), p(500, 80, height=720)
    assert upper_hull([high, low]) == upper_hull([low, high]) == [low]


def test_collinear_interior_points_are_dropped() -> None:
    line = [p(100, 10), p(200, 20), p(300, 30), p(400, 40)]
    assert upper_hull(line) == [line[0], line[-1]]


def test_lowest_rate_point_stays_even_when_worse() -> None:
    # The cheapest encode is on the frontier: nothing reaches its quality for less.
    assert upper_hull([p(100, 30), p(150, 90)]) == [p(100, 30), p(150, 90)]


@pytest.mark.parametrize("bad", [
    [],
    [p(math.nan, 50)],
    [p(0, 50)],
    [p(-5, 50)],
    [p(100, math.inf)],
])
def test_bad_points_raise(bad: list[RdPoint]) -> None:
    with pytest.raises(HullError):
        upper_hull(bad)


def test_hull_error_is_a_stage_error() -> None:
    assert issubclass(HullError, StageError)
    with pytest.raises(StageError, match="no trial points"):
        ShotPoints(0, 1.0, ())
    with pytest.raises(HullError, match="duration"):
        ShotPoints(0, 0.0, (p(100, 50),))


# -- allocation and the title hull ------------------------------------------------------------


@st.composite
def shots_st(draw: st.DrawFn, max_shots: int = 4, max_points: int = 6) -> list[ShotPoints]:
    n = draw(st.integers(1, max_shots))
    return [ShotPoints(i, float(draw(st.integers(1, 12))),
                       tuple(draw(st.lists(points_st, min_size=1, max_size=max_points))))
            for i in range(n)]


def assert_concave(hull: Sequence[Allocation]) -> None:
    assert all(a.kbps < b.kbps and a.vmaf < b.vmaf for a, b in itertools.pairwise(hull))
    slopes = [(b.vmaf - a.vmaf) / (b.kbps - a.kbps) for a, b in itertools.pairwise(hull)]
    assert all(s2 <= s1 * (1 + 1e-9) + 1e-12 for s1, s2 in itertools.pairwise(slopes))


@given(shots_st())
def test_title_hull_is_concave_and_runs_from_all_lowest_to_all_best(shots: list[ShotPoints]) -> None:
    hull = title_hull(shots)
    assert_concave(hull)
    hulls = [upper_hull(s.points) for s in shots]
    assert hull[0].choices == tuple(h[0] for h in hulls)
    assert hull[-1].choices == tuple(h[-1] for h in hulls)
    assert hull[-1].slope == 0.0
    for a in hull:
        assert all(c in h for c, h in zip(a.choices, hulls, strict=True))   # every choice on its own hull
        assert allocate(shots, a.slope) == a                               # each vertex is its slope's optimum
        assert (a.kbps, a.vmaf) == pytest.approx(weighted(a.choices, shots))


@given(shots_st(), st.floats(0, 2, allow_nan=False))
def test_allocation_maximises_each_shots_lagrangian(shots: list[ShotPoints], slope: float) -> None:
    alloc = allocate(shots, slope)
    for shot, choice in zip(shots, alloc.choices, strict=True):
        best = max(q.vmaf - slope * q.kbps for q in shot.points)
        assert choice.vmaf - slope * choice.kbps >= best - 1e-9 * (1 + abs(best))
        assert choice in upper_hull(shot.points)


@settings(max_examples=60)
@given(shots_st(max_shots=3, max_points=5))
def test_no_combination_of_points_beats_the_title_hull(shots: list[ShotPoints]) -> None:
    hull = title_hull(shots)
    for combo in itertools.product(*(s.points for s in shots)):
        kbps, vmaf = weighted(combo, shots)
        assert kbps >= hull[0].kbps * (1 - 1e-12)
        assert vmaf <= frontier(hull, kbps) + 1e-9


def test_equal_slopes_move_together_and_ties_take_the_lower_rate() -> None:
    # Both shots have a segment of slope 0.1 VMAF/kbps: they climb at the same breakpoint.
    s0 = ShotPoints(0, 2.0, (p(100, 50, 30), p(200, 60, 24)))
    s1 = ShotPoints(1, 1.0, (p(300, 70, 30), p(400, 80, 24)))
    hull = title_hull([s1, s0])                      # order of the input does not matter
    assert [a.choices for a in hull] == [(s0.points[0], s1.points[0]), (s0.points[1], s1.points[1])]
    assert hull[0].slope == pytest.approx(0.1)
    assert allocate([s0, s1], 0.1).choices == (s0.points[0], s1.points[0])
    assert hull[0].indices == (0, 1) and hull[0].durations == (2.0, 1.0)
    assert (hull[0].kbps, hull[0].vmaf) == pytest.approx(((100 * 2 + 300) / 3, (50 * 2 + 70) / 3))


def test_title_hull_is_a_sequence_of_allocations() -> None:
    s0 = ShotPoints(0, 2.0, (p(100, 50, 30), p(200, 60, 24), p(400, 65, 18)))
    s1 = ShotPoints(1, 1.0, (p(300, 70, 30), p(400, 75, 24)))      # slopes 0.1, 0.025 and 0.05
    hull = title_hull([s0, s1])
    assert len(hull) == 4
    assert hull[-1] == hull[3] and hull[-4] == hull[0]
    assert hull[1:3] == [hull[1], hull[2]]
    assert list(hull) == hull[:]
    assert hull.kbps == tuple(a.kbps for a in hull) and hull.vmaf == tuple(a.vmaf for a in hull)
    assert "4 vertices" in repr(hull)
    with pytest.raises(IndexError):
        hull[4]


def test_one_point_shots_give_one_allocation() -> None:
    hull = title_hull([ShotPoints(0, 1.0, (p(100, 50),)), ShotPoints(1, 3.0, (p(300, 70),))])
    assert len(hull) == 1
    assert (hull[0].kbps, hull[0].vmaf) == pytest.approx((250, 65))


def test_duplicate_shot_index_raises() -> None:
    with pytest.raises(HullError, match="twice"):
        title_hull([ShotPoints(3, 1.0, (p(100, 50),)), ShotPoints(3, 1.0, (p(100, 50),))])
    with pytest.raises(HullError):
        title_hull([])
    with pytest.raises(HullError):
        allocate([ShotPoints(0, 1.0, (p(100, 50),))], math.nan)


# -- points on a title hull ---------------------------------------------------------------------


def two_crf_shot() -> ShotPoints:
    return ShotPoints(0, 4.0, (p(1000, 90, 20), p(500, 80, 26), p(250, 66, 32)))


def test_at_kbps_interpolates_crf_in_log_rate() -> None:
    hull = title_hull([two_crf_shot()])
    mid = at_kbps(hull, math.sqrt(500 * 1000))
    # log(rate) linear in CRF: the geometric mean rate is the middle CRF.
    assert mid.choices[0].crf == pytest.approx(23)
    assert mid.kbps == pytest.approx(math.sqrt(500 * 1000))
    # Planned quality on the chord of the two encodes.
    assert mid.vmaf == pytest.approx(80 + 10 * (mid.kbps - 500) / 500)
    assert at_kbps(hull, 700, interpolate=False).choices[0].crf == 26
    assert at_kbps(hull, 500) == hull[1]


def test_at_vmaf_gives_the_cheapest_point_reaching_it() -> None:
    hull = title_hull([two_crf_shot()])
    a = at_vmaf(hull, 85)
    assert a.vmaf == pytest.approx(85)
    assert a.kbps == pytest.approx(750)
    assert 20 < a.choices[0].crf < 26
    assert at_vmaf(hull, 85, interpolate=False).choices[0].crf == 20
    assert at_vmaf(hull, 99) == hull[-1]          # unreachable: the best there is
    assert at_vmaf(hull, 10) == hull[0]


def test_targets_outside_the_hull_are_clamped() -> None:
    hull = title_hull([two_crf_shot()])
    assert at_kbps(hull, 10) == hull[0]
    assert at_kbps(hull, 1e9) == hull[-1]
    with pytest.raises(HullError):
        at_kbps([], 100)


@given(shots_st(), st.floats(0, 1))
def test_at_kbps_lies_on_the_hull_and_within_budget(shots: list[ShotPoints], frac: float) -> None:
    hull = title_hull(shots)
    target = hull[0].kbps + frac * (hull[-1].kbps - hull[0].kbps)
    a = at_kbps(hull, target)
    assert a.kbps == pytest.approx(target, rel=1e-9)
    assert a.vmaf == pytest.approx(frontier(hull, target), rel=1e-9, abs=1e-9)
    assert (a.kbps, a.vmaf) == pytest.approx(weighted(a.choices, shots))
    lo, hi = at_kbps(hull, target, interpolate=False), at_vmaf(hull, a.vmaf, interpolate=False)
    assert lo.kbps <= target * (1 + 1e-12) and hi.vmaf >= a.vmaf - 1e-9
    for c, l_, h_ in zip(a.choices, lo.choices, hi.choices, strict=True):    # CRF between its brackets
        assert min(l_.crf, h_.crf) - 1e-9 <= c.crf <= max(l_.crf, h_.crf) + 1e-9
    b = at_vmaf(hull, a.vmaf)
    assert b.kbps == pytest.approx(a.kbps, rel=1e-6, abs=1e-6)


def test_no_interpolation_across_resolutions() -> None:
    shot = ShotPoints(0, 1.0, (p(500, 80, 24, height=540), p(1000, 90, 24, height=720)))
    hull = title_hull([shot])
    assert at_kbps(hull, 750) == hull[0]          # within budget
    assert at_vmaf(hull, 85) == hull[1]           # reaching the quality


# -- resolutions and per-title ------------------------------------------------------------------


def test_at_height_keeps_one_resolution() -> None:
    shot = ShotPoints(0, 1.0, (p(500, 80, 24, height=540), p(1000, 90, 24, height=720), p(700, 85, 28, height=720)))
    (only,) = at_height([shot], 720)
    assert {q.height for q in only.points} == {720}
    with pytest.raises(HullError, match="no trial at height 1080"):
        at_height([shot], 1080)
    mixed = ShotPoints(0, 1.0, (RdPoint(500, 80, 1280, 720, 24), RdPoint(600, 81, 960, 720, 24)))
    with pytest.raises(HullError, match="widths"):
        at_height([mixed], 720)


def test_per_title_hull_uses_one_crf_for_every_shot() -> None:
    easy = ShotPoints(0, 3.0, (p(200, 90, 20), p(100, 85, 26), p(50, 75, 32)))
    hard = ShotPoints(1, 1.0, (p(2000, 80, 20), p(1000, 70, 26), p(600, 55, 32), p(300, 40, 38)))
    hull = per_title_hull([easy, hard])
    assert [a.choices[0].crf for a in hull] == [32, 26, 20]        # CRF 38 was not tried on every shot
    assert all(len({c.crf for c in a.choices}) == 1 for a in hull)
    assert (hull[1].kbps, hull[1].vmaf) == pytest.approx(((100 * 3 + 1000) / 4, (85 * 3 + 70) / 4))
    assert_concave(hull)
    mid = at_kbps(hull, math.sqrt(hull[1].kbps * hull[2].kbps))
    assert [c.crf for c in mid.choices] == [pytest.approx(23)] * 2    # one fractional CRF for the title
    with pytest.raises(HullError, match="every shot"):
        per_title_hull([easy, ShotPoints(1, 1.0, (p(300, 40, 38),))])


def test_per_title_is_never_better_than_per_shot() -> None:
    easy = ShotPoints(0, 3.0, (p(200, 90, 20), p(100, 85, 26), p(50, 75, 32)))
    hard = ShotPoints(1, 1.0, (p(2000, 80, 20), p(1000, 70, 26), p(600, 55, 32)))
    shot_hull, whole = title_hull([easy, hard]), per_title_hull([easy, hard])
    for a in whole:
        assert a.vmaf <= frontier(shot_hull, a.kbps) + 1e-9
