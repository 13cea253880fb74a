"""The ladder analysis as `reelflow ladder` runs it, and the pieces the flow shares with it."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest

from reelflow.encoding.analysis import (
    MAX_CRF_SHIFT,
    Delivered,
    LadderAnalysis,
    crf_shift,
    crf_slope,
    deliver_rungs,
    meets_top_band,
    piece_groups,
    recheck_shift,
    rung_file_name,
    shifted_rung,
    shot_crfs,
)
from reelflow.encoding.encode import Rendition, ShotCrf
from reelflow.encoding.hull import RdPoint, ShotPoints
from reelflow.encoding.ladder import PlannedRung, ShotPlan
from reelflow.encoding.shots import Shot
from reelflow.encoding.trials import ShotTrials
from reelflow.encoding.vmaf import VmafResult
from reelflow.errors import StageError
from reelflow.infra.settings import load_settings

TEST_CONFIG = ('[encode]\npreset = "veryfast"\n'
               '[trials]\npreset = "ultrafast"\nfinal_preset = "veryfast"\nx264_params = ""\n')


def reelflow(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "reelflow.toml"
    config.write_text(TEST_CONFIG + f'[storage]\nwork_dir = "{tmp_path / "work"}"\n')
    env = {**os.environ, "REELFLOW_CONFIG": str(config)}
    return subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True, env=env,
                          check=False)


def _shots(bounds: list[int]) -> list[Shot]:
    return [Shot(index=i, start_frame=a, end_frame=b, start_s=a / 24, end_s=b / 24, boundary="cut" if i else "start")
            for i, (a, b) in enumerate(pairwise(bounds))]


def test_cli_ladder_json_and_plot(caminandes: Path, tmp_path: Path) -> None:
    plot = tmp_path / "ladder.png"
    done = reelflow("ladder", str(caminandes), "--mode", "per-title", "--json", "--plot", str(plot), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["mode"] == "per-title" and result["codec"] == "h264"
    rungs = result["rungs"]
    assert len(rungs) >= 2
    assert [r["kbps"] for r in rungs] == sorted(r["kbps"] for r in rungs)
    assert [r["vmaf"] for r in rungs] == sorted(r["vmaf"] for r in rungs)
    assert all(r["height"] <= 360 and 0 < r["vmaf"] <= 100 for r in rungs)
    assert all(len(set(r["crfs"])) == 1 for r in rungs)  # per-title: one CRF for every shot of a rung
    assert result["analysis_cpu_s"] > 0 and result["shots"] >= 1
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list((tmp_path / "work").iterdir())  # the trial files are gone


def test_cli_ladder_fixed_mode_lists_the_reference_ladder(caminandes: Path, tmp_path: Path) -> None:
    done = reelflow("ladder", str(caminandes), "--mode", "fixed", "--json", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert [(r["height"], r["kbps"], r["vmaf"]) for r in result["rungs"]] == [(234, 145, None), (360, 365, None)]
    assert result["analysis_cpu_s"] == 0


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--mode", "per-scene"], 2, "per-scene"),
    (["--codec", "vp9"], 2, "vp9"),
    (["--mode", "fixed", "--plot", "x.png"], 2, "fixed ladder tries nothing"),
])
def test_cli_ladder_bad_options(caminandes: Path, tmp_path: Path, args: list[str], code: int, message: str) -> None:
    done = reelflow("ladder", str(caminandes), *args, tmp_path=tmp_path)
    assert done.returncode == code and message in done.stderr
    assert "Traceback" not in done.stderr


def test_cli_ladder_missing_source(tmp_path: Path) -> None:
    done = reelflow("ladder", str(tmp_path / "nope.mov"), tmp_path=tmp_path)
    assert done.returncode == 1 and "reelflow: error:" in done.stderr and "Traceback" not in done.stderr


def test_shot_crfs_follow_the_frames_whatever_the_plan_order() -> None:
    shots = _shots([0, 30, 75, 120])
    rung = PlannedRung(640, 360, 500.0, 90.0, (ShotPlan(2, 25.5, 400, 91), ShotPlan(0, 22.0, 600, 89),
                                              ShotPlan(1, 30.0, 450, 90)))
    pieces = shot_crfs(rung, shots)
    assert [(p.start_frame, p.end_frame, p.crf) for p in pieces] == [(0, 30, 22.0), (30, 75, 30.0), (75, 120, 25.5)]
    with pytest.raises(StageError, match="other shots"):
        shot_crfs(rung, shots[:2])


def test_rung_file_names_change_with_the_plan() -> None:
    a = PlannedRung(640, 360, 500.0, 90.0, (ShotPlan(0, 22.0, 600, 89),))
    b = PlannedRung(640, 360, 500.0, 90.0, (ShotPlan(0, 22.5, 600, 89),))
    assert rung_file_name(a).startswith("360p_500k-") and rung_file_name(a) != rung_file_name(b)


# --- the closed loop over the final encodes ---------------------------------------------------------

def _unit(index: int, duration_s: float, vmaf_at_crf: dict[int, float], height: int = 360) -> ShotPoints:
    return ShotPoints(index=index, duration_s=duration_s,
                      points=tuple(RdPoint(kbps=2000 * 0.9 ** crf, vmaf=v, width=640, height=height, crf=crf)
                                   for crf, v in vmaf_at_crf.items()))


def _rung(height: int, crfs: list[float], vmaf: float) -> PlannedRung:
    return PlannedRung(width=640, height=height, kbps=300.0, vmaf=vmaf,
                       shots=tuple(ShotPlan(index=i, crf=c, kbps=300.0, vmaf=vmaf) for i, c in enumerate(crfs)))


def _analysis(rungs: list[PlannedRung], points: list[ShotPoints]) -> LadderAnalysis:
    return LadderAnalysis(mode="per-shot", plan=None, rungs=tuple(rungs),
                          shots=tuple(ShotTrials(points=p, trials=(), cpu_s=1.0) for p in points))


def _score(mean: float, cpu_s: float = 0.5) -> VmafResult:
    return VmafResult(mean=mean, harmonic_mean=mean, min=mean, p5=mean, frames=22, cpu_s=cpu_s)


def test_crf_slope_is_the_duration_weighted_slope_around_each_planned_crf() -> None:
    # unit 0 loses 1 VMAF per CRF, unit 1 (three times as long) 2 per CRF between 24 and 28
    points = [_unit(0, 1.0, {20: 90, 24: 86, 28: 82}), _unit(1, 3.0, {20: 95, 24: 90, 28: 82})]
    assert crf_slope(_rung(360, [22.5, 25.0], 85), points) == pytest.approx((1 * -1 + 3 * -2) / 4)
    assert crf_slope(_rung(720, [22.5, 25.0], 85), points) is None      # nothing tried at that height
    # carried beyond the CRFs tried (or onto the last one): the slope of the two nearest points
    assert crf_slope(_rung(360, [28.0, 19.0], 85), points) == pytest.approx((1 * -1 + 3 * -1.25) / 4)
    assert crf_slope(_rung(360, [29.5, 29.5], 85), points) == pytest.approx((1 * -1 + 3 * -2) / 4)


def test_crf_shift_makes_up_the_error_and_is_bounded() -> None:
    assert crf_shift(2.0, -0.5) == pytest.approx(-4.0)      # 2 VMAF short: 4 CRF lower
    assert crf_shift(-1.0, -0.5) == pytest.approx(2.0)      # 1 VMAF over the plan: 2 CRF higher
    assert crf_shift(3.0, -0.1) == -MAX_CRF_SHIFT           # a flat curve does not send the CRF to 0
    assert crf_shift(3.0, None) == 0.0 and crf_shift(3.0, 0.2) == 0.0


def test_shifted_rung_keeps_the_plan_and_the_crf_range() -> None:
    rung = _rung(360, [1.0, 30.0, 50.5], 80)
    moved = shifted_rung(rung, 2.0)
    assert moved.crfs == (3.0, 32.0, 51.0) and (moved.kbps, moved.vmaf, moved.height) == (rung.kbps, 80, 360)
    assert shifted_rung(rung, -2.0).crfs == (0.0, 28.0, 48.5)
    assert rung_file_name(moved) != rung_file_name(rung)     # a moved rung is a different encode


class _Encoder:
    """A model of the final encodes for the closed loop: a rung at CRF c delivers the trials' VMAF at c
    (the units' points, linear between) minus the title's error at that rung (``misses``, by height
    then CRF order: what the trials got wrong); each encode costs 3 CPU s and its VMAF 0.5."""

    def __init__(self, points: list[ShotPoints], misses: dict[str, float], quick_bias: float = 0.0) -> None:
        self.points, self.misses, self.encoded = points, misses, []
        self.quick_bias, self.measured, self.quick_steps = quick_bias, [], []

    def encode(self, rung: PlannedRung) -> Rendition:
        self.encoded.append((rung.name, rung.crfs))
        return Rendition(kind="video", path=Path(f"/nowhere/{rung_file_name(rung)}"), codec="h264", kbps=rung.kbps,
                         duration_s=4.0, width=rung.width, height=rung.height, target_kbps=round(rung.kbps),
                         cpu_s=3.0)

    def measure(self, rendition: Rendition) -> Delivered:
        name, crfs = self.encoded[-1]
        vmafs = []
        for unit, crf in zip(self.points, crfs, strict=True):
            at = sorted((p.crf, p.vmaf) for p in unit.points)
            lo = max((c for c in at if c[0] <= crf), default=at[0])
            hi = min((c for c in at if c[0] > crf), default=at[-1])
            vmafs.append(lo[1] if hi[0] == lo[0] else lo[1] + (crf - lo[0]) * (hi[1] - lo[1]) / (hi[0] - lo[0]))
        mean = sum(vmafs) / len(vmafs) - self.misses[name]
        self.measured.append(self.encoded[-1])
        return Delivered(kbps=rendition.kbps, vmaf=_score(mean), shot_kbps=(), shot_vmaf=())

    def quick(self, rendition: Rendition, step: int) -> VmafResult:
        """The subsampled check: the full score off by ``quick_bias``, at 0.2 CPU s."""
        self.quick_steps.append(step)
        full = self.measure(rendition).vmaf.mean
        self.measured.pop()
        return _score(full + self.quick_bias, cpu_s=0.2)


def _ladder(vmafs: list[float], crfs: list[float]) -> tuple[list[PlannedRung], list[ShotPoints]]:
    # two units alike, -2 VMAF per CRF everywhere: VMAF 100 - 2 (CRF - 14)
    points = [_unit(i, 2.0, {c: 100 - 2 * (c - 14) for c in range(14, 40, 2)}) for i in range(2)]
    rungs = [dataclasses.replace(_rung(360, [c, c], v), kbps=150.0 * 1.7 ** i)
             for i, (v, c) in enumerate(zip(vmafs, crfs, strict=True))]
    return rungs, points


def test_deliver_rungs_carries_each_miss_into_the_next_rung_and_rechecks_what_still_misses() -> None:
    rungs, points = _ladder([70.0, 78.0, 86.0, 94.0], [29.0, 25.0, 21.0, 17.0])
    # the trials over-estimate the title by a miss that grows with the rung, as on Tears of Steel
    model = _Encoder(points, {rungs[0].name: 0.8, rungs[1].name: 1.4, rungs[2].name: 3.0, rungs[3].name: 3.3})
    config = load_settings(None).ladder
    before = _analysis(rungs, points)
    after, made, delivered = deliver_rungs(before, model.encode, model.measure, config)
    checks = {c.rung: c for c in after.checks}
    assert [c.rung for c in after.checks] == [r.name for r in rungs]              # cheapest first
    bottom, second, third, top = (checks[r.name] for r in rungs)
    # the bottom rung: 0.8 short, within 1.0, kept; nothing carried into it
    assert (bottom.carried_shift, bottom.first_error, bottom.rechecked) == (0.0, pytest.approx(0.8), False)
    # the second carries the bottom's 0.8 (over feedback_vmaf 0.5): 0.4 CRF lower, then 0.6 short
    assert second.carried_vmaf == pytest.approx(0.8) and second.carried_shift == pytest.approx(-0.4)
    assert second.first_error == pytest.approx(0.6) and not second.rechecked
    # the third carries 1.4 and still misses by 1.6: encoded again at its own miss (0.8 CRF lower)
    assert third.carried_vmaf == pytest.approx(1.4) and third.first_error == pytest.approx(1.6)
    assert third.rechecked and third.recheck_shift == pytest.approx(-0.8) and third.cpu_s == pytest.approx(3.5)
    # the top carries what the third missed at its plan (3.0, not the 0.0 left after its recheck)
    assert top.carried_vmaf == pytest.approx(3.0) and top.first_error == pytest.approx(0.3) and not top.rechecked
    assert [r.crfs for r in after.rungs] == [(29.0, 29.0), (24.6, 24.6), (19.5, 19.5), (15.5, 15.5)]
    assert [(r.kbps, r.vmaf) for r in after.rungs] == [(r.kbps, r.vmaf) for r in rungs]   # the aim stays
    assert [abs(r.vmaf - delivered[r.name].vmaf.mean) <= 1.0 for r in after.rungs] == [True] * 4
    assert len(model.encoded) == 5 and set(made) == {r.name for r in rungs}
    # only the third's first encode and its VMAF are analysis
    assert after.discarded_cpu_s == pytest.approx(3.5) and after.cpu_s == pytest.approx(before.cpu_s + 3.5)
    assert after.checks[2].to_dict() == {
        "rung": rungs[2].name, "planned_vmaf": 86.0, "carried_vmaf": 1.4, "carried_crf_shift": -0.7,
        "first_vmaf": 84.4, "first_error": 1.6, "rechecked": True, "recheck_crf_shift": -0.8,
        "quick_vmaf": None, "first_vmaf_step": 1, "cpu_s": 3.5}


def test_the_cheapest_rung_is_checked_on_a_subsample_and_encoded_again_before_its_full_score() -> None:
    rungs, points = _ladder([70.0, 78.0, 86.0], [29.0, 25.0, 21.0])
    config = load_settings(None).ladder
    assert config.first_check_subsample == 5
    # the bottom rung 1.6 short (the quick check reads 1.5): encoded again at once, never scored in full
    model = _Encoder(points, {rungs[0].name: 1.6, rungs[1].name: 1.8, rungs[2].name: 1.7}, quick_bias=0.1)
    after, _, delivered = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick)
    bottom, second, _ = after.checks
    assert model.quick_steps == [5]                                      # the cheapest rung only
    assert (bottom.first_step, bottom.quick_vmaf, bottom.first_vmaf) == (5, pytest.approx(68.5), pytest.approx(68.5))
    assert bottom.rechecked and bottom.recheck_shift == pytest.approx(-0.75)
    assert bottom.cpu_s == pytest.approx(3.0 + 0.2)                      # its first encode and the quick check
    assert model.measured == [model.encoded[1], model.encoded[2], model.encoded[3]]   # not the discarded one
    assert second.carried_vmaf == pytest.approx(1.5) and not second.rechecked and second.quick_vmaf is None
    assert after.discarded_cpu_s == pytest.approx(3.2) and len(delivered) == 3
    # 0.6 short (the check reads 0.5): scored in full as every rung is; only the check is analysis
    model = _Encoder(points, {rungs[0].name: 0.6, rungs[1].name: 0.6, rungs[2].name: 0.6}, quick_bias=0.1)
    after, _, _ = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick)
    bottom = after.checks[0]
    assert (bottom.first_step, bottom.first_vmaf, bottom.quick_vmaf) == (1, pytest.approx(69.4), pytest.approx(69.5))
    assert not bottom.rechecked and bottom.cpu_s == pytest.approx(0.2) and len(model.encoded) == 3
    # 0.8 short: within recheck_vmaf, but beyond first_check_vmaf (0.7), so encoded again at once
    assert config.first_check_vmaf == 0.7
    model = _Encoder(points, {rungs[0].name: 0.8, rungs[1].name: 0.0, rungs[2].name: 0.0})
    after, _, _ = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick)
    assert after.checks[0].rechecked and after.checks[0].first_step == 5
    # the check sees 0.6 where the full score finds 1.1: the full score still encodes it again
    model = _Encoder(points, {rungs[0].name: 1.1, rungs[1].name: 0.0, rungs[2].name: 0.0}, quick_bias=0.5)
    after, _, _ = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick)
    assert after.checks[0].rechecked and after.checks[0].first_step == 1
    assert after.checks[0].cpu_s == pytest.approx(3.0 + 0.5 + 0.2)
    # off (step 1): no check
    model = _Encoder(points, {r.name: 1.6 for r in rungs})
    off = config.model_copy(update={"first_check_subsample": 1})
    after, _, _ = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, off, model.quick)
    assert model.quick_steps == [] and after.checks[0].first_step == 1 and after.checks[0].rechecked


def test_deliver_rungs_without_feedback_only_rechecks_and_without_measuring_only_encodes() -> None:
    rungs, points = _ladder([70.0, 78.0], [29.0, 25.0])
    misses = {rungs[0].name: 0.9, rungs[1].name: -1.2}
    config = load_settings(None).ladder.model_copy(update={"feedback": False})
    model = _Encoder(points, misses)
    after, _, delivered = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config)
    assert [c.carried_shift for c in after.checks] == [0.0, 0.0]           # nothing carried
    assert [c.rechecked for c in after.checks] == [False, True]            # 1.2 over the plan: 0.6 CRF higher
    assert after.rungs[1].crfs == (25.6, 25.6) and len(model.encoded) == 3
    blind = _Encoder(points, misses)
    unmeasured = config.model_copy(update={"measure_delivered": False, "feedback": True})
    after, made, delivered = deliver_rungs(_analysis(rungs, points), blind.encode, blind.measure, unmeasured)
    assert after.checks == () and delivered == {} and len(made) == 2 and after.rungs == tuple(rungs)


def test_recheck_shift_is_the_miss_at_the_rungs_own_slope_beyond_the_tolerance() -> None:
    points = [_unit(0, 2.0, {20: 96, 24: 88, 28: 84}), _unit(1, 2.0, {20: 96, 24: 88, 28: 84})]
    rungs = [_rung(360, [26, 26], 86.0), dataclasses.replace(_rung(360, [22, 22], 92.0), kbps=600.0)]
    config = load_settings(None).ladder
    assert config.recheck_vmaf == 1.0
    assert recheck_shift(rungs[0], 85.2, points, config) == 0.0          # within 1.0 of the plan: kept
    assert recheck_shift(rungs[1], 90.5, points, config) == pytest.approx(-0.75)   # 1.5 short at -2 VMAF/CRF
    assert recheck_shift(rungs[1], 94.0, points, config) == pytest.approx(1.0)     # over the plan: cheaper
    assert recheck_shift(rungs[1], 80.0, points, config.model_copy(update={"recheck_vmaf": None})) == 0.0


def _pieces(lengths: list[int]) -> list[ShotCrf]:
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    return [ShotCrf(a, a + n, 23.0) for a, n in zip(starts, lengths, strict=True)]


@pytest.mark.parametrize(("lengths", "task_s", "at_least", "groups"), [
    ([240], 60.0, 2, 1),                  # one piece: one task
    ([48] * 5, 60.0, 2, 2),               # a 10 s rung still runs two tasks side by side
    ([96] * 300, 60.0, 2, 20),            # 20 minutes: one task a minute
    ([10, 500, 10, 10], 5.0, 2, 4),       # a long piece alone
])
def test_piece_groups_cover_the_rung_in_order(lengths: list[int], task_s: float, at_least: int,
                                              groups: int) -> None:
    pieces = _pieces(lengths)
    made = piece_groups(pieces, Fraction(24), task_s, at_least)
    assert len(made) == groups and all(made)
    assert [p for g in made for p in g] == pieces        # every piece once, in order
    if groups > 2:
        sizes = [sum(p.end_frame - p.start_frame for p in g) for g in made]
        assert max(sizes) <= 2 * min(sizes) or len(set(lengths)) > 1   # even shares where pieces allow


def test_half_rate_rungs_are_encoded_at_their_plan_scored_and_neither_checked_nor_carried() -> None:
    """A half-rate rung's plan is a full-rate prediction: its big miss (the lost motion) moves no CRF,
    and the first full-rate rung above it is checked as the cheapest rung is (quickly first)."""
    rungs, points = _ladder([70.0, 78.0, 86.0], [29.0, 25.0, 21.0])
    config = load_settings(None).ladder
    model = _Encoder(points, {rungs[0].name: 6.0, rungs[1].name: 0.6, rungs[2].name: 0.2})
    half = {rungs[0].name}
    after, made, delivered = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick,
                                           half_rate_rung=lambda r: r.name in half)
    assert model.encoded[0] == (rungs[0].name, rungs[0].crfs) and after.rungs[0] == rungs[0]    # at its plan
    assert delivered[rungs[0].name].vmaf.mean == pytest.approx(64.0) and set(made) == {r.name for r in rungs}
    assert [c.rung for c in after.checks] == [rungs[1].name, rungs[2].name]
    second, third = after.checks
    assert (second.carried_vmaf, second.carried_shift) == (0.0, 0.0)           # nothing carried
    assert model.quick_steps == [5] and second.quick_vmaf is not None and not second.rechecked
    assert third.carried_vmaf == pytest.approx(0.6)
    assert len(model.encoded) == 3


def test_a_rung_aimed_at_the_top_band_is_kept_where_it_meets_the_band() -> None:
    config = load_settings(None).ladder
    assert (config.top_vmaf_min, config.top_vmaf_max, config.recheck_vmaf) == (93.0, 95.0, 1.0)
    planned_above, planned_in, below = _rung(360, [20], 96.5), _rung(360, [20], 94.0), _rung(360, [24], 88.0)
    # inside the band: kept whatever the plan said, top or not
    assert meets_top_band(planned_above, 94.8, config, top=False)
    assert meets_top_band(planned_in, 93.1, config, top=False)
    # above it: the top rung up to recheck_vmaf over top_vmaf_max, a rung below the top never
    assert meets_top_band(planned_in, 95.9, config, top=True)
    assert not meets_top_band(planned_in, 96.2, config, top=True)
    assert not meets_top_band(planned_in, 95.7, config, top=False)
    # below the band: not met, and a rung planned below the band is not aimed at it (unless it is the top)
    assert not meets_top_band(planned_in, 92.8, config, top=True)
    assert not meets_top_band(below, 93.5, config, top=False) and meets_top_band(below, 93.5, config, top=True)
    # recheck_shift follows: a band that is met moves nothing however far the plan was
    points = [_unit(0, 2.0, {c: 100 - 2 * (c - 14) for c in range(14, 40, 2)})]
    assert recheck_shift(planned_above, 95.2, points, config, top=True) == 0.0      # HEVC's 2160p, session 14
    assert recheck_shift(planned_above, 94.8, points, config) == 0.0                 # planned above: aimed at it
    assert recheck_shift(planned_above, 95.2, points, config) == pytest.approx(-0.65)   # above it, not the top
    assert recheck_shift(planned_in, 95.9, points, config) == pytest.approx(0.95)    # below the top: re-encoded
    assert recheck_shift(planned_in, 96.5, points, config, top=True) == pytest.approx(1.25)
    assert recheck_shift(planned_in, 92.5, points, config, top=True) == pytest.approx(-0.75)   # well below its plan


def test_the_closed_loop_keeps_top_rungs_that_land_in_the_band() -> None:
    """A top rung planned above the band (the step rule) that reads inside it, and one planned in the band
    that reads a little above it, are encoded once; the same misses below the top are encoded again."""
    config = load_settings(None).ladder
    rungs, points = _ladder([70.0, 86.0, 96.5], [29.0, 21.0, 15.0])    # the top's CRF gives 98.0 on the trials
    # the top reads 95.3: 1.2 under its plan, beyond the quick check's and the recheck's bounds, inside the band
    model = _Encoder(points, {rungs[0].name: 0.0, rungs[1].name: 0.0, rungs[2].name: 2.7})
    after, _, delivered = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick)
    assert len(model.encoded) == 3 and not any(c.rechecked for c in after.checks)
    assert delivered[rungs[2].name].vmaf.mean == pytest.approx(95.3) and after.discarded_cpu_s == pytest.approx(0.2)
    # planned at 94.0, reads 95.6: kept on the top; the same rung with another above it is encoded again
    rungs, points = _ladder([70.0, 86.0, 94.0], [29.0, 21.0, 17.0])
    model = _Encoder(points, {rungs[0].name: 0.0, rungs[1].name: 0.0, rungs[2].name: -1.6})
    after, _, _ = deliver_rungs(_analysis(rungs, points), model.encode, model.measure, config, model.quick)
    assert len(model.encoded) == 3 and not after.checks[-1].rechecked
    above = dataclasses.replace(_rung(360, [14.0, 14.0], 99.0), kbps=2000.0)
    model = _Encoder(points, {rungs[0].name: 0.0, rungs[1].name: 0.0, rungs[2].name: -1.6, above.name: 0.0})
    after, _, _ = deliver_rungs(_analysis([*rungs, above], points), model.encode, model.measure, config, model.quick)
    assert after.checks[2].rechecked and after.checks[2].recheck_shift == pytest.approx(0.8)
