"""ladder: rungs on the title's hulls, per-shot and per-title, against a model of x264 trial encodes."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from reelflow.encoding.hull import HullError, RdPoint, ShotPoints, at_height, at_kbps, title_hull
from reelflow.encoding.ladder import LadderError, LadderRules, PlannedRung, select_ladder
from reelflow.errors import ConfigError

RULES = LadderRules()
WIDTHS = {1080: 1920, 720: 1280, 540: 960, 432: 768, 360: 640, 234: 416}
# Quality ceiling of each height once upscaled to 1080p for VMAF.
CAP = {1080: 1.0, 720: 0.97, 540: 0.93, 432: 0.89, 360: 0.84, 234: 0.70}
CRFS = range(16, 47, 3)


def model_kbps(c: float, height: int, crf: float) -> float:
    """Rate of a shot of complexity c: halves every 6 CRF, grows with pixels (x264-like)."""
    return 5000 * c * math.pow(height / 1080, 1.6) * math.pow(2, (23 - crf) / 6)


def model_vmaf(c: float, height: int, crf: float, ceiling: float = 100) -> float:
    """VMAF falls off in CRF like a logistic; harder shots fall earlier; lower heights top out lower."""
    return CAP[height] * ceiling / (1 + math.exp((crf - (40 - 4 * math.log2(c))) / 6))


def shot(index: int, c: float, duration: float, heights: tuple[int, ...] = tuple(CAP), ceiling: float = 100,
         crfs: range = CRFS) -> ShotPoints:
    return ShotPoints(index, duration, tuple(
        RdPoint(model_kbps(c, h, q), model_vmaf(c, h, q, ceiling), WIDTHS[h], h, q) for h in heights for q in crfs))


TITLE = [shot(0, 1.0, 4.0), shot(1, 0.5, 2.0), shot(2, 2.0, 3.0), shot(3, 1.3, 5.0)]
COMPLEXITY = {0: 1.0, 1: 0.5, 2: 2.0, 3: 1.3}


def delivered(rung: PlannedRung, complexity: dict[int, float], shots: list[ShotPoints]) -> tuple[float, float]:
    """What the model's encoder would give for the rung's per-shot CRFs (fractional ones included)."""
    total = sum(s.duration_s for s in shots)
    kbps = sum(model_kbps(complexity[p.index], rung.height, p.crf) * s.duration_s
               for p, s in zip(rung.shots, shots, strict=True))
    vmaf = sum(model_vmaf(complexity[p.index], rung.height, p.crf) * s.duration_s
               for p, s in zip(rung.shots, shots, strict=True))
    return kbps / total, vmaf / total


def check_spacing(rungs: list[PlannedRung], rules: LadderRules) -> None:
    """The ladder rules, for titles whose hulls cover the whole range from bottom to top."""
    assert 1 <= len(rungs) <= rules.max_rungs
    assert rungs[0].kbps == pytest.approx(rules.bottom_kbps)
    for lower, upper in itertools.pairwise(rungs):
        ratio = upper.kbps / lower.kbps
        assert rules.min_step_ratio - 1e-6 <= ratio <= rules.max_step_ratio + 1e-6
        # VMAF steps of at least min_vmaf_step, except into the bottom rung, where the 2x bound
        # stopped it, or where the rung had to sit at an edge from which the bottom is reachable.
        edges = (rules.min_step_ratio * rules.bottom_kbps, rules.min_step_ratio ** 2 * rules.bottom_kbps,
                 *(rules.bottom_kbps * rules.max_step_ratio ** k for k in range(1, rules.max_rungs)))
        if (lower is not rungs[0] and ratio < rules.max_step_ratio - 1e-6
                and not any(lower.kbps == pytest.approx(e) for e in edges)):
            assert upper.vmaf - lower.vmaf >= rules.min_vmaf_step - 1e-6
    assert rungs[-1].vmaf <= rules.top_vmaf_max + 1e-9


@pytest.mark.parametrize("mode", ["per-shot", "per-title"])
def test_ladder_on_a_four_shot_title(mode: str) -> None:
    rungs = select_ladder(TITLE, RULES, mode)  # type: ignore[arg-type]
    check_spacing(rungs, RULES)
    assert rungs[-1].vmaf == pytest.approx(94)          # the middle of 93-95
    assert 6 <= len(rungs) <= 10
    assert [r.kbps for r in rungs] == sorted(r.kbps for r in rungs)
    for r in rungs:
        assert [s.index for s in r.shots] == [0, 1, 2, 3]
        assert r.width == WIDTHS[r.height]
        assert all(min(CRFS) <= c <= max(CRFS) for c in r.crfs)
        if mode == "per-title":
            assert len(set(r.crfs)) == 1
        kbps, vmaf = delivered(r, COMPLEXITY, TITLE)
        assert kbps == pytest.approx(r.kbps, rel=1e-6)      # single-shot moves: the CRF model is exact
        assert abs(vmaf - r.vmaf) < 1.0                      # planned vs delivered, as the benchmark checks
        assert vmaf >= r.vmaf - 1e-9                         # the chord is a lower bound of a concave curve
    assert {r.height for r in rungs} >= {234, 720}


def test_per_shot_rungs_lie_on_their_resolutions_hull() -> None:
    for r in select_ladder(TITLE, RULES, "per-shot"):
        hull = title_hull(at_height(TITLE, r.height))
        assert r.vmaf == pytest.approx(at_kbps(hull, r.kbps).vmaf, abs=1e-9)
        # No other height offers more at the rung's rate.
        for h in CAP:
            other = title_hull(at_height(TITLE, h))
            if other[0].kbps <= r.kbps:
                assert at_kbps(other, r.kbps).vmaf <= r.vmaf + 1e-9


def test_per_shot_beats_per_title_at_equal_rate() -> None:
    per_shot = select_ladder(TITLE, RULES, "per-shot")
    per_title = select_ladder(TITLE, RULES, "per-title")
    assert per_shot[-1].kbps < per_title[-1].kbps       # same top quality for fewer bits


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0.5, 2.0), st.integers(1, 20)), min_size=1, max_size=6),
       st.sampled_from(["per-shot", "per-title"]))
def test_ladder_rules_hold_for_any_mix_of_shots(spec: list[tuple[float, int]], mode: str) -> None:
    shots = [shot(i, c, float(d)) for i, (c, d) in enumerate(spec)]
    rungs = select_ladder(shots, RULES, mode)  # type: ignore[arg-type]
    check_spacing(rungs, RULES)
    assert rungs[-1].vmaf == pytest.approx(94)
    complexity = {i: c for i, (c, _) in enumerate(spec)}
    for r in rungs:
        assert abs(delivered(r, complexity, shots)[1] - r.vmaf) < 1.0


def test_source_that_cannot_reach_93_tops_out_at_its_best() -> None:
    dull = [shot(0, 1.0, 3.0, ceiling=85), shot(1, 1.5, 2.0, ceiling=85)]
    rungs = select_ladder(dull, RULES, "per-shot")
    best = title_hull(at_height(dull, 1080))[-1]
    assert rungs[-1].height == 1080
    assert rungs[-1].vmaf == pytest.approx(best.vmaf)
    assert rungs[-1].kbps == pytest.approx(best.kbps)
    check_spacing(rungs, RULES)


def test_one_shot_title() -> None:
    rungs = select_ladder([shot(7, 1.0, 2.5)], RULES, "per-shot")
    check_spacing(rungs, RULES)
    assert all(r.shots[0].index == 7 for r in rungs)


def test_bottom_above_the_top_gives_one_rung() -> None:
    rungs = select_ladder(TITLE, LadderRules(bottom_kbps=50_000), "per-shot")
    assert len(rungs) == 1
    assert rungs[0].vmaf == pytest.approx(94)


def test_bottom_just_under_the_top_gives_two_rungs() -> None:
    top = select_ladder(TITLE, LadderRules(bottom_kbps=50_000), "per-shot")[0]
    rungs = select_ladder(TITLE, LadderRules(bottom_kbps=top.kbps / 1.8), "per-shot")
    assert [r.kbps for r in rungs] == pytest.approx([top.kbps / 1.8, top.kbps])


def test_top_aim_and_max_rungs_are_configurable() -> None:
    rules = LadderRules(top_vmaf_aim=93, max_rungs=4)
    rungs = select_ladder(TITLE, rules, "per-shot")
    assert len(rungs) == 4
    assert rungs[-1].vmaf == pytest.approx(93)
    assert rungs[0].kbps == pytest.approx(rules.bottom_kbps)   # the bottom stays, the last step widens


def test_steps_widen_early_when_max_rungs_would_bind() -> None:
    # A hard shot, a low bottom and small VMAF steps: walking greedily at 1.5x from the top would
    # use up the ten rungs and then jump 2.9x into the bottom.
    rules = LadderRules(bottom_kbps=100, min_vmaf_step=6)
    rungs = select_ladder([shot(0, 2.0, 12.0)], rules, "per-shot")
    assert len(rungs) == rules.max_rungs
    check_spacing(rungs, rules)


def test_too_few_rungs_for_the_range() -> None:
    rungs = select_ladder(TITLE, LadderRules(max_rungs=3), "per-shot")
    assert len(rungs) == 3
    assert rungs[0].kbps == pytest.approx(145) and rungs[-1].vmaf == pytest.approx(94)
    assert rungs[2].kbps / rungs[1].kbps == pytest.approx(2)     # 2x where it can, the rest at the bottom


def test_allowed_heights_and_missing_heights() -> None:
    rungs = select_ladder(TITLE, LadderRules(heights=(360, 720)), "per-shot")
    assert {r.height for r in rungs} <= {360, 720}
    # A height that one shot was not tried at is not used.
    partial = [*TITLE[:3], shot(3, 1.3, 5.0, heights=(234, 360, 540, 720))]
    assert {r.height for r in select_ladder(partial, RULES, "per-shot")} <= {234, 360, 540, 720}
    with pytest.raises(LadderError):
        select_ladder(TITLE, LadderRules(heights=(2160,)), "per-shot")


def test_per_title_needs_a_crf_common_to_every_shot() -> None:
    odd = [shot(0, 1.0, 2.0, crfs=range(16, 47, 2)), shot(1, 1.0, 2.0, crfs=range(17, 47, 2))]
    assert select_ladder(odd, RULES, "per-shot")
    with pytest.raises(LadderError):
        select_ladder(odd, RULES, "per-title")


def test_bad_inputs() -> None:
    with pytest.raises(ConfigError):
        select_ladder(TITLE, RULES, "fixed")  # type: ignore[arg-type]
    with pytest.raises(HullError):
        select_ladder([], RULES, "per-shot")


def test_rules_refuse_unknown_and_inconsistent_values() -> None:
    with pytest.raises(ValidationError):
        LadderRules(top_vmaf=95)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        LadderRules(top_vmaf_min=96, top_vmaf_max=95)
    with pytest.raises(ValidationError):
        LadderRules(min_step_ratio=2.5, max_step_ratio=2.0)
    with pytest.raises(ValidationError):
        LadderRules(top_vmaf_aim=97)
    with pytest.raises(ValidationError):
        RULES.max_rungs = 3  # type: ignore[misc]
    assert RULES.aim == 94
    assert LadderRules(top_vmaf_min=90, top_vmaf_max=92).aim == 91


def test_planned_rung_names() -> None:
    rung = select_ladder(TITLE, RULES, "per-shot")[0]
    assert rung.name == "234p_145k"
