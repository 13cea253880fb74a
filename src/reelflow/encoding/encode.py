"""Final encodes: the ladder's video renditions with aligned keyframes (audio: encoding/audio.py).

Every rendition gets a keyframe (IDR, closed GOP) at every shot start and on a fixed segment
grid, at the same frames in every rung, so the packager can cut all rungs at the same instants
and a player can switch between them at any segment boundary. Each encode is checked after the
fact: its keyframes are read back and must be exactly the planned ones.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, Literal

import av

from reelflow.encoding.codecs import CODECS, CodecName, VideoCodec, codec_for
from reelflow.encoding.hdr import color_args as hdr_color_args
from reelflow.encoding.probe import MediaInfo, VideoStream
from reelflow.errors import StageError
from reelflow.infra.hashing import config_digest
from reelflow.infra.settings import EncodeConfig, Rung
from reelflow.infra.tools import ffmpeg_exe, run

log = logging.getLogger(__name__)

# No more than this many seconds between keyframes from the encoder's own decision; the grid and
# the shot starts place every keyframe, so this only guards against a missing grid.
_MAX_GOP_FACTOR = 10


@dataclass(frozen=True)
class Rendition:
    """One encoded track, ready for the packager."""

    kind: Literal["video", "audio"]
    path: Path
    codec: str
    kbps: float                 # measured from the file: bytes * 8 / duration
    duration_s: float
    width: int = 0
    height: int = 0
    target_kbps: int = 0
    frames: int = 0
    channels: int = 0
    sample_rate: int = 0
    language: str = "und"
    role: str = "main"          # audio: main, description, commentary or dub (a sidecar's role)
    frame_rate: str = ""        # video: the rendition's exact rate, "num/den" (half the source's when half_rate)
    half_rate: bool = False     # video: only the source's even frames (encode.half_rate)
    ladder: str = ""            # video: the ladder of a multi-ladder title (h264, av1, hevc_hdr); "" for the only one
    range: str = "sdr"          # video: sdr, pq or hlg (what the manifests signal)
    track_name: str = ""        # audio: the planner's unique name (aac_en_51); empty: codec_language[_role]
    layout: str = ""            # audio: stereo, 5.1, 7.1
    # audio: loudnorm's measured input and output figures, (key, value) pairs; bookkeeping like cpu_s
    loudness: tuple[tuple[str, float | str], ...] = field(default=(), compare=False)
    # CPU seconds the encode took in this run (0 when a finished one was reused): bookkeeping, not
    # part of what the rendition is, so two descriptions of one file compare equal
    cpu_s: float = field(default=0.0, compare=False)

    @property
    def name(self) -> str:
        """Stable folder name in the package: 720p_3000k, aac_eng, aac_en_description."""
        if self.kind == "audio":
            if self.track_name:
                return self.track_name
            return f"{self.codec}_{self.language}" + ("" if self.role == "main" else f"_{self.role}")
        plain = f"{self.height}p_{self.target_kbps}k"
        return f"{self.ladder}_{plain}" if self.ladder else plain

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["path"] = str(self.path)
        out["name"] = self.name
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rendition:
        fields = {k: v for k, v in data.items() if k != "name"}
        fields["path"] = Path(fields["path"])
        fields["loudness"] = tuple(tuple(pair) for pair in fields.get("loudness", ()))
        return cls(**fields)


def result_digest_parts(config: EncodeConfig) -> dict[str, Any]:
    """What changes the encoder's output: the settings (not how many run at once), this module's
    code (argv and filters live here) and the ffmpeg binary."""
    return {
        "settings": config.model_dump(mode="json", exclude={"parallel_encodes"}),
        "code": _code_digest(),
        "ffmpeg": Path(ffmpeg_exe()).name,   # the imageio-ffmpeg file name carries its version
    }


@functools.cache
def _code_digest() -> str:
    """This module and the encoder options it takes from codecs.py and hdr.py."""
    here = Path(__file__).parent
    return hashlib.sha256(b"".join((here / name).read_bytes()
                                   for name in ("encode.py", "codecs.py", "hdr.py"))).hexdigest()[:12]


def even(value: float | Fraction) -> int:
    """Nearest even integer (4:2:0 chroma needs even dimensions)."""
    return max(2, round(value / 2) * 2)


def short_side(video: VideoStream) -> int:
    """The picture's short side as shown (square pixels): what a ladder's "heights" mean."""
    return video.height if video.dar >= 1 else even(video.height * video.dar)


def rung_size(video: VideoStream, lines: int) -> tuple[int, int]:
    """(width, height) of a rung whose short side is ``lines``, in the source's display aspect, both even.

    A ladder's heights are the short side: a portrait picture (9:16) gets the landscape rung's
    pixels turned (1080 -> 1080x1920, as Apple's authoring spec does for portrait video), so a
    rung's bitrate buys the same number of pixels whichever way the picture is held; taking the
    long side instead would give a 1080p rung of 608x1080, a third of the pixels for the same bits.
    A 4:3 or scope picture keeps the lines and gets the width of its own aspect.
    """
    if video.dar < 1:
        return lines, even(lines / video.dar)
    return even(lines * video.dar), lines


def ladder_for_source(video: VideoStream, ladder: Iterable[Rung]) -> tuple[Rung, ...]:
    """The rungs no larger than the source, each sized by ``rung_size`` (short side = the rung's height).

    Apple's widths assume 16:9; a 4:3 or scope source keeps each rung's height and gets the width
    of its own display aspect ratio, with square pixels; a portrait source gets portrait rungs.
    """
    rungs = []
    for rung in ladder:
        if rung.height > short_side(video):
            continue
        width, height = rung_size(video, rung.height)
        rungs.append(rung if (width, height) == (rung.width, rung.height)
                     else Rung(width=width, height=height, kbps=rung.kbps))
    if not rungs:
        raise StageError(
            f"the source is {video.width}x{video.height}: no rung of the ladder is that small or smaller; "
            "add a lower rung to the ladder"
        )
    return tuple(rungs)


# The fixed ladder's rates are Apple's H.264 ones; HEVC and AV1 need about 40% less for the same
# picture (Apple: "about a 40 percent lower bit rate compared to H.264"), and an HDR rendition
# about a fifth more than SDR at the same size (10 bits, wider gamut: our assumption, after the
# HDR column of Apple's HEVC ladder), so their fixed rungs are scaled from it.
FIXED_RATE_FACTOR = {"h264": 1.0, "hevc": 0.6, "av1": 0.6}
FIXED_HDR_FACTOR = 1.2


def fixed_ladder(video: VideoStream, config: EncodeConfig, codec: VideoCodec) -> tuple[Rung, ...]:
    """The fixed ladder of ``codec`` for this source (rungs no taller than it, its display aspect)."""
    factor = FIXED_RATE_FACTOR[codec.name] * (FIXED_HDR_FACTOR if codec.hdr is not None else 1.0)
    return tuple(Rung(width=r.width, height=r.height, kbps=max(1, round(r.kbps * factor)))
                 for r in ladder_for_source(video, config.ladder))


# Sources faster than this get half-rate rungs (EncodeConfig.half_rate_max_height): 50, 59.94 and 60
# become 25, 29.97 and 30, rates every device shows smoothly.
HALF_RATE_ABOVE_FPS = 30


def half_rate_title(fps: Fraction, config: EncodeConfig) -> bool:
    """Whether a title at ``fps`` may have half-rate rungs: then every keyframe must be on an even frame.

    Decided before the ladder is known (the keyframes are planned before the trials), so it holds
    for any high-rate title with a bound set, whichever rungs the ladder then gets.
    """
    return fps > HALF_RATE_ABOVE_FPS and (config.half_rate_max_height > 0 or config.half_rate_max_kbps > 0)


def half_rate(fps: Fraction, width: int, height: int, kbps: float, config: EncodeConfig) -> bool:
    """Whether a rung (``width`` x ``height``, ``kbps``: fixed target or planned rate) of a title at ``fps``
    is encoded at half rate: at or under either bound, the height bound judged on the short side as
    the ladder's heights are (a portrait 234x416 rung is a 234-line rung)."""
    if not half_rate_title(fps, config):
        return False
    lines = min(width, height)
    return (0 < lines <= config.half_rate_max_height) or (0 < kbps <= config.half_rate_max_kbps)


def rung_rate(fps: Fraction, half: bool) -> Fraction:
    """A rung's frame rate: the title's, or half of it."""
    return fps / 2 if half else fps


def segment_frames(fps: Fraction, segment_s: float, *, even: bool = False) -> int:
    """Frames per segment of the grid: a whole number, so every rung cuts at the same frame; with
    ``even``, an even number (a half-rate rung has only the even frames to put a keyframe on)."""
    if even:
        return max(2, round(segment_s * fps / 2) * 2)
    return max(1, round(segment_s * fps))


def keyframe_frames(
    shot_starts: Iterable[int], frames: int, fps: Fraction, segment_s: float, *, even: bool = False
) -> tuple[int, ...]:
    """Frames that must be keyframes: every shot start and every segment-grid point, sorted.

    ``even`` (a title with half-rate rungs, ``half_rate_title``): the grid is on even frames, and so
    must the shot starts be (shots.even_starts moves them); StageError otherwise.
    """
    step = segment_frames(fps, segment_s, even=even)
    wanted = set(range(0, frames, step))
    wanted.update(f for f in shot_starts if 0 <= f < frames)
    if even and any(f % 2 for f in wanted):
        odd = sorted(f for f in wanted if f % 2)[:5]
        raise StageError(f"shot starts {odd} are odd frames, and the title has half-rate rungs: a half-rate rung "
                         "has no keyframe there (shots.even_starts moves them)")
    return tuple(sorted(wanted))


def rate_arg(fps: Fraction) -> str:
    """A rate as ffmpeg takes it, exact: 30000/1001."""
    return f"{fps.numerator}/{fps.denominator}"


# A half-rate rung's frames are the source's frames 0, 2, 4, ...: counted from the filter's first
# input frame, which is frame 0 of the title, or an even frame where a piece's encode starts.
EVEN_FRAMES = "select='not(mod(n,2))'"


def half_rate_keyframes(keyframes: Sequence[int]) -> list[int]:
    """The keyframes of a half-rate rung, as its own frame numbers (source frame 2k is its frame k)."""
    if any(k % 2 for k in keyframes):
        raise StageError(f"keyframes {[k for k in keyframes if k % 2][:5]} are odd frames: a half-rate rung "
                         "does not have them")
    return [k // 2 for k in keyframes]


def force_key_frames_arg(keyframes: Sequence[int], fps: Fraction) -> str:
    """ffmpeg's -force_key_frames time list, aimed half a frame early.

    ffmpeg forces a keyframe on the first frame whose time is at or after each listed time;
    half a frame early makes that frame the intended one despite rounding of either time.
    """
    half = Fraction(1, 2)
    return ",".join(f"{float(max(Fraction(0), (f - half) / fps)):.6f}" for f in keyframes)


def video_encode_argv(
    src: Path, rung: Rung, keyframes: Sequence[int], video: VideoStream, config: EncodeConfig, out: Path,
    codec: VideoCodec | None = None, *, half_rate: bool = False,
) -> list[str]:
    """ffmpeg argv for one fixed-bitrate rung of the whole title (``codec``: encode.codec for ``video``);
    ``half_rate``: the source's even frames only, at half its rate."""
    chosen = codec or codec_for(config.codec, video)
    rate = rung_rate(video.fps, half_rate)
    gop = segment_frames(rate, config.segment_s) * _MAX_GOP_FACTOR
    fps = rate_arg(rate)
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
        "-i", str(src),
        "-map", f"0:{video.index}", "-an", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",                # nothing of the source's tags leaks out
        # The video's own timeline from 0: ffmpeg's default zero is the earliest stream of the file,
        # and a video starting after its audio would otherwise get padded head frames.
        "-vf", ",".join(["setpts=PTS-STARTPTS", *([EVEN_FRAMES] if half_rate else []),
                         scale_filter(rung.width, rung.height, chosen)]),
        "-fps_mode", "cfr", "-r", fps,                               # one frame per 1/fps: frame n is at n/fps
        *chosen.fixed_args(config.preset, rung.kbps,
                           round(rung.kbps * config.maxrate_factor),   # VBV: the rung's peak stays streamable
                           round(rung.kbps * config.bufsize_s), gop),
        "-force_key_frames", force_key_frames_arg(half_rate_keyframes(keyframes) if half_rate else keyframes, rate),
        *color_args(video, chosen),
        "-movflags", "+faststart",
        str(out),
    ]


def scale_filter(width: int, height: int, codec: VideoCodec) -> str:
    """Resize with square pixels into the rendition's pixel format (10-bit for HDR: 8 would band).

    The scale keeps the YUV matrix (no colour conversion): an HDR rung is BT.2020 like its source.
    """
    return f"scale={width}:{height}:flags=lanczos,setsar=1,format={codec.pix_fmt}"


def color_args(video: VideoStream, codec: VideoCodec | None = None) -> list[str]:
    """Carry the source's colour description through the scale, where it is known; an HDR
    rendition states its own (BT.2020, PQ/HLG, limited range) whatever the source's tags left out."""
    if codec is not None and codec.hdr is not None:
        return hdr_color_args(codec.hdr)
    args = []
    for flag, value in (("-color_primaries", video.color_primaries), ("-color_trc", video.color_transfer),
                        ("-colorspace", video.color_matrix), ("-color_range", video.color_range)):
        if value:
            args += [flag, value]
    return args


def encode_video_rung(
    src: Path,
    rung: Rung,
    keyframes: Sequence[int],
    info: MediaInfo,
    config: EncodeConfig,
    out: Path,
    *,
    progress: Callable[[float], None] | None = None,
    reuse: bool = True,
    codec: CodecName | None = None,
) -> Rendition:
    """Encode one rung, verify its frame count and keyframes, and describe the result.

    ``codec`` (default ``config.codec``) is made HDR when the source is (codecs.codec_for). A rung
    within the half-rate bounds of a high-rate source (``half_rate``) gets its even frames only.

    Only a verified encode gets the name ``out``, so with ``reuse`` an existing ``out`` is a
    finished encode from an earlier run: it is checked again and kept instead of re-encoded.
    """
    name = codec or config.codec
    half = half_rate(info.video.fps, rung.width, rung.height, rung.kbps, config)
    if reuse and out.exists():
        try:
            rendition = _verified_rung(out, rung, keyframes, info, name, half_rate=half)
            log.info("reusing finished encode %s", out)
            return rendition
        except StageError as exc:
            log.warning("not reusing %s: %s", out, exc)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(out)
    try:
        done = run(video_encode_argv(src, rung, keyframes, info.video, config, partial, codec_for(name, info.video),
                                     half_rate=half), progress=progress)
        rendition = _verified_rung(partial, rung, keyframes, info, name, half_rate=half)
        partial.replace(out)  # a crash before this line leaves no file under the final name
    finally:
        partial.unlink(missing_ok=True)
    return replace(rendition, path=out, cpu_s=done.cpu_s)


def _verified_rung(path: Path, rung: Rung, keyframes: Sequence[int], info: MediaInfo,
                   codec: CodecName = "h264", *, half_rate: bool = False) -> Rendition:
    """Describe an encoded rung after checking its frame count and keyframes against the plan
    (``half_rate``: the source's even frames, the keyframes at half their numbers)."""
    frames, found = read_keyframes(path)
    expected = math.ceil(info.video.frames / 2) if half_rate else info.video.frames
    if frames != expected:
        raise StageError(f"{rung.name}: encoded {frames} frames, {expected} planned (the source has "
                         f"{info.video.frames}{', the rung is half rate' if half_rate else ''})")
    if half_rate:
        keyframes = half_rate_keyframes(keyframes)
    if tuple(found) != tuple(keyframes):
        missing = sorted(set(keyframes) - set(found))[:5]
        extra = sorted(set(found) - set(keyframes))[:5]
        raise StageError(f"{rung.name}: keyframes differ from the plan (missing {missing}, extra {extra})")
    rate = rung_rate(info.video.fps, half_rate)
    duration = float(frames / rate)
    return Rendition(
        kind="video", path=path, codec=codec, kbps=_kbps(path, duration), duration_s=duration,
        width=rung.width, height=rung.height, target_kbps=rung.kbps, frames=frames,
        frame_rate=rate_arg(rate), half_rate=half_rate,
    )


@dataclass(frozen=True)
class ShotCrf:
    """One shot of a per-shot rung: its half-open frame range, the CRF chosen for it and, when the rung
    switches resolution per shot, the size chosen for it (0 x 0: the rung's size).

    A piece with a size of its own is encoded with its parameter sets in band at every keyframe
    (``INBAND_PARAMS``), so that a rung joined from pieces of different sizes decodes across each
    switch (``join_pieces``); in such a rung every piece carries its size, and the largest of them
    is the rung's.
    """

    start_frame: int
    end_frame: int
    crf: float
    width: int = 0
    height: int = 0

    @property
    def sized(self) -> bool:
        """Whether the piece has a size of its own (per-shot resolution)."""
        return self.width > 0 and self.height > 0

    def size(self, width: int, height: int) -> tuple[int, int]:
        """The piece's (width, height): its own, or the rung's ``width`` x ``height``."""
        return (self.width, self.height) if self.sized else (width, height)


# Encoder options that put the parameter sets in band at every keyframe (what a sample entry of
# avc3/hev1 allows), for pieces of a rung that switches resolution: each piece's keyframes then
# carry the SPS/PPS of its own size. x265 repeats them for every per-shot piece already
# (codecs.py); SVT-AV1 writes a sequence header with every key frame.
INBAND_PARAMS: dict[CodecName, str] = {"h264": "repeat-headers=1", "hevc": "", "av1": ""}
# The sample entry of a joined rung whose pieces differ in size: parameter sets in band (ISO/IEC
# 14496-15), the largest piece's in the entry itself, which is what the packager declares.
SWITCHING_TAGS: dict[CodecName, str] = {"h264": "avc3", "hevc": "hev1"}


def shot_encode_argv(
    src: Path, video: VideoStream, piece: ShotCrf, width: int, height: int, keyframes: Sequence[int],
    preset: str, out: Path, codec: VideoCodec = CODECS["h264"], *, preroll: int = 0, half_rate: bool = False,
    inband: bool = False,
) -> list[str]:
    """ffmpeg argv for one shot of a per-shot rung, at its own CRF; ``keyframes`` are absolute frames.

    ``preroll`` frames before the shot are encoded first, as a GOP of their own at the same CRF, for
    the join to drop (``preroll_frames``). ``half_rate``: the even source frames only (the piece and
    its pre-roll start on even frames), at half the rate: ``preroll / 2`` frames to drop. ``inband``:
    the parameter sets at every keyframe too (``INBAND_PARAMS``; a piece of a resolution-switching rung).
    """
    rate = rung_rate(video.fps, half_rate)
    fps = rate_arg(rate)
    first = piece.start_frame - preroll
    if first < 0:
        raise StageError(f"a pre-roll of {preroll} frames before frame {piece.start_frame} starts before the title")
    if half_rate and first % 2:
        raise StageError(f"a half-rate piece starts at odd frame {first}: its frames would not be the title's "
                         "even ones")
    inside = [k - first for k in keyframes if piece.start_frame <= k < piece.end_frame]
    if preroll:
        inside = sorted({0, preroll, *inside})
    count = piece.end_frame - first
    if half_rate:
        inside, count = half_rate_keyframes(inside), math.ceil(count / 2)
    start = float(max(Fraction(0), (first - Fraction(1, 2)) / video.fps))
    gop = max(1, count)
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
        "-ss", f"{start:.6f}",                       # exact input seek, half a frame early: frame `first`
        "-i", str(src),
        "-map", f"0:{video.index}", "-an", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-frames:v", str(count),
        "-vf", ",".join(["setpts=PTS-STARTPTS", *([EVEN_FRAMES] if half_rate else []),
                         scale_filter(width, height, codec)]),
        "-fps_mode", "cfr", "-r", fps,
        # the piece's own CRF (x264 and x265 take fractions: the plan interpolates), closed GOPs,
        # keyframes only where forced, and headers that let the pieces join without re-encoding
        *codec.args(preset, piece.crf, gop, params=INBAND_PARAMS[codec.name] if inband else ""),
        "-force_key_frames", force_key_frames_arg([k for k in inside if k >= 0] or [0], rate),
        *color_args(video, codec),
        # same timescale in every piece (the source's rate's, at half rate too: a whole number of ticks a frame)
        "-video_track_timescale", str(video.fps.numerator * 512),
        str(out),
    ]


def piece_file_name(width: int, height: int, piece: ShotCrf, keyframes: Sequence[int], preset: str,
                    codec: CodecName = "h264", preroll: int = 0, half_rate: bool = False) -> str:
    """A name that changes with everything the piece's encode depends on (within one encode folder,
    whose name covers the source and the settings): a reused piece is the encode of this very plan.

    ``width`` x ``height`` is the rung's size; a piece with a size of its own is named by that one,
    and differs from a rung-sized piece (its parameter sets are in band)."""
    inside = [k for k in keyframes if piece.start_frame <= k < piece.end_frame]
    width, height = piece.size(width, height)
    digest = config_digest(codec, width, height, piece.crf, preset, min(preroll, piece.start_frame), inside,
                           *(["half-rate"] if half_rate else []), *(["in-band"] if piece.sized else []))[:10]
    return f"{height}p-{piece.start_frame:07d}-{piece.end_frame:07d}-{digest}.mp4"


def encode_piece(
    src: Path, info: MediaInfo, width: int, height: int, piece: ShotCrf, keyframes: Sequence[int], preset: str,
    out: Path, *, codec: CodecName = "h264", preroll: int = 0, reuse: bool = True, half_rate: bool = False,
) -> float:
    """One shot (or unit) of a per-shot rung at its own CRF, as ``out``; returns the CPU seconds spent.

    ``width`` x ``height`` is the rung's size; a piece with a size of its own (``ShotCrf.size``) is
    encoded at that size with its parameter sets in band. With ``preroll``, the encode starts up to
    that many frames earlier, at the piece's CRF, and those frames are dropped (``preroll_frames``).
    ``half_rate``: the source's even frames only (see ``shot_encode_argv``). Only a piece with the
    right frame count gets the name ``out``, so with ``reuse`` an existing ``out`` is a finished
    piece of an earlier run: kept (0.0). A piece is a separate task in the ingest flow, so a stopped
    run resumes piece by piece.
    """
    frames = piece.end_frame - piece.start_frame
    if half_rate:
        frames = (frames + 1) // 2        # the piece starts on an even frame (keyframe_frames(even=True))
    if reuse and out.is_file():
        count, found = read_keyframes(out)
        if count == frames and found[:1] == [0]:
            log.info("reusing finished piece %s", out.name)
            return 0.0
        log.warning("not reusing piece %s: %d frames (%d planned)", out, count, frames)
    out.parent.mkdir(parents=True, exist_ok=True)
    lead = min(preroll, piece.start_frame)
    lead -= lead % 2 if half_rate else 0     # half rate: the pre-roll starts on an even frame too
    partial = _partial_name(out)
    encoded = partial.with_name(f"{partial.stem}-preroll{partial.suffix}") if lead else partial
    try:
        cpu_s = run(shot_encode_argv(src, info.video, piece, *piece.size(width, height), keyframes, preset, encoded,
                                     codec_for(codec, info.video), preroll=lead, half_rate=half_rate,
                                     inband=piece.sized)).cpu_s
        if lead:
            drop_leading_frames(encoded, lead // 2 if half_rate else lead, partial)
        count, found = read_keyframes(partial)
        if count != frames or found[:1] != [0]:
            raise StageError(f"{out.name}: encoded {count} frames starting with a "
                             f"{'keyframe' if found[:1] == [0] else 'non-keyframe'}; planned {frames} from a keyframe")
        partial.replace(out)  # a crash before this line leaves no file under the final name
    finally:
        encoded.unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return cpu_s


def join_pieces(
    pieces: Sequence[Path], info: MediaInfo, width: int, height: int, keyframes: Sequence[int], out: Path,
    *, target_kbps: int = 0, codec: CodecName = "h264", half_rate: bool = False,
) -> Rendition:
    """The pieces of a per-shot rung joined without re-encoding into ``out``, frames and keyframes verified.

    Pieces of different sizes (per-shot resolution, each encoded with its parameter sets in band)
    are joined under an ``avc3``/``hev1`` sample entry that holds the largest piece's parameter
    sets, so the packager declares that size; ``width`` x ``height`` must be it. Every keyframe of
    such a join is then decoded and must have the size of its piece: that is what proves the rung
    plays across each switch.

    Returns the rendition with the join's CPU seconds (the caller adds the pieces')."""
    rung = Rung(width=width, height=height, kbps=max(1, target_kbps))
    sizes = [coded_size(p) for p in pieces]
    check_rung_size(sizes, width, height, codec)
    switching = len(set(sizes)) > 1
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(out)
    try:
        if switching:
            cpu = _join_switching(pieces, sizes.index((width, height)), partial, SWITCHING_TAGS[codec],
                                  rung_rate(info.video.fps, half_rate))
        else:
            cpu = concat_pieces(pieces, partial, codec=codec, faststart=True)
        rendition = _verified_rung(partial, rung, keyframes, info, codec, half_rate=half_rate)
        if switching:
            planned = [size for p, size in zip(pieces, sizes, strict=True) for _ in read_keyframes(p)[1]]
            found = keyframe_sizes(partial)
            if found != planned:
                at = next((i for i, (a, b) in enumerate(zip(found, planned, strict=False)) if a != b),
                          min(len(found), len(planned)))
                raise StageError(f"{out.name}: keyframe {at} of the join decodes as "
                                 f"{'x'.join(map(str, found[at])) if at < len(found) else 'nothing'}, planned "
                                 f"{'x'.join(map(str, planned[at])) if at < len(planned) else 'nothing'}")
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    return replace(rendition, path=out, target_kbps=target_kbps, cpu_s=cpu)


def concat_pieces(pieces: Sequence[Path], out: Path, *, codec: CodecName = "h264", faststart: bool = False) -> float:
    """Consecutive pieces (each starting on a keyframe) as one MP4, stream-copied; returns the CPU seconds.
    Nothing is verified here: join_pieces verifies a rung, a VMAF span counts its frames. Pieces of
    different sizes decode each at its own size (their parameter sets are in band), but the sample
    entry is the first piece's: a rung to publish is joined by join_pieces."""
    listing = out.with_name(f"{out.name}.txt")
    listing.write_text("".join(f"file '{p.resolve()}'\n" for p in pieces))
    try:
        return run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-f", "concat", "-safe", "0", "-i",
                    str(listing), "-c", "copy", *CODECS[codec].join_args,
                    *(["-movflags", "+faststart"] if faststart else []), "-f", "mp4", str(out)]).cpu_s
    finally:
        listing.unlink(missing_ok=True)


def check_rung_size(sizes: Sequence[tuple[int, int]], width: int, height: int, codec: CodecName) -> None:
    """StageError unless a rung of pieces of these ``sizes`` is declared ``width`` x ``height``, the largest
    of them, and (when they differ) its codec can switch size inside one track."""
    if len(set(sizes)) > 1 and codec not in SWITCHING_TAGS:
        raise StageError(f"pieces of different sizes ({sorted(set(sizes))}) in one {codec} rung: per-shot "
                         f"resolution is for {' and '.join(SWITCHING_TAGS)} (parameter sets in band)")
    largest = max(sizes, key=lambda s: s[0] * s[1])
    if (width, height) != largest or any(w > width or h > height for w, h in sizes):
        raise StageError(f"a rung of pieces from {sorted(set(sizes))} is declared {width}x{height}: its size must "
                         "be its largest piece's, which no other piece exceeds (the manifests declare it)")


def _join_switching(pieces: Sequence[Path], model: int, out: Path, tag: str, rate: Fraction) -> float:
    """Copy the pieces' packets one after the other into ``out`` under the sample entry ``tag``, with
    the parameter sets of piece ``model`` in it; returns the CPU seconds it took (this thread's).

    ffmpeg's concat demuxer would keep the first piece's parameter sets in the sample entry, and the
    packager would then declare the first piece's size for the whole rung."""
    began = time.thread_time()
    with av.open(str(pieces[model])) as first, av.open(str(out), "w", format="mp4",
                                                       options={"movflags": "+faststart"}) as sink:
        copy = sink.add_stream_from_template(first.streams.video[0], opaque=True)
        copy.codec_context.codec_tag = tag
        offset = 0                                  # where the piece starts, in its stream's ticks
        for path in pieces:
            with av.open(str(path)) as source:
                stream = source.streams.video[0]
                base = stream.time_base
                ticks = 1 / (rate * base) if base else Fraction(1, 2)
                if ticks.denominator != 1:
                    raise StageError(f"{path.name}: a frame is not a whole number of ticks of its time base")
                frames = 0
                for packet in source.demux(stream):
                    if not packet.size or packet.pts is None or packet.dts is None:
                        continue                    # the demuxer's flush packet
                    packet.pts, packet.dts = packet.pts + offset, packet.dts + offset
                    packet.stream = copy
                    sink.mux(packet)
                    frames += 1
                offset += frames * int(ticks)
    return time.thread_time() - began


def coded_size(path: Path) -> tuple[int, int]:
    """(width, height) of a single-size video file's pictures."""
    with av.open(str(path)) as container:
        context = container.streams.video[0].codec_context
        return context.width, context.height


def keyframe_sizes(path: Path) -> list[tuple[int, int]]:
    """(width, height) of every keyframe as it decodes, in order (only keyframes are decoded)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        return [(frame.width, frame.height) for frame in container.decode(stream)]


def check_tiling(pieces: Sequence[ShotCrf], frames: int, what: str) -> None:
    """StageError unless the pieces cover frames 0..frames exactly, in order."""
    if not pieces or pieces[0].start_frame != 0 or pieces[-1].end_frame != frames or any(
            a.end_frame != b.start_frame for a, b in itertools.pairwise(pieces)):
        raise StageError(f"the shots of {what} must tile frames 0..{frames} exactly")


def check_sizes(pieces: Sequence[ShotCrf], what: str) -> None:
    """StageError when some pieces have sizes of their own and others do not: after a switch back to
    the rung's size, a piece without parameter sets in band would decode with the other size's."""
    if len({p.sized for p in pieces}) > 1:
        raise StageError(f"some pieces of {what} have sizes of their own and some do not: per-shot resolution "
                         "gives every piece its size")


PIECES = "pieces"
"""The folder, inside an encode folder, of the per-shot rungs' pieces (kept until the work folder goes)."""


def pieces_folder(out: Path) -> Path:
    """Where the pieces of the rung ``out`` are made: beside it."""
    return out.parent / PIECES


def finished_rendition(out: Path, width: int, height: int, target_kbps: int, keyframes: Sequence[int],
                       info: MediaInfo, codec: CodecName = "h264", *, half_rate: bool = False) -> Rendition | None:
    """The verified encode at ``out`` made by an earlier run, or None (absent, or not what is planned)."""
    if not out.is_file():
        return None
    try:
        rendition = _verified_rung(out, Rung(width=width, height=height, kbps=max(1, target_kbps)), keyframes,
                                   info, codec, half_rate=half_rate)
    except StageError as exc:
        log.warning("not reusing %s: %s", out, exc)
        return None
    return replace(rendition, target_kbps=target_kbps)


def encode_rung_per_shot(
    src: Path,
    info: MediaInfo,
    width: int,
    height: int,
    pieces: Sequence[ShotCrf],
    keyframes: Sequence[int],
    preset: str,
    out: Path,
    *,
    target_kbps: int = 0,
    reuse: bool = True,
    codec: CodecName = "h264",
    preroll: int = 0,
    jobs: int = 1,
    half_rate: bool = False,
) -> Rendition:
    """A rung encoded shot by shot, each at its own CRF, joined without re-encoding, then verified.

    The pieces (``encode_piece``) go ``jobs`` at once; the ingest flow runs the same two steps as
    tasks instead, so that the pieces of a rung spread over a cluster. ``half_rate``: every piece has
    the source's even frames only (see ``shot_encode_argv``). Pieces with sizes of their own
    (per-shot resolution) need them all, and ``width`` x ``height`` is then the largest of them.
    """
    check_tiling(pieces, info.video.frames, out.name)
    check_sizes(pieces, out.name)
    check_rung_size([p.size(width, height) for p in pieces], width, height, codec)   # before any encode
    finished = finished_rendition(out, width, height, target_kbps, keyframes, info, codec,
                                  half_rate=half_rate) if reuse else None
    if finished is not None:
        return finished
    folder = pieces_folder(out)
    files = [folder / piece_file_name(width, height, p, keyframes, preset, codec, preroll, half_rate) for p in pieces]
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        cpu = sum(pool.map(lambda p, f: encode_piece(src, info, width, height, p, keyframes, preset, f, codec=codec,
                                                     preroll=preroll, reuse=reuse, half_rate=half_rate),
                           pieces, files))
    rendition = join_pieces(files, info, width, height, keyframes, out, target_kbps=target_kbps, codec=codec,
                            half_rate=half_rate)
    for f in files:
        f.unlink(missing_ok=True)
    return replace(rendition, cpu_s=rendition.cpu_s + cpu)


def drop_leading_frames(path: Path, frames: int, out: Path) -> None:
    """Copy ``path`` without its first ``frames`` frames (a closed GOP of their own): packets only.

    The frame after them must be a keyframe. Timestamps move back by the dropped frames, so the
    copy starts at 0 as a fresh encode of the rest would.
    """
    with av.open(str(path)) as source:
        stream = source.streams.video[0]
        # (pts, dts, packet) in decode order; packets without timestamps are the demuxer's flush
        packets = [(p.pts, p.dts, p) for p in source.demux(stream) if p.size and p.pts is not None
                   and p.dts is not None]
        order = sorted(packets, key=lambda t: t[0])
        if len(order) <= frames or not order[frames][2].is_keyframe:
            raise StageError(f"{path.name}: frame {frames} is not a keyframe after the pre-roll; nothing to cut at")
        cut = order[frames][0]
        first_kept = next(i for i, t in enumerate(packets) if t[2] is order[frames][2])
        if any(pts < cut for pts, _, _ in packets[first_kept:]):
            raise StageError(f"{path.name}: a pre-roll frame is coded after the keyframe; the GOPs are not closed")
        with av.open(str(out), "w", format="mp4") as sink:
            copy = sink.add_stream_from_template(stream, opaque=True)
            for pts, dts, packet in packets:
                if pts >= cut:
                    packet.pts, packet.dts = pts - cut, dts - cut
                    packet.stream = copy
                    sink.mux(packet)


def _partial_name(out: Path) -> Path:
    """A name of this process and thread: two ingests of one source never write the same file."""
    return out.with_name(f"{out.stem}.partial-{os.getpid()}-{threading.get_ident()}{out.suffix}")


def read_keyframes(path: Path) -> tuple[int, list[int]]:
    """(frame count, frame indices of keyframes in presentation order), by demuxing only."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size and p.pts is not None]
    packets.sort()
    return len(packets), [i for i, (_, key) in enumerate(packets) if key]


def _kbps(path: Path, duration_s: float) -> float:
    return round(path.stat().st_size * 8 / 1000 / duration_s, 1) if duration_s > 0 else 0.0
