"""Ingest wall time: `reelflow ingest` on a real clip, cold (fresh work dir) and warm (re-run).

Each cold run uses a fresh work folder and output folder, so nothing is reused; the warm run
repeats the last cold run's ingest to show what the content-addressed encodes save. Wall time
includes starting Prefect's temporary API server, as a user of the CLI sees it.

    .venv/bin/python bench/ingest.py [--clip PATH] [--runs 3] [--preset medium]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "media" / "01_bbb_0-30s_1280x720_vp8.webm"


def ingest_once(clip: Path, work: Path, out: Path, preset: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process and its children) of one CLI ingest."""
    env = {**os.environ, "REELFLOW_STORAGE__WORK_DIR": str(work), "REELFLOW_ENCODE__PRESET": preset}
    before = os.times()
    start = time.perf_counter()
    # --no-drm: the recorded figures are of clear packages; encryption would add a key-store write
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(clip), "--storage", str(out),
                           "--json", "--no-drm"], env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = os.times()
    if done.returncode:
        sys.exit(f"ingest failed:\n{done.stderr[-3000:]}")
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--preset", default="medium")
    args = parser.parse_args()
    cold: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            work, out = Path(tmp) / f"work{run}", Path(tmp) / f"out{run}"
            cold.append(ingest_once(args.clip, work, out, args.preset))
            print(f"cold run {run + 1}: {cold[-1][0]:.1f} s wall, {cold[-1][1]:.1f} s CPU", file=sys.stderr)
        warm = ingest_once(args.clip, work, out, args.preset)
    walls = sorted(w for w, _ in cold)
    print(f"| clip | preset | cold wall s (median of {args.runs}) | cold runs | CPU s (median) | warm re-run wall s |")
    print("|---|---|---|---|---|---|")
    print(f"| {args.clip.name} | {args.preset} | {statistics.median(walls):.1f} | "
          f"{', '.join(f'{w:.1f}' for w in walls)} | {statistics.median(c for _, c in cold):.1f} | {warm[0]:.1f} |")


if __name__ == "__main__":
    main()
