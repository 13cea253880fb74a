"""ladder.png: drawn from a synthetic title's trial points, hulls and rungs."""

from __future__ import annotations

import math
from pathlib import Path

from reelflow.encoding.hull import RdPoint, ShotPoints
from reelflow.encoding.ladder import LadderRules, select_ladder
from reelflow.encoding.ladder_plot import plot_ladder

WIDTHS = {1080: 1920, 720: 1280, 540: 960, 360: 640, 234: 416}


def _shot(index: int, complexity: float, duration: float) -> ShotPoints:
    """A shot whose rate falls 12% per CRF step and whose quality saturates with resolution."""
    points = []
    for height, width in WIDTHS.items():
        for crf in (18, 23, 28, 33, 38):
            kbps = complexity * width * height / 400 * math.exp(-0.12 * (crf - 18))
            ceiling = 100 - 60 * (1 - height / 1080) ** 2
            vmaf = ceiling * (1 - math.exp(-kbps / (complexity * 900)))
            points.append(RdPoint(kbps, vmaf, width, height, crf))
    return ShotPoints(index, duration, tuple(points))


def test_plot_is_a_png_of_the_expected_size(tmp_path: Path) -> None:
    shots = [_shot(0, 0.6, 4.0), _shot(1, 1.5, 2.5), _shot(2, 1.0, 6.0)]
    rungs = select_ladder(shots, LadderRules(), "per-shot")
    out = plot_ladder(tmp_path / "ladder.png", shots, rungs, fixed=[(730, 70.0, "432p"), (3000, 88.0, "720p")],
                      delivered=[(r.kbps * 1.02, r.vmaf - 0.3) for r in rungs], title="synthetic")
    import matplotlib.image

    image = matplotlib.image.imread(out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert image.shape[:2] == (650, 1000)
    assert image[..., :3].std() > 0.05  # something was drawn, not a blank canvas
