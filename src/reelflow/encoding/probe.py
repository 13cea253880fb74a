"""Probe a source in-process with PyAV: streams, exact frame rate, size, aspect, colour, audio."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import struct
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.sidedata.sidedata import Type as SideDataType

from reelflow.errors import InvalidMedia, SourceNotFound

log = logging.getLogger(__name__)

# FFmpeg's AVColorPrimaries / AVColorTransferCharacteristic / AVColorSpace / AVColorRange codes,
# named as ffprobe names them. Unspecified (2) is None.
_PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
              9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
_TRANSFER = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m", 8: "linear",
             11: "iec61966-2-4", 13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12",
             16: "smpte2084", 17: "smpte428", 18: "arib-std-b67"}
_MATRIX = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
           8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 14: "ictcp"}
_RANGE = {1: "tv", 2: "pc"}


@dataclass(frozen=True)
class MasteringDisplay:
    """SMPTE ST 2086 mastering display: CIE 1931 xy chromaticities and luminance in cd/m2."""

    red: tuple[float, float]
    green: tuple[float, float]
    blue: tuple[float, float]
    white_point: tuple[float, float]
    min_luminance: float
    max_luminance: float


@dataclass(frozen=True)
class ContentLight:
    """CTA-861.3 content light level, cd/m2: brightest pixel and brightest frame average."""

    max_cll: int
    max_fall: int


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int
    height: int
    fps: Fraction                 # exact, e.g. 30000/1001
    frames: int                   # counted by demuxing when the container does not say
    duration_s: float
    start_s: float
    pix_fmt: str | None
    sar: Fraction                 # sample (pixel) aspect ratio; 1 when unspecified
    dar: Fraction                 # display aspect ratio = width * sar / height
    color_primaries: str | None   # None = unspecified
    color_transfer: str | None
    color_matrix: str | None
    color_range: str | None
    field_order: str | None
    bit_depth: int
    variable_rate: bool = False   # frame intervals vary (VFR, or dropped/doubled frames)
    # HDR side data of the first decoded frame (HEVC SEI, AV1 OBU, or the container's mdcv/clli
    # boxes, which the decoder attaches to frames); None when the source carries none.
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None
    dolby_vision: bool = False    # a DOVI configuration record or RPU: only its base layer is used
    # Conform (encoding/conform.py) fields:
    rotation: int = 0             # display matrix: degrees counter-clockwise the picture is shown turned (0/90/180/270)
    mirrored: bool = False        # the display matrix also flips the picture (a negative determinant)
    display_matrix: tuple[int, ...] = ()   # its nine 16.16/2.30 fixed-point entries, when it has one
    alpha: bool = False           # the pixel format carries an alpha plane (dropped by the ladder)
    timecode: str | None = None   # the start timecode the container or stream declares (SMPTE HH:MM:SS:FF)
    nominal_fps: Fraction | None = None  # 1 / the median frame interval: the rate a VFR clip was shot at

    @property
    def display_width(self) -> int:
        """Width at square pixels, rounded to even (what a player shows)."""
        return round(self.width * self.sar / 2) * 2

    @property
    def hdr(self) -> bool:
        return self.color_transfer in ("smpte2084", "arib-std-b67")

    @property
    def transposed(self) -> bool:
        """Whether the display matrix turns the picture by a quarter turn (width and height swap)."""
        return self.rotation in (90, 270)


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    channels: int
    layout: str
    sample_rate: int
    duration_s: float
    start_s: float
    language: str | None
    title: str | None = None        # the stream's title tag, or a MOV handler name that is not the muxer's
    # disposition flags the audio planner reads a role from: visual_impaired, comment, dub, default...
    dispositions: tuple[str, ...] = ()


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    size_bytes: int
    duration_s: float
    bit_rate: int | None
    video: VideoStream
    audio: tuple[AudioStream, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict; Fractions as "num/den" strings and floats alongside."""
        out = asdict(self)
        out["path"] = str(self.path)
        video = out["video"]
        for key in ("fps", "sar", "dar", "nominal_fps"):
            value: Fraction | None = getattr(self.video, key)
            video[key] = None if value is None else f"{value.numerator}/{value.denominator}"
        video["display_matrix"] = list(self.video.display_matrix)
        video["fps_float"] = float(self.video.fps)
        video["display_width"] = self.video.display_width
        video["hdr"] = self.video.hdr
        out["audio"] = [asdict(a) for a in self.audio]
        return out


def probe(path: Path | str) -> MediaInfo:
    """Describe the source's first video stream and its audio streams; InvalidMedia if unusable."""
    path = Path(path)
    if not path.exists():
        raise SourceNotFound(path, "no such file", "check the path")
    if not path.is_file():
        raise SourceNotFound(path, "not a regular file", "give the path of a media file")
    size = path.stat().st_size
    if size == 0:
        raise InvalidMedia(path, "the file is empty (0 bytes)", "re-deliver the file")
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except av.error.FFmpegError as exc:
        raise InvalidMedia(path, f"not a media file ffmpeg can read ({exc.strerror or exc})",
                           "check that the upload completed and the file is a video") from exc
    with container:
        # Cover art and thumbnails are video streams too; the programme is the largest moving one.
        vstreams = [s for s in container.streams.video
                    if s.codec_context.width and not s.disposition & av.stream.Disposition.attached_pic]
        if not vstreams:
            raise InvalidMedia(path, "has no video stream", "deliver a file with a video track")
        vs = max(vstreams, key=lambda s: (s.codec_context.width * s.codec_context.height, -s.index))
        audio_streams = list(container.streams.audio)
        streams = _demux_all(container, path)
        seen = streams.get(vs.index, _Demuxed())
        if seen.shown == 0:
            raise InvalidMedia(path, "the video stream holds no frames (truncated?)", "re-deliver the file")
        if vs.frames and seen.packets < vs.frames:
            raise InvalidMedia(path, f"is truncated: its header declares {vs.frames} video frames but only "
                               f"{seen.packets} are present", "re-deliver the complete file")
        video = dataclasses.replace(_video_stream(vs, seen, timecode=_timecode(container, vs)),
                                    **_hdr_side_data(path, vs.index, vs.codec_tag))
        audio = tuple(_audio_stream(a, streams.get(a.index, _Demuxed())) for a in audio_streams)
        duration = container.duration / av.time_base if container.duration else video.duration_s
        info = MediaInfo(
            path=path,
            format_name=container.format.name,
            size_bytes=size,
            duration_s=round(float(duration), 6),
            bit_rate=container.bit_rate or None,
            video=video,
            audio=audio,
        )
    # The display matrix is stream side data that PyAV hands out on decoded frames only; only the
    # ISO/QuickTime and Matroska families carry one, so other files skip the one-frame decode.
    can_rotate = any(name in info.format_name for name in ("mov", "mp4", "matroska"))
    matrix = _display_matrix(path, video.index) if can_rotate else ()
    if not matrix or matrix[:2] + matrix[3:5] == (65536, 0, 0, 65536):
        return info       # none, or the identity
    return dataclasses.replace(info, video=dataclasses.replace(
        info.video, rotation=display_rotation(matrix), mirrored=matrix[0] * matrix[4] - matrix[1] * matrix[3] < 0,
        display_matrix=matrix))


@dataclass
class _Demuxed:
    """What demuxing one stream showed."""

    packets: int = 0             # every packet, as a header counts them
    shown: int = 0               # packets a player presents: edit-list preroll ("discard") excluded
    first: float | None = None   # earliest presented time, seconds
    end: float | None = None     # latest presented time + duration, seconds
    stamps: list[int] = field(default_factory=list)   # presented pts (video only), for VFR detection


def _demux_all(container: Any, path: Path) -> dict[int, _Demuxed]:
    """Per stream: packets, presented frames and times, by demuxing (cheap: no decode).

    Reading to the end also proves the file is complete: a cut-off file fails here or comes up
    short of what its header declares. Packets marked discard are the preroll that an MP4 edit
    list tells players to decode but not show (a stream-copy trim makes them): they are not
    frames of the programme.
    """
    streams: dict[int, _Demuxed] = {}
    try:
        for packet in container.demux():
            if packet.size == 0 or (packet.pts is None and packet.dts is None):
                continue  # flush packets at the end of each stream
            seen = streams.setdefault(packet.stream.index, _Demuxed())
            seen.packets += 1
            if packet.is_discard:
                continue
            seen.shown += 1
            stamp = packet.pts if packet.pts is not None else packet.dts
            if packet.stream.type == "video":
                seen.stamps.append(stamp)
            if packet.time_base is not None:
                start = float(stamp * packet.time_base)
                end = float((stamp + (packet.duration or 0)) * packet.time_base)
                seen.first = start if seen.first is None else min(seen.first, start)
                seen.end = end if seen.end is None else max(seen.end, end)
    except av.error.FFmpegError as exc:
        raise InvalidMedia(path, f"cannot be read to its end ({exc.strerror or exc})",
                           "the file looks truncated or damaged; re-deliver it") from exc
    return streams


def is_variable_rate(stamps: list[int]) -> bool:
    """Whether frame intervals vary beyond timestamp rounding (a dropped or doubled frame counts).

    Containers with millisecond clocks (WebM) alternate 41/42 ms at 24 fps: that is constant
    rate. An interval off the median by more than a quarter is not rounding.
    """
    if len(stamps) < 3:
        return False
    ordered = sorted(stamps)
    intervals = [b - a for a, b in itertools.pairwise(ordered)]
    median = sorted(intervals)[len(intervals) // 2]
    if median <= 0:
        return True
    odd = sum(1 for d in intervals if abs(d - median) > 0.25 * median)
    return odd > 0


def nominal_rate(stamps: list[int], time_base: Fraction | None) -> Fraction | None:
    """1 / the median frame interval: what a VFR clip's frames mostly are, jitter and gaps aside."""
    if len(stamps) < 2 or not time_base:
        return None
    ordered = sorted(stamps)
    intervals = sorted(b - a for a, b in itertools.pairwise(ordered))
    median = intervals[len(intervals) // 2]
    if median <= 0:
        return None
    return (1 / (median * time_base)).limit_denominator(1001 * 1000)


def _display_matrix(path: Path, index: int) -> tuple[int, ...]:
    """The display matrix of stream ``index`` (nine int32 entries), or () when none or unreadable.

    Read off the first decoded frame: PyAV exposes no stream-level side data.
    """
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = container.streams[index]
            for frame in container.decode(stream):
                kind = SideDataType.DISPLAYMATRIX
                if not isinstance(frame, av.VideoFrame) or kind not in frame.side_data:
                    return ()
                data = bytes(memoryview(frame.side_data[kind]))
                return tuple(struct.unpack("<9i", data[:36])) if len(data) >= 36 else ()
    except (av.error.FFmpegError, IndexError, ValueError, TypeError):
        return ()  # probe already proved the file reads; a decoder complaint here is QC's to report
    return ()


def display_rotation(matrix: tuple[int, ...]) -> int:
    """Quarter turns counter-clockwise the matrix shows the picture turned (ffmpeg's av_display_rotation_get,
    rounded to 0/90/180/270: phones write nothing else); a flip in the matrix is ``mirrored``."""
    scale_x = math.hypot(matrix[0], matrix[3])
    scale_y = math.hypot(matrix[1], matrix[4])
    if scale_x == 0 or scale_y == 0:
        return 0
    degrees = math.degrees(math.atan2(matrix[1] / scale_y, matrix[0] / scale_x))
    return round(-degrees / 90.0) % 4 * 90


def _timecode(container: Any, vs: Any) -> str | None:
    """The start timecode: the video stream's tag, the container's (MXF), or a tmcd data track's (MOV)."""
    for tags in (vs.metadata, container.metadata, *(s.metadata for s in container.streams if s.type == "data")):
        value = tags.get("timecode")
        if value:
            return str(value)
    return None


def _has_alpha(fmt: Any) -> bool:
    name = str(getattr(fmt, "name", "") or "")
    return bool(getattr(fmt, "has_alpha", False)) or name.startswith(("yuva", "rgba", "bgra", "argb", "abgr",
                                                                       "gbrap", "ya"))


def _video_stream(vs: Any, seen: _Demuxed, *, timecode: str | None = None) -> VideoStream:
    cc = vs.codec_context
    rate = vs.average_rate or vs.base_rate or vs.guessed_rate
    if not rate:
        raise InvalidMedia(Path(vs.container.name), "video stream has no frame rate", "re-mux the file")
    fps = Fraction(rate).limit_denominator(1001 * 1000)
    frames = seen.shown
    # What a player presents (edit lists applied) wins over the header's figures.
    if seen.first is not None:
        start = seen.first
    else:
        start = float(vs.start_time * vs.time_base) if vs.start_time is not None else 0.0
    if seen.end is not None and seen.first is not None:
        duration = seen.end - seen.first
    elif vs.duration:
        duration = float(vs.duration * vs.time_base)
    else:
        duration = float(frames / fps)
    sar = Fraction(cc.sample_aspect_ratio) if cc.sample_aspect_ratio else Fraction(1)
    dar = Fraction(cc.width, cc.height) * sar
    fmt = cc.format
    bit_depth = 8
    if fmt is not None and fmt.components:
        bit_depth = max(c.bits for c in fmt.components)
    return VideoStream(
        index=vs.index,
        codec=cc.name,
        width=cc.width,
        height=cc.height,
        fps=fps,
        frames=frames,
        duration_s=round(duration, 6),
        start_s=round(start, 6),
        pix_fmt=cc.pix_fmt,
        sar=sar,
        dar=dar,
        color_primaries=_PRIMARIES.get(int(cc.color_primaries)),
        color_transfer=_TRANSFER.get(int(cc.color_trc)),
        color_matrix=_MATRIX.get(int(cc.colorspace)),
        color_range=_RANGE.get(int(cc.color_range)),
        field_order=_field_order(cc),
        bit_depth=bit_depth,
        variable_rate=is_variable_rate(seen.stamps),
        alpha=fmt is not None and _has_alpha(fmt),
        timecode=timecode,
        nominal_fps=nominal_rate(seen.stamps, Fraction(vs.time_base) if vs.time_base else None),
    )


# AVMasteringDisplayMetadata: display_primaries[3][2] (R, G, B; x, y), white_point[2], min_luminance,
# max_luminance, all AVRational (int num, int den), then has_primaries, has_luminance.
_MDCV = struct.Struct("=20i2i")
_CLL = struct.Struct("=2I")  # AVContentLightMetadata: MaxCLL, MaxFALL
# MP4 sample entries of Dolby Vision streams (a DV-only track, or one whose base layer is HEVC/AVC/AV1).
_DOVI_TAGS = {"dvh1", "dvhe", "dva1", "dvav", "dav1"}


def mastering_display_from_bytes(data: bytes) -> MasteringDisplay | None:
    """FFmpeg's mastering-display side data as values; None without primaries or luminance."""
    if len(data) < _MDCV.size:
        return None
    v = _MDCV.unpack_from(data)

    def q(num: int, den: int) -> float:
        return num / den if den else 0.0

    if not (v[20] and v[21]):
        return None
    xy = [(q(v[4 * i], v[4 * i + 1]), q(v[4 * i + 2], v[4 * i + 3])) for i in range(4)]
    return MasteringDisplay(red=xy[0], green=xy[1], blue=xy[2], white_point=xy[3],
                            min_luminance=q(v[16], v[17]), max_luminance=q(v[18], v[19]))


def _hdr_side_data(path: Path, index: int, codec_tag: str | None) -> dict[str, Any]:
    """Mastering display, content light level and Dolby Vision, from the first decoded frame.

    Decoding one frame is the one way that sees all of them: HEVC and AV1 carry them in the
    bitstream (SEI, metadata OBUs), MP4/MKV in boxes the decoder attaches to each frame, and Dolby
    Vision's RPU arrives as frame side data. A source that cannot decode here says so in QC.
    """
    found: dict[str, Any] = {"dolby_vision": (codec_tag or "").lower() in _DOVI_TAGS}
    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            stream = next(s for s in container.streams.video if s.index == index)
            frame = next(container.decode(stream), None)
    except (av.error.FFmpegError, StopIteration) as exc:
        log.warning("%s: no first frame to read HDR metadata from (%s)", path, exc)
        return found
    if frame is None:
        return found
    for kind in frame.side_data:
        name = getattr(kind, "name", str(kind))
        entry = frame.side_data.get(kind)
        if entry is None:
            continue
        data = bytes(entry)
        if name == "MASTERING_DISPLAY_METADATA":
            found["mastering_display"] = mastering_display_from_bytes(data)
        elif name == "CONTENT_LIGHT_LEVEL" and len(data) >= _CLL.size:
            cll, fall = _CLL.unpack_from(data)
            found["content_light"] = ContentLight(max_cll=cll, max_fall=fall)
        elif name.startswith("DOVI"):
            found["dolby_vision"] = True
    return found


# AVFieldOrder codes; "tt" = top field first, coded and displayed, and so on.
_FIELD_ORDER = {1: "progressive", 2: "tt", 3: "bb", 4: "tb", 5: "bt"}


def _field_order(cc: Any) -> str | None:
    value = getattr(cc, "field_order", None)
    if isinstance(value, int):
        return _FIELD_ORDER.get(value)
    if value is None:
        return None
    name = str(getattr(value, "name", value)).lower()
    return None if name in ("unknown", "0") else name


def _audio_stream(a: Any, seen: _Demuxed) -> AudioStream:
    cc = a.codec_context
    last_end = seen.end
    start = float(a.start_time * a.time_base) if a.start_time is not None else 0.0
    duration = 0.0
    if a.duration:
        duration = float(a.duration * a.time_base)
    elif last_end is not None:  # Matroska/WebM declare no per-stream duration
        duration = last_end - start
    return AudioStream(
        index=a.index,
        codec=cc.name,
        channels=cc.layout.nb_channels,
        layout=cc.layout.name,
        sample_rate=cc.sample_rate,
        duration_s=round(duration, 6),
        start_s=round(start, 6),
        language=_language_tag(a.metadata.get("language")),
        title=_audio_title(a.metadata),
        dispositions=_dispositions(a),
    )


# Handler names muxers write on every track: they say nothing about the track.
_GENERIC_HANDLERS = ("soundhandler", "sound media handler", "core media audio", "isomedia", "apple sound media")


def _language_tag(value: str | None) -> str | None:
    """A container's language tag; ``und`` (and empty) mean untagged."""
    value = (value or "").strip()
    return None if value.lower() in ("", "und") else value


def _audio_title(metadata: Any) -> str | None:
    for key in ("title", "handler_name"):
        value = str(metadata.get(key) or "").strip()
        if value and value.lower() not in _GENERIC_HANDLERS:
            return value
    return None


_AUDIO_DISPOSITIONS = ("default", "dub", "original", "comment", "visual_impaired", "hearing_impaired",
                       "descriptions")


def _dispositions(a: Any) -> tuple[str, ...]:
    flags = a.disposition
    return tuple(name for name in _AUDIO_DISPOSITIONS
                 if (bit := getattr(av.stream.Disposition, name, None)) is not None and flags & bit)
