"""Trace shaping and the playback clock, with hand-computed times (no network, a fake clock)."""

from __future__ import annotations

import pytest

from reelflow.player.player import PlaybackClock
from reelflow.player.shaping import Shaper, transfer_end
from reelflow.player.simulator import Trace

# 1 Mbit/s from 0 to 1 s, then 3 Mbit/s from 1 to 2 s; then it repeats
TRACE = Trace("t", (0.0, 1.0, 2.0), (0.0, 1.0, 3.0))
MBIT = 125_000   # bytes


@pytest.mark.parametrize(("start", "nbytes", "end"), [
    (0.0, 0, 0.0),
    (0.0, MBIT, 1.0),
    (0.0, 2 * MBIT, 1.0 + 1 / 3),
    (0.5, MBIT, 1.0 + 0.5 / 3),          # half a Mbit in the slow half, the rest at 3 Mbit/s
    (0.0, 5 * MBIT, 3.0),                # 4 Mbit in the first lap, 1 more at the start of the next
    (4.5, MBIT / 2, 5.0),                # third lap, slow part
])
def test_transfer_end_follows_the_cumulative_capacity(start: float, nbytes: float, end: float) -> None:
    assert transfer_end(TRACE, start, nbytes) == pytest.approx(end)


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_shaper_sleeps_until_the_trace_delivered_the_bytes_and_idle_capacity_is_lost() -> None:
    t = FakeTime()
    shaper = Shaper(TRACE, clock=t.clock, sleep=t.sleep)
    shaper.begin()
    for _ in range(4):
        shaper.delivered(MBIT // 4)
    assert t.now == pytest.approx(101.0)
    t.now = 104.0                         # idle for three seconds: that capacity is not saved up
    shaper.begin()
    shaper.delivered(MBIT)                # 4.0 starts a lap: 1 Mbit/s for a second
    assert t.now == pytest.approx(105.0)
    shaper.begin()
    shaper.delivered(MBIT)                # straight on, in the fast part
    assert t.now == pytest.approx(105.0 + 1 / 3)


def test_clock_drains_in_wall_time_and_records_a_stall_from_when_the_buffer_ran_dry() -> None:
    t = FakeTime()
    clock = PlaybackClock(0.0, 6.0, clock=t.clock)
    t.now += 1.5                           # startup
    clock.append(2.0)
    assert clock.started_at == pytest.approx(101.5) and clock.buffer_s == 2.0
    t.now += 1.0
    clock.advance()
    assert clock.position_s == pytest.approx(1.0) and clock.stalled_since is None
    t.now += 2.5                           # ran dry 1 s later, at 103.5
    clock.advance()
    assert clock.position_s == 2.0 and clock.stalled_since == pytest.approx(103.5)
    clock.append(4.0)                      # arrived at 105: a 1.5 s stall at 2.0
    assert [(s.at_s, s.duration_s) for s in clock.stalls] == [(2.0, 1.5)]
    clock.append(6.0)
    t.now += 10
    clock.advance()
    assert clock.finished and clock.position_s == 6.0 and len(clock.stalls) == 1   # the end is not a stall
