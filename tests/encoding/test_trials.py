"""trials: argv, exact cuts, the trial grid on real shots, correction and interpolation, pruning, sampling."""

from __future__ import annotations

import math
import subprocess
from fractions import Fraction
from itertools import pairwise
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reelflow.encoding.hull import RdPoint
from reelflow.encoding.probe import probe
from reelflow.encoding.shots import Shot, bound_shots
from reelflow.encoding.trials import (
    FIXED_CORRECTION,
    Correction,
    Trial,
    candidate_heights,
    curvatures,
    group_shots,
    measure_shot,
    place_probes,
    plan_trials,
    predict_points,
    prune_heights,
    reaches_hull,
    sample_segments,
    subsample_for,
    trial_encode_argv,
    trial_shots,
)
from reelflow.errors import ConfigError
from reelflow.infra.settings import TrialConfig
from reelflow.infra.tools import run

FPS = Fraction(24)
# Small grids keep the real-binary tests fast; the defaults are exercised by bench/trials.py.
QUICK = TrialConfig(heights=(720, 360, 234), crfs=(22, 32), crf_step=5)


def _shot(index: int, start: int, end: int, fps: Fraction = FPS) -> Shot:
    return Shot(index=index, start_frame=start, end_frame=end, start_s=float(start / fps), end_s=float(end / fps),
                boundary="start" if start == 0 else "cut")


def _frame_md5s(ffmpeg: str, path: Path, *vf: str) -> list[str]:
    done = subprocess.run([ffmpeg, "-hide_banner", "-loglevel", "error", "-i", str(path), "-map", "0:v:0", *vf,
                           "-f", "framemd5", "-"], capture_output=True, text=True, check=True)
    return [line.split(",")[-1].strip() for line in done.stdout.splitlines() if line and not line.startswith("#")]


def test_trial_argv_cuts_scales_and_encodes_as_the_final_encodes_do() -> None:
    argv = trial_encode_argv(Path("src.mp4"), _shot(3, 100, 148), 640, 360, 27, FPS, "superfast", Path("o.nut"),
                             start_s=0.5, keyframes=[20, 96])
    seek = argv.index("-ss")
    assert argv[seek - 2:seek] == ["-seek_timestamp", "1"]
    assert float(argv[seek + 1]) == pytest.approx(0.5 + 99.5 / 24)          # half a frame early, stream time
    assert argv[argv.index("-i") + 1] == "src.mp4" and argv.index("-i") > seek
    graph = argv[argv.index("-filter_complex") + 1]
    assert "trim=end_frame=48" in graph and "scale=640:360:flags=lanczos" in graph
    x264 = argv[argv.index("-c:v"):]
    for flag, value in [("-c:v", "libx264"), ("-preset", "superfast"), ("-crf", "27"), ("-threads", "1"),
                        ("-x264-params", "scenecut=0:open-gop=0:stitchable=1"), ("-keyint_min", "1"), ("-f", "nut")]:
        assert x264[x264.index(flag) + 1] == value
    # Keyframes at the cut's start and at the grid point inside it; 96 is past its 48 frames.
    assert x264[x264.index("-force_key_frames") + 1] == "0.000000,0.812500"
    assert argv[-1] == "o.nut"


def test_the_trial_cut_is_frame_exact(sintel_fight: Path, ffmpeg: str, tmp_path: Path) -> None:
    out = tmp_path / "cut.nut"
    run(trial_encode_argv(sintel_fight, _shot(0, 61, 85), 640, 360, 0, FPS, "ultrafast", out))   # CRF 0: lossless
    expected = _frame_md5s(ffmpeg, sintel_fight, "-vf", "select=between(n\\,61\\,84)")
    assert _frame_md5s(ffmpeg, out) == expected and len(expected) == 24


def test_heights_above_the_source_are_never_candidates(sintel_fight: Path) -> None:
    assert candidate_heights(probe(sintel_fight).video, TrialConfig()) == (360, 270, 234)


def test_measure_shot_gives_points_at_every_height_rate_falling_with_crf(sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    shot = _shot(2, 76, 96)                                       # a real shot: cuts at 76 and 96
    points = measure_shot(sintel_fight, info, shot, QUICK, tmp_path)
    assert points.index == 2 and points.duration_s == pytest.approx(20 / 24)
    assert {p.height for p in points.points} == {360, 234}         # 720 is taller than the source
    assert {(p.width, p.height) for p in points.points} == {(640, 360), (416, 234)}
    for height in (360, 234):
        curve = sorted((p for p in points.points if p.height == height), key=lambda p: p.crf)
        assert [p.crf for p in curve] == [22, 27, 32]              # probes and one interpolated point
        assert all(a.kbps > b.kbps and a.vmaf > b.vmaf for a, b in pairwise(curve))
    assert not any(tmp_path.iterdir())                              # trial files are removed


def test_shots_tried_in_one_run_are_split_by_shot(sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    shots = [_shot(1, 58, 76), _shot(2, 76, 96)]
    together = trial_shots(sintel_fight, info, shots, QUICK, tmp_path)
    alone = trial_shots(sintel_fight, info, shots[1:], QUICK, tmp_path)[0]
    assert [r.points.index for r in together] == [1, 2]
    for run_ in together:
        assert len(run_.trials) == 4 and all(t.frames_scored >= 2 for t in run_.trials)
        assert run_.cpu_s > 0
    # The second shot codes from its own IDR frame either way; only x264's rate control carries a
    # few frames of the first shot's complexity over the cut (bench/trials.py measures the effect).
    for a, b in zip(together[1].trials, alone.trials, strict=True):
        assert a.kbps == pytest.approx(b.kbps, rel=0.1)
        assert a.vmaf == pytest.approx(b.vmaf, abs=1.5)


def test_plan_measures_the_correction_on_a_sample(sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    shots = bound_shots([58, 76, 96, 118, 140, 176, 209], info.video.frames, info.video.fps,
                        min_shot_s=0.5, max_shot_s=20)
    config = TrialConfig(heights=(720, 360, 234), crfs=(22, 32), calibration_heights=1)
    plan = plan_trials(sintel_fight, info, shots, config, tmp_path)
    assert plan.correction.measured and plan.correction.heights in ((234,), (360,))
    assert set(plan.heights) | set(plan.skipped) == {360, 234}
    assert 0 < plan.sample_frames <= 0.15 * 240 + 1
    ratio, _ = plan.correction.at(360, 27)
    assert 0.5 < ratio < 1.6                                        # medium's rate, relative to the trial's
    assert plan.cpu_s > 0 and not any(tmp_path.iterdir())
    # the sample chose the heights: the trial preset ran at every candidate, the final one where calibrated
    assert {t.height for t in plan.sample_trials} == {360, 234}
    assert {t.height for t in plan.calibration_trials} == set(plan.correction.heights)
    # without pruning, the trial preset runs on the sample only where the final preset is measured too
    unpruned = plan_trials(sintel_fight, info, shots, config.model_copy(update={"prune": False}), tmp_path)
    assert {t.height for t in unpruned.sample_trials} == set(unpruned.correction.heights)
    assert unpruned.heights == (360, 234) and unpruned.skipped == ()
    assert unpruned.cpu_s < plan.cpu_s


def _trial(height: int, crf: int, kbps: float, vmaf: float) -> Trial:
    return Trial(width=even16(height), height=height, crf=crf, preset="superfast", kbps=kbps, vmaf=vmaf,
                 frames_scored=10, encode_cpu_s=0.1, vmaf_cpu_s=0.1)


def even16(height: int) -> int:
    return round(height * 16 / 9 / 2) * 2


def test_correction_interpolates_in_log_height_and_crf() -> None:
    c = Correction(preset="superfast", final_preset="medium", heights=(240, 960), crfs=(20, 30),
                   rate_ratio=((0.5, 0.5), (0.8, 0.8)), vmaf_offset=((0.0, 2.0), (0.0, 2.0)), measured=True)
    assert c.at(480, 25) == pytest.approx((math.sqrt(0.5 * 0.8), 1.0))   # halfway in log(height) and CRF
    assert c.at(2000, 40) == pytest.approx((0.8, 2.0))                    # held beyond the table
    kbps, vmaf = c.apply(_trial(240, 30, 1000.0, 80.0))
    assert (kbps, vmaf) == pytest.approx((500.0, 82.0))


def test_predicted_points_are_corrected_probes_and_monotone_interpolation() -> None:
    trials = [_trial(360, 20, 1000, 95), _trial(360, 27, 450, 88), _trial(360, 34, 200, 70)]
    points = predict_points(trials, FIXED_CORRECTION, 1)
    assert [p.crf for p in points] == list(range(20, 35))
    probe_points = {p.crf: p for p in points if p.crf in (20, 27, 34)}
    ratio, offset = FIXED_CORRECTION.at(360, 27)
    assert probe_points[27].kbps == pytest.approx(450 * ratio) and probe_points[27].vmaf == pytest.approx(88 + offset)
    assert all(a.kbps > b.kbps and a.vmaf > b.vmaf for a, b in pairwise(points))


@given(st.lists(st.floats(0.3, 3.0), min_size=3, max_size=3), st.lists(st.floats(0.5, 15.0), min_size=3, max_size=3))
def test_interpolation_stays_between_neighbouring_probes(rate_steps: list[float], vmaf_steps: list[float]) -> None:
    kbps, vmaf = 3000.0, 99.0
    trials = []
    for crf, r, v in zip((18, 24, 30), rate_steps, vmaf_steps, strict=True):
        trials.append(_trial(540, crf, kbps, vmaf))
        kbps, vmaf = kbps / (1 + r), vmaf - v
    points = predict_points(trials, FIXED_CORRECTION, 1)
    probes = {p.crf: p for p in points if p.crf in (18, 24, 30)}
    for p in points:
        lo, hi = (18, 24) if p.crf <= 24 else (24, 30)
        assert probes[hi].kbps <= p.kbps <= probes[lo].kbps
        assert probes[hi].vmaf <= p.vmaf <= probes[lo].vmaf


def _curve(height: int, points: list[tuple[float, float]]) -> list[RdPoint]:
    return [RdPoint(k, v, even16(height), height, 20.0 + i) for i, (k, v) in enumerate(points)]


def test_a_dominated_lower_height_is_pruned_and_the_walk_stops() -> None:
    config = TrialConfig(min_kbps=250)
    pts = (_curve(720, [(3000, 96), (1500, 92), (700, 84)]) + _curve(540, [(2000, 93), (900, 88), (400, 78)])
           + _curve(432, [(1400, 86), (600, 80), (260, 70)])
           + _curve(360, [(1000, 80), (450, 72), (200, 60)]))           # under the others' hull at every rate above 250
    assert not reaches_hull(360, pts, config)
    assert prune_heights(pts, [720, 540, 432, 360], config) == (720, 540, 432)


def test_a_higher_height_that_wins_only_above_the_top_is_pruned() -> None:
    config = TrialConfig(top_vmaf=95, prune_margin=0.5, keep_tallest=False)
    pts = (_curve(1080, [(8000, 98.5), (5000, 97.5), (3000, 93)]) + _curve(720, [(4000, 97), (2000, 94.5), (900, 90)])
           + _curve(540, [(1500, 92), (700, 86), (300, 76)]))
    assert prune_heights(pts, [1080, 720, 540], config) == (720, 540)
    assert prune_heights(pts, [1080, 720, 540], TrialConfig(top_vmaf=95, prune_margin=0.5)) == (1080, 720, 540)


def test_lower_heights_are_kept_where_they_alone_reach_low_rates() -> None:
    config = TrialConfig(min_kbps=100)
    pts = _curve(720, [(3000, 96), (1500, 92), (700, 84)]) + _curve(360, [(600, 80), (300, 70), (150, 55)])
    assert reaches_hull(360, pts, config)


def _log_curve(height: int, kbps_at_20: float, vmaf_at_20: float, vmaf_per_crf: float) -> list[RdPoint]:
    # every CRF 20..34: rate falls 10% per CRF, VMAF linearly
    return [RdPoint(kbps_at_20 * math.exp(-0.1 * d), vmaf_at_20 - vmaf_per_crf * d, even16(height), height, 20.0 + d)
            for d in range(15)]


def test_probes_are_placed_around_where_the_sample_puts_each_height_on_the_hull() -> None:
    config = TrialConfig(min_kbps=400)
    assert (config.crfs, config.probe_margin, config.probe_two_span) == ((20, 27, 34), 3, 10)
    pts = (_log_curve(720, 3000, 97, 1.2)     # on the hull only at CRF 20 and 21 (VMAF 97 and 95.8)
           + _log_curve(540, 2000, 85, 1.5)   # under the others everywhere
           + _log_curve(360, 900, 88, 1.5))   # the hull up to 900 kbps; at 400 kbps or more: CRF 20-28
    placed = dict(place_probes(pts, [720, 540, 360], config))
    # 720p: its first point at or above the top (CRF 21; above it, CRF 20, is never bought) give or
    # take 3, cut at CRF 20 and so reaching 6 up instead: two probes
    assert placed[720] == (20, 26)
    assert placed[540] == (20, 27, 34)        # never on the hull: every CRF of crfs
    assert placed[360] == (20, 25, 31)        # CRF 20-28 and 3 beyond: 11 wide, so three probes
    wider = dict(place_probes(pts, [720, 540, 360], config.model_copy(update={"probe_two_span": 12})))
    assert wider[360] == (20, 31)


def test_placed_probes_are_what_every_shot_is_tried_at(sintel_fight: Path, tmp_path: Path) -> None:
    info = probe(sintel_fight)
    shots = bound_shots([58, 76, 96, 118, 140, 176, 209], info.video.frames, info.video.fps,
                        min_shot_s=0.5, max_shot_s=20)
    config = TrialConfig(heights=(360, 234), crf_step=0, shot_crfs="placed", calibration_heights=1)
    plan = plan_trials(sintel_fight, info, shots, config, tmp_path)
    assert [h for h, _ in plan.probes] == list(plan.heights)
    for height, crfs in plan.probes:
        assert plan.crfs_at(height) == crfs and 2 <= len(crfs) <= 3 and crfs == tuple(sorted(crfs))
        assert crfs[0] >= 20 and crfs[-1] <= 34 and crfs[-1] - crfs[0] >= 6
    tried = trial_shots(sintel_fight, info, shots[2:4], config, tmp_path, plan=plan)
    for unit in tried:
        for height, crfs in plan.probes:
            assert sorted(t.crf for t in unit.trials if t.height == height) == list(crfs)
            assert sorted(p.crf for p in unit.points.points if p.height == height) == list(crfs)


def test_sample_pieces_sit_inside_shots_and_spread_over_the_title() -> None:
    shots = bound_shots([100, 250, 700], 1000, FPS, min_shot_s=0.5, max_shot_s=20)
    config = TrialConfig(sample_fraction=0.15, sample_segment_s=2.0)
    pieces = sample_segments(shots, FPS, config)
    assert sum(e - s for s, e in pieces) == pytest.approx(150, abs=4)
    # three 2 s pieces would leave a shot out: four shorter ones, one in each shot
    assert len(pieces) == 4
    assert sorted(next(s.index for s in shots if s.start_frame <= a and b <= s.end_frame) for a, b in pieces) == \
        [0, 1, 2, 3]
    assert all(a[1] <= b[0] for a, b in pairwise(pieces))
    assert pieces[0][0] < 300 and pieces[-1][1] > 700


def _in_shots(pieces: list[tuple[int, int]], shots: list[Shot]) -> list[int]:
    """The shot of each piece; fails where a piece crosses a cut."""
    return [next(s.index for s in shots if s.start_frame <= a and b <= s.end_frame) for a, b in pieces]


def test_a_short_multi_shot_titles_sample_spans_its_shots() -> None:
    """15% of a 4 s title is one 18-frame piece: it becomes one short piece in each of its three shots."""
    fps = Fraction(30)
    config = TrialConfig()
    shots = [_shot(0, 0, 30, fps), _shot(1, 30, 90, fps), _shot(2, 90, 120, fps)]
    pieces = sample_segments(shots, fps, config)
    shortest = round(config.sample_min_piece_s * 30)
    assert _in_shots(pieces, shots) == [0, 1, 2]
    assert all(b - a >= shortest for a, b in pieces) and all(a[1] <= b[0] for a, b in pairwise(pieces))
    assert sum(b - a for a, b in pieces) == 3 * shortest          # grown from 18 frames to visit three shots
    # twelve 1 s shots in 12 s: the sample stays 15% of the title, in as many shortest pieces, one shot each
    shots = [_shot(i, 30 * i, 30 * (i + 1), fps) for i in range(12)]
    pieces = sample_segments(shots, fps, config)
    assert len(set(_in_shots(pieces, shots))) == len(pieces) == 54 // shortest
    assert sum(b - a for a, b in pieces) == 54 and pieces[0][0] < 120 and pieces[-1][1] > 240
    # a shot too short for a piece is passed over for the nearest free one
    shots = [_shot(0, 0, 40, fps), _shot(1, 40, 42, fps), _shot(2, 42, 90, fps)]
    pieces = sample_segments(shots, fps, config)
    assert 1 not in _in_shots(pieces, shots) and len(pieces) == 2


def test_a_long_titles_sample_is_unchanged_by_its_many_shots() -> None:
    """Ten minutes of 3 s shots: 30 s of sample in fifteen 2 s pieces over the title, one shot each."""
    fps = Fraction(30)
    config = TrialConfig()
    shots = [_shot(i, 90 * i, 90 * (i + 1), fps) for i in range(200)]
    pieces = sample_segments(shots, fps, config)
    assert len(pieces) == 15 and all(b - a == 60 for a, b in pieces)
    assert len(set(_in_shots(pieces, shots))) == 15 and pieces[0][0] < 1200 and pieces[-1][1] > 16800
    # one shot: one piece, whatever its length
    assert sample_segments([_shot(0, 0, 120, fps)], fps, config) == [(51, 69)]


def test_short_shots_get_smaller_steps_never_sharing_a_gop_factor() -> None:
    config = TrialConfig(vmaf_subsample=11, vmaf_min_frames=3)
    assert subsample_for(1000, config) == 11
    assert subsample_for(25, config) == 7
    assert subsample_for(4, config) == 5
    assert subsample_for(4, TrialConfig(vmaf_subsample=1)) == 1


def test_groups_are_consecutive_bounded_and_keep_tiny_shots_alone() -> None:
    shots = [_shot(0, 0, 100), _shot(1, 100, 300), _shot(2, 300, 302), _shot(3, 302, 400), _shot(4, 400, 900)]
    groups = group_shots(shots, FPS, TrialConfig(group_s=15))      # 360 frames
    assert [[s.index for s in g] for g in groups] == [[0, 1], [2], [3], [4]]


def test_a_correction_for_another_preset_is_refused(sintel_fight: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="preset"):
        measure_shot(sintel_fight, probe(sintel_fight), _shot(0, 0, 24), TrialConfig(preset="veryfast"), tmp_path)


def test_two_probes_take_their_shape_from_the_sample() -> None:
    """A shot tried at CRF 20 and 34 only, its points between shaped by the sample's curvature.

    Both curves are quadratics in CRF (log rate and VMAF), with the same curvature in the sample
    and the shot: the shaped points between the shot's two probes are then exact.
    """
    identity = Correction(preset="superfast", final_preset="medium", heights=(360,), crfs=(20, 34),
                          rate_ratio=((1.0, 1.0),), vmaf_offset=((0.0, 0.0),), measured=True)

    def log_kbps(crf: float, level: float) -> float:
        return level - 0.11 * (crf - 20) + 0.0015 * (crf - 20) ** 2

    def vmaf(crf: float, level: float) -> float:
        return level - 0.4 * (crf - 20) - 0.02 * (crf - 20) ** 2

    sample = [_trial(360, c, math.exp(log_kbps(c, 7.0)), vmaf(c, 97.0)) for c in (20, 27, 34)]
    curvature = curvatures(sample, identity)
    assert curvature[0][0] == 360
    assert curvature[0][1] == pytest.approx(0.0015) and curvature[0][2] == pytest.approx(-0.02)
    shot = [_trial(360, c, math.exp(log_kbps(c, 6.5)), vmaf(c, 95.0)) for c in (20, 34)]
    points = {p.crf: p for p in predict_points(shot, identity, 1, curvature)}
    assert sorted(points) == list(range(20, 35))
    for crf in (23, 27, 31):
        assert math.log(points[crf].kbps) == pytest.approx(log_kbps(crf, 6.5))
        assert points[crf].vmaf == pytest.approx(vmaf(crf, 95.0))
    chord = {p.crf: p for p in predict_points(shot, identity, 1)}  # without the shape: the chord, too low
    assert chord[27].vmaf < points[27].vmaf - 0.5
