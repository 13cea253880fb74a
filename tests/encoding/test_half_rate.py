"""Half-rate rungs of high-frame-rate titles: the rung choice and the even keyframes (pure), and real
half-rate encodes of a 59.94 master with their VMAF against every source frame."""
# ruff: noqa: F811  (the masters are session fixtures imported from tests/picture_masters.py)

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from picture_masters import hfr_720p5994, masters_dir  # noqa: F401  (session fixtures)
from reelflow.encoding.analysis import measure_delivered
from reelflow.encoding.encode import (
    ShotCrf,
    encode_rung_per_shot,
    encode_video_rung,
    half_rate,
    half_rate_title,
    keyframe_frames,
    read_keyframes,
    segment_frames,
    shot_encode_argv,
)
from reelflow.encoding.probe import probe
from reelflow.encoding.shots import Shot, ShotList, bound_shots, even_starts
from reelflow.encoding.vmaf import distorted_frames, measure_rung_vmaf, vmaf_many_argv
from reelflow.errors import StageError
from reelflow.infra.settings import EncodeConfig, Rung

NTSC60, PAL50 = Fraction(60000, 1001), Fraction(50)
CONFIG = EncodeConfig()


@pytest.mark.parametrize(("fps", "width", "height", "kbps", "half"), [
    (NTSC60, 640, 360, 730, True),           # at the bound
    (NTSC60, 768, 432, 1100, False),         # above it
    (PAL50, 416, 234, 145, True),
    (Fraction(60), 360, 640, 800, True),     # a portrait rung: its short side is its size
    (Fraction(60), 432, 768, 800, False),
    (Fraction(30000, 1001), 416, 234, 145, False),   # 29.97: never
    (Fraction(30), 416, 234, 145, False),
])
def test_which_rungs_are_half_rate(fps: Fraction, width: int, height: int, kbps: int, half: bool) -> None:
    assert half_rate(fps, width, height, kbps, CONFIG) is half


def test_the_bounds_are_settings_and_zero_turns_them_off() -> None:
    off = EncodeConfig(half_rate_max_height=0)
    assert not half_rate_title(NTSC60, off) and not half_rate(NTSC60, 416, 234, 145, off)
    by_rate = EncodeConfig(half_rate_max_height=0, half_rate_max_kbps=1000)
    assert half_rate(NTSC60, 1280, 720, 900, by_rate) and not half_rate(NTSC60, 416, 234, 1100, by_rate)
    assert half_rate_title(PAL50, CONFIG) and not half_rate_title(Fraction(25), CONFIG)


def test_an_even_grid_and_odd_shot_starts_are_refused() -> None:
    assert segment_frames(PAL50, 4.1) == 205 and segment_frames(PAL50, 4.1, even=True) == 204   # 102.5 pairs, to even
    assert segment_frames(NTSC60, 4.0, even=True) == 240
    assert keyframe_frames([0, 46], 400, NTSC60, 4.0, even=True) == (0, 46, 240)
    with pytest.raises(StageError, match="odd"):
        keyframe_frames([0, 45], 400, NTSC60, 4.0, even=True)


@given(cuts=st.lists(st.integers(1, 999), max_size=30), frames=st.integers(2, 1000),
       min_shot_s=st.sampled_from([0.0, 0.1, 0.5]))
def test_even_starts_tile_the_title_with_every_start_moved_at_most_one_frame_later(
        cuts: list[int], frames: int, min_shot_s: float) -> None:
    shots = bound_shots(cuts, frames, PAL50, min_shot_s=min_shot_s, max_shot_s=2.0)
    before = ShotList(fps=PAL50, frames=frames, shots=shots)
    after = even_starts(before)
    starts = [s.start_frame for s in after.shots]
    assert all(s % 2 == 0 for s in starts) and starts == sorted(set(starts))
    assert after.shots[0].boundary == "start" and after.shots[-1].end_frame == frames
    assert all(a.end_frame == b.start_frame for a, b in zip(after.shots, after.shots[1:], strict=False))
    assert [s.index for s in after.shots] == list(range(len(after.shots)))
    assert set(starts) == {s.start_frame + s.start_frame % 2 for s in shots} - {frames}
    assert ShotList.from_dict(after.to_dict()) == after          # still a valid shot list


def test_a_cut_wins_over_a_split_it_meets() -> None:
    shots = (Shot(0, 0, 45, 0.0, 0.9, "start"), Shot(1, 45, 46, 0.9, 0.92, "cut"), Shot(2, 46, 99, 0.92, 1.98, "split"))
    after = even_starts(ShotList(fps=PAL50, frames=99, shots=shots))
    assert [(s.start_frame, s.end_frame, s.boundary) for s in after.shots] == [(0, 46, "start"), (46, 99, "cut")]


def test_a_half_rate_piece_takes_the_even_frames_and_its_keyframes_at_half_their_numbers(
        hfr_720p5994: Path, tmp_path: Path) -> None:
    video = probe(hfr_720p5994).video
    argv = shot_encode_argv(hfr_720p5994, video, ShotCrf(24, 45, 23.0), 416, 234, [0, 24, 36], "veryfast",
                            tmp_path / "p.mp4", preroll=6, half_rate=True)
    assert argv[argv.index("-frames:v") + 1] == str(math.ceil((45 - 18) / 2))
    assert "select='not(mod(n,2))'" in argv[argv.index("-vf") + 1]
    assert argv[argv.index("-r") + 1] == "30000/1001"
    # pre-roll from frame 18: keyframes at its own frames 0 (the pre-roll), 3 (source 24) and 9 (36)
    times = [float(t) for t in argv[argv.index("-force_key_frames") + 1].split(",")]
    assert times == pytest.approx([0.0, float((3 - Fraction(1, 2)) * 1001 / 30000),
                                   float((9 - Fraction(1, 2)) * 1001 / 30000)], abs=1e-6)
    with pytest.raises(StageError, match="odd frame"):
        shot_encode_argv(hfr_720p5994, video, ShotCrf(24, 45, 23.0), 416, 234, [24], "veryfast",
                         tmp_path / "p.mp4", preroll=5, half_rate=True)


def test_a_lower_rate_encode_is_repeated_up_to_the_reference_rate(tmp_path: Path) -> None:
    def graph(rate: Fraction | None) -> str:
        argv = vmaf_many_argv([Path("d.mp4")], Path("r.mp4"), width=1280, height=720, fps=NTSC60, frames=60,
                              log_paths=[tmp_path / "v.json"], distorted_fps=rate)
        return argv[argv.index("-filter_complex") + 1]

    assert "fps=" not in graph(None) and graph(NTSC60) == graph(None)
    distorted = graph(NTSC60 / 2).split(";")[1]
    assert distorted.startswith("[0:v:0]setpts=N*1001/30000/TB,fps=60000/1001,trim=end_frame=60,")
    assert distorted_frames(61, NTSC60, NTSC60 / 2) == 31 and distorted_frames(61, NTSC60, None) == 61


def test_fixed_and_per_shot_half_rate_rungs_of_a_5994_master(hfr_720p5994: Path, tmp_path: Path) -> None:
    """Both encoders give the even frames at 29.97 with the keyframes at the same times as the full-rate
    rung; VMAF scores every source frame, the repeated (odd) ones lower than the even ones."""
    info = probe(hfr_720p5994)
    assert (info.video.fps, info.video.frames) == (NTSC60, 60)
    keys = keyframe_frames([0, 24], 60, NTSC60, 0.6, even=True)        # 0, 24 and the 36-frame grid
    assert keys == (0, 24, 36)
    config = EncodeConfig(preset="ultrafast", segment_s=0.6)
    low = encode_video_rung(hfr_720p5994, Rung(width=416, height=234, kbps=400), keys, info, config,
                            tmp_path / "low.mp4")
    top = encode_video_rung(hfr_720p5994, Rung(width=1280, height=720, kbps=3000), keys, info, config,
                            tmp_path / "top.mp4")
    assert (low.frames, low.frame_rate, low.half_rate) == (30, "30000/1001", True)
    assert (top.frames, top.frame_rate, top.half_rate) == (60, "60000/1001", False)
    assert read_keyframes(low.path) == (30, [0, 12, 18]) and read_keyframes(top.path) == (60, list(keys))
    assert low.duration_s == pytest.approx(top.duration_s)
    # per shot, with an odd pre-roll setting (5: the pre-roll starts on an even frame, 4 before)
    pieces = [ShotCrf(0, 24, 26.0), ShotCrf(24, 36, 30.0), ShotCrf(36, 60, 26.0)]
    joined = encode_rung_per_shot(hfr_720p5994, info, 416, 234, pieces, keys, "ultrafast", tmp_path / "ps.mp4",
                                  preroll=5, half_rate=True)
    assert read_keyframes(joined.path) == (30, [0, 12, 18]) and joined.frame_rate == "30000/1001"
    sharp = encode_rung_per_shot(hfr_720p5994, info, 1280, 720, [ShotCrf(0, 60, 10.0)], keys, "ultrafast",
                                 tmp_path / "sharp.mp4", half_rate=True)
    score = measure_rung_vmaf(sharp.path, info, half_rate=True)
    assert len(score.scores) == 60
    even, odd = score.scores[0::2], score.scores[1::2]
    assert min(even) > 90 and sum(odd) / len(odd) < sum(even) / len(even) - 5     # frame 2k is source frame 2k
    units = [Shot(0, 0, 24, 0.0, 0.4, "start"), Shot(1, 24, 36, 0.4, 0.6, "split"), Shot(2, 36, 60, 0.6, 1.0, "split")]
    delivered = measure_delivered(sharp, score, units, info)
    assert len(delivered.shot_vmaf) == 3 and delivered.kbps == pytest.approx(sharp.kbps, rel=0.05)
