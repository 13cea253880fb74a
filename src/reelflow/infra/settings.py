"""Typed configuration: one frozen model per stage, composed into Settings.

Values come from, in order of precedence: keyword arguments, ``REELFLOW_*`` environment
variables (nested with ``__``, e.g. ``REELFLOW_ENCODE__PRESET=veryfast``), a TOML file
(``--config`` or ``REELFLOW_CONFIG``), then these defaults. Unknown keys are refused so a typo
never silently falls back to a default.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from reelflow.encoding.codecs import CODECS, CodecName
from reelflow.errors import ConfigError
from reelflow.infra.home import HOME_ENV, home_path

Severity = Literal["error", "warning", "info"]
ProtectionScheme = Literal["cenc", "cbcs"]
ProtectionSystem = Literal["Widevine", "PlayReady", "FairPlay", "CommonSystem"]


class _Config(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class QCConfig(_Config):
    """Thresholds and severities of the QC checks (encoding/qc.py); docs/benchmarks.md has the why."""

    # Runs (black, frozen, silent) that touch the head or tail are leaders, fades, slates and end
    # boards, so they only inform; a run in the middle of the programme is what a viewer would see.
    edge_window_s: float = Field(0.5, ge=0, description="A run this close to the start or end is head/tail.")
    edge_severity: Severity = "info"
    whole_ratio: float = Field(0.9, gt=0, le=1, description="Runs covering this share of the programme "
                               "mean the whole programme is black/frozen/silent.")
    black_min_s: float = Field(2.0, gt=0, description="Report black segments at least this long.")
    black_pixel_threshold: float = Field(0.10, description="Luma below this share of range is black.")
    black_picture_ratio: float = Field(0.98, description="Share of black pixels for a black picture.")
    black_severity: Severity = "warning"
    black_whole_severity: Severity = Field("error", description="A source that is all black is a wrong file.")
    freeze_min_s: float = Field(3.0, gt=0, description="Report frozen segments at least this long.")
    freeze_noise_db: float = Field(-60.0, description="Frame difference below this counts as frozen.")
    freeze_severity: Severity = "warning"
    audio_missing_severity: Severity = Field("warning", description="A source without any audio stream.")
    loudness_target_lufs: float = Field(-23.0, description="EBU R128 loudness the audio stage aims at.")
    loudness_min_lufs: float = Field(-35.0, description="Quieter needs so much gain that noise comes up.")
    loudness_max_lufs: float = Field(-10.0, description="Louder than any delivery spec: a crushed mix.")
    loudness_severity: Severity = "warning"
    loudness_range_max_lu: float = Field(20.0, description="LRA above this is a theatrical, not a home, mix.")
    loudness_range_severity: Severity = "info"
    true_peak_max_dbtp: float = Field(-1.0, description="EBU R128 maximum true peak.")
    true_peak_severity: Severity = "warning"
    silence_noise_db: float = Field(-60.0, description="Audio below this level counts as silence.")
    silence_min_s: float = Field(5.0, gt=0, description="Report silences at least this long.")
    silence_severity: Severity = "warning"
    channel_silent_db: float = Field(-60.0, description="A channel of a grouped layout whose peak stays below "
                                     "this is silent (a missing or mis-patched track).")
    channel_silent_severity: Severity = "warning"
    lfe_cutoff_hz: float = Field(150.0, gt=20, le=1000, description="The LFE carries nothing above this.")
    lfe_fullband_db: float = Field(-20.0, description="LFE energy above the cutoff, relative to all of it, "
                                   "beyond which the LFE holds full-band content (a main channel patched there).")
    lfe_severity: Severity = "warning"
    phase_inverted_db: float = Field(10.0, gt=0, description="A pair whose difference (S) is this much louder than "
                                     "its sum (M) is phase-inverted: it cancels in a mono or stereo downmix.")
    phase_severity: Severity = "warning"
    av_offset_warn_s: float = Field(0.1, ge=0, description="Warn when audio and video start further apart.")
    av_offset_error_s: float = Field(1.0, ge=0, description="Fail when audio and video start further apart.")
    duration_mismatch_warn_s: float = Field(0.5, ge=0, description="Warn when stream durations differ more.")
    duration_mismatch_error_s: float = Field(2.0, ge=0, description="Fail when stream durations differ more.")
    interlaced_ratio: float = Field(0.2, description="Share of interlaced frames (idet) that flags a source.")
    # idet's intl_thres: ffmpeg's 1.04 calls sharp progressive graphics (testsrc2, titles) interlaced;
    # they stay below 1.3 while woven fields in motion comb at 1.5 and more.
    interlace_comb_ratio: float = Field(1.3, gt=1, description="How much more one field pairing must comb.")
    interlaced_min_frames: int = Field(10, ge=1, description="Fewest idet-decided frames to judge on.")
    interlace_severity: Severity = "warning"
    colour_unspecified_severity: Severity = "info"
    colour_conflict_severity: Severity = "warning"
    colour_hdr_severity: Severity = Field("error", description="HDR/wide-gamut tags that cannot all be true.")
    decode_errors_max: int = Field(0, ge=0, description="Decoder errors tolerated before QC fails.")
    decode_severity: Severity = "error"
    vfr_severity: Severity = Field("error", description="Variable frame rate: the ladder needs constant rate.")
    hdr_severity: Severity = Field("info", description="An HDR10 (PQ) source without mastering-display or "
                                   "content-light metadata (HDR sources get an HDR ladder and an SDR fallback).")
    dolby_vision_severity: Severity = Field("warning", description="Dolby Vision RPU in the source: not "
                                            "carried, only its base layer is published.")
    chunk_s: float = Field(120.0, gt=0, description="The flow checks the picture in chunks of about this "
                           "many seconds, fanned out over the task runner and merged exactly (a title under 1.5 "
                           "chunks is one pass; inf: never split). Sound is checked in one pass: gated loudness "
                           "does not add up over pieces.")


# The constant rates a conformed picture may have: film, PAL, NTSC and their doubles (exact fractions).
STANDARD_RATES: tuple[str, ...] = ("24000/1001", "24", "25", "30000/1001", "30", "50", "60000/1001", "60")


class ConformConfig(_Config):
    """The picture conform before trials (encoding/conform.py): what it fixes and how it writes the result."""

    enabled: bool = Field(True, description="Conform interlaced, telecined, rotated, variable-rate, odd-sized and "
                          "non-square-pixel sources before any other video stage (false: QC warns on interlacing "
                          "and refuses variable rate, as before).")
    double_rate: bool = Field(False, description="Deinterlace each field to a frame (bwdif send_field: 1080i25 "
                              "becomes 50p, smoother motion at twice the frames); false keeps the frame rate.")
    inverse_telecine: bool = Field(True, description="Undo 3:2 pulldown on 29.97 material (fieldmatch, decimate: "
                                   "23.976 progressive) instead of deinterlacing it.")
    telecine_repeated_ratio: float = Field(0.25, gt=0, lt=1, description="Share of frames idet finds with a "
                                           "repeated field above which 29.97/30 material is taken as telecined "
                                           "(3:2 pulldown repeats a field in 2 of every 5 frames: 0.4).")
    standard_rates: tuple[str, ...] = Field(STANDARD_RATES, description="Constant rates a variable-rate source "
                                            "may be conformed to, as fractions.")
    rate_tolerance: float = Field(0.03, gt=0, lt=0.5, description="A variable-rate source fits a standard rate "
                                  "when its median frame interval is within this share of it (24 and 25 are 4% "
                                  "apart, so above 0.02 the nearest rate wins); beyond it the source is refused.")
    aspect_snap: float = Field(0.01, ge=0, lt=0.1, description="A display aspect ratio within this share of 16:9, "
                               "4:3, 2.39:1, 1.85:1, 1:1 (or their portrait turns) is taken as exactly that.")
    intermediate_codec: Literal["auto", "utvideo", "x264", "ffv1"] = Field(
        "auto", description="Lossless intra-only codec of the conformed file, which every later stage decodes: "
        "utvideo (8-bit only, fastest to read back: docs/benchmarks.md), x264 (qp 0, up to 10 bits), ffv1 "
        "(smallest, slowest, 12 bits and more); auto: utvideo for 8 bits, x264 for 10, ffv1 above.")
    threads: int = Field(0, ge=0, description="Encoder threads of the conform pass (0: ffmpeg's choice).")

    @field_validator("standard_rates")
    @classmethod
    def _rates(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from fractions import Fraction

        for rate in value:
            try:
                if Fraction(rate) <= 0:
                    raise ValueError
            except (ValueError, ZeroDivisionError) as exc:
                raise ValueError(f"{rate!r} is not a positive frame rate (write 30000/1001, 25, ...)") from exc
        if not value:
            raise ValueError("standard_rates is empty: name at least one rate")
        return value


class ShotConfig(_Config):
    """Shot detection and work-unit bounds (encoding/shots.py); docs/benchmarks.md has the why."""

    analysis_width: int = Field(256, ge=16, description="Frames are downscaled to this width before detection.")
    # PySceneDetect's AdaptiveDetector: a frame's HSV content change against the mean of its
    # window_width neighbours on each side. 3.0 (its default) misses cuts inside fast action, whose
    # neighbours move a lot too; the return guard below removes what the lower ratio lets in.
    adaptive_threshold: float = Field(2.0, gt=1, description="Change over its neighbours' mean that is a cut.")
    min_content_val: float = Field(18.0, ge=0, description="Smallest HSV change (0-255) that can be a cut.")
    window_width: int = Field(2, ge=1, description="Neighbours on each side in the adaptive mean.")
    luma_check: bool = Field(True, description="A cut must also be one in brightness alone (not only in "
                             "hue/saturation, which are noise in near-black and wrap around at red).")
    guard_s: float = Field(0.5, gt=0, description="Look this far either side of a candidate for a return.")
    guard_ratio: float = Field(0.5, ge=0, le=1, description="A before/after pair closer than this share of "
                               "the jump at the candidate means the picture returned: not a cut (0: off).")
    guard_width: int = Field(16, ge=4, description="Thumbnail width used by the return guard.")
    # Gradual transitions (dissolves, wipes, fades): encoding/shots.py's find_gradual; fitted on the
    # tuning part of bench/shot_transitions.py only (docs/benchmarks.md).
    gradual: bool = Field(True, description="Also detect dissolves, wipes and fades, as frame ranges.")
    gradual_min_change: float = Field(25.0, ge=0, description="Smallest mean change (0-255) between the "
                                      "frames either side of a dissolve or wipe.")
    gradual_straightness: float = Field(0.7, gt=0, le=1, description="Share of the frame-to-frame change "
                                        "across a window that must add up (a transition moves one way; "
                                        "motion goes back and forth).")
    gradual_spread: float = Field(0.25, gt=0, le=1, description="Largest share of a window's change that one "
                                  "frame step may carry (more is a cut, not a gradual transition).")
    fade_depth: float = Field(0.25, gt=0, lt=1, description="A fade through black dips to this share of the "
                              "contrast either side of it, or lower.")
    # Both bounds are rounded to the nearest frame. 0.5 s keeps real short shots (Sintel has 0.75 s).
    min_shot_s: float = Field(0.5, ge=0, description="Shots shorter than this are merged into a neighbour.")
    max_shot_s: float = Field(20.0, gt=0, description="Shots longer than this are split evenly so work units "
                              "stay bounded (inf: never split).")
    chunk_s: float = Field(120.0, gt=0, description="The flow detects shots in chunks of about this many "
                           "seconds, fanned out over the task runner; each decodes a little context either side "
                           "so the merged cuts are a whole pass's (a title under 1.5 chunks is one pass; inf: never "
                           "split).")

    @model_validator(mode="after")
    def _split_keeps_minimum(self) -> ShotConfig:
        # An even split of a shot just over the maximum gives pieces of half the maximum.
        if self.max_shot_s < 2 * self.min_shot_s:
            raise ValueError(f"max_shot_s ({self.max_shot_s}) must be at least twice min_shot_s ({self.min_shot_s})")
        return self


class Rung(_Config):
    """One rendition of a ladder."""

    width: int
    height: int
    kbps: int

    @property
    def name(self) -> str:
        return f"{self.height}p_{self.kbps}k"


# Apple's HLS authoring specification, H.264 ladder (16:9), the fixed reference ladder.
APPLE_HLS_LADDER: tuple[Rung, ...] = tuple(
    Rung(width=w, height=h, kbps=k)
    for w, h, k in [
        (416, 234, 145), (640, 360, 365), (768, 432, 730), (768, 432, 1100), (960, 540, 2000),
        (1280, 720, 3000), (1280, 720, 4500), (1920, 1080, 6000), (1920, 1080, 7800),
    ]
)


class EncodeConfig(_Config):
    """Final encodes (encoding/encode.py) and the segment grid shared with the packager."""

    ladder: tuple[Rung, ...] = APPLE_HLS_LADDER
    codec: CodecName = Field("h264", description="Video codec of the ladder: h264, or hevc (libx265) and av1 "
                             "(SVT-AV1) for measured ladders; the presets and trial CRFs of [encode] and [trials] "
                             "that are not set follow the codec (encoding/codecs.py).")
    codecs: tuple[CodecName, ...] = Field((), description="Codecs of the SDR ladders, one ladder each, e.g. "
                                          "[\"h264\", \"av1\"] (empty: [codec]); the first is encode.codec. An HDR "
                                          "source's SDR ladders are made from its tone-mapped intermediate "
                                          "([tonemap]). Presets and trial settings of [encode]/[trials] apply to the "
                                          "first; the others use their codec's defaults (encoding/codecs.py).")
    hdr_codecs: tuple[Literal["hevc", "av1"], ...] = Field(("hevc",), description="Codecs of the HDR ladders of an "
                                                           "HDR10/HLG source (HEVC Main10, AV1 10-bit); empty: HDR "
                                                           "sources get SDR ladders only. Ignored for SDR sources.")
    preset: str = Field("medium", description="Encoder preset of the final encodes (x264/x265 names; SVT-AV1 "
                        "0-13).")
    segment_s: float = Field(4.0, gt=0.5, le=30, description="Segment grid: a keyframe every this many seconds.")
    preroll_frames: int = Field(6, ge=0, le=120, description="Frames before each piece of a per-shot rung that "
                                "its encode starts with, at the piece's CRF, and the join drops, so the encoder's "
                                "rate control starts the piece as inside a whole-title run (docs/benchmarks.md: "
                                "pieces without it need 0.7-2.0% more bits than one run; 0 turns it off).")
    half_rate_max_height: int = Field(360, ge=0, description="A source above 30 fps (50, 59.94, 60) gets its rungs "
                                      "of at most this many lines (the short side) at half its rate (25, 29.97, 30): "
                                      "a small, low-rate rung spends its bits better on half the pictures than on "
                                      "motion a phone screen barely shows, and decodes with half the work. 0: no "
                                      "rung by size. Keyframes stay at the same times in every rung (shot starts "
                                      "and the segment grid move to even frames). 360: above it, the lost motion "
                                      "cost more VMAF than the freed bits gave (docs/benchmarks.md, half-rate rungs).")
    half_rate_max_kbps: int = Field(0, ge=0, description="As half_rate_max_height, by the rung's bitrate (fixed: "
                                    "its target; measured ladders: its planned rate): rungs at or under it are "
                                    "half rate too. 0: no rung by bitrate.")
    maxrate_factor: float = Field(1.5, ge=1, description="VBV maxrate as a multiple of the rung's bitrate.")
    bufsize_s: float = Field(2.0, gt=0, description="VBV buffer, in seconds of the rung's bitrate.")
    audio_kbps: int = Field(128, ge=32, le=512)
    audio_rate: Literal[44100, 48000] = 48000
    parallel_encodes: int = Field(2, ge=1, description="Tasks at once on this machine's thread pool: rungs of a "
                                  "fixed ladder, or groups of a measured rung's pieces and its VMAF spans (its "
                                  "rungs go one after another; ladder.task_s), and trial groups. A Dask cluster "
                                  "runs as many as it has worker threads instead.")

    @property
    def sdr_codecs(self) -> tuple[CodecName, ...]:
        return self.codecs or (self.codec,)

    @model_validator(mode="after")
    def _codecs_start_with_codec(self) -> EncodeConfig:
        if self.codecs and (self.codecs[0] != self.codec or len(set(self.codecs)) != len(self.codecs)):
            raise ValueError(f"codecs {list(self.codecs)} must be distinct and start with codec ({self.codec}); "
                             "set codecs only")
        if len(set(self.hdr_codecs)) != len(self.hdr_codecs):
            raise ValueError(f"hdr_codecs {list(self.hdr_codecs)} name a codec twice")
        return self


ToneMapOperator = Literal["hable", "mobius", "reinhard", "clip"]


class ToneMapConfig(_Config):
    """The SDR fallback of an HDR source (encoding/tonemap.py): zscale to linear light, ffmpeg's tonemap
    operator, then BT.709. (libplacebo's BT.2390 needs Vulkan, which a CPU-only ffmpeg lacks.)"""

    operator: ToneMapOperator = Field("hable", description="hable (filmic, keeps highlight detail), mobius "
                                      "(keeps in-range colours exact, rolls off above), reinhard, or clip.")
    param: float | None = Field(None, description="The operator's parameter (mobius: transition point, "
                                "reinhard: contrast); None: ffmpeg's default.")
    desat: float = Field(0.0, ge=0, description="Desaturate highlights brighter than this (0: never), against "
                         "over-bright saturated colours.")
    sdr_white_nits: float = Field(100.0, gt=0, description="Luminance that becomes SDR white (reference white).")
    hlg_peak_nits: float = Field(1000.0, gt=0, description="Display peak an HLG source is rendered for (BT.2100's "
                                 "nominal 1000 cd/m2).")
    pq_default_peak_nits: float = Field(1000.0, gt=0, description="Peak assumed for a PQ source without MaxCLL or "
                                        "a mastering display.")
    max_height: int = Field(1080, ge=0, description="The intermediate is scaled down to this height first (0: the "
                            "source's): the SDR fallback (H.264) tops out at 1080p, and tone mapping in float RGB "
                            "at full UHD size costs several decodes.")
    method: Literal["lut", "direct"] = Field("lut", description="lut: the tone map's own filter chain is run once "
                                             "on an identity 3D LUT (Hald CLUT) and the frames are looked up in it "
                                             "(tetrahedral interpolation), which is cheaper than the float math on "
                                             "every pixel; direct: every pixel through the chain.")
    lut_level: int = Field(8, ge=4, le=12, description="Hald CLUT level of the lut method: level**2 points per "
                           "axis (8: 64, 12: 144); more points, closer to the direct chain, a larger table to read.")


class AudioConfig(_Config):
    """The audio stage (encoding/audio.py): codecs, bitrates and loudness of every published track.

    Stereo tracks use ``encode.audio_kbps`` and ``encode.audio_rate``.
    """

    multichannel_codec: Literal["aac", "eac3"] = Field("aac", description="Codec of the 5.1 renditions: AAC-LC "
                                                       "(every browser decodes it) or E-AC-3 (living-room devices; "
                                                       "Debian's chromium does not decode it). 7.1 is always AAC.")
    surround_kbps: int = Field(384, ge=96, le=1024, description="Bitrate of a 5.1 rendition.")
    surround_71_kbps: int = Field(512, ge=128, le=1536, description="Bitrate of a 7.1 rendition.")
    loudness_lufs: float = Field(-24.0, ge=-40, le=-10, description="Integrated loudness (ITU-R BS.1770, "
                                 "level-gated) every published track is normalised to, in LUFS (= LKFS).")
    true_peak_dbtp: float = Field(-2.0, ge=-9, le=0, description="Highest true peak after normalisation.")
    lra_lu: float = Field(20.0, ge=1, le=50, description="Loudness range above which loudnorm would compress; "
                          "wider than any home mix, so the gain stays linear.")
    mono_layout: tuple[Literal["5.1", "stereo"], ...] = Field(
        ("5.1", "stereo"), description="How a master made only of mono streams is grouped when no sidecar says: "
        "each layout takes the next tracks in order (default: 1-6 = L R C LFE Ls Rs, 7-8 = Lt Rt).")


class PackageConfig(_Config):
    """Shaka Packager run (packaging/packager.py)."""

    dash_manifest: str = "manifest.mpd"
    hls_master: str = "master.m3u8"


class StorageConfig(_Config):
    """Where packages go and where intermediate files live."""

    output: str = Field(default_factory=lambda: str(home_path("output")),
                        description="Local directory or s3://bucket/prefix (default: output/ in REELFLOW_HOME).")
    work_dir: Path = Field(default_factory=lambda: home_path("work"),
                           description="Intermediate files, keyed by content hash (default: work/ in REELFLOW_HOME).")
    s3_endpoint_url: str | None = Field(None, description="S3-compatible endpoint (MinIO, moto).")
    s3_region: str = "us-east-1"
    keep_work: bool = Field(False, description="Keep a title's work folder (intermediates, encodes) after it is "
                            "published; by default it is removed then (a failed run always keeps it).")
    work_free_margin_gb: float = Field(2.0, ge=0, description="An ingest starts only with the source's size plus "
                                       "this much free on the work folder's disk (intermediates, encodes).")
    multipart_threshold_mb: int = Field(8, ge=5, description="Files above this size upload in parts.")
    multipart_chunk_mb: int = Field(8, ge=5)


class TrialConfig(_Config):
    """Trial encodes and their VMAF (encoding/trials.py): what is tried, and what keeps it cheap."""

    heights: tuple[int, ...] = Field((2160, 1440, 1080, 720, 540, 432, 360, 270, 234), description="Candidate "
                                     "resolutions; those taller than the source are never tried (so 1440 and "
                                     "2160 only on UHD sources). Above 1080 lines trials are scored with the 4K "
                                     "VMAF model (encoding/vmaf.py).")
    uhd_trials: Literal["sample", "all"] = Field("sample", description="Candidates above 1080 lines: tried on "
                                                 "the sample only, each shot's points there mapped from its "
                                                 "1080p trials by the sample's measured rate ratio and VMAF "
                                                 "offset per CRF (trials.py: UHD titles); or tried on every "
                                                 "shot (several times the analysis CPU of a UHD title).")
    crfs: tuple[int, ...] = Field((20, 27, 34), description="CRFs encoded at every resolution; hull points "
                                  "between them are interpolated.")
    shot_crfs: Literal["outer", "all", "placed"] = Field("all", description="CRFs each shot is tried at: all of "
                                                         "crfs; only the lowest and highest, its points between "
                                                         "them shaped by the sample's curvature (about a quarter "
                                                         "less analysis CPU, planned VMAF about 1 point less "
                                                         "accurate: docs/benchmarks.md); or, per height, two or "
                                                         "three placed around where the sample puts that height "
                                                         "on the hull (trials.place_probes).")
    probe_margin: int = Field(3, ge=1, description="shot_crfs = placed: CRFs tried beyond the sample's band each way.")
    probe_two_span: int = Field(10, ge=2, description="shot_crfs = placed: the widest band tried at two CRFs "
                                "(a wider one gets a third in its middle).")
    crf_step: int = Field(1, ge=0, description="Interpolated points every this many CRF between probes (0: none).")
    codec: CodecName = Field("h264", description="Codec of the trials: always encode.codec (set from it).")
    preset: str = Field("superfast", description="Encoder preset of the trial encodes.")
    x264_params: str = Field("mbtree=1:rc-lookahead=40", description="Encoder options on top of the trial preset "
                             "(x264-params, or x265-params / svtav1-params for hevc / av1). For x264, medium's "
                             "macroblock tree and lookahead, so trial rates follow medium's as shots get longer "
                             "and a correction measured on short pieces holds for long shots.")
    final_preset: str = Field("medium", description="Preset the trials predict (that of the final encodes).")
    vmaf_subsample: int = Field(11, ge=1, description="Score every n-th frame of a trial; 1 or coprime with 6, "
                                "so it never lines up with B-frame or GOP periods.")
    vmaf_min_frames: int = Field(6, ge=1, description="Frames a subsampled shot has scored at least; a "
                                 "shorter shot gets a smaller step, down to 1.")
    calibrate: bool = Field(True, description="Measure the trial-to-final correction on a sample of each title "
                            "(False: the fixed table in trials.py).")
    sample_fraction: float = Field(0.15, gt=0, le=1, description="Sample at most this share of the title.")
    sample_max_s: float = Field(30.0, gt=0, description="Sample at most this many seconds.")
    sample_segment_s: float = Field(2.0, gt=0, description="Sample pieces this long, spread over the title.")
    sample_min_piece_s: float = Field(0.3, gt=0, description="Where sample_segment_s pieces would be fewer than "
                                      "the title's shots, shorter pieces, one per shot (up to sample_max_s / "
                                      "sample_segment_s of them), but none shorter than this.")
    calibration_heights: int = Field(2, ge=1, description="Resolutions the final preset is measured at on the "
                                     "sample, spread from the highest candidate to the lowest; the correction is "
                                     "interpolated between them.")
    prune: bool = Field(True, description="Drop resolutions that do not reach the sample's hull.")
    keep_tallest: bool = Field(True, description="Never drop the tallest candidate: the top rung needs it "
                               "wherever the sample (a few seconds of the title) misjudges it.")
    min_kbps: float = Field(100.0, gt=0, description="Rates below this are never needed (the bottom rung is higher).")
    top_vmaf: float = Field(95.0, description="Quality above this is never bought, so it decides no resolution.")
    prune_margin: float = Field(1.0, ge=0, description="A resolution this close below the hull is still kept.")
    group_s: float = Field(20.0, gt=0, description="Consecutive shots tried in one run, up to this long (one "
                           "flow task): fewer, longer runs spread the start-up cost of each encoder and VMAF.")
    threads: int = Field(1, ge=1, description="Threads per trial process; 1 keeps CPU accounting exact and "
                         "lets the flow fan shots out over the cores.")

    @property
    def crfs_per_shot(self) -> tuple[int, ...]:
        return (self.crfs[0], self.crfs[-1]) if self.shot_crfs == "outer" and len(self.crfs) > 2 else self.crfs

    @model_validator(mode="after")
    def _usable(self) -> TrialConfig:
        if self.vmaf_subsample > 1 and (self.vmaf_subsample % 2 == 0 or self.vmaf_subsample % 3 == 0):
            raise ValueError(f"vmaf_subsample {self.vmaf_subsample} shares a factor with B-frame/GOP periods; "
                             "use 1 or a step coprime with 6 (5, 7, 11, 13)")
        if not self.crfs or list(self.crfs) != sorted(set(self.crfs)) or not all(0 <= c <= 63 for c in self.crfs):
            raise ValueError(f"crfs {self.crfs} must be distinct, ascending and within 0-63 (the codec may allow less)")
        if not self.heights or any(h < 16 for h in self.heights):
            raise ValueError(f"heights {self.heights} must be at least 16 each")
        return self


LadderMode = Literal["fixed", "per-title", "per-shot"]


class LadderConfig(_Config):
    """How the ladder is chosen (encoding/ladder.py): the mode and the spacing rules of the rungs.

    ``fixed`` is ``encode.ladder`` (Apple's rungs no taller than the source); ``per-title`` puts one
    CRF per rung on the whole title; ``per-shot`` (the default) gives each shot its own CRF in each
    rung at one slope. The rules' defaults follow common practice for H.264 ladders.
    """

    mode: LadderMode = Field("per-shot", description="fixed | per-title | per-shot.")
    allocate_per: Literal["shot", "segment"] = Field("segment", description="Unit that gets its own CRF in "
                                                     "per-shot mode: a shot, or a shot's pieces between the "
                                                     "segment grid's keyframes (keyframes that every rung has "
                                                     "anyway, so the finer unit costs no keyframe).")
    bottom_kbps: float = Field(145.0, gt=0, description="Rate of the lowest rung (Apple's 145 kbps).")
    top_vmaf_min: float = Field(93.0, description="The top rung reaches at least this VMAF where the source allows.")
    top_vmaf_max: float = Field(95.0, description="No bits are spent for VMAF above this.")
    top_vmaf_aim: float | None = Field(None, description="Planned VMAF of the top rung; None: the middle "
                                       "of [top_vmaf_min, top_vmaf_max].")
    min_step_ratio: float = Field(1.5, gt=1, description="Adjacent rungs at least this many times apart in rate.")
    max_step_ratio: float = Field(2.0, gt=1, description="Adjacent rungs at most this many times apart in rate.")
    min_vmaf_step: float = Field(6.0, ge=0, description="Adjacent rungs about this much VMAF apart, or more.")
    max_rungs: int = Field(10, ge=1)
    heights: tuple[int, ...] | None = Field(None, description="Resolutions a rung may have; None: every one tried.")
    feedback: bool = Field(True, description="Encode the rungs cheapest first and carry each one's miss of its plan "
                           "into the next: that rung's CRFs move by the miss at its own dVMAF/dCRF before it is "
                           "encoded (encoding/analysis.py: RungCheck). Needs measure_delivered.")
    feedback_vmaf: float = Field(0.5, ge=0, description="A carried miss this small moves nothing.")
    vmaf_threads: int = Field(2, ge=1, le=64, description="Threads of each delivered rung's every-frame VMAF "
                              "run (libvmaf, decode and scale): the rungs go one after another, so a single thread "
                              "would leave the other cores idle. Scores do not depend on it.")
    task_s: float = Field(60.0, gt=0, description="Seconds of the title per task of the rung stage: a rung's "
                          "pieces are encoded in groups of consecutive units about this long, and its VMAF is "
                          "scored in spans this long, each group and span a task of its own, so that a long title's "
                          "rung spreads over every worker (a Dask cluster, or the local pool). A title shorter than "
                          "this still gets encode.parallel_encodes groups. Scores do not depend on it.")
    measure_delivered: bool = Field(True, description="Score every delivered rung with VMAF on every frame "
                                    "(the report's delivered column, and what feedback and rechecks act on: "
                                    "without it neither runs; costs about one VMAF run per rung).")
    recheck_vmaf: float | None = Field(1.0, gt=0, description="A delivered rung whose VMAF misses its plan by more "
                                       "than this is encoded once more, its CRFs moved by the miss at its own "
                                       "dVMAF/dCRF; the first encode and its VMAF count as analysis. None: never. "
                                       "Needs measure_delivered.")
    first_check_subsample: int = Field(5, ge=1, description="The cheapest rung carries nothing from below, so it "
                                       "takes the trials' whole error and is the one most often encoded twice: its "
                                       "first encode is scored on every n-th frame first (0.3-0.4 of a full run's "
                                       "CPU at 5), and a miss beyond first_check_vmaf there re-encodes it at once. "
                                       "1: off; else 1 or coprime with 6 (vmaf.py).")
    first_check_vmaf: float = Field(0.7, gt=0, description="The cheapest rung's quick check re-encodes it at once "
                                    "when off its plan by more than this: less than recheck_vmaf, because the "
                                    "subsample reads within about 0.5 of the full score and encoding the cheapest "
                                    "rung again costs a fraction of the full VMAF run a late recheck throws away.")

    @model_validator(mode="after")
    def _consistent(self) -> LadderConfig:
        if self.first_check_subsample > 1 and math.gcd(self.first_check_subsample, 6) != 1:
            raise ValueError(f"first_check_subsample {self.first_check_subsample} shares a factor with B-frame/GOP "
                             "periods; use 1 or a step coprime with 6 (5, 7, 11)")
        if self.top_vmaf_min > self.top_vmaf_max:
            raise ValueError(f"top_vmaf_min {self.top_vmaf_min} is above top_vmaf_max {self.top_vmaf_max}")
        if self.top_vmaf_aim is not None and not self.top_vmaf_min <= self.top_vmaf_aim <= self.top_vmaf_max:
            raise ValueError(f"top_vmaf_aim {self.top_vmaf_aim} is outside [{self.top_vmaf_min}, {self.top_vmaf_max}]")
        if self.min_step_ratio > self.max_step_ratio:
            raise ValueError(f"min_step_ratio {self.min_step_ratio} is above max_step_ratio {self.max_step_ratio}")
        return self

    @property
    def aim(self) -> float:
        if self.top_vmaf_aim is not None:
            return self.top_vmaf_aim
        return (self.top_vmaf_min + self.top_vmaf_max) / 2


class DatabaseConfig(_Config):
    """The service database (infra/database.py): content keys, sessions, progress, QoE."""

    url: str = Field(default_factory=lambda: f"sqlite:///{home_path('service.db')}",
                     description="SQLAlchemy URL; SQLite in REELFLOW_HOME by default, postgresql+psycopg://... "
                     "for several service replicas.")


def decode_master_key(text: str) -> bytes:
    """A 32-byte master key from 64 hex digits or base64 (standard or URL-safe); ValueError otherwise.

    The message never contains the value: it is a secret.
    """
    text = text.strip()
    if re.fullmatch(r"[0-9a-fA-F]{64}", text):
        return bytes.fromhex(text)
    try:
        raw = base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ValueError("the master key must be 32 bytes, written as 64 hex digits or as base64 "
                         "(make one with: python -c 'import secrets; print(secrets.token_hex(32))')")
    return raw


class DrmConfig(_Config):
    """Content encryption (packaging/keys.py, packaging/packager.py).

    The master key encrypts the content keys at rest in the service database. Give it as
    ``master_key`` (``REELFLOW_DRM__MASTER_KEY``: 64 hex digits or base64 of 32 bytes). Without
    one, reelflow creates a random key once in ``master_key_file`` (default ``drm-master.key``
    beside the work folder, i.e. ``drm-master.key`` in REELFLOW_HOME), with mode 0600, and reuses it:
    fine on one laptop; losing that file loses every stored content key, so production sets it.

    FairPlay needs ``cbcs``: with ``cenc`` it is left out of the default systems (with a log
    line), and naming it explicitly together with ``cenc`` is refused.
    """

    enabled: bool = Field(True, description="Encrypt packages (the CLI's --no-drm turns it off per ingest).")
    master_key: SecretStr | None = Field(None, description="32 bytes, hex or base64; see the class docstring.")
    master_key_file: Path | None = Field(None, description="Where the embedded default master key lives "
                                         "(default: drm-master.key beside the work folder).")
    scheme: ProtectionScheme = Field("cenc", description="Common Encryption scheme: cenc (AES-CTR) or cbcs.")
    protection_systems: tuple[ProtectionSystem, ...] = Field(
        ("Widevine", "PlayReady", "FairPlay", "CommonSystem"),
        description="Systems that get protection data; CommonSystem is what W3C ClearKey players use.")
    hls_key_uri: str = Field("keys/{key_id}", description="HLS identity key URI per key; {key_id} is the key "
                             "id in 32 lower-case hex digits. Relative: to the package root.")
    fairplay_key_uri: str = Field("skd://{key_id}", description="HLS FairPlay (cbcs) key URI per key.")

    @field_validator("master_key")
    @classmethod
    def _master_key_decodes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            decode_master_key(value.get_secret_value())
        return value

    @field_validator("hls_key_uri", "fairplay_key_uri")
    @classmethod
    def _has_key_id(cls, value: str) -> str:
        if "{key_id}" not in value:
            raise ValueError(f"{value!r} must contain {{key_id}}: each key has its own URI")
        try:
            value.format(key_id="0" * 32)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(f"{value!r}: only {{key_id}} may be used as a placeholder") from exc
        return value

    @model_validator(mode="after")
    def _fairplay_needs_cbcs(self) -> DrmConfig:
        if not self.protection_systems:
            raise ValueError("protection_systems is empty: name at least one (CommonSystem for ClearKey)")
        if (self.scheme == "cenc" and "FairPlay" in self.protection_systems
                and "protection_systems" in self.model_fields_set):
            raise ValueError("FairPlay needs scheme 'cbcs'; with 'cenc' leave FairPlay out of protection_systems")
        return self

    @property
    def systems(self) -> tuple[ProtectionSystem, ...]:
        """The systems actually packaged: FairPlay only with cbcs."""
        if self.scheme == "cbcs":
            return self.protection_systems
        return tuple(s for s in self.protection_systems if s != "FairPlay")

    def master_key_bytes(self) -> bytes | None:
        return decode_master_key(self.master_key.get_secret_value()) if self.master_key is not None else None


class EdgeConfig(_Config):
    """One CDN edge the playback service can steer players to (playback/steering.py)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Short name, carried in play tokens.")
    base_url: str = Field(pattern=r"^https?://[^\s?#]+$", description="Where the edge serves /titles/...; "
                          "no query or fragment.")
    isp: str | None = Field(None, description="The ISP network it sits in (compared with the player's isp).")
    region: str | None = Field(None, description="Country (ISO alpha-2) or region name it serves.")
    healthy: bool = Field(True, description="Unhealthy edges are never handed out.")
    load: float = Field(0.0, ge=0, description="Current load, 0 idle, 1 full; less is preferred.")
    titles: tuple[str, ...] | None = Field(None, description="Titles it holds; None: the whole catalogue.")

    @field_validator("base_url")
    @classmethod
    def _no_trailing_slash(cls, value: str) -> str:
        return value.rstrip("/")


class ServiceConfig(_Config):
    """The playback service (playback/): play API, license, manifests, steering, segments."""

    host: str = Field("127.0.0.1", description="Interface `reelflow serve` listens on.")
    port: int = Field(8700, ge=0, le=65535)
    public_url: str | None = Field(None, pattern=r"^https?://[^\s?#]+$", description="The service's URL as "
                                   "players reach it (default http://host:port); manifest, license and key URLs "
                                   "are built on it.")
    token_secret: SecretStr | None = Field(None, description="HMAC key of play tokens; None: a random one made "
                                           "once in token_secret_file (0600). Set it when running replicas.")
    token_secret_file: Path = Field(default_factory=lambda: home_path("service-token.key"))
    token_ttl_s: int = Field(600, ge=10, le=86400, description="Play tokens (manifests, license, keys) expire "
                             "this long after /api/play.")
    license_duration_h: float = Field(24.0, ge=24, le=48, description="How long a player may keep the keys "
                                      "of a license (24-48 h).")
    cors_origins: tuple[str, ...] = Field((), description="Web origins allowed to call the service (exact, "
                                          "e.g. https://player.example.com); '*' for any.")
    cors_origin_regex: str | None = Field(r"^https?://(localhost|127\.0\.0\.1)(:[0-9]+)?$", description="Origins "
                                          "allowed by pattern as well; the default allows local pages.")
    cellular_max_kbps: int = Field(3000, ge=100, description="Video rungs above this are left out on cellular.")
    software_drm_max_height: int = Field(720, ge=144, description="Tallest rung (and key tier) for software DRM "
                                         "(Widevine L3, PlayReady SL2000, ClearKey).")
    edges: tuple[EdgeConfig, ...] = Field((), description="CDN edges; the service itself (origin) is always last.")
    default_countries: tuple[str, ...] | None = Field(None, description="Where a title whose record lists no "
                                                      "countries may be played; None: everywhere.")
    catalog_ttl_s: float = Field(5.0, ge=0, description="Title records are re-read this long after loading.")
    key_cache_ttl_s: float = Field(60.0, ge=0, description="Content keys are re-read this long after loading.")
    resume_cache_ttl_s: float = Field(30.0, ge=0, description="Resume positions read for /api/play are kept this "
                                      "long; writes through this process show at once, through other replicas "
                                      "within this time (0: always read the database).")
    shaka_dir: Path = Field(Path("node_modules/shaka-player/dist"), description="Shaka Player's dist folder, "
                            "served under /shaka/ for the demo page (npm ci puts it here).")
    edge_token: SecretStr | None = Field(None, description="Bearer token edges send with heartbeats (the edges' "
                                         "edge.token); None: heartbeats are taken from anyone who can reach the "
                                         "service.")
    edge_missed_beats: float = Field(1.5, ge=1, le=10, description="An edge whose last heartbeat is older than this "
                                     "many of its heartbeat intervals is down and no longer steered to; above 1 "
                                     "leaves a margin for a late beat.")

    @field_validator("default_countries")
    @classmethod
    def _alpha2(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is None:
            return None
        for code in value:
            if len(code) != 2 or not code.isalpha():
                raise ValueError(f"{code!r} is not an ISO 3166 alpha-2 country code")
        return tuple(code.upper() for code in value)

    @model_validator(mode="after")
    def _unique_edges(self) -> ServiceConfig:
        names = [edge.name for edge in self.edges]
        if len(set(names)) != len(names) or "origin" in names:
            raise ValueError(f"edge names {names} must be distinct and not 'origin'")
        return self

    @property
    def base_url(self) -> str:
        """The service's public URL, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")


class EdgeNodeConfig(_Config):
    """`reelflow edge` as a caching edge (playback/edge.py): its store, its parent, its heartbeats."""

    name: str = Field("edge", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Edge name, in heartbeats and "
                      "play tokens; unique among the edges of one service.")
    host: str = Field("127.0.0.1", description="Interface it listens on.")
    port: int = Field(8701, ge=1, le=65535)
    public_url: str | None = Field(None, pattern=r"^https?://[^\s?#]+$", description="Where players (or child "
                                   "edges) reach it (default http://host:port).")
    parent: str | None = Field(None, pattern=r"^https?://[^\s?#]+$", description="Where misses are fetched: a hub "
                               "edge or the playback service (origin); None: serve the storage directly, no cache.")
    store: Path | None = Field(None, description="Its own store (a directory); required with parent.")
    budget_bytes: int = Field(10 << 30, ge=1 << 20, description="Bytes the store may hold, pinned (filled) objects "
                              "included.")
    policy: Literal["s3fifo", "lru"] = Field("s3fifo", description="Eviction of objects cached on demand; S3-FIFO "
                                             "keeps more of the bytes asked for again on video traces "
                                             "(docs/benchmarks.md, Edge).")
    isp: str | None = Field(None, description="The ISP network it sits in; steering prefers it for that ISP's players.")
    region: str | None = Field(None, description="Country (ISO alpha-2) or region it serves.")
    serves_players: bool = Field(True, description="False for a hub: it feeds edges and is never steered to.")
    service_url: str | None = Field(None, pattern=r"^https?://[^\s?#]+$", description="The playback service that "
                                    "heartbeats go to; None: no heartbeats.")
    heartbeat_s: float = Field(5.0, gt=0, le=300, description="Seconds between heartbeats.")
    capacity_bps: float = Field(10e9, gt=0, description="Bits per second it can serve; load is the share used.")
    max_connections: int = Field(10_000, ge=1, description="Open connections at full load.")
    token: SecretStr | None = Field(None, description="Bearer token of its admin endpoints and of its heartbeats "
                                    "(the service's edge_token). The admin endpoints are refused without one.")
    fetch_timeout_s: float = Field(20.0, gt=0, description="A parent fetch with no byte for this long fails.")

    @field_validator("public_url", "parent", "service_url")
    @classmethod
    def _no_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _store_with_parent(self) -> EdgeNodeConfig:
        if self.parent and self.store is None:
            raise ValueError("edge.parent needs edge.store (the directory the edge caches into)")
        return self

    @property
    def base_url(self) -> str:
        return self.public_url or f"http://{self.host}:{self.port}"


class WatchConfig(_Config):
    """The watcher (flows/watch.py): where drops are noticed and how they become ingest runs."""

    queue: str | None = Field(None, description="SQS queue (URL or name) that receives the bucket's "
                              "ObjectCreated notifications; none: list the bucket every poll_s instead.")
    sqs_endpoint_url: str | None = Field(None, description="SQS endpoint (moto, LocalStack); default: "
                                         "storage.s3_endpoint_url.")
    wait_time_s: int = Field(20, ge=1, le=20, description="SQS long poll: wait this long for a message.")
    visibility_timeout_s: int = Field(120, ge=10, description="A received message stays hidden this long; "
                                      "not deleted before its run was accepted, it comes back after it.")
    poll_s: float = Field(5.0, gt=0, description="Listing and local folder poll interval.")
    stable_polls: int = Field(3, ge=1, description="A local file is complete once its size and mtime stayed "
                              "the same over this many polls.")
    sidecar_wait_s: float = Field(10.0, ge=0, description="A media file with no <stem>.json beside it waits "
                                  "this long for one before its run starts without a sidecar.")
    media_suffixes: tuple[str, ...] = Field(
        (".mp4", ".mov", ".mxf", ".mkv", ".webm", ".m4v", ".ts", ".avi", ".mpg", ".mpeg", ".y4m"),
        description="File name endings that start an ingest; other files are ignored (.json: sidecars).")
    state_dir: Path = Field(default_factory=lambda: home_path("watch"), description="The watcher's seen-sets "
                            "(listing and local folder modes), so a restart does not start runs again.")


class FillConfig(_Config):
    """The off-peak fill (flows/fill.py): what each edge holds (playback/placement.py) and how it is pushed."""

    service_url: str = Field("http://127.0.0.1:8700", pattern=r"^https?://[^\s?#]+$", description="The playback "
                             "service whose /api/edges lists the edges to fill (their heartbeats).")
    cron: str = Field("0 3 * * *", description="When the scheduled deployment runs (the start of the off-peak "
                      "window, in the worker's time zone).")
    window_s: float = Field(4 * 3600.0, gt=0, description="Seconds a fill may push for; what is left is pushed "
                            "by the next run.")
    rate_bytes_per_s: float = Field(50e6, gt=0, description="Push rate per edge, so a fill does not crowd the "
                                    "ISP's links.")
    fill_share: float = Field(0.8, gt=0, le=1, description="Share of each edge's budget the fill pins; the rest "
                              "caches misses (the edge's policy).")
    history_s: float = Field(7 * 86_400.0, gt=0, description="Plays (QoE records) older than this are not read.")
    half_life_s: float = Field(86_400.0, gt=0, description="Half-life of a play's weight in the forecast.")
    forecast_window_s: float = Field(86_400.0, gt=0, description="The forecast is plays per this long.")
    new_release_plays: float = Field(10.0, ge=0, description="Plays per forecast window expected of a new "
                                     "release that has no history (a title.json's expected_plays wins).")
    new_release_s: float = Field(7 * 86_400.0, ge=0, description="How long after release the prior still counts.")
    lead_s: float = Field(86_400.0, ge=0, description="A title released within this long after the fill is "
                          "pushed before its release.")
    min_plays: float = Field(0.0, ge=0, description="Titles forecast fewer plays per edge are left upstream.")


class OrchestrationConfig(_Config):
    """The Prefect deployment that `reelflow worker` serves and `reelflow watch` starts runs of."""

    deployment: str = Field("reelflow", description="Name of the ingest flow's deployment ('ingest/<name>').")
    max_ingests: int = Field(1, ge=1, description="Ingest runs one worker process runs at once.")
    global_max_ingests: int | None = Field(None, ge=1, description="Ingest runs at once across every worker "
                                           "(the deployment's concurrency limit, kept by the server); none: "
                                           "only the per-worker limit.")
    poll_s: float = Field(5.0, gt=0, description="How often a worker asks the server for scheduled runs.")
    dask_address: str | None = Field(None, description="Dask scheduler (tcp://host:8786) that the per-shot "
                                     "trials, rung encodes and their VMAF run on (files through the output "
                                     "store); none: a thread pool on this machine.")


class Settings(_Config):
    """Everything reelflow can be told, with the embedded defaults of a single laptop."""

    qc: QCConfig = QCConfig()
    conform: ConformConfig = ConformConfig()
    shots: ShotConfig = ShotConfig()
    encode: EncodeConfig = EncodeConfig()
    tonemap: ToneMapConfig = ToneMapConfig()
    audio: AudioConfig = AudioConfig()
    package: PackageConfig = PackageConfig()
    storage: StorageConfig = Field(default_factory=StorageConfig)  # paths in REELFLOW_HOME, read when made
    trials: TrialConfig = TrialConfig()
    ladder: LadderConfig = LadderConfig()
    database: DatabaseConfig = Field(default_factory=DatabaseConfig)  # paths in REELFLOW_HOME, read when made
    drm: DrmConfig = DrmConfig()
    service: ServiceConfig = Field(default_factory=ServiceConfig)  # paths in REELFLOW_HOME, read when made
    watch: WatchConfig = Field(default_factory=WatchConfig)  # paths in REELFLOW_HOME, read when made
    edge: EdgeNodeConfig = EdgeNodeConfig()
    fill: FillConfig = FillConfig()
    orchestration: OrchestrationConfig = OrchestrationConfig()

    @model_validator(mode="before")
    @classmethod
    def _codec_defaults(cls, data: Any) -> Any:
        """The presets, trial options and trial CRFs that are not set follow encode.codec."""
        if not isinstance(data, dict) or not isinstance(data.get("encode"), dict):
            return data
        codecs = data["encode"].get("codecs")
        if codecs and isinstance(codecs, list | tuple) and "codec" not in data["encode"]:
            data = {**data, "encode": {**data["encode"], "codec": codecs[0]}}
        name = data["encode"].get("codec", "h264")
        if name not in CODECS:
            return data                      # the field's own validation names the codecs
        chosen = CODECS[name]
        encode = {"preset": chosen.final_preset, **data["encode"]}
        trials = data.get("trials", {})
        if not isinstance(trials, dict):
            return data
        trials = {"codec": name, "preset": chosen.trial_preset, "x264_params": chosen.trial_params,
                  "crfs": chosen.trial_crfs, "final_preset": encode["preset"], **trials}
        return {**data, "encode": encode, "trials": trials}

    @model_validator(mode="after")
    def _trials_predict_the_final_encodes(self) -> Settings:
        chosen = CODECS[self.encode.codec]
        if self.trials.codec != self.encode.codec:
            raise ValueError(f"trials.codec ({self.trials.codec}) must be encode.codec ({self.encode.codec}); "
                             "set encode.codec only")
        for key, preset in (("encode.preset", self.encode.preset), ("trials.preset", self.trials.preset),
                            ("trials.final_preset", self.trials.final_preset)):
            if preset not in chosen.presets:
                raise ValueError(f"{key} {preset!r} is not a {chosen.encoder} preset; one of "
                                 f"{', '.join(chosen.presets)}")
        if any(c > chosen.max_crf for c in self.trials.crfs):
            raise ValueError(f"trials.crfs {self.trials.crfs} go above {chosen.encoder}'s CRF {chosen.max_crf}")
        if self.ladder.mode != "fixed" and self.trials.final_preset != self.encode.preset:
            raise ValueError(f"trials.final_preset ({self.trials.final_preset}) must be encode.preset "
                             f"({self.encode.preset}): the trials predict the final encodes; set both")
        return self


def codec_overrides(codecs: str) -> dict[str, Any]:
    """``--codec h264,av1`` as [encode] overrides: the SDR ladders' codecs (one: encode.codec, as before)."""
    names = [c.strip() for c in codecs.split(",") if c.strip()]
    return {"codec": names[0] if names else codecs, "codecs": names if len(names) > 1 else []}


def ladder_settings(settings: Settings, codec: CodecName) -> Settings:
    """The settings of one ladder of ``codec``: the title's own for encode.codec; for another codec of a
    multi-ladder title, the same settings with that codec's trial options and CRFs, and its default
    presets unless the title's are names it takes too (x264's and x265's are the same)."""
    if codec == settings.encode.codec:
        return settings
    chosen = CODECS[codec]
    same = CODECS[settings.encode.codec].presets == chosen.presets    # x264 and x265 share preset names

    def preset(value: str, default: str) -> str:
        return value if same and value in chosen.presets else default

    final = preset(settings.encode.preset, chosen.final_preset)
    encode = EncodeConfig.model_validate({**settings.encode.model_dump(), "codec": codec, "codecs": (),
                                          "preset": final})
    trials = TrialConfig.model_validate({**settings.trials.model_dump(), "codec": codec,
                                         "preset": preset(settings.trials.preset, chosen.trial_preset),
                                         "x264_params": chosen.trial_params, "crfs": chosen.trial_crfs,
                                         "final_preset": final})
    return settings.model_copy(update={"encode": encode, "trials": trials})


# Environment variables with our prefix that are not settings (binary overrides, the config path).
_NON_SETTING_ENV = {"REELFLOW_FFMPEG", "REELFLOW_PACKAGER", "REELFLOW_CONFIG", HOME_ENV}


def load_settings(config_file: Path | None = None, **overrides: object) -> Settings:
    """Settings from a TOML file (optional), the environment and overrides; ConfigError if invalid."""
    path = config_file or (Path(os.environ["REELFLOW_CONFIG"]) if os.environ.get("REELFLOW_CONFIG") else None)
    data: dict[str, object] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"config file {path} cannot be read: {exc.strerror or exc}") from exc
    try:
        # The file is the lowest layer, then the environment, then the caller's overrides (a CLI
        # option); sections merge key by key, so an override of one key keeps the file's others.
        merged = _merge(_merge(data, _env_layer()), overrides)
        return Settings.model_validate(merged)
    except ValidationError as exc:
        where = f" in {path}" if path else ""
        first = exc.errors()[0]
        key = ".".join(str(p) for p in first["loc"])
        if not key:  # a rule across sections: its message names the keys
            raise ConfigError(f"invalid settings{where}: {first['msg'].removeprefix('Value error, ')}") from exc
        raise ConfigError(f"invalid setting {key!r}{where}: {first['msg']}") from exc


def _env_layer() -> dict[str, object]:
    """REELFLOW_A__B=v as {"a": {"b": "v"}}; validation happens once, on the merged data."""
    layer: dict[str, object] = {}
    for name, value in os.environ.items():
        if not name.startswith("REELFLOW_") or name in _NON_SETTING_ENV:
            continue
        parts = name.removeprefix("REELFLOW_").lower().split("__")
        node = layer
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"environment variable {name} conflicts with REELFLOW_{part.upper()}")
            node = child
        node[parts[-1]] = value
    return layer


def _merge(base: dict[str, object], over: dict[str, object]) -> dict[str, object]:
    out = dict(base)
    for key, value in over.items():
        current = out.get(key)
        if isinstance(current, dict) and isinstance(value, dict):
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out
