"""Bjøntegaard delta rate and quality (VCEG-M33) between two rate-VMAF curves.

BD-rate is the mean gap between two curves of log10(rate) over quality, over the quality range
both cover, turned into a percentage: (10 ** mean - 1) * 100; negative means the test curve needs
fewer bits for the same quality. BD-quality is the mean gap of quality over log10(rate).

The default interpolation is the piecewise cubic Hermite (PCHIP) of the JCT-VC/JVET common-test
conditions sheets and Netflix vmaf's ``bd_rate_calculator`` (Moler's shape-preserving slopes:
weighted harmonic means inside, the one-sided three-point formula at the ends), written here in
plain Python so scipy is not needed; it follows the curve through every point and never
overshoots between them. ``method="cubic"`` is VCEG-M33's original single cubic least-squares
fit, which can swing wildly between points and needs at least four of them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise
from typing import Literal

import numpy as np

from reelflow.errors import StageError

Method = Literal["pchip", "cubic"]

_MIN_POINTS: dict[str, int] = {"pchip": 2, "cubic": 4}


class BdRateError(StageError):
    """Two rate-quality curves that BD-rate cannot compare."""


class TooFewPoints(BdRateError):
    """A curve has fewer distinct points than the interpolation needs."""


class NoOverlap(BdRateError):
    """The two curves share no quality (or rate) interval to average over."""


def _curve(points: Sequence[tuple[float, float]], name: str, method: Method) -> list[tuple[float, float]]:
    """(log10 kbps, vmaf) by ascending rate, checked to rise in both."""
    if method not in _MIN_POINTS:
        raise BdRateError(f"unknown BD interpolation {method!r}: use 'pchip' or 'cubic'")
    for kbps, vmaf in points:
        if not (math.isfinite(kbps) and kbps > 0 and math.isfinite(vmaf)):
            raise BdRateError(f"{name} curve: ({kbps!r} kbps, VMAF {vmaf!r}) is not a usable point")
    distinct = sorted(set(points))          # a point listed twice is one measurement
    if len(distinct) < _MIN_POINTS[method]:
        raise TooFewPoints(f"{name} curve has {len(distinct)} distinct points; {method} needs "
                           f"{_MIN_POINTS[method]}")
    for (k0, v0), (k1, v1) in pairwise(distinct):
        if not (k1 > k0 and v1 > v0):
            raise BdRateError(f"{name} curve does not rise: ({k0}, {v0}) then ({k1}, {v1}); "
                              "pass its upper hull")
    return [(math.log10(k), v) for k, v in distinct]


def _end_slope(h0: float, h1: float, d0: float, d1: float) -> float:
    # One-sided three-point formula, kept shape-preserving (Moler, Numerical Computing with MATLAB, 3.4).
    d = ((2 * h0 + h1) * d0 - h0 * d1) / (h0 + h1)
    if d * d0 <= 0:
        return 0.0
    if d0 * d1 < 0 and abs(d) > abs(3 * d0):
        return 3 * d0
    return d


def _pchip_slopes(x: Sequence[float], y: Sequence[float]) -> list[float]:
    h = [b - a for a, b in pairwise(x)]
    delta = [(y[k + 1] - y[k]) / h[k] for k in range(len(h))]
    if len(h) == 1:
        return [delta[0], delta[0]]          # two points: the straight line
    slopes = [_end_slope(h[0], h[1], delta[0], delta[1])]
    for k in range(1, len(h)):
        if delta[k - 1] * delta[k] <= 0:
            slopes.append(0.0)
        else:
            w1, w2 = 2 * h[k] + h[k - 1], h[k] + 2 * h[k - 1]
            slopes.append((w1 + w2) / (w1 / delta[k - 1] + w2 / delta[k]))
    slopes.append(_end_slope(h[-1], h[-2], delta[-1], delta[-2]))
    return slopes


def _pchip_integral(x: Sequence[float], y: Sequence[float], lo: float, hi: float) -> float:
    """Integral over [lo, hi] of the PCHIP through (x, y)."""
    d = _pchip_slopes(x, y)
    total = 0.0
    for k in range(len(x) - 1):
        h = x[k + 1] - x[k]
        s0, s1 = max(lo, x[k]) - x[k], min(hi, x[k + 1]) - x[k]
        if s1 <= s0:
            continue
        delta = (y[k + 1] - y[k]) / h
        c = (3 * delta - 2 * d[k] - d[k + 1]) / h
        b = (d[k] - 2 * delta + d[k + 1]) / (h * h)
        # y = y_k + d_k s + c s^2 + b s^3 on this segment, s = x - x_k
        total += ((s1 - s0) * y[k] + (s1**2 - s0**2) * d[k] / 2
                  + (s1**3 - s0**3) * c / 3 + (s1**4 - s0**4) * b / 4)
    return total


def _cubic_integral(x: Sequence[float], y: Sequence[float], lo: float, hi: float) -> float:
    primitive = np.polyint(np.polyfit(np.asarray(x), np.asarray(y), 3))
    return float(np.polyval(primitive, hi) - np.polyval(primitive, lo))


def _mean_gap(anchor: list[tuple[float, float]], test: list[tuple[float, float]], method: Method,
              axis: str) -> float:
    """Mean of test minus anchor, of the second coordinate over the first, where both are defined."""
    lo = max(anchor[0][0], test[0][0])
    hi = min(anchor[-1][0], test[-1][0])
    if lo >= hi:
        raise NoOverlap(f"the curves share no {axis} range: anchor {anchor[0][0]:.4g}-{anchor[-1][0]:.4g}, "
                        f"test {test[0][0]:.4g}-{test[-1][0]:.4g}")
    integral = _pchip_integral if method == "pchip" else _cubic_integral
    ax, ay = zip(*anchor, strict=True)
    tx, ty = zip(*test, strict=True)
    return (integral(tx, ty, lo, hi) - integral(ax, ay, lo, hi)) / (hi - lo)


def bd_rate(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]], *,
            method: Method = "pchip") -> float:
    """Percent more rate the test needs for the anchor's quality, averaged over their common VMAF range.

    Each curve is (kbps, vmaf) points rising in both (a hull; duplicates are merged, order does
    not matter). Negative: the test saves bits.
    """
    a = [(v, lr) for lr, v in _curve(anchor, "anchor", method)]
    t = [(v, lr) for lr, v in _curve(test, "test", method)]
    return (10 ** _mean_gap(a, t, method, "VMAF") - 1) * 100


def bd_quality(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]], *,
               method: Method = "pchip") -> float:
    """Mean VMAF the test gains over the anchor at equal rate, over their common log-rate range."""
    return _mean_gap(_curve(anchor, "anchor", method), _curve(test, "test", method), method, "rate")


def bd_rate_at_points(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float:
    """Percent more rate the test's own points need than the anchor curve at their qualities (mean in log rate).

    The Bjøntegaard measure evaluated at the test's points instead of integrated between them: for
    a sparse ladder against a dense hull, ``bd_rate`` would charge the ladder for the chords
    between its few rungs, which lie below any concave curve; here each rung is compared at its
    own quality with the rate the anchor needs for it (log rate linear in VMAF between the
    anchor's points). Test points outside the anchor's quality range are left out.
    """
    curve = sorted((v, lr) for lr, v in _curve(anchor, "anchor", "pchip"))
    qualities, log_rates = [v for v, _ in curve], [lr for _, lr in curve]
    gaps = []
    for kbps, vmaf in test:
        if kbps <= 0 or not math.isfinite(kbps) or not math.isfinite(vmaf):
            raise BdRateError(f"test point ({kbps}, {vmaf}) is not a positive rate and a finite quality")
        if not qualities[0] <= vmaf <= qualities[-1]:
            continue
        needed = float(np.interp(vmaf, qualities, log_rates))
        gaps.append(math.log10(kbps) - needed)
    if not gaps:
        raise NoOverlap(f"no test point lies within the anchor's VMAF range {qualities[0]:.4g}-{qualities[-1]:.4g}")
    return (10 ** (sum(gaps) / len(gaps)) - 1) * 100
