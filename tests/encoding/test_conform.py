"""Picture conform: the pure plan on many cases, then the one pass on derived masters, checked on the file."""
# ruff: noqa: F811  (the masters are session fixtures imported from tests/picture_masters.py)

from __future__ import annotations

import dataclasses
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from picture_masters import (  # noqa: F401  (session fixtures)
    anamorphic_pal,
    hfr_720p5994,
    idet_counts,
    interlaced_1080i25,
    interlaced_1080i2997,
    masters_dir,
    odd_1918,
    prores_alpha,
    rotated_phone,
    telecined,
    vfr_clip,
)
from reelflow.encoding.conform import (
    ConformPlan,
    conform_argv,
    conform_source,
    intermediate_format,
    plan_conform,
    snap_aspect,
    standard_rate,
)
from reelflow.encoding.encode import ladder_for_source
from reelflow.encoding.probe import MediaInfo, VideoStream, probe
from reelflow.encoding.qc import run_qc
from reelflow.errors import StageError
from reelflow.infra.settings import APPLE_HLS_LADDER, ConformConfig, QCConfig

CONFORM = ConformConfig()


def _info(**video: Any) -> MediaInfo:
    base: dict[str, Any] = dict(
        index=0, codec="h264", width=1920, height=1080, fps=Fraction(25), frames=50, duration_s=2.0, start_s=0.0,
        pix_fmt="yuv420p", sar=Fraction(1), dar=Fraction(16, 9), color_primaries="bt709", color_transfer="bt709",
        color_matrix="bt709", color_range="tv", field_order="progressive", bit_depth=8)
    base.update(video)
    if "dar" not in video:
        base["dar"] = Fraction(base["width"], base["height"]) * base["sar"]
    return MediaInfo(path=Path("m.mov"), format_name="mov", size_bytes=1, duration_s=base["duration_s"], bit_rate=None,
                     video=VideoStream(**base))


def _qc(tff: int = 0, bff: int = 0, progressive: int = 50, top: int = 0, bottom: int = 0) -> dict[str, Any]:
    neither = tff + bff + progressive - top - bottom
    return {"measurements": {"video": {
        "idet": {"multi": {"tff": tff, "bff": bff, "progressive": progressive, "undetermined": 0},
                 "repeated": {"neither": neither, "top": top, "bottom": bottom}},
        "interlaced_frames": tff + bff, "progressive_frames": progressive}}}


# --- the plan (pure) -------------------------------------------------------------------------

def test_an_ordinary_progressive_source_needs_no_pass() -> None:
    plan = plan_conform(_info(), _qc(), CONFORM)
    assert plan.steps == () and not plan.needs_pass
    assert (plan.width, plan.height, plan.fps, plan.frames) == (1920, 1080, 25, 50)


def test_interlaced_by_idet_is_deinterlaced_with_its_parity() -> None:
    plan = plan_conform(_info(field_order="tt"), _qc(tff=48, progressive=2), CONFORM)
    step = plan.step("deinterlace")
    assert step is not None and step.filter == "bwdif=mode=send_frame:parity=tff:deint=all"
    assert plan.fps == 25 and plan.frames == 50
    bff = plan_conform(_info(field_order=None), _qc(bff=40, progressive=10), CONFORM).step("deinterlace")
    assert bff is not None and "parity=bff" in str(bff.filter) and "not flagged" in bff.found


def test_double_rate_sends_a_frame_per_field() -> None:
    plan = plan_conform(_info(field_order="tt"), _qc(tff=50, progressive=0), ConformConfig(double_rate=True))
    assert "mode=send_field" in plan.filters[0] and plan.fps == 50 and plan.frames == 100


def test_a_flag_decides_when_idet_cannot_and_psf_is_left_alone() -> None:
    still = plan_conform(_info(field_order="bb"), _qc(progressive=3), CONFORM)   # a still: idet undecided
    assert still.step("deinterlace") is not None and "parity=bff" in still.filters[0]
    psf = plan_conform(_info(field_order="tt"), _qc(progressive=50), CONFORM)    # flagged, frames progressive
    assert psf.steps == ()


def test_telecined_2997_is_inverse_telecined_to_23976() -> None:
    info = _info(fps=Fraction(30000, 1001), frames=60, field_order="tt")
    plan = plan_conform(info, _qc(tff=60, progressive=0, top=12, bottom=12), CONFORM)
    step = plan.step("inverse_telecine")
    assert step is not None and step.filter is not None and step.filter.startswith("fieldmatch=order=tff")
    assert step.filter.endswith("decimate=chroma=0") and "mchroma=0" in step.filter and "24 of 60" in step.found
    assert plan.fps == Fraction(24000, 1001) and plan.frames == 48 and not plan.exact_frames
    off = plan_conform(info, _qc(tff=60, progressive=0, top=12, bottom=12), ConformConfig(inverse_telecine=False))
    assert off.step("inverse_telecine") is None and off.step("deinterlace") is not None
    # repeated fields at 25 fps are not 3:2 pulldown
    pal = plan_conform(_info(field_order="tt"), _qc(tff=50, progressive=0, top=10, bottom=10), CONFORM)
    assert pal.step("inverse_telecine") is None and pal.step("deinterlace") is not None


def test_variable_rate_goes_to_the_nearest_standard_rate() -> None:
    info = _info(fps=Fraction(2789, 100), nominal_fps=Fraction(30), variable_rate=True, frames=56)
    plan = plan_conform(info, _qc(progressive=56), CONFORM)
    step = plan.step("frame_rate")
    assert step is not None and step.filter == "fps=30/1" and plan.fps == 30 and plan.frames == 60
    assert plan.refused is None and "30.000" in step.found
    phone = plan_conform(_info(fps=Fraction(2997, 100), nominal_fps=Fraction(29970, 1000), variable_rate=True),
                         _qc(), CONFORM)
    assert phone.fps == Fraction(30000, 1001)


def test_variable_rate_that_fits_no_standard_rate_is_refused() -> None:
    info = _info(fps=Fraction(14), nominal_fps=Fraction(15), variable_rate=True)
    plan = plan_conform(info, _qc(), CONFORM)
    assert plan.refused is not None and "15.000" in plan.refused and not plan.needs_pass
    with pytest.raises(StageError, match="cannot be conformed"):
        conform_source(Path("m.mov"), info, plan, Path("/nonexistent"))
    allowed = plan_conform(info, _qc(), ConformConfig(standard_rates=("15", "25")))
    assert allowed.refused is None and allowed.fps == 15


def test_standard_rate_and_aspect_snapping() -> None:
    rates = tuple(Fraction(r) for r in CONFORM.standard_rates)
    assert standard_rate(Fraction(24), rates, 0.03) == 24
    assert standard_rate(Fraction(2396, 100), rates, 0.03) == Fraction(24000, 1001)
    assert standard_rate(Fraction(120), rates, 0.03) is None
    assert snap_aspect(Fraction(1918, 1080), 0.01) == (Fraction(16, 9), "16:9")
    assert snap_aspect(Fraction(720 * 40, 33 * 480), 0.01)[1] is None   # NTSC 16:9 with overscan: 1.818, kept


@pytest.mark.parametrize(("size", "sar", "expected"), [
    ((1918, 1080), Fraction(1), (1920, 1080)),
    ((720, 576), Fraction(64, 45), (1024, 576)),
    ((720, 576), Fraction(16, 15), (768, 576)),
    ((1440, 1080), Fraction(4, 3), (1920, 1080)),
    ((1920, 803), Fraction(1), (1920, 804)),
])
def test_odd_and_anamorphic_sizes_become_square_even_pictures(size: tuple[int, int], sar: Fraction,
                                                              expected: tuple[int, int]) -> None:
    plan = plan_conform(_info(width=size[0], height=size[1], sar=sar), _qc(), CONFORM)
    assert (plan.width, plan.height) == expected
    assert plan.filters == (f"scale={expected[0]}:{expected[1]}:flags=lanczos,setsar=1",)


@pytest.mark.parametrize(("rotation", "flt", "size"), [
    (90, "transpose=cclock", (1080, 1920)), (270, "transpose=clock", (1080, 1920)), (180, "hflip,vflip", (1920, 1080)),
])
def test_rotation_turns_the_picture_as_shown(rotation: int, flt: str, size: tuple[int, int]) -> None:
    plan = plan_conform(_info(rotation=rotation), _qc(), CONFORM)
    assert plan.filters == (flt,) and (plan.width, plan.height) == size
    assert "-display_rotation" in conform_argv(Path("m.mov"), _info(rotation=rotation), plan, Path("o.mp4"), CONFORM)


def test_scale_comes_before_the_turn_and_fields_before_both() -> None:
    info = _info(width=720, height=576, sar=Fraction(64, 45), rotation=90, field_order="tt")
    plan = plan_conform(info, _qc(tff=50, progressive=0), CONFORM)
    assert [s.step for s in plan.steps if s.filter] == ["deinterlace", "picture_size", "rotation"]
    assert (plan.width, plan.height) == (576, 1024)


def test_alpha_and_timecode_are_notes_without_a_pass() -> None:
    info = _info(pix_fmt="yuva444p12le", bit_depth=12, alpha=True, timecode="01:00:00:00")
    plan = plan_conform(info, _qc(), CONFORM)
    assert [(s.step, s.filter) for s in plan.steps] == [("alpha", None), ("timecode", None)]
    assert not plan.needs_pass and "01:00:00:00" in plan.steps[1].found
    assert plan.to_list()[0] == {"step": "alpha", "found": "alpha plane (yuva444p12le)",
                                 "action": plan.steps[0].action, "filter": None}


def test_disabled_conform_plans_nothing() -> None:
    plan = plan_conform(_info(rotation=90, field_order="tt"), _qc(tff=50, progressive=0), ConformConfig(enabled=False))
    assert plan.steps == ()


def test_intermediate_keeps_chroma_and_depth_within_the_codec() -> None:
    assert intermediate_format(_info().video, CONFORM) == ("utvideo", "yuv420p")
    assert intermediate_format(_info().video, ConformConfig(intermediate_codec="x264")) == ("x264", "yuv420p")
    ten = _info(pix_fmt="yuv420p10le", bit_depth=10).video
    assert intermediate_format(ten, ConformConfig(intermediate_codec="utvideo")) == ("x264", "yuv420p10le")
    assert intermediate_format(_info(pix_fmt="yuv422p10le", bit_depth=10).video, CONFORM) == ("x264", "yuv422p10le")
    assert intermediate_format(_info(pix_fmt="yuva444p12le", bit_depth=12).video, CONFORM) == ("ffv1", "yuv444p12le")
    forced = ConformConfig(intermediate_codec="x264")
    assert intermediate_format(_info(pix_fmt="yuva444p12le", bit_depth=12).video, forced) == ("x264", "yuv444p10le")
    assert intermediate_format(_info(pix_fmt="gbrp10le", bit_depth=10).video, CONFORM) == ("x264", "yuv444p10le")


def test_portrait_rungs_take_the_ladder_heights_as_their_short_side() -> None:
    portrait = _info(width=1080, height=1920).video
    rungs = ladder_for_source(portrait, APPLE_HLS_LADDER)
    assert (rungs[0].width, rungs[0].height) == (234, 416) and (rungs[-1].width, rungs[-1].height) == (1080, 1920)
    assert all(r.width % 2 == 0 and r.height % 2 == 0 and r.width < r.height for r in rungs)
    four_three = ladder_for_source(_info(width=1440, height=1080).video, APPLE_HLS_LADDER)
    assert [(r.width, r.height) for r in four_three][:2] == [(312, 234), (480, 360)]


# --- QC with the conform -----------------------------------------------------------------------

def test_qc_calls_what_conform_resolves_info(interlaced_1080i25: Path, vfr_clip: Path) -> None:
    report = run_qc(interlaced_1080i25, conform=CONFORM)
    check = report.check("interlacing")
    assert check.severity == "info" and "bwdif" in check.message and "conform" in check.message
    assert report.measurements["conform"]["steps"][0]["step"] == "deinterlace"
    assert run_qc(interlaced_1080i25).check("interlacing").severity == "warning"  # without conform: as before
    vfr = run_qc(vfr_clip, conform=CONFORM)
    assert vfr.check("frame_rate").severity == "info" and not vfr.errors
    assert run_qc(vfr_clip).check("frame_rate").severity == "error"
    refusing = run_qc(vfr_clip, conform=ConformConfig(standard_rates=("50", "60")))
    refused = refusing.check("frame_rate")
    assert refused.severity == "error" and "no standard rate" in refused.message


# --- the pass, on derived masters ----------------------------------------------------------------

def _conformed(master: Path, tmp: Path,
               config: ConformConfig = CONFORM) -> tuple[ConformPlan, Path, MediaInfo, MediaInfo]:
    info = probe(master)
    plan = plan_conform(info, run_qc(master, info=info, conform=config), config, QCConfig())
    out, conformed = conform_source(master, info, plan, tmp, config=config)
    return plan, out, info, conformed


def test_1080i25_mxf_becomes_progressive_25p(interlaced_1080i25: Path, ffmpeg: str, tmp_path: Path) -> None:
    assert idet_counts(ffmpeg, interlaced_1080i25)["tff"] >= 20   # the master is genuinely interlaced
    plan, out, info, got = _conformed(interlaced_1080i25, tmp_path)
    assert plan.step("deinterlace") is not None and out != interlaced_1080i25
    counts = idet_counts(ffmpeg, out)
    assert counts["tff"] + counts["bff"] <= 2 and counts["progressive"] >= 20
    assert (got.video.width, got.video.height, got.video.fps, got.video.frames) == (1920, 1080, 25, info.video.frames)
    in_file = probe(out).video   # the tags in the intermediate itself (Ut Video in MOV: all but the range)
    assert (in_file.color_primaries, in_file.color_transfer, in_file.color_matrix) == ("bt709", "bt709", "bt709")
    assert got.video.color_range == info.video.color_range
    assert interlaced_1080i25.stat().st_size == info.size_bytes   # the source is never touched


def test_1080i2997_h264_double_rate(interlaced_1080i2997: Path, ffmpeg: str, tmp_path: Path) -> None:
    _, out, info, got = _conformed(interlaced_1080i2997, tmp_path, ConformConfig(double_rate=True))
    assert got.video.fps == Fraction(60000, 1001) and got.video.frames == 2 * info.video.frames
    counts = idet_counts(ffmpeg, out)
    assert counts["tff"] + counts["bff"] <= 2


def test_telecined_2997_comes_back_as_23976(telecined: Path, ffmpeg: str, tmp_path: Path) -> None:
    plan, out, info, got = _conformed(telecined, tmp_path)
    assert plan.step("inverse_telecine") is not None
    assert got.video.fps == Fraction(24000, 1001)
    assert abs(got.video.frames - info.video.frames * 4 / 5) <= 2
    counts = idet_counts(ffmpeg, out)
    assert counts["tff"] + counts["bff"] <= 2


def test_rotated_phone_clip_is_stored_upright(rotated_phone: Path, ffmpeg: str, tmp_path: Path) -> None:
    _, out, info, got = _conformed(rotated_phone, tmp_path)
    assert info.video.rotation == 90 and (info.video.width, info.video.height) == (640, 360)
    assert (got.video.width, got.video.height, got.video.rotation) == (360, 640, 0)
    assert not got.audio   # audio stays with the source
    # the same picture ffmpeg shows when it applies the display matrix itself
    with av.open(str(out)) as mine:
        ours = next(mine.decode(video=0)).to_ndarray(format="gray")
    shown = _first_frame_gray(ffmpeg, rotated_phone, 360, 640)
    assert ours.shape == (640, 360) and abs(ours.astype(int) - shown.astype(int)).mean() < 1.0


def _first_frame_gray(ffmpeg: str, path: Path, width: int, height: int) -> Any:
    import subprocess

    import numpy as np

    raw = subprocess.run([ffmpeg, "-v", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo",
                          "-pix_fmt", "gray", "-"], capture_output=True, check=True).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width)


def test_vfr_clip_becomes_constant_30(vfr_clip: Path, tmp_path: Path) -> None:
    _, _, info, got = _conformed(vfr_clip, tmp_path)
    assert info.video.variable_rate and info.video.nominal_fps == 30
    assert got.video.fps == 30 and not got.video.variable_rate
    assert abs(got.video.frames - round(info.video.duration_s * 30)) <= 2


def test_720p5994_is_left_as_it_is(hfr_720p5994: Path, tmp_path: Path) -> None:
    plan, out, info, got = _conformed(hfr_720p5994, tmp_path)
    assert out == hfr_720p5994 and got == info and plan.fps == Fraction(60000, 1001)
    assert not list(tmp_path.iterdir())   # nothing written


def test_odd_and_anamorphic_masters_get_square_standard_sizes(odd_1918: Path, anamorphic_pal: Path,
                                                              tmp_path: Path) -> None:
    _, _, _, wide = _conformed(odd_1918, tmp_path)
    assert (wide.video.width, wide.video.height, wide.video.sar) == (1920, 1080, 1)
    assert wide.video.color_primaries == "bt709"
    _, _, _, pal = _conformed(anamorphic_pal, tmp_path)
    assert (pal.video.width, pal.video.height, pal.video.sar) == (1024, 576, 1)


def test_prores_alpha_keeps_depth_and_notes_alpha_and_timecode(prores_alpha: Path, tmp_path: Path) -> None:
    info = probe(prores_alpha)
    assert info.video.alpha and info.video.timecode == "01:00:00:00" and info.video.bit_depth >= 10
    # a rotation added to make a pass: the intermediate must keep the depth and drop the alpha
    turned = dataclasses.replace(info, video=dataclasses.replace(info.video, rotation=180))
    plan = plan_conform(turned, None, CONFORM)
    assert [s.step for s in plan.steps] == ["rotation", "alpha", "timecode"]
    out, got = conform_source(prores_alpha, turned, plan, tmp_path)
    assert not got.video.alpha and got.video.bit_depth == info.video.bit_depth
    assert got.video.pix_fmt == plan.pix_fmt == "yuv444p12le" and got.video.color_primaries == "bt709"
    again, _ = conform_source(prores_alpha, turned, plan, tmp_path)   # content-addressed: reused
    assert again == out and len(list(tmp_path.iterdir())) == 1


def test_cli_ladder_plans_on_the_conformed_picture(rotated_phone: Path, tmp_path: Path) -> None:
    """`reelflow ladder` outside the ingest conforms too: a rotated phone clip gets portrait rungs."""
    import json
    import os
    import subprocess
    import sys

    config = tmp_path / "reelflow.toml"
    config.write_text(f'[storage]\nwork_dir = "{tmp_path / "work"}"\n')
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ladder", str(rotated_phone), "--mode", "fixed",
                           "--json"], capture_output=True, text=True, check=False,
                          env={**os.environ, "REELFLOW_CONFIG": str(config)})
    assert done.returncode == 0, done.stderr[-3000:]
    rungs = json.loads(done.stdout)["rungs"]
    assert [(r["width"], r["height"]) for r in rungs] == [(234, 416), (360, 640)]


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("flip", ["-display_hflip", "-display_vflip"])
def test_a_mirrored_display_matrix_is_shown_as_ffmpeg_shows_it(rotation: int, flip: str, sintel_fight: Path,
                                                                 ffmpeg: str, tmp_path: Path) -> None:
    """Every turn with either flip: the conformed picture's frames equal ffmpeg's own autorotated decode."""
    source = tmp_path / "mirrored.mp4"
    subprocess.run([ffmpeg, "-v", "error", "-y", "-display_rotation", str(rotation), flip, "-i", str(sintel_fight),
                    "-t", "0.2", "-c", "copy", str(source)], check=True)
    info = probe(source)
    assert info.video.mirrored
    plan = plan_conform(info, _qc(), CONFORM)
    assert plan.step("rotation") is not None and "mirrors" in plan.step("rotation").found
    conformed, _ = conform_source(source, info, plan, tmp_path / "work", config=CONFORM, source_sha="ab" * 32)

    def frames(path: Path, *options: str) -> list[str]:
        done = subprocess.run([ffmpeg, "-v", "error", *options, "-i", str(path), "-frames:v", "3", "-pix_fmt",
                               "yuv420p", "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
        return [line.rsplit(",", 1)[-1] for line in done.stdout.splitlines() if not line.startswith("#")]

    assert frames(conformed) == frames(source)     # ffmpeg applies the source's matrix when it decodes
    assert not probe(conformed).video.mirrored and probe(conformed).video.rotation == 0
