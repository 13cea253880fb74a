"""Stage progress in the run's log: percent, time taken and time left at the pace so far."""

from __future__ import annotations

import logging

import pytest
from prefect import flow

from reelflow.flows.ingest import _duration, progress_logger


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
