"""CPU of the picture conform against a plain decode of the same master (docs/benchmarks.md, "Picture conform").

    PYTHONPATH=src .venv/bin/python bench/conform.py [--seconds 5] [--runs 3]

Masters derived from ../shared/media with the bundled ffmpeg (as the tests make them, longer):
a 1080i25 MPEG-2 MXF and a 1080i29.97 H.264 (fields from 50p/59.94p motion), and a 3:2 telecined
29.97 H.264 at 1080. For each, CPU seconds
(user + system of ffmpeg) of, side by side, the median of ``--runs``:

- decode: the master decoded and discarded;
- + filter: the same decode through the conform's field filter (bwdif, or fieldmatch/bwdif/decimate);
- + write Ut Video / x264 / FFV1: the whole conform pass, filter and the lossless intra-only intermediate;
- read back: decoding that intermediate, which every later stage does (shots, trials, encodes, VMAF).

The target is on the filter: at most 15% over the plain decode. The write is a cost of its own,
reported beside it.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path

from reelflow.encoding.conform import conform_argv, plan_conform
from reelflow.encoding.probe import probe
from reelflow.encoding.qc import run_qc
from reelflow.infra import tools
from reelflow.infra.settings import ConformConfig

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def masters(folder: Path, seconds: float) -> dict[str, Path]:
    ff = tools.ffmpeg_exe()
    bokeh, dog = MEDIA / "11_dark_bokeh_7s_1920x1080.mp4", MEDIA / "e05_dog_10s_1280x720.mp4"
    made = {
        "1080i25 MPEG-2 MXF": (folder / "i25.mxf", [
            "-i", str(bokeh), "-vf", "setpts=0.6*PTS,fps=50,tinterlace=mode=interleave_top,setfield=tff",
            "-frames:v", str(round(25 * seconds)), "-c:v", "mpeg2video", "-b:v", "25M", "-flags", "+ilme+ildct",
            "-field_order", "tt", "-an"]),
        "1080i29.97 H.264": (folder / "i2997.mp4", [
            "-i", str(dog), "-vf", "setpts=0.5*PTS,fps=60000/1001,scale=1920:1080,tinterlace=mode=interleave_top,"
            "setfield=tff", "-frames:v", str(round(29.97 * seconds)), "-c:v", "libx264", "-preset", "veryfast",
            "-crf", "16", "-flags", "+ilme+ildct", "-x264-params", "tff=1", "-an"]),
        "3:2 telecined 29.97 H.264 1080": (folder / "tele.mp4", [
            "-i", str(dog), "-vf", "scale=1920:1080,fps=24000/1001,telecine=pattern=23",
            "-frames:v", str(round(29.97 * seconds)), "-c:v", "libx264", "-preset", "veryfast", "-crf", "16",
            "-flags", "+ilme+ildct", "-x264-params", "tff=1", "-an"]),
    }
    for path, args in made.values():
        subprocess.run([ff, "-v", "error", "-y", *args, str(path)], check=True)
    return {name: path for name, (path, _) in made.items()}


def cpu(argv: list[str]) -> float:
    return tools.run(argv).cpu_s


def median_cpu(argv: list[str], runs: int) -> float:
    return statistics.median(cpu(argv) for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ff = tools.ffmpeg_exe()
    print(f"# {platform.machine()}, {platform.processor() or '-'}; {Path(ff).name}; median of {args.runs}")
    print("| master | decode | + filter | filter over decode | + write Ut Video | + write x264 | + write FFV1 "
          "| read back Ut Video | read back x264 | read back FFV1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, path in masters(folder, args.seconds).items():
            info = probe(path)
            plan = plan_conform(info, run_qc(path, info=info, conform=ConformConfig()), ConformConfig())
            chain = ",".join(plan.filters)
            decode = [ff, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
            filtered = [*decode[:-3], "-vf", chain, "-f", "null", "-"]
            row = [median_cpu(decode, args.runs), median_cpu(filtered, args.runs)]
            reads = []
            for codec in ("utvideo", "x264", "ffv1"):
                chosen = plan.__class__(plan.steps, plan.width, plan.height, plan.fps, plan.frames, plan.pix_fmt, codec)
                out = folder / f"out-{codec}.{'mp4' if codec == 'x264' else 'mov'}"
                row.append(median_cpu(conform_argv(path, info, chosen, out, ConformConfig()), args.runs))
                reads.append(median_cpu([ff, "-nostdin", "-v", "error", "-i", str(out), "-f", "null", "-"], args.runs))
            decode_s, filter_s, *writes = row
            print(f"| {name}, {info.video.frames} frames, {info.duration_s:.1f} s (`{chain}`) | {decode_s:.2f} "
                  f"| {filter_s:.2f} | {filter_s / decode_s - 1:+.0%} | "
                  + " | ".join(f"{w:.2f}" for w in writes) + " | " + " | ".join(f"{r:.2f}" for r in reads) + " |")


if __name__ == "__main__":
    main()
