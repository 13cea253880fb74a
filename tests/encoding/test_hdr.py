"""HDR: probe's side data, the encoder options of HDR rungs, the tone map's filter, QC, multi-ladder settings."""

from __future__ import annotations

import dataclasses
import struct
from fractions import Fraction
from pathlib import Path

import av
import pytest

from hdr_masters import MAX_CLL, hdr10_360p  # noqa: F401  (fixture)
from reelflow.encoding import hdr, qc
from reelflow.encoding.codecs import codec, codec_for
from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, fixed_ladder, keyframe_frames
from reelflow.encoding.probe import ContentLight, MasteringDisplay, VideoStream, mastering_display_from_bytes, probe
from reelflow.encoding.tonemap import intermediate_size, peak_nits, tonemap_filter, tonemap_source
from reelflow.errors import ConfigError, StageError
from reelflow.infra.settings import EncodeConfig, QCConfig, ToneMapConfig, ladder_settings, load_settings

P3_D65 = MasteringDisplay(red=(0.68, 0.32), green=(0.265, 0.69), blue=(0.15, 0.06), white_point=(0.3127, 0.329),
                          min_luminance=0.0001, max_luminance=1000.0)


def _stream(**changes: object) -> VideoStream:
    base = VideoStream(index=0, codec="hevc", width=1920, height=1080, fps=Fraction(24), frames=24, duration_s=1.0,
                       start_s=0.0, pix_fmt="yuv420p10le", sar=Fraction(1), dar=Fraction(16, 9),
                       color_primaries="bt2020", color_transfer="smpte2084", color_matrix="bt2020nc",
                       color_range="tv", field_order="progressive", bit_depth=10,
                       mastering_display=P3_D65, content_light=ContentLight(1000, 400))
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_mastering_display_side_data_is_read_as_ffmpeg_lays_it_out() -> None:
    # AVMasteringDisplayMetadata: R, G, B, white point (num, den pairs), min, max luminance, flags
    raw = struct.pack("=20i2i", 34000, 50000, 16000, 50000, 13250, 50000, 34500, 50000, 7500, 50000, 3000, 50000,
                      15635, 50000, 16450, 50000, 1, 10000, 10000000, 10000, 1, 1)
    md = mastering_display_from_bytes(raw)
    assert md is not None and md.red == (0.68, 0.32) and md.green == (0.265, 0.69)
    assert md.white_point == pytest.approx((0.3127, 0.329)) and md.max_luminance == 1000 and md.min_luminance == 0.0001
    assert mastering_display_from_bytes(raw[:-8] + struct.pack("=2i", 0, 0)) is None   # flags off: nothing known


def test_x265_and_svtav1_options_of_an_hdr10_rung() -> None:
    signal = hdr.hdr_signal(_stream())
    assert signal is not None and signal.range == "pq"
    assert hdr.x265_master_display(P3_D65) == "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
    x265 = hdr.x265_params(signal)
    assert {"hdr10=1", "hdr10-opt=1", "colorprim=bt2020", "transfer=smpte2084", "colormatrix=bt2020nc",
            "max-cll=1000,400"} <= set(x265)
    svt = hdr.svtav1_params(signal)
    assert {"color-primaries=9", "transfer-characteristics=16", "matrix-coefficients=9", "content-light=1000,400",
            "mastering-display=G(0.2650,0.6900)B(0.1500,0.0600)R(0.6800,0.3200)WP(0.3127,0.3290)"
            "L(1000.0000,0.0001)"} <= set(svt)
    hevc = codec_for("hevc", _stream())
    args = hevc.args("medium", 22, 96)
    assert args[args.index("-profile:v") + 1] == "main10" and hevc.pix_fmt == "yuv420p10le"
    assert "repeat-headers=1" in args[args.index("-x265-params") + 1]
    fixed = hevc.fixed_args("medium", 3000, 4500, 6000, 96)
    assert fixed[fixed.index("-tag:v") + 1] == "hvc1" and "hdr10=1" in fixed[fixed.index("-x265-params") + 1]


def test_hlg_has_no_static_metadata_and_h264_no_hdr() -> None:
    hlg = _stream(color_transfer="arib-std-b67")
    signal = hdr.hdr_signal(hlg)
    assert signal is not None and signal.range == "hlg" and signal.mastering_display is None
    assert "transfer=arib-std-b67" in hdr.x265_params(signal) and "hdr10=1" not in hdr.x265_params(signal)
    assert "transfer-characteristics=18" in hdr.svtav1_params(signal)
    with pytest.raises(ValueError, match="SDR only"):
        codec_for("h264", hlg)
    sdr = codec_for("h264", _stream(color_primaries="bt709", color_transfer="bt709", color_matrix="bt709"))
    assert sdr.hdr is None and sdr.pix_fmt == "yuv420p"


def test_fixed_ladders_scale_apples_h264_rates_per_codec_and_range() -> None:
    config = EncodeConfig()
    sdr = _stream(color_transfer="bt709", color_primaries="bt709", color_matrix="bt709")
    h264 = fixed_ladder(sdr, config, codec("h264"))
    av1 = fixed_ladder(sdr, config, codec("av1"))
    hevc_hdr = fixed_ladder(_stream(), config, codec_for("hevc", _stream()))
    assert [r.kbps for r in av1] == [round(r.kbps * 0.6) for r in h264]
    assert [r.kbps for r in hevc_hdr] == [round(r.kbps * 0.72) for r in h264]


def test_tonemap_peak_follows_maxcll_then_mastering_then_the_default() -> None:
    config = ToneMapConfig()

    def info(v: VideoStream) -> object:
        return type("Info", (), {"video": v, "path": Path("x.mov")})()

    assert peak_nits(info(_stream(content_light=ContentLight(600, 200))), config) == 600  # type: ignore[arg-type]
    assert peak_nits(info(_stream(content_light=None)), config) == 1000  # type: ignore[arg-type]
    assert peak_nits(info(_stream(content_light=None, mastering_display=None)), config) == 1000  # type: ignore[arg-type]
    assert peak_nits(info(_stream(color_transfer="arib-std-b67")), config) == config.hlg_peak_nits  # type: ignore[arg-type]
    chain = tonemap_filter(info(_stream(content_light=ContentLight(4000, 400))),  # type: ignore[arg-type]
                           ToneMapConfig(operator="mobius", param=0.3, desat=2))
    assert "tonemap=mobius:desat=2:peak=40:param=0.3" in chain and "zscale=tin=smpte2084" in chain
    assert chain.endswith("type=CONTENT_LIGHT_LEVEL[sdr]")  # no HDR metadata follows the SDR frames
    uhd = info(_stream(width=3840, height=2160))
    assert intermediate_size(uhd, config) == (1920, 1080)  # type: ignore[arg-type]
    assert "scale=1920:1080:flags=area" in tonemap_filter(uhd, config)  # type: ignore[arg-type]
    assert intermediate_size(uhd, ToneMapConfig(max_height=0)) is None  # type: ignore[arg-type]
    with pytest.raises(StageError, match="nothing to tone-map"):
        peak_nits(info(_stream(color_transfer="bt709")), config)  # type: ignore[arg-type]


def test_qc_passes_hdr_and_reports_dolby_vision() -> None:
    config = QCConfig()
    assert qc._hdr(_stream(), config).passed
    missing = qc._hdr(_stream(mastering_display=None), config)
    assert not missing.passed and missing.severity == "info" and "mastering display" in missing.message
    assert qc._hdr(_stream(color_transfer="arib-std-b67", mastering_display=None, content_light=None), config).passed
    dv = qc._dolby_vision(_stream(dolby_vision=True), config)
    assert not dv.passed and dv.severity == "warning"
    assert dv.message == "Dolby Vision RPU present: not carried, the HDR10 base layer is published"
    assert qc._dolby_vision(_stream(), config).passed


def test_settings_name_the_ladders_and_refuse_unknown_codecs() -> None:
    settings = load_settings(encode={"codecs": ["h264", "av1"], "preset": "veryfast"})
    assert settings.encode.codec == "h264" and settings.encode.sdr_codecs == ("h264", "av1")
    assert settings.encode.hdr_codecs == ("hevc",)
    av1 = ladder_settings(settings, "av1")
    assert (av1.encode.codec, av1.encode.preset, av1.trials.codec, av1.trials.crfs) == ("av1", "8", "av1", (28, 38, 48))
    assert ladder_settings(settings, "hevc").encode.preset == "veryfast"    # x265 takes x264's preset names
    assert load_settings(encode={"codec": "hevc"}).encode.sdr_codecs == ("hevc",)   # old configs keep working
    for bad in ({"codecs": ["h264", "vp8"]}, {"hdr_codecs": ["h264"]}, {"codec": "av1", "codecs": ["h264", "av1"]}):
        with pytest.raises(ConfigError):
            load_settings(encode=bad)


@pytest.fixture(scope="module")
def small_hdr10(hdr10_360p: Path) -> Path:  # noqa: F811
    return hdr10_360p


def test_probe_reads_hdr10_metadata_from_the_first_frame(small_hdr10: Path) -> None:
    v = probe(small_hdr10).video
    assert v.hdr and v.bit_depth == 10 and not v.dolby_vision
    assert v.mastering_display == P3_D65 and v.content_light == ContentLight(*MAX_CLL)


def test_per_shot_hdr_rungs_join_and_keep_their_metadata(small_hdr10: Path, tmp_path: Path) -> None:
    """HEVC pieces at their own CRFs joined (hev1, in-band headers) and AV1: both 10-bit PQ with HDR10 SEI/OBUs."""
    info = probe(small_hdr10)
    keyframes = keyframe_frames([0, 12], info.video.frames, info.video.fps, 4.0)
    pieces = [ShotCrf(0, 12, 30), ShotCrf(12, info.video.frames, 36)]
    for name, preset in (("hevc", "ultrafast"), ("av1", "12")):
        out = encode_rung_per_shot(small_hdr10, info, 320, 180, pieces, keyframes, preset, tmp_path / f"{name}.mp4",
                                   codec=name)  # type: ignore[arg-type]
        v = probe(out.path).video
        assert (v.bit_depth, v.color_primaries, v.color_transfer, v.color_matrix) == \
            (10, "bt2020", "smpte2084", "bt2020nc"), name
        assert v.mastering_display is not None and v.content_light == ContentLight(*MAX_CLL), name
        # the second piece, after the join, still decodes with its metadata (in-band with its keyframe)
        with av.open(str(out.path)) as container:
            frames = list(container.decode(video=0))
        assert len(frames) == info.video.frames
        kinds = {getattr(k, "name", str(k)) for k in frames[12].side_data}
        assert "MASTERING_DISPLAY_METADATA" in kinds, (name, kinds)


def test_tone_mapped_intermediate_is_verified_and_reused(small_hdr10: Path, tmp_path: Path) -> None:
    info = probe(small_hdr10)
    made = tonemap_source(info, "sha", ToneMapConfig(), tmp_path)
    v = made.info.video
    assert (v.codec, v.bit_depth, v.color_primaries, v.color_transfer, v.frames) == \
        ("utvideo", 8, "bt709", "bt709", info.video.frames)
    assert v.mastering_display is None and made.peak_nits == MAX_CLL[0] and made.cpu_s > 0
    again = tonemap_source(info, "sha", ToneMapConfig(), tmp_path)
    assert again.path == made.path and again.cpu_s == 0                       # found, checked, not made again
    assert tonemap_source(info, "sha", ToneMapConfig(operator="mobius"), tmp_path).path != made.path
