"""HDR studio masters derived from ../shared/media with the bundled ffmpeg, 1 s each, made once per session.

- ``hdr10_2160p``: Dark Bokeh (1080p, dark with bright highlights) upconverted to 3840x2160, BT.709 to
  PQ on BT.2020 with zscale, 10-bit HEVC Main10 with an HDR10 mastering display (P3-D65 primaries as
  BT.2020 content often has, 1000/0.0001 cd/m2) and MaxCLL 1000 / MaxFALL 400 in SEI.
- ``hlg_1080p``: the dog clip (720p, daylight) at 1920x1080, HLG on BT.2020, 10-bit HEVC, no metadata.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reelflow.infra.tools import ffmpeg_exe, run

MASTER_DISPLAY = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,1)"
MAX_CLL = (1000, 400)


def _hevc10(transfer: str, extra: str) -> list[str]:
    return ["-c:v", "libx265", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p10le",
            "-x265-params", f"log-level=error:colorprim=bt2020:transfer={transfer}:colormatrix=bt2020nc"
                            f":range=limited{extra}",
            "-color_primaries", "bt2020", "-color_trc", transfer, "-colorspace", "bt2020nc", "-color_range", "tv"]


def make_hdr10(src: Path, out: Path, width: int = 3840, height: int = 2160, seconds: float = 1.0) -> Path:
    if not out.exists():
        run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(src), "-t", f"{seconds:g}", "-an",
             "-vf", f"scale={width}:{height}:flags=bicubic,zscale=tin=bt709:min=bt709:pin=bt709:rin=limited"
                    ":t=smpte2084:m=bt2020nc:p=bt2020:r=limited:npl=203,format=yuv420p10le",
             *_hevc10("smpte2084", f":hdr10=1:master-display={MASTER_DISPLAY}:max-cll={MAX_CLL[0]},{MAX_CLL[1]}"
                                   ":repeat-headers=1"),
             "-tag:v", "hvc1", str(out)])
    return out


def make_hlg(src: Path, out: Path, width: int = 1920, height: int = 1080, seconds: float = 1.0) -> Path:
    if not out.exists():
        run([ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-i", str(src), "-t", f"{seconds:g}", "-an",
             "-vf", f"scale={width}:{height}:flags=bicubic,zscale=tin=bt709:min=bt709:pin=bt709:rin=limited"
                    ":t=arib-std-b67:m=bt2020nc:p=bt2020:r=limited:npl=203,format=yuv420p10le",
             *_hevc10("arib-std-b67", ""), "-tag:v", "hvc1", str(out)])
    return out


@pytest.fixture(scope="session")
def hdr10_2160p(dark_bokeh: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s HDR10 HEVC Main10 3840x2160 with mastering display and content light level SEI."""
    return make_hdr10(dark_bokeh, tmp_path_factory.mktemp("hdr-masters") / "hdr10_2160p.mp4")


@pytest.fixture(scope="session")
def hlg_1080p(dog: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s HLG HEVC 10-bit 1920x1080, no static metadata (HLG needs none)."""
    return make_hlg(dog, tmp_path_factory.mktemp("hdr-masters") / "hlg_1080p.mp4")


@pytest.fixture(scope="session")
def hdr10_360p(dark_bokeh: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s HDR10 at 640x360, for properties that need no more pixels."""
    return make_hdr10(dark_bokeh, tmp_path_factory.mktemp("hdr-masters") / "hdr10_360p.mp4", 640, 360)
