"""Shot detection against ../shared/media/truth.json: accuracy within one frame and speed, as markdown.

    .venv/bin/python bench/shots.py                 # per-clip table with the default ShotConfig
    .venv/bin/python bench/shots.py --baseline      # also stock PySceneDetect (AdaptiveDetector defaults)
    .venv/bin/python bench/shots.py --sweep         # also one-parameter-at-a-time sensitivity

Scoring: a truth cut is found when a detected cut is within one frame of it (each detection
matches at most one truth cut). A detection inside a gradual transition (or on the frame after it)
is neither a hit nor a false positive; every other unmatched detection is a false positive.
"In negatives" counts detections inside the hard negatives (occlusion, flicker, blur, overlays).
Speed is detect_cuts on an already probed file (decode + detection), median of --runs runs.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.shots import detect_cuts
from reelflow.infra.settings import ShotConfig

REPO = Path(__file__).resolve().parents[1]
MEDIA_DIR = Path(os.environ.get("SHARED_MEDIA_DIR", REPO.parent / "shared" / "media"))


@dataclass
class Score:
    tp: int = 0
    fp: int = 0
    missed: int = 0
    ignored: int = 0          # detections inside gradual transitions
    in_negatives: int = 0

    def add(self, other: Score) -> None:
        self.tp += other.tp
        self.fp += other.fp
        self.missed += other.missed
        self.ignored += other.ignored
        self.in_negatives += other.in_negatives

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.missed) if self.tp + self.missed else None

    @property
    def f1(self) -> float | None:
        p, r = self.precision, self.recall
        if p is None or r is None:
            return None
        return 2 * p * r / (p + r) if p + r else 0.0


def score(detected: Sequence[int], clip: dict[str, Any]) -> tuple[Score, list[int], list[int]]:
    """Score one clip; also the unmatched detections (false positives) and the missed truth cuts."""
    unmatched = sorted(detected)
    missed = []
    for cut in clip["cuts"]:
        near = [d for d in unmatched if abs(d - cut) <= 1]
        if near:
            unmatched.remove(min(near, key=lambda d: abs(d - cut)))
        else:
            missed.append(cut)
    gradual = [d for d in unmatched if any(g["start"] <= d <= g["end"] + 1 for g in clip["gradual"])]
    false = [d for d in unmatched if d not in gradual]
    negatives = sum(1 for d in detected for n in clip["negatives"] if n["start"] <= d <= n["end"])
    result = Score(tp=len(clip["cuts"]) - len(missed), fp=len(false), missed=len(missed),
                   ignored=len(gradual), in_negatives=negatives)
    return result, false, missed


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def stock_scenedetect(path: Path) -> list[int]:
    """PySceneDetect out of the box: its PyAV backend, auto downscale, AdaptiveDetector defaults."""
    from scenedetect import AdaptiveDetector, SceneManager, open_video

    manager = SceneManager()
    manager.add_detector(AdaptiveDetector())
    manager.detect_scenes(open_video(str(path), backend="pyav"))
    return [start.frame_num for start, _ in manager.get_scene_list()[1:]]


Detector = Callable[[Path, MediaInfo], list[int]]


def table(title: str, detector: Detector, clips: dict[str, Any], infos: dict[str, MediaInfo],
          runs: int) -> Score:
    """Print the per-clip markdown table of one detector; returns the overall score."""
    print(f"\n### {title}\n")
    print("| clip | frames | size | truth cuts | TP | FP | missed | in gradual | in negatives | precision | recall "
          "| F1 | frames/s | false positives / misses |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    total = Score()
    total_frames = 0
    total_time = 0.0
    for name, clip in clips.items():
        info = infos[name]
        times = []
        detected: list[int] = []
        for _ in range(runs):
            started = time.perf_counter()
            detected = detector(MEDIA_DIR / name, info)
            times.append(time.perf_counter() - started)
        seconds = statistics.median(times)
        result, false, missed = score(detected, clip)
        total.add(result)
        total_frames += info.video.frames
        total_time += seconds
        notes = ", ".join([*(f"FP {d}" for d in false), *(f"miss {c}" for c in missed)]) or ""
        size = f"{info.video.width}x{info.video.height}"
        print(f"| {name} | {info.video.frames} | {size} | {len(clip['cuts'])} | {result.tp} | {result.fp} "
              f"| {result.missed} | {result.ignored} | {result.in_negatives} | {_fmt(result.precision)} "
              f"| {_fmt(result.recall)} | {_fmt(result.f1)} | {info.video.frames / seconds:.0f} | {notes} |")
    print(f"| **all {len(clips)} clips** | {total_frames} | | {total.tp + total.missed} | {total.tp} | {total.fp} "
          f"| {total.missed} | {total.ignored} | {total.in_negatives} | **{_fmt(total.precision)}** "
          f"| **{_fmt(total.recall)}** | **{_fmt(total.f1)}** | {total_frames / total_time:.0f} | |")
    return total


# One parameter at a time away from the defaults: how far each one is from changing the result.
SWEEP: list[tuple[str, list[Any]]] = [
    ("adaptive_threshold", [1.5, 1.75, 2.0, 2.25, 2.5, 3.0]),
    ("min_content_val", [10.0, 15.0, 18.0, 22.0, 25.0]),
    ("window_width", [1, 2, 3]),
    ("luma_check", [False, True]),
    ("guard_ratio", [0.0, 0.35, 0.5, 0.6]),
    ("guard_width", [8, 16, 32]),
    ("analysis_width", [128, 256, 384]),
]


def sweep(clips: dict[str, Any], infos: dict[str, MediaInfo]) -> None:
    print("\n### Sensitivity: one setting changed, the rest at their defaults\n")
    print("| setting | value | TP | FP | missed | in gradual | in negatives | F1 | false positives / misses |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    defaults = ShotConfig()
    for key, values in SWEEP:
        for value in values:
            config = defaults.model_copy(update={key: value})
            total = Score()
            notes = []
            for name, clip in clips.items():
                result, false, missed = score(detect_cuts(MEDIA_DIR / name, config, info=infos[name]), clip)
                total.add(result)
                short = name.split("_")[0]
                notes += [f"{short} FP {d}" for d in false] + [f"{short} miss {c}" for c in missed]
            mark = " (default)" if value == getattr(defaults, key) else ""
            print(f"| {key} | {value}{mark} | {total.tp} | {total.fp} | {total.missed} | {total.ignored} "
                  f"| {total.in_negatives} "
                  f"| {_fmt(total.f1)} | {', '.join(notes)} |")
            sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="timed runs per clip (median is reported)")
    parser.add_argument("--baseline", action="store_true", help="also score stock PySceneDetect")
    parser.add_argument("--sweep", action="store_true", help="also vary one setting at a time")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)  # it logs every run at INFO
    clips: dict[str, Any] = dict(sorted(json.loads((MEDIA_DIR / "truth.json").read_text())["clips"].items()))
    infos = {name: probe(MEDIA_DIR / name) for name in clips}
    print(f"Media: {MEDIA_DIR} ({len(clips)} clips); {os.cpu_count()} CPUs; runs per clip: {args.runs}")
    config = ShotConfig()
    table(f"reelflow detect_cuts, default ShotConfig ({config.model_dump()})",
          lambda path, info: detect_cuts(path, config, info=info), clips, infos, args.runs)
    if args.baseline:
        table("Stock PySceneDetect 0.7 (PyAV backend, auto downscale, AdaptiveDetector())",
              lambda path, info: stock_scenedetect(path), clips, infos, args.runs)
    if args.sweep:
        sweep(clips, infos)


if __name__ == "__main__":
    main()
