"""The video codecs a ladder can be encoded with, and their encoder options for joinable GOPs.

Every encode of a measured ladder (trials and final rungs) needs the same three things from its
encoder: a CRF, no keyframe but the forced ones (shot starts and the segment grid), and GOPs that
are closed and can be joined without re-encoding, each piece at its own CRF:

- H.264 (libx264): ``open-gop=0`` and ``stitchable=1``, which keeps the parameter sets the same
  whatever the CRF, so pieces join under one ``avc1`` sample entry.
- HEVC (libx265): ``no-open-gop`` and ``forced-idr`` (a forced keyframe is an IDR, not a CRA), and
  ``repeat-headers`` with the ``hev1`` sample entry: the parameter sets travel in band with every
  keyframe, so pieces whose PPS differ with the CRF still decode after the join.
- AV1 (SVT-AV1): scene-change detection off (``scd=0``); every keyframe is a key frame with its
  sequence header, which does not depend on the CRF. SVT-AV1 takes whole CRFs only (1-63): a
  planned CRF between two is rounded.

H.264 is what the fixed trial correction uses; HEVC and AV1 go through the same trials, hulls,
ladder, per-shot encodes and packaging, with their correction always measured on the title's
sample. The fixed ladder works for every codec (``fixed_args``: a target bitrate under a VBV cap).

An HDR source makes HDR renditions: ``codec_for(name, video)`` gives the codec with the source's
``HdrSignal`` (hdr.py), whose ``args`` add Main10 / 10-bit, the BT.2020 + PQ/HLG colour description
and HDR10's metadata, and whose ``pix_fmt`` is 10-bit. H.264 makes SDR only.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from reelflow.encoding import hdr as hdr_options
from reelflow.encoding.hdr import HdrSignal
from reelflow.encoding.probe import VideoStream

CodecName = Literal["h264", "hevc", "av1"]


@dataclass(frozen=True)
class VideoCodec:
    """One codec's encoder, its CRF scale and presets, and what every reelflow encode asks of it."""

    name: CodecName
    encoder: str                          # ffmpeg encoder
    max_crf: int
    whole_crf: bool                       # the encoder takes whole CRFs only
    presets: tuple[str, ...]              # slowest last
    final_preset: str                     # defaults: the final encodes ...
    trial_preset: str                     # ... and the trials
    trial_params: str                     # encoder options the trials add (x264: medium's mbtree/lookahead)
    trial_crfs: tuple[int, ...]           # CRF probes of every shot, about the same qualities for each codec
    hdr: HdrSignal | None = None          # an HDR rendition's signal (codec_for); None: SDR, 8-bit

    @property
    def pix_fmt(self) -> str:
        """The pixel format the scale chain ends in."""
        return hdr_options.pix_fmt(self.hdr)

    def with_hdr(self, signal: HdrSignal | None) -> VideoCodec:
        if signal is not None and self.name == "h264":
            raise ValueError("H.264 renditions are SDR only here: HDR ladders are hevc or av1")
        return replace(self, hdr=signal)

    def _hdr_params(self) -> list[str]:
        if self.hdr is None:
            return []
        return hdr_options.x265_params(self.hdr) if self.name == "hevc" else hdr_options.svtav1_params(self.hdr)

    @property
    def join_args(self) -> list[str]:
        """Output options of the join (stream copy) that keep the pieces' parameter sets usable."""
        return ["-tag:v", "hev1"] if self.name == "hevc" else []

    def crf(self, value: float) -> str:
        """The CRF as the encoder takes it."""
        value = min(float(self.max_crf), max(0.0, value))
        return str(round(value)) if self.whole_crf else f"{value:.2f}".rstrip("0").rstrip(".")

    def args(self, preset: str, crf: float, gop: int, *, threads: int | None = None, params: str = "",
             final: bool = True) -> list[str]:
        """ffmpeg output options: encoder, preset, CRF, no keyframe but forced ones (``gop`` frames at
        most), closed GOPs that join. ``threads`` pins the encoder to that many threads (trials: 1,
        so each process's CPU time is its own); ``final`` adds the delivery profile and sample entry."""
        if self.name == "h264":
            out = ["-c:v", "libx264", "-preset", preset]
            if final:
                out += ["-profile:v", "high"]      # trials let x264 pick (High; CRF 0 would stay lossless)
            out += ["-crf", self.crf(crf)]
            if threads is not None:
                out += ["-threads", str(threads)]  # x264 threads (and lookahead)
            out += ["-g", str(gop), "-keyint_min", "1",
                    "-x264-params", ":".join(filter(None, ["scenecut=0:open-gop=0:stitchable=1", params]))]
            return out
        if self.name == "hevc":
            x265 = [f"keyint={gop}", "min-keyint=1", "scenecut=0", "no-open-gop=1", "repeat-headers=1",
                    "log-level=error"]
            if threads is not None:
                x265 += [f"pools={threads}", "frame-threads=1"]
            return ["-c:v", "libx265", "-preset", preset, *self._profile(), "-crf", self.crf(crf),
                    "-forced-idr", "1", "-x265-params", ":".join(filter(None, [*x265, *self._hdr_params(), params])),
                    *(self.join_args if final else [])]
        svt = ["scd=0"]
        if threads is not None:
            svt += [f"lp={threads}"]
        return ["-c:v", "libsvtav1", "-preset", preset, "-crf", self.crf(crf), "-g", str(gop),
                "-svtav1-params", ":".join(filter(None, [*svt, *self._hdr_params(), params]))]

    def _profile(self) -> list[str]:
        """HEVC Main10 for HDR (10 bits); x265 picks Main for 8-bit input."""
        return ["-profile:v", "main10"] if self.name == "hevc" and self.hdr is not None else []

    def fixed_args(self, preset: str, kbps: int, maxrate_kbps: int, bufsize_kbits: int, gop: int) -> list[str]:
        """ffmpeg output options of a fixed-ladder rung: a target bitrate capped by a VBV, no keyframe
        but forced ones, closed GOPs. One encode per rung (no join), so HEVC parameter sets stay in the
        sample entry (``hvc1``, what Apple's HLS asks for)."""
        rate = ["-b:v", f"{kbps}k", "-maxrate", f"{maxrate_kbps}k", "-bufsize", f"{bufsize_kbits}k"]
        if self.name == "h264":
            return ["-c:v", "libx264", "-preset", preset, "-profile:v", "high", *rate,
                    "-g", str(gop), "-keyint_min", "1",
                    "-x264-params", "scenecut=0:open-gop=0"]     # keyframes only where forced; closed GOPs
        if self.name == "hevc":
            x265 = [f"keyint={gop}", "min-keyint=1", "scenecut=0", "no-open-gop=1", "log-level=error"]
            return ["-c:v", "libx265", "-preset", preset, *self._profile(), *rate, "-forced-idr", "1",
                    "-x265-params", ":".join([*x265, *self._hdr_params()]), "-tag:v", "hvc1"]
        # SVT-AV1's VBR (what -b:v selects); it takes a maximum rate only in CRF mode, so no VBV cap here
        return ["-c:v", "libsvtav1", "-preset", preset, "-b:v", f"{kbps}k", "-g", str(gop),
                "-svtav1-params", ":".join(["scd=0", *self._hdr_params()])]


X264_PRESETS = ("placebo", "veryslow", "slower", "slow", "medium", "fast", "faster", "veryfast", "superfast",
                "ultrafast")[::-1]

CODECS: dict[CodecName, VideoCodec] = {
    "h264": VideoCodec(name="h264", encoder="libx264", max_crf=51, whole_crf=False, presets=X264_PRESETS,
                       final_preset="medium", trial_preset="superfast", trial_params="mbtree=1:rc-lookahead=40",
                       trial_crfs=(20, 27, 34)),
    # The same CRF probes as x264: at 23, x265 stays under VMAF 93 at 360p on Caminandes.
    "hevc": VideoCodec(name="hevc", encoder="libx265", max_crf=51, whole_crf=False, presets=X264_PRESETS,
                       final_preset="medium", trial_preset="ultrafast", trial_params="",
                       trial_crfs=(20, 27, 34)),
    # SVT-AV1's CRF scale runs to 63; presets 0 (slowest) to 13.
    "av1": VideoCodec(name="av1", encoder="libsvtav1", max_crf=63, whole_crf=True,
                      presets=tuple(str(p) for p in range(13, -1, -1)), final_preset="8", trial_preset="12",
                      trial_params="", trial_crfs=(28, 38, 48)),
}


def codec_for(name: str, video: VideoStream) -> VideoCodec:
    """The codec called ``name`` for renditions of ``video``: HDR (10-bit, its signal) when the source is.

    ValueError for H.264 on an HDR source: its SDR ladder is made from the tone-mapped intermediate.
    """
    return codec(name).with_hdr(hdr_options.hdr_signal(video))


def codec(name: str) -> VideoCodec:
    """The codec called ``name``; KeyError names the ones there are."""
    try:
        return CODECS[name]  # type: ignore[index]
    except KeyError:
        raise KeyError(f"unknown video codec {name!r}; one of {', '.join(CODECS)}") from None
