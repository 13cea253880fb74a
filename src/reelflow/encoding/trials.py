"""Trial encodes: every shot at candidate resolutions and a few CRFs, scored with VMAF, as hull points.

What a trial point promises: the final encode of that shot at that resolution and CRF, with the
final preset (x264 ``medium``), comes out at the point's kbps and VMAF (at the source's display
size). What keeps the analysis cheap (the budget is 1.5x the CPU of the final ladder encodes,
where an exhaustive medium grid costs 10-15x):

1. A fast preset with a measured correction. Trials use ``superfast`` plus medium's macroblock
   tree and 40-frame lookahead (``x264_params``): together about a fifth of medium's CPU. Without
   the tree, superfast's rate relative to medium's depends on how long a shot is (medium's tree
   pays off over long shots: medium/superfast rate ratio 0.57 on a whole 10 s clip, 0.70-0.83 on
   a 1.5 s piece of it), so no correction measured on short pieces would hold; with it, the two
   follow each other within about 5-10%. The remaining gap depends on content (VMAF offsets from
   +2.7 to +14 at CRF 34 over ../shared/media), so per title a sample (``sample_fraction`` of it, at
   most ``sample_max_s``, in ``sample_segment_s`` pieces spread over the shots, shorter ones in as
   many shots on a short multi-shot title: ``sample_segments``) is encoded with
   both presets, and the rate ratio and VMAF offset per (resolution, CRF) correct every trial,
   interpolated in log(height) between ``calibration_heights`` measured resolutions.
   ``calibrate=False`` uses the fixed table below instead.
2. VMAF on a frame subsample (vmaf.py): every ``vmaf_subsample``-th frame (11, coprime with B-frame
   and GOP periods) from each shot's first frame, with motion computed from true neighbours so the
   scores equal a full run's on those frames; short shots get a smaller step (never under 5) so at
   least ``vmaf_min_frames`` are scored. The reference is decoded once for all trials of a run.
3. A few CRF probes per resolution and interpolation: log rate and VMAF are smooth in CRF, so a
   quadratic through each shot's three probes (``crfs``; linear where that would leave the two
   nearest probes' range) gives points every ``crf_step`` CRF. ``shot_crfs = "outer"`` tries each
   shot at the outer two only and shapes the points between with the curvature of the sample's
   three probes at that height: about a quarter less analysis CPU, but planned VMAF about one
   point less accurate over ../shared/media (docs/benchmarks.md), so it is not the default.
   ``shot_crfs = "placed"`` (``place_probes``) tries each height at two or three CRFs around the
   band where the sample puts it on the hull, which is where its rungs land: about a fifth fewer
   trials, but the closed loop's carries misfire more often, and where the sample's hull is not
   the title's a rung's height can be left without the CRFs it needs (Caminandes; docs/benchmarks.md,
   session 6), so it is not the default either.
4. Resolutions that cannot reach the hull are not tried. A rung has one resolution for all shots,
   so this is decided once per title, on the sample's corrected points (``prune_heights``): from
   the middle candidate down while each lower one puts a point on (or within ``prune_margin`` of)
   the hull at rates of at least ``min_kbps``, then up while each higher one does so at VMAF up to
   ``top_vmaf``; the tallest candidate always stays (``keep_tallest``). The sample itself is tried
   at every candidate in one run: a run per height, to stop early, would decode the sample and
   start encoders again each time.
5. Few processes. Consecutive shots (``group_shots``, up to ``group_s``) are one encode run, one
   stream per (resolution, CRF) with an IDR frame at each shot start (closed GOPs, so no shot
   refers to another), and one VMAF run with each shot scored as its own piece: encoder and
   libvmaf start-up costs are paid per run, not per shot (Sintel's eight 1-2 s shots cost 11 CPU s
   tried one by one, 7 in one run). Everything is single-threaded (``threads``): the CPU time of
   each process is its own (tools.run), and the flow gets parallelism by running groups at once.

6. UHD titles (a source taller than 1080 lines; 1440 and 2160 are candidates only then, so an HD
   title is planned exactly as before). The heights up to 1080 are planned as for an HD master:
   their sample trials and calibration run on a 1080-line proxy of the sample (cut in the same run,
   so the 2160p source is decoded once; a quarter of the pixels to decode and scale after that),
   and every trial of theirs is scored with the HD model against the source scaled to 1080 lines
   (vmaf.py). The heights above 1080 are scored with the 4K model at the source's size, and tried
   on the full-size sample only (``uhd_trials = "sample"``): there a trial costs about four times a
   1080p one in encoding and in VMAF, so trying every shot would break the analysis budget
   (docs/benchmarks.md, "UHD ladders"). Each shot's points there are its own 1080p trials moved by what the
   sample measured between 1080p and that height at the same CRF (``height_map``: rate ratio and
   VMAF offset, from the HD model at 1080 lines to the 4K one at 2160), then corrected to the final
   preset like any trial. The preset correction is measured at HD heights only; at a UHD height its
   VMAF offset is carried through the bridge's equivalent CRF (``uhd_correction``), since the 4K
   model scores a soft picture near its top whatever the preset. The sample tries the UHD heights
   one or two CRF steps past ``crfs`` where the 4K model is still over ``top_vmaf`` at the highest
   (``uhd_sample_trials``; each shot's points there follow its trial at the highest CRF:
   ``reach_map``), so the top rung can reach its aim on easy content.
   What that misses (a shot whose UHD detail differs from the sample's) the closed loop catches:
   the first UHD rung is checked on its own (analysis.deliver_rungs).

Trial streams are NUT files; a shot's kbps is the sum of its frames' packet sizes (no container
overhead) over its duration. Per-trial CPU is the runs' CPU shared by pixels x frames (encodes)
and equally per trial, by frames per shot (VMAF); the totals are exact.
"""

from __future__ import annotations

import itertools
import logging
import math
import shutil
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import pairwise
from pathlib import Path
from typing import TypeVar

import av

from reelflow.encoding.codecs import CODECS, VideoCodec, codec_for
from reelflow.encoding.encode import force_key_frames_arg, rung_size, short_side
from reelflow.encoding.hull import RdPoint, ShotPoints, upper_hull
from reelflow.encoding.probe import MediaInfo, VideoStream
from reelflow.encoding.shots import Shot
from reelflow.encoding.vmaf import (
    HD_LINES,
    VmafResult,
    check_subsample,
    measure_vmaf_many,
    piece_scores,
    scoring_size,
    seek_s,
    vmaf_model_for,
    vmaf_pix_fmt,
)
from reelflow.errors import ConfigError, StageError, ToolFailed
from reelflow.infra.settings import TrialConfig
from reelflow.infra.tools import ffmpeg_exe, require_encoder, run

log = logging.getLogger(__name__)

Size = tuple[int, int]
C = TypeVar("C", int, float)   # CRFs: whole for trials, any for an argv


@dataclass(frozen=True)
class Trial:
    """One trial encode as measured: its preset's own rate and (subsampled) VMAF."""

    width: int
    height: int
    crf: int
    preset: str
    kbps: float
    vmaf: float
    frames_scored: int
    encode_cpu_s: float       # share of its encode run (by pixels)
    vmaf_cpu_s: float         # share of its VMAF run (equal)

    @property
    def cpu_s(self) -> float:
        return self.encode_cpu_s + self.vmaf_cpu_s


@dataclass(frozen=True)
class Correction:
    """From the trial preset to the final preset at the same resolution and CRF.

    final kbps = trial kbps * rate_ratio; final VMAF = trial VMAF + vmaf_offset. Tables are
    [height][crf]; between and beyond the rows and columns, values are interpolated linearly (in
    log(height) and CRF) and held constant outside.
    """

    preset: str
    final_preset: str
    heights: tuple[int, ...]                      # ascending
    crfs: tuple[int, ...]                         # ascending
    rate_ratio: tuple[tuple[float, ...], ...]
    vmaf_offset: tuple[tuple[float, ...], ...]
    measured: bool                                # on this title's sample, or the fixed table
    x264_params: str = ""                         # the trial preset's extra x264 options

    def at(self, height: int, crf: float) -> tuple[float, float]:
        """(rate ratio, VMAF offset) for a trial at this height and CRF."""
        xs = [float(c) for c in self.crfs]
        ratios = [math.exp(_interp(xs, [math.log(r) for r in row], crf)) for row in self.rate_ratio]
        offsets = [_interp(xs, list(row), crf) for row in self.vmaf_offset]
        hs = [math.log(h) for h in self.heights]
        return math.exp(_interp(hs, [math.log(r) for r in ratios], math.log(height))), _interp(hs, offsets,
                                                                                             math.log(height))

    def apply(self, trial: Trial) -> tuple[float, float]:
        """(kbps, VMAF) the final preset is predicted to give where the trial gave its own."""
        ratio, offset = self.at(trial.height, trial.crf)
        return trial.kbps * ratio, trial.vmaf + offset


# Trial preset -> medium at the same CRF, measured by bench/trials.py --table on seven clips of
# ../shared/media (whole clips, every candidate height, VMAF on every 11th frame): the median over
# clips and heights. Around it the rate ratio spans 0.68-1.51 and the VMAF offset at CRF 34
# +2.7 to +14.2 (dash-cam, forward motion, gains most from medium), which is why titles are
# calibrated on their own sample by default; this table is the fallback (``calibrate=False``).
FIXED_CORRECTION = Correction(
    preset="superfast", final_preset="medium", heights=(360,), crfs=(20, 27, 34),
    rate_ratio=((0.88, 0.97, 1.06),), vmaf_offset=((1.5, 3.2, 5.5),), measured=False,
    x264_params="mbtree=1:rc-lookahead=40",
)


@dataclass(frozen=True)
class TrialPlan:
    """What every shot of a title is tried at, and how its trials are corrected; from the sample."""

    heights: tuple[int, ...]                  # descending; every shot is tried at each
    skipped: tuple[int, ...]                  # candidates the sample showed cannot reach the hull
    crfs: tuple[int, ...]                     # what every shot is tried at
    correction: Correction
    sample_frames: int
    sample_trials: tuple[Trial, ...]          # trial preset, every height tried on the sample
    calibration_trials: tuple[Trial, ...]     # final preset on the sample, calibration heights
    cpu_s: float                              # everything the plan cost: cut, encodes, VMAF
    # per height: the second divided difference of corrected (log kbps, VMAF) over the sample's
    # three CRFs, the shape that two probes per shot are interpolated with
    curvature: tuple[tuple[int, float, float], ...] = ()
    # per height, where they differ from ``crfs`` (shot_crfs = "placed"): the CRFs every shot is tried at
    probes: tuple[tuple[int, tuple[int, ...]], ...] = ()
    # UHD titles, uhd_trials = "sample": heights above 1080 lines whose points each shot gets from its
    # trials at ``bridge`` (the tallest HD candidate) through ``uhd_map`` (trial preset at both ends)
    uhd_heights: tuple[int, ...] = ()
    bridge: int | None = None
    uhd_map: Correction | None = None
    # (UHD height, CRF, rate ratio, VMAF offset) at CRFs above ``uhd_map``'s, each against the bridge's trial at
    # ``uhd_map``'s highest CRF: where the 4K model still scores a UHD height above the top there (reach_map)
    uhd_reach: tuple[tuple[int, int, float, float], ...] = ()
    uhd_sample_trials: tuple[Trial, ...] = ()     # trial preset on the sample at ``uhd_heights``, 4K model
    # (height, VMAF model, scoring width, scoring height) of every candidate: what scored its trials and rungs
    scoring: tuple[tuple[int, str, int, int], ...] = ()

    def crfs_at(self, height: int) -> tuple[int, ...]:
        """The CRFs every shot is tried at at this height."""
        return dict(self.probes).get(height, self.crfs)


@dataclass(frozen=True)
class ShotTrials:
    """One shot's trials: the predicted final-preset points and what was measured to get them."""

    points: ShotPoints
    trials: tuple[Trial, ...]
    cpu_s: float


def trial_size(video: VideoStream, height: int) -> Size:
    """(width, height) of a trial: the source's display aspect ratio at that height (the short side:
    portrait pictures get portrait trials, as encode.rung_size says), square pixels."""
    return rung_size(video, height)


def candidate_heights(video: VideoStream, config: TrialConfig) -> tuple[int, ...]:
    """The configured heights no taller than the source, tallest first."""
    heights = tuple(sorted({h for h in config.heights if h <= short_side(video)}, reverse=True))
    if not heights:
        raise StageError(f"the source is {video.width}x{video.height}: no trial height {config.heights} "
                         "is that small or smaller; add a lower height")
    return heights


def subsample_for(frames: int, config: TrialConfig) -> int:
    """A shot's VMAF step: the configured one, smaller (down to 5) for a shot too short to score enough frames."""
    step = check_subsample(config.vmaf_subsample)
    while step > 5 and frames < config.vmaf_min_frames * step:
        step = next(s for s in range(step - 1, 4, -1) if math.gcd(s, 6) == 1)
    return step


def group_shots(shots: Sequence[Shot], fps: Fraction, config: TrialConfig) -> list[tuple[Shot, ...]]:
    """Consecutive shots tried in one run each, up to ``group_s`` long (a longer shot alone).

    A shot under 3 frames runs alone: a subsampled run needs 3 frames between one shot's last
    scored frame and the next shot.
    """
    limit = max(1, round(config.group_s * fps))
    groups: list[list[Shot]] = []
    for shot in shots:
        last = groups[-1] if groups else None
        if (last is None or sum(s.frames for s in last) + shot.frames > limit or shot.frames < 3
                or last[-1].frames < 3 or last[-1].end_frame != shot.start_frame):
            groups.append([shot])
        else:
            last.append(shot)
    return [tuple(g) for g in groups]


def trial_encodes_argv(
    src: Path,
    shot: Shot,
    sizes: Sequence[Size],
    crfs: Sequence[float] | Mapping[int, Sequence[float]],
    fps: Fraction,
    preset: str,
    outs: Mapping[tuple[int, float], Path],
    *,
    start_s: float = 0.0,
    keyframes: Sequence[int] = (),
    threads: int = 1,
    x264_params: str = "",
    codec: VideoCodec = CODECS["h264"],
) -> list[str]:
    """One ffmpeg run encoding a shot (or a run of shots) at every size x CRF, decoding and scaling once.

    ``crfs`` are the same at every size or given per height; ``outs`` maps (height, crf) to an
    output path (NUT: per-frame packet sizes, no muxing overhead in the sizes); ``keyframes`` are
    frames relative to the cut's start that get IDR frames as in
    the final encodes (the starts of the shots in a run, the segment grid); ``start_s`` is the
    source video stream's first timestamp.
    """
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y",
            "-filter_threads", str(threads), "-threads", str(threads)]   # single-threaded: CPU adds up exactly
    if shot.start_frame > 0:
        argv += ["-seek_timestamp", "1",                                  # -ss in the stream's own time
                 "-ss", f"{seek_s(shot.start_frame, fps, start_s):.6f}"]  # half a frame early: exact frame
    argv += ["-i", str(src)]
    per_height = _crfs_by_height(sizes, crfs)
    graph = [f"[0:v:0]trim=end_frame={shot.frames},"                      # frame-exact end of the cut
             f"setpts=N*{fps.denominator}/{fps.numerator}/TB,"            # frame n at n/fps
             f"split={len(sizes)}" + "".join(f"[s{i}]" for i in range(len(sizes)))]
    for i, (width, height) in enumerate(sizes):
        count = len(per_height[height])
        graph.append(f"[s{i}]scale={width}:{height}:flags=lanczos,setsar=1,format={codec.pix_fmt},"
                     f"split={count}" + "".join(f"[e{i}_{j}]" for j in range(count)))
    argv += ["-filter_complex", ";".join(graph)]
    forced = sorted({0, *(k for k in keyframes if 0 < k < shot.frames)})
    for i, (_, height) in enumerate(sizes):
        for j, crf in enumerate(per_height[height]):
            argv += [
                "-map", f"[e{i}_{j}]", "-an", "-sn", "-dn", "-fps_mode", "passthrough",
                # as encode.py's shot encodes: no keyframe but the forced ones, closed GOPs
                *codec.args(preset, crf, shot.frames + 1, threads=threads, params=x264_params, final=False),
                "-force_key_frames", force_key_frames_arg(forced, fps),   # shot starts and the segment grid
                "-f", "nut", str(outs[(height, crf)]),
            ]
    return argv


def _crfs_by_height(sizes: Sequence[Size], crfs: Sequence[C] | Mapping[int, Sequence[C]]) -> Mapping[int, Sequence[C]]:
    """The CRFs of each size's height: the same at every size, or as given per height."""
    return crfs if isinstance(crfs, Mapping) else {h: crfs for _, h in sizes}


def trial_encode_argv(
    src: Path, shot: Shot, width: int, height: int, crf: float, fps: Fraction, preset: str, out: Path,
    *, start_s: float = 0.0, keyframes: Sequence[int] = (), threads: int = 1,
) -> list[str]:
    """ffmpeg argv for one trial: the shot cut frame-exactly, lanczos-scaled, x264 CRF, closed GOPs."""
    return trial_encodes_argv(src, shot, [(width, height)], [crf], fps, preset, {(height, crf): out},
                              start_s=start_s, keyframes=keyframes, threads=threads)


# A multi-shot title's sample visits at least this many shots (its sample grows to that where it must).
SAMPLE_MIN_SHOTS = 3


def sample_segments(shots: Sequence[Shot], fps: Fraction, config: TrialConfig) -> list[tuple[int, int]]:
    """(start, end) frame ranges of the calibration sample: pieces spread over the title, each in one shot.

    ``sample_fraction`` of the title (at most ``sample_max_s``) in pieces of ``sample_segment_s``,
    centred at even steps over the title. Where that gives fewer pieces than the title has shots (a
    short multi-shot title: 15% of 4-16 s is one 2 s piece), the sample is cut into shorter pieces,
    one per shot up to the most a full sample has (``sample_max_s`` / ``sample_segment_s``), none
    shorter than ``sample_min_piece_s``: as many as the sample holds, and at least
    ``SAMPLE_MIN_SHOTS`` (the sample grows to that on a title of a few seconds): the correction and a
    UHD title's 1080p-to-2160p map are then measured on every shot rather than fitted to one
    (docs/benchmarks.md, "UHD", shows what a one-shot sample misses). Each piece sits in a shot of
    its own where there are enough shots: the shot at its centre, or the nearest one not sampled yet
    (one at least a piece long where any is).
    """
    if not shots:
        raise StageError("no shots to sample")
    total = shots[-1].end_frame
    want = max(1, min(round(config.sample_max_s * fps), round(config.sample_fraction * total)))
    count = max(1, round(want / max(1.0, config.sample_segment_s * float(fps))))
    if count < len(shots):
        most = max(1, math.ceil(config.sample_max_s / config.sample_segment_s))
        shortest = max(1, round(config.sample_min_piece_s * fps))
        spanning = min(len(shots), most, max(want // shortest, SAMPLE_MIN_SHOTS))
        if spanning > count:
            count = spanning
            want = min(total, max(want, count * shortest))
    length = max(1, want // count)
    distinct = count <= len(shots)
    used: set[int] = set()
    pieces: list[tuple[int, int]] = []
    for i in range(count):
        centre = (2 * i + 1) * total // (2 * count)
        shot = next(s for s in shots if s.start_frame <= centre < s.end_frame)
        if distinct and (shot.index in used or shot.frames < length):
            # the nearest shot not sampled yet, one that holds a whole piece where any does; none
            # under 3 frames (a subsampled VMAF piece needs them)
            free = [s for s in shots if s.index not in used and s.frames >= 3]
            free = [s for s in free if s.frames >= length] or free
            if not free:
                continue
            shot = min(free, key=lambda s: (abs((s.start_frame + s.end_frame) // 2 - centre), s.start_frame))
        used.add(shot.index)
        start = max(shot.start_frame, min(centre - length // 2, shot.end_frame - length))
        end = min(shot.end_frame, start + length)
        if not distinct and pieces and start < pieces[-1][1]:
            start = pieces[-1][1]
        if start < end:
            pieces.append((start, end))
    if not pieces:      # every shot under 3 frames: the longest one
        shot = max(shots, key=lambda s: (s.frames, -s.start_frame))
        pieces.append((shot.start_frame, min(shot.end_frame, shot.start_frame + length)))
    return sorted(pieces)


def sample_cut_argv(src: Path, segments: Sequence[tuple[int, int]], fps: Fraction, out: Path,
                    *, start_s: float = 0.0, threads: int = 1, proxy: tuple[Path, int, int] | None = None) -> list[str]:
    """ffmpeg argv joining the sample pieces, losslessly (x264 at QP 0), at the source's size and format.

    ``proxy`` (path, width, height): a second lossless output scaled to that size, from the same
    decode (a UHD title's HD trials run on it: a quarter of the pixels to decode and scale).
    """
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-nostats", "-y", "-filter_threads", str(threads)]
    for start, _ in segments:
        argv += ["-threads", str(threads)]
        if start > 0:
            argv += ["-seek_timestamp", "1", "-ss", f"{seek_s(start, fps, start_s):.6f}"]  # exact first frame
        argv += ["-i", str(src)]
    graph = [f"[{i}:v:0]trim=end_frame={end - start},setpts=PTS-STARTPTS[p{i}]"
             for i, (start, end) in enumerate(segments)]
    graph.append("".join(f"[p{i}]" for i in range(len(segments)))
                 + f"concat=n={len(segments)}:v=1:a=0,setpts=N*{fps.denominator}/{fps.numerator}/TB"
                 + (",split=2[v][w]" if proxy else "[v]"))
    if proxy:
        # bicubic, as vmaf.py scales a UHD source's reference to 1080 lines for its HD rungs
        graph.append(f"[w]scale={proxy[1]}:{proxy[2]}:flags=bicubic,setsar=1[x]")
    lossless = ["-an", "-sn", "-dn", "-c:v", "libx264", "-qp", "0", "-preset", "ultrafast",  # lossless, and decodes
                "-threads", str(threads), "-r", f"{fps.numerator}/{fps.denominator}"]         # 6x faster than FFV1
    outputs = ["-map", "[v]", *lossless, str(out)]
    if proxy:
        outputs += ["-map", "[x]", *lossless, str(proxy[0])]
    return [*argv, "-filter_complex", ";".join(graph), *outputs]


def frame_sizes(path: Path, frames: int) -> list[int]:
    """Bytes of each frame of an encode, in presentation order."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = sorted((p.pts, p.size) for p in container.demux(stream) if p.size and p.pts is not None)
    except av.error.FFmpegError as exc:
        raise StageError(f"trial encode {path.name} cannot be read back ({exc})") from exc
    if len(packets) != frames:
        raise StageError(f"trial encode {path.name} has {len(packets)} frames, the cut has {frames}")
    return [size for _, size in packets]


def trial_grid(
    src: Path, info: MediaInfo, shots: Sequence[Shot], sizes: Sequence[Size],
    crfs: Sequence[int] | Mapping[int, Sequence[int]], preset: str, config: TrialConfig, out_dir: Path, *,
    start_s: float, keyframes: Sequence[int] = (), x264_params: str = "",
) -> dict[int, list[Trial]]:
    """Trials of consecutive shots at every size x CRF, by shot index: one encode run, one VMAF run.

    The shots are encoded as one stream per size and CRF (``crfs`` the same at every size, or per
    height) with an IDR frame at each shot start (closed GOPs: no frame refers across it, so each
    shot codes as on its own), and scored in one run with each shot as a piece. ``keyframes`` are
    source frame numbers (the segment grid).
    """
    if not shots or any(a.end_frame != b.start_frame for a, b in pairwise(shots)):
        raise StageError("trial runs take consecutive shots")
    out_dir.mkdir(parents=True, exist_ok=True)
    video = info.video
    first = shots[0].start_frame
    span = Shot(index=shots[0].index, start_frame=first, end_frame=shots[-1].end_frame,
                start_s=shots[0].start_s, end_s=shots[-1].end_s, boundary=shots[0].boundary)
    starts = [s.start_frame - first for s in shots]
    forced = [*starts, *(k - first for k in keyframes if first < k < span.end_frame)]
    per_height = _crfs_by_height(sizes, crfs)
    outs: dict[tuple[int, float], Path] = {(h, c): out_dir / f"{h}p_crf{c}_{preset}.nut"
                                           for _, h in sizes for c in per_height[h]}
    try:
        encoded = run(trial_encodes_argv(src, span, sizes, per_height, video.fps, preset, outs, start_s=start_s,
                                         keyframes=forced, threads=config.threads, x264_params=x264_params,
                                         codec=codec_for(config.codec, video)))
    except ToolFailed as exc:
        raise StageError(f"trial encodes of frames {first}-{span.end_frame} failed: {exc}") from exc
    order = [(w, h, c) for w, h in sizes for c in per_height[h]]
    pieces = [(s.start_frame - first, s.end_frame - first, subsample_for(s.frames, config)) for s in shots]
    # One VMAF run per model and scoring size (a UHD title's HD and UHD heights differ in both).
    scoring: dict[tuple[tuple[int, int], str], list[int]] = {}
    for i, (_, h, _) in enumerate(order):
        scoring.setdefault((scoring_size(video, h), vmaf_model_for(h)), []).append(i)
    by_index: dict[int, VmafResult] = {}
    for ((width, height), model), indices in scoring.items():
        scores = measure_vmaf_many(
            [outs[order[i][1:]] for i in indices], src, width=width, height=height, fps=video.fps,
            ref_start_frame=first, ref_start_s=start_s, frames=span.frames, pieces=pieces, threads=config.threads,
            pix_fmt=vmaf_pix_fmt(info), log_dir=out_dir, model=model)
        by_index.update(zip(indices, scores, strict=True))
    results = [by_index[i] for i in range(len(order))]
    pixels = sum(w * h for w, h, _ in order)
    trials: dict[int, list[Trial]] = {s.index: [] for s in shots}
    for (w, h, c), result in zip(order, results, strict=True):
        frame_bytes = frame_sizes(outs[(h, c)], span.frames)
        for shot, (start, end, _), score in zip(shots, pieces, piece_scores(result, pieces), strict=True):
            seconds = float(shot.frames / video.fps)
            trials[shot.index].append(Trial(
                width=w, height=h, crf=c, preset=preset, kbps=sum(frame_bytes[start:end]) * 8 / 1000 / seconds,
                vmaf=score.mean, frames_scored=score.frames,
                encode_cpu_s=encoded.cpu_s * w * h / pixels * shot.frames / span.frames, vmaf_cpu_s=score.cpu_s))
    return trials


def combine(trials: Mapping[int, Sequence[Trial]], shots: Sequence[Shot]) -> list[Trial]:
    """The trials of several shots as one cut: rate and VMAF weighted by frames, CPU and scored frames summed."""
    total = sum(s.frames for s in shots)
    out = []
    for i, first in enumerate(trials[shots[0].index]):
        group = [(trials[s.index][i], s.frames) for s in shots]
        out.append(Trial(width=first.width, height=first.height, crf=first.crf, preset=first.preset,
                         kbps=sum(t.kbps * n for t, n in group) / total, vmaf=sum(t.vmaf * n for t, n in group) / total,
                         frames_scored=sum(t.frames_scored for t, _ in group),
                         encode_cpu_s=sum(t.encode_cpu_s for t, _ in group),
                         vmaf_cpu_s=sum(t.vmaf_cpu_s for t, _ in group)))
    return out


def _interp(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through (xs, ys), xs ascending; held constant beyond the ends."""
    if len(xs) == 1 or x <= xs[0]:
        return ys[0]
    if x >= xs[-1]:
        return ys[-1]
    i = next(i for i in range(1, len(xs)) if x <= xs[i])
    t = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
    return ys[i - 1] + t * (ys[i] - ys[i - 1])


def _curve_at(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Between probes: the quadratic through the three nearest, unless it leaves the bracket's range."""
    i = next(i for i in range(1, len(xs)) if x <= xs[i])       # xs[i - 1] < x <= xs[i]
    linear = _interp(xs, ys, x)
    if len(xs) < 3:
        return linear
    # The bracket's two probes and the nearer of their outer neighbours.
    lo = i - 2 if i + 1 >= len(xs) or (i >= 2 and x - xs[i - 2] <= xs[i + 1] - x) else i - 1
    near = range(lo, lo + 3)
    value = 0.0
    for a in near:
        term = ys[a]
        for b in near:
            if b != a:
                term *= (x - xs[b]) / (xs[a] - xs[b])
        value += term
    low, high = sorted((ys[i - 1], ys[i]))
    return value if low <= value <= high else linear


def curvatures(trials: Iterable[Trial], correction: Correction) -> tuple[tuple[int, float, float], ...]:
    """Per height tried at three or more CRFs: the curvature (second divided difference over the
    outer and middle probes) of corrected log kbps and VMAF in CRF."""
    by_height: dict[int, list[Trial]] = {}
    for t in trials:
        by_height.setdefault(t.height, []).append(t)
    out = []
    for height, group in sorted(by_height.items(), reverse=True):
        if len(group) < 3:
            continue
        group.sort(key=lambda t: t.crf)
        probes = (group[0], group[len(group) // 2], group[-1])
        xs = (float(probes[0].crf), float(probes[1].crf), float(probes[2].crf))
        (ka, va), (kb, vb), (kc, vc) = (correction.apply(t) for t in probes)
        out.append((height, _second_difference(xs, (math.log(ka), math.log(kb), math.log(kc))),
                    _second_difference(xs, (va, vb, vc))))
    return tuple(out)


def _second_difference(xs: tuple[float, float, float], ys: tuple[float, float, float]) -> float:
    """The leading coefficient of the quadratic through three points."""
    return ((ys[2] - ys[1]) / (xs[2] - xs[1]) - (ys[1] - ys[0]) / (xs[1] - xs[0])) / (xs[2] - xs[0])


def _shaped(x0: float, y0: float, x1: float, y1: float, curvature: float, x: float) -> float:
    """The quadratic through two probes with the given second divided difference; the chord if it leaves them."""
    chord = y0 + (x - x0) * (y1 - y0) / (x1 - x0)
    value = chord + curvature * (x - x0) * (x - x1)
    return value if min(y0, y1) <= value <= max(y0, y1) else chord


def predict_points(trials: Iterable[Trial], correction: Correction, crf_step: int = 1,
                   curvature: Sequence[tuple[int, float, float]] = ()) -> list[RdPoint]:
    """Final-preset points: every trial corrected, and interpolated points every ``crf_step`` CRF between.

    A height tried at two CRFs is interpolated with its ``curvature`` (from ``curvatures`` on the
    sample) when given, else along the chord.
    """
    shape = {h: (k, v) for h, k, v in curvature}
    by_size: dict[Size, list[Trial]] = {}
    for t in trials:
        by_size.setdefault((t.width, t.height), []).append(t)
    points: list[RdPoint] = []
    for (width, height), group in sorted(by_size.items(), reverse=True):
        group.sort(key=lambda t: t.crf)
        crfs = [float(t.crf) for t in group]
        corrected = [correction.apply(t) for t in group]
        # Rate and quality fall as CRF rises; a correction varying with CRF must not turn that round.
        log_kbps = list(itertools.accumulate((math.log(k) for k, _ in corrected), min))
        vmafs = list(itertools.accumulate((v for _, v in corrected), min))
        corrected = [(math.exp(k), v) for k, v in zip(log_kbps, vmafs, strict=True)]
        points += [RdPoint(k, v, width, height, c) for c, (k, v) in zip(crfs, corrected, strict=True)]
        if crf_step <= 0:
            continue
        for a, b in pairwise(group):
            for crf in range(a.crf + crf_step, b.crf, crf_step):
                if len(group) == 2 and height in shape:
                    k_shape, v_shape = shape[height]
                    log_k = _shaped(crfs[0], log_kbps[0], crfs[1], log_kbps[1], k_shape, crf)
                    vmaf = _shaped(crfs[0], vmafs[0], crfs[1], vmafs[1], v_shape, crf)
                else:
                    log_k, vmaf = _curve_at(crfs, log_kbps, crf), _curve_at(crfs, vmafs, crf)
                points.append(RdPoint(math.exp(log_k), vmaf, width, height, float(crf)))
    return sorted(points, key=lambda p: (-p.height, p.crf))


def _frontier(points: Sequence[RdPoint], kbps: float) -> float:
    """VMAF of the upper hull of ``points`` at a rate: -inf below its lowest rate, its best beyond its highest."""
    hull = upper_hull(points)
    if kbps < hull[0].kbps:
        return -math.inf
    for a, b in pairwise(hull):
        if kbps <= b.kbps:
            return a.vmaf + (kbps - a.kbps) * (b.vmaf - a.vmaf) / (b.kbps - a.kbps)
    return hull[-1].vmaf


def reaches_hull(height: int, points: Sequence[RdPoint], config: TrialConfig) -> bool:
    """Whether a height puts a point on (or within the margin of) the hull of the others where it matters.

    Where it matters: rates of at least ``min_kbps`` and quality up to ``top_vmaf`` (a height's
    curve counts up to where it crosses ``top_vmaf``). With no other height, it does.
    """
    own = sorted((p for p in points if p.height == height), key=lambda p: p.kbps)
    others = [p for p in points if p.height != height]
    if not others:
        return True
    relevant = [p for p in own if p.vmaf <= config.top_vmaf]
    for a, b in pairwise(own):
        if a.vmaf <= config.top_vmaf < b.vmaf:          # where its curve crosses the top
            t = (config.top_vmaf - a.vmaf) / (b.vmaf - a.vmaf)
            relevant.append(RdPoint(a.kbps + t * (b.kbps - a.kbps), config.top_vmaf, a.width, a.height, a.crf))
    return any(p.kbps >= config.min_kbps and p.vmaf >= _frontier(others, p.kbps) - config.prune_margin
               for p in relevant)


def prune_heights(points: Sequence[RdPoint], candidates: Sequence[int], config: TrialConfig) -> tuple[int, ...]:
    """The candidate heights worth trying on every shot, judged on the sample's (corrected) points.

    From the middle candidate down, while each lower height reaches the hull of the heights kept
    so far (``reaches_hull``); then up from the middle the same way. The walk stops at the first
    height that does not: a lower one still would reach only lower rates below the floor, a higher
    one only qualities above the top. Last, every kept height is judged again against all kept, and
    with ``keep_tallest`` the tallest candidate stays whatever the sample says (on Sintel's 0.9 s
    sample 270p looked as good as 360p up to VMAF 95; over the whole title 360p is cheaper there).
    """
    order = sorted(candidates, reverse=True)
    if len(order) <= 2:
        return tuple(order)
    middle = len(order) // 2
    kept = [order[middle]]
    for direction in (order[middle + 1:], order[middle - 1::-1]):
        for height in direction:
            if not reaches_hull(height, [p for p in points if p.height in (*kept, height)], config):
                break
            kept.append(height)
    final = [h for h in kept if reaches_hull(h, [p for p in points if p.height in kept], config)] or kept
    if config.keep_tallest and order[0] not in final:
        final.append(order[0])
    return tuple(sorted(final, reverse=True))


def place_probes(points: Sequence[RdPoint], heights: Sequence[int],
                 config: TrialConfig) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """Per height, the CRFs every shot is tried at: around the CRFs where the sample puts it on the hull.

    ``points`` are the sample's corrected points, interpolated every CRF. A height's band is the
    CRFs of its points on the upper hull of all heights' points (at rates of at least ``min_kbps``,
    up to the first point at or above ``top_vmaf``), widened by ``probe_margin`` each way within
    ``crfs``: a rung at that height sits in that band, and each shot's CRF moves a few around the
    rung's (the equal-slope allocation). Two probes span at least twice the margin; a band wider
    than ``probe_two_span`` gets a third in its middle. A height the sample never puts on the hull
    (kept as the tallest, or within ``prune_margin`` of it) is tried at every CRF of ``crfs``.
    """
    low, high = config.crfs[0], config.crfs[-1]
    out = []
    for height in heights:
        own = sorted((p for p in points if p.height == height), key=lambda p: p.kbps)
        # up to where it first reaches the top: a top rung aims there
        reaching = [p for p in own if p.vmaf <= config.top_vmaf] + [p for p in own if p.vmaf > config.top_vmaf][:1]
        on = [round(p.crf) for p in reaching
              if p.kbps >= config.min_kbps and p.vmaf >= _frontier(points, p.kbps) - 1e-6]
        if not on:
            out.append((height, tuple(config.crfs)))
            continue
        margin = config.probe_margin
        lo, hi = max(low, min(on) - margin), min(high, max(on) + margin)
        # a band cut short at an end of crfs reaches in the other way instead
        lo, hi = max(low, min(lo, hi - 2 * margin)), min(high, max(hi, lo + 2 * margin))
        probes = (lo, (lo + hi) // 2, hi) if hi - lo > config.probe_two_span else (lo, hi)
        out.append((height, tuple(sorted(set(probes)))))
    return tuple(out)


def plan_trials(
    src: Path, info: MediaInfo, shots: Sequence[Shot], config: TrialConfig, work_dir: Path, *, keep: bool = False,
) -> TrialPlan:
    """Cut the title's sample, choose the heights every shot is tried at, and measure the correction."""
    require_encoder(CODECS[config.codec].encoder)   # before any work, for a codec this ffmpeg may lack
    video = info.video
    everyone = candidate_heights(video, config)
    uhd = tuple(h for h in everyone if h > HD_LINES)
    candidates = tuple(h for h in everyone if h <= HD_LINES)   # the HD ladder: planned as for an HD master
    if not candidates:
        raise ConfigError(f"trials.heights {config.heights} has no height of {HD_LINES} lines or less: a UHD "
                          "title's ladder below its UHD rungs (and the UHD points) needs one")
    crfs = tuple(config.crfs)
    segments = sample_segments(shots, video.fps, config)
    frames = sum(end - start for start, end in segments)
    folder = work_dir / "sample"
    folder.mkdir(parents=True, exist_ok=True)
    sample = folder / "sample.mkv"
    # A UHD title's HD heights are tried on a 1080-line proxy of the sample (scored there as vmaf.py
    # scores them on the title), its UHD heights on the full-size sample.
    hd_size = scoring_size(video, candidates[0])
    proxy = (folder / "proxy.mkv", *hd_size) if uhd and hd_size != (video.display_width, video.height) else None
    hd_sample, hd_info = sample, info
    if proxy is not None:
        hd_sample = proxy[0]
        hd_info = replace(info, video=replace(video, width=hd_size[0], height=hd_size[1], sar=Fraction(1)))
    try:
        cut = run(sample_cut_argv(src, segments, video.fps, sample, start_s=video.start_s, threads=config.threads,
                                  proxy=proxy))
    except ToolFailed as exc:
        raise StageError(f"cutting the trial sample from {src.name} failed: {exc}") from exc
    cpu = cut.cpu_s
    # The sample's pieces play shots (a keyframe at each start), so its trials code as the shots' do.
    pieces, position = [], 0
    for i, (start, end) in enumerate(segments):
        pieces.append(Shot(index=i, start_frame=position, end_frame=position + end - start,
                           start_s=float(position / video.fps), end_s=float((position + end - start) / video.fps),
                           boundary="start" if i == 0 else "cut"))
        position += end - start

    def grid(heights: Sequence[int], preset: str, probes: Sequence[int]) -> list[Trial]:
        params = config.x264_params if preset == config.preset else ""
        hd = all(h <= HD_LINES for h in heights)
        per_piece = trial_grid(hd_sample if hd else sample, hd_info if hd else info, pieces,
                               [trial_size(video, h) for h in heights], probes, preset, config, folder, start_s=0.0,
                               x264_params=params)
        return combine(per_piece, pieces)

    if config.preset == config.final_preset:
        raise ConfigError(f"the trial preset is the final one ({config.preset!r}): nothing to correct or save")
    # The trial preset on the sample: at every candidate where the sample chooses the heights
    # (pruning) or shapes two-probe shots (curvature), else only where the final preset is measured
    # against it. One run per preset: a run per height (to stop early) would decode the sample and
    # start encoders again each time, for trials of 15% of the title at most.
    calibrated = _calibration_heights(candidates, config.calibration_heights) if config.calibrate else []
    everywhere = config.prune or config.shot_crfs != "all"
    sample_heights = candidates if everywhere else calibrated
    sample_trials = tuple(grid(sample_heights, config.preset, crfs)) if sample_heights else ()
    cpu += sum(t.cpu_s for t in sample_trials)
    calibration: tuple[Trial, ...] = ()
    correction = FIXED_CORRECTION
    if config.calibrate:
        # The final preset at the CRFs the shots are tried at: the correction is interpolated between them.
        calibration = tuple(grid(calibrated, config.final_preset, config.crfs_per_shot))
        cpu += sum(t.cpu_s for t in calibration)
        correction = _measured_correction(sample_trials, calibration, config)
    elif config.codec != "h264" or (config.preset, config.final_preset, config.x264_params) != (
            FIXED_CORRECTION.preset, FIXED_CORRECTION.final_preset, FIXED_CORRECTION.x264_params):
        raise ConfigError(f"the fixed correction is x264's {FIXED_CORRECTION.preset} -> "
                          f"{FIXED_CORRECTION.final_preset}; with {config.codec} {config.preset!r} -> "
                          f"{config.final_preset!r} set calibrate = true")
    kept = prune_heights(predict_points(sample_trials, correction, 0), candidates, config) if config.prune \
        else candidates
    skipped = tuple(h for h in candidates if h not in kept)
    curvature = curvatures(sample_trials, correction)
    probes: tuple[tuple[int, tuple[int, ...]], ...] = ()
    if config.shot_crfs == "placed":
        placed_on = [p for p in predict_points(sample_trials, correction, 1, curvature) if p.height in kept]
        probes = place_probes(placed_on, kept, config)
    bridge: int | None = None
    uhd_map: Correction | None = None
    uhd_trials: tuple[Trial, ...] = ()
    reach: tuple[tuple[int, int, float, float], ...] = ()
    mapped: tuple[int, ...] = ()
    if uhd and config.uhd_trials == "all":
        kept = (*uhd, *kept)
    elif uhd:
        # The UHD heights on the sample only; each shot's points there follow its own trials at the
        # tallest HD height, moved by what the sample measures between the two at each CRF.
        bridge, mapped = candidates[0], uhd
        kept = tuple(sorted({*kept, bridge}, reverse=True))
        base = [t for t in sample_trials if t.height == bridge]
        if sorted(t.crf for t in base) != sorted(crfs):
            base = grid([bridge], config.preset, crfs)
            cpu += sum(t.cpu_s for t in base)
        hd_correction = correction

        def final_vmaf(tried: Sequence[Trial], trial: Trial) -> float:
            return uhd_correction(hd_correction, base, tried).apply(trial)[1]

        uhd_trials = tuple(uhd_sample_trials(lambda at: grid(uhd, config.preset, at), crfs, final_vmaf,
                                             config.top_vmaf, CODECS[config.codec].max_crf))
        cpu += sum(t.cpu_s for t in uhd_trials)
        uhd_map = height_map(base, uhd_trials, config)
        reach = reach_map(base, uhd_trials)
        correction = uhd_correction(hd_correction, base, uhd_trials)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    log.info("%s: trial heights %s (skipped %s%s) from a %d-frame sample; correction %s; %s%.1f CPU s",
             src.name, kept, skipped,
             f"; {mapped} mapped from {bridge}p (sample CRFs {sorted({t.crf for t in uhd_trials})})" if mapped else "",
             frames,
             "measured" if correction.measured else "fixed", "".join(f"{h}p CRFs {list(c)}; " for h, c in probes), cpu)
    return TrialPlan(heights=kept, skipped=skipped, crfs=config.crfs_per_shot, correction=correction,
                     sample_frames=frames, sample_trials=sample_trials, calibration_trials=calibration, cpu_s=cpu,
                     curvature=curvature, probes=probes, uhd_heights=mapped, bridge=bridge, uhd_map=uhd_map,
                     uhd_reach=reach, uhd_sample_trials=uhd_trials,
                     scoring=tuple((h, vmaf_model_for(h), *scoring_size(video, h)) for h in everyone))


# A UHD height's sample trials go at most this many CRF steps above ``crfs`` (uhd_sample_trials).
UHD_REACH_STEPS = 2


def uhd_sample_trials(run: Callable[[Sequence[int]], list[Trial]], crfs: Sequence[int],
                      final_vmaf: Callable[[Sequence[Trial], Trial], float], top: float, max_crf: int) -> list[Trial]:
    """The sample's trials at the UHD heights (``run`` tries each at the CRFs given): at ``crfs``, and beyond.

    Where some UHD height is still predicted (``final_vmaf``: at the final preset) above ``top`` at
    the highest CRF tried (a soft or easy picture, which the 4K model scores high at every CRF of
    ``crfs``), the next CRF one step up (the step between the two highest of ``crfs``) is tried, up
    to ``UHD_REACH_STEPS`` steps and ``max_crf``: without it the UHD curves are flat over the CRFs
    tried, the top rung takes the cheapest UHD point far above its aim, and the closed loop has no
    slope to move its CRF by. The lowest CRF is always tried, even where the sample is above ``top``
    there: a shot harder than the sample needs its UHD points at that CRF (docs/benchmarks.md, "UHD").
    """
    tried = run(crfs)
    step = crfs[-1] - crfs[-2] if len(crfs) > 1 else 7
    highest = crfs[-1]
    for _ in range(UHD_REACH_STEPS):
        if highest + step > max_crf or not any(final_vmaf(tried, t) > top for t in tried if t.crf == highest):
            break
        highest += step
        tried += run([highest])
    return tried


def height_map(base: Sequence[Trial], uhd: Sequence[Trial], config: TrialConfig) -> Correction:
    """From a trial at the bridge height (HD model) to one at each UHD height (4K model), same preset and CRF.

    Measured on the sample: rate ratio and VMAF offset per (UHD height, CRF), as a ``Correction``
    (interpolated in CRF, and in log(height) between UHD heights), at the CRFs of ``base`` that the
    UHD heights were tried at (CRFs above ``base``'s are reach_map's).
    """
    at_base = {t.crf: t for t in base}
    heights = sorted({t.height for t in uhd})
    crfs = sorted({t.crf for t in uhd if t.crf in at_base})
    by_key = {(t.height, t.crf): t for t in uhd}
    missing = [(h, c) for h in heights for c in crfs if (h, c) not in by_key]
    if missing or not crfs:
        raise StageError(f"the UHD sample trials lack {missing or 'every CRF'}: no map from the HD trials")
    return Correction(
        preset=config.preset, final_preset=config.preset, heights=tuple(heights), crfs=tuple(crfs),
        rate_ratio=tuple(tuple(by_key[(h, c)].kbps / at_base[c].kbps for c in crfs) for h in heights),
        vmaf_offset=tuple(tuple(by_key[(h, c)].vmaf - at_base[c].vmaf for c in crfs) for h in heights),
        measured=True, x264_params=config.x264_params)


def reach_map(base: Sequence[Trial], uhd: Sequence[Trial]) -> tuple[tuple[int, int, float, float], ...]:
    """(UHD height, CRF, rate ratio, VMAF offset) of the UHD sample trials above ``base``'s highest CRF,
    each against ``base``'s trial there: each shot's trial at that CRF gives its points up there."""
    last = max(base, key=lambda t: t.crf)
    return tuple((t.height, t.crf, t.kbps / last.kbps, t.vmaf - last.vmaf)
                 for t in sorted(uhd, key=lambda t: (-t.height, t.crf)) if t.crf > last.crf)


def _line(xs: Sequence[float], ys: Sequence[float], x: float) -> float:
    """Piecewise-linear through (xs, ys), xs ascending, continued along the end segments beyond them."""
    if len(xs) == 1:
        return ys[0]
    i = 1 if x <= xs[0] else len(xs) - 1 if x >= xs[-1] else next(i for i in range(1, len(xs)) if x <= xs[i])
    return ys[i - 1] + (x - xs[i - 1]) * (ys[i] - ys[i - 1]) / (xs[i] - xs[i - 1])


def uhd_correction(correction: Correction, base: Sequence[Trial], uhd: Sequence[Trial]) -> Correction:
    """The preset correction with rows for the UHD heights of ``uhd`` (the sample's trials there, 4K model).

    The final preset is measured at HD heights only (at 2160p it would cost about four times a 1080p
    run), and its VMAF offset does not carry over as a number: the 4K model scores a soft picture near
    its top at every CRF, where no preset adds 3-5 points. What carries over is what the offset means
    on the bridge (``base``, the tallest HD height, trial preset): the final preset at CRF c scores as
    the trial preset does d CRF lower there. A UHD height's offset is what d CRF lower gains on its own
    sample curve, which is small where that curve is flat; its rate ratio is the bridge's. Columns are
    the correction's CRFs and the UHD trials' (rows already there keep their values at every CRF).
    """
    bridge = max(t.height for t in base)
    heights = sorted({t.height for t in uhd})
    if not heights:
        return correction
    crfs = sorted({*correction.crfs, *(t.crf for t in uhd)})
    old_heights = [h for h in correction.heights if h <= bridge]
    if bridge not in old_heights:
        old_heights.append(bridge)          # its values as the correction gives them (held beyond its rows)
    rows = [correction.at(h, c) for h in old_heights for c in crfs]
    base_curve = sorted((float(t.crf), t.vmaf) for t in base)
    bx, by = [x for x, _ in base_curve], [y for _, y in base_curve]
    ratio: list[tuple[float, ...]] = [tuple(r for r, _ in rows[i * len(crfs):(i + 1) * len(crfs)])
                                      for i in range(len(old_heights))]
    offset: list[tuple[float, ...]] = [tuple(o for _, o in rows[i * len(crfs):(i + 1) * len(crfs)])
                                       for i in range(len(old_heights))]
    for height in heights:
        own = sorted((float(t.crf), t.vmaf) for t in uhd if t.height == height)
        ux, uy = [x for x, _ in own], [y for _, y in own]
        row_r, row_o = [], []
        for c in crfs:
            r, o = correction.at(bridge, c)
            target = _line(bx, by, c) + o
            # the CRF where the bridge's curve reaches ``target`` (it falls as CRF rises)
            equal = _crf_at(bx, by, target)
            row_r.append(r)
            row_o.append(min(100.0, _line(ux, uy, equal)) - min(100.0, _line(ux, uy, c)))
        ratio.append(tuple(row_r))
        offset.append(tuple(row_o))
    return replace(correction, heights=(*old_heights, *heights), crfs=tuple(crfs), rate_ratio=tuple(ratio),
                   vmaf_offset=tuple(offset))


def _crf_at(xs: Sequence[float], ys: Sequence[float], vmaf: float) -> float:
    """The CRF where a falling curve (piecewise linear, continued along its end segments) scores ``vmaf``."""
    if len(xs) == 1 or ys[0] == ys[-1]:
        return xs[0]
    # as a function of VMAF: the points by ascending VMAF, ties dropped
    pairs = sorted({(y, x) for x, y in zip(xs, ys, strict=True)})
    vs, cs = [p[0] for p in pairs], [p[1] for p in pairs]
    keep = [i for i in range(len(vs)) if i == 0 or vs[i] > vs[i - 1]]
    return _line([vs[i] for i in keep], [cs[i] for i in keep], vmaf)


def mapped_trials(trials: Sequence[Trial], plan: TrialPlan, video: VideoStream) -> list[Trial]:
    """A shot's trials at the plan's UHD heights, from its trials at the bridge height through ``uhd_map``
    (at the CRFs the map was measured between) and ``uhd_reach`` (from its trial at the map's highest CRF).

    Not measured: no frames scored, no CPU (the sample's UHD trials carry that cost).
    """
    if plan.uhd_map is None or not plan.uhd_heights:
        return []
    low, high = plan.uhd_map.crfs[0], plan.uhd_map.crfs[-1]
    out = []
    for t in trials:
        if t.height != plan.bridge:
            continue
        moves: list[tuple[int, int, float, float]] = []
        if low <= t.crf <= high:
            moves += [(height, t.crf, *plan.uhd_map.at(height, t.crf)) for height in plan.uhd_heights]
        if t.crf == high:
            moves += [m for m in plan.uhd_reach if m[0] in plan.uhd_heights]
        for height, crf, ratio, offset in moves:
            out.append(Trial(width=trial_size(video, height)[0], height=height, crf=crf, preset=t.preset,
                             kbps=t.kbps * ratio, vmaf=t.vmaf + offset, frames_scored=0, encode_cpu_s=0.0,
                             vmaf_cpu_s=0.0))
    return out


def _calibration_heights(candidates: Sequence[int], count: int) -> list[int]:
    """``count`` heights spread evenly over the candidates (tallest first), from the highest to the lowest."""
    if count >= len(candidates):
        return list(candidates)
    if count == 1:
        return [candidates[len(candidates) // 2]]
    picks = {candidates[round(i * (len(candidates) - 1) / (count - 1))] for i in range(count)}
    return sorted(picks, reverse=True)


def _measured_correction(fast: Sequence[Trial], final: Sequence[Trial], config: TrialConfig) -> Correction:
    by_key = {(t.height, t.crf): t for t in fast}
    heights = sorted({t.height for t in final})
    crfs = sorted({t.crf for t in final})
    ratio: list[tuple[float, ...]] = []
    offset: list[tuple[float, ...]] = []
    for h in heights:
        pairs = [(by_key[(h, c)], next(t for t in final if t.height == h and t.crf == c)) for c in crfs]
        ratio.append(tuple(f.kbps / t.kbps for t, f in pairs))
        offset.append(tuple(f.vmaf - t.vmaf for t, f in pairs))
    return Correction(preset=config.preset, final_preset=config.final_preset, heights=tuple(heights),
                      crfs=tuple(crfs), rate_ratio=tuple(ratio), vmaf_offset=tuple(offset), measured=True,
                      x264_params=config.x264_params)


def trial_shots(
    src: Path, info: MediaInfo, shots: Sequence[Shot], config: TrialConfig, work_dir: Path,
    *, plan: TrialPlan | None = None, keyframes: Sequence[int] = (), keep: bool = False,
) -> list[ShotTrials]:
    """Encode and score consecutive shots at the plan's heights and CRFs, in one run (a ``group_shots`` group).

    Without a plan every candidate height is tried and the fixed correction applies.
    ``keyframes`` are the source frames the final encodes force (the segment grid); those inside
    a shot are forced in its trials too.
    """
    video = info.video
    heights = plan.heights if plan is not None else candidate_heights(video, config)
    crfs = {h: plan.crfs_at(h) if plan is not None else tuple(config.crfs) for h in heights}
    curvature = plan.curvature if plan is not None else ()
    correction = plan.correction if plan is not None else FIXED_CORRECTION
    if (correction.preset, correction.x264_params) != (config.preset, config.x264_params):
        raise ConfigError(f"the correction is for preset {correction.preset!r} ({correction.x264_params!r}), the "
                          f"trials use {config.preset!r} ({config.x264_params!r}); plan them with this config")
    for shot in shots:
        if shot.frames < 1 or shot.end_frame > video.frames:
            raise StageError(f"shot {shot.index} ({shot.start_frame}-{shot.end_frame}) is not within the "
                             f"{video.frames} frames of {src.name}")
    folder = work_dir / f"shots{shots[0].index:05d}-{shots[-1].index:05d}"
    measured = trial_grid(src, info, shots, [trial_size(video, h) for h in heights], crfs, config.preset, config,
                          folder, start_s=video.start_s, keyframes=keyframes, x264_params=config.x264_params)
    if not keep:
        shutil.rmtree(folder, ignore_errors=True)
    out = []
    for shot in shots:
        trials = measured[shot.index]
        mapped = mapped_trials(trials, plan, video) if plan is not None else []
        points = ShotPoints(shot.index, shot.duration_s,
                            tuple(predict_points([*trials, *mapped], correction, config.crf_step, curvature)))
        out.append(ShotTrials(points=points, trials=tuple(trials), cpu_s=sum(t.cpu_s for t in trials)))
    log.debug("shots %d-%d: %d trials each, %.1f CPU s", shots[0].index, shots[-1].index, sum(map(len, crfs.values())),
              sum(r.cpu_s for r in out))
    return out


def measure_shot(
    src: Path, info: MediaInfo, shot: Shot, config: TrialConfig, work_dir: Path,
    *, plan: TrialPlan | None = None, keyframes: Sequence[int] = (),
) -> ShotPoints:
    """One shot's hull points (kbps, VMAF at display size, resolution, CRF) for the ladder."""
    return trial_shots(src, info, [shot], config, work_dir, plan=plan, keyframes=keyframes)[0].points
