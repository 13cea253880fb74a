"""Trial encodes on real clips: analysis CPU against final-encode CPU, and trial points against real encodes.

    .venv/bin/python bench/trials.py                                   # the default clips, markdown tables
    .venv/bin/python bench/trials.py --clips e05_dog_10s_1280x720.mp4  # some clips only (names in ../shared/media)
    .venv/bin/python bench/trials.py --no-check                        # CPU only, no verification encodes
    .venv/bin/python bench/trials.py --table                           # measure the fixed correction table

Per clip: shots as detect_shots finds them, keyframes on the 4 s segment grid and at shot starts.
Analysis CPU is everything trials.py runs (the sample: cut, pruning trials, final-preset
calibration; then every shot's trial encodes and VMAF), summed from each process's own CPU time
(tools.run, wait4), so other load on the machine does not enter it. Final CPU is the fixed
reference ladder (Apple's rungs no taller than the source, x264 medium, as encode.py encodes
them) on the same clip: ``ratio`` is analysis / final, the budget is 1.5.

Prediction check: for every shot, at every kept height and at CRFs --check-crfs (the probes and
points between them, which are interpolated), the shot encoded as a per-shot rung encodes it
(encode.shot_encode_argv: final preset, ffmpeg's default threads) and scored with VMAF on every
frame at display size, against the trial's predicted point; rates are video payload (packet sizes). Errors are
predicted minus real: VMAF points, and rate in percent of the real rate. "title" rows combine the
shots at one (height, CRF) weighted by duration, as a rung does.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reelflow.encoding.encode import ShotCrf, keyframe_frames, ladder_for_source, shot_encode_argv, video_encode_argv
from reelflow.encoding.hull import RdPoint
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.shots import Shot, detect_shots
from reelflow.encoding.trials import (
    Trial,
    frame_sizes,
    group_shots,
    plan_trials,
    trial_grid,
    trial_shots,
    trial_size,
)
from reelflow.encoding.vmaf import measure_vmaf, vmaf_pix_fmt
from reelflow.infra.settings import APPLE_HLS_LADDER, EncodeConfig, TrialConfig
from reelflow.infra.tools import run

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
DEFAULT_CLIPS = ("e05_dog_10s_1280x720.mp4", "03_sintel_fight_10s_640x360.mp4", "12_dashcam_9s_960x540.mp4",
                 "10_talking_head_9s_1280x720.mp4")


@dataclass
class Check:
    """One predicted point against the real final-preset encode of the same shot, height and CRF."""

    shot: int
    duration_s: float
    height: int
    crf: float
    probe: bool
    predicted: RdPoint
    real_kbps: float
    real_vmaf: float

    @property
    def d_vmaf(self) -> float:
        return self.predicted.vmaf - self.real_vmaf

    @property
    def d_rate(self) -> float:
        return (self.predicted.kbps / self.real_kbps - 1) * 100


@dataclass
class ClipResult:
    name: str
    size: str
    shots: int
    heights: tuple[int, ...]
    skipped: tuple[int, ...]
    trials: int
    plan_cpu: float
    shots_cpu: float
    final_cpu: float
    rungs: int
    wall_s: float
    checks: list[Check] = field(default_factory=list)

    @property
    def analysis_cpu(self) -> float:
        return self.plan_cpu + self.shots_cpu


def final_ladder_cpu(src: Path, info: MediaInfo, keyframes: Sequence[int], work: Path) -> tuple[float, int]:
    """CPU seconds of the fixed reference ladder at medium, encoded as encode.py encodes a rung."""
    config = EncodeConfig()
    rungs = ladder_for_source(info.video, APPLE_HLS_LADDER)
    cpu = 0.0
    for rung in rungs:
        out = work / f"final_{rung.name}.mp4"
        cpu += run(video_encode_argv(src, rung, keyframes, info.video, config, out)).cpu_s
        out.unlink()
    return cpu, len(rungs)


def real_encode(src: Path, info: MediaInfo, shot: Shot, height: int, crfs: Sequence[float], keyframes: Sequence[int],
                preset: str, work: Path) -> list[tuple[float, float]]:
    """(kbps, VMAF on every frame) of the shot encoded by encode.py's per-shot final encode, one per CRF."""
    video = info.video
    width, _ = trial_size(video, height)
    results = []
    for c in crfs:
        out = work / f"real_{shot.index}_{height}_{c}.mp4"
        run(shot_encode_argv(src, video, ShotCrf(shot.start_frame, shot.end_frame, c), width, height, keyframes,
                             preset, out))
        score = measure_vmaf(out, src, width=video.display_width, height=video.height, fps=video.fps,
                             subsample=1, ref_start_frame=shot.start_frame, ref_start_s=video.start_s,
                             frames=shot.frames, pix_fmt=vmaf_pix_fmt(info))
        kbps = sum(frame_sizes(out, shot.frames)) * 8 / 1000 / float(shot.frames / video.fps)
        out.unlink()
        results.append((kbps, score.mean))
    return results


def bench_clip(src: Path, config: TrialConfig, check_crfs: Sequence[float], check: bool) -> ClipResult:
    info = probe(src)
    video = info.video
    shots = detect_shots(src, info=info).shots
    keyframes = keyframe_frames([s.start_frame for s in shots], video.frames, video.fps, EncodeConfig().segment_s)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-trials-") as tmp:
        work = Path(tmp)
        plan = plan_trials(src, info, shots, config, work)
        results = [r for group in group_shots(shots, video.fps, config)
                   for r in trial_shots(src, info, group, config, work, plan=plan, keyframes=keyframes)]
        wall = time.perf_counter() - started
        final_cpu, rungs = final_ladder_cpu(src, info, keyframes, work)
        result = ClipResult(
            name=src.name, size=f"{video.width}x{video.height}", shots=len(shots), heights=plan.heights,
            skipped=plan.skipped, trials=len(plan.sample_trials) + len(plan.calibration_trials)
            + sum(len(r.trials) for r in results), plan_cpu=plan.cpu_s, shots_cpu=sum(r.cpu_s for r in results),
            final_cpu=final_cpu, rungs=rungs, wall_s=wall)
        if check:
            probes = set(plan.crfs)
            for shot, res in zip(shots, results, strict=True):
                for height in plan.heights:
                    predicted = {p.crf: p for p in res.points.points if p.height == height}
                    crfs = [c for c in check_crfs if c in predicted]
                    for c, (kbps, vmaf) in zip(crfs, real_encode(src, info, shot, height, crfs, keyframes,
                                                                  config.final_preset, work), strict=True):
                        result.checks.append(Check(shot.index, shot.duration_s, height, c, c in probes,
                                                   predicted[c], kbps, vmaf))
    return result


def _dist(values: Sequence[float]) -> str:
    if not values:
        return "-"
    absolute = sorted(abs(v) for v in values)
    p90 = absolute[min(len(absolute) - 1, math.ceil(0.9 * len(absolute)) - 1)]
    return f"{statistics.fmean(values):+.2f} / {statistics.median(absolute):.2f} / {p90:.2f} / {absolute[-1]:.2f}"


def _title_checks(checks: Sequence[Check]) -> list[tuple[float, float]]:
    """(VMAF error, rate error %) per (clip height, CRF) with the shots combined by duration."""
    groups: dict[tuple[int, float], list[Check]] = {}
    for c in checks:
        groups.setdefault((c.height, c.crf), []).append(c)
    out = []
    for group in groups.values():
        total = sum(c.duration_s for c in group)
        pv = sum(c.predicted.vmaf * c.duration_s for c in group) / total
        rv = sum(c.real_vmaf * c.duration_s for c in group) / total
        pk = sum(c.predicted.kbps * c.duration_s for c in group) / total
        rk = sum(c.real_kbps * c.duration_s for c in group) / total
        out.append((pv - rv, (pk / rk - 1) * 100))
    return out


def report(results: Sequence[ClipResult], config: TrialConfig) -> None:
    print(f"trial preset {config.preset} ({config.x264_params}) -> {config.final_preset}; CRFs {config.crfs}; "
          f"VMAF every {config.vmaf_subsample}th frame; calibrate={config.calibrate}; prune={config.prune}\n")
    print("| clip | size | shots | heights tried (skipped) | trials | sample+calib CPU s | shot trials CPU s "
          "| analysis CPU s | final ladder CPU s (rungs) | ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r.name} | {r.size} | {r.shots} | {','.join(map(str, r.heights))} "
              f"({','.join(map(str, r.skipped)) or '-'}) | {r.trials} | {r.plan_cpu:.1f} | {r.shots_cpu:.1f} "
              f"| {r.analysis_cpu:.1f} | {r.final_cpu:.1f} ({r.rungs}) | {r.analysis_cpu / r.final_cpu:.2f} |")
    total_a = sum(r.analysis_cpu for r in results)
    total_f = sum(r.final_cpu for r in results)
    print(f"| all | | | | {sum(r.trials for r in results)} | | | {total_a:.1f} | {total_f:.1f} | "
          f"{total_a / total_f:.2f} |")
    checks = [c for r in results for c in r.checks]
    if not checks:
        return
    print("\nPrediction error, predicted minus real medium encode on every frame: "
          "mean / median |e| / p90 |e| / max |e|\n")
    print("| points | n | VMAF error | rate error % | within 1 VMAF | within 10% rate |")
    print("|---|---|---|---|---|---|")

    def row(name: str, errors: Sequence[tuple[float, float]]) -> None:
        dv = [e[0] for e in errors]
        dr = [e[1] for e in errors]
        inside_v = sum(abs(v) <= 1.0 for v in dv) / len(dv) * 100
        inside_r = sum(abs(v) <= 10.0 for v in dr) / len(dr) * 100
        print(f"| {name} | {len(errors)} | {_dist(dv)} | {_dist(dr)} | {inside_v:.0f}% | {inside_r:.0f}% |")

    for r in results:
        if r.checks:
            row(f"{r.name}, shots", [(c.d_vmaf, c.d_rate) for c in r.checks])
    row("all shots, probe CRFs", [(c.d_vmaf, c.d_rate) for c in checks if c.probe])
    row("all shots, interpolated CRFs", [(c.d_vmaf, c.d_rate) for c in checks if not c.probe])
    row("all shots", [(c.d_vmaf, c.d_rate) for c in checks])
    row("title (shots by duration)", [e for r in results for e in _title_checks(r.checks)])


def measure_table(clips: Sequence[Path], config: TrialConfig) -> None:
    """Rate ratio and VMAF offset, final preset over trial preset at the same CRF, per clip and height."""
    ratios: dict[int, list[float]] = {c: [] for c in config.crfs}
    offsets: dict[int, list[float]] = {c: [] for c in config.crfs}
    print("| clip | height | " + " | ".join(f"CRF {c}: ratio / offset" for c in config.crfs) + " |")
    print("|---|---|" + "---|" * len(config.crfs))
    for src in clips:
        info = probe(src)
        video = info.video
        whole = Shot(index=0, start_frame=0, end_frame=video.frames, start_s=0.0,
                     end_s=float(video.frames / video.fps), boundary="start")
        sizes = [trial_size(video, h) for h in config.heights if h <= video.height]
        with tempfile.TemporaryDirectory(prefix="bench-table-") as tmp:
            grids: dict[str, list[Trial]] = {
                preset: trial_grid(src, info, [whole], sizes, config.crfs, preset, config, Path(tmp),
                                   start_s=video.start_s, x264_params=params)[whole.index]
                for preset, params in ((config.preset, config.x264_params), (config.final_preset, ""))
            }
        final = {(t.height, t.crf): t for t in grids[config.final_preset]}
        for _, h in sizes:
            cells = []
            for c in config.crfs:
                fast = next(t for t in grids[config.preset] if t.height == h and t.crf == c)
                ratio, offset = final[(h, c)].kbps / fast.kbps, final[(h, c)].vmaf - fast.vmaf
                ratios[c].append(ratio)
                offsets[c].append(offset)
                cells.append(f"{ratio:.2f} / {offset:+.2f}")
            print(f"| {src.name} | {h} | " + " | ".join(cells) + " |")
    print("\nmedian over clips and heights: rate_ratio="
          + str(tuple(round(statistics.median(ratios[c]), 2) for c in config.crfs))
          + ", vmaf_offset=" + str(tuple(round(statistics.median(offsets[c]), 1) for c in config.crfs)))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS))
    parser.add_argument("--check-crfs", type=float, nargs="*", default=[20, 24, 27, 31, 34])
    parser.add_argument("--no-check", action="store_true", help="only CPU, no verification encodes")
    parser.add_argument("--no-calibrate", action="store_true", help="the fixed correction table instead")
    parser.add_argument("--no-prune", action="store_true")
    parser.add_argument("--subsample", type=int, default=None)
    parser.add_argument("--table", action="store_true", help="measure the fixed correction table")
    parser.add_argument("--dump", type=Path, help="also write every check as JSON lines here")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    overrides: dict[str, object] = {"calibrate": not args.no_calibrate, "prune": not args.no_prune}
    if args.subsample is not None:
        overrides["vmaf_subsample"] = args.subsample
    config = TrialConfig.model_validate(overrides)
    clips = [MEDIA_DIR / name for name in args.clips]
    missing = [c for c in clips if not c.is_file()]
    if missing:
        print(f"not found: {', '.join(map(str, missing))}", file=sys.stderr)
        return 1
    load = os.getloadavg()
    print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores\n")
    if args.table:
        measure_table(clips, config)
    else:
        results = [bench_clip(c, config, args.check_crfs, not args.no_check) for c in clips]
        report(results, config)
        if args.dump:
            with args.dump.open("w") as out:
                for r in results:
                    for c in r.checks:
                        out.write(json.dumps({"clip": r.name, "shot": c.shot, "seconds": c.duration_s,
                                              "height": c.height, "crf": c.crf, "probe": c.probe,
                                              "kbps": c.predicted.kbps, "vmaf": c.predicted.vmaf,
                                              "real_kbps": c.real_kbps, "real_vmaf": c.real_vmaf}) + "\n")
    load = os.getloadavg()
    print(f"\nload average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
