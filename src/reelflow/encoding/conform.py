"""Picture conform: one planned ffmpeg pass that makes any master a progressive, upright, square-pixel CFR picture.

Everything after QC (shots, trials, final encodes, the VMAF reference) indexes the picture by decoded
frame number and seeks at frame/fps, and sizes rungs from width, height and the display aspect. A
master that is interlaced, telecined, rotated by a display matrix, variable-rate, odd-sized or
anamorphic breaks those assumptions. ``plan_conform`` (pure) says what is found and what is done,
step by step; ``conform_source`` runs the plan's filters in one pass into a lossless, intra-only
intermediate that the later stages read instead of the source (and need no change for). A master
that needs no filter costs nothing: the source and its probe are returned as they are.

Order of the filters, and why: field operations first (bwdif, or fieldmatch/decimate), since any
scaling or rotation mixes the two fields of a frame; then the frame rate (needs whole frames); then
the square-pixel scale, in the coded orientation where the sample aspect ratio applies; then the
rotation (transpose), so the picture is stored as it is shown and no player has to turn it.

The intermediate is lossless and intra-only, so a seek to any frame is exact and nothing is lost
before the ladder's own encodes. It is read many times (shots, trials, encodes, VMAF), so its
decode speed matters most: Ut Video reads back fastest, then x264 at qp 0, then FFV1
(docs/benchmarks.md, "Picture conform"), and it is 8-bit only. So 8-bit
pictures go to Ut Video, 9-10 bit to x264 qp 0 (High 4:4:4 Intra), deeper ones to FFV1 level 3.
Audio is not in it: the audio stage keeps reading the source on its own timeline, and the
intermediate's frame 0 is the source's first frame.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reelflow.encoding.encode import EVEN_FRAMES, color_args, segment_frames
from reelflow.encoding.probe import MediaInfo, VideoStream, probe
from reelflow.errors import StageError
from reelflow.infra.hashing import config_digest, sha256_file
from reelflow.infra.settings import ConformConfig, EncodeConfig, QCConfig
from reelflow.infra.tools import ffmpeg_exe, run

if TYPE_CHECKING:
    from reelflow.encoding.qc import QCReport

log = logging.getLogger(__name__)

_DEFAULT_QC = QCConfig()

# Display aspect ratios a delivery is meant to have; one measured within ConformConfig.aspect_snap of
# one of these is taken as exactly it (1918x1080 is a 16:9 picture with a cropping error, not 1.776:1).
STANDARD_ASPECTS: tuple[tuple[str, Fraction], ...] = (
    ("16:9", Fraction(16, 9)), ("4:3", Fraction(4, 3)), ("2.39:1", Fraction(239, 100)),
    ("1.85:1", Fraction(185, 100)), ("1:1", Fraction(1)), ("9:16", Fraction(9, 16)), ("3:4", Fraction(3, 4)),
)
# Telecine is a 29.97 (or 30) fps affair: film at 23.976 (24) spread over 60 (59.94) fields.
_TELECINE_RATES = (Fraction(30000, 1001), Fraction(30))


@dataclass(frozen=True)
class ConformStep:
    """One thing the conform found and what it does about it; ``filter`` None: a note only."""

    step: str
    found: str
    action: str
    filter: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"step": self.step, "found": self.found, "action": self.action, "filter": self.filter}


@dataclass(frozen=True)
class ConformPlan:
    """The steps, and the picture they make: size, rate, frames expected, and the intermediate's format.

    ``refused`` says why the source cannot be conformed (no standard rate fits its frame rate):
    QC turns it into an error.
    """

    steps: tuple[ConformStep, ...]
    width: int
    height: int
    fps: Fraction
    frames: int                 # expected in the conformed picture (approximate after IVTC or a rate change)
    pix_fmt: str
    codec: str                  # utvideo | x264 | ffv1
    refused: str | None = None

    @property
    def filters(self) -> tuple[str, ...]:
        return tuple(s.filter for s in self.steps if s.filter)

    @property
    def needs_pass(self) -> bool:
        """Whether any step changes the picture (notes alone do not)."""
        return bool(self.filters) and self.refused is None

    @property
    def exact_frames(self) -> bool:
        """Whether ``frames`` is exact: no step drops or adds frames by content or timing."""
        return not any(s.step in ("inverse_telecine", "frame_rate") for s in self.steps)

    def step(self, name: str) -> ConformStep | None:
        return next((s for s in self.steps if s.step == name), None)

    def to_list(self) -> list[dict[str, str | None]]:
        """The record in title.json and the QC report: [{"step", "found", "action", "filter"}]."""
        return [s.to_dict() for s in self.steps]

    def digest(self) -> str:
        """What changes the conformed file: the filters, the output format and codec (not the wording)."""
        return config_digest(list(self.filters), self.width, self.height, str(self.fps), self.pix_fmt, self.codec)[:16]


# ---------------------------------------------------------------------------------------------
# Pure decisions


def standard_rate(nominal: Fraction, rates: tuple[Fraction, ...], tolerance: float) -> Fraction | None:
    """The standard rate nearest ``nominal`` (by ratio), or None when none is within ``tolerance``.

    "Fits" is judged on the median frame interval, not the average: a phone's 30 fps clip with a
    few dropped frames averages 28 but is still 30 fps material (the gaps become repeated frames),
    while a 15 or 120 fps clip is no standard rate's (its motion would judder or be thrown away),
    and that is for a person to decide, so it is refused.
    """
    if nominal <= 0 or not rates:
        return None
    best = min(rates, key=lambda r: abs(math.log(r / nominal)))
    return best if abs(float(best / nominal) - 1) <= tolerance else None


def snap_aspect(dar: Fraction, tolerance: float) -> tuple[Fraction, str | None]:
    """``dar`` snapped to the nearest standard aspect within ``tolerance`` (and its name), or kept."""
    name, best = min(STANDARD_ASPECTS, key=lambda a: abs(math.log(a[1] / dar)))
    if abs(float(best / dar) - 1) <= tolerance:
        return best, name
    return dar, None


def _even(value: float | Fraction) -> int:
    return max(2, round(value / 2) * 2)


def square_size(video: VideoStream, tolerance: float) -> tuple[int, int, str | None]:
    """(width, height) with square pixels and even sides, in the coded orientation, and the aspect's name.

    The display aspect is snapped to a standard one when within ``tolerance``. An anamorphic master
    keeps its lines (its vertical resolution; the squeeze is horizontal) and gets the width of its
    aspect: 720x576 SAR 64:45 -> 1024x576, 1440x1080 SAR 4:3 -> 1920x1080. A square-pixel one keeps
    whichever side moves the picture least (ties: the lines): 1918x1080 -> 1920x1080, 1920x803 ->
    1920x804 (not 1922x804).
    """
    dar, name = snap_aspect(Fraction(video.width, video.height) * video.sar, tolerance)
    by_lines = (_even(_even(video.height) * dar), _even(video.height))
    if video.sar != 1:
        return *by_lines, name
    by_columns = (_even(video.width), _even(_even(video.width) / dar))

    def moved(size: tuple[int, int]) -> int:
        return abs(size[0] - video.width) + abs(size[1] - video.height)

    chosen = by_lines if moved(by_lines) <= moved(by_columns) else by_columns
    return *chosen, name


def field_finding(video: VideoStream, measured: Mapping[str, Any], qc: QCConfig = _DEFAULT_QC,
                  telecine_ratio: float = 0.25) -> tuple[str, str, str]:
    """(kind, parity, evidence): kind is progressive, interlaced or telecine; parity tff or bff.

    From QC's idet counts and the stream's field-order tag. Telecine: on 29.97/30 fps material, idet
    finds a repeated field in 2 of every 5 frames of 3:2 pulldown (0.4 of frames), and in none of a
    truly interlaced or progressive picture; more than ``telecine_ratio`` of frames is telecine.
    Interlaced: idet calls more than ``qc.interlaced_ratio`` of its decided frames interlaced, or,
    when it decides too few frames (a still picture), the tag says so. A tag that says interlaced
    while idet sees progressive frames is progressive segmented frames: left alone.
    """
    idet = measured.get("idet", {}) or {}
    multi = idet.get("multi", {}) or {}
    repeated = idet.get("repeated", {}) or {}
    interlaced = int(measured.get("interlaced_frames", multi.get("tff", 0) + multi.get("bff", 0)))
    progressive = int(measured.get("progressive_frames", multi.get("progressive", 0)))
    decided = interlaced + progressive
    flag = video.field_order
    flagged = flag not in (None, "progressive")
    if multi.get("tff", 0) or multi.get("bff", 0):
        parity = "tff" if multi.get("tff", 0) >= multi.get("bff", 0) else "bff"
    else:
        parity = "bff" if flag in ("bb", "bt") else "tff"
    reps = int(repeated.get("top", 0)) + int(repeated.get("bottom", 0))
    seen = reps + int(repeated.get("neither", 0))
    near_telecine_rate = any(abs(float(video.fps / r) - 1) < 0.002 for r in _TELECINE_RATES)
    if near_telecine_rate and seen and reps / seen > telecine_ratio:
        return "telecine", parity, (f"3:2 pulldown: idet finds a repeated field in {reps} of {seen} frames "
                                    f"({reps / seen:.0%}) of {float(video.fps):.3f} fps material")
    tag = f"flagged {flag}" if flagged else "not flagged"
    if decided >= qc.interlaced_min_frames:
        ratio = interlaced / decided
        if ratio > qc.interlaced_ratio:
            return "interlaced", parity, f"idet: {ratio:.0%} of frames interlaced ({parity.upper()}), {tag}"
        return "progressive", parity, f"idet: {1 - ratio:.0%} of frames progressive, {tag}"
    if flagged:
        return "interlaced", parity, f"{tag}; idet decided too few frames ({decided}) to contradict it"
    return "progressive", parity, f"not flagged; idet decided {decided} frames"


def _measurements(qc: QCReport | Mapping[str, Any] | None) -> dict[str, Any]:
    """The video figures of a QC report, whatever form it comes in (report, its dict, its measurements)."""
    if qc is None:
        return {}
    if hasattr(qc, "measurements"):
        data: Mapping[str, Any] = qc.measurements
    else:
        data = qc.get("measurements", qc) if isinstance(qc, Mapping) else {}
    video = data.get("video", {}) if isinstance(data, Mapping) else {}
    return dict(video) if isinstance(video, Mapping) else {}


def intermediate_format(video: VideoStream, config: ConformConfig) -> tuple[str, str]:
    """(codec, pix_fmt) of the conformed file: the source's chroma and bit depth, alpha left out.

    ``auto``: Ut Video for 8 bits (fastest to read back), x264 for 9-10 bits (Ut Video has no high
    bit depth), FFV1 above (x264 has no 12-bit mode; ProRes 4444 decodes to 12). RGB masters become
    4:4:4 YUV (the ladder's encoders take YUV only).
    """
    fmt = (video.pix_fmt or "yuv420p").lower()
    if "444" in fmt or fmt.startswith(("gbr", "rgb", "bgr", "argb", "abgr")):
        chroma = "444"
    elif "422" in fmt or fmt.startswith(("nv16", "nv20", "y210")):
        chroma = "422"
    else:
        chroma = "420"
    codec = config.intermediate_codec
    if codec == "auto":
        codec = "utvideo" if video.bit_depth <= 8 else "x264" if video.bit_depth <= 10 else "ffv1"
    elif codec == "utvideo" and video.bit_depth > 8:
        codec = "x264"   # Ut Video is 8-bit only: never throw bits away for speed
    if video.bit_depth <= 8:
        depth = ""
    elif codec == "x264" or video.bit_depth <= 10:
        depth = "10le"
    elif video.bit_depth <= 12:
        depth = "12le"
    else:
        depth = "16le"
    return codec, f"yuv{chroma}p{depth}"


def display_filters(rotation: int, matrix: tuple[int, ...]) -> str:
    """The filters that show the picture as its display matrix says, as ffmpeg's autorotate chooses
    them (fftools: a quarter turn, with a flip when the matrix mirrors; a half turn as hflip and/or
    vflip; no turn, vflip when the matrix flips vertically)."""
    m = matrix or (65536, 0, 0, 0, 65536)
    if rotation == 90:
        return "transpose=clock_flip" if m[3] < 0 else "transpose=cclock"
    if rotation == 270:
        return "transpose=cclock_flip" if m[3] > 0 else "transpose=clock"
    flips = [f for f, negative in (("hflip", rotation == 180 and m[0] < 0), ("vflip", m[4] < 0)) if negative]
    return ",".join(flips) if matrix else ("hflip,vflip" if rotation == 180 else "")


def plan_conform(info: MediaInfo, qc: QCReport | Mapping[str, Any] | None, config: ConformConfig,
                 qc_config: QCConfig = _DEFAULT_QC) -> ConformPlan:
    """What the conform does to this source, step by step (pure: probe's fields and QC's idet counts).

    With ``config.enabled`` false the plan has no steps: the source goes on as it is.
    """
    v = info.video
    codec, pix_fmt = intermediate_format(v, config)
    out_w, out_h = v.width, v.height
    if not config.enabled:
        return ConformPlan((), out_w, out_h, v.fps, v.frames, pix_fmt, codec)
    steps: list[ConformStep] = []
    fps, frames, refused = v.fps, v.frames, None
    measured = _measurements(qc)

    kind, parity, evidence = field_finding(v, measured, qc_config, config.telecine_repeated_ratio)
    if kind == "telecine" and config.inverse_telecine:
        fps = v.fps * Fraction(4, 5)
        frames = round(v.frames * 4 / 5)
        steps.append(ConformStep(
            "inverse_telecine", evidence,
            "fields matched back into film frames and the repeated fifth frame dropped: "
            f"{float(fps):.3f} fps progressive",
            # bwdif only on frames fieldmatch leaves combed (an edit that broke the cadence); fieldmatch's
            # own comb check at scene changes only (its default; combmatch=full costs far more CPU,
            # docs/benchmarks.md).
            # Matches and duplicates judged on luma (mchroma=0, chroma=0): a pulled-down field's luma
            # decides the match; chroma doubled the comparisons for the same frames on the test masters
            f"fieldmatch=order={parity}:mchroma=0,bwdif=mode=send_frame:parity={parity}:deint=interlaced,"
            "decimate=chroma=0"))
    elif kind in ("interlaced", "telecine"):
        mode = "send_field" if config.double_rate else "send_frame"
        if config.double_rate:
            fps, frames = v.fps * 2, v.frames * 2
        steps.append(ConformStep(
            "deinterlace", evidence,
            f"deinterlaced with bwdif ({parity.upper()}), {float(fps):.3f} fps progressive"
            + (" (a frame per field)" if config.double_rate else " (frame rate kept)"),
            f"bwdif=mode={mode}:parity={parity}:deint=all"))

    if v.variable_rate:
        nominal = v.nominal_fps or v.fps
        rates = tuple(Fraction(r) for r in config.standard_rates)
        chosen = standard_rate(nominal, rates, config.rate_tolerance)
        found = (f"variable frame rate: frame intervals vary; median interval {float(nominal):.3f} fps, "
                 f"average {float(v.fps):.3f} fps")
        if chosen is None:
            refused = (f"{found}; no standard rate ({', '.join(config.standard_rates)}) is within "
                       f"{config.rate_tolerance:.0%} of {float(nominal):.3f} fps: convert it to the rate it should "
                       f"play at first (e.g. ffmpeg -i SRC -fps_mode cfr -r RATE ...) or add that rate to "
                       "conform.standard_rates")
            steps.append(ConformStep("frame_rate", found, "refused: no standard rate fits"))
        else:
            fps = chosen
            frames = max(1, round(v.duration_s * chosen))
            steps.append(ConformStep(
                "frame_rate", found,
                f"conformed to constant {chosen} fps ({float(chosen):.3f}), the standard rate nearest the median "
                "interval: gaps become repeated frames, extra frames are dropped",
                f"fps={chosen.numerator}/{chosen.denominator}"))

    width, height, aspect = square_size(v, config.aspect_snap)
    if (width, height) != (v.width, v.height) or v.sar != 1:
        sar = f", SAR {v.sar.numerator}:{v.sar.denominator}" if v.sar != 1 else ""
        shown = f"display aspect {float(v.dar):.4f}"
        what = f" ({aspect})" if aspect else ""
        steps.append(ConformStep(
            "picture_size", f"{v.width}x{v.height}{sar}, {shown}",
            f"scaled to {width}x{height}, square pixels, even sides{what}",
            f"scale={width}:{height}:flags=lanczos,setsar=1"))
    out_w, out_h = width, height

    if v.rotation or v.mirrored:
        if v.rotation in (90, 270):
            out_w, out_h = out_h, out_w
        mirror = " and mirrors it" if v.mirrored else ""
        steps.append(ConformStep(
            "rotation", f"display matrix rotates the picture {v.rotation}° counter-clockwise{mirror}",
            f"{'turned' if v.rotation else 'flipped'} to {out_w}x{out_h} as it is shown, display matrix cleared",
            display_filters(v.rotation, v.display_matrix)))

    if v.alpha:
        steps.append(ConformStep("alpha", f"alpha plane ({v.pix_fmt})",
                                 "dropped: streaming codecs carry no alpha; the colour planes are kept as they are"))
    if v.timecode:
        steps.append(ConformStep("timecode", f"start timecode {v.timecode}",
                                 "kept in this report; the published streams start at 0"))
    return ConformPlan(tuple(steps), out_w, out_h, fps, frames, pix_fmt, codec, refused)


def half_rate_step(fps: Fraction, config: EncodeConfig, moved: int, shots: int) -> ConformStep:
    """The record of a title with half-rate rungs (encode.half_rate_title): which rungs, at what rate,
    and the keyframes moved for it (``moved`` of ``shots`` shot starts); the encodes do the filtering."""
    bounds = [f"up to {config.half_rate_max_height} lines"] if config.half_rate_max_height else []
    bounds += [f"at or under {config.half_rate_max_kbps} kbit/s"] if config.half_rate_max_kbps else []
    step = segment_frames(fps, config.segment_s, even=True)
    return ConformStep(
        "half_rate", f"{float(fps):.3f} fps, above 30",
        f"rungs {' or '.join(bounds)} encoded at {float(fps / 2):.3f} fps (the source's even frames), the others "
        f"at {float(fps):.3f}; keyframes on even frames so every rung has them at the same times: {moved} of "
        f"{shots} shot starts moved one frame later, the segment grid every {step} frames",
        EVEN_FRAMES)


# ---------------------------------------------------------------------------------------------
# The one pass


def conform_argv(src: Path, info: MediaInfo, plan: ConformPlan, out: Path, config: ConformConfig) -> list[str]:
    """ffmpeg argv of the conform pass: the plan's filters, video only, into a lossless intra-only file."""
    v = info.video
    fps = f"{plan.fps.numerator}/{plan.fps.denominator}"
    # Frame 0 is the source's first frame, on a timeline of its own (the audio stage aligns to it).
    chain = ["setpts=PTS-STARTPTS", *plan.filters, f"format={plan.pix_fmt}"]
    if plan.codec == "utvideo":
        codec = ["-c:v", "utvideo"]                           # lossless, intra only, fastest to decode
    elif plan.codec == "x264":
        codec = ["-c:v", "libx264", "-qp", "0",               # qp 0: mathematically lossless
                 "-preset", "ultrafast",                      # lossless either way; fastest to write and read
                 "-g", "1", "-x264-params", "keyint=1"]       # intra only: every frame a seek point
    else:
        codec = ["-c:v", "ffv1", "-level", "3", "-g", "1",   # FFV1 v3: lossless, intra only
                 "-slices", "4", "-slicecrc", "1"]            # slices thread; CRCs make damage detectable
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
        # The rotation step turns the picture itself: ffmpeg's autorotate would turn it twice, and the
        # source's matrix must not reach the file, or players would turn it again.
        *(["-display_rotation", "0"] if plan.step("rotation") else []),
        "-i", str(src),
        "-map", f"0:{v.index}", "-an", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-vf", ",".join(chain),
        "-fps_mode", "cfr", "-r", fps,                        # one frame per 1/fps, as every later stage assumes
        *codec,
        *(["-threads", str(config.threads)] if config.threads else []),
        *color_args(v),                                     # the colour description goes through unchanged
        str(out),
    ]


@functools.cache
def code_digest() -> str:
    """This module's code: a changed filter chain must not reuse an older intermediate."""
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def conformed_name(plan: ConformPlan, source_sha: str) -> str:
    """Content address of the intermediate: source, plan and code (and the ffmpeg build)."""
    digest = config_digest(source_sha, plan.digest(), code_digest(), Path(ffmpeg_exe()).name)[:16]
    # MOV for Ut Video and FFV1 (MP4 has no mapping for them): Matroska's millisecond clock makes
    # 59.94 read back as 19001/317 fps, and every later stage needs the exact rate.
    return f"conform-{digest}.{'mp4' if plan.codec == 'x264' else 'mov'}"


def conform_source(source: Path, info: MediaInfo, plan: ConformPlan, work_dir: Path, *,
                   config: ConformConfig | None = None, source_sha: str | None = None,
                   progress: Callable[[float], None] | None = None) -> tuple[Path, MediaInfo]:
    """The conformed picture and its probe; the source and ``info`` unchanged when nothing needs a filter.

    The file is ``work_dir/conform-<digest>.<ext>`` (source sha, plan and code): an existing one is a
    finished earlier pass, checked again and reused. Only a verified file gets that name.
    """
    if plan.refused is not None:
        raise StageError(f"{source.name} cannot be conformed: {plan.refused}")
    if not plan.needs_pass:
        return source, info
    config = config or ConformConfig()
    out = work_dir / conformed_name(plan, source_sha or sha256_file(source))
    if out.exists():
        try:
            conformed = verify_conformed(out, info, plan)
            log.info("reusing conformed picture %s", out)
            return out, conformed
        except StageError as exc:
            log.warning("not reusing %s: %s", out, exc)
    work_dir.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".partial-{out.name}")
    try:
        run(conform_argv(source, info, plan, partial, config), progress=progress)
        conformed = verify_conformed(partial, info, plan)
        partial.replace(out)  # the final name only for a verified file
    finally:
        partial.unlink(missing_ok=True)
    log.info("conformed %s: %s -> %s (%dx%d %s fps, %d frames)", source.name,
             "; ".join(s.step for s in plan.steps if s.filter), out.name, plan.width, plan.height, plan.fps,
             conformed.video.frames)
    return out, dataclasses.replace(conformed, path=out)


def verify_conformed(path: Path, source: MediaInfo, plan: ConformPlan) -> MediaInfo:
    """Probe the conformed file and check it is the planned picture; StageError saying what differs."""
    got = probe(path)
    v = got.video
    problems = []
    if (v.width, v.height) != (plan.width, plan.height):
        problems.append(f"size {v.width}x{v.height}, planned {plan.width}x{plan.height}")
    if v.fps != plan.fps or v.variable_rate:
        problems.append(f"{'variable' if v.variable_rate else 'constant'} {v.fps} fps, planned constant {plan.fps}")
    if v.rotation or v.mirrored or v.sar != 1:
        problems.append(f"rotation {v.rotation}{', mirrored' if v.mirrored else ''}, SAR {v.sar}: the picture "
                        "must be stored as shown")
    if v.pix_fmt != plan.pix_fmt:
        problems.append(f"pixel format {v.pix_fmt}, planned {plan.pix_fmt}")
    # IVTC and rate changes decide frame by frame; a few frames either way at the ends are normal.
    slack = 0 if plan.exact_frames else max(3, round(0.02 * plan.frames))
    if abs(v.frames - plan.frames) > slack:
        problems.append(f"{v.frames} frames, planned {plan.frames}" + (f" (+-{slack})" if slack else ""))
    tags = ("color_primaries", "color_transfer", "color_matrix", "color_range")
    changed = [t for t in tags if getattr(source.video, t) and getattr(v, t) not in (None, getattr(source.video, t))]
    if changed:
        problems.append("colour tags changed: " + ", ".join(f"{t} {getattr(v, t)} (source "
                                                             f"{getattr(source.video, t)})" for t in changed))
    if problems:
        raise StageError(f"conformed picture {path.name} is not what was planned: {'; '.join(problems)}")
    return dataclasses.replace(got, video=_carried_over(v, source.video))


# What the pass itself decides; every other field of the picture's description is the source's.
_MADE_BY_PASS = {"index", "codec", "width", "height", "fps", "frames", "duration_s", "start_s", "pix_fmt", "sar",
                 "dar", "field_order", "bit_depth", "variable_rate", "rotation", "mirrored", "display_matrix",
                 "alpha", "nominal_fps"}


def _carried_over(conformed: VideoStream, source: VideoStream) -> VideoStream:
    """The conformed picture's description, with what its file cannot hold taken from the source.

    The pass converts no colour and keeps HDR pixels as they are, so a colour tag the container
    drops (MOV keeps no range for Ut Video or FFV1) or HDR side data the intermediate's codec has no
    place for (mastering display, content light level) is still true of the picture: the later
    stages read it from here. Only fields the conformed file leaves empty are filled.
    """
    empty = (None, False, (), "", 0)
    filled = {f.name: getattr(source, f.name) for f in dataclasses.fields(VideoStream)
              if f.name not in _MADE_BY_PASS and getattr(conformed, f.name) in empty
              and getattr(source, f.name) not in empty}
    return dataclasses.replace(conformed, **filled) if filled else conformed


def conformed_for_analysis(source: Path, info: MediaInfo, config: ConformConfig, qc_config: QCConfig,
                           work_dir: Path, *, progress: Callable[[float], None] | None = None,
                           ) -> tuple[Path, MediaInfo, ConformPlan]:
    """The picture an analysis outside the ingest (``reelflow ladder``) must read: QC's decode for the
    field analysis, the plan, then the conformed file (or the source, unchanged)."""
    from reelflow.encoding.qc import run_qc

    report = run_qc(source, qc_config, info=info, conform=config)
    plan = plan_conform(info, report, config, qc_config)
    picture, picture_info = conform_source(source, info, plan, work_dir, config=config, progress=progress)
    return picture, picture_info, plan

