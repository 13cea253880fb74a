"""HDR10 and HLG renditions: what the encoders are told so the bitstream says what the picture is.

An HDR rung is 10-bit 4:2:0 with BT.2020 primaries, a PQ (SMPTE ST 2084) or HLG (ARIB STD-B67)
transfer and the BT.2020 non-constant-luminance matrix, written into the bitstream's own colour
description (HEVC VUI, AV1 sequence header) rather than only into container tags, because that is
what a decoder and the packager read. HDR10 also carries the grading's mastering display (SMPTE ST
2086) and content light level (CTA-861.3): HEVC as SEI messages, AV1 as metadata OBUs. HLG is
scene-referred and needs neither. H.264 is never used for HDR here: HDR devices decode HEVC or AV1.

The range of a ladder follows its source: the HDR master gives an HDR ladder, the tone-mapped
intermediate (tonemap.py) an SDR one, so every argv builder asks ``hdr_signal(video)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Literal

from reelflow.encoding.probe import ContentLight, MasteringDisplay, VideoStream

if TYPE_CHECKING:   # settings imports codecs, which imports this module
    from reelflow.infra.settings import Settings

Transfer = Literal["smpte2084", "arib-std-b67"]
VideoRange = Literal["sdr", "pq", "hlg"]

# H.273 code points, which SVT-AV1 takes as numbers.
_H273_PRIMARIES_BT2020 = 9
_H273_TRANSFER = {"smpte2084": 16, "arib-std-b67": 18}
_H273_MATRIX_BT2020NC = 9

HDR_PIX_FMT = "yuv420p10le"
SDR_PIX_FMT = "yuv420p"


@dataclass(frozen=True)
class HdrSignal:
    """What an HDR rendition declares: its transfer and, for HDR10, the grading's metadata."""

    transfer: Transfer
    mastering_display: MasteringDisplay | None = None
    content_light: ContentLight | None = None

    @property
    def range(self) -> VideoRange:
        """The HLS VIDEO-RANGE / playback name: pq or hlg."""
        return "pq" if self.transfer == "smpte2084" else "hlg"

    @property
    def cicp_transfer(self) -> int:
        return _H273_TRANSFER[self.transfer]


def hdr_signal(video: VideoStream) -> HdrSignal | None:
    """The HDR signal of a source's video, or None for SDR. Metadata is kept for PQ only."""
    if video.color_transfer == "smpte2084":
        return HdrSignal("smpte2084", video.mastering_display, video.content_light)
    if video.color_transfer == "arib-std-b67":
        return HdrSignal("arib-std-b67")
    return None


def video_range(video: VideoStream) -> VideoRange:
    signal = hdr_signal(video)
    return "sdr" if signal is None else signal.range


def pix_fmt(signal: HdrSignal | None) -> str:
    """The pixel format the scale chain ends in: PQ and HLG need 10 bits (8 would band)."""
    return SDR_PIX_FMT if signal is None else HDR_PIX_FMT


def _chroma_50000(value: float) -> int:
    """A CIE xy coordinate in ST 2086's units of 0.00002."""
    return round(value * 50000)


def x265_master_display(md: MasteringDisplay) -> str:
    """x265's ``master-display``: G, B, R, white point in 0.00002 units; L(max, min) in 0.0001 cd/m2."""
    def xy(point: tuple[float, float]) -> str:
        return f"({_chroma_50000(point[0])},{_chroma_50000(point[1])})"

    return (f"G{xy(md.green)}B{xy(md.blue)}R{xy(md.red)}WP{xy(md.white_point)}"
            f"L({round(md.max_luminance * 10000)},{round(md.min_luminance * 10000)})")


def svtav1_mastering_display(md: MasteringDisplay) -> str:
    """SVT-AV1's ``mastering-display``: the same order as x265's, in plain chromaticities and cd/m2."""
    def xy(point: tuple[float, float]) -> str:
        return f"({point[0]:.4f},{point[1]:.4f})"

    return (f"G{xy(md.green)}B{xy(md.blue)}R{xy(md.red)}WP{xy(md.white_point)}"
            f"L({md.max_luminance:.4f},{md.min_luminance:.4f})")


def x265_params(signal: HdrSignal) -> list[str]:
    """x265 options of an HDR rendition (joined with ':' into -x265-params)."""
    params = [
        "colorprim=bt2020", f"transfer={signal.transfer}", "colormatrix=bt2020nc",  # VUI: what the picture is
        "range=limited",
    ]
    if signal.transfer == "smpte2084":
        params += ["hdr10=1",            # HDR10 SEI (mastering display, content light) are written
                   "hdr10-opt=1"]        # x265's block-level QP tuning for PQ's code-value distribution
        if signal.mastering_display is not None:
            params.append(f"master-display={x265_master_display(signal.mastering_display)}")
        if signal.content_light is not None:
            params.append(f"max-cll={signal.content_light.max_cll},{signal.content_light.max_fall}")
    return params


def svtav1_params(signal: HdrSignal) -> list[str]:
    """SVT-AV1 options of an HDR rendition (joined with ':' into -svtav1-params)."""
    params = [
        f"color-primaries={_H273_PRIMARIES_BT2020}",           # sequence header colour config
        f"transfer-characteristics={signal.cicp_transfer}",
        f"matrix-coefficients={_H273_MATRIX_BT2020NC}",
        "color-range=0",                                       # limited (studio) range
    ]
    if signal.transfer == "smpte2084":
        if signal.mastering_display is not None:
            params.append(f"mastering-display={svtav1_mastering_display(signal.mastering_display)}")
        if signal.content_light is not None:
            params.append(f"content-light={signal.content_light.max_cll},{signal.content_light.max_fall}")
    return params


def color_args(signal: HdrSignal) -> list[str]:
    """ffmpeg's own colour tags of an HDR rendition: the container's colr box follows them."""
    return ["-color_primaries", "bt2020", "-color_trc", signal.transfer, "-colorspace", "bt2020nc",
            "-color_range", "tv"]


# --- the ladders of a title: their ranges follow the source ------------------------------------

@dataclass(frozen=True)
class LadderSpec:
    """One ladder of a title: its codec, its range, and whether its source is the tone-mapped intermediate."""

    codec: Literal["h264", "hevc", "av1"]
    range: VideoRange
    tonemapped: bool = False
    multi: bool = False          # the title has several ladders: rendition names carry the ladder's

    @property
    def name(self) -> str:
        return self.codec if self.range == "sdr" else f"{self.codec}_hdr"


def ladder_specs(video: VideoStream, settings: Settings) -> list[LadderSpec]:
    """The title's ladders: for an HDR source one per ``encode.hdr_codecs`` in its range, then the SDR
    fallback per ``encode.codecs`` from its tone-mapped intermediate; for an SDR source one per codec."""
    sdr = settings.encode.sdr_codecs
    if not video.hdr:
        return [LadderSpec(c, "sdr", multi=len(sdr) > 1) for c in sdr]
    rng = video_range(video)
    specs = [LadderSpec(c, rng) for c in settings.encode.hdr_codecs] + [LadderSpec(c, "sdr", True) for c in sdr]
    return [replace(sp, multi=True) for sp in specs]
