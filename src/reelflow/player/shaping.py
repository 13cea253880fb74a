"""Download-rate shaping to a recorded throughput trace (``reelflow play --trace``).

The link is modelled as the simulator's is: bytes move at the trace's rate while a transfer is
on, and capacity that nobody uses (the player idles with a full buffer) is lost, not saved up.
The player reads each response in chunks and, after each chunk, sleeps until the trace's
cumulative capacity since the transfer started covers the bytes read so far. The real network
under the shaper is assumed to be much faster than the trace (true on 127.0.0.1); when it is
not, the slower of the two wins, as on a real path.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from reelflow.player.simulator import Trace, load_trace

__all__ = ["Shaper", "load_trace", "transfer_end"]


def _period(trace: Trace) -> float:
    return trace.times_s[-1] - trace.times_s[0]


def transfer_end(trace: Trace, start_s: float, nbytes: float) -> float:
    """Trace time at which ``nbytes`` started at ``start_s`` have been moved (the trace repeats).

    Sample i's rate holds from ``times_s[i-1]`` to ``times_s[i]``; times are taken relative to
    the first sample, and a session longer than the trace starts it again.
    """
    if nbytes <= 0:
        return start_s
    period = _period(trace)
    t0 = trace.times_s[0]
    lap, offset = divmod(start_s, period)
    now = start_s
    left = nbytes * 8.0          # bits
    while True:
        for a, b, mbps in zip(trace.times_s, trace.times_s[1:], trace.mbps[1:], strict=False):
            a, b = a - t0, b - t0
            if b <= offset:
                continue
            span = b - max(a, offset)
            rate = mbps * 1e6
            if rate > 0 and rate * span >= left:
                return now + left / rate
            left -= rate * span
            now += span
            offset = b
        lap += 1
        offset = 0.0


class Shaper:
    """Paces reads so that the bytes delivered follow the trace; one per playback session."""

    def __init__(self, trace: Trace, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.trace = trace
        self.clock = clock
        self.sleep = sleep
        self.origin = clock()
        self.link_s = 0.0            # trace time up to which the link's capacity has been used
        self._start_s = 0.0
        self._moved = 0

    @classmethod
    def from_file(cls, path: Path) -> Shaper:
        return cls(load_trace(path))

    def begin(self) -> None:
        """A transfer starts now: capacity while the link sat idle is gone."""
        self._start_s = max(self.link_s, self.clock() - self.origin)
        self._moved = 0

    def delivered(self, nbytes: int) -> None:
        """``nbytes`` more were read; wait until the trace would have delivered them."""
        self._moved += nbytes
        self.link_s = transfer_end(self.trace, self._start_s, self._moved)
        wait = self.origin + self.link_s - self.clock()
        if wait > 0:
            self.sleep(wait)

    def mbps_now(self) -> float:
        """The trace's rate at the current time (for the display)."""
        t = (self.clock() - self.origin) % _period(self.trace) + self.trace.times_s[0]
        for b, mbps in zip(self.trace.times_s[1:], self.trace.mbps[1:], strict=False):
            if t <= b:
                return mbps
        return self.trace.mbps[-1]
