"""Per-title and per-shot ladders against the fixed ladder and the exhaustive per-title hull, on real clips.

    .venv/bin/python bench/ladder.py                         # the default clips and the 60 s episode
    .venv/bin/python bench/ladder.py --clips 03_sintel_fight_10s_640x360.mp4 --no-episode
    .venv/bin/python bench/ladder.py --jobs 2 --json out.json

Per clip, with one encoder and preset for every ladder (x264 ``medium``, closed GOPs, keyframes at
shot starts and on the 4 s grid, exactly as the flow encodes):

- fixed: Apple's HLS rungs no taller than the source, encoded as encode.py encodes them (VBV);
- exhaustive: the 2015 per-title method, every candidate resolution x CRF 18..38 step 4 over the
  whole title, each encode scored on every frame; the reference curve is the upper convex hull of
  all those points (the best any per-title ladder on this grid can do, with no spacing rules);
- per-title and per-shot: reelflow's analysis (trials.py: fast calibrated trials, VMAF on a
  frame subsample, pruning), the ladder chosen by ladder.py, each rung encoded shot by shot at its
  planned CRFs (encode.encode_rung_per_shot).

Every delivered rung of fixed, per-title and per-shot is scored with VMAF (vmaf_v0.6.1) on every
frame at the source's display size; rates are the video payload (packet sizes over the duration).
BD-rate, negative for fewer bits at the same quality, is measured against the exhaustive hull at
each delivered rung's own quality (``bdrate.bd_rate_at_points``: the rate the hull needs for that
VMAF, log rate linear between hull points, mean of the log ratios over the rungs inside the hull's
range). Integrating between a ladder's few rungs (classic ``bd_rate``) would charge a 2-5 rung
ladder for its chords under a concave curve against a hull of dozens of points, whatever the
ladder; both figures are in the JSON (``bd_integrated``). Ladders compare with each other through
the same yardstick: X against Y is (1 + X vs hull) / (1 + Y vs hull) - 1.

CPU is each process's own CPU time (tools.run, wait4), so other load does not enter it:
``analysis/final`` is reelflow's analysis over its per-shot ladder's final encodes (the budget is
1.5), ``grid/final`` the exhaustive grid's encodes and VMAF over the same final encodes.

The episode joins the 640x360 clips and Big Buck Bunny's 30 s (scaled to 640x360, 24 fps) into one
60 s title, encoded near-losslessly as its mezzanine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from reelflow.encoding.analysis import (
    LadderAnalysis,
    allocation_units,
    deliver_rungs,
    encode_planned_rung,
    measure_delivered,
    planned_half_rate,
)
from reelflow.encoding.bdrate import BdRateError, bd_rate, bd_rate_at_points
from reelflow.encoding.encode import encode_video_rung, half_rate_title, keyframe_frames, ladder_for_source
from reelflow.encoding.hull import RdPoint, ShotPoints, upper_hull
from reelflow.encoding.ladder import select_ladder
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.shots import Shot, detect_shots, even_starts
from reelflow.encoding.trials import (
    ShotTrials,
    TrialPlan,
    candidate_heights,
    combine,
    frame_sizes,
    group_shots,
    plan_trials,
    trial_grid,
    trial_shots,
    trial_size,
)
from reelflow.encoding.vmaf import measure_rung_vmaf
from reelflow.infra.hashing import config_digest, sha256_file
from reelflow.infra.settings import Settings, load_settings
from reelflow.infra.tools import ffmpeg_exe, run

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))
DEFAULT_CLIPS = (
    "02_tears_of_steel_10s_640x360.mp4", "03_sintel_fight_10s_640x360.mp4", "04_caminandes_10s_640x360.mp4",
    "12_dashcam_9s_960x540.mp4", "c01_composite_hardcuts_12s_1280x720.mp4", "e05_dog_10s_1280x720.mp4",
    "10_talking_head_9s_1280x720.mp4",
)
EPISODE_PARTS = ("02_tears_of_steel_10s_640x360.mp4", "03_sintel_fight_10s_640x360.mp4",
                 "04_caminandes_10s_640x360.mp4", "01_bbb_0-30s_1280x720_vp8.webm")
GRID_CRFS = (18, 22, 26, 30, 34, 38)

log = logging.getLogger("bench.ladder")
Result = TypeVar("Result")   # one clip's figures: a dataclass


@dataclass
class Ladder:
    """A ladder as delivered: (kbps, VMAF) per rung, and what its encodes cost."""

    name: str
    points: list[tuple[float, float]]
    rungs: list[str]
    encode_cpu_s: float
    planned: list[tuple[float, float]] = field(default_factory=list)   # (kbps, VMAF) the plan promised
    discarded_cpu_s: float = 0.0          # first encodes of rechecked rungs with their VMAF, and the cheapest
                                          # rung's quick check: analysis, not final
    checks: list[dict[str, Any]] = field(default_factory=list)     # analysis.RungCheck per rung, cheapest first
    vmaf_cpu_s: list[float] = field(default_factory=list)          # each delivered rung's every-frame VMAF run


@dataclass
class ClipResult:
    clip: str
    size: str
    seconds: float
    shots: int
    units: int
    fixed: Ladder
    per_title: Ladder
    per_shot: Ladder
    exhaustive_hull: list[tuple[float, float]]
    grid_cpu_s: float
    analysis_cpu_s: float
    heights_tried: list[int]
    bd: dict[str, float | None]
    bd_integrated: dict[str, float | None]


def _payload_kbps(path: Path, info: MediaInfo) -> float:
    return sum(frame_sizes(path, info.video.frames)) * 8 / 1000 / float(info.video.frames / info.video.fps)


def deliver_fixed(src: Path, info: MediaInfo, keyframes: Sequence[int], settings: Settings, work: Path,
                  pool: ThreadPoolExecutor) -> Ladder:
    rungs = ladder_for_source(info.video, settings.encode.ladder)

    def one(rung: Any) -> tuple[float, float, float]:
        rendition = encode_video_rung(src, rung, keyframes, info, settings.encode, work / f"fixed-{rung.name}.mp4",
                                      reuse=False)
        score = measure_rung_vmaf(rendition.path, info, half_rate=rendition.half_rate)
        return _payload_kbps(rendition.path, info), score.mean, rendition.cpu_s

    done = list(pool.map(one, rungs))
    return Ladder("fixed", [(k, v) for k, v, _ in done], [r.name for r in rungs], sum(c for _, _, c in done))


def deliver_planned(name: str, src: Path, info: MediaInfo, analysis: LadderAnalysis, keyframes: Sequence[int],
                    settings: Settings, work: Path) -> Ladder:
    """Encode and score the rungs as the flow does (analysis.deliver_rungs: cheapest first, each
    carrying the miss of the one below, rechecked if still off its plan)."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    shots = analysis.units
    analysis, made, delivered = deliver_rungs(
        analysis, lambda r: encode_planned_rung(src, info, r, shots, keyframes, settings.encode, folder),
        lambda rendition: measure_delivered(rendition, measure_rung_vmaf(rendition.path, info,
                                                                         half_rate=rendition.half_rate), shots, info),
        settings.ladder,
        lambda rendition, step: measure_rung_vmaf(rendition.path, info, subsample=step, half_rate=rendition.half_rate),
        half_rate_rung=lambda r: planned_half_rate(r, info, settings.encode))
    return Ladder(name, [(delivered[r.name].kbps, delivered[r.name].vmaf.mean) for r in analysis.rungs],
                  [r.name for r in analysis.rungs], sum(made[r.name].cpu_s for r in analysis.rungs),
                  planned=[(r.kbps, r.vmaf) for r in analysis.rungs], discarded_cpu_s=analysis.discarded_cpu_s,
                  checks=[c.to_dict() for c in analysis.checks],
                  vmaf_cpu_s=[round(delivered[r.name].vmaf.cpu_s, 2) for r in analysis.rungs])


def exhaustive(src: Path, info: MediaInfo, shots: Sequence[Shot], keyframes: Sequence[int], settings: Settings,
               work: Path, cache: Path | None = None) -> tuple[list[RdPoint], float]:
    """Every candidate height x GRID_CRFS over the whole title with the final preset, scored on every frame.

    With ``cache`` (a folder), the points are kept per clip, final preset and keyframes, so runs that
    compare reelflow settings on the same clips encode the grid once.
    """
    key = config_digest(sha256_file(src), settings.encode.preset, GRID_CRFS, list(keyframes),
                        candidate_heights(info.video, settings.trials))
    cached = cache / f"{src.stem}-{key}.json" if cache is not None else None
    if cached is not None and cached.exists():
        data = json.loads(cached.read_text())
        return [RdPoint(**p) for p in data["points"]], data["cpu_s"]
    points, cpu = _exhaustive(src, info, shots, keyframes, settings, work)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps({"points": [asdict(p) for p in points], "cpu_s": cpu}))
    return points, cpu


def _exhaustive(src: Path, info: MediaInfo, shots: Sequence[Shot], keyframes: Sequence[int], settings: Settings,
                work: Path) -> tuple[list[RdPoint], float]:
    config = settings.trials.model_copy(update={"vmaf_subsample": 1, "crfs": GRID_CRFS})
    heights = candidate_heights(info.video, config)
    video = info.video
    points, cpu = [], 0.0
    for height in heights:  # one run per height: one run for all would hold dozens of encoders in memory
        trials = trial_grid(src, info, shots, [trial_size(video, height)], GRID_CRFS, settings.encode.preset,
                            config, work / f"grid-{height}", start_s=video.start_s, keyframes=keyframes)
        for t in combine(trials, shots):
            points.append(RdPoint(kbps=t.kbps, vmaf=t.vmaf, width=t.width, height=t.height, crf=t.crf))
            cpu += t.cpu_s
    return points, cpu


def _bd(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float | None:
    try:
        return round(bd_rate(anchor, test), 2)
    except BdRateError as exc:
        log.warning("BD-rate not defined: %s", exc)
        return None


def at_points(hull: Sequence[tuple[float, float]], ladder: Sequence[tuple[float, float]]) -> float | None:
    """``bdrate.bd_rate_at_points``, or None (and a warning) where it is not defined."""
    try:
        return bd_rate_at_points(hull, ladder)
    except BdRateError as exc:
        log.warning("BD-rate at the rungs not defined: %s", exc)
        return None


def _versus(x: float | None, y: float | None) -> float | None:
    """X against Y through their figures against the same hull."""
    return None if x is None or y is None else round(((1 + x / 100) / (1 + y / 100) - 1) * 100, 2)


def _monotone(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """A delivered ladder as a curve: by rate, keeping only rungs that add quality (BD-rate needs monotone)."""
    out: list[tuple[float, float]] = []
    for kbps, vmaf in sorted(points):
        if not out or vmaf > out[-1][1]:
            out.append((kbps, vmaf))
    return out


def shots_and_keyframes(src: Path, info: MediaInfo,
                        settings: Settings) -> tuple[tuple[Shot, ...], tuple[int, ...]]:
    """The title's shots and the keyframes every rung gets, as the ingest finds them."""
    detected = detect_shots(src, settings.shots, info=info)
    even = half_rate_title(info.video.fps, settings.encode)   # a 50/60 fps title: keyframes on even frames
    found = tuple((even_starts(detected) if even else detected).shots)
    return found, keyframe_frames([s.start_frame for s in found], info.video.frames, info.video.fps,
                                  settings.encode.segment_s, even=even)


def run_trials(src: Path, info: MediaInfo, found: Sequence[Shot], keyframes: tuple[int, ...], settings: Settings,
               work: Path, pool: ThreadPoolExecutor) -> tuple[tuple[Shot, ...], TrialPlan, list[ShotTrials]]:
    """reelflow's analysis as the ingest runs it: allocation units, the trial plan on a sample, and
    every group of units' trials in ``pool``; returns (units, plan, trials)."""
    units = allocation_units(found, keyframes, info, settings)
    plan = plan_trials(src, info, found, settings.trials, work / "trials")
    groups = group_shots(units, info.video.fps, settings.trials)
    measured = [s for g in pool.map(lambda g: trial_shots(src, info, g, settings.trials, work / "trials",
                                                          plan=plan, keyframes=keyframes), groups) for s in g]
    return units, plan, measured


def bench_clip(src: Path, settings: Settings, jobs: int, grid_cache: Path | None = None) -> ClipResult:
    info = probe(src)
    found, keyframes = shots_and_keyframes(src, info, settings)
    with tempfile.TemporaryDirectory(prefix="bench-ladder-") as tmp, ThreadPoolExecutor(jobs) as pool:
        work = Path(tmp)
        # reelflow's analysis: the trials once; both modes choose their rungs from the same points
        units, plan, measured = run_trials(src, info, found, keyframes, settings, work, pool)
        analysis_cpu = plan.cpu_s + sum(s.cpu_s for s in measured)
        points: list[ShotPoints] = [s.points for s in measured]

        def planned(mode: Literal["per-title", "per-shot"]) -> LadderAnalysis:
            return LadderAnalysis(mode=mode, plan=plan, shots=tuple(measured), units=units,
                                  rungs=tuple(select_ladder(points, settings.ladder, mode)))

        # each ladder's rungs go one after another (each carries the one below): the two ladders side by side
        per_shot_job = pool.submit(deliver_planned, "per-shot", src, info, planned("per-shot"), keyframes, settings,
                                   work)
        per_title = deliver_planned("per-title", src, info, planned("per-title"), keyframes, settings, work)
        per_shot = per_shot_job.result()
        analysis_cpu += per_shot.discarded_cpu_s
        fixed = deliver_fixed(src, info, keyframes, settings, work, pool)
        grid, grid_cpu = exhaustive(src, info, found, keyframes, settings, work, grid_cache)
    hull = [(p.kbps, p.vmaf) for p in upper_hull(grid)]
    ps, pt, fx = _monotone(per_shot.points), _monotone(per_title.points), _monotone(fixed.points)
    on_hull = {"per_shot": at_points(hull, per_shot.points), "per_title": at_points(hull, per_title.points),
               "fixed": at_points(hull, fixed.points)}
    bd = {
        "per_shot_vs_exhaustive": _versus(on_hull["per_shot"], 0.0),
        "per_title_vs_exhaustive": _versus(on_hull["per_title"], 0.0),
        "exhaustive_vs_fixed": _versus(0.0, on_hull["fixed"]),
        "per_shot_vs_fixed": _versus(on_hull["per_shot"], on_hull["fixed"]),
        "per_title_vs_fixed": _versus(on_hull["per_title"], on_hull["fixed"]),
        "per_shot_vs_per_title": _versus(on_hull["per_shot"], on_hull["per_title"]),
    }
    integrated = {
        "per_shot_vs_exhaustive": _bd(hull, ps), "per_title_vs_exhaustive": _bd(hull, pt),
        "exhaustive_vs_fixed": _bd(fx, hull), "per_shot_vs_fixed": _bd(fx, ps), "per_title_vs_fixed": _bd(fx, pt),
        "per_shot_vs_per_title": _bd(pt, ps),
    }
    v = info.video
    return ClipResult(clip=src.name, size=f"{v.width}x{v.height}", seconds=round(float(v.frames / v.fps), 2),
                      shots=len(found), units=len(units), fixed=fixed, per_title=per_title, per_shot=per_shot,
                      exhaustive_hull=[(round(k, 1), round(q, 3)) for k, q in hull], grid_cpu_s=round(grid_cpu, 1),
                      analysis_cpu_s=round(analysis_cpu, 1), heights_tried=list(plan.heights), bd=bd,
                      bd_integrated=integrated)


def make_episode(out: Path) -> Path:
    """The 60 s episode: the 640x360 clips and BBB's 30 s, at 640x360 and 24 fps, near-lossless x264."""
    parts = [MEDIA_DIR / name for name in EPISODE_PARTS]
    argv = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-y"]
    for p in parts:
        argv += ["-i", str(p)]
    chains = [f"[{i}:v:0]scale=640:360:flags=lanczos,setsar=1,fps=24,format=yuv420p[v{i}]" for i in range(len(parts))]
    graph = ";".join(chains) + ";" + "".join(f"[v{i}]" for i in range(len(parts))) + \
        f"concat=n={len(parts)}:v=1:a=0[v]"
    # one x264 thread: the same episode, byte for byte, on every run (so the grid cache applies to it)
    run([*argv, "-filter_complex", graph, "-map", "[v]", "-an", "-c:v", "libx264", "-preset", "veryfast",
         "-threads", "1", "-crf", "8", "-g", "48", str(out)])
    return out


def _median(values: Sequence[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return round(statistics.median(real), 2) if real else None


def _mean(values: Sequence[float | None]) -> float | None:
    real = [v for v in values if v is not None]
    return round(statistics.fmean(real), 2) if real else None


def table(results: Sequence[ClipResult]) -> str:
    head = ("| clip | shots | BD per-shot vs exhaustive | BD per-title vs exhaustive | BD exhaustive vs fixed | "
            "BD per-shot vs fixed | BD per-title vs fixed | analysis/final CPU | grid/final CPU | "
            "planned-delivered VMAF (per-shot rungs) | top rung VMAF (per-shot) | rechecked: first miss |")
    lines = [head, "|" + "---|" * 12]
    for r in results:
        final = r.per_shot.encode_cpu_s
        errors = [p[1] - d[1] for p, d in zip(r.per_shot.planned, r.per_shot.points, strict=True)]
        rechecked = ", ".join(f"{c['rung']} {c['first_error']:+.2f}" for c in r.per_shot.checks
                              if c["rechecked"]) or "-"
        lines.append(
            f"| {r.clip} ({r.size}) | {r.shots} | {r.bd['per_shot_vs_exhaustive']} | "
            f"{r.bd['per_title_vs_exhaustive']} | {r.bd['exhaustive_vs_fixed']} | {r.bd['per_shot_vs_fixed']} | "
            f"{r.bd['per_title_vs_fixed']} | {r.analysis_cpu_s / final:.2f} | {r.grid_cpu_s / final:.1f} | "
            f"{', '.join(f'{e:+.2f}' for e in errors)} | {max(r.per_shot.points, key=lambda p: p[0])[1]:.2f} | "
            f"{rechecked} |")
    keys = ["per_shot_vs_exhaustive", "per_title_vs_exhaustive", "exhaustive_vs_fixed", "per_shot_vs_fixed",
            "per_title_vs_fixed"]
    lines.append("| **mean** | | " + " | ".join(str(_mean([r.bd[k] for r in results])) for k in keys) + " | "
                 f"{_mean([r.analysis_cpu_s / r.per_shot.encode_cpu_s for r in results])} | "
                 f"{_mean([r.grid_cpu_s / r.per_shot.encode_cpu_s for r in results])} | | | |")
    # The mean of ratios weighs a title whose ladder is cheap to encode (two rungs) as much as any;
    # over all titles together, each CPU second counts once.
    analysis = sum(r.analysis_cpu_s for r in results)
    discarded = sum(r.per_shot.discarded_cpu_s for r in results)
    final = sum(r.per_shot.encode_cpu_s for r in results)
    quick = [(r.clip, c["cpu_s"], r.per_shot.vmaf_cpu_s[0]) for r in results for c in r.per_shot.checks[:1]
             if c.get("quick_vmaf") is not None and not c["rechecked"] and r.per_shot.vmaf_cpu_s]
    if quick:
        lines.append("\nThe cheapest rung's quick check against its full VMAF run, where it was kept: "
                     + ", ".join(f"{clip} {check:.2f}/{full:.2f} CPU s" for clip, check, full in quick) + ".")
    if final > 0:
        lines.append(f"\nAll titles together: analysis {analysis:.1f} CPU s over final encodes {final:.1f} = "
                     f"{analysis / final:.2f}x (trials {(analysis - discarded) / final:.2f}x, discarded first "
                     f"encodes and checks {discarded / final:.2f}x).")
    return "\n".join(lines)


def clip_options(description: str | None, argv: Sequence[str] | None, *,
                 extra: Callable[[argparse.ArgumentParser], Any] | None = None) -> tuple[argparse.Namespace, Settings]:
    """The options of the ladder benchmarks (clips, episode, jobs, JSON, grid cache, and ``extra``'s), and
    H.264 settings."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", nargs="*", default=list(DEFAULT_CLIPS), help="clip names in ../shared/media")
    parser.add_argument("--no-episode", action="store_true", help="skip the 60 s episode")
    parser.add_argument("--jobs", type=int, default=2, help="encodes and VMAF runs at once (CPU is per process)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--grid-cache", type=Path, help="keep the exhaustive grid's points here, per clip")
    if extra is not None:
        extra(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = load_settings(None)
    if settings.encode.codec != "h264":
        # the fixed reference is Apple's H.264 ladder and the grid is x264's: another codec would not be
        # compared with the same encoder, which is what every figure here means
        parser.error(f"encode.codec is {settings.encode.codec}; this benchmark compares H.264 ladders only")
    return args, settings


@contextlib.contextmanager
def clip_sources(args: argparse.Namespace) -> Iterator[list[Path]]:
    """The clips to run, and the episode (made once and kept in the grid cache, if there is one)."""
    sources = [MEDIA_DIR / c for c in args.clips]
    with tempfile.TemporaryDirectory(prefix="bench-episode-") as tmp:
        if not args.no_episode:
            episode = (args.grid_cache or Path(tmp)) / "episode_60s_640x360.mp4"
            sources.append(episode if episode.exists() else make_episode(episode))
        yield sources


def run_clips(args: argparse.Namespace, one: Callable[[Path], Result],
              table_of: Callable[[Sequence[Result]], str]) -> list[Result]:
    """Each clip (and the episode) through ``one``: its row printed as it comes, the JSON rewritten after
    each, the whole table at the end. A table's row for one clip is its third line."""
    results: list[Result] = []
    with clip_sources(args) as sources:
        for src in sources:
            log.info("clip %s", src.name)
            results.append(one(src))
            print(table_of(results[-1:]).splitlines()[2], flush=True)
            if args.json:
                args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))  # type: ignore[call-overload]
    print()
    print(table_of(results))
    return results


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = clip_options(__doc__, argv)
    run_clips(args, lambda src: bench_clip(src, settings, args.jobs, args.grid_cache), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
