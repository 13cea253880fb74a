"""Per-trace PNG time series of simulated sessions: throughput, chosen bitrate and buffer."""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelflow.errors import ConfigError
from reelflow.player.simulator import Session, Trace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Series:
    """One line of a panel: x in seconds of session time."""

    label: str
    x: tuple[float, ...]
    y: tuple[float, ...]


def throughput_series(trace: Trace, until_s: float) -> Series:
    """The trace's throughput as a step line over session time, laps repeated as the simulator does.

    The session starts at the trace's first time stamp; later laps start at time 0 of the trace
    with its second sample (the reference simulator's rule).
    """
    x: list[float] = []
    y: list[float] = []
    offset = -trace.times_s[0]
    start = trace.times_s[0]
    while True:
        for t, m in zip(trace.times_s[1:], trace.mbps[1:], strict=True):
            x += [start + offset, t + offset]
            y += [m, m]
            start = t
            if t + offset >= until_s:
                return Series("throughput", tuple(x), tuple(y))
        offset += trace.times_s[-1]
        start = 0.0


def bitrate_series(session: Session) -> Series:
    """Chosen bitrate (Mbit/s) as a step line: each rung from its request to the next request."""
    x: list[float] = []
    y: list[float] = []
    for c in session.chunks:
        x += [c.start_s, c.start_s + c.download_s + c.sleep_s]
        y += [c.kbps / 1000, c.kbps / 1000]
    return Series(session.rule, tuple(x), tuple(y))


def buffer_series(session: Session) -> Series:
    """Buffer level (s) at each request and each arrival: it drains linearly in between."""
    x: list[float] = [0.0]
    y: list[float] = [0.0]
    for c in session.chunks:
        before = y[-1]
        arrive = c.start_s + c.download_s
        if before < c.download_s:          # ran dry: flat at zero until the segment arrives
            x.append(c.start_s + before)
            y.append(0.0)
        x += [arrive, arrive, arrive + c.sleep_s]
        y += [max(before - c.download_s, 0.0), c.buffer_s + c.sleep_s, c.buffer_s]
    return Series(session.rule, tuple(x), tuple(y))


def require_matplotlib() -> Any:
    """matplotlib's pyplot with a file-only backend; it is optional, so say how to get it."""
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib, which is not installed (pip install matplotlib)") from exc
    matplotlib.use("Agg")      # no display on a server
    return importlib.import_module("matplotlib.pyplot")


def _filename(trace: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", trace) + ".png"


def write_plot(path: Path, trace: Trace, sessions: Sequence[Session]) -> Path:
    """One PNG: three stacked panels sharing the time axis, one line per rule."""
    plt = require_matplotlib()
    until = max(s.end_s for s in sessions)
    fig, (ax_tp, ax_rate, ax_buf) = plt.subplots(3, 1, sharex=True, figsize=(10, 7))
    tp = throughput_series(trace, until)
    ax_tp.plot(tp.x, tp.y, color="grey", lw=1)
    ax_tp.set_ylabel("throughput Mbit/s")
    for session in sessions:
        rate, buf = bitrate_series(session), buffer_series(session)
        ax_rate.plot(rate.x, rate.y, lw=1.2, label=f"{session.rule} ({session.qoe_per_chunk:.2f})")
        ax_buf.plot(buf.x, buf.y, lw=1.2, label=session.rule)
    ax_rate.set_ylabel("bitrate Mbit/s")
    ax_rate.legend(loc="upper left", fontsize="small", title="rule (QoE_lin/chunk)")
    ax_buf.set_ylabel("buffer s")
    ax_buf.set_xlabel("session time s")
    ax_tp.set_title(trace.name)
    ax_tp.set_xlim(0, until)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_plots(folder: Path, traces: Sequence[Trace], results: Mapping[str, Sequence[Session]]) -> list[Path]:
    """A PNG per trace in ``folder`` (created), with every rule's session over that trace."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for i, trace in enumerate(traces):
        sessions = [by_trace[i] for by_trace in results.values()]
        written.append(write_plot(folder / _filename(trace.name), trace, sessions))
    log.info("wrote %d plots to %s", len(written), folder)
    return written
