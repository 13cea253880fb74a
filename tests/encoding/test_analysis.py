"""The ladder analysis as `reelflow ladder` runs it, and the pieces the flow shares with it."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from reelflow.encoding.analysis import (
    MAX_CRF_SHIFT,
    LadderAnalysis,
    crf_shift,
    crf_slope,
    recheck_shift,
    rung_file_name,
    shifted_rung,
    shot_crfs,
    with_feedback,
    with_recheck,
)
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


# --- feedback from the first final encode ---------------------------------------------------------

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


def test_feedback_keeps_a_plan_that_held_and_counts_only_the_probe_vmaf() -> None:
    points = [_unit(0, 2.0, {20: 90, 24: 86, 28: 82}), _unit(1, 2.0, {20: 92, 24: 88, 28: 84})]
    rungs = [_rung(360, [26, 27], 84.0), _rung(360, [21, 22], 89.0)]
    config = load_settings(None).ladder
    kept = with_feedback(_analysis(rungs, points), _score(83.7), probe_encode_cpu_s=9.0, config=config)
    assert kept.rungs == tuple(rungs) and kept.feedback is not None and not kept.feedback.applied
    assert kept.feedback.error == pytest.approx(0.3) and kept.feedback_cpu_s == 0.5
    assert kept.cpu_s == pytest.approx(2.0 + 0.5)           # trials (1 per unit) and the probe's VMAF
    # ... unless that VMAF is the bottom rung's delivered score, which the report pays for anyway
    reused = with_feedback(_analysis(rungs, points), _score(83.7), 9.0, config, score_is_delivered=True)
    assert reused.feedback_cpu_s == 0.0 and reused.rungs == tuple(rungs)


def test_feedback_moves_every_rung_by_the_probe_error_between_its_slope_and_the_probes() -> None:
    # slope -1/CRF around the bottom rung's CRFs, -2/CRF around the top rung's: the top moves by
    # 2 VMAF over sqrt(1 x 2), between a uniform CRF shift (2) and the error at its own slope (1)
    points = [_unit(0, 2.0, {20: 96, 24: 88, 28: 84}), _unit(1, 2.0, {20: 96, 24: 88, 28: 84})]
    rungs = [_rung(360, [26, 26], 86.0), _rung(360, [22, 22], 92.0)]
    moved = with_feedback(_analysis(rungs, points), _score(84.0), probe_encode_cpu_s=9.0,
                          config=load_settings(None).ladder)
    assert moved.feedback is not None and moved.feedback.applied and moved.feedback.error == pytest.approx(2.0)
    assert moved.feedback.shifts == pytest.approx((-2.0, -math.sqrt(2)))
    assert [r.crfs for r in moved.rungs] == [(24.0, 24.0), (20.59, 20.59)]
    assert [(r.kbps, r.vmaf) for r in moved.rungs] == [(r.kbps, r.vmaf) for r in rungs]  # the aim stays
    assert moved.feedback_cpu_s == pytest.approx(9.5)       # the discarded probe encode is analysis
    again = with_feedback(_analysis(rungs, points), _score(84.0), 9.0, load_settings(None).ladder,
                          score_is_delivered=True)
    assert again.feedback_cpu_s == pytest.approx(9.5)       # a discarded probe's score is nobody's delivered one
    assert moved.feedback.to_dict()["crf_shifts"] == [-2.0, -1.41]


def test_recheck_moves_only_a_rung_off_its_plan_by_its_own_miss_and_counts_the_first_encode() -> None:
    points = [_unit(0, 2.0, {20: 96, 24: 88, 28: 84}), _unit(1, 2.0, {20: 96, 24: 88, 28: 84})]
    rungs = [_rung(360, [26, 26], 86.0), dataclasses.replace(_rung(360, [22, 22], 92.0), kbps=600.0)]
    config = load_settings(None).ladder
    assert config.recheck_vmaf == 1.0
    assert recheck_shift(rungs[0], 85.2, points, config) == 0.0          # within 1.0 of the plan: kept
    shift = recheck_shift(rungs[1], 90.5, points, config)                # 1.5 short at -2 VMAF/CRF
    assert shift == pytest.approx(-0.75)
    assert recheck_shift(rungs[1], 94.0, points, config) == pytest.approx(1.0)   # over the plan: cheaper
    assert recheck_shift(rungs[1], 80.0, points, config.model_copy(update={"recheck_vmaf": None})) == 0.0
    before = _analysis(rungs, points)
    after = with_recheck(before, rungs[1].name, shift, first_vmaf=90.5, first_cpu_s=7.0)
    assert after.rungs[0] == rungs[0] and after.rungs[1].crfs == (21.25, 21.25)
    assert (after.rungs[1].kbps, after.rungs[1].vmaf) == (rungs[1].kbps, rungs[1].vmaf)   # the aim stays
    assert after.recheck_cpu_s == 7.0 and after.cpu_s == pytest.approx(before.cpu_s + 7.0)
    assert after.rechecks[0].to_dict() == {"rung": rungs[1].name, "planned_vmaf": 92.0, "first_vmaf": 90.5,
                                           "first_error": 1.5, "crf_shift": -0.75, "cpu_s": 7.0}
    with pytest.raises(StageError, match="not in the ladder"):
        with_recheck(before, "1080p_9000k", -1.0, 80.0, 1.0)


def test_feedback_needs_a_rung() -> None:
    with pytest.raises(StageError, match="planned rung"):
        with_feedback(_analysis([], []), _score(80.0), 1.0, load_settings(None).ladder)
