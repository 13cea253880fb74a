"""QC and shot detection over a whole title against the same split by time, on 1 and 2 workers.

    .venv/bin/python bench/split_analysis.py [--seconds 64] [--chunk 16] [--runs 3] [--keep DIR]

Builds a deterministic 1080p25 title (H.264, a keyframe every 2 s, a stereo tone) by joining the
shared clips, each scaled to 1920x1080 and looped to fill, then runs, ``--runs`` times each and in
turn (so load on the machine falls on every mode alike):

- whole: run_qc, then detect_shots, one after the other (today's flow);
- split x1: every QC chunk, the sound pass and every shot chunk, one at a time;
- split x2: the same units on a pool of two threads (what the flow's task runner does).

Wall time and CPU time (this process and its ffmpeg children) are reported as medians; the
split's extra CPU over the whole pass is what the chunks' context and seeks cost, which is what
bounds the speed-up on many workers. Each run also checks that the split results equal the whole
pass's (cuts exactly; QC checks and verdict exactly).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from reelflow.encoding import qc, shots
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.infra import tools
from reelflow.infra.settings import ConformConfig, QCConfig, ShotConfig

REPO = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
CLIPS = ["02_tears_of_steel_10s_640x360.mp4", "03_sintel_fight_10s_640x360.mp4",
         "c01_composite_hardcuts_12s_1280x720.mp4", "e05_dog_10s_1280x720.mp4", "04_caminandes_10s_640x360.mp4",
         "12_dashcam_9s_960x540.mp4"]


def build_title(out: Path, seconds: int) -> Path:
    """The clips in turn, each 1920x1080 at 25 fps, repeated until ``seconds``; x264 veryfast CRF 18, GOP 50."""
    pieces = []
    inputs: list[str] = []
    each = -(-seconds // 10)
    for i in range(each):
        clip = MEDIA / CLIPS[i % len(CLIPS)]
        inputs += ["-t", "10", "-i", str(clip)]
        pieces.append(f"[{i}:v]fps=25,scale=1920:1080:flags=bicubic,setsar=1,format=yuv420p,"
                      f"trim=end_frame=250,setpts=N/25/TB[v{i}]")
    graph = ";".join(pieces) + ";" + "".join(f"[v{i}]" for i in range(each)) + f"concat=n={each}:v=1:a=0[v]"
    argv = [tools.ffmpeg_exe(), "-nostdin", "-v", "error", "-y", *inputs,
            "-f", "lavfi", "-i", f"sine=f=440:r=48000:d={each * 10},pan=stereo|c0=c0|c1=c0",
            "-filter_complex", graph, "-map", "[v]", "-map", f"{each}:a", "-t", str(seconds),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-g", "50", "-threads", "2",
            "-c:a", "aac", "-b:a", "128k", str(out)]
    subprocess.run(argv, check=True)
    return out


def cpu_s() -> float:
    me, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


STAGE_CPU: dict[str, float] = {}


def whole(path: Path, info: MediaInfo, qc_config: QCConfig, shot_config: ShotConfig) -> tuple[Any, list[int]]:
    started = cpu_s()
    report = qc.run_qc(path, qc_config, info=info, conform=ConformConfig())
    STAGE_CPU["qc"] = cpu_s() - started
    cuts = shots.detect_cuts(path, shot_config, info=info)
    STAGE_CPU["shots"] = cpu_s() - started - STAGE_CPU["qc"]
    return report, cuts


def split(path: Path, info: MediaInfo, qc_config: QCConfig, shot_config: ShotConfig,
          workers: int) -> tuple[Any, list[int]]:
    qc_chunks = qc.qc_chunks(info, qc_config)
    shot_chunks = shots.shot_chunks(info, shot_config)
    units: list[Callable[[], Any]] = [lambda: qc.measure_audio(path, info, qc_config)]
    units += [lambda c=c: qc.measure_chunk(path, info, qc_config, c) for c in qc_chunks]
    units += [lambda c=c: shots.detect_chunk_cuts(path, c, shot_config, info=info) for c in shot_chunks]
    started = cpu_s()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        done = list(pool.map(lambda unit: unit(), units[:1 + len(qc_chunks)]))
        STAGE_CPU["qc"] = cpu_s() - started
        done += list(pool.map(lambda unit: unit(), units[1 + len(qc_chunks):]))
        STAGE_CPU["shots"] = cpu_s() - started - STAGE_CPU["qc"]
    sound, found_qc, found_cuts = done[0], done[1:1 + len(qc_chunks)], done[1 + len(qc_chunks):]
    report = qc.qc_report(path, info, qc.merge_qc(info, found_qc, sound), qc_config, ConformConfig())
    return report, shots.merge_chunk_cuts(shot_chunks, found_cuts, info.video.frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=64)
    parser.add_argument("--chunk", type=float, default=16.0, help="qc.chunk_s and shots.chunk_s for the split")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--keep", type=Path, help="build the title here (and keep it) instead of a temporary folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="split-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    title = folder / f"title-{args.seconds}s-1080p.mp4"
    if not title.exists():
        build_title(title, args.seconds)
    info = probe(title)
    qc_config, shot_config = QCConfig(chunk_s=args.chunk), ShotConfig(chunk_s=args.chunk)
    modes: dict[str, Callable[[], tuple[Any, list[int]]]] = {
        "whole": lambda: whole(title, info, qc_config, shot_config),
        "split x1": lambda: split(title, info, qc_config, shot_config, 1),
        "split x2": lambda: split(title, info, qc_config, shot_config, 2),
    }
    walls: dict[str, list[float]] = {m: [] for m in modes}
    cpus: dict[str, list[float]] = {m: [] for m in modes}
    stage_cpus: dict[str, dict[str, list[float]]] = {m: {"qc": [], "shots": []} for m in modes}
    results: dict[str, tuple[Any, list[int]]] = {}
    for _ in range(args.runs):
        for name, run in modes.items():
            cpu, wall = cpu_s(), time.monotonic()
            results[name] = run()
            walls[name].append(time.monotonic() - wall)
            cpus[name].append(cpu_s() - cpu)
            for stage in ("qc", "shots"):
                stage_cpus[name][stage].append(STAGE_CPU[stage])
    reference = results["whole"]
    for name in ("split x1", "split x2"):
        report, cuts = results[name]
        checks = [c.to_dict() for c in report.checks]
        if cuts != reference[1] or checks != [c.to_dict() for c in reference[0].checks]:
            raise SystemExit(f"{name}: results differ from the whole pass")
    qc_chunks, shot_chunks = qc.qc_chunks(info, qc_config), shots.shot_chunks(info, shot_config)
    print(f"title: {info.duration_s:.0f} s, {info.video.width}x{info.video.height} {info.video.fps} fps, "
          f"{info.video.frames} frames, {len(reference[1])} cuts; {len(qc_chunks)} QC chunks and "
          f"{len(shot_chunks)} shot chunks of {args.chunk:g} s; {os.cpu_count()} CPUs, {platform.machine()}; "
          f"median of {args.runs}; split results equal the whole pass's")
    print()
    print("| mode | wall s | CPU s | QC CPU s | shots CPU s | wall vs whole | CPU vs whole |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    base_wall, base_cpu = statistics.median(walls["whole"]), statistics.median(cpus["whole"])
    for name in modes:
        wall, cpu = statistics.median(walls[name]), statistics.median(cpus[name])
        per = {k: statistics.median(v) for k, v in stage_cpus[name].items()}
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {per['qc']:.1f} | {per['shots']:.1f} | "
              f"{wall / base_wall:.2f} | {cpu / base_cpu:.2f} |")
    print(f"\nload average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.keep is None:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
