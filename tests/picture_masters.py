"""Derived picture masters for the conform tests: interlaced, telecined, rotated, VFR, odd-sized, alpha.

Each is made once per session with the bundled ffmpeg from ../shared/media, 1-2 s long and as
small as the property under test allows (1080i stays 1080 lines: a realistic broadcast master).
Import the fixtures into a test module (``from picture_masters import ...``); they use the
session fixtures ``ffmpeg``, ``dog`` and ``dark_bokeh`` of tests/conftest.py.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from shared_media import MEDIA_DIR

_DOG = MEDIA_DIR / "e05_dog_10s_1280x720.mp4"           # 29.97 fps live action, steady motion
_BOKEH = MEDIA_DIR / "11_dark_bokeh_7s_1920x1080.mp4"   # 29.97 fps 1080p, dark, slow motion


def _make(ffmpeg: str, out: Path, *args: str) -> Path:
    if not out.exists():
        for clip in (_DOG, _BOKEH):
            if not clip.is_file():
                message = f"{clip} is not here (../shared/media sits beside the repo in CI)"
                # as conftest's clips: in CI a missing clip fails the test instead of skipping it
                if os.environ.get("CI"):
                    pytest.fail(message)
                pytest.skip(message)
        partial = out.with_name(f".partial-{out.name}")
        done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args, str(partial)],
                              capture_output=True, text=True, check=False)
        assert done.returncode == 0, done.stderr[-2000:]
        partial.replace(out)
    return out


@pytest.fixture(scope="session")
def masters_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("picture-masters")


@pytest.fixture(scope="session")
def prores_alpha(ffmpeg: str, masters_dir: Path) -> Path:
    """ProRes 4444 10-bit with an alpha plane and a 01:00:00:00 timecode, 320x180, 1 s, BT.709 tags."""
    return _make(ffmpeg, masters_dir / "prores4444_alpha.mov", "-t", "1", "-i", str(_DOG),
                 "-vf", "scale=320:180", "-c:v", "prores_ks", "-profile:v", "4", "-pix_fmt", "yuva444p10le",
                 "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
                 "-timecode", "01:00:00:00", "-an")


@pytest.fixture(scope="session")
def interlaced_1080i25(ffmpeg: str, masters_dir: Path) -> Path:
    """1080i25 MPEG-2 in MXF, TFF tagged, fields from 50p motion (the 29.97 clip sped up to 50p), 1 s."""
    return _make(ffmpeg, masters_dir / "1080i25.mxf", "-t", "1.8", "-i", str(_BOKEH),
                 "-vf", "setpts=0.6*PTS,fps=50,tinterlace=mode=interleave_top,setfield=tff",
                 "-frames:v", "25", "-c:v", "mpeg2video", "-b:v", "25M", "-flags", "+ilme+ildct",
                 "-field_order", "tt", "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709",
                 "-an")


@pytest.fixture(scope="session")
def interlaced_1080i2997(ffmpeg: str, masters_dir: Path) -> Path:
    """1080i29.97 H.264 (x264 tff=1, interlaced coding) from 59.94p motion (the clip at double speed), 1 s."""
    return _make(ffmpeg, masters_dir / "1080i2997.mp4", "-t", "2", "-i", str(_DOG),
                 "-vf", "setpts=0.5*PTS,fps=60000/1001,scale=1920:1080,tinterlace=mode=interleave_top,setfield=tff",
                 "-frames:v", "30", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "16",
                 "-flags", "+ilme+ildct", "-x264-params", "tff=1", "-an")


@pytest.fixture(scope="session")
def telecined(ffmpeg: str, masters_dir: Path) -> Path:
    """3:2 telecined 29.97 from a 23.976 clip (telecine=pattern=23), 640x360, 2 s (60 frames)."""
    return _make(ffmpeg, masters_dir / "telecined.mp4", "-t", "2.2", "-i", str(_DOG),
                 "-vf", "scale=640:360,fps=24000/1001,telecine=pattern=23", "-frames:v", "60",
                 "-c:v", "libx264", "-preset", "ultrafast", "-crf", "12", "-flags", "+ilme+ildct",
                 "-x264-params", "tff=1", "-an")


@pytest.fixture(scope="session")
def rotated_phone(ffmpeg: str, masters_dir: Path) -> Path:
    """A phone clip coded 640x360 with a display matrix turning it 90° (shown 360x640), AAC, 1.5 s."""
    coded = _make(ffmpeg, masters_dir / "phone_coded.mp4", "-t", "1.5", "-i", str(_DOG),
                  "-vf", "scale=640:360", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                  "-c:a", "aac", "-b:a", "96k")
    return _make(ffmpeg, masters_dir / "phone_rotated.mp4", "-display_rotation", "90", "-i", str(coded),
                 "-c", "copy")


@pytest.fixture(scope="session")
def vfr_clip(ffmpeg: str, masters_dir: Path) -> Path:
    """Variable rate: 0.8 s at 24 fps then 1.2 s at 30 fps in one MP4 (-fps_mode vfr), 320x180."""
    return _make(ffmpeg, masters_dir / "vfr.mp4", "-t", "2", "-i", str(_DOG),
                 "-filter_complex",
                 "[0:v]scale=320:180,split[a][b];[a]trim=0:0.8,fps=24[a2];"
                 "[b]trim=0.8:2,fps=30[b2];[a2][b2]concat=n=2:v=1[v]",
                 "-map", "[v]", "-fps_mode", "vfr", "-video_track_timescale", "600",
                 "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18")


@pytest.fixture(scope="session")
def hfr_720p5994(ffmpeg: str, masters_dir: Path) -> Path:
    """720p59.94 progressive (the clip at double speed), 1 s: a constant rate conform leaves alone."""
    return _make(ffmpeg, masters_dir / "720p5994.mp4", "-t", "2", "-i", str(_DOG),
                 "-vf", "setpts=0.5*PTS,fps=60000/1001", "-frames:v", "60",
                 "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-an")


@pytest.fixture(scope="session")
def hfr_cut_5994(ffmpeg: str, masters_dir: Path) -> Path:
    """720p59.94, 1.5 s (90 frames): the dog at double speed, then a hard cut at frame 45 (an odd frame)
    to the dark bokeh clip at double speed."""
    return _make(ffmpeg, masters_dir / "720p5994_cut.mp4", "-t", "1.6", "-i", str(_DOG), "-t", "1.6", "-i", str(_BOKEH),
                 "-filter_complex",
                 "[0:v]setpts=0.5*PTS,fps=60000/1001,trim=end_frame=45,setpts=PTS-STARTPTS[a];"
                 "[1:v]setpts=0.5*PTS,fps=60000/1001,scale=1280:720,trim=end_frame=45,setpts=PTS-STARTPTS[b];"
                 "[a][b]concat=n=2:v=1[v]",
                 "-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-an")


@pytest.fixture(scope="session")
def odd_1918(ffmpeg: str, masters_dir: Path) -> Path:
    """1918x1080 (a 16:9 master cropped by two columns), 0.5 s."""
    return _make(ffmpeg, masters_dir / "1918x1080.mp4", "-t", "0.5", "-i", str(_BOKEH),
                 "-vf", "crop=1918:1080", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                 "-color_primaries", "bt709", "-color_trc", "bt709", "-colorspace", "bt709", "-an")


@pytest.fixture(scope="session")
def anamorphic_pal(ffmpeg: str, masters_dir: Path) -> Path:
    """720x576 SAR 64:45 (PAL 16:9 anamorphic), progressive, 1 s."""
    return _make(ffmpeg, masters_dir / "pal_anamorphic.mp4", "-t", "1", "-i", str(_DOG),
                 "-vf", "scale=720:576,setsar=64/45", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "18",
                 "-an")


_IDET = re.compile(r"Multi frame detection: TFF:\s*(\d+)\s+BFF:\s*(\d+)\s+Progressive:\s*(\d+)")


def idet_counts(ffmpeg: str, path: Path, *map_args: str) -> dict[str, int]:
    """ffmpeg idet's multi-frame counts of a decoded file (QC's threshold, 1.3, for sharp pictures)."""
    done = subprocess.run([ffmpeg, "-hide_banner", "-nostdin", "-i", str(path), *map_args,
                           "-vf", "idet=intl_thres=1.3", "-f", "null", "-"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    found = _IDET.findall(done.stderr)
    assert found, done.stderr[-2000:]
    tff, bff, progressive = (int(x) for x in found[-1])
    return {"tff": tff, "bff": bff, "progressive": progressive}
