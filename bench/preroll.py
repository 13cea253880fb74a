"""What encoding a rung piece by piece costs against one whole-title run, with and without a pre-roll.

    .venv/bin/python bench/preroll.py 03_sintel_fight_10s_640x360.mp4 --height 360 --preroll 0 6 12 24

A per-shot rung is encoded as one x264 run per allocation unit (encode.encode_rung_per_shot), so
each unit's encode starts with no rate-control history: x264 sets its first frames' quantisers
from nothing, where a whole-title run carries them over from the frames before. This encodes the
title at CRF 20, 24, 28, 32, 36 (final preset, one height) once whole and once per unit with each
``--preroll`` (frames encoded before each unit at its CRF and dropped before the join), scores every
frame with VMAF at display size, and prints the BD-rate of each per-unit curve against the whole
run (bdrate.bd_rate; positive: the pieces need more bits for the same quality) and the encodes' CPU.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ladder import MEDIA_DIR
from reelflow.encoding.analysis import allocation_units
from reelflow.encoding.bdrate import bd_rate
from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, keyframe_frames
from reelflow.encoding.probe import probe
from reelflow.encoding.shots import detect_shots
from reelflow.encoding.trials import frame_sizes, trial_size
from reelflow.encoding.vmaf import measure_rung_vmaf
from reelflow.infra.settings import load_settings

CRFS = (20, 24, 28, 32, 36)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", help="a clip name in ../shared/media")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--preroll", type=int, nargs="+", default=[0, 6, 12])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(None)
    src = MEDIA_DIR / args.clip
    info = probe(src)
    video = info.video
    shots = detect_shots(src, settings.shots, info=info).shots
    keyframes = keyframe_frames([s.start_frame for s in shots], video.frames, video.fps, settings.encode.segment_s)
    units = allocation_units(shots, keyframes, info, settings)
    width, _ = trial_size(video, args.height)
    seconds = float(video.frames / video.fps)

    with tempfile.TemporaryDirectory(prefix="bench-preroll-") as tmp:
        def curve(pieces: Callable[[int], list[ShotCrf]], preroll: int) -> tuple[list[tuple[float, float]], float]:
            points, cpu = [], 0.0
            for crf in CRFS:
                rendition = encode_rung_per_shot(src, info, width, args.height, pieces(crf), keyframes,
                                                 settings.encode.preset, Path(tmp) / f"{crf}-{preroll}.mp4",
                                                 reuse=False, preroll=preroll)
                kbps = sum(frame_sizes(rendition.path, video.frames)) * 8 / 1000 / seconds
                points.append((kbps, measure_rung_vmaf(rendition.path, info).mean))
                cpu += rendition.cpu_s
                rendition.path.unlink()
            return points, cpu

        whole, whole_cpu = curve(lambda crf: [ShotCrf(0, video.frames, crf)], 0)
        print(f"{src.name} at {args.height}p, {len(units)} units; CRF {CRFS}")
        print(f"whole run: {' '.join(f'{k:.0f}k/{v:.2f}' for k, v in whole)}; encode CPU {whole_cpu:.1f} s")
        for preroll in args.preroll:
            pieces, cpu = curve(lambda crf: [ShotCrf(u.start_frame, u.end_frame, crf) for u in units], preroll)
            print(f"per unit, pre-roll {preroll}: BD-rate vs whole {bd_rate(whole, pieces):+.2f}%; "
                  f"{' '.join(f'{k:.0f}k/{v:.2f}' for k, v in pieces)}; encode CPU {cpu:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
