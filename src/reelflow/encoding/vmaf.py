"""VMAF (libvmaf) of encodes against the source: vmaf_v0.6.1 up to 1080 lines, vmaf_4k_v0.6.1 above.

Which model scores what (``vmaf_model_for``, ``scoring_size``): a rung up to 1080 lines is scored
with vmaf_v0.6.1 (trained for 1080p viewing at three picture heights) against the source at its
display size, or, for a source taller than 1080 lines, against the source scaled to 1080 lines
(the same comparison an HD master of the title would get: a quarter of a 2160p reference's
pixels). A rung above 1080 lines is scored with vmaf_4k_v0.6.1 (4K viewing at 1.5 picture
heights) against the source at its display size. Scores of the two models are not on one scale,
so a title's hull never compares them: encoding/ladder.py stacks the rungs above 1080p on top of
the ladder below (its docstring says how).

Both inputs get frame-index timestamps (frame n at n/fps), so libvmaf pairs frame n with frame n
whatever the containers' timestamps say; the reference is cut to a shot by an input seek aimed
half a frame early plus a frame-exact ``trim``; the distorted is upscaled with bicubic (as Netflix
does) to the reference's display size, where the reference is scaled too if its pixels are not
square.

Subsampling (``subsample`` = step s > 1) scores frames 0, s, 2s, ... exactly as a full run scores
them. Two things make that true and cheap:

- VMAF's motion feature of frame n is min(SAD(n-1, n), SAD(n, n+1)) on the reference. Selecting
  only every s-th frame would make neighbours s frames apart and inflate motion, and with it the
  score (+2.3 VMAF measured on e05_dog at 360p). So ``select`` keeps the triples (ks-1, ks, ks+1)
  on both inputs, before any scaling, and libvmaf's ``n_subsample=3`` computes VIF and ADM (the
  expensive features) on the middle frame of each triple only, while its temporal extractor still
  sees every selected frame. Per-frame scores then equal a full run's on those frames.
- libvmaf's own ``n_subsample`` alone also scores exact frames, but every frame is then upscaled
  and fed in; the select costs 3/s of that.

A rung at a lower rate than the source (a half-rate rung of a 59.94 title: encode.half_rate) is
scored against every source frame, each of its frames standing for the source frames until its
next one (``distorted_fps``: its frames at their own times, then the ``fps`` filter up to the
source's rate repeats each), as a player shows it. Per-frame scores then line up with the source's
frames and shots, and VMAF counts the motion the lower rate gives up against it.

Several shots encoded as one stream (trials.py) are scored in one run as ``pieces``: each piece
(a shot) is subsampled from its own first frame, so every shot has its keyframe and frames at its
own step scored, and the triples stay disjoint (a piece's last scored frame is at least three
before the next piece). A scored first frame then has the previous shot's last frame as its
neighbour, as in a run over the whole delivered rung.

A step that shares a factor with the encoder's frame-type period (B-frame pyramids of 2, 3 or 4
frames, GOPs of even lengths) keeps landing on the same frame type and biases the mean, so steps
must be 1 or coprime with 6 (5, 7, 11, 13, ...).
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from reelflow.encoding.probe import MediaInfo, VideoStream
from reelflow.errors import ConfigError, StageError, ToolFailed
from reelflow.infra.tools import ffmpeg_exe, run

log = logging.getLogger(__name__)

VMAF_MODEL = "vmaf_v0.6.1"
VMAF_4K_MODEL = "vmaf_4k_v0.6.1"
# Rungs taller than this are UHD: scored with the 4K model at the source's display size.
HD_LINES = 1080
# libvmaf computes VIF/ADM on every third selected frame: the middle of each (n-1, n, n+1) triple.
_TRIPLE = 3

Piece = tuple[int, int, int]
"""(start, end, step): frames [start, end) of the compared timeline, scored from ``start`` every ``step``."""


class VmafError(StageError):
    """VMAF could not be measured: ffmpeg/libvmaf failed, or scored other frames than planned."""


@dataclass(frozen=True)
class VmafResult:
    """Pooled VMAF over the frames scored (every frame, or a subsample of each piece)."""

    mean: float                   # subsampled: a piece's first frame (a keyframe) weighs one frame,
    harmonic_mean: float          # the piece's other scored frames share the rest; libvmaf's harmonic mean
    min: float
    p5: float                     # 5th percentile of the per-frame scores (nearest rank)
    frames: int                   # frames scored
    cpu_s: float                  # CPU seconds of the ffmpeg process (shared equally in a batch)
    subsample: int = 1            # the largest step of any piece
    scores: tuple[float, ...] = field(default=(), repr=False)   # per scored frame, in order
    scored: tuple[int, ...] = field(default=(), repr=False)     # their frame numbers on the compared timeline
    weights: tuple[float, ...] = field(default=(), repr=False)  # frames each one stands for
    model: str = VMAF_MODEL       # the libvmaf model that scored it


def check_subsample(step: int) -> int:
    """``step`` if it is a usable VMAF subsample step (1, or coprime with 6); else ConfigError."""
    if step < 1 or (step > 1 and math.gcd(step, 6) != 1):
        raise ConfigError(
            f"VMAF subsample step {step} shares a factor with B-frame/GOP periods (2, 3, 4, 6, 8) and would "
            "keep scoring the same frame types; use 1 or a step coprime with 6, such as 5, 7, 11 or 13"
        )
    return step


def _piece_centres(pieces: Sequence[Piece], i: int) -> range:
    start, end, step = pieces[i]
    # A scored frame's triple must end before the next piece's first triple (end - 1, end, end + 1).
    last = end - 1 if i == len(pieces) - 1 or step == 1 else end - 3
    return range(start, max(start, last) + 1, step)


def piece_centres(pieces: Sequence[Piece]) -> list[int]:
    """The frames a run scores, in order: each piece's first frame and every step-th after it."""
    return [c for i in range(len(pieces)) for c in _piece_centres(pieces, i)]


def scored_frames(frames: int, subsample: int) -> int:
    """How many of ``frames`` frames a one-piece run with this step scores."""
    return len(piece_centres([(0, frames, subsample)])) if frames > 0 else 0


def check_pieces(pieces: Sequence[Piece]) -> None:
    """ConfigError unless the pieces can be scored in one run (see the module docstring)."""
    if not pieces:
        raise ConfigError("no pieces to score")
    steps = {check_subsample(step) for _, _, step in pieces}
    if len(steps) > 1 and 1 in steps:
        raise ConfigError(f"pieces of one run are all subsampled or none is: steps {sorted(steps)}")
    position = 0
    for i, (start, end, step) in enumerate(pieces):
        if start < position or end <= start:
            raise ConfigError(f"pieces must be ascending, disjoint and not empty: {list(pieces)}")
        if step > 1 and i < len(pieces) - 1 and end - start < 3:
            raise ConfigError(f"subsampled piece {start}-{end} has fewer than 3 frames and is not the last")
        position = end


def _select(pieces: Sequence[Piece]) -> str:
    """select expression keeping each piece's scored frames with their two neighbours."""
    terms = []
    for i, (start, _, step) in enumerate(pieces):
        centres = _piece_centres(pieces, i)
        terms.append(f"between(n,{max(0, start - 1)},{centres[-1] + 1})*lte(mod(n-{start}+1,{step}),2)")
    return "+".join(terms)


def seek_s(frame: int, fps: Fraction, start_s: float = 0.0) -> float:
    """Input seek position (absolute, for ``-seek_timestamp 1``) that lands exactly on ``frame``.

    ffmpeg's accurate seek starts at the first frame whose time is at or after the position; half a
    frame early makes that the intended frame despite rounding of either time (as in
    encode.force_key_frames_arg). Absolute, because ffmpeg otherwise adds the file's start time,
    which is the audio's when AAC priming starts it earlier than the video (off by one frame at 50 fps).
    """
    return start_s + float((frame - Fraction(1, 2)) / fps)


def _filter_value(value: str) -> str:
    """Escape a value for a filter option inside a filtergraph (two levels of ffmpeg escaping)."""
    for ch in "\\':":
        value = value.replace(ch, "\\" + ch)          # the option parser's level
    for ch in "\\'[],;":
        value = value.replace(ch, "\\" + ch)          # the filtergraph parser's level
    return value


def _frame_chain(fps: Fraction, frames: int | None, pieces: Sequence[Piece] | None, subsample: int,
                 width: int, height: int, pix_fmt: str, from_fps: Fraction | None = None) -> str:
    chain = [f"setpts=N*{fps.denominator}/{fps.numerator}/TB"]   # frame n at n/fps on both inputs
    if from_fps is not None and from_fps != fps:
        # A lower-rate encode: its frame k at k/from_fps, then each repeated until the next. The fps
        # filter's frame n is at n/fps already (time base 1/fps): a setpts after it would round
        # n * (1/fps) / (1/fps) down to n - 1 now and then.
        if from_fps > fps:
            raise ConfigError(f"an encode at {from_fps} fps is not scored against a reference at {fps}")
        chain = [f"setpts=N*{from_fps.denominator}/{from_fps.numerator}/TB", f"fps={fps.numerator}/{fps.denominator}"]
    if frames is not None:
        chain.append(f"trim=end_frame={frames}")                 # frame-exact end; ffmpeg stops reading there
    if pieces is not None and subsample > 1:
        chain.append(f"select='{_select(pieces)}'")              # scored frames and their neighbours, no others
    elif subsample > 1:
        chain.append(f"select='lte(mod(n+1,{subsample}),2)'")    # n mod s in {s-1, 0, 1}
    chain += [f"scale={width}:{height}:flags=bicubic", "setsar=1", f"format={pix_fmt}"]
    return ",".join(chain)


def distorted_frames(frames: int, fps: Fraction, distorted_fps: Fraction | None) -> int:
    """Frames an encode at ``distorted_fps`` has for ``frames`` reference frames at ``fps``."""
    return frames if distorted_fps is None else math.ceil(frames * distorted_fps / fps)


def _plan(frames: int | None, subsample: int, pieces: Sequence[Piece] | None) -> tuple[list[Piece] | None, int]:
    """The pieces of a run (None: a whole file of unknown length) and its largest step."""
    if pieces is not None:
        if frames is None:
            raise ConfigError("scoring pieces needs the number of frames compared")
        check_pieces(pieces)
        if pieces[-1][1] > frames:
            raise ConfigError(f"pieces end at frame {pieces[-1][1]}, beyond the {frames} frames compared")
        return list(pieces), max(step for _, _, step in pieces)
    check_subsample(subsample)
    return ([(0, frames, subsample)] if frames is not None else None), subsample


def vmaf_many_argv(
    distorted: Sequence[Path],
    reference: Path,
    *,
    width: int,
    height: int,
    fps: Fraction,
    subsample: int = 1,
    ref_start_frame: int = 0,
    ref_start_s: float = 0.0,
    frames: int | None = None,
    pieces: Sequence[Piece] | None = None,
    log_paths: Sequence[Path],
    threads: int = 1,
    pix_fmt: str = "yuv420p",
    model: str = VMAF_MODEL,
    dist_start: tuple[int, float] | None = None,
    distorted_fps: Fraction | None = None,
) -> list[str]:
    """One ffmpeg run scoring several encodes of the same frames: the reference is decoded once.

    ``pieces`` (frames relative to ``ref_start_frame``) replace ``subsample`` when several shots
    are compared at once; ``ref_start_s`` is the source video stream's first timestamp;
    ``distorted_fps``: the encodes' rate when lower than ``fps`` (each frame repeated up to ``fps``).
    ``dist_start`` (frame of ``fps``, the distorted stream's first timestamp) seeks the distorted
    inputs too, for a part of a whole-title encode (``measure_rung_vmaf`` with a span).
    """
    plan, step = _plan(frames, subsample, pieces)
    if len(log_paths) != len(distorted) or not distorted:
        raise ConfigError("one log path per distorted input, and at least one input")
    count = len(distorted)
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y",
            "-filter_threads", str(threads)]                    # scale/select threads (CPU stays countable)
    for path in distorted:
        if dist_start is not None and dist_start[0] > 0:
            argv += ["-seek_timestamp", "1", "-ss", f"{seek_s(dist_start[0], fps, dist_start[1]):.6f}"]
        # An encode whose size changes (a rung with per-shot resolution) keeps its one filter graph:
        # ffmpeg would rebuild it at each change, restarting libvmaf, whose log then holds only the
        # frames after the last one. The scale filter takes each frame's size as it comes.
        argv += ["-reinit_filter", "0"]
        argv += ["-threads", str(threads), "-i", str(path)]     # decoder threads
    argv += ["-threads", str(threads)]
    if ref_start_frame > 0:
        argv += ["-seek_timestamp", "1",                        # -ss is the stream's own time, not file-relative
                 "-ss", f"{seek_s(ref_start_frame, fps, ref_start_s):.6f}"]
    argv += ["-i", str(reference)]
    chain = _frame_chain(fps, frames, plan, step, width, height, pix_fmt)
    distorted_chain = _frame_chain(fps, frames, plan, step, width, height, pix_fmt, from_fps=distorted_fps)
    graph = [f"[{count}:v:0]{chain}" + (f",split={count}" if count > 1 else "")
             + "".join(f"[r{i}]" for i in range(count))]
    for i, log_path in enumerate(log_paths):
        options = [f"model=version={model}", "log_fmt=json", f"log_path={_filter_value(str(log_path))}",
                   f"n_threads={threads}"]
        if step > 1:
            options.append(f"n_subsample={_TRIPLE}")            # VIF/ADM on the middle of each triple only
        graph.append(f"[{i}:v:0]{distorted_chain}[d{i}]")
        graph.append(f"[d{i}][r{i}]libvmaf={':'.join(options)}[o{i}]")
    argv += ["-filter_complex", ";".join(graph)]
    for i in range(count):
        argv += ["-map", f"[o{i}]", "-f", "null", "-"]          # the scores go to the log, frames nowhere
    return argv


def vmaf_argv(
    distorted: Path,
    reference: Path,
    *,
    width: int,
    height: int,
    fps: Fraction,
    subsample: int = 1,
    ref_start_frame: int = 0,
    ref_start_s: float = 0.0,
    frames: int | None = None,
    log_path: Path,
    threads: int = 1,
    pix_fmt: str = "yuv420p",
    model: str = VMAF_MODEL,
) -> list[str]:
    """ffmpeg argv scoring ``distorted`` against frames [ref_start_frame, +frames) of ``reference``.

    ``width`` x ``height`` is the reference's display size; ``frames`` None means to the end.
    """
    return vmaf_many_argv([distorted], reference, width=width, height=height, fps=fps, subsample=subsample,
                          ref_start_frame=ref_start_frame, ref_start_s=ref_start_s, frames=frames,
                          log_paths=[log_path], threads=threads, pix_fmt=pix_fmt, model=model)


def measure_vmaf_many(
    distorted: Sequence[Path],
    reference: Path,
    *,
    width: int,
    height: int,
    fps: Fraction,
    subsample: int = 1,
    ref_start_frame: int = 0,
    ref_start_s: float = 0.0,
    frames: int | None = None,
    pieces: Sequence[Piece] | None = None,
    threads: int = 1,
    pix_fmt: str = "yuv420p",
    log_dir: Path | None = None,
    model: str = VMAF_MODEL,
    dist_start: tuple[int, float] | None = None,
    distorted_fps: Fraction | None = None,
) -> list[VmafResult]:
    """VMAF of each distorted file in one ffmpeg run; the run's CPU seconds are shared equally.

    With ``frames`` given, every result must have scored exactly the planned frames (VmafError
    otherwise: a short encode or a wrong cut is not scored silently).
    """
    plan, step = _plan(frames, subsample, pieces)
    if frames is not None:
        # libvmaf's frame sync repeats the last frame of a short input rather than stopping
        # (and its "shortest" option can drop the last frame pair), so lengths are checked here.
        needed = distorted_frames(frames, fps, distorted_fps)
        for path in distorted:
            skipped = distorted_frames(dist_start[0], fps, distorted_fps) if dist_start is not None else 0
            count = count_frames(path) - skipped
            if count < needed:
                raise VmafError(f"{path.name} has {count} frames, {needed} are to be compared: the encode and "
                                "the shot differ in length")
    with tempfile.TemporaryDirectory(prefix="vmaf-", dir=log_dir) as tmp:
        logs = [Path(tmp) / f"vmaf{i}.json" for i in range(len(distorted))]
        argv = vmaf_many_argv(distorted, reference, width=width, height=height, fps=fps, subsample=subsample,
                              ref_start_frame=ref_start_frame, ref_start_s=ref_start_s, frames=frames,
                              pieces=pieces, log_paths=logs, threads=threads, pix_fmt=pix_fmt, model=model,
                              dist_start=dist_start, distorted_fps=distorted_fps)
        try:
            done = run(argv)
        except ToolFailed as exc:
            names = ", ".join(p.name for p in distorted)
            raise VmafError(f"VMAF of {names} against {reference.name} failed: {exc}") from exc
        cpu_each = done.cpu_s / len(distorted)
        results = [replace(_parse_log(log_path, path, cpu_each, step, plan), model=model)
                   for log_path, path in zip(logs, distorted, strict=True)]
    return results


def count_frames(path: Path) -> int:
    """Video frames in a file, without decoding; VmafError if it cannot be read.

    An MP4/MOV's sample table counts them exactly, so a long rung's span is checked without reading
    the rung; other containers (and fragmented MP4, whose table is empty) are demuxed.
    """
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames and "mp4" in container.format.name.split(","):
                return stream.frames
            return sum(1 for p in container.demux(stream) if p.size)
    except (av.error.FFmpegError, IndexError) as exc:
        raise VmafError(f"{path.name} cannot be read as video ({exc})") from exc


def measure_vmaf(
    distorted: Path,
    reference: Path,
    *,
    width: int,
    height: int,
    fps: Fraction,
    subsample: int = 1,
    ref_start_frame: int = 0,
    ref_start_s: float = 0.0,
    frames: int | None = None,
    threads: int = 1,
    pix_fmt: str = "yuv420p",
    log_dir: Path | None = None,
    model: str = VMAF_MODEL,
    distorted_fps: Fraction | None = None,
) -> VmafResult:
    """VMAF of one encode against the reference frames it stands for (see ``vmaf_argv``)."""
    return measure_vmaf_many([distorted], reference, width=width, height=height, fps=fps, subsample=subsample,
                             ref_start_frame=ref_start_frame, ref_start_s=ref_start_s, frames=frames,
                             threads=threads, pix_fmt=pix_fmt, log_dir=log_dir, model=model,
                             distorted_fps=distorted_fps)[0]


def vmaf_pix_fmt(info: MediaInfo) -> str:
    """The format both inputs are compared in: 8-bit 4:2:0, or 10-bit 4:2:0 for deeper sources."""
    return "yuv420p10le" if info.video.bit_depth > 8 else "yuv420p"


def vmaf_model_for(height: int) -> str:
    """The model that scores a rung ``height`` lines tall: the 4K one above 1080 lines."""
    return VMAF_4K_MODEL if height > HD_LINES else VMAF_MODEL


def scoring_size(video: VideoStream, height: int) -> tuple[int, int]:
    """(width, height) at which a rung ``height`` lines tall is compared with the source.

    Above 1080 lines, the source's display size (the 4K model's viewing). Up to 1080 lines, the
    source's display size too, unless the source is taller than 1080 lines: then its display
    size scaled to 1080 lines, so the HD rungs of a UHD title are scored as those of an HD
    master (what the HD model is for), and a reference of a quarter of the pixels is compared.
    """
    if height > HD_LINES or video.height <= HD_LINES:
        return video.display_width, video.height
    return round(HD_LINES * video.display_width / video.height / 2) * 2, HD_LINES


def _rendition_height(path: Path) -> int:
    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].height)
    except (av.error.FFmpegError, IndexError) as exc:
        raise VmafError(f"{path.name} cannot be read as video ({exc})") from exc


def _video_start_s(path: Path) -> float:
    """The first timestamp of a file's video stream, in seconds (0.0 when it has none)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            start, base = stream.start_time, stream.time_base
            return float(start * base) if start is not None and base is not None else 0.0
    except (av.error.FFmpegError, IndexError) as exc:
        raise VmafError(f"{path.name} cannot be read as video ({exc})") from exc


def measure_rung_vmaf(rendition: Path, info: MediaInfo, *, subsample: int = 1, threads: int = 1,
                      log_dir: Path | None = None, height: int | None = None, half_rate: bool = False,
                      span: tuple[int, int] | None = None, offset: int = 0) -> VmafResult:
    """A delivered rung's VMAF against the whole source, with the model and at the size its height
    calls for (``vmaf_model_for``, ``scoring_size``; ``height`` None: read from the file): on every
    frame, or (``subsample``) on every n-th from the first, with true neighbours for motion.

    ``span`` (start, end) scores frames [start, end) only, both inputs seeked there, with one frame
    of context on each side so that the motion feature sees the same neighbours as in a whole run:
    the spans of ``rung_spans`` joined by ``joined_scores`` equal a whole run, frame for frame (a
    subsampled span must start on a multiple of the step). The ingest flow scores a long rung that
    way, its spans on any worker.

    A ``half_rate`` rung (the source's even frames) gets one score per source frame too: each of its
    frames is compared with the source frame it replaces and with the next (see the module docstring);
    its spans start their context on an even frame, so the repeats fall as in a whole run.

    ``offset``: the rendition holds the rung from that source frame on (a span's own pieces joined,
    see ``span_cover``), not from frame 0; it must hold the span's context frames too.
    """
    video = info.video
    lines = height if height is not None else _rendition_height(rendition)
    width, size_h = scoring_size(video, lines)
    options: dict[str, Any] = dict(width=width, height=size_h, fps=video.fps, ref_start_s=video.start_s,
                                   threads=threads, pix_fmt=vmaf_pix_fmt(info), log_dir=log_dir,
                                   model=vmaf_model_for(lines), distorted_fps=video.fps / 2 if half_rate else None)
    if offset and span is None:
        raise ConfigError("a rendition that starts after frame 0 is scored by span")
    if span is None or (span == (0, video.frames) and not offset):
        return measure_vmaf(rendition, info.path, subsample=subsample, frames=video.frames, **options)
    start, end = span
    if not 0 <= start < end <= video.frames or start % check_subsample(subsample):
        raise ConfigError(f"span {start}-{end} of {video.frames} frames cannot be scored at step {subsample}")
    before, after = int(start > 0), int(end < video.frames)
    if half_rate and (start - before) % 2:
        before += 1                            # the distorted input is seeked to one of its own frames
    first = start - before
    count = end - first + after
    if first < offset or offset % (2 if half_rate else 1):
        raise ConfigError(f"{rendition.name} starts at frame {offset}, after the context of span {start}-{end}")
    dist_start = (first - offset, _video_start_s(rendition))
    if subsample == 1:
        whole = measure_vmaf_many([rendition], info.path, ref_start_frame=first, frames=count,
                                  dist_start=dist_start, **options)[0]
        scores = whole.scores[before:before + end - start]
        if len(scores) != end - start:
            raise VmafError(f"VMAF of {rendition.name} scored {len(scores)} frames of span {start}-{end}")
        return replace(_pooled(scores, tuple(range(start, end)), (1.0,) * len(scores), whole.cpu_s, 1),
                       model=whole.model)
    # libvmaf computes VIF/ADM on every third frame it is given, from the first: a whole run's first
    # triple lacks frame -1, so its centres come 0th, 3rd, 6th... Here the span's first centre has a
    # true previous frame, so two more frames go first as a piece of their own (scored, then dropped)
    # and the span's triples fall as a whole run's do.
    lead = min(start, _TRIPLE)
    if 0 < start < _TRIPLE + 1:
        raise ConfigError(f"a subsampled span must start at frame 0 or {_TRIPLE + 1} or later, not {start}")
    if half_rate and (start - lead) % 2:
        lead += 1       # a 4-frame first piece selects frames 0, 1 and 3: the triples still fall right
    first = start - lead
    if first < offset or offset % (2 if half_rate else 1):
        raise ConfigError(f"{rendition.name} starts at frame {offset}, after the context of span {start}-{end}")
    dist_start = (first - offset, dist_start[1])
    pieces = [(0, lead, subsample)] if lead else []
    part = measure_vmaf_many([rendition], info.path, ref_start_frame=first, frames=end - first + after,
                             dist_start=dist_start, subsample=subsample,
                             pieces=[*pieces, (lead, lead + end - start, subsample)], **options)[0]
    dropped = len(pieces)
    scored = tuple(first + f for f in part.scored[dropped:])
    return replace(_pooled(part.scores[dropped:], scored, (1.0,) * len(scored), part.cpu_s, subsample),
                   model=part.model)


SPAN_CONTEXT = (_TRIPLE + 1, 1)
"""Frames before and after a span that measure_rung_vmaf may read (a subsampled span's lead piece, one
more at half rate; one frame of motion context after)."""


def span_cover(span: tuple[int, int], frames: int) -> tuple[int, int]:
    """The frames [first, end) a rendition must hold to score ``span`` of a rung of ``frames``."""
    return max(0, span[0] - SPAN_CONTEXT[0]), min(frames, span[1] + SPAN_CONTEXT[1])


def rung_spans(frames: int, fps: Fraction, span_s: float, subsample: int = 1) -> list[tuple[int, int]]:
    """A rung's frames cut into spans of about ``span_s`` seconds for separate VMAF runs: one span when
    the title is shorter than one and a half, and every span starting on a multiple of ``subsample``."""
    length = max(subsample, round(span_s * fps / subsample) * subsample)
    if frames < 1.5 * length:
        return [(0, frames)]
    bounds = list(range(0, frames, length))
    if frames - bounds[-1] < length // 2:       # no short last span: joined to the one before
        bounds.pop()
    return list(itertools.pairwise([*bounds, frames]))


def joined_scores(parts: Sequence[VmafResult], frames: int) -> VmafResult:
    """The spans of a rung of ``frames`` frames, in order, as one result, pooled as a whole run pools
    them: every frame scored once, CPU added."""
    if not parts:
        raise VmafError("no VMAF spans to join")
    scores = tuple(s for p in parts for s in p.scores)
    scored = tuple(f for p in parts for f in p.scored)
    if any(b <= a for a, b in itertools.pairwise(scored)) or scored[-1] >= frames:
        raise VmafError("VMAF spans overlap, are out of order or go beyond the title")
    step = max(p.subsample for p in parts)
    return replace(_pooled(scores, scored, _weights([(0, frames, step)], scored), math.fsum(p.cpu_s for p in parts),
                           step), model=parts[0].model)


def piece_scores(result: VmafResult, pieces: Sequence[Piece]) -> list[VmafResult]:
    """One run's result split by piece: each piece's own pooled scores (CPU shared by frames)."""
    out = []
    total = sum(end - start for start, end, _ in pieces)
    for start, end, step in pieces:
        rows = [(f, s) for f, s in zip(result.scored, result.scores, strict=True) if start <= f < end]
        if not rows:
            raise VmafError(f"no frame of piece {start}-{end} was scored")
        frames = tuple(f for f, _ in rows)
        out.append(replace(_pooled(tuple(s for _, s in rows), frames, _weights([(start, end, step)], frames),
                                   result.cpu_s * (end - start) / total, step), model=result.model))
    return out


def _weights(pieces: Sequence[Piece] | None, scored: Sequence[int]) -> tuple[float, ...]:
    """How many frames each scored frame stands for.

    A piece begins a shot with an IDR frame, coded better than the rest, and a subsample always
    contains it: it stands for itself, the piece's other scored frames share its other frames.
    Otherwise a short shot's mean would lean on its keyframe (half of it at 12 frames, step 11).
    """
    if pieces is None:
        return (1.0,) * len(scored)
    weights = []
    for start, end, step in pieces:
        inside = [f for f in scored if start <= f < end]
        if step == 1:
            weights += [1.0] * len(inside)
        elif len(inside) == 1:
            weights.append(float(end - start))
        else:
            weights += [1.0] + [(end - start - 1) / (len(inside) - 1)] * (len(inside) - 1)
    return tuple(weights)


def _pooled(scores: tuple[float, ...], scored: tuple[int, ...], weights: tuple[float, ...], cpu_s: float,
            step: int) -> VmafResult:
    ranked = sorted(scores)
    p5 = ranked[max(0, math.ceil(0.05 * len(ranked)) - 1)]
    total = math.fsum(weights)
    mean = math.fsum(w * s for w, s in zip(weights, scores, strict=True)) / total
    harmonic = total / math.fsum(w / (1.0 + s) for w, s in zip(weights, scores, strict=True)) - 1.0
    return VmafResult(mean=mean, harmonic_mean=harmonic, min=ranked[0], p5=p5, frames=len(scores), cpu_s=cpu_s,
                      subsample=step, scores=scores, scored=scored, weights=weights)


def _parse_log(log_path: Path, distorted: Path, cpu_s: float, step: int, pieces: Sequence[Piece] | None) -> VmafResult:
    try:
        data: Any = json.loads(log_path.read_text())
        scores = tuple(float(f["metrics"]["vmaf"]) for f in data["frames"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VmafError(f"libvmaf wrote no usable log for {distorted.name} ({exc!r})") from exc
    if not scores:
        raise VmafError(f"libvmaf scored no frame of {distorted.name}")
    if pieces is not None:
        centres = piece_centres(pieces)
        if len(scores) != len(centres):
            raise VmafError(f"VMAF of {distorted.name} scored {len(scores)} frames, planned {len(centres)} "
                            f"(pieces {list(pieces)}): the encode and the shot differ in length")
        scored = tuple(centres)
    else:
        scored = tuple(range(0, len(scores) * step, step))
    return _pooled(scores, scored, _weights(pieces, scored), cpu_s, step)
