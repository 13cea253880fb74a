"""A delivered rung's VMAF does not depend on how many threads score it (ladder.vmaf_threads)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from reelflow.encoding.probe import probe
from reelflow.encoding.vmaf import measure_rung_vmaf


def test_two_threads_give_the_same_scores(caminandes: Path, ffmpeg: str, tmp_path: Path) -> None:
    rung = tmp_path / "rung.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(caminandes), "-t", "2", "-an", "-vf",
                    "scale=416:234", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", str(rung)], check=True)
    source = tmp_path / "source.mp4"
    subprocess.run([ffmpeg, "-loglevel", "error", "-y", "-i", str(caminandes), "-t", "2", "-an", "-c:v", "libx264",
                    "-preset", "ultrafast", "-qp", "0", str(source)], check=True)
    info = probe(source)
    one, two = measure_rung_vmaf(rung, info, threads=1), measure_rung_vmaf(rung, info, threads=2)
    assert one.scores == two.scores and len(one.scores) == info.video.frames
    assert 0 < one.mean < 100
