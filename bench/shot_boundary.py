"""Where in a gradual transition the encoder gains most from the unit boundary (its keyframe).

Each tuning title of bench/shot_transitions.py is encoded with x264 (CRF, closed GOPs, no
scene-cut keyframes of its own) with a keyframe at every hard cut and, in every gradual
transition, at its first frame, its middle, or the first frame after it. The same CRF gives about
the same quality, so the size tells what each placement costs; x264's global PSNR is printed beside
it to show the quality did stay put.

    .venv/bin/python bench/shot_boundary.py [--crfs 23,28] [--preset medium]

With two or more CRFs it also prints each placement's BD-rate against the middle (PSNR, piecewise
linear log-rate over the quality range all placements share; sizes and PSNR summed/averaged over
the titles).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import subprocess
from pathlib import Path

import imageio_ffmpeg

from shot_transitions import titles

PLACES = {"start": lambda g: g["start"], "middle": lambda g: (g["start"] + g["end"] + 1) // 2,
          "after": lambda g: g["end"] + 1}


def encode(ffmpeg: str, path: Path, keyframes: list[int], fps: int, crf: int, preset: str) -> tuple[int, float]:
    """(bytes, x264 global PSNR) of the title with keyframes exactly at ``keyframes``."""
    times = ",".join(f"{f / fps:.6f}" for f in sorted(set(keyframes)))
    out = Path("/tmp") / f"shot-boundary-{path.stem}.mp4"
    argv = [ffmpeg, "-nostdin", "-y", "-i", str(path), "-an", "-c:v", "libx264", "-preset", preset,
            "-crf", str(crf), "-threads", "1",
            "-force_key_frames", times,                     # the units' first frames
            "-x264-params", "scenecut=0:open-gop=0:keyint=9999:psnr=1",  # keyframes only where we put them
            str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, check=True)
    psnr = re.findall(r"PSNR Mean .*Global:([0-9.]+)", done.stderr)
    size = out.stat().st_size
    out.unlink()
    return size, float(psnr[-1]) if psnr else float("nan")


def bd_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    """Mean rate difference (%) of ``test`` against ``anchor`` at equal quality; points are (bytes, PSNR)."""
    def log_rate(points: list[tuple[float, float]], q: float) -> float:
        pts = sorted((p, math.log(r)) for r, p in points)
        for (q0, r0), (q1, r1) in itertools.pairwise(pts):
            if q0 <= q <= q1:
                return r0 + (r1 - r0) * (q - q0) / (q1 - q0)
        raise ValueError(q)
    low = max(min(p for _, p in anchor), min(p for _, p in test))
    high = min(max(p for _, p in anchor), max(p for _, p in test))
    steps = [low + (high - low) * i / 100 for i in range(101)]
    diff = sum(log_rate(test, q) - log_rate(anchor, q) for q in steps) / len(steps)
    return 100 * (math.exp(diff) - 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crfs", default="23,28", help="comma-separated CRFs")
    parser.add_argument("--preset", default="medium")
    args = parser.parse_args()
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    curves: dict[str, list[tuple[float, float]]] = {place: [] for place in PLACES}
    paths = titles("tune")
    for crf in (int(c) for c in args.crfs.split(",")):
        total = {place: [0, 0.0] for place in PLACES}
        print(f"\nCRF {crf}, x264 {args.preset}:\n")
        print("| title | gradual | " + " | ".join(f"{p} kB | {p} PSNR" for p in PLACES) + " |")
        print("|---|---:|" + "---:|---:|" * len(PLACES))
        for path in paths:
            meta = json.loads(path.with_suffix(".json").read_text())
            row = []
            for place, where in PLACES.items():
                keys = [0, *meta["cuts"], *(where(g) for g in meta["gradual"])]
                size, psnr = encode(ffmpeg, path, keys, meta["fps"], crf, args.preset)
                total[place][0] += size
                total[place][1] += psnr / len(paths)
                row += [f"{size / 1000:.0f}", f"{psnr:.2f}"]
            print(f"| {path.name} | {len(meta['gradual'])} | " + " | ".join(row) + " |")
        base = total["middle"][0]
        print("| **all** | | " + " | ".join(f"{t[0] / 1000:.0f} ({100 * (t[0] / base - 1):+.1f}%) | {t[1]:.2f}"
                                              for t in total.values()) + " |")
        for place, (size, psnr) in total.items():
            curves[place].append((size, psnr))
    if len(curves["middle"]) > 1:
        print()
        for place, curve in curves.items():
            bd = bd_rate(curves["middle"], curve)
            print(f"BD-rate (PSNR) of a keyframe at the {place} against the middle: {bd:+.2f}%")


if __name__ == "__main__":
    main()
