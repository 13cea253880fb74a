"""A delivered rung's every-frame VMAF on one thread against two: wall, CPU and the score, side by side.

The rung is the dog clip (9.7 s 1280x720) encoded at 960x540 (x264 veryfast, CRF 28); each
setting runs three times, alternating; medians are printed.

    .venv/bin/python bench/vmaf_threads.py
"""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from reelflow.encoding.probe import probe
from reelflow.encoding.vmaf import measure_rung_vmaf
from reelflow.infra.tools import ffmpeg_exe

SOURCE = Path(__file__).resolve().parents[1].parent / "shared" / "media" / "e05_dog_10s_1280x720.mp4"


def main() -> None:
    info = probe(SOURCE)
    with tempfile.TemporaryDirectory() as tmp:
        rung = Path(tmp) / "dog540.mp4"
        subprocess.run([ffmpeg_exe(), "-loglevel", "error", "-y", "-i", str(SOURCE), "-an", "-vf", "scale=960:540",
                        "-c:v", "libx264", "-preset", "veryfast", "-crf", "28", str(rung)], check=True)
        rows: dict[int, list[tuple[float, float, float]]] = {1: [], 2: []}
        for _ in range(3):
            for threads in (1, 2):
                started = time.monotonic()
                result = measure_rung_vmaf(rung, info, threads=threads)
                rows[threads].append((time.monotonic() - started, result.cpu_s, result.mean))
    for threads, runs in rows.items():
        print(f"{threads} thread(s): median wall {statistics.median(r[0] for r in runs):.2f} s, median CPU "
              f"{statistics.median(r[1] for r in runs):.2f} s, VMAF {sorted({round(r[2], 4) for r in runs})}")


if __name__ == "__main__":
    main()
