"""bdrate: Bjøntegaard delta rate and quality, against hand-checkable curves and published values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelflow.encoding.bdrate import (
    BdRateError,
    NoOverlap,
    TooFewPoints,
    _cubic_integral,
    _pchip_integral,
    bd_quality,
    bd_rate,
    bd_rate_at_points,
)
from reelflow.errors import StageError

ANCHOR = [(145.0, 40.0), (365.0, 58.0), (730.0, 71.0), (2000.0, 84.0), (4500.0, 91.0), (7800.0, 94.5)]


@st.composite
def curves(draw: st.DrawFn, min_size: int = 2) -> list[tuple[float, float]]:
    """A rising rate-VMAF curve: rates and qualities both strictly increasing."""
    n = draw(st.integers(min_size, 8))
    steps = draw(st.lists(st.tuples(st.floats(1.1, 3.0), st.floats(0.5, 15.0)), min_size=n - 1, max_size=n - 1))
    kbps, vmaf = draw(st.floats(50, 2000)), draw(st.floats(10, 60))
    out = [(kbps, vmaf)]
    for ratio, gain in steps:
        kbps, vmaf = kbps * ratio, vmaf + gain
        out.append((kbps, vmaf))
    return out


@pytest.mark.parametrize("method", ["pchip", "cubic"])
def test_identical_curves(method: str) -> None:
    assert bd_rate(ANCHOR, ANCHOR, method=method) == pytest.approx(0, abs=1e-12)  # type: ignore[arg-type]
    assert bd_quality(ANCHOR, ANCHOR, method=method) == pytest.approx(0, abs=1e-12)  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["pchip", "cubic"])
@pytest.mark.parametrize(("factor", "expected"), [(0.8, -20.0), (1.25, 25.0), (0.5, -50.0)])
def test_scaled_rates(method: str, factor: float, expected: float) -> None:
    test = [(k * factor, v) for k, v in ANCHOR]
    assert bd_rate(ANCHOR, test, method=method) == pytest.approx(expected, abs=1e-9)  # type: ignore[arg-type]


def test_two_point_curves_are_straight_lines() -> None:
    # log10(rate) linear in VMAF on both curves; the test needs twice the rate everywhere.
    assert bd_rate([(100, 50), (400, 70)], [(200, 50), (800, 70)]) == pytest.approx(100)
    # Over the common quality range 60-70 only: anchor 200-400 kbps, test 100-200.
    assert bd_rate([(100, 50), (400, 70)], [(100, 60), (200, 70)]) == pytest.approx(-50)


def test_jctvc_reference_values() -> None:
    """JCTVC-E137's cases, as Netflix vmaf's bd_rate_calculator_test checks them (there as fractions)."""
    anchor = [(108048.8736, 43.6471), (61279.976, 40.3953), (33905.6656, 37.247), (18883.6928, 34.2911)]
    test = [(108061.2784, 43.6768), (61299.9936, 40.4232), (33928.7472, 37.2761), (18910.912, 34.3147)]
    assert bd_rate(anchor, test) == pytest.approx(-0.465215420752807, abs=1e-9)
    anchor = [(40433.8848, 37.5761), (7622.7456, 35.3756), (2394.488, 33.8977), (1017.6184, 32.0603)]
    test = [(40370.12, 37.5982), (7587.0024, 35.4025), (2390.0944, 33.9194), (1017.0984, 32.0822)]
    assert bd_rate(anchor, test) == pytest.approx(-1.8779823450567612, abs=1e-9)


@given(curves(), st.floats(0.3, 3.0))
def test_scaling_every_rate_shifts_bd_rate_exactly(anchor: list[tuple[float, float]], factor: float) -> None:
    test = [(k * factor, v) for k, v in anchor]
    assert bd_rate(anchor, test) == pytest.approx((factor - 1) * 100, rel=1e-9, abs=1e-9)


@given(curves(), curves())
def test_swapping_the_curves_inverts_the_rate_ratio(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> None:
    try:
        forward = bd_rate(a, b)
    except NoOverlap:
        return
    backward = bd_rate(b, a)
    assert (1 + forward / 100) * (1 + backward / 100) == pytest.approx(1, rel=1e-9)
    assert bd_quality(a, b) == pytest.approx(-bd_quality(b, a), abs=1e-9) if _rates_overlap(a, b) else True


def _rates_overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return max(a[0][0], b[0][0]) < min(a[-1][0], b[-1][0])


@given(curves(), st.floats(-5, 5))
def test_quality_shift_is_bd_quality(anchor: list[tuple[float, float]], shift: float) -> None:
    test = [(k, v + shift) for k, v in anchor]
    assert bd_quality(anchor, test) == pytest.approx(shift, abs=1e-9)


@given(st.floats(0.01, 0.1), st.floats(0.5, 8), st.integers(2, 7))
def test_log_linear_curves_by_hand(slope: float, shift: float, n: int) -> None:
    """log10(rate) = slope * vmaf on both: PCHIP is exact, so a VMAF shift of the test is 10**(-slope*shift)."""
    anchor = [(10 ** (slope * v), v) for v in (30 + 60 * i / (n - 1) for i in range(n))]
    test = [(k, v + shift) for k, v in anchor]
    assert bd_rate(anchor, test) == pytest.approx((10 ** (-slope * shift) - 1) * 100, rel=1e-9, abs=1e-9)


def test_order_and_duplicates_do_not_matter() -> None:
    shuffled = [ANCHOR[3], ANCHOR[0], ANCHOR[5], ANCHOR[1], ANCHOR[1], ANCHOR[4], ANCHOR[2]]
    test = [(k * 0.9, v) for k, v in ANCHOR]
    assert bd_rate(shuffled, test) == pytest.approx(bd_rate(ANCHOR, test))


@given(curves(min_size=3))
def test_pchip_never_overshoots_between_points(curve: list[tuple[float, float]]) -> None:
    """Shape preservation: on rising data each piece rises, so its integral lies between its ends."""
    x = [v for _, v in curve]
    y = [math.log10(k) for k, _ in curve]
    for k in range(len(x) - 1):
        area = _pchip_integral(x, y, x[k], x[k + 1])
        h = x[k + 1] - x[k]
        assert y[k] * h - 1e-9 <= area <= y[k + 1] * h + 1e-9


def test_cubic_overshoots_at_a_knee() -> None:
    # Rate jumps, then barely moves: the single cubic of VCEG-M33 swings far above the points in
    # between, the reason the common test conditions moved to PCHIP.
    x, y = [30.0, 31.0, 60.0, 90.0], [2.0, 3.0, 3.1, 3.2]
    assert _cubic_integral(x, y, 31, 60) > 3.1 * 29 * 1.5
    assert 3.0 * 29 <= _pchip_integral(x, y, 31, 60) <= 3.1 * 29


def test_errors() -> None:
    assert issubclass(BdRateError, StageError)
    assert issubclass(NoOverlap, BdRateError) and issubclass(TooFewPoints, BdRateError)
    with pytest.raises(NoOverlap):
        bd_rate([(100, 30), (200, 40)], [(300, 50), (400, 60)])
    with pytest.raises(NoOverlap):
        bd_quality([(100, 30), (200, 40)], [(300, 30), (400, 40)])
    with pytest.raises(TooFewPoints):
        bd_rate([(100, 30)], ANCHOR)
    with pytest.raises(TooFewPoints):
        bd_rate(ANCHOR, [(100, 30), (100, 30)])          # one distinct point
    with pytest.raises(TooFewPoints, match="cubic needs 4"):
        bd_rate(ANCHOR[:3], ANCHOR, method="cubic")
    with pytest.raises(BdRateError, match="does not rise"):
        bd_rate([(100, 30), (200, 50), (300, 45)], ANCHOR)
    with pytest.raises(BdRateError, match="does not rise"):
        bd_rate([(100, 30), (100, 50)], ANCHOR)
    with pytest.raises(BdRateError, match="not a usable point"):
        bd_rate([(0, 30), (100, 50)], ANCHOR)
    with pytest.raises(BdRateError, match="not a usable point"):
        bd_rate([(math.nan, 30), (100, 50)], ANCHOR)
    with pytest.raises(BdRateError, match="unknown"):
        bd_rate(ANCHOR, ANCHOR, method="akima")  # type: ignore[arg-type]


def test_bd_rate_at_points_compares_each_rung_at_its_own_quality() -> None:
    hull = [(100.0, 60.0), (200.0, 80.0), (400.0, 90.0), (800.0, 95.0)]
    assert bd_rate_at_points(hull, hull) == pytest.approx(0.0, abs=1e-9)
    half = [(k / 2, v) for k, v in hull]
    assert bd_rate_at_points(hull, half) == pytest.approx(-50.0)
    # between the anchor's points, log rate is linear in VMAF: 85 lies half-way from 200 to 400 kbps
    assert bd_rate_at_points(hull, [(200 * 2 ** 0.5, 85.0)]) == pytest.approx(0.0, abs=1e-9)
    # a sparse ladder on the curve is not charged for its chords, unlike the integrated BD-rate
    sparse = [hull[0], hull[-1]]
    assert bd_rate_at_points(hull, sparse) == pytest.approx(0.0, abs=1e-9)
    assert bd_rate(hull, sparse) > 5


def test_bd_rate_at_points_leaves_out_points_beyond_the_anchor() -> None:
    hull = [(100.0, 60.0), (400.0, 90.0)]
    assert bd_rate_at_points(hull, [(50.0, 60.0), (10_000.0, 99.0)]) == pytest.approx(-50.0)
    with pytest.raises(NoOverlap):
        bd_rate_at_points(hull, [(10_000.0, 99.0)])
    with pytest.raises(BdRateError):
        bd_rate_at_points(hull, [(-1.0, 70.0)])
