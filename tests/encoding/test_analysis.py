"""The ladder analysis as `reelflow ladder` runs it, and the pieces the flow shares with it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest

from reelflow.encoding.analysis import rung_file_name, shot_crfs
from reelflow.encoding.ladder import PlannedRung, ShotPlan
from reelflow.encoding.shots import Shot
from reelflow.errors import StageError

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
