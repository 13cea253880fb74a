"""Stage progress in the run's log: percent, time taken and time left at the pace so far."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from prefect import flow

from reelflow.encoding.encode import Rendition
from reelflow.encoding.ladder import PlannedRung
from reelflow.flows.ingest import RungStageProgress, _duration, progress_logger, rung_stage_left_cpu


def test_durations_read_as_a_person_would() -> None:
    assert [_duration(s) for s in (4.2, 75, 3725)] == ["4s", "1m15s", "1h02m"]


def test_progress_lines_carry_percent_and_time_left(caplog: pytest.LogCaptureFixture) -> None:
    @flow(name="progress-test")
    def stage() -> None:
        report = progress_logger("encode 720p", 100.0)
        for done in (5, 10, 20, 55, 100):
            report(done)

    with caplog.at_level(logging.INFO):
        stage()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("encode 720p:")]
    assert [line.split(":")[1].split("%")[0].strip() for line in lines] == ["10", "20", "55", "100"]
    assert all(" left" in line and " in " in line for line in lines)


def test_rungs_left_cost_their_pixels_at_the_pace_of_those_made() -> None:
    # made: 100 pixels for 10 CPU-s of encode, 4 of VMAF; left: one rung of 300 pixels and one of 50
    assert rung_stage_left_cpu([(100.0, 10.0, 4.0)], [300.0, 50.0]) == pytest.approx(30 + 4 + 5 + 4)
    assert rung_stage_left_cpu([], [300.0]) == 0.0


def test_rung_stage_lines_count_rungs_and_spend_each_encode_once(caplog: pytest.LogCaptureFixture,
                                                                 tmp_path: Path) -> None:
    low = PlannedRung(width=640, height=360, kbps=300, vmaf=70, shots=())
    top = PlannedRung(width=1280, height=720, kbps=1200, vmaf=90, shots=())

    def made(name: str, cpu: float) -> Rendition:
        return Rendition(kind="video", path=tmp_path / name, codec="avc1", kbps=300, duration_s=4.0, cpu_s=cpu)

    @flow(name="rung-progress-test")
    def stage() -> None:
        progress = RungStageProgress("h264 rungs", [low, top], 100, lambda rung: False)
        first = made("a.mp4", 10.0)
        progress.scored(low.name, first, 2.0, made=False)      # the quick check: nothing made yet
        progress.scored(low.name, first, 4.0, made=True)       # the same encode scored on every frame

    with caplog.at_level(logging.INFO):
        stage()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("h264 rungs:")]
    assert len(lines) == 1
    # spent 10 + 2 + 4 = 16; left: 4x the pixels at the made rung's pace (40) plus its VMAF (6): 16/62
    assert "360p_300k made, 1 of 2 rungs, 26% of the rung stage's CPU" in lines[0]
    assert lines[0].endswith(" left")
