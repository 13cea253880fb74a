"""The tone map's 3D-LUT path against the direct zscale+tonemap chain, on real HDR masters (tests/hdr_masters.py)."""

from __future__ import annotations

import math
import subprocess
from pathlib import Path

import numpy as np
import pytest

from hdr_masters import hdr10_360p, hlg_1080p  # noqa: F401  (fixtures)
from reelflow.encoding.probe import probe
from reelflow.encoding.tonemap import ToneMapped, tonemap_filter, tonemap_source
from reelflow.infra.settings import ToneMapConfig
from reelflow.infra.tools import ffmpeg_exe

# The bound: the LUT's picture within these of the direct chain's, in 8-bit code values, per plane.
MIN_PSNR_DB = 50.0
MAX_ABS_CODES = 4


def _planes(made: ToneMapped) -> list[np.ndarray]:
    """Every frame of the 8-bit 4:2:0 intermediate as (Y, U, V) arrays over all frames."""
    v = made.info.video
    raw = subprocess.run([ffmpeg_exe(), "-v", "error", "-i", str(made.path), "-f", "rawvideo", "-pix_fmt", "yuv420p",
                          "-"], capture_output=True, check=True).stdout
    frame = v.width * v.height * 3 // 2
    data = np.frombuffer(raw, np.uint8).reshape(-1, frame)
    luma, chroma = v.width * v.height, v.width * v.height // 4
    return [data[:, :luma], data[:, luma:luma + chroma], data[:, luma + chroma:]]


def _compare(master: Path, work: Path, config: ToneMapConfig) -> list[tuple[float, int]]:
    """(PSNR dB, max abs difference) per plane of the LUT's intermediate against the direct chain's."""
    info = probe(master)
    direct = tonemap_source(info, "sha", config.model_copy(update={"method": "direct"}), work)
    lut = tonemap_source(info, "sha", config, work)
    assert lut.path != direct.path and lut.info.video.frames == direct.info.video.frames == info.video.frames
    result = []
    for a, b in zip(_planes(direct), _planes(lut), strict=True):
        diff = a.astype(np.int16) - b.astype(np.int16)
        mse = float(np.mean(diff.astype(np.float64) ** 2))
        result.append((math.inf if mse == 0 else 10 * math.log10(255 ** 2 / mse), int(np.abs(diff).max())))
    return result


def test_lut_matches_the_direct_chain_on_an_hdr10_master(hdr10_360p: Path, tmp_path: Path) -> None:  # noqa: F811
    config = ToneMapConfig()
    assert config.method == "lut"
    for psnr, worst in _compare(hdr10_360p, tmp_path, config):
        assert psnr > MIN_PSNR_DB and worst <= MAX_ABS_CODES, (psnr, worst)


@pytest.mark.slow
def test_lut_matches_the_direct_chain_on_an_hlg_master_with_mobius(hlg_1080p: Path, tmp_path: Path) -> None:  # noqa: F811
    # another transfer (HLG, its OOTF inside zscale) and another operator with a parameter
    for psnr, worst in _compare(hlg_1080p, tmp_path, ToneMapConfig(operator="mobius", param=0.5)):
        assert psnr > MIN_PSNR_DB and worst <= MAX_ABS_CODES, (psnr, worst)


def test_record_names_the_method_operator_and_peak(hdr10_360p: Path, tmp_path: Path) -> None:  # noqa: F811
    info = probe(hdr10_360p)
    lut = tonemap_source(info, "sha", ToneMapConfig(lut_level=6), tmp_path).describe()
    assert lut["operator"] == "hable" and lut["peak_nits"] == 1000
    assert "3D LUT" in str(lut["method"]) and "36x36x36" in str(lut["method"]) and "tetrahedral" in str(lut["method"])
    assert "haldclutsrc=level=6" in str(lut["filter"]) and "tonemap=hable" in str(lut["filter"])
    direct = tonemap_source(info, "sha", ToneMapConfig(method="direct"), tmp_path).describe()
    assert str(direct["method"]).startswith("direct") and "haldclut" not in str(direct["filter"])
    # the same curve either way: the operator's settings appear in both graphs
    assert "tonemap=hable:desat=0:peak=10" in tonemap_filter(info, ToneMapConfig()) \
        and "tonemap=hable:desat=0:peak=10" in str(direct["filter"])
