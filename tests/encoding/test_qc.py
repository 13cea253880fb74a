"""QC: every check fires on a purpose-made bad input and stays quiet (or as documented) on the real clips."""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.probe import VideoStream, probe
from reelflow.encoding.qc import (
    Check,
    QCReport,
    _idet_multi,
    _merge_runs,
    colour_findings,
    judge,
    qc_argv,
    qc_chunks,
    run_qc,
    run_qc_split,
)
from reelflow.errors import InvalidMedia, SourceNotFound, ToolFailed
from reelflow.infra import tools
from reelflow.infra.settings import ConformConfig, QCConfig

LavfiMaker = Callable[..., Path]

# ---------------------------------------------------------------------------------------------
# Purpose-made inputs: testsrc2 at 160x120, whose one-pixel detail idet calls interlaced at
# ffmpeg's default threshold, so the clean clip also guards QCConfig.interlace_comb_ratio.


def _video(seconds: float, rate: int = 25) -> str:
    return f"testsrc2=s=160x120:r={rate}:d={seconds}"


_TONE = "sine=f=1000:r=48000:d={d}"  # -18 dBFS peak, about -21 LUFS: inside every audio window
_X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
         # tagged so the colour check has nothing to say about the clean clips
         "-x264-params", "colorprim=bt709:transfer=bt709:colormatrix=bt709"]
_AAC = ["-c:a", "aac"]


def _av(video: str, audio: str, *extra: str) -> list[str]:
    return ["-f", "lavfi", "-i", video, "-f", "lavfi", "-i", audio, *_X264, *_AAC, *extra]


@pytest.fixture(scope="session")
def made(lavfi_clip: LavfiMaker) -> Callable[[str], Path]:
    """Each purpose-made clip by name, generated once per session."""
    recipes: dict[str, list[str]] = {
        "clean.mp4": _av(_video(6), _TONE.format(d=6)),
        # 2 s picture, 3 s black, 2 s picture
        "black_gap.mp4": [
            "-filter_complex",
            f"{_video(2)}[a];color=c=black:s=160x120:r=25:d=3[b];{_video(2)}[c];[a][b][c]concat=n=3:v=1:a=0[v]",
            "-f", "lavfi", "-i", _TONE.format(d=7), "-map", "[v]", "-map", "0:a", *_X264, *_AAC,
        ],
        "all_black.mp4": _av("color=c=black:s=160x120:r=25:d=5", _TONE.format(d=5)),
        # frame 50 (2 s) held for 4 s, then the picture moves on
        "frozen.mp4": _av(f"{_video(4)},loop=loop=100:size=1:start=50,setpts=N/25/TB", _TONE.format(d=8)),
        "quiet.mp4": _av(_video(6), _TONE.format(d=6) + ",volume=-30dB"),
        # a moderate tone with a 20 ms burst driven 1.6 dB past full scale: clipped in 16-bit PCM
        "clipped.mkv": [
            "-f", "lavfi", "-i", _video(6), "-f", "lavfi", "-i",
            r"aevalsrc=0.1*sin(2*PI*1000*t)*if(between(t\,3\,3.02)\,12\,1):s=48000:d=6",
            *_X264, "-c:a", "pcm_s16le",
        ],
        # 7 s of digital silence in the middle of a 13 s tone
        "silence_gap.mp4": _av(_video(13), _TONE.format(d=13) + ",volume=0:enable='between(t,3,10)'"),
        "silent_track.mp4": _av(_video(6), "anullsrc=r=48000:cl=stereo:d=6"),
        "late_audio_1500ms.mp4": ["-f", "lavfi", "-i", _video(6), "-itsoffset", "1.5", "-f", "lavfi", "-i",
                                  _TONE.format(d=6), *_X264, *_AAC],
        "late_audio_300ms.mp4": ["-f", "lavfi", "-i", _video(6), "-itsoffset", "0.3", "-f", "lavfi", "-i",
                                 _TONE.format(d=6), *_X264, *_AAC],
        "short_audio_3s.mp4": _av(_video(8), _TONE.format(d=5)),
        "short_audio_1s.mp4": _av(_video(8), _TONE.format(d=7)),
        # 50 fields/s woven into 25 interlaced frames, coded as interlaced, top field first
        "interlaced.mp4": [
            "-f", "lavfi", "-i", f"{_video(4, rate=50)},tinterlace=mode=interleave_top,setfield=tff",
            "-f", "lavfi", "-i", _TONE.format(d=4), *_X264, "-flags", "+ildct+ilme", *_AAC,
        ],
        # progressive pictures coded as interlaced (PsF): the flag is wrong, the picture is fine
        "flagged_interlaced.mp4": _av("testsrc2=s=320x240:r=25:d=4", _TONE.format(d=4), "-flags", "+ildct+ilme"),
        # PQ transfer on BT.709 primaries, in 8 bits: an HDR tag that cannot be true
        "hdr_mistag.mp4": [
            "-f", "lavfi", "-i", _video(3), "-f", "lavfi", "-i", _TONE.format(d=3),
            "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
            "-x264-params", "colorprim=bt709:transfer=smpte2084:colormatrix=bt709", *_AAC,
        ],
        "no_audio.mp4": ["-f", "lavfi", "-i", _video(4), *_X264],
        # a consistent HDR10 master: 10-bit HEVC, PQ on BT.2020; true, but not for an SDR ladder
        "hdr10.mp4": [
            "-f", "lavfi", "-i", _video(3), "-f", "lavfi", "-i", _TONE.format(d=3),
            "-c:v", "libx265", "-pix_fmt", "yuv420p10le",
            "-x265-params", "log-level=error:colorprim=bt2020:transfer=smpte2084:colormatrix=bt2020nc:range=limited",
            *_AAC,
        ],
        # 24 fps for 3 s, then 12 fps for 3 s, kept variable
        "vfr.mp4": [
            "-f", "lavfi", "-i", _video(3, rate=24), "-f", "lavfi", "-i", _video(3, rate=12),
            "-f", "lavfi", "-i", _TONE.format(d=6),
            "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-map", "2:a", "-fps_mode", "vfr",
            *_X264, *_AAC,
        ],
        # a good main track and an empty second language: each stream is judged on its own
        "second_track_silent.mp4": [
            "-f", "lavfi", "-i", _video(6), "-f", "lavfi", "-i", _TONE.format(d=6),
            "-f", "lavfi", "-i", "anullsrc=r=48000:cl=stereo:d=6", "-map", "0", "-map", "1", "-map", "2",
            *_X264, *_AAC,
        ],
    }

    def get(name: str) -> Path:
        return lavfi_clip(name, *recipes[name])

    return get


_reports: dict[tuple[str, QCConfig], QCReport] = {}


def _qc(path: Path, config: QCConfig | None = None) -> QCReport:
    """run_qc once per (file, config) per session."""
    key = (str(path), config or QCConfig())
    if key not in _reports:
        _reports[key] = run_qc(path, key[1])
    return _reports[key]


def _fired(report: QCReport) -> dict[str, str]:
    return {c.name: c.severity for c in report.failed}


# ---------------------------------------------------------------------------------------------
# Each check fires on its bad input, with its severity, and nothing else fires.


def test_clean_clip_passes_every_check(made: Callable[[str], Path]) -> None:
    report = _qc(made("clean.mp4"))
    assert report.verdict == "pass" and report.failed == [], report.failed
    names = {c.name for c in report.checks}
    assert names == {"decode_errors", "black_segments", "frozen_segments", "interlacing", "colour_metadata",
                     "frame_rate", "hdr", "dolby_vision",
                     "audio_present", "loudness", "loudness_range", "true_peak", "silence", "av_start_offset",
                     "duration_mismatch"}
    assert report.measurements["audio"][0]["integrated_lufs"] == pytest.approx(-21, abs=1.5)


def test_black_gap_fires_once_as_black_not_frozen(made: Callable[[str], Path]) -> None:
    report = _qc(made("black_gap.mp4"))
    assert _fired(report) == {"black_segments": "warning"}
    (segment,) = report.check("black_segments").segments
    assert segment == pytest.approx((2.0, 5.0), abs=0.1)


def test_all_black_source_is_an_error(made: Callable[[str], Path]) -> None:
    report = _qc(made("all_black.mp4"))
    assert _fired(report) == {"black_segments": "error"}
    assert report.verdict == "error" and "black for" in report.errors[0].message


def test_frozen_segment(made: Callable[[str], Path]) -> None:
    report = _qc(made("frozen.mp4"))
    assert _fired(report) == {"frozen_segments": "warning"}
    (segment,) = report.check("frozen_segments").segments
    assert segment == pytest.approx((2.0, 6.0), abs=0.2)  # a lossy encode settles over a few frames


def test_quiet_mix_fires_loudness(made: Callable[[str], Path]) -> None:
    report = _qc(made("quiet.mp4"))
    assert _fired(report) == {"loudness": "warning"}
    assert report.check("loudness").value == pytest.approx(-51, abs=1.5)


def test_clipped_burst_fires_true_peak_only(made: Callable[[str], Path]) -> None:
    report = _qc(made("clipped.mkv"))
    assert _fired(report) == {"true_peak": "warning"}
    peak = report.check("true_peak").value
    assert isinstance(peak, float) and peak > -1.0


def test_silence_in_the_middle(made: Callable[[str], Path]) -> None:
    report = _qc(made("silence_gap.mp4"))
    assert _fired(report) == {"silence": "warning"}
    (segment,) = report.check("silence").segments
    assert segment == pytest.approx((3.0, 10.0), abs=0.1)


def test_silent_track_fires_silence_and_loudness(made: Callable[[str], Path]) -> None:
    report = _qc(made("silent_track.mp4"))
    assert _fired(report) == {"silence": "warning", "loudness": "warning"}
    assert "silent for" in report.check("silence").message
    assert report.check("true_peak").passed  # -inf is no peak, and JSON gets None for it
    assert report.measurements["audio"][0]["true_peak_dbtp"] is None
    assert QCReport.from_dict(json.loads(json.dumps(report.to_dict(), allow_nan=False))) == report


@pytest.mark.parametrize(("name", "severity"), [("late_audio_1500ms.mp4", "error"),
                                                ("late_audio_300ms.mp4", "warning")])
def test_late_audio_start(made: Callable[[str], Path], name: str, severity: str) -> None:
    report = _qc(made(name))
    assert _fired(report) == {"av_start_offset": severity}
    expected = 1.5 if severity == "error" else 0.3
    assert report.check("av_start_offset").value == pytest.approx(expected, abs=0.03)  # less AAC priming


@pytest.mark.parametrize(("name", "severity"), [("short_audio_3s.mp4", "error"),
                                                ("short_audio_1s.mp4", "warning")])
def test_audio_shorter_than_video(made: Callable[[str], Path], name: str, severity: str) -> None:
    report = _qc(made(name))
    assert _fired(report) == {"duration_mismatch": severity}


def test_interlaced_content(made: Callable[[str], Path]) -> None:
    report = _qc(made("interlaced.mp4"))
    assert _fired(report) == {"interlacing": "warning"}
    check = report.check("interlacing")
    assert check.value == pytest.approx(1.0, abs=0.1) and "TFF" in check.message and "flagged tt" in check.message


def test_progressive_content_flagged_interlaced_only_informs(made: Callable[[str], Path]) -> None:
    report = _qc(made("flagged_interlaced.mp4"))
    assert probe(made("flagged_interlaced.mp4")).video.field_order == "tt"
    assert _fired(report) == {"interlacing": "info"}
    assert "look progressive" in report.check("interlacing").message


def test_hdr_tags_on_sdr_primaries_are_an_error(made: Callable[[str], Path]) -> None:
    report = _qc(made("hdr_mistag.mp4"))
    assert _fired(report) == {"colour_metadata": "error", "hdr": "info"}
    message = report.check("colour_metadata").message
    assert "smpte2084 with bt709 primaries" in message and "8-bit" in message


def test_hdr10_without_mastering_metadata_passes_with_a_note(made: Callable[[str], Path]) -> None:
    """Tags are consistent: the source passes (HDR ladder + SDR fallback), noting the metadata it lacks."""
    report = _qc(made("hdr10.mp4"))
    assert _fired(report) == {"hdr": "info"}
    assert report.verdict != "error"
    assert "mastering display" in report.check("hdr").message


def test_variable_frame_rate_is_an_error(made: Callable[[str], Path]) -> None:
    report = _qc(made("vfr.mp4"))
    assert _fired(report) == {"frame_rate": "error"}
    assert "-fps_mode cfr" in report.check("frame_rate").message


def test_no_audio_stream(made: Callable[[str], Path]) -> None:
    report = _qc(made("no_audio.mp4"))
    assert _fired(report) == {"audio_present": "warning"}
    assert report.check("av_start_offset").passed and report.check("duration_mismatch").passed
    assert "loudness" not in {c.name for c in report.checks}


def test_each_audio_stream_is_judged(made: Callable[[str], Path]) -> None:
    report = _qc(made("second_track_silent.mp4"))
    assert _fired(report) == {"silence": "warning", "loudness": "warning"}
    assert "audio #2" in report.check("silence").message and "#1" not in report.check("silence").message
    first, second = report.measurements["audio"]
    assert first["integrated_lufs"] == pytest.approx(-21, abs=1.5) and second["integrated_lufs"] == -70.0


@pytest.fixture(scope="session")
def damaged(talking_head: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The talking head with 200-byte runs of noise across the middle fifth of its bytes."""
    out = tmp_path_factory.mktemp("damaged") / "talking_head_damaged.mp4"
    data = bytearray(talking_head.read_bytes())
    rnd = random.Random(1)
    for offset in range(len(data) * 2 // 5, len(data) * 3 // 5, 20_000):
        data[offset:offset + 200] = bytes(rnd.randrange(256) for _ in range(200))
    out.write_bytes(bytes(data))
    return out


def test_damaged_clip_is_a_report_not_an_exception(damaged: Path) -> None:
    probe(damaged)  # still probes: only decoding finds the damage
    report = _qc(damaged)
    assert report.verdict == "error"
    check = report.check("decode_errors")
    assert check.severity == "error" and not check.passed
    assert isinstance(check.value, int) and check.value > 5
    lines = report.measurements["decode_errors"]["lines"]
    assert lines and all("[error]" in line for line in lines)
    json.dumps(report.to_dict())  # quarantined with its report, so the report must serialise


def test_ffmpeg_failing_partway_is_a_report(made: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(argv: list[str], **_: Any) -> Any:
        raise ToolFailed(argv, 69, "[h264 @ 0x1] [error] Invalid data found when processing input\n")

    monkeypatch.setattr(tools, "run", fail)
    report = run_qc(made("clean.mp4"))
    assert report.verdict == "error" and report.errors[0].name == "decode_errors"
    assert "decoding stopped" in report.errors[0].message
    # Probe-based checks still stand; decode-based ones are absent rather than falsely passed.
    names = {c.name for c in report.checks}
    assert {"colour_metadata", "av_start_offset"} <= names and "black_segments" not in names


def test_timeout_is_raised_not_blamed_on_the_source(made: Callable[[str], Path],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(argv: list[str], **_: Any) -> Any:
        raise ToolFailed(argv, -1, "timed out after 120 s")

    monkeypatch.setattr(tools, "run", hang)
    with pytest.raises(ToolFailed):
        run_qc(made("clean.mp4"))


# ---------------------------------------------------------------------------------------------
# Bad input raises what probe raises.


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        run_qc(tmp_path / "nope.mp4")


def test_missing_file_with_info_given(made: Callable[[str], Path], tmp_path: Path) -> None:
    info = probe(made("clean.mp4"))
    with pytest.raises(SourceNotFound):
        run_qc(tmp_path / "gone.mp4", info=info)


@pytest.mark.parametrize(("content", "match"), [(b"", "empty"), (b"hello, not a video\n" * 50, "not a media")])
def test_not_a_video(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.mp4"
    path.write_bytes(content)
    with pytest.raises(InvalidMedia, match=match):
        run_qc(path)


# ---------------------------------------------------------------------------------------------
# Config drives thresholds and severities.


def test_thresholds_and_severities_come_from_config(made: Callable[[str], Path]) -> None:
    clip = made("black_gap.mp4")
    assert _qc(clip, QCConfig(black_min_s=4.0)).failed == []
    strict = _qc(clip, QCConfig(black_severity="error"))
    assert strict.verdict == "error" and strict.errors[0].name == "black_segments"
    relaxed = _qc(made("late_audio_1500ms.mp4"), QCConfig(av_offset_error_s=2.0))
    assert _fired(relaxed) == {"av_start_offset": "warning"}


def test_judge_is_pure_and_rejudges_cached_measurements(made: Callable[[str], Path]) -> None:
    clip = made("silence_gap.mp4")
    report = _qc(clip)
    info = probe(clip)
    assert judge(info, report.measurements, QCConfig()) == report.checks
    rejudged = judge(info, report.measurements, QCConfig(silence_severity="error"))
    assert {c.name: c.severity for c in rejudged if not c.passed} == {"silence": "error"}


def test_head_and_tail_runs_only_inform(made: Callable[[str], Path]) -> None:
    info = probe(made("clean.mp4"))
    measurements = json.loads(json.dumps(_qc(made("clean.mp4")).measurements))
    measurements["video"]["black"] = [[0.0, 2.5]]        # a leader
    measurements["video"]["freeze"] = [[2.8, 6.0]]       # an end board held to the end
    checks = {c.name: c for c in judge(info, measurements, QCConfig())}
    assert (checks["black_segments"].passed, checks["black_segments"].severity) == (False, "info")
    assert (checks["frozen_segments"].passed, checks["frozen_segments"].severity) == (False, "info")
    assert "head/tail" in checks["black_segments"].message


# ---------------------------------------------------------------------------------------------
# Colour rules (pure), the argv and the report format.


# A 1280x720 8-bit yuv420p stream tagged BT.709 throughout; each case changes a few fields.
_HD = VideoStream(
    index=0, codec="h264", width=1280, height=720, fps=Fraction(25), frames=250, duration_s=10.0, start_s=0.0,
    pix_fmt="yuv420p", sar=Fraction(1), dar=Fraction(16, 9), color_primaries="bt709", color_transfer="bt709",
    color_matrix="bt709", color_range="tv", field_order="progressive", bit_depth=8,
)


@pytest.mark.parametrize(("tags", "severity", "words"), [
    ({}, None, ""),
    # BT.601 uses BT.709's OETF: normal SD video (clip 12_dashcam)
    ({"width": 960, "height": 540, "color_primaries": "smpte170m", "color_matrix": "smpte170m"}, None, ""),
    ({"color_primaries": "bt2020", "color_transfer": "smpte2084", "color_matrix": "bt2020nc", "bit_depth": 10,
      "pix_fmt": "yuv420p10le"}, None, ""),
    ({"color_primaries": "bt2020", "color_transfer": "arib-std-b67", "color_matrix": "bt2020nc", "bit_depth": 10},
     None, ""),
    ({"color_primaries": "bt2020", "color_transfer": "bt2020-10", "color_matrix": "bt2020nc"}, None, ""),  # SDR WCG
    ({"width": 640, "height": 360}, None, ""),                 # web-sized HD keeps BT.709
    ({"color_primaries": None, "color_transfer": None}, "info", "unspecified"),
    ({"color_range": None}, "info", "range unspecified"),
    ({"color_transfer": "smpte2084", "bit_depth": 10}, "error", "bt709 primaries"),
    ({"color_transfer": "arib-std-b67", "color_primaries": None, "bit_depth": 10}, "error", "unspecified primaries"),
    ({"color_primaries": "bt2020", "color_transfer": "smpte2084", "color_matrix": "bt2020nc"}, "error", "8-bit"),
    ({"color_primaries": "bt2020", "color_matrix": "bt709"}, "error", "bt709 matrix"),
    ({"color_matrix": "bt2020nc"}, "error", "bt2020nc matrix with bt709 primaries"),
    ({"color_primaries": "smpte170m", "color_matrix": "smpte170m"}, "warning", "SD matrix"),
    ({"width": 720, "height": 576}, "warning", "HD matrix bt709 on a 720x576"),
    ({"width": 960, "height": 540, "color_matrix": "smpte170m"}, "warning", "different standards"),
    ({"color_range": "pc"}, "warning", "full (pc) range"),
    ({"color_matrix": "gbr"}, "warning", "RGB"),
])
def test_colour_rules(tags: dict[str, Any], severity: str | None, words: str) -> None:
    found = colour_findings(replace(_HD, **tags), QCConfig())
    if severity is None:
        assert found == []
    else:
        assert max(found, key=lambda f: ["info", "warning", "error"].index(f[0]))[0] == severity
        assert any(words in message for _, message in found), found


def test_argv_is_one_pure_pass(made: Callable[[str], Path]) -> None:
    clip = made("clean.mp4")
    info = probe(clip)
    argv = qc_argv(clip, info, QCConfig())
    assert argv == qc_argv(clip, info, QCConfig())
    assert argv.count("-i") == 1 and argv[-3:] == ["-f", "null", "-"]
    graph = argv[argv.index("-filter_complex") + 1]
    for name in ("idet", "blackdetect", "freezedetect", "ebur128", "peak=true", "silencedetect"):
        assert name in graph
    assert "d=2.0" in graph and "d=5.0" in graph  # thresholds from the config
    assert "n=-45.0dB:d=7.5" in qc_argv(clip, info, QCConfig(silence_noise_db=-45, silence_min_s=7.5))[
        argv.index("-filter_complex") + 1]
    silent = replace(info, audio=())
    assert "ebur128" not in qc_argv(clip, silent, QCConfig())[argv.index("-filter_complex") + 1]


def test_progress_reaches_the_end(made: Callable[[str], Path]) -> None:
    seen: list[float] = []
    run_qc(made("clean.mp4"), progress=seen.append)
    assert seen and seen == sorted(seen) and seen[-1] == pytest.approx(6.0, abs=0.3)


def test_report_round_trips_through_json(made: Callable[[str], Path]) -> None:
    report = _qc(made("black_gap.mp4"))
    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["verdict"] == "warning"
    again = QCReport.from_dict(data)
    assert again == report
    assert again.check("black_segments").segments == report.check("black_segments").segments
    assert report.measurements["timings"]["decode_s"] > 0 and "ffmpeg" in report.measurements["command"]


def test_verdict_order() -> None:
    info = Check("a", "info", False, "x")
    warn = Check("b", "warning", False, "x")
    err = Check("c", "error", False, "x")
    ok = Check("d", "error", True, "x")
    assert QCReport("s", (info, ok), {}).verdict == "pass"
    assert QCReport("s", (info, warn, ok), {}).verdict == "warning"
    assert QCReport("s", (warn, err), {}).verdict == "error"
    assert QCReport("s", (warn, err), {}).errors == [err]


# ---------------------------------------------------------------------------------------------
# The real clips: no errors, and exactly the findings documented here (what each clip really has).

_NO_AUDIO = {"audio_present": "warning"}
_UNTAGGED = {"colour_metadata": "info"}           # some colour tags unspecified
_SILENT_TRACK = {"silence": "warning", "loudness": "warning"}  # an AAC track of digital silence

EXPECTED_REAL: dict[str, dict[str, str]] = {
    "01_bbb_0-30s_1280x720_vp8.webm": _UNTAGGED,  # its 0.75 s fade-in from black is under black_min_s
    "02_tears_of_steel_10s_640x360.mp4": _NO_AUDIO | _UNTAGGED,
    "03_sintel_fight_10s_640x360.mp4": _NO_AUDIO | _UNTAGGED,
    "04_caminandes_10s_640x360.mp4": _NO_AUDIO | _UNTAGGED,
    "10_talking_head_9s_1280x720.mp4": {},         # static camera, yet not frozen
    "11_dark_bokeh_7s_1920x1080.mp4": _NO_AUDIO,    # dark and noisy, yet not black
    "12_dashcam_9s_960x540.mp4": _SILENT_TRACK,     # smpte170m/bt709/smpte170m must pass
    "c01_composite_hardcuts_12s_1280x720.mp4": _NO_AUDIO,
    "e04_juggle_10s_1280x720.mp4": _NO_AUDIO,
    "e05_dog_10s_1280x720.mp4": _SILENT_TRACK,
    "e07_traffic_cam_23s_1280x720.mp4": _SILENT_TRACK,  # fixed camera, yet not frozen
}


def test_expectations_cover_every_real_clip(all_clips: list[Path]) -> None:
    assert sorted(EXPECTED_REAL) == sorted(c.name for c in all_clips)


@pytest.mark.parametrize("name", sorted(EXPECTED_REAL))
def test_real_clip_findings(media_dir: Path, name: str) -> None:
    path = media_dir / name
    if not path.is_file():
        pytest.skip(f"{path} is not here")
    report = _qc(path)
    assert report.errors == []
    assert _fired(report) == EXPECTED_REAL[name], [c.message for c in report.failed]
    assert report.measurements["decode_errors"]["count"] == 0
    video = report.measurements["video"]
    assert video["frames_decoded"] == video["frames_expected"]


def test_real_loudness_figures(bbb: Path, talking_head: Path) -> None:
    # ffmpeg's ebur128 on these two, by hand: -23.3 LUFS / LRA 15.8 / -2.7 dBTP; -15.6 / 1.3 / -1.5
    (bunny,) = _qc(bbb).measurements["audio"]
    (head,) = _qc(talking_head).measurements["audio"]
    assert (bunny["integrated_lufs"], bunny["lra_lu"], bunny["true_peak_dbtp"]) == pytest.approx((-23.3, 15.8, -2.7),
                                                                                                 abs=0.15)
    assert (head["integrated_lufs"], head["lra_lu"], head["true_peak_dbtp"]) == pytest.approx((-15.6, 1.3, -1.5),
                                                                                              abs=0.15)


def test_container_notes_are_not_decode_errors(sintel_fight: Path) -> None:
    # Sintel's MP4 names a chapter track it does not have; the demuxer says so at open, as an error.
    decode = _qc(sintel_fight).measurements["decode_errors"]
    assert decode["count"] == 0 and any("chapter" in line for line in decode["open_messages"])


def test_copy_of_source_is_never_touched(damaged: Path, tmp_path: Path) -> None:
    copy = tmp_path / damaged.name
    shutil.copyfile(damaged, copy)
    before = copy.read_bytes()
    run_qc(copy)
    assert copy.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [damaged.name]


# ---------------------------------------------------------------------------------------------
# Split by time: the picture in chunks, the sound in one pass, merged into a whole pass's report.


def _same_as_whole(path: Path, chunk_s: float, *, min_chunks: int = 3) -> QCReport:
    """The split report (chunks of ``chunk_s``) against run_qc's, field by field; returns the split one.

    Exact, except the run times: a whole pass reads them from ffmpeg's log (six significant digits),
    the split computes them from frame numbers, so they agree to a millisecond, and identically after
    the checks' rounding.
    """
    config = QCConfig(chunk_s=chunk_s)
    conform = ConformConfig()
    whole = run_qc(path, config, conform=conform)
    split = run_qc_split(path, config, conform=conform)
    assert len(split.measurements["chunks"]) >= min_chunks
    assert [c.to_dict() for c in split.checks] == [c.to_dict() for c in whole.checks]
    assert split.verdict == whole.verdict
    got, want = split.measurements["video"], whole.measurements["video"]
    for key in ("idet", "frames_decoded", "interlaced_frames", "progressive_frames"):
        assert got[key] == want[key], key
    for key in ("black", "freeze"):
        assert len(got[key]) == len(want[key]) and all(
            g == pytest.approx(w, abs=1e-3) for g, w in zip(got[key], want[key], strict=True)), key
    assert split.measurements["audio"] == whole.measurements["audio"]
    assert split.measurements["decode_errors"]["count"] == whole.measurements["decode_errors"]["count"]
    assert split.measurements.get("conform") == whole.measurements.get("conform")
    return split


@pytest.mark.parametrize("name", ["black_gap.mp4", "frozen.mp4", "interlaced.mp4", "silence_gap.mp4",
                                  "late_audio_300ms.mp4"])
def test_split_qc_equals_whole_pass_on_made_clips(made: Callable[[str], Path], name: str) -> None:
    split = _same_as_whole(made(name), chunk_s=1.0)
    assert split.failed or name == "late_audio_300ms.mp4"  # each fires what it was made for


@pytest.fixture(scope="session")
def runs_across_edges(tears_of_steel: Path, lavfi_clip: LavfiMaker) -> Path:
    """Tears of Steel (24 fps, 240 frames) with frames 85-139 painted black and 150-222 frozen on 150,
    lossless, a keyframe a second, and a tone. With 2 s chunks (edges at frames 48, 96, 144, 192) each
    run crosses an edge with both pieces shorter than the minimum run (2 s black, 3 s frozen)."""
    return lavfi_clip(
        "runs_across_edges.mp4", "-i", str(tears_of_steel), "-f", "lavfi", "-i", _TONE.format(d=10),
        "-filter_complex", "[0:v]drawbox=c=black:t=fill:enable='between(n,85,139)',split[a][b];"
                           "[a][b]freezeframes=first=150:last=222:replace=150[v]",
        "-map", "[v]", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
        "-x264-params", "keyint=24:min-keyint=24", *_AAC,
    )


@pytest.mark.parametrize("chunk_s", [1.0, 2.0, 3.0])
def test_split_qc_joins_runs_across_chunk_edges(runs_across_edges: Path, chunk_s: float) -> None:
    split = _same_as_whole(runs_across_edges, chunk_s, min_chunks=3)
    assert split.measurements["video"]["black"] == [[pytest.approx(85 / 24), pytest.approx(140 / 24)]]
    assert split.measurements["video"]["freeze"] == [[pytest.approx(150 / 24), pytest.approx(223 / 24)]]
    assert _fired(split)["black_segments"] == "warning" and _fired(split)["frozen_segments"] == "warning"


def test_split_qc_equals_whole_pass_on_real_clips(tears_of_steel: Path, dashcam: Path) -> None:
    # Tears of Steel: three keyframes, so most seeks decode from far back; the dashcam: a 1/25 s
    # time base, where the seek position rounds to a whole frame's tick.
    for path in (tears_of_steel, dashcam):
        _same_as_whole(path, chunk_s=2.0)


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["01_bbb_0-30s_1280x720_vp8.webm", "e05_dog_10s_1280x720.mp4",
                                  "c01_composite_hardcuts_12s_1280x720.mp4"])
def test_split_qc_equals_whole_pass_on_more_clips(media_dir: Path, clip: str) -> None:
    # VP8 whose video starts 3 ms in; 30000/1001 fps; a composite of hard cuts
    _same_as_whole(media_dir / clip, chunk_s=2.0)


def test_split_qc_of_a_damaged_file_is_an_error(damaged: Path) -> None:
    split = run_qc_split(damaged, QCConfig(chunk_s=2.0))
    assert split.verdict == "error" and not split.check("decode_errors").passed
    where = split.measurements["decode_errors"]["where"]
    assert where and all(w["count"] > 0 for w in where)


def test_split_qc_short_title_is_one_chunk(made: Callable[[str], Path]) -> None:
    info = probe(made("clean.mp4"))  # 6 s
    assert len(qc_chunks(info, QCConfig(chunk_s=4.5))) == 1
    assert len(qc_chunks(info, QCConfig(chunk_s=3.9))) == 2
    assert len(qc_chunks(replace(info, video=replace(info.video, variable_rate=True)), QCConfig(chunk_s=1.0))) == 1


def test_idet_multi_replay() -> None:
    # the first decided verdict sets the type; it then sticks until three of the last four agree on another
    assert _idet_multi("UUPUTTTT") == {"T": 2, "B": 0, "P": 4, "U": 2}
    assert _idet_multi("") == dict.fromkeys("TBPU", 0)


def test_merge_runs_carries_an_open_run() -> None:
    chunks = [
        {"start": 0, "end": 10, "decode_start": 0, "decode_end": 16, "black": [[2, 4, False], [8, 15, True]]},
        {"start": 10, "end": 20, "decode_start": 9, "decode_end": 26, "black": [[9, 25, True]]},
        {"start": 20, "end": 30, "decode_start": 19, "decode_end": 30, "black": [[19, 22, False], [24, 27, False]]},
    ]
    assert _merge_runs(chunks, "black") == [[2, 4, False], [8, 22, False], [24, 27, False]]
    # a run that starts in a chunk's overlap belongs to the next chunk; one that ended there is not joined
    chunks[0]["black"] = [[2, 4, False], [12, 15, True]]
    chunks[1]["black"] = [[12, 14, False]]
    assert _merge_runs(chunks[:2], "black") == [[2, 4, False], [12, 14, False]]
