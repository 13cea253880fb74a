"""Quality control of a source: picture, sound, sync, colour tags, decode errors; one ffmpeg decode pass, or
the picture split by time into chunks that fan out (merged exactly) and the sound in one pass."""

from __future__ import annotations

import logging
import math
import re
import shlex
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal, cast

from reelflow.encoding.chunks import Chunk, check_tiling, plan_chunks
from reelflow.encoding.conform import ConformPlan, plan_conform
from reelflow.encoding.probe import MediaInfo, VideoStream, probe
from reelflow.encoding.vmaf import seek_s
from reelflow.errors import SourceNotFound, ToolFailed
from reelflow.infra import tools
from reelflow.infra.settings import ConformConfig, QCConfig, Severity

log = logging.getLogger(__name__)

Segment = tuple[float, float]

_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}

# The decode runs at about 10x realtime on 1080p H.264 here; a pass taking 20x the programme's
# length is a hung decoder, not a slow one.
_TIMEOUT_FACTOR = 20.0
_TIMEOUT_MIN_S = 120.0
# Enough decoder lines to diagnose damage without a broken file filling the report.
_MAX_ERROR_LINES = 50
# ebur128's floor: the absolute gate (-70 LUFS) is what it prints for a silent track.
_SILENT_LUFS = -69.9
_DEFAULT_CONFIG = QCConfig()


@dataclass(frozen=True)
class Check:
    """One QC finding: ``severity`` is what it carries when it fires (``passed`` False)."""

    name: str
    severity: Severity
    passed: bool
    message: str
    value: float | str | None = None
    threshold: float | str | None = None
    segments: tuple[Segment, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return _json_ready(asdict(self))  # type: ignore[no-any-return]


@dataclass(frozen=True)
class QCReport:
    """Every check of one source, plus the raw figures they were judged on."""

    source: str
    checks: tuple[Check, ...]
    measurements: dict[str, Any]

    @property
    def failed(self) -> list[Check]:
        """Every check that fired, info included."""
        return [c for c in self.checks if not c.passed]

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.severity == "error"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.passed and c.severity == "warning"]

    @property
    def verdict(self) -> Literal["pass", "warning", "error"]:
        if self.errors:
            return "error"
        return "warning" if self.warnings else "pass"

    def check(self, name: str) -> Check:
        """The check with this name; KeyError if this report has none (e.g. no decode happened)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: segments as lists, non-finite numbers as None, the verdict spelled out."""
        checks = []
        for c in self.checks:
            d = asdict(c)
            d["segments"] = [list(s) for s in c.segments]
            checks.append(d)
        return {"source": self.source, "verdict": self.verdict, "checks": checks,
                "measurements": _json_ready(self.measurements)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QCReport:
        """Inverse of to_dict (the verdict is derived, so it is not read back)."""
        checks = tuple(
            Check(
                name=c["name"], severity=c["severity"], passed=c["passed"], message=c["message"],
                value=c.get("value"), threshold=c.get("threshold"),
                segments=tuple((float(s), float(e)) for s, e in c.get("segments", ())),
            )
            for c in d["checks"]
        )
        return cls(source=d["source"], checks=checks, measurements=dict(d.get("measurements", {})))


def _json_ready(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_ready(v) for v in value]
    return value


# ---------------------------------------------------------------------------------------------
# The one decode pass


def _video_chain(info: MediaInfo, config: QCConfig, *, head: str = "", probes: str = "") -> str:
    """The picture's filters, from the video stream to the pad ``[v]``; ``head`` goes before them
    (a chunk's trim), ``probes`` after idet (a chunk's per-frame idet prints)."""
    return (
        f"[0:{info.video.index}]{head}"
        # field-pairing comparison: interlaced vs progressive, and which field comes first
        f"idet@v=intl_thres={config.interlace_comb_ratio},{probes}"
        # runs down to the freeze length, so a black still is never reported as a frozen picture
        f"blackdetect@v=d={min(config.black_min_s, config.freeze_min_s)}:pic_th={config.black_picture_ratio}"
        f":pix_th={config.black_pixel_threshold},"
        f"freezedetect@v=n={config.freeze_noise_db}dB:d={config.freeze_min_s}"
        "[v]"
    )


def _audio_chains(info: MediaInfo, config: QCConfig) -> tuple[list[str], list[str]]:
    """Each audio stream's filters to its pad ``[a<index>]``, and the ``-map`` arguments for them."""
    chains = [
        f"[0:{a.index}]"
        # framelog=verbose: keep the 10-per-second running figures out of the log; the summary stays
        f"ebur128@a{a.index}=peak=true:framelog=verbose,"
        f"silencedetect@a{a.index}=n={config.silence_noise_db}dB:d={config.silence_min_s}"
        f"[a{a.index}]"
        for a in info.audio
    ]
    maps: list[str] = []
    for a in info.audio:
        maps += ["-map", f"[a{a.index}]"]
    return chains, maps


def _analysis_argv(path: Path, graph: list[str], maps: list[str], seek: list[str] | None = None) -> list[str]:
    return [
        tools.ffmpeg_exe(), "-nostdin", "-hide_banner",
        "-nostats",                          # progress comes from -progress; stats lines would bury the log
        "-loglevel", "repeat+level+info",    # [error]/[info] on every line; repeated errors each counted
        "-max_error_rate", "1",              # never give up on a damaged file: finish and report the damage
        *(seek or []),
        "-i", str(path),
        "-filter_complex", ";".join(graph),  # the filters pass frames through
        *maps,
        "-f", "null", "-",                   # analyse only; nothing is encoded or written
    ]


def qc_argv(path: Path, info: MediaInfo, config: QCConfig) -> list[str]:
    """The single ffmpeg run: every analysis filter on the decoded streams, output discarded."""
    chains, maps = _audio_chains(info, config)
    return _analysis_argv(path, [_video_chain(info, config), *chains], ["-map", "[v]", *maps])


def run_qc(
    path: Path | str,
    config: QCConfig = _DEFAULT_CONFIG,
    *,
    info: MediaInfo | None = None,
    progress: Callable[[float], None] | None = None,
    conform: ConformConfig | None = None,
) -> QCReport:
    """Probe (unless ``info`` is given), decode once with every analysis filter, judge.

    With ``conform`` (enabled), what the conform step will fix (interlacing, telecine, variable
    rate) is judged as info naming the action, and the plan is in ``measurements["conform"]``.

    Unusable input raises what probe raises. A file that decodes with errors, or stops decoding
    partway, comes back as a report whose "decode_errors" check failed, so it can be quarantined.
    """
    path = Path(path)
    if info is None:
        info = probe(path)
    elif not path.is_file():
        raise SourceNotFound(path, "no such file", "check the path")
    argv = qc_argv(path, info, config)
    stderr, failure, elapsed = _decode(argv, info.duration_s, progress)
    measurements = parse_qc_log(stderr, info)
    measurements["command"] = shlex.join(argv)
    measurements["timings"] = {
        "decode_s": round(elapsed, 3),
        "realtime_factor": round(info.duration_s / elapsed, 2) if elapsed > 0 else None,
    }
    if failure is not None:
        # Only the tail of stderr survives a failed run, so the decode-based figures are incomplete.
        measurements["ffmpeg_failed"] = {"returncode": failure.returncode, "message": str(failure)}
    return qc_report(path, info, measurements, config, conform)


def _decode(argv: list[str], media_s: float,
            progress: Callable[[float], None] | None = None) -> tuple[str, ToolFailed | None, float]:
    """Run one analysis pass over ``media_s`` seconds of media: (its log, the failure if it died, seconds)."""
    timeout = max(_TIMEOUT_MIN_S, _TIMEOUT_FACTOR * media_s)
    started = time.monotonic()
    failure: ToolFailed | None = None
    try:
        stderr = tools.run(argv, timeout=timeout, progress=progress).stderr
    except ToolFailed as exc:
        # A timeout (-1) or SIGKILL (the OOM killer, an operator) says nothing against the source;
        # an exit code or a crash (SIGSEGV, SIGABRT) in the middle of decoding does.
        if exc.returncode in (-1, -9):
            raise
        failure, stderr = exc, exc.stderr
    return stderr, failure, time.monotonic() - started


def qc_report(path: Path | str, info: MediaInfo, measurements: dict[str, Any], config: QCConfig = _DEFAULT_CONFIG,
              conform: ConformConfig | None = None) -> QCReport:
    """The report on measurements from one pass (run_qc) or merged from chunks (merge_qc): the conform
    plan (with an enabled ``conform``) added to them, then every check judged."""
    if conform is not None and conform.enabled and "ffmpeg_failed" not in measurements:
        plan = plan_conform(info, measurements, conform, config)
        measurements["conform"] = {"steps": plan.to_list(), "refused": plan.refused,
                                   "picture": {"width": plan.width, "height": plan.height, "fps": str(plan.fps),
                                               "pix_fmt": plan.pix_fmt, "intermediate": plan.codec}}
    report = QCReport(source=str(path), checks=judge(info, measurements, config, conform),
                      measurements=measurements)
    log.info("QC %s: %s (%d errors, %d warnings)", Path(path).name, report.verdict, len(report.errors),
             len(report.warnings))
    return report


# ---------------------------------------------------------------------------------------------
# Reading ffmpeg's log

_LEVELS = "panic|fatal|error|warning|info|verbose|debug|trace"
_LINE = re.compile(rf"^(?P<prefix>(?:\[[^\]]*\] )*?)\[(?P<level>{_LEVELS})\] ?(?P<msg>.*)$")
_CONTEXT = re.compile(r"^\[(?P<name>[^\]@ ]+(?:@[^\] ]+)?)(?: @ 0x[0-9a-f]+)?\]")
_NUM = r"(-?(?:\d+(?:\.\d*)?|inf|nan))"
_BLACK = re.compile(rf"black_start:{_NUM} black_end:{_NUM}")
_FREEZE = re.compile(rf"freeze_(start|end): {_NUM}")
_SILENCE = re.compile(rf"silence_(start|end): {_NUM}")
_IDET = re.compile(r"(Repeated Fields|Single frame detection|Multi frame detection): (.*)")
_IDET_COUNT = re.compile(r"(\w+):\s+(\d+)")
_R128 = {
    "integrated_lufs": re.compile(rf"^\s*I:\s+{_NUM} LUFS"),
    "lra_lu": re.compile(rf"^\s*LRA:\s+{_NUM} LU$"),
    "true_peak_dbtp": re.compile(rf"^\s*Peak:\s+{_NUM} dBFS"),
}


@dataclass
class _DecodeErrors:
    """The decoder's error lines of an ffmpeg log, as a QC pass reads them line by line."""

    count: int = 0
    lines: list[str] = field(default_factory=list)
    open_messages: list[str] = field(default_factory=list)
    opened: bool = False      # past ffmpeg's "Stream mapping:" header, i.e. decoding has started

    def take(self, raw: str, level: str, context: str, msg: str) -> bool:
        """Note one log line; True when it is an error line (nothing else to read from it)."""
        if msg.startswith("Stream mapping:"):
            self.opened = True
        if level not in ("error", "fatal", "panic"):
            return False
        # Before decoding, the demuxer's complaints about the header (a dangling chapter
        # reference, say) are notes about the container; probe already proved it reads.
        if not self.opened and context.startswith("in#"):
            self.open_messages.append(raw.strip())
        else:
            self.count += 1
            if len(self.lines) < _MAX_ERROR_LINES:
                self.lines.append(raw.strip())
        return True

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "lines": self.lines, "open_messages": self.open_messages[:_MAX_ERROR_LINES]}


def parse_qc_log(stderr: str, info: MediaInfo) -> dict[str, Any]:
    """Raw figures from the QC run's log: idet counts, runs, loudness per stream, decode errors.

    Times are on the source's clock, as probe reports stream starts: ffmpeg's filters count from
    the earliest stream's start, so that start is added back.
    """
    origin = min([info.video.start_s, *(a.start_s for a in info.audio)])
    video_end = info.video.start_s + info.video.duration_s
    black: list[Segment] = []
    freeze: list[Segment] = []
    freeze_open: float | None = None
    idet: dict[str, dict[str, int]] = {}
    audio: dict[int, dict[str, Any]] = {
        a.index: {"index": a.index, "integrated_lufs": None, "lra_lu": None, "true_peak_dbtp": None,
                  "silence": []}
        for a in info.audio
    }
    silence_open: dict[int, float] = {}
    errors = _DecodeErrors()
    context = ""
    for raw in stderr.splitlines():
        match = _LINE.match(raw)
        if match is None:
            # A continuation line of a multi-line message (ebur128's summary).
            if context.startswith("ebur128@a"):
                _read_r128(raw, audio.get(_stream_of(context)))
            continue
        prefix, level, msg = match.group("prefix"), match.group("level"), match.group("msg")
        ctx = _CONTEXT.match(prefix)
        context = ctx.group("name") if ctx else ""
        if errors.take(raw, level, context, msg):
            continue
        if context == "blackdetect@v" and (m := _BLACK.search(msg)):
            black.append((origin + float(m.group(1)), origin + float(m.group(2))))
        elif context == "freezedetect@v" and (m := _FREEZE.search(msg)):
            if m.group(1) == "start":
                freeze_open = origin + float(m.group(2))
            elif freeze_open is not None:
                freeze.append((freeze_open, origin + float(m.group(2))))
                freeze_open = None
        elif context == "idet@v" and (m := _IDET.search(msg)):
            # The last summary wins: ffmpeg prints an empty one for the graph it configures first.
            counts = {k.lower(): int(n) for k, n in _IDET_COUNT.findall(m.group(2))}
            idet[m.group(1).split()[0].lower()] = counts
        elif context.startswith("silencedetect@a") and (m := _SILENCE.search(msg)):
            index = _stream_of(context)
            if m.group(1) == "start":
                silence_open[index] = origin + max(0.0, float(m.group(2)))
            elif index in silence_open and index in audio:
                audio[index]["silence"].append([silence_open.pop(index), origin + float(m.group(2))])
        elif context.startswith("ebur128@a"):
            _read_r128(msg, audio.get(_stream_of(context)))
    # A run still open at the end of the stream lasts to the end (freezedetect never closes one).
    if freeze_open is not None:
        freeze.append((freeze_open, video_end))
    for index, start in silence_open.items():
        stream = next(a for a in info.audio if a.index == index)
        audio[index]["silence"].append([start, stream.start_s + stream.duration_s])
    multi = idet.get("multi", {})
    decoded = sum(idet.get("repeated", {}).values()) if "repeated" in idet else None
    return {
        "video": {
            "index": info.video.index,
            "start_s": info.video.start_s,
            "duration_s": info.video.duration_s,
            "frames_expected": info.video.frames,
            "frames_decoded": decoded,
            "field_order": info.video.field_order,
            "idet": idet,
            "interlaced_frames": multi.get("tff", 0) + multi.get("bff", 0),
            "progressive_frames": multi.get("progressive", 0),
            "black": [list(s) for s in black],
            "freeze": [list(s) for s in freeze],
        },
        "audio": [
            {**audio[a.index], "start_s": a.start_s, "duration_s": a.duration_s, "codec": a.codec,
             "channels": a.channels, "language": a.language}
            for a in info.audio
        ],
        "decode_errors": errors.to_dict(),
    }


def _stream_of(context: str) -> int:
    return int(context.rpartition("@a")[2])


def _read_r128(line: str, into: dict[str, Any] | None) -> None:
    if into is None:
        return
    for key, pattern in _R128.items():
        if m := pattern.search(line):
            value = float(m.group(1))
            # A silent track peaks at -inf; None keeps the measurements JSON as they are in memory.
            into[key] = value if math.isfinite(value) else None


# ---------------------------------------------------------------------------------------------
# Split by time: the picture in chunks (any worker can take one), the sound in one pass; merged
# into the measurements of a whole pass.
#
# What makes the merge exact:
# - idet judges a frame from the frames either side of it, so a chunk decodes one frame before and
#   after what it owns and prints each owned frame's single-frame and repeated-field verdicts.
#   Counting those gives a whole pass's counts; the multi-frame verdict (a sticky vote over the
#   last four single-frame ones) is replayed over the title's verdicts in order (_idet_multi),
#   rather than taken from chunks that start without that history.
# - black and frozen runs are reported by the chunk in which they start. A chunk reads on for the
#   longest minimum run (and two frames) past its end, so a run that starts there is either seen to
#   its end or seen long enough to be reported; one still going when the chunk stops is open, and
#   its end comes from the next chunk, which sees it from its first frame.
# - freezedetect compares each frame with the first frame of the still, so a chunk that starts in
#   the middle of a freeze compares with its own first frame instead: the same run for a truly
#   frozen picture (repeated frames), and it only ends on the same frame for a picture whose drift
#   stays below freeze_noise_db against both. Only such sub-threshold drift can move the end of a
#   frozen run that crosses a chunk edge.
# - the sound is one pass over the title (audio decodes at hundreds of times real time):
#   ebur128's integrated loudness is gated on the whole programme's level (blocks 10 LU below the
#   programme's ungated loudness are dropped) and its loudness range is a percentile of the
#   short-term loudness over the whole programme, so neither adds up from pieces.

# 4 single-frame verdicts, as idet keeps them (vf_idet.c: HIST_SIZE)
_IDET_HISTORY = 4
_SINGLE = {"tff": "T", "bff": "B", "progressive": "P", "undetermined": "U"}
_REPEATED = {"neither": "N", "top": "T", "bottom": "B"}
_META_FRAME = re.compile(rf"^frame:\s*\d+\s+pts:\s*-?\d+\s+pts_time:{_NUM}")
_META_VALUE = re.compile(r"^lavfi\.idet\.(single|repeated)\.current_frame=(\w+)")


def qc_chunks(info: MediaInfo, config: QCConfig = _DEFAULT_CONFIG) -> tuple[Chunk, ...]:
    """The picture's frames in chunks of about ``config.chunk_s`` (one for a short or variable-rate
    title: frame numbers come from timestamps), with one frame before and the longest minimum run
    after each as context."""
    v = info.video
    reach = math.ceil(Fraction(str(max(config.black_min_s, config.freeze_min_s))) * v.fps) + 2
    chunk_s = math.inf if v.variable_rate else config.chunk_s
    return plan_chunks(v.frames, v.fps, chunk_s, before=1, after=reach)


def qc_chunk_argv(path: Path, info: MediaInfo, config: QCConfig, chunk: Chunk) -> list[str]:
    """One chunk's pass: the picture's filters on ``chunk.decode_start`` .. ``decode_end`` (to the end
    of the file for the last chunk), each frame's idet verdicts printed."""
    v = info.video
    seek = None
    if chunk.decode_start > 0:
        # the stream's own time (not the file's), half a frame early: exactly frame decode_start
        seek = ["-seek_timestamp", "1", "-ss", f"{seek_s(chunk.decode_start, v.fps, v.start_s):.6f}"]
    head = f"trim=end_frame={chunk.decode_end - chunk.decode_start}," if chunk.end < v.frames else ""
    probes = ("metadata@s=mode=print:key=lavfi.idet.single.current_frame,"
              "metadata@r=mode=print:key=lavfi.idet.repeated.current_frame,")
    return _analysis_argv(path, [_video_chain(info, config, head=head, probes=probes)], ["-map", "[v]"], seek)


def measure_chunk(path: Path | str, info: MediaInfo, config: QCConfig, chunk: Chunk) -> dict[str, Any]:
    """Decode one chunk with the picture's filters: what it owns, JSON-ready (merge_qc joins them)."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFound(path, "no such file", "check the path")
    argv = qc_chunk_argv(path, info, config, chunk)
    stderr, failure, elapsed = _decode(argv, (chunk.decode_end - chunk.decode_start) / float(info.video.fps))
    found = parse_chunk_log(stderr, info, chunk)
    found["command"] = shlex.join(argv)
    found["decode_s"] = round(elapsed, 3)
    if failure is not None:
        found["ffmpeg_failed"] = {"returncode": failure.returncode, "message": str(failure)}
    log.info("QC %s frames %d-%d: %d frames, %d black and %d frozen runs in %.1f s", path.name, chunk.start,
             chunk.end, found["frames"], len(found["black"]), len(found["freeze"]), elapsed)
    return found


def parse_chunk_log(stderr: str, info: MediaInfo, chunk: Chunk) -> dict[str, Any]:
    """A chunk's figures from its log, on frame numbers: the owned frames' idet verdicts (one letter
    each, in order), black and frozen runs as [first frame, end frame or None (to the end of the
    video), open] (open: still going where the chunk stopped reading), and decoder errors."""
    v = info.video
    last_chunk = chunk.end >= v.frames
    fps = float(v.fps)
    # Frames are numbered by their timestamps from the first one the filters see, which is
    # ``decode_start`` (an exact seek): the clock's offset is then immaterial, even when a coarse
    # time base rounds the seek position to a tick.
    first: list[float] = []

    def frame_at(t: float) -> int:
        return chunk.decode_start + math.floor((t - first[0]) * fps + 0.5)

    single: dict[int, str] = {}
    repeated: dict[int, str] = {}
    at: dict[str, int] = {}
    black: list[list[Any]] = []           # times as the filters print them, until the first frame is known
    freeze: list[list[Any]] = []
    freeze_open: float | None = None
    errors = _DecodeErrors()
    for raw in stderr.splitlines():
        match = _LINE.match(raw)
        if match is None:
            continue
        prefix, level, msg = match.group("prefix"), match.group("level"), match.group("msg")
        ctx = _CONTEXT.match(prefix)
        context = ctx.group("name") if ctx else ""
        if errors.take(raw, level, context, msg):
            continue
        if context in ("metadata@s", "metadata@r"):
            if m := _META_FRAME.match(msg):
                first[:] = first or [float(m.group(1))]
                at[context] = frame_at(float(m.group(1)))
            elif (m := _META_VALUE.match(msg)) and context in at:
                table, letters = (single, _SINGLE) if m.group(1) == "single" else (repeated, _REPEATED)
                table[at[context]] = letters.get(m.group(2), "U")
        elif context == "blackdetect@v" and (m := _BLACK.search(msg)):
            black.append([float(m.group(1)), float(m.group(2)), False])
        elif context == "freezedetect@v" and (m := _FREEZE.search(msg)):
            if m.group(1) == "start":
                freeze_open = float(m.group(2))
            elif freeze_open is not None:
                freeze.append([freeze_open, float(m.group(2)), False])
                freeze_open = None
    seen = sorted(single)
    last = seen[-1] if seen else chunk.decode_start - 1
    if not first:
        black, freeze, freeze_open = [], [], None      # no frame reached the filters
    black = [[frame_at(s), frame_at(e), False] for s, e, _ in black]
    freeze = [[frame_at(s), frame_at(e), False] for s, e, _ in freeze]
    if freeze_open is not None:
        # freezedetect never closes a run at the end of its input: to the video's end in the last
        # chunk (as a whole pass has it), still open in any other
        freeze.append([frame_at(freeze_open), None, not last_chunk])
    if not last_chunk:
        # blackdetect closes a run still going at the end of its input on the last frame it saw
        for run in black:
            if run[1] >= last:
                run[2] = True
    owned = [f for f in seen if f >= chunk.start and (last_chunk or f < chunk.end)]
    return {
        "start": chunk.start, "end": chunk.end, "decode_start": chunk.decode_start, "decode_end": chunk.decode_end,
        "frames": len(owned),
        "single": "".join(single[f] for f in owned),
        "repeated": "".join(repeated.get(f, "N") for f in owned),
        "black": black, "freeze": freeze,
        "decode_errors": errors.to_dict(),
    }


def _idet_multi(single: str) -> dict[str, int]:
    """idet's multi-frame counts, replayed from its single-frame verdicts in title order: a frame takes
    the type that the last four verdicts agree on (undetermined ones abstain), sticky until at least
    three agree on another; the first decided frame sets it."""
    counts = dict.fromkeys("TBPU", 0)
    history = ["U"] * _IDET_HISTORY
    current = "U"
    for verdict in single:
        history = [verdict, *history[:-1]]
        best, match = "U", 0
        for h in history:
            if h == "U":
                continue
            if best == "U":
                best = h
            if h == best:
                match += 1
            else:
                match = 0
                break
        if (current == "U" and match) or match > 2:
            current = best
        counts[current] += 1
    return counts


def _merge_runs(chunks: Sequence[dict[str, Any]], key: str) -> list[list[Any]]:
    """One chunk's runs after another: those starting in what it owns kept, and a run left open by the
    chunk before given the end this chunk sees (it reads that run from its first frame)."""
    merged: list[list[Any]] = []
    for number, chunk in enumerate(chunks):
        last_chunk = number == len(chunks) - 1
        carried = bool(merged) and merged[-1][2]      # the run before is still going at this chunk's start
        continued = False
        for start, end, still in chunk[key]:
            if start < chunk["start"]:
                if carried and not continued:
                    merged[-1] = [merged[-1][0], end, still]
                    continued = True
                continue
            if last_chunk or start < chunk["end"]:
                merged.append([start, end, still])
        if carried and not continued:
            # This chunk does not see the run go on (freezedetect's reference frame differs here): it
            # ends where the chunk before stopped reading.
            log.warning("QC: a %s run open at frame %d is not seen by the next chunk", key, chunk["start"])
            at = next(i for i in range(len(merged) - 1, -1, -1) if merged[i][2] and merged[i][0] < chunk["start"])
            merged[at] = [merged[at][0], chunks[number - 1]["decode_end"], False]
    return merged


def merge_qc(info: MediaInfo, chunks: Sequence[dict[str, Any]], audio: dict[str, Any] | None) -> dict[str, Any]:
    """The measurements of a whole pass, from the chunks' (measure_chunk, in title order) and the sound
    pass's (measure_audio; None for a title without audio). Pure."""
    v = info.video
    check_tiling([Chunk(i, c["start"], c["end"], c["decode_start"], c["decode_end"]) for i, c in enumerate(chunks)],
                 v.frames)
    single = "".join(c["single"] for c in chunks)
    repeated = "".join(c["repeated"] for c in chunks)
    multi = _idet_multi(single)
    names = {letter: name for name, letter in _SINGLE.items()}
    idet = {
        "repeated": {name: repeated.count(letter) for name, letter in _REPEATED.items()},
        "single": {name: single.count(letter) for name, letter in _SINGLE.items()},
        "multi": {names[letter]: n for letter, n in multi.items()},
    }
    video_end = v.start_s + v.duration_s

    def seconds(frame: int | None) -> float:
        return video_end if frame is None else v.start_s + float(Fraction(frame) / v.fps)

    black = [[seconds(s), seconds(e)] for s, e, _ in _merge_runs(chunks, "black")]
    freeze = [[seconds(s), seconds(e)] for s, e, _ in _merge_runs(chunks, "freeze")]
    lines = [line for c in chunks for line in c["decode_errors"]["lines"]]
    where = [{"frames": [c["start"], c["end"]], "count": c["decode_errors"]["count"]}
             for c in chunks if c["decode_errors"]["count"]]
    count = sum(c["decode_errors"]["count"] for c in chunks)
    if audio is not None:
        count += audio["decode_errors"]["count"]
        lines += audio["decode_errors"]["lines"]
        if audio["decode_errors"]["count"]:
            where.append({"audio": True, "count": audio["decode_errors"]["count"]})
    measurements: dict[str, Any] = {
        "video": {
            "index": v.index, "start_s": v.start_s, "duration_s": v.duration_s, "frames_expected": v.frames,
            "frames_decoded": len(single), "field_order": v.field_order, "idet": idet,
            "interlaced_frames": multi["T"] + multi["B"], "progressive_frames": multi["P"],
            "black": black, "freeze": freeze,
        },
        "audio": audio["audio"] if audio is not None else [],
        "decode_errors": {
            "count": count, "lines": lines[:_MAX_ERROR_LINES],
            # the chunks' context overlaps, so an error there may be counted by both chunks
            "where": where,
            "open_messages": (audio or chunks[0])["decode_errors"]["open_messages"],
        },
        "chunks": [{"frames": [c["start"], c["end"]], "decoded": [c["decode_start"], c["decode_end"]],
                    "decode_s": c.get("decode_s")} for c in chunks],
    }
    failed = [c for c in [*chunks, audio] if c is not None and "ffmpeg_failed" in c]
    if failed:
        measurements["ffmpeg_failed"] = failed[0]["ffmpeg_failed"]
    return measurements


def audio_qc_argv(path: Path, info: MediaInfo, config: QCConfig) -> list[str]:
    """The sound's pass: every audio stream's filters over the whole title, the picture not decoded."""
    chains, maps = _audio_chains(info, config)
    return _analysis_argv(path, chains, maps)


def measure_audio(path: Path | str, info: MediaInfo, config: QCConfig = _DEFAULT_CONFIG) -> dict[str, Any]:
    """The sound's figures over the whole title (loudness, true peak, silences) and its decoder errors."""
    path = Path(path)
    if not path.is_file():
        raise SourceNotFound(path, "no such file", "check the path")
    argv = audio_qc_argv(path, info, config)
    stderr, failure, elapsed = _decode(argv, info.duration_s)
    parsed = parse_qc_log(stderr, info)
    found: dict[str, Any] = {"audio": parsed["audio"], "decode_errors": parsed["decode_errors"],
                             "command": shlex.join(argv), "decode_s": round(elapsed, 3)}
    if failure is not None:
        found["ffmpeg_failed"] = {"returncode": failure.returncode, "message": str(failure)}
    return found


def run_qc_split(path: Path | str, config: QCConfig = _DEFAULT_CONFIG, *, info: MediaInfo | None = None,
                 conform: ConformConfig | None = None) -> QCReport:
    """run_qc's report by chunks (qc_chunks) and a sound pass, here one after another; the flow fans
    the same calls out over its task runner."""
    path = Path(path)
    if info is None:
        info = probe(path)
    found = [measure_chunk(path, info, config, chunk) for chunk in qc_chunks(info, config)]
    sound = measure_audio(path, info, config) if info.audio else None
    return qc_report(path, info, merge_qc(info, found, sound), config, conform)


# ---------------------------------------------------------------------------------------------
# Judging


def judge(info: MediaInfo, measurements: dict[str, Any], config: QCConfig,
          conform: ConformConfig | None = None) -> tuple[Check, ...]:
    """Checks from the probe and the parsed log, with thresholds and severities from ``config``.

    Pure, so a cached report can be judged again under other severities (thresholds that the
    filters apply, such as the minimum run lengths, need a new pass to be lowered). With an enabled
    ``conform``, interlacing, telecine and variable rate are findings the conform step resolves.
    """
    plan = None
    if conform is not None and conform.enabled and "ffmpeg_failed" not in measurements:
        plan = plan_conform(info, measurements, conform, config)
    checks = [_decode_errors(measurements, config)]
    if "ffmpeg_failed" not in measurements:
        video = measurements["video"]
        start, end = info.video.start_s, info.video.start_s + info.video.duration_s
        black = _segments(video["black"])
        checks.append(_runs_check(
            "black_segments", "black", [s for s in black if s[1] - s[0] >= config.black_min_s], start, end,
            config.black_min_s, config.black_severity, config.black_whole_severity, config,
        ))
        # A black run is also a frozen one; it is reported once, as black.
        freeze = [s for s in _subtract(_segments(video["freeze"]), black)
                  if s[1] - s[0] >= config.freeze_min_s]
        checks.append(_runs_check(
            "frozen_segments", "frozen", freeze, start, end, config.freeze_min_s,
            config.freeze_severity, config.freeze_severity, config,
        ))
        checks.append(_conformed_fields(plan) or _interlacing(info.video, video, config))
    checks.append(_colour(info.video, config))
    checks.append(_conformed_rate(plan, info.video) or _frame_rate(info.video, config))
    checks.append(_hdr(info.video, config))
    checks.append(_dolby_vision(info.video, config))
    checks.append(_audio_present(info, config))
    if info.audio and "ffmpeg_failed" not in measurements:
        streams = measurements["audio"]
        checks += [_loudness(streams, config), _loudness_range(streams, config), _true_peak(streams, config),
                   _silence(streams, config)]
    checks += [_av_start_offset(info, config), _duration_mismatch(info, config)]
    return tuple(checks)


def _segments(raw: Iterable[Sequence[float]]) -> list[Segment]:
    return [(round(float(s), 3), round(float(e), 3)) for s, e in raw]


def _subtract(runs: list[Segment], holes: list[Segment]) -> list[Segment]:
    out = runs
    for hs, he in holes:
        nxt: list[Segment] = []
        for s, e in out:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if s < hs:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        out = nxt
    return out


def _worst(severities: Iterable[Severity]) -> Severity:
    return max(severities, key=lambda s: _RANK[s])


def _fmt_runs(runs: Sequence[Segment]) -> str:
    more = f" and {len(runs) - 5} more" if len(runs) > 5 else ""
    return ", ".join(f"{s:.2f}-{e:.2f} s" for s, e in runs[:5]) + more


def _runs_check(
    name: str, what: str, runs: list[Segment], start: float, end: float, min_s: float,
    severity: Severity, whole_severity: Severity, config: QCConfig, *, subject: str = "picture",
) -> Check:
    """Black, frozen or silent runs: mid-programme ones carry ``severity``, head/tail ones only
    inform, and runs covering nearly all of the programme carry ``whole_severity``."""
    longest = max((e - s for s, e in runs), default=0.0)
    if not runs:
        return Check(name, severity, True, f"no {what} run of {min_s:g} s or more", 0.0, min_s)
    length = max(end - start, 1e-9)
    covered = sum(e - s for s, e in runs)
    if covered >= config.whole_ratio * length:
        return Check(name, whole_severity, False,
                     f"{subject} is {what} for {covered:.1f} of {length:.1f} s ({covered / length:.0%}): "
                     "wrong file, failed render or empty track?", round(longest, 3), min_s, tuple(runs))
    edge = config.edge_window_s
    mid = [r for r in runs if r[0] > start + edge and r[1] < end - edge]
    if mid:
        return Check(name, severity, False,
                     f"{subject} {what} mid-programme at {_fmt_runs(mid)}: check the source at these times",
                     round(longest, 3), min_s, tuple(runs))
    return Check(name, config.edge_severity, False,
                 f"{subject} {what} at head/tail only ({_fmt_runs(runs)}): leader, fade or end board?",
                 round(longest, 3), min_s, tuple(runs))


def _decode_errors(measurements: dict[str, Any], config: QCConfig) -> Check:
    found = measurements["decode_errors"]
    count = int(found["count"])
    video = measurements["video"]
    expected, decoded = video["frames_expected"], video["frames_decoded"]
    frames = f"; {decoded} of {expected} frames decoded" if decoded is not None and decoded < expected else ""
    if "ffmpeg_failed" in measurements:
        failure = measurements["ffmpeg_failed"]["message"]
        return Check("decode_errors", config.decode_severity, False,
                     f"decoding stopped ({failure}): the file is damaged partway; re-deliver it",
                     count, config.decode_errors_max)
    if decoded is not None and decoded < expected:
        return Check("decode_errors", config.decode_severity, False,
                     f"only {decoded} of {expected} frames decoded: the file is damaged or cut short; re-deliver it",
                     count, config.decode_errors_max)
    if count > config.decode_errors_max:
        first = re.sub(r" @ 0x[0-9a-f]+|\[error\] ", "", found["lines"][0]) if found["lines"] else "-"
        return Check("decode_errors", config.decode_severity, False,
                     f"{count} decoder error line(s){frames}; first: {first} - re-deliver the file",
                     count, config.decode_errors_max)
    return Check("decode_errors", config.decode_severity, True, f"decoded cleanly{frames}",
                 count, config.decode_errors_max)


def _interlacing(v: VideoStream, video: dict[str, Any], config: QCConfig) -> Check:
    interlaced, progressive = int(video["interlaced_frames"]), int(video["progressive_frames"])
    decided = interlaced + progressive
    flagged = v.field_order not in (None, "progressive")
    if decided < config.interlaced_min_frames:
        # Very clean or static pictures leave idet undecided; only a flag is then worth a look.
        if flagged:
            return Check("interlacing", "info", False,
                         f"flagged {v.field_order} but idet could not tell ({decided} frames decided): "
                         "check by eye", None, config.interlaced_ratio)
        return Check("interlacing", config.interlace_severity, True,
                     f"too few frames decided by idet ({decided}) to judge", None, config.interlaced_ratio)
    ratio = round(interlaced / decided, 3)
    multi = video["idet"].get("multi", {})
    detected = "tff" if multi.get("tff", 0) >= multi.get("bff", 0) else "bff"
    if ratio > config.interlaced_ratio:
        expected_flag = {"tff": ("tt", "tb"), "bff": ("bb", "bt")}[detected]
        if not flagged:
            flag_note = f"but flagged {v.field_order or 'unspecified'}"
        elif v.field_order not in expected_flag:
            flag_note = f"but flagged {v.field_order}: field order is wrong"
        else:
            flag_note = f"flagged {v.field_order}"
        return Check("interlacing", config.interlace_severity, False,
                     f"{ratio:.0%} of frames are interlaced ({detected.upper()}) {flag_note}; "
                     "deinterlace before encoding", ratio, config.interlaced_ratio)
    if flagged:
        return Check("interlacing", "info", False,
                     f"flagged {v.field_order} but {1 - ratio:.0%} of frames look progressive "
                     "(progressive segmented frames?)", ratio, config.interlaced_ratio)
    return Check("interlacing", config.interlace_severity, True, f"progressive ({ratio:.0%} interlaced)",
                 ratio, config.interlaced_ratio)


def _conformed_fields(plan: ConformPlan | None) -> Check | None:
    """Interlacing or telecine that the conform step removes: info, with the filter named."""
    step = plan and (plan.step("inverse_telecine") or plan.step("deinterlace"))
    if not step:
        return None
    return Check("interlacing", "info", False, f"{step.found}: {step.action} by the conform step ({step.filter})",
                 step.step, "progressive")


def _conformed_rate(plan: ConformPlan | None, v: VideoStream) -> Check | None:
    """Variable rate: conformed to a standard rate (info), or refused when none fits (error)."""
    step = plan and plan.step("frame_rate")
    if not step or plan is None:
        return None
    if plan.refused:
        return Check("frame_rate", "error", False, plan.refused, float(v.nominal_fps or v.fps), "standard rate")
    return Check("frame_rate", "info", False, f"{step.found}: {step.action} by the conform step ({step.filter})",
                 float(v.nominal_fps or v.fps), str(plan.fps))


# Colour: BT.601's 525 and 625 line variants share a matrix; BT.601 also uses BT.709's OETF, so
# smpte170m primaries/matrix with a bt709 transfer is normal SD video (and must pass).
_SD_PRIMARIES = {"smpte170m", "bt470bg", "bt470m"}
_SD_MATRIX = {"smpte170m", "bt470bg", "fcc"}
_HDR_TRANSFER = {"smpte2084", "arib-std-b67"}
_BT2020_MATRIX = {"bt2020nc", "bt2020c"}
# Broadcast SD rasters, whose pictures were made with BT.601. Web sizes such as 640x360 are
# downscaled HD and rightly BT.709, so they are not on this list.
_SD_RASTERS = {(w, h) for w in (352, 480, 544, 640, 704, 720) for h in (240, 288, 480, 486, 576)}


def colour_findings(v: VideoStream, config: QCConfig) -> list[tuple[Severity, str]]:
    """What is wrong with the colour tags of a video stream, each with its severity."""
    p, t, m, r = v.color_primaries, v.color_transfer, v.color_matrix, v.color_range
    hdr, conflict = config.colour_hdr_severity, config.colour_conflict_severity
    found: list[tuple[Severity, str]] = []
    unspecified = [name for name, value in (("primaries", p), ("transfer", t), ("matrix", m), ("range", r))
                   if value is None]
    if unspecified:
        guess = "BT.709" if v.height >= 720 else "BT.601"
        found.append((config.colour_unspecified_severity,
                      f"{', '.join(unspecified)} unspecified: players will guess ({guess} at {v.height} lines"
                      f"{', limited range' if r is None else ''}); tag the source to be sure"))
    # HDR and wide gamut: a wrong tag here is a wrong picture on every HDR device.
    if t in _HDR_TRANSFER and p != "bt2020":
        found.append((hdr, f"HDR transfer {t} with {p or 'unspecified'} primaries (HDR10/HLG need bt2020)"))
    if t in _HDR_TRANSFER and v.bit_depth < 10:
        found.append((hdr, f"HDR transfer {t} in {v.bit_depth}-bit: PQ/HLG need 10 bits"))
    if p == "bt2020" and m is not None and m not in _BT2020_MATRIX:
        found.append((hdr, f"bt2020 primaries with a {m} matrix (expected bt2020nc)"))
    if m in _BT2020_MATRIX and p is not None and p != "bt2020":
        found.append((hdr, f"{m} matrix with {p} primaries (expected bt2020)"))
    # SD and HD: tags from the other family, or from the wrong raster, are probably a mistag.
    if m in _SD_MATRIX and v.height >= 720:
        found.append((conflict, f"SD matrix {m} on a {v.width}x{v.height} picture (HD is bt709): "
                                "check for a mistag"))
    if m == "bt709" and (v.width, v.height) in _SD_RASTERS:
        found.append((conflict, f"HD matrix bt709 on a {v.width}x{v.height} SD picture "
                                "(SD is smpte170m/bt470bg): check for a mistag"))
    if (p == "bt709" and m in _SD_MATRIX) or (p in _SD_PRIMARIES and m == "bt709"):
        found.append((conflict, f"{p} primaries with a {m} matrix: tags from different standards"))
    yuv = (v.pix_fmt or "").startswith(("yuv", "nv", "p0", "p2", "y2"))
    if r == "pc" and yuv:
        found.append((conflict, f"full (pc) range {v.pix_fmt}: consumer video is limited range; "
                                "the encodes must convert it"))
    if m == "gbr" and yuv:
        found.append((conflict, f"RGB (gbr) matrix on {v.pix_fmt} pixels"))
    return found


def _colour(v: VideoStream, config: QCConfig) -> Check:
    tags = "/".join(x or "-" for x in (v.color_primaries, v.color_transfer, v.color_matrix, v.color_range))
    found = colour_findings(v, config)
    if not found:
        return Check("colour_metadata", config.colour_conflict_severity, True,
                     f"colour tags consistent (primaries/transfer/matrix/range {tags})", tags)
    return Check("colour_metadata", _worst(s for s, _ in found), False, "; ".join(msg for _, msg in found),
                 tags)


def _frame_rate(v: VideoStream, config: QCConfig) -> Check:
    """The ladder is constant frame rate: keyframes and segments are planned in whole frames."""
    if v.variable_rate:
        return Check("frame_rate", config.vfr_severity, False,
                     f"variable frame rate (average {float(v.fps):.3f} fps): frame intervals vary; convert to "
                     f"constant rate first, e.g. ffmpeg -i SRC -fps_mode cfr -r {v.fps} ...", float(v.fps), "cfr")
    return Check("frame_rate", config.vfr_severity, True, f"constant {v.fps} fps", float(v.fps), "cfr")


def _hdr(v: VideoStream, config: QCConfig) -> Check:
    """HDR sources get an HDR ladder and a tone-mapped SDR fallback; what HDR10 should carry is noted.

    A PQ master without mastering-display or content-light metadata is legal HDR10, but every
    display then guesses how bright it was graded, so the ladder is published without them and
    QC says so. HLG is scene-referred and needs neither.
    """
    if not v.hdr:
        return Check("hdr", config.hdr_severity, True, "SDR source", v.color_transfer, "sdr")
    kind = "HDR10 (PQ)" if v.color_transfer == "smpte2084" else "HLG"
    if v.color_transfer == "smpte2084":
        missing = [what for what, value in (("mastering display", v.mastering_display),
                                             ("content light level", v.content_light)) if value is None]
        if missing:
            return Check("hdr", config.hdr_severity, False,
                         f"{kind} source without {' or '.join(missing)} metadata: the HDR ladder is published "
                         "without it (displays guess the grading's peak); ask the studio for the values",
                         v.color_transfer, "mastering display and content light level")
    found = []
    if v.mastering_display is not None:
        md = v.mastering_display
        found.append(f"mastering display {md.min_luminance:g}-{md.max_luminance:g} cd/m2")
    if v.content_light is not None:
        found.append(f"MaxCLL {v.content_light.max_cll}, MaxFALL {v.content_light.max_fall}")
    return Check("hdr", config.hdr_severity, True,
                 f"{kind} source, {v.bit_depth}-bit{'; ' + ', '.join(found) if found else ''}: an HDR ladder "
                 "and a tone-mapped SDR fallback", v.color_transfer, "sdr or hdr")


def _dolby_vision(v: VideoStream, config: QCConfig) -> Check:
    """Dolby Vision's dynamic metadata (RPU) is not carried: its base layer is what gets published."""
    if v.dolby_vision:
        base = "HDR10" if v.color_transfer == "smpte2084" else (v.color_transfer or "unspecified-transfer")
        return Check("dolby_vision", config.dolby_vision_severity, False,
                     f"Dolby Vision RPU present: not carried, the {base} base layer is published", True, False)
    return Check("dolby_vision", config.dolby_vision_severity, True, "no Dolby Vision metadata", False, False)


def _audio_present(info: MediaInfo, config: QCConfig) -> Check:
    if info.audio:
        return Check("audio_present", config.audio_missing_severity, True,
                     f"{len(info.audio)} audio stream(s)", len(info.audio))
    return Check("audio_present", config.audio_missing_severity, False,
                 "no audio stream: the title would be published silent; deliver audio or confirm", 0)


def _loudness(streams: list[dict[str, Any]], config: QCConfig) -> Check:
    window = f"{config.loudness_min_lufs:g}..{config.loudness_max_lufs:g} LUFS"
    problems: list[str] = []
    worst: float | None = None
    for s in streams:
        lufs = s["integrated_lufs"]
        if lufs is None:
            problems.append(f"audio #{s['index']}: no loudness measured")
            continue
        off = max(config.loudness_min_lufs - lufs, lufs - config.loudness_max_lufs)
        if worst is None or off > max(config.loudness_min_lufs - worst, worst - config.loudness_max_lufs):
            worst = lufs
        if lufs <= _SILENT_LUFS:
            problems.append(f"audio #{s['index']} has no measurable loudness (silent)")
        elif lufs < config.loudness_min_lufs:
            gain = config.loudness_target_lufs - lufs
            problems.append(f"audio #{s['index']} at {lufs:.1f} LUFS needs {gain:+.1f} dB to reach "
                            f"{config.loudness_target_lufs:g} LUFS, lifting its noise: check the mix/track")
        elif lufs > config.loudness_max_lufs:
            problems.append(f"audio #{s['index']} at {lufs:.1f} LUFS is louder than any delivery spec: "
                            "a limited or clipped master?")
    if problems:
        return Check("loudness", config.loudness_severity, False, "; ".join(problems), worst, window)
    figures = ", ".join(f"#{s['index']} {s['integrated_lufs']:.1f}" for s in streams)
    return Check("loudness", config.loudness_severity, True, f"integrated loudness {figures} LUFS", worst,
                 window)


def _loudness_range(streams: list[dict[str, Any]], config: QCConfig) -> Check:
    measured = [s for s in streams if s["lra_lu"] is not None]
    widest = max((s["lra_lu"] for s in measured), default=None)
    wide = [s for s in measured if s["lra_lu"] > config.loudness_range_max_lu]
    if wide:
        text = ", ".join(f"#{s['index']} {s['lra_lu']:.1f} LU" for s in wide)
        return Check("loudness_range", config.loudness_range_severity, False,
                     f"loudness range {text} is wide for home viewing: a theatrical mix?", widest,
                     config.loudness_range_max_lu)
    return Check("loudness_range", config.loudness_range_severity, True,
                 f"loudness range at most {widest if widest is not None else 0:.1f} LU", widest,
                 config.loudness_range_max_lu)


def _true_peak(streams: list[dict[str, Any]], config: QCConfig) -> Check:
    peaks = [(s["index"], s["true_peak_dbtp"]) for s in streams
             if s["true_peak_dbtp"] is not None and math.isfinite(s["true_peak_dbtp"])]
    highest = max((p for _, p in peaks), default=None)
    over = [(i, p) for i, p in peaks if p > config.true_peak_max_dbtp]
    if over:
        text = ", ".join(f"#{i} {p:+.1f} dBTP" for i, p in over)
        return Check("true_peak", config.true_peak_severity, False,
                     f"true peak {text} above {config.true_peak_max_dbtp:g} dBTP: clips in lossy encodes "
                     "unless limited", highest, config.true_peak_max_dbtp)
    text = f"true peak {highest:+.1f} dBTP" if highest is not None else "no true peak: no signal"
    return Check("true_peak", config.true_peak_severity, True, text, highest,
                 config.true_peak_max_dbtp)


def _silence(streams: list[dict[str, Any]], config: QCConfig) -> Check:
    per_stream = []
    for s in streams:
        start, end = float(s["start_s"]), float(s["start_s"]) + float(s["duration_s"])
        per_stream.append(_runs_check(
            "silence", "silent", _segments(s["silence"]), start, end, config.silence_min_s,
            config.silence_severity, config.silence_severity, config, subject=f"audio #{s['index']}",
        ))
    fired = [c for c in per_stream if not c.passed]
    if not fired:
        return Check("silence", config.silence_severity, True,
                     f"no silence of {config.silence_min_s:g} s or more below {config.silence_noise_db:g} dB",
                     0.0, config.silence_min_s)
    segments = tuple(sorted(seg for c in fired for seg in c.segments))
    longest = max(cast(float, c.value) for c in fired)
    return Check("silence", _worst(c.severity for c in fired), False, "; ".join(c.message for c in fired),
                 longest, config.silence_min_s, segments)


def _graded(name: str, what: str, values: list[tuple[int, float]], warn: float, error: float,
            fix: str) -> Check:
    if not values:
        return Check(name, "warning", True, "no audio stream: nothing to compare", None, warn)
    size = round(max(abs(v) for _, v in values), 3)
    detail = ", ".join(f"#{i} {v:+.3f} s" for i, v in values)
    if size > error:
        return Check(name, "error", False, f"{what} {detail} (limit {error:g} s): {fix}", size, error)
    if size > warn:
        return Check(name, "warning", False, f"{what} {detail} (limit {warn:g} s): {fix}", size, warn)
    return Check(name, "warning", True, f"{what} {detail}", size, warn)


def _av_start_offset(info: MediaInfo, config: QCConfig) -> Check:
    offsets = [(a.index, a.start_s - info.video.start_s) for a in info.audio]
    return _graded("av_start_offset", "audio start minus video start:", offsets, config.av_offset_warn_s,
                   config.av_offset_error_s, "the encodes would be out of sync; re-mux with the offset fixed")


def _duration_mismatch(info: MediaInfo, config: QCConfig) -> Check:
    diffs = [(a.index, a.duration_s - info.video.duration_s) for a in info.audio]
    return _graded("duration_mismatch", "audio duration minus video duration:", diffs,
                   config.duration_mismatch_warn_s, config.duration_mismatch_error_s,
                   "truncated or padded track; re-deliver or confirm")


# --- grouped audio layouts (encoding/audio.py): one extra decode of the audio only ------------------

# Pairs whose phase is checked, by layout: front L/R and each surround pair.
_PAIRS: dict[str, tuple[tuple[str, str], ...]] = {
    "stereo": (("FL", "FR"),),
    "5.1": (("FL", "FR"), ("BL", "BR")),
    "7.1": (("FL", "FR"), ("BL", "BR"), ("SL", "SR")),
}
_LAYOUT_NAMES: dict[str, tuple[str, ...]] = {
    "stereo": ("FL", "FR"),
    "5.1": ("FL", "FR", "FC", "LFE", "BL", "BR"),
    "7.1": ("FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}
_ASTATS_LINE = re.compile(r"^\[astats@(\w+) @ [^]]+\] (Channel|Peak level dB|RMS level dB): (\S+)")


def layout_filters(layout: str, lfe_cutoff_hz: float = 150.0) -> str:
    """Filters after a layout's source graph: per-channel levels, the LFE above its cutoff, each
    pair as mid/side, and the layout's loudness (ebur128); ends in the output pad ``[qc]``.

    Cheap: astats, a pan, two biquads and ebur128 over the audio only.
    """
    pairs = _PAIRS.get(layout, ())
    lfe = "LFE" in _LAYOUT_NAMES.get(layout, ())
    branches = 2 + len(pairs) + (1 if lfe else 0)
    labels = [f"[q{i}]" for i in range(branches)]
    parts = [f"asplit={branches}{''.join(labels)}",
             "[q0]astats@chan=measure_overall=none:measure_perchannel=RMS_level+Peak_level,anullsink"]
    at = 1
    for number, (left, right) in enumerate(pairs):
        # mid = (L+R)/2, side = (L-R)/2: a phase-inverted pair has almost no mid
        parts.append(f"[q{at}]pan=stereo|c0=0.5*{left}+0.5*{right}|c1=0.5*{left}-0.5*{right},"
                     f"astats@pair{number}=measure_overall=none:measure_perchannel=RMS_level,anullsink")
        at += 1
    if lfe:
        # two 2-pole high-passes: a 50 Hz rumble falls by ~38 dB, a full-band main channel hardly at all
        parts.append(f"[q{at}]pan=mono|c0=LFE,highpass=f={lfe_cutoff_hz:g},highpass=f={lfe_cutoff_hz:g},"
                     "astats@lfehigh=measure_overall=none:measure_perchannel=RMS_level,anullsink")
        at += 1
    parts.append(f"[q{at}]ebur128@r128=peak=true:framelog=quiet[qc]")
    return ";".join(parts)


def parse_layout_log(stderr: str, layout: str) -> dict[str, Any]:
    """Per-channel peak/RMS, each pair's mid/side RMS, the LFE's high-band RMS and the loudness."""
    stats: dict[str, dict[int, dict[str, float]]] = {}
    current: dict[str, int] = {}
    for line in stderr.splitlines():
        match = _ASTATS_LINE.match(line.strip())
        if not match:
            continue
        name, key, value = match.groups()
        if key == "Channel":
            current[name] = int(value)
            continue
        number = float(value) if value not in ("-inf", "inf", "nan") else -math.inf
        stats.setdefault(name, {}).setdefault(current.get(name, 1), {})[key] = number
    names = _LAYOUT_NAMES.get(layout, ())
    channels = {names[i - 1] if i - 1 < len(names) else str(i): {"peak_db": v.get("Peak level dB", -math.inf),
                                                               "rms_db": v.get("RMS level dB", -math.inf)}
                for i, v in sorted(stats.get("chan", {}).items())}
    pairs = {}
    for number, (left, right) in enumerate(_PAIRS.get(layout, ())):
        found = stats.get(f"pair{number}", {})
        pairs[f"{left}/{right}"] = {"mid_rms_db": found.get(1, {}).get("RMS level dB", -math.inf),
                                    "side_rms_db": found.get(2, {}).get("RMS level dB", -math.inf)}
    r128: dict[str, Any] = {}
    summary = stderr[stderr.rfind("Summary:"):] if "Summary:" in stderr else ""
    for line in summary.splitlines():
        for key, pattern in _R128_SUMMARY.items():
            m = pattern.match(line)
            if m and key not in r128:
                r128[key] = float(m.group(1))
    return {"channels": channels, "pairs": pairs,
            "lfe_high_rms_db": stats.get("lfehigh", {}).get(1, {}).get("RMS level dB"),
            "integrated_lufs": r128.get("integrated_lufs"), "true_peak_dbtp": r128.get("true_peak_dbtp")}


_R128_SUMMARY = {
    "integrated_lufs": re.compile(r"^\s*I:\s+(-?[\d.]+|-inf) LUFS$"),
    "true_peak_dbtp": re.compile(r"^\s*Peak:\s+(-?[\d.]+|-inf) dBFS$"),
}


def _db(value: float | None) -> str:
    return "-inf" if value is None or value == -math.inf else f"{value:.1f}"


def judge_layout(name: str, layout: str, stats: dict[str, Any], config: QCConfig = _DEFAULT_CONFIG) -> list[Check]:
    """The checks of one grouped layout: silent channels, LFE full-band content, phase-inverted pairs,
    and its loudness (information: every published track is normalised anyway)."""
    checks = []
    channels: dict[str, dict[str, float]] = stats["channels"]
    silent = [ch for ch, v in channels.items() if v["peak_db"] < config.channel_silent_db]
    if silent:
        checks.append(Check(f"{name}:silent_channels", config.channel_silent_severity, False,
                            f"{layout} channel(s) {', '.join(silent)} silent (peak below "
                            f"{config.channel_silent_db:g} dB): a missing or mis-patched track?",
                            ",".join(silent), config.channel_silent_db))
    else:
        checks.append(Check(f"{name}:silent_channels", config.channel_silent_severity, True,
                            f"every {layout} channel carries sound", "", config.channel_silent_db))
    if "LFE" in channels and "LFE" not in silent:
        total = channels["LFE"]["rms_db"]
        high = stats.get("lfe_high_rms_db")
        above = (high - total) if high is not None and high != -math.inf else -math.inf
        fired = above > config.lfe_fullband_db
        checks.append(Check(f"{name}:lfe_band", config.lfe_severity, not fired,
                            (f"LFE has full-band content: {above:.1f} dB of its energy above "
                             f"{config.lfe_cutoff_hz:g} Hz (a main channel patched to track 4?)") if fired else
                            f"LFE is band-limited ({_db(above)} dB above {config.lfe_cutoff_hz:g} Hz)",
                            round(above, 1) if above != -math.inf else None, config.lfe_fullband_db))
    for pair, v in stats["pairs"].items():
        left, right = pair.split("/")
        if left in silent or right in silent:
            continue
        mid, side = v["mid_rms_db"], v["side_rms_db"]
        excess = side - mid if mid != -math.inf else math.inf
        fired = excess > config.phase_inverted_db
        checks.append(Check(f"{name}:phase_{left}_{right}", config.phase_severity, not fired,
                            (f"{pair} is phase-inverted: its difference is {_db(excess)} dB louder than its sum "
                             "(inf: the sum is silent); it cancels in a downmix (invert one channel)") if fired else
                            f"{pair} in phase (side - mid {_db(excess)} dB)",
                            round(excess, 1) if math.isfinite(excess) else None, config.phase_inverted_db))
    lufs = stats.get("integrated_lufs")
    checks.append(Check(f"{name}:loudness", "info", True,
                        f"{layout} at {_db(lufs)} LUFS, true peak {_db(stats.get('true_peak_dbtp'))} dBTP before "
                        "normalisation", lufs, None))
    return checks
