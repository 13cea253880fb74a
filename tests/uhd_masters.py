"""UHD studio masters derived from ../shared/media with the bundled ffmpeg (lanczos upscales: no real 4K detail)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def uhd_prores_master(dark_bokeh: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1 s (30 frames at 30000/1001) 3840x2160 ProRes 422 HQ 10-bit 4:2:2, from the 1080p dark bokeh clip."""
    out = tmp_path_factory.mktemp("uhd") / "dark_bokeh_2160p_1s.mov"
    subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-i", str(dark_bokeh), "-frames:v", "30",
                    "-vf", "scale=3840:2160:flags=lanczos", "-an", "-c:v", "prores_ks", "-profile:v", "3",
                    "-pix_fmt", "yuv422p10le", str(out)], check=True)
    return out
