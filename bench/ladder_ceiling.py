"""How much the equal-slope allocation can gain at all: the per-shot ceiling, measured without trials.

    .venv/bin/python bench/ladder_ceiling.py --grid-cache /tmp/grid-cache --json ceiling.json
    .venv/bin/python bench/ladder_ceiling.py --clips c01_composite_hardcuts_12s_1280x720.mp4 --no-episode

bench/ladder.py measures reelflow's per-shot ladders against the exhaustive per-title hull; this
measures the best any per-shot ladder could do with the same encoder, so that a shortfall can be
put down to the allocation's rule or to the trials' estimates. Per clip, every candidate height x
CRF 18..38 step 4 (bench/ladder.py's grid) is encoded exactly as a per-shot rung is: the allocation
units (shots cut at the segment grid) one by one at the final preset, joined; each is scored on every
frame at display size and split by unit. From those measured points:

- ``per-title (split)``: every unit at the same height and CRF (the exhaustive method on the
  split encodes; close to 0% against the whole-title grid, which checks the yardstick);
- ``per-shot ceiling``: the equal-slope title hull (hull.title_hull) at each height, with perfect
  knowledge of every unit's rate and quality on this grid, one height per point as a rung has.

Both are compared with bench/ladder.py's exhaustive hull (whole-title encodes, from --grid-cache or
encoded here) at every whole VMAF from 50 to 95, the range a ladder spans, by
``bdrate.bd_rate_at_points``; negative is fewer bits for the same quality.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import statistics
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ladder import GRID_CRFS, MEDIA_DIR, at_points, clip_options, exhaustive, run_clips
from reelflow.encoding.analysis import allocation_units, measure_delivered
from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, keyframe_frames
from reelflow.encoding.hull import Allocation, RdPoint, ShotPoints, per_title_hull, title_hull, upper_hull
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.shots import Shot, detect_shots
from reelflow.encoding.trials import candidate_heights, trial_size
from reelflow.encoding.vmaf import measure_rung_vmaf
from reelflow.infra.settings import Settings

QUALITIES = tuple(float(v) for v in range(50, 96))   # where a ladder's rungs sit: bottom to the 95 ceiling

log = logging.getLogger("bench.ladder_ceiling")


@dataclass
class Ceiling:
    clip: str
    shots: int
    units: int
    heights: list[int]
    split_per_title_vs_exhaustive: float | None
    per_shot_ceiling_vs_exhaustive: float | None
    per_shot_ceiling_vs_split_per_title: float | None
    per_height: dict[str, float | None]     # per-shot ceiling vs per-title (split) at one height
    encode_cpu_s: float
    units_measured: list[dict[str, Any]]    # per unit: duration and (height, CRF, kbps, VMAF) of every encode


def _dense(curve: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """A (kbps, VMAF) hull read at every whole VMAF of QUALITIES it reaches.

    Log rate is linear in VMAF between hull points, the way ``bd_rate_at_points`` reads its anchor:
    both curves are then read alike (a chord, linear in rate, would cost the coarser curve up to
    about 2% on a CRF step of 4).
    """
    curve = sorted(curve)
    out = []
    for q in QUALITIES:
        for (k0, v0), (k1, v1) in itertools.pairwise(curve):
            if v0 <= q <= v1 and v1 > v0:
                out.append((math.exp(math.log(k0) + (q - v0) / (v1 - v0) * math.log(k1 / k0)), q))
                break
    return out


def _envelope(hulls: Sequence[Sequence[Allocation]]) -> list[tuple[float, float]]:
    """The upper hull over several heights' hulls: the best height at each rate, as a ladder may choose."""
    points = [RdPoint(a.kbps, a.vmaf, 0, 0, 0.0) for h in hulls for a in h]
    return [(p.kbps, p.vmaf) for p in upper_hull(points)]


def _at_points(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]) -> float | None:
    figure = at_points(anchor, test)
    return None if figure is None else round(figure, 2)


def _densified(points: Sequence[RdPoint]) -> tuple[RdPoint, ...]:
    """One unit's encodes with points at every whole CRF between them: log rate and VMAF linear in CRF.

    The exhaustive hull is read with log rate linear in VMAF between its CRF-4 encodes, which is
    about what an encode at a CRF between gives; a unit's hull of chords between the same encodes
    would be read worse than that, and the allocation charged for the grid's coarseness.
    """
    out: list[RdPoint] = []
    for height in sorted({p.height for p in points}):
        own = sorted((p for p in points if p.height == height), key=lambda p: p.crf)
        out.append(own[0])
        for a, b in itertools.pairwise(own):
            for crf in range(int(a.crf) + 1, int(b.crf) + 1):
                t = (crf - a.crf) / (b.crf - a.crf)
                out.append(b if crf == b.crf else RdPoint(
                    math.exp(math.log(a.kbps) + t * math.log(b.kbps / a.kbps)), a.vmaf + t * (b.vmaf - a.vmaf),
                    a.width, height, float(crf)))
    return tuple(out)


def figures(clip: str, shots: int, units: Sequence[ShotPoints], exhaustive_hull: Sequence[tuple[float, float]],
            encode_cpu_s: float) -> Ceiling:
    """The ceiling and the split per-title curve from every unit's measured encodes, against the grid."""
    dense = [ShotPoints(u.index, u.duration_s, _densified(u.points)) for u in units]
    heights = sorted({p.height for u in units for p in u.points}, reverse=True)
    by_height = {h: [ShotPoints(u.index, u.duration_s, tuple(p for p in u.points if p.height == h)) for u in dense]
                 for h in heights}
    per_shot = {h: title_hull(u) for h, u in by_height.items()}
    per_title = {h: per_title_hull(u) for h, u in by_height.items()}
    ceiling = _dense(_envelope(list(per_shot.values())))
    split = _dense(_envelope(list(per_title.values())))
    per_height = {str(h): _at_points([(a.kbps, a.vmaf) for a in per_title[h]],
                                     _dense([(a.kbps, a.vmaf) for a in per_shot[h]])) for h in heights}
    return Ceiling(clip=clip, shots=shots, units=len(units), heights=heights,
                   split_per_title_vs_exhaustive=_at_points(exhaustive_hull, split),
                   per_shot_ceiling_vs_exhaustive=_at_points(exhaustive_hull, ceiling),
                   per_shot_ceiling_vs_split_per_title=_at_points(split, ceiling),
                   per_height=per_height, encode_cpu_s=encode_cpu_s,
                   units_measured=[{"duration_s": u.duration_s,
                                    "points": [[p.height, p.crf, round(p.kbps, 2), round(p.vmaf, 3)] for p in u.points]}
                                   for u in units])


def _title(src: Path, settings: Settings) -> tuple[MediaInfo, tuple[Shot, ...], tuple[int, ...], tuple[Shot, ...]]:
    """The title as the flow sees it: probe, shots, keyframes, allocation units."""
    info = probe(src)
    video = info.video
    found = detect_shots(src, settings.shots, info=info).shots
    keyframes = keyframe_frames([s.start_frame for s in found], video.frames, video.fps, settings.encode.segment_s)
    return info, found, keyframes, allocation_units(found, keyframes, info, settings)


def _exhaustive_hull(src: Path, settings: Settings, grid_cache: Path | None) -> list[tuple[float, float]]:
    info, found, keyframes, _ = _title(src, settings)
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp:
        grid, _ = exhaustive(src, info, found, keyframes, settings, Path(tmp), grid_cache)
    return [(p.kbps, p.vmaf) for p in upper_hull(grid)]


def ceiling_clip(src: Path, settings: Settings, jobs: int, grid_cache: Path | None) -> Ceiling:
    info, found, keyframes, units = _title(src, settings)
    video = info.video
    heights = list(candidate_heights(video, settings.trials))
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp, ThreadPoolExecutor(jobs) as pool:
        work = Path(tmp)

        def one(height: int, crf: int) -> tuple[int, int, tuple[float, ...], tuple[float, ...], float]:
            width, _ = trial_size(video, height)
            pieces = [ShotCrf(u.start_frame, u.end_frame, crf) for u in units]
            rendition = encode_rung_per_shot(src, info, width, height, pieces, keyframes,
                                             settings.encode.preset, work / f"{height}-{crf}.mp4", reuse=False,
                                             preroll=settings.encode.preroll_frames)
            delivered = measure_delivered(rendition, measure_rung_vmaf(rendition.path, info), units, info)
            rendition.path.unlink()
            return height, crf, delivered.shot_kbps, delivered.shot_vmaf, rendition.cpu_s

        done = list(pool.map(lambda hc: one(*hc), itertools.product(heights, GRID_CRFS)))
    measured = [ShotPoints(u.index, float(u.frames / video.fps), tuple(
        RdPoint(kbps[i], vmaf[i], trial_size(video, h)[0], h, float(c)) for h, c, kbps, vmaf, _ in done))
        for i, u in enumerate(units)]
    return figures(src.name, len(found), measured, _exhaustive_hull(src, settings, grid_cache),
                   round(sum(d[4] for d in done), 1))


def recomputed(entry: dict[str, Any], settings: Settings, grid_cache: Path | None) -> Ceiling:
    """A clip's figures again from the units measured by an earlier run (its JSON), without encoding."""
    src = MEDIA_DIR / entry["clip"]
    if not src.exists() and grid_cache is not None:
        src = grid_cache / entry["clip"]                   # the episode lives in the grid cache
    info = probe(src)
    units = [ShotPoints(i, u["duration_s"], tuple(RdPoint(kbps, vmaf, trial_size(info.video, h)[0], h, crf)
                                                  for h, crf, kbps, vmaf in u["points"]))
             for i, u in enumerate(entry["units_measured"])]
    return figures(entry["clip"], entry["shots"], units, _exhaustive_hull(src, settings, grid_cache),
                   entry["encode_cpu_s"])


def table(results: Sequence[Ceiling]) -> str:
    lines = ["| clip | shots | units | per-title (split) vs exhaustive % | per-shot ceiling vs exhaustive % | "
             "per-shot ceiling vs per-title (split) % | per height: ceiling vs per-title % |",
             "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        heights = ", ".join(f"{h}p {v}" for h, v in r.per_height.items())
        lines.append(f"| {r.clip} | {r.shots} | {r.units} | {r.split_per_title_vs_exhaustive} | "
                     f"{r.per_shot_ceiling_vs_exhaustive} | {r.per_shot_ceiling_vs_split_per_title} | {heights} |")

    def mean(key: str) -> str:
        values = [getattr(r, key) for r in results if getattr(r, key) is not None]
        return f"{statistics.fmean(values):.2f}" if values else "-"

    lines.append(f"| **mean** | | | {mean('split_per_title_vs_exhaustive')} | {mean('per_shot_ceiling_vs_exhaustive')} "
                 f"| {mean('per_shot_ceiling_vs_split_per_title')} | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args, settings = clip_options(__doc__, argv, extra=lambda parser: parser.add_argument(
        "--recompute", type=Path, help="an earlier run's JSON: the figures again from its measured units, "
                                       "no encoding (--clips is ignored)"))
    if args.recompute is not None:
        entries = json.loads(args.recompute.read_text())
        results = [recomputed(e, settings, args.grid_cache) for e in entries]
        if args.json:
            args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))
        print(table(results))
        return 0
    run_clips(args, lambda src: ceiling_clip(src, settings, args.jobs, args.grid_cache), table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
