"""Trace-driven ABR simulator: Pensieve's chunk-level test environment, QoE_lin and summaries.

Semantics (pinned against Pensieve's ``test/fixed_env.py`` and checked against its published
per-chunk logs, see docs/benchmarks.md):

- a segment's download takes the time to move its bytes at 95% of the trace's throughput,
  integrated over the trace's samples, plus one 80 ms round trip; the trace loops when the
  session outlasts it (a new lap starts at time 0 with the second sample, as the reference does);
- the buffer drains in real time during a download; playback stalls when it runs dry;
- the segment then adds its duration; over the 60 s cap the player sleeps in 0.5 s steps (the
  trace's clock runs on) until the buffer is back under the cap;
- the first segment is fetched at rung 1 whatever the rule (Pensieve's DEFAULT_QUALITY); its
  download is the startup delay, counted as that chunk's rebuffering as the reference does;
- QoE_lin per chunk of a session is the mean of the per-chunk terms of chunks 2..48, i.e. the
  startup chunk is left out, as in the published figures' evaluation script (comyco-lin's
  ``plot.py``: ``np.mean(reward[1:VIDEO_LEN])``). Startup is reported on its own.
"""

from __future__ import annotations

import json
import logging
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from reelflow.errors import ConfigError, StageError
from reelflow.player.abr import AbrRule, AbrState, DeviceCaps, Download, make_rule

log = logging.getLogger(__name__)

# The six rungs of the envivio test video that the standard traces are used with (kbit/s).
ENVIVIO_KBPS: tuple[float, ...] = (300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0)
STALL_EPSILON_S = 1e-9     # float dust from the buffer arithmetic is not a stall


@dataclass(frozen=True)
class Trace:
    """Throughput over time: ``mbps[i]`` holds from ``times_s[i - 1]`` to ``times_s[i]``."""

    name: str
    times_s: tuple[float, ...]
    mbps: tuple[float, ...]

    def __post_init__(self) -> None:
        if len(self.times_s) != len(self.mbps) or len(self.times_s) < 2:
            raise StageError(f"trace {self.name}: needs at least two (time, Mbit/s) samples")
        if any(b < a for a, b in zip(self.times_s, self.times_s[1:], strict=False)):
            raise StageError(f"trace {self.name}: times go backwards")
        if any(m < 0 for m in self.mbps):
            raise StageError(f"trace {self.name}: negative throughput")
        # Sample 0 only marks the start time; a lap that moves no bytes would never finish a download.
        if not any(m > 0 and b > a for a, b, m in zip(self.times_s, self.times_s[1:], self.mbps[1:], strict=False)):
            raise StageError(f"trace {self.name}: no throughput to download with")


@dataclass(frozen=True)
class Video:
    """The test video: nominal rung bitrates and the byte size of every segment at every rung."""

    ladder_kbps: tuple[float, ...]
    sizes: tuple[tuple[int, ...], ...]          # sizes[rung][chunk], bytes
    chunk_s: float = 4.0
    heights: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if not self.sizes or len(self.sizes) != len(self.ladder_kbps):
            raise StageError("one size list per rung is needed")
        if len({len(s) for s in self.sizes}) != 1 or not self.sizes[0]:
            raise StageError("every rung needs the same, non-zero number of segments")

    @property
    def chunks(self) -> int:
        return len(self.sizes[0])


@dataclass(frozen=True)
class SimSetup:
    """The standard comparison setup of ../shared/traces/README.md (Pensieve's test environment)."""

    chunks: int = 48
    buffer_cap_s: float = 60.0
    rtt_s: float = 0.08
    payload_factor: float = 0.95
    drain_step_s: float = 0.5          # over the cap, the player sleeps in these steps
    rebuffer_penalty: float = 4.3      # QoE_lin per second of stall, bitrates in Mbit/s
    smooth_penalty: float = 1.0        # per Mbit/s of change between consecutive chunks
    first_rung: int | None = 1         # Pensieve's DEFAULT_QUALITY; None lets the rule pick chunk 0
    caps: DeviceCaps = field(default_factory=DeviceCaps)


STANDARD = SimSetup()


@dataclass(frozen=True)
class ChunkLog:
    """One segment of a simulated session."""

    index: int
    rung: int
    kbps: float
    bytes: int
    start_s: float            # session clock when the request went out
    download_s: float         # request to last byte, round trip included
    rebuffer_s: float         # playback stalled during it (for chunk 0: the startup delay)
    sleep_s: float            # idle after it because the buffer was over the cap
    buffer_s: float           # after it arrived and after any sleep: what the rule sees next
    reward: float             # this chunk's QoE_lin term

    @property
    def throughput_bps(self) -> float:
        return self.bytes * 8 / self.download_s


@dataclass(frozen=True)
class Session:
    """One rule over one trace, and its metrics."""

    rule: str
    trace: str
    chunk_s: float
    chunks: tuple[ChunkLog, ...]

    @property
    def startup_s(self) -> float:
        return self.chunks[0].download_s

    @property
    def stall_s(self) -> float:
        """Rebuffering after playback started (the startup wait is not a stall)."""
        return sum(c.rebuffer_s for c in self.chunks[1:])

    @property
    def stalled(self) -> bool:
        return any(c.rebuffer_s > STALL_EPSILON_S for c in self.chunks[1:])

    @property
    def qoe_per_chunk(self) -> float:
        """Mean QoE_lin term of chunks 2..n (the startup chunk left out, see the module docstring)."""
        counted = self.chunks[1:] or self.chunks
        return statistics.fmean(c.reward for c in counted)

    @property
    def avg_kbps(self) -> float:
        return statistics.fmean(c.kbps for c in self.chunks)

    @property
    def played_s(self) -> float:
        return len(self.chunks) * self.chunk_s

    @property
    def rebuffer_ratio(self) -> float:
        """Stalled time over stalled plus played time."""
        return self.stall_s / (self.stall_s + self.played_s)

    @property
    def switches(self) -> int:
        return sum(1 for a, b in zip(self.chunks, self.chunks[1:], strict=False) if a.rung != b.rung)

    @property
    def end_s(self) -> float:
        last = self.chunks[-1]
        return last.start_s + last.download_s + last.sleep_s

    def metrics(self) -> dict[str, Any]:
        return {"trace": self.trace, "rule": self.rule, "qoe_per_chunk": self.qoe_per_chunk,
                "avg_kbps": self.avg_kbps, "stall_s": self.stall_s, "rebuffer_ratio": self.rebuffer_ratio,
                "switches": self.switches, "startup_s": self.startup_s}


@dataclass(frozen=True)
class Summary:
    """One rule over a set of traces."""

    rule: str
    sessions: int
    qoe_per_chunk: float         # mean over sessions
    avg_kbps: float              # mean over sessions
    rebuffer_ratio: float        # all stalled time over all stalled plus played time
    no_stall_share: float        # sessions that never stalled after startup
    switches_per_chunk: float    # rung changes over chunks, mean over sessions
    startup_s: float             # mean first-segment download time

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(rule: str, sessions: Sequence[Session]) -> Summary:
    if not sessions:
        raise StageError(f"no sessions to summarise for {rule}")
    stalled = sum(s.stall_s for s in sessions)
    return Summary(
        rule=rule, sessions=len(sessions),
        qoe_per_chunk=statistics.fmean(s.qoe_per_chunk for s in sessions),
        avg_kbps=statistics.fmean(s.avg_kbps for s in sessions),
        rebuffer_ratio=stalled / (stalled + sum(s.played_s for s in sessions)),
        no_stall_share=sum(1 for s in sessions if not s.stalled) / len(sessions),
        switches_per_chunk=statistics.fmean(s.switches / len(s.chunks) for s in sessions),
        startup_s=statistics.fmean(s.startup_s for s in sessions),
    )


class _Link:
    """Pensieve's trace cursor: sample ``ptr`` holds from ``last_s`` to ``times[ptr]``.

    Deliberately the reference code's arithmetic, lap restarts included, because that is what
    makes published figures reproducible.
    """

    def __init__(self, trace: Trace) -> None:
        self.times = trace.times_s
        self.bps = [m * 1e6 for m in trace.mbps]
        self.ptr = 1
        self.last_s = self.times[0]

    def _next(self) -> None:
        self.last_s = self.times[self.ptr]
        self.ptr += 1
        if self.ptr >= len(self.times):
            self.ptr = 1
            self.last_s = 0.0      # the reference restarts at 0, not at times[0]

    def transfer(self, nbytes: int, payload_factor: float) -> float:
        """Seconds of trace time to move ``nbytes`` of payload."""
        bits = nbytes * 8.0
        sent = 0.0
        elapsed = 0.0
        while True:
            rate = self.bps[self.ptr] * payload_factor
            duration = self.times[self.ptr] - self.last_s
            payload = rate * duration
            if sent + payload > bits:
                fraction = (bits - sent) / rate
                self.last_s += fraction
                return elapsed + fraction
            sent += payload
            elapsed += duration
            self._next()

    def idle(self, seconds: float) -> None:
        while True:
            duration = self.times[self.ptr] - self.last_s
            if duration > seconds:
                self.last_s += seconds
                return
            seconds -= duration
            self._next()


def simulate(trace: Trace, video: Video, rule: AbrRule, setup: SimSetup = STANDARD) -> Session:
    """Play ``setup.chunks`` segments of ``video`` over ``trace`` with ``rule`` (reset first).

    A pure function of its arguments: no clock, no randomness, no I/O.
    """
    if setup.chunks > video.chunks:
        raise StageError(f"the setup wants {setup.chunks} segments, the video has {video.chunks}")
    rule.reset()
    link = _Link(trace)
    nrungs = len(video.ladder_kbps)
    # Per chunk, the sizes of every rung: the "upcoming sizes" a rule may look at.
    per_chunk = tuple(tuple(video.sizes[r][i] for r in range(nrungs)) for i in range(setup.chunks))
    clock = 0.0
    buffer = 0.0
    history: list[Download] = []
    logs: list[ChunkLog] = []
    last_rung: int | None = None
    for index in range(setup.chunks):
        if index == 0 and setup.first_rung is not None:
            rung = min(setup.first_rung, nrungs - 1)
        else:
            rung = rule.choose(AbrState(
                chunk_index=index, buffer_s=buffer, ladder_kbps=video.ladder_kbps, chunk_s=video.chunk_s,
                history=tuple(history), last_rung=last_rung, upcoming_sizes=per_chunk[index:],
                chunks_left=setup.chunks - index, heights=video.heights, caps=setup.caps,
                buffer_cap_s=setup.buffer_cap_s, playing=index > 0,
            ))
            if not 0 <= rung < nrungs:
                raise StageError(f"rule {rule.name} chose rung {rung} of {nrungs}")
        nbytes = video.sizes[rung][index]
        download = link.transfer(nbytes, setup.payload_factor) + setup.rtt_s
        rebuffer = max(download - buffer, 0.0)
        buffer = max(buffer - download, 0.0) + video.chunk_s
        sleep = 0.0
        if buffer > setup.buffer_cap_s:
            sleep = math.ceil((buffer - setup.buffer_cap_s) / setup.drain_step_s) * setup.drain_step_s
            buffer -= sleep
            link.idle(sleep)
        kbps = video.ladder_kbps[rung]
        previous = kbps if last_rung is None else video.ladder_kbps[last_rung]
        reward = (kbps / 1000 - setup.rebuffer_penalty * rebuffer
                  - setup.smooth_penalty * abs(kbps - previous) / 1000)
        logs.append(ChunkLog(index=index, rung=rung, kbps=kbps, bytes=nbytes, start_s=clock, download_s=download,
                             rebuffer_s=rebuffer, sleep_s=sleep, buffer_s=buffer, reward=reward))
        clock += download + sleep
        done = Download(rung=rung, bytes=nbytes, seconds=download)
        history.append(done)
        rule.on_download(done)
        last_rung = rung
    return Session(rule=rule.name, trace=trace.name, chunk_s=video.chunk_s, chunks=tuple(logs))


def simulate_all(traces: Iterable[Trace], video: Video, rule: AbrRule, setup: SimSetup = STANDARD) -> list[Session]:
    return [simulate(trace, video, rule, setup) for trace in traces]


# --- I/O: trace and size files -------------------------------------------------------------


def load_trace(path: Path) -> Trace:
    """A two-column ``<time_s> <Mbit/s>`` file; blank lines are skipped."""
    times: list[float] = []
    mbps: list[float] = []
    text = _read_text(path, "trace", "two columns '<time_s> <Mbit/s>' per line")
    for lineno, line in enumerate(text.splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        try:
            times.append(float(parts[0]))
            mbps.append(float(parts[1]))
        except (ValueError, IndexError) as exc:
            raise StageError(f"{path}:{lineno}: expected '<time_s> <Mbit/s>', got {line.strip()!r}") from exc
    return Trace(name=path.name, times_s=tuple(times), mbps=tuple(mbps))


def _read_text(path: Path, what: str, expected: str) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as exc:
        raise StageError(f"{what} file {path} is not text (a binary file in the folder?): expected {expected}; "
                         "move other files out of the folder") from exc
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc


def _files(folder: Path, what: str) -> list[Path]:
    if not folder.is_dir():
        raise ConfigError(f"{what} folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise ConfigError(f"{what} folder {folder} holds no files")
    return files


def load_traces(folder: Path) -> list[Trace]:
    """Every trace file in ``folder``, by name."""
    return [load_trace(p) for p in _files(folder, "trace")]


def load_video(folder: Path, chunk_s: float = 4.0) -> Video:
    """Segment sizes from ``video_size_<rung>`` files (bytes, one segment a line), rung 0 lowest.

    The files carry no bitrates. Each rung's nominal bitrate is its mean segment size over the
    duration; when all of them are within 5% of the envivio ladder, that ladder's nominal values
    are used instead, because QoE_lin is computed from them in the published figures.
    """
    found: dict[int, Path] = {}
    for path in _files(folder, "sizes"):
        stem, _, number = path.name.rpartition("_")
        if stem == "video_size" and number.isdigit():
            found[int(number)] = path
    if sorted(found) != list(range(len(found))) or not found:
        raise ConfigError(f"{folder}: expected files video_size_0 .. video_size_<n>, found {sorted(found)}")
    sizes: list[tuple[int, ...]] = []
    for rung in range(len(found)):
        path = found[rung]
        try:
            text = _read_text(path, "segment sizes", "one byte count per line")
            sizes.append(tuple(int(line.split()[0]) for line in text.splitlines() if line.strip()))
        except ValueError as exc:
            raise StageError(f"{path}: expected one byte count per line") from exc
    measured = [statistics.fmean(s) * 8 / chunk_s / 1000 for s in sizes]
    near = len(measured) == len(ENVIVIO_KBPS) and all(
        abs(m / e - 1) <= 0.05 for m, e in zip(measured, ENVIVIO_KBPS, strict=True))
    if near:
        ladder = ENVIVIO_KBPS
    else:
        ladder = tuple(float(round(m)) for m in measured)
        log.info("%s: nominal bitrates taken from mean segment sizes: %s kbit/s", folder, ladder)
    return Video(ladder_kbps=ladder, sizes=tuple(sizes), chunk_s=chunk_s)


# --- Reporting --------------------------------------------------------------------------------

TABLE_HEADER = ("| rule | QoE_lin/chunk | avg bitrate kbit/s | rebuffer ratio | sessions without stall "
                "| switches/chunk | startup s |")


def table_row(s: Summary) -> str:
    return (f"| {s.rule} | {s.qoe_per_chunk:.3f} | {s.avg_kbps:.0f} | {100 * s.rebuffer_ratio:.2f}% "
            f"| {100 * s.no_stall_share:.0f}% | {s.switches_per_chunk:.3f} | {s.startup_s:.2f} |")


def markdown_table(summaries: Iterable[Summary]) -> str:
    rows = [TABLE_HEADER, "|---|---:|---:|---:|---:|---:|---:|"]
    rows += [table_row(s) for s in summaries]
    return "\n".join(rows)


def simulate_command(traces: Path, sizes: Path, abr_names: list[str], *, as_json: bool,
                     plot_dir: Path | None) -> int:
    """``reelflow simulate``: every named rule over every trace in the standard setup.

    Prints a markdown table (or JSON with per-session figures) on stdout and returns 0; a bad
    argument raises ConfigError, an unreadable file StageError, for the CLI to report.
    """
    names = [n.strip() for name in abr_names for n in name.split(",") if n.strip()]
    if not names:
        raise ConfigError("--abr names no rule")
    rules = [make_rule(n) for n in names]            # unknown names fail before any work
    if plot_dir is not None:
        from reelflow.infra.outputs import check_output_folder
        from reelflow.player.plots import require_matplotlib

        check_output_folder(plot_dir, "--plot")
        require_matplotlib()
    trace_list = load_traces(traces)
    video = load_video(sizes)
    setup = STANDARD
    results = {rule.name: simulate_all(trace_list, video, rule, setup) for rule in rules}
    summaries = [summarize(name, sessions) for name, sessions in results.items()]
    if plot_dir is not None:
        from reelflow.player.plots import write_plots

        write_plots(plot_dir, trace_list, results)
    if as_json:
        payload = {
            "traces": str(traces), "sizes": str(sizes), "setup": asdict(setup),
            "ladder_kbps": list(video.ladder_kbps),
            "rules": [s.to_dict() for s in summaries],
            "sessions": [s.metrics() for sessions in results.values() for s in sessions],
        }
        sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    else:
        sys.stdout.write(f"{len(trace_list)} traces from {traces}, {setup.chunks} chunks of {video.chunk_s:g} s\n\n")
        sys.stdout.write(markdown_table(summaries) + "\n")
    return 0
