"""Where in a gradual transition the encoder gains most from the unit boundary (its keyframe).

Each tuning title of bench/shot_transitions.py is encoded with x264 (CRF, closed GOPs, no
scene-cut keyframes of its own) with a keyframe at every hard cut and, in every gradual
transition, at its first frame, its middle, or the first frame after it. The same CRF gives about
the same quality, so the size tells what each placement costs; x264's global PSNR is printed beside
it to show the quality did stay put.

    .venv/bin/python bench/shot_boundary.py [--crf 23] [--preset medium]
"""

from __future__ import annotations

import argparse
import json
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crf", type=int, default=23)
    parser.add_argument("--preset", default="medium")
    args = parser.parse_args()
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    total = {place: [0, 0.0] for place in PLACES}
    print("| title | gradual | " + " | ".join(f"{p} kB | {p} PSNR" for p in PLACES) + " |")
    print("|---|---:|" + "---:|---:|" * len(PLACES))
    for path in titles("tune"):
        meta = json.loads(path.with_suffix(".json").read_text())
        row = []
        for place, where in PLACES.items():
            keys = [0, *meta["cuts"], *(where(g) for g in meta["gradual"])]
            size, psnr = encode(ffmpeg, path, keys, meta["fps"], args.crf, args.preset)
            total[place][0] += size
            total[place][1] += psnr / 6
            row += [f"{size / 1000:.0f}", f"{psnr:.2f}"]
        print(f"| {path.name} | {len(meta['gradual'])} | " + " | ".join(row) + " |")
    base = total["middle"][0]
    print("| **all** | | " + " | ".join(f"{t[0] / 1000:.0f} ({100 * (t[0] / base - 1):+.1f}% vs middle) | {t[1]:.2f}"
                                          for t in total.values()) + " |")


if __name__ == "__main__":
    main()
