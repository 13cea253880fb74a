"""probe: real clips against truth.json, and every kind of bad input gives one clear error."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.probe import probe
from reelflow.errors import InvalidMedia, ReelflowError, SourceNotFound


def test_every_clip_matches_truth(all_clips: list[Path], truth: dict[str, Any]) -> None:
    for clip in all_clips:
        expected = truth[clip.name]
        info = probe(clip)
        v = info.video
        assert (v.width, v.height) == (expected["width"], expected["height"]), clip.name
        assert v.frames == expected["frames"], clip.name
        assert float(v.fps) == pytest.approx(expected["fps"], abs=0.01), clip.name
        assert isinstance(v.fps, Fraction)
        assert info.duration_s == pytest.approx(expected["duration_s"], abs=0.05), clip.name


def test_exact_ntsc_rate_and_colour(dark_bokeh: Path) -> None:
    v = probe(dark_bokeh).video
    assert v.fps == Fraction(30000, 1001)
    assert (v.color_primaries, v.color_transfer, v.color_matrix, v.color_range) == ("bt709", "bt709", "bt709", "tv")
    assert v.dar == Fraction(16, 9) and v.sar == 1 and v.bit_depth == 8 and not v.hdr


def test_audio_layout_and_unspecified_colour(dashcam: Path, bbb: Path, sintel_fight: Path) -> None:
    (audio,) = probe(dashcam).audio
    assert (audio.codec, audio.channels, audio.sample_rate) == ("aac", 2, 48000)
    webm = probe(bbb)
    assert webm.video.codec == "vp8" and webm.audio[0].codec == "vorbis"
    # Matroska declares no stream durations: they come from the demuxed packets.
    assert webm.audio[0].duration_s == pytest.approx(30.0, abs=0.1)
    assert webm.video.start_s == pytest.approx(0.003)
    sintel = probe(sintel_fight)
    assert sintel.audio == () and sintel.video.color_primaries is None and sintel.video.color_matrix == "bt709"


def test_anamorphic_source_reports_display_aspect(lavfi_clip: Any) -> None:
    clip = lavfi_clip("anamorphic.mp4", "-f", "lavfi", "-i", "testsrc2=size=720x576:rate=25:duration=1",
                      "-vf", "setsar=16/15", "-c:v", "libx264", "-preset", "ultrafast")
    v = probe(clip).video
    assert v.sar == Fraction(16, 15) and v.dar == Fraction(4, 3) and v.display_width == 768


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="no such file"):
        probe(tmp_path / "nope.mp4")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound, match="not a regular file"):
        probe(tmp_path)


def test_zero_length(tmp_path: Path) -> None:
    empty = tmp_path / "empty.mp4"
    empty.touch()
    with pytest.raises(InvalidMedia, match="empty"):
        probe(empty)


def test_not_media(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    with pytest.raises(InvalidMedia, match="not a media file"):
        probe(text)


def test_audio_only(lavfi_clip: Any) -> None:
    clip = lavfi_clip("tone.m4a", "-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac")
    with pytest.raises(InvalidMedia, match="no video stream"):
        probe(clip)


def test_truncated(sintel_fight: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(sintel_fight.read_bytes()[:300_000])  # moov is at the front: the header still says 240
    with pytest.raises(InvalidMedia, match="truncated"):
        probe(cut)


def test_errors_are_reelflow_errors_and_builtins(tmp_path: Path) -> None:
    with pytest.raises(ReelflowError):
        probe(tmp_path / "nope.mp4")
    with pytest.raises(FileNotFoundError):
        probe(tmp_path / "nope.mp4")


def test_edit_list_preroll_is_not_counted(lavfi_clip: Any) -> None:
    """A stream-copy trim keeps preroll packets that players decode but do not show."""
    gop = lavfi_clip("gop48.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=10",
                     "-c:v", "libx264", "-preset", "ultrafast", "-g", "48")
    trimmed = lavfi_clip("editlist.mp4", "-ss", "1.5", "-i", str(gop), "-c", "copy", "-t", "6")
    v = probe(trimmed).video
    assert v.frames == 144 and v.duration_s == pytest.approx(6.0, abs=0.05)


def test_variable_frame_rate_is_detected(lavfi_clip: Any, bbb: Path) -> None:
    vfr = lavfi_clip("vfr24_12.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=24:duration=2",
                     "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=12:duration=2",
                     "-filter_complex", "[0:v][1:v]concat=n=2:v=1[v]", "-map", "[v]", "-fps_mode", "vfr",
                     "-c:v", "libx264", "-preset", "ultrafast")
    assert probe(vfr).video.variable_rate
    assert not probe(bbb).video.variable_rate  # WebM's millisecond clock alternates 41/42 ms: still 24 fps


def test_the_programme_is_the_largest_video_stream(lavfi_clip: Any) -> None:
    two = lavfi_clip("preview_first.mp4", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=1",
                     "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=1",
                     "-map", "0", "-map", "1", "-c:v", "libx264", "-preset", "ultrafast")
    v = probe(two).video
    assert (v.index, v.width) == (1, 640)
