"""CPU of the picture conform and the HDR tone map against a plain decode (docs/benchmarks.md, "Picture conform").

    PYTHONPATH=src:tests .venv/bin/python bench/conform.py [--seconds 5] [--runs 3] [--only fields|tonemap]

Masters derived from ../shared/media with the bundled ffmpeg (as the tests make them, longer):
a 1080i25 MPEG-2 MXF and a 1080i29.97 H.264 (fields from 50p/59.94p motion), and a 3:2 telecined
29.97 H.264 at 1080. For each, CPU seconds
(user + system of ffmpeg) of, side by side (every command once per round), the median of ``--runs``:

- decode: the master decoded and discarded;
- + filter: the same decode through the conform's field filter (bwdif, or fieldmatch/bwdif/decimate);
- + write Ut Video / x264 / FFV1: the whole conform pass, filter and the lossless intra-only intermediate;
- read back: decoding that intermediate, which every later stage does (shots, trials, encodes, VMAF).

The target is on the filter: at most 15% over the plain decode. The write is a cost of its own,
reported beside it.

HDR masters (tests/hdr_masters.py's recipes, ``--seconds`` long: HDR10 HEVC Main10 2160p with MaxCLL,
HLG HEVC 10-bit 1080p), each command run once per round, rounds interleaved, median of ``--runs``:

- decode: the master decoded and discarded;
- + direct / + LUT: the same decode through the tone map's filter graph (encoding/tonemap.py), each
  method (the 2160p master is scaled to 1080 lines first either way);
- pass: the whole tone-map pass as ``tonemap_argv`` writes it (LUT, Ut Video), and the one before
  this change (direct, FFV1);
- read back: decoding each intermediate, which every stage of the SDR ladder does.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import tempfile
from pathlib import Path

from hdr_masters import make_hdr10, make_hlg  # tests/ on PYTHONPATH: the tests' own recipes
from reelflow.encoding.conform import conform_argv, plan_conform
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.qc import run_qc
from reelflow.encoding.tonemap import tonemap_argv, tonemap_filter
from reelflow.infra import tools
from reelflow.infra.settings import ConformConfig, ToneMapConfig

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


def interleaved(commands: dict[str, list[str]], runs: int) -> dict[str, float]:
    """Median CPU s of each command, the commands run in turn in every round (side by side on a noisy machine)."""
    seen: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            seen[name].append(cpu(argv))
    return {name: statistics.median(values) for name, values in seen.items()}


def tonemap_rows(folder: Path, seconds: float, runs: int) -> None:
    ff = tools.ffmpeg_exe()
    bokeh, dog = MEDIA / "11_dark_bokeh_7s_1920x1080.mp4", MEDIA / "e05_dog_10s_1280x720.mp4"
    hdr = {"HDR10 HEVC Main10 2160p (MaxCLL 1000)": make_hdr10(bokeh, folder / "hdr10.mp4", seconds=seconds),
           "HLG HEVC 10-bit 1080p": make_hlg(dog, folder / "hlg.mp4", seconds=seconds)}
    print("\n| HDR master | decode | + direct | + LUT | direct over decode | LUT over decode | pass LUT, Ut Video "
          "| pass direct, FFV1 (before) | read back Ut Video | read back FFV1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, path in hdr.items():
        info = probe(path)
        lut = ToneMapConfig()
        direct = lut.model_copy(update={"method": "direct"})
        new_out, old_out = folder / "sdr-utvideo.mov", folder / "sdr-ffv1.mov"
        old = tonemap_argv(info, direct, old_out)
        at = old.index("utvideo")
        old[at - 1:at + 1] = ["-c:v", "ffv1", "-level", "3", "-g", "1", "-slices", "4", "-slicecrc", "1"]

        def filtered(config: ToneMapConfig, path: Path = path, info: MediaInfo = info) -> list[str]:
            return [ff, "-nostdin", "-v", "error", "-i", str(path), "-filter_complex", tonemap_filter(info, config),
                    "-map", "[sdr]", "-f", "null", "-"]

        got = interleaved({
            "decode": [ff, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"],
            "direct": filtered(direct), "lut": filtered(lut),
            "pass_new": tonemap_argv(info, lut, new_out), "pass_old": old,
        }, runs)
        reads = interleaved({c: [ff, "-nostdin", "-v", "error", "-i", str(o), "-f", "null", "-"]
                             for c, o in (("utvideo", new_out), ("ffv1", old_out))}, runs)
        d = got["decode"]
        print(f"| {name}, {info.video.frames} frames | {d:.2f} | {got['direct']:.2f} | {got['lut']:.2f} "
              f"| {got['direct'] / d - 1:+.0%} | {got['lut'] / d - 1:+.0%} | {got['pass_new']:.2f} "
              f"| {got['pass_old']:.2f} | {reads['utvideo']:.2f} | {reads['ffv1']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=("fields", "tonemap"))
    args = parser.parse_args()
    ff = tools.ffmpeg_exe()
    print(f"# {platform.machine()}, {platform.processor() or '-'}; {Path(ff).name}; median of {args.runs}")
    if args.only != "tonemap":
        field_rows(args.seconds, args.runs)
    if args.only != "fields":
        with tempfile.TemporaryDirectory() as tmp:
            tonemap_rows(Path(tmp), args.seconds, args.runs)


def field_rows(seconds: float, runs: int) -> None:
    ff = tools.ffmpeg_exe()
    print("\n| master | decode | + filter | filter over decode | + write Ut Video | + write x264 | + write FFV1 "
          "| read back Ut Video | read back x264 | read back FFV1 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, path in masters(folder, seconds).items():
            info = probe(path)
            plan = plan_conform(info, run_qc(path, info=info, conform=ConformConfig()), ConformConfig())
            chain = ",".join(plan.filters)
            decode = [ff, "-nostdin", "-v", "error", "-i", str(path), "-map", "0:v:0", "-f", "null", "-"]
            commands = {"decode": decode, "filter": [*decode[:-3], "-vf", chain, "-f", "null", "-"]}
            outs = {}
            for codec in ("utvideo", "x264", "ffv1"):
                chosen = plan.__class__(plan.steps, plan.width, plan.height, plan.fps, plan.frames, plan.pix_fmt, codec)
                outs[codec] = folder / f"out-{codec}.{'mp4' if codec == 'x264' else 'mov'}"
                commands[codec] = conform_argv(path, info, chosen, outs[codec], ConformConfig())
            got = interleaved(commands, runs)       # side by side: every command once per round
            reads = list(interleaved({c: [ff, "-nostdin", "-v", "error", "-i", str(o), "-f", "null", "-"]
                                      for c, o in outs.items()}, runs).values())
            row = [got["decode"], got["filter"], got["utvideo"], got["x264"], got["ffv1"]]
            decode_s, filter_s, *writes = row
            print(f"| {name}, {info.video.frames} frames, {info.duration_s:.1f} s (`{chain}`) | {decode_s:.2f} "
                  f"| {filter_s:.2f} | {filter_s / decode_s - 1:+.0%} | "
                  + " | ".join(f"{w:.2f}" for w in writes) + " | " + " | ".join(f"{r:.2f}" for r in reads) + " |")


if __name__ == "__main__":
    main()
