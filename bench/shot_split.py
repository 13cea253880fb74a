"""Shot detection on a tuning or a report part: hard cuts and gradual transitions scored apart,
reelflow beside stock PySceneDetect, frames per second side by side; markdown.

    .venv/bin/python bench/shot_split.py --part report --runs 3    # the figures in docs/benchmarks.md
    .venv/bin/python bench/shot_split.py --part tune --runs 1      # what the settings were fitted on

A part (bench/shot_transitions.py, SPLIT) is its real clips from ../shared/media with truth.json
plus its synthetic titles (built there when missing). The report part was never used to choose a
setting.

Scoring, the same for every detector:
- a truth cut is found by a detected cut within one frame of it (one detection per truth cut);
- a truth gradual transition (first..last frame) is found by a detected gradual range that overlaps
  it, or by a detected cut on one of its frames or the frame after it (a cut detector that fires
  inside a dissolve still puts a boundary in it); "as ranges" counts those found by a range;
- every other detection is a false positive of its kind (a range around a hard cut is a false
  gradual and the cut is missed).
Range accuracy: for gradual transitions found by a range, the median distance of the detected
first and last frame from the truth, and the share whose unit start (the frame after the detected
range, Transition.frame) is within one frame of the truth's first frame after the transition.

Speed: each detector on each file in turn, repeated --runs times; the median per file, summed over
the files (decode included: every detector decodes for itself with PyAV).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.shots import Transition, detect_transitions
from reelflow.infra.settings import ShotConfig
from shot_transitions import MEDIA_DIR, SPLIT, titles

Found = list[Transition]


@dataclass
class Tally:
    tp: int = 0
    fp: int = 0
    missed: int = 0

    def add(self, other: Tally) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.missed += other.missed

    def prf(self) -> tuple[float | None, float | None, float | None]:
        p = self.tp / (self.tp + self.fp) if self.tp + self.fp else None
        r = self.tp / (self.tp + self.missed) if self.tp + self.missed else None
        f = (2 * p * r / (p + r) if p + r else 0.0) if p is not None and r is not None else None
        return p, r, f


@dataclass
class Result:
    cuts: Tally = field(default_factory=Tally)
    gradual: Tally = field(default_factory=Tally)
    as_ranges: int = 0
    first_err: list[int] = field(default_factory=list)
    last_err: list[int] = field(default_factory=list)
    start_near: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, other: Result) -> None:
        self.cuts.add(other.cuts)
        self.gradual.add(other.gradual)
        self.as_ranges += other.as_ranges
        self.first_err += other.first_err
        self.last_err += other.last_err
        self.start_near += other.start_near
        self.notes += other.notes


def score(found: Found, truth: dict[str, Any], label: str = "") -> Result:
    out = Result()
    cuts = sorted(t.first for t in found if t.kind == "cut")
    ranges = sorted((t.first, t.last) for t in found if t.kind == "gradual")
    for c in truth["cuts"]:
        near = [d for d in cuts if abs(d - c) <= 1]
        if near:
            cuts.remove(min(near, key=lambda d: abs(d - c)))
            out.cuts.tp += 1
        else:
            out.cuts.missed += 1
            out.notes.append(f"{label} miss cut {c}")
    for g in truth["gradual"]:
        first, last = g["start"], g["end"]
        hit = [r for r in ranges if r[0] <= last and r[1] >= first]
        if hit:
            best = max(hit, key=lambda r: min(r[1], last) - max(r[0], first))
            ranges.remove(best)
            out.gradual.tp += 1
            out.as_ranges += 1
            out.first_err.append(abs(best[0] - first))
            out.last_err.append(abs(best[1] - last))
            out.start_near += abs(best[1] + 1 - (last + 1)) <= 1
            continue
        inside = [d for d in cuts if first <= d <= last + 1]
        if inside:
            cuts.remove(inside[0])
            out.gradual.tp += 1
        else:
            out.gradual.missed += 1
            out.notes.append(f"{label} miss {g.get('kind', 'gradual')} {first}-{last}")
    out.cuts.fp = len(cuts)
    out.gradual.fp = len(ranges)
    out.notes += [f"{label} FP cut {d}" for d in cuts] + [f"{label} FP range {a}-{b}" for a, b in ranges]
    return out


def stock(detector: str) -> Callable[[Path, MediaInfo], Found]:
    """PySceneDetect out of the box: its PyAV backend, auto downscale, the detector's defaults."""

    def run(path: Path, info: MediaInfo) -> Found:
        from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, open_video

        manager = SceneManager()
        manager.add_detector(ContentDetector() if detector == "content" else AdaptiveDetector())
        manager.detect_scenes(open_video(str(path), backend="pyav"))
        return [Transition(s.frame_num, s.frame_num, "cut") for s, _ in manager.get_scene_list()[1:]]

    return run


def reelflow(config: ShotConfig) -> Callable[[Path, MediaInfo], Found]:
    return lambda path, info: detect_transitions(path, config, info=info)


def _f(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def files_of(part: str) -> list[tuple[Path, dict[str, Any]]]:
    clips = json.loads((MEDIA_DIR / "truth.json").read_text())["clips"]
    out = [(MEDIA_DIR / name, clips[name]) for name in SPLIT[part].clips]
    out += [(path, json.loads(path.with_suffix(".json").read_text())) for path in titles(part)]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=list(SPLIT), default="report")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--only", choices=["reelflow"], default=None, help="skip the stock detectors")
    parser.add_argument("--notes", action="store_true", help="list every miss and false positive")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    files = files_of(args.part)
    infos = {path: probe(path) for path, _ in files}
    detectors: dict[str, Callable[[Path, MediaInfo], Found]] = {"reelflow": reelflow(ShotConfig())}
    if args.only is None:
        detectors |= {"PySceneDetect ContentDetector()": stock("content"),
                      "PySceneDetect AdaptiveDetector()": stock("adaptive")}
    times: dict[tuple[str, Path], list[float]] = {}
    found: dict[tuple[str, Path], Found] = {}
    for _ in range(args.runs):
        for path, _truth in files:
            for name, detector in detectors.items():
                started = time.perf_counter()
                found[name, path] = detector(path, infos[path])
                times.setdefault((name, path), []).append(time.perf_counter() - started)
    load = os.getloadavg()
    print(f"Part {args.part!r}: {len(files)} files, {sum(i.video.frames for i in infos.values())} frames; "
          f"{os.cpu_count()} CPUs, load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f} at the end; "
          f"runs: {args.runs}\n")
    print("| detector | group | truth cuts | cut TP | cut FP | cut missed | cut P | cut R | cut F1 "
          "| truth gradual | gradual TP (as ranges) | gradual FP | gradual missed | gradual P | gradual R "
          "| gradual F1 | frames/s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    summary: dict[str, Result] = {}
    for name in detectors:
        groups: dict[str, Result] = {"real clips": Result(), "synthetic titles": Result()}
        for path, truth in files:
            group = "real clips" if path.parent == MEDIA_DIR else "synthetic titles"
            groups[group].add(score(found[name, path], truth, path.name.split("_")[0]))
        every = Result()
        for group, result in [*groups.items(), ("**all**", every)]:
            if group != "**all**":
                every.add(result)
            paths = [p for p, _ in files if group == "**all**" or (p.parent == MEDIA_DIR) == (group == "real clips")]
            frames = sum(infos[p].video.frames for p in paths)
            seconds = sum(statistics.median(times[name, p]) for p in paths)
            cp, cr, cf = result.cuts.prf()
            gp, gr, gf = result.gradual.prf()
            print(f"| {name} | {group} | {result.cuts.tp + result.cuts.missed} | {result.cuts.tp} | {result.cuts.fp} "
                  f"| {result.cuts.missed} | {_f(cp)} | {_f(cr)} | {_f(cf)} "
                  f"| {result.gradual.tp + result.gradual.missed} | {result.gradual.tp} ({result.as_ranges}) "
                  f"| {result.gradual.fp} | {result.gradual.missed} | {_f(gp)} | {_f(gr)} | {_f(gf)} "
                  f"| {frames / seconds:.0f} |")
        summary[name] = every
    print()
    for name, result in summary.items():
        if result.as_ranges:
            print(f"{name}: {result.as_ranges} gradual transitions found as ranges; median |first - truth| "
                  f"{statistics.median(result.first_err)} frames, median |last - truth| "
                  f"{statistics.median(result.last_err)} frames; unit start within one frame of the truth's: "
                  f"{result.start_near}/{result.as_ranges}")
        if args.notes:
            print(f"{name}: {'; '.join(result.notes)}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
