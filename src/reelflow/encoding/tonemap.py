"""The SDR fallback of an HDR source: tone-mapped once to an 8-bit BT.709 lossless intermediate.

zscale linearises the PQ or HLG picture (``sdr_white_nits`` becomes 1.0), converts BT.2020 to
BT.709 primaries in linear light, ffmpeg's ``tonemap`` compresses everything above SDR white with
the configured operator (``tonemap.operator``: hable by default), and zscale applies BT.709's
transfer and matrix. (libplacebo's BT.2390 would be the better operator, but it needs Vulkan and
fails to initialise on this machine's CPU.) The signal peak is given explicitly rather than left
to the filter, which loses the source's metadata once the frames are linear: PQ takes MaxCLL, else
the mastering display's peak, else ``pq_default_peak_nits``; HLG is rendered for ``hlg_peak_nits``.

A source taller than ``tonemap.max_height`` (1080) is scaled down first, in its own 10-bit YUV: the
fallback is H.264 and tops out at 1080p, and zscale and tonemap work in float RGB, so the curve at
full UHD size would cost several decodes. By default (``tonemap.method = "lut"``) the curve is not
computed per pixel at all: the chain is run once on an identity 3D LUT and the frames are looked
up in it (``tonemap_filter`` says how and why that is exact up to interpolation; the record names
the method). Costs: docs/benchmarks.md, "Picture conform".

The result is Ut Video (lossless, every frame a keyframe) in MOV, the same lossless intra-only
intermediate as the picture-conform step's 8-bit one, and the fastest of them to decode, which
matters because the SDR ladder is made from it exactly as from an SDR master (trials, hull,
encodes, VMAF against it), reading it many times. It lives in a content-addressed folder of the work
directory (source hash, operator settings, this module's code, the ffmpeg), gets its final name
only once its frame count, frame rate and colour tags are verified, and is reused by a re-run.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from reelflow.encoding.hdr import hdr_signal
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.errors import StageError
from reelflow.infra.hashing import config_digest
from reelflow.infra.settings import ToneMapConfig
from reelflow.infra.tools import ffmpeg_exe, run

log = logging.getLogger(__name__)

INTERMEDIATE = "sdr.mov"  # MOV: Matroska's millisecond clock would misread rates such as 59.94


@dataclass(frozen=True)
class ToneMapped:
    """The SDR intermediate of an HDR source, probed, and how it was made."""

    path: Path
    info: MediaInfo
    operator: str
    peak_nits: float
    filter: str
    method: str
    cpu_s: float = 0.0

    def describe(self) -> dict[str, object]:
        return {"operator": self.operator, "peak_nits": self.peak_nits, "method": self.method, "filter": self.filter,
                "size": f"{self.info.video.width}x{self.info.video.height}",
                "intermediate": "Ut Video 8-bit 4:2:0 BT.709 (lossless)", "cpu_s": round(self.cpu_s, 2)}


def peak_nits(info: MediaInfo, config: ToneMapConfig) -> float:
    """The brightest level the tone curve must fit into SDR, cd/m2."""
    signal = hdr_signal(info.video)
    if signal is None:
        raise StageError(f"{info.path.name} is SDR ({info.video.color_transfer}): nothing to tone-map")
    if signal.transfer == "arib-std-b67":
        return config.hlg_peak_nits
    if signal.content_light is not None and signal.content_light.max_cll > 0:
        return float(signal.content_light.max_cll)
    if signal.mastering_display is not None and signal.mastering_display.max_luminance > 0:
        return signal.mastering_display.max_luminance
    return config.pq_default_peak_nits


def _curve(info: MediaInfo, config: ToneMapConfig, source: str) -> list[str]:
    """The per-pixel tone map, from the source's non-linear signal to BT.709 R'G'B' (pure).

    ``source`` is what zscale must be told about its input beyond the transfer and primaries (the
    YUV matrix and range of a frame; nothing for the LUT's RGB grid).
    """
    peak = peak_nits(info, config) / config.sdr_white_nits   # in units of SDR white; StageError for SDR
    signal = hdr_signal(info.video)
    assert signal is not None
    op = [f"tonemap={config.operator}", f"desat={config.desat:g}", f"peak={peak:g}"]
    if config.param is not None:
        op.append(f"param={config.param:g}")
    return [
        # the source's own description, stated (a mistagged or untagged frame must not be guessed)
        f"zscale=tin={signal.transfer}:pin=bt2020{source}:t=linear:npl={config.sdr_white_nits:g}",  # SDR white = 1.0
        "format=gbrpf32le",                                         # float: nothing clips before the curve
        "zscale=p=bt709",                                           # gamut conversion in linear light
        "tonemap=" + ":".join(op).removeprefix("tonemap="),
    ]


def tonemap_filter(info: MediaInfo, config: ToneMapConfig) -> str:
    """The filter graph (``-filter_complex``) from the source's video stream to 8-bit BT.709 SDR, ``[sdr]`` (pure).

    ``direct``: every pixel through zscale and tonemap in float. ``lut``: the same chain is run once
    on an identity Hald CLUT (``haldclutsrc``: every R'G'B' of a level**2 grid, in 16 bits) inside
    the graph, and the frames, converted to full-range R'G'B' in float, are looked up in the result
    with tetrahedral interpolation (``haldclut``, first CLUT frame only). Every step of the chain is a
    function of one pixel's three values (tonemap scales a pixel by its own brightest component), so
    the LUT is the chain, sampled; tests/encoding/test_tonemap_lut.py bounds the difference on real masters.
    The main path is float because ``haldclut`` in this ffmpeg swaps the channels of planar integer
    RGB (packed RGB works but costs two more conversions), and the grid is built in 16-bit planar RGB
    and converted by zscale, not by ffmpeg's automatic float conversion, which is off by up to 2%.
    """
    size = intermediate_size(info, config)
    head = [
        "setpts=PTS-STARTPTS",
        # smaller first, in the source's 10-bit YUV (cheap), when the fallback needs fewer lines
        *([f"scale={size[0]}:{size[1]}:flags=area,setsar=1"] if size else []),   # box filter: cheaper than lanczos
    ]
    tail = [
        "format=yuv420p",
        # the HDR grading's metadata would follow the frames into the intermediate and from there
        # into the SDR encodes' SEI (x264 writes what the frames carry): an SDR picture has none
        "sidedata=mode=delete:type=MASTERING_DISPLAY_METADATA",
        "sidedata=mode=delete:type=CONTENT_LIGHT_LEVEL",
    ]
    src = f"[0:{info.video.index}]"
    if config.method == "direct":
        chain = [*head, *_curve(info, config, ":min=bt2020nc:rin=limited"),
                 "zscale=t=bt709:m=bt709:r=limited",                 # BT.709 transfer and matrix
                 *tail]
        return f"{src}{','.join(chain)}[sdr]"
    signal = hdr_signal(info.video)
    assert signal is not None
    grid = [
        f"haldclutsrc=level={config.lut_level}", "trim=end_frame=1",  # one identity CLUT frame
        "format=gbrp16le",
        # the grid's values are the source's R'G'B', full range
        f"setparams=color_primaries=bt2020:color_trc={signal.transfer}:colorspace=gbr:range=pc",
        *_curve(info, config, ""),
        "zscale=t=bt709",                                            # BT.709 R'G'B', full range, float
        "format=gbrpf32le",
    ]
    frames = [
        *head,
        "zscale=min=bt2020nc:rin=limited:r=full",                   # R'G'B' of the source, as the grid has it
        "format=gbrpf32le",
    ]
    out = [
        "haldclut=clut=first:interp=tetrahedral",
        # what the LUT made: BT.709 R'G'B', full range (the frame still carries the source's tags)
        "setparams=color_primaries=bt709:color_trc=bt709:colorspace=gbr:range=pc",
        "zscale=m=bt709:r=limited",                                  # BT.709 matrix, limited range
        *tail,
    ]
    return f"{','.join(grid)}[clut];{src}{','.join(frames)}[hdr];[hdr][clut]{','.join(out)}[sdr]"


def method_description(config: ToneMapConfig) -> str:
    """How the tone map was applied, in words for the record."""
    if config.method == "direct":
        return "direct: zscale and tonemap in float on every pixel"
    points = config.lut_level ** 2
    return (f"3D LUT: the zscale+tonemap chain sampled on a {points}x{points}x{points} R'G'B' grid (Hald CLUT level "
            f"{config.lut_level}), applied with tetrahedral interpolation")


def intermediate_size(info: MediaInfo, config: ToneMapConfig) -> tuple[int, int] | None:
    """The intermediate's size when it is smaller than the source (square pixels, display aspect)."""
    v = info.video
    if not config.max_height or v.height <= config.max_height:
        return None
    return max(2, round(config.max_height * v.dar / 2) * 2), config.max_height


def tonemap_argv(info: MediaInfo, config: ToneMapConfig, out: Path) -> list[str]:
    """ffmpeg argv writing the SDR intermediate (video only; audio is taken from the source)."""
    return [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-y",
        "-i", str(info.path),
        "-filter_complex", tonemap_filter(info, config),
        "-map", "[sdr]", "-an", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-fps_mode", "passthrough",                                 # every source frame, once
        "-c:v", "utvideo",                                          # lossless, intra only, fastest to read back
        "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-color_range", "tv",
        str(out),
    ]


def result_digest(info_sha: str, config: ToneMapConfig) -> str:
    """What the intermediate depends on: the source, the operator settings, this code and ffmpeg."""
    return config_digest(info_sha, config.model_dump(mode="json"), _code_digest(), Path(ffmpeg_exe()).name)


@functools.cache
def _code_digest() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:12]


def tonemap_source(info: MediaInfo, source_sha: str, config: ToneMapConfig, work: Path) -> ToneMapped:
    """The SDR intermediate of an HDR source in ``work/tonemap-<digest>/``: made once, verified, reused."""
    folder = work / f"tonemap-{result_digest(source_sha, config)}"
    out = folder / INTERMEDIATE
    chain = tonemap_filter(info, config)
    peak = peak_nits(info, config)
    if out.exists():
        try:
            return ToneMapped(out, _verified(out, info), config.operator, peak, chain, method_description(config))
        except StageError as exc:
            log.warning("not reusing %s: %s", out, exc)
    folder.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f"sdr.partial-{os.getpid()}-{threading.get_ident()}.mov")
    try:
        done = run(tonemap_argv(info, config, partial))
        made = _verified(partial, info)
        partial.replace(out)
    finally:
        partial.unlink(missing_ok=True)
    log.info("%s tone-mapped to SDR (%s, peak %g cd/m2, %s): %s; %.1f CPU s", info.path.name, config.operator, peak,
             config.method, out, done.cpu_s)
    return ToneMapped(out, dataclasses.replace(made, path=out), config.operator, peak, chain,
                      method_description(config), done.cpu_s)


def _verified(path: Path, source: MediaInfo) -> MediaInfo:
    """The intermediate, probed: every source frame at its rate, 8-bit, tagged BT.709; StageError otherwise."""
    made = probe(path)
    v = made.video
    if v.frames != source.video.frames:
        raise StageError(f"{path.name}: {v.frames} frames, the source has {source.video.frames}")
    if v.fps != source.video.fps:
        raise StageError(f"{path.name}: {v.fps} fps, the source has {source.video.fps}")
    if v.bit_depth != 8 or (v.color_primaries, v.color_transfer, v.color_matrix) != ("bt709", "bt709", "bt709"):
        raise StageError(f"{path.name}: {v.bit_depth}-bit {v.color_primaries}/{v.color_transfer}/{v.color_matrix}, "
                         "not 8-bit BT.709")
    if v.mastering_display is not None or v.content_light is not None:
        raise StageError(f"{path.name}: carries HDR mastering/content-light metadata into SDR")
    return made
