"""How well a sample of a title measures the trial preset's gap to the final preset, by where it sits.

    .venv/bin/python bench/calibration_sample.py 10_talking_head_9s_1280x720.mp4 --height 360 --crf 27 --lengths 32 96

trials.plan_trials corrects every trial by the VMAF offset between the final preset and the trial
preset, measured on a sample of a few seconds of the title. This measures that offset on one
piece of each ``--lengths`` (frames) at ``--positions`` places spread over the title: the piece is
cut losslessly as the sample is (trials.sample_cut_argv) and tried at one height and CRF with both
presets, as the calibration tries it, but scored on every frame so the frame subsample adds no
noise. It prints each piece's offset beside the whole title's. That figure is the offset between the
trial preset's unit trials (trials.trial_grid, every frame) and the final encode of the same units
(encode.encode_rung_per_shot with the pre-roll), which is what the planned VMAF has to predict.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ladder import MEDIA_DIR
from reelflow.encoding.analysis import allocation_units
from reelflow.encoding.encode import ShotCrf, encode_rung_per_shot, keyframe_frames
from reelflow.encoding.probe import MediaInfo, probe
from reelflow.encoding.shots import Shot, detect_shots
from reelflow.encoding.trials import combine, group_shots, sample_cut_argv, trial_grid, trial_size
from reelflow.encoding.vmaf import measure_rung_vmaf
from reelflow.infra.settings import Settings, TrialConfig, load_settings
from reelflow.infra.tools import run


def _vmaf(src: Path, info: MediaInfo, shots: Sequence[Shot], height: int, crf: int, preset: str,
          config: TrialConfig, work: Path, start_s: float) -> float:
    """Duration-weighted VMAF of consecutive shots tried at one height and CRF (every frame scored)."""
    params = config.x264_params if preset == config.preset else ""
    trials = trial_grid(src, info, shots, [trial_size(info.video, height)], [crf], preset, config, work,
                        start_s=start_s, x264_params=params)
    return combine(trials, shots)[0].vmaf


def piece_offset(src: Path, info: MediaInfo, start: int, length: int, height: int, crf: int, config: TrialConfig,
                 work: Path) -> float:
    """Final preset minus trial preset on one sample piece, cut and tried as plan_trials does."""
    fps = info.video.fps
    work.mkdir(parents=True, exist_ok=True)
    sample = work / "sample.mkv"
    run(sample_cut_argv(src, [(start, start + length)], fps, sample, start_s=info.video.start_s))
    sample_info = probe(sample)
    piece = [Shot(index=0, start_frame=0, end_frame=length, start_s=0.0, end_s=float(length / fps), boundary="start")]
    return (_vmaf(sample, sample_info, piece, height, crf, config.final_preset, config, work, 0.0)
            - _vmaf(sample, sample_info, piece, height, crf, config.preset, config, work, 0.0))


def title_offset(src: Path, info: MediaInfo, settings: Settings, height: int, crf: int, config: TrialConfig,
                 work: Path) -> float:
    """Final encode of the title's units (pre-roll, every frame) minus the trial preset's unit trials."""
    video = info.video
    found = detect_shots(src, settings.shots, info=info).shots
    keyframes = keyframe_frames([s.start_frame for s in found], video.frames, video.fps, settings.encode.segment_s)
    units = allocation_units(found, keyframes, info, settings)
    trial = 0.0
    for number, group in enumerate(group_shots(units, video.fps, config)):
        trials = trial_grid(src, info, group, [trial_size(video, height)], [crf], config.preset, config,
                            work / f"group{number}", start_s=video.start_s, keyframes=keyframes,
                            x264_params=config.x264_params)
        trial += combine(trials, group)[0].vmaf * sum(u.frames for u in group)
    width, _ = trial_size(video, height)
    final = encode_rung_per_shot(src, info, width, height, [ShotCrf(u.start_frame, u.end_frame, crf) for u in units],
                                 keyframes, settings.encode.preset, work / "final.mp4",
                                 preroll=settings.encode.preroll_frames)
    return measure_rung_vmaf(final.path, info).mean - trial / video.frames


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clip", help="a clip name in ../shared/media")
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--crf", type=int, default=27)
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 96], help="piece lengths in frames")
    parser.add_argument("--positions", type=int, default=4, help="pieces of each length, spread over the title")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    settings = load_settings(None)
    config = settings.trials.model_copy(update={"vmaf_subsample": 1})
    src = MEDIA_DIR / args.clip
    info = probe(src)
    frames = info.video.frames
    print(f"{args.clip}, {args.height}p, CRF {args.crf}: VMAF offset {config.final_preset} - {config.preset}")
    with tempfile.TemporaryDirectory(prefix="bench-calibration-") as tmp:
        work = Path(tmp)
        print(f"whole title (units, final encodes with pre-roll): {title_offset(src, info, settings, args.height, args.crf, config, work / 'title'):+.2f}")  # noqa: E501
        for length in args.lengths:
            step = max(1, (frames - length) // max(1, args.positions - 1))
            for start in range(0, frames - length + 1, step)[:args.positions]:
                offset = piece_offset(src, info, start, length, args.height, args.crf, config,
                                      work / f"piece{length}_{start}")
                print(f"piece of {length} frames at frame {start}: {offset:+.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
