"""UHD titles: 1440/2160 candidates only on sources that tall, the 4K VMAF model above 1080p, stacked
ladders, the UHD key tier, and a measured 2160p rung on a real ProRes 422 HQ master."""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import av
import pytest

from reelflow.encoding.analysis import deliver_rungs, encode_planned_rung, ladder_report, measure_delivered
from reelflow.encoding.encode import keyframe_frames
from reelflow.encoding.hull import RdPoint, ShotPoints
from reelflow.encoding.ladder import select_ladder
from reelflow.encoding.probe import VideoStream, probe
from reelflow.encoding.shots import Shot
from reelflow.encoding.trials import (
    FIXED_CORRECTION,
    UHD_REACH_STEPS,
    Correction,
    Trial,
    TrialPlan,
    candidate_heights,
    height_map,
    mapped_trials,
    plan_trials,
    predict_points,
    reach_map,
    trial_shots,
    uhd_correction,
    uhd_sample_trials,
)
from reelflow.encoding.vmaf import (
    VMAF_4K_MODEL,
    VMAF_MODEL,
    measure_rung_vmaf,
    scoring_size,
    vmaf_argv,
    vmaf_model_for,
)
from reelflow.infra.settings import LadderConfig, Settings, TrialConfig
from reelflow.packaging.keys import tier_for_height
from reelflow.playback.license import SOFTWARE_TIERS
from uhd_masters import uhd_prores_master

__all__ = ["uhd_prores_master"]   # the session fixture, imported for pytest


def _video(width: int, height: int) -> VideoStream:
    return VideoStream(index=0, codec="prores", width=width, height=height, fps=Fraction(25), frames=25,
                       duration_s=1.0, start_s=0.0, pix_fmt="yuv422p10le", sar=Fraction(1),
                       dar=Fraction(width, height), color_primaries=None, color_transfer=None, color_matrix=None,
                       color_range=None, field_order=None, bit_depth=10)


def test_hd_title_never_tries_uhd_heights() -> None:
    config = TrialConfig()
    assert 2160 in config.heights and 1440 in config.heights
    assert candidate_heights(_video(1920, 1080), config) == (1080, 720, 540, 432, 360, 270, 234)
    assert candidate_heights(_video(2560, 1440), config)[:2] == (1440, 1080)
    assert candidate_heights(_video(3840, 2160), config)[:3] == (2160, 1440, 1080)


def test_model_and_scoring_size_by_rung_height() -> None:
    assert vmaf_model_for(2160) == vmaf_model_for(1440) == VMAF_4K_MODEL
    assert vmaf_model_for(1080) == vmaf_model_for(234) == VMAF_MODEL
    uhd, hd = _video(3840, 2160), _video(1920, 1080)
    assert scoring_size(uhd, 2160) == scoring_size(uhd, 1440) == (3840, 2160)
    assert scoring_size(uhd, 1080) == scoring_size(uhd, 360) == (1920, 1080)   # as an HD master's rungs
    assert scoring_size(hd, 720) == (1920, 1080)                                # HD titles: unchanged
    argv = vmaf_argv(Path("d.mp4"), Path("r.mov"), width=3840, height=2160, fps=Fraction(25),
                     log_path=Path("l.json"), model=vmaf_model_for(2160))
    assert "model=version=vmaf_4k_v0.6.1" in argv[argv.index("-filter_complex") + 1]


def test_uhd_tier_for_rungs_above_1080p() -> None:
    assert tier_for_height(2160) == tier_for_height(1440) == "UHD"
    assert tier_for_height(1080) == "HD"
    assert "UHD" not in SOFTWARE_TIERS       # software DRM never gets UHD keys


def _curve(height: int, scale: float, top: float) -> list[RdPoint]:
    """A concave curve: VMAF rising with log rate, saturating at ``top``."""
    out = []
    for crf in range(18, 44):
        kbps = scale * 2 ** ((36 - crf) / 4)
        out.append(RdPoint(kbps, top - 400 / (kbps / scale * 10 + 4), round(height * 16 / 9), height, float(crf)))
    return out


def test_uhd_rungs_stack_on_the_hd_ladder() -> None:
    # In its own model the 1080p curve reaches 94 cheaply; the UHD curves (4K model) need more bits.
    points = [ShotPoints(0, 2.0, tuple(_curve(1080, 1500, 98) + _curve(720, 900, 96) + _curve(360, 250, 90)
                                       + _curve(2160, 5000, 98) + _curve(1440, 3500, 97)))]
    rules = LadderConfig()
    hd_only = select_ladder([ShotPoints(0, 2.0, tuple(p for p in points[0].points if p.height <= 1080))], rules)
    rungs = select_ladder(points, rules)
    assert [r.name for r in rungs[:len(hd_only)]] == [r.name for r in hd_only]   # the HD ladder unchanged
    above = rungs[len(hd_only):]
    assert above and all(r.height > 1080 for r in above) and above[-1].height == 2160
    assert above[0].kbps >= rules.min_step_ratio * hd_only[-1].kbps * (1 - 1e-9)
    assert abs(above[-1].vmaf - rules.aim) < 0.01


@pytest.mark.slow
def test_uhd_master_gets_a_2160p_rung_scored_with_the_4k_model(uhd_prores_master: Path, tmp_path: Path) -> None:
    info = probe(uhd_prores_master)
    assert (info.video.width, info.video.height, info.video.frames) == (3840, 2160, 30)
    settings = Settings(encode={"preset": "superfast"},
                        trials={"preset": "ultrafast", "final_preset": "superfast", "x264_params": "",
                                "crfs": (22, 34), "heights": (2160, 1440, 1080, 540), "calibration_heights": 1,
                                "prune": False},
                        ladder={"heights": (2160, 1080, 540), "first_check_subsample": 1, "recheck_vmaf": None,
                                "feedback": False})
    shots = [Shot(index=0, start_frame=0, end_frame=30, start_s=0.0, end_s=float(30 / info.video.fps),
                  boundary="start")]
    keyframes = keyframe_frames([0], info.video.frames, info.video.fps, settings.encode.segment_s)
    plan = plan_trials(uhd_prores_master, info, shots, settings.trials, tmp_path / "trials")
    assert plan.uhd_heights == (2160, 1440) and plan.bridge == 1080 and 2160 not in plan.heights
    assert {t.height for t in plan.uhd_sample_trials} == {2160, 1440}
    measured = trial_shots(uhd_prores_master, info, shots, settings.trials, tmp_path / "trials", plan=plan,
                           keyframes=keyframes)
    assert {p.height for p in measured[0].points.points} >= {2160, 1440, 1080, 540}
    from reelflow.encoding.analysis import LadderAnalysis

    analysis = LadderAnalysis(mode="per-shot", plan=plan, shots=tuple(measured), units=tuple(shots),
                              rungs=tuple(select_ladder([s.points for s in measured], settings.ladder)))
    assert analysis.rungs[-1].height == 2160 and analysis.rungs[0].height <= 1080
    top_only = dataclasses.replace(analysis, rungs=analysis.rungs[-1:])
    done, made, delivered = deliver_rungs(
        top_only, lambda r: encode_planned_rung(uhd_prores_master, info, r, shots, keyframes, settings.encode,
                                                tmp_path),
        lambda rendition: measure_delivered(rendition, measure_rung_vmaf(rendition.path, info), shots, info),
        settings.ladder)
    rung = done.rungs[0]
    with av.open(str(made[rung.name].path)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (3840, 2160)
        assert sum(1 for f in container.decode(stream)) == 30
    score = delivered[rung.name].vmaf
    assert score.model == VMAF_4K_MODEL and score.frames == 30 and 60 < score.mean <= 100
    report = ladder_report(done, title_id="uhd", codec="h264", settings=settings, renditions=made,
                           delivered=delivered)
    assert report["rungs"][0]["vmaf_model"] == report["rungs"][0]["delivered"]["vmaf_model"] == VMAF_4K_MODEL
    assert report["vmaf_models"]["2160"] == {"model": VMAF_4K_MODEL, "scored_at": "3840x2160"}
    assert report["vmaf_models"]["1080"] == {"model": VMAF_MODEL, "scored_at": "1920x1080"}
    assert report["analysis"]["heights_mapped"] == [2160, 1440]


def test_shot_points_at_uhd_heights_follow_the_sample_map() -> None:
    config = TrialConfig()

    def trial(height: int, crf: int, kbps: float, vmaf: float) -> Trial:
        return Trial(width=round(height * 16 / 9), height=height, crf=crf, preset="superfast", kbps=kbps, vmaf=vmaf,
                     frames_scored=5, encode_cpu_s=1.0, vmaf_cpu_s=1.0)

    base = [trial(1080, 20, 4000, 97), trial(1080, 27, 2000, 93), trial(1080, 34, 1000, 85)]
    uhd = [trial(2160, 20, 12000, 96), trial(2160, 27, 7000, 94), trial(2160, 34, 3000, 90)]
    table = height_map(base, uhd, config)
    assert table.at(2160, 27) == pytest.approx((3.5, 1.0))
    plan = TrialPlan(heights=(1080,), skipped=(), crfs=(20, 27, 34), correction=table, sample_frames=5,
                     sample_trials=(), calibration_trials=(), cpu_s=0.0, uhd_heights=(2160,), bridge=1080,
                     uhd_map=table)
    shot = [trial(1080, 27, 1000, 90), trial(720, 27, 600, 88)]
    (mapped,) = mapped_trials(shot, plan, _video(3840, 2160))
    assert (mapped.width, mapped.height, mapped.crf) == (3840, 2160, 27)
    assert mapped.kbps == pytest.approx(3500) and mapped.vmaf == pytest.approx(91.0) and mapped.cpu_s == 0.0


def _trial(height: int, crf: int, kbps: float, vmaf: float) -> Trial:
    return Trial(width=round(height * 16 / 9), height=height, crf=crf, preset="superfast", kbps=kbps, vmaf=vmaf,
                 frames_scored=5, encode_cpu_s=1.0, vmaf_cpu_s=1.0)


def _soft_uhd(height: int, crf: int) -> Trial:
    """A soft upscale as the 4K model sees it: near its top up to CRF 34, falling only beyond."""
    vmaf = 99.0 - max(0, crf - 27) * 0.3 - max(0, crf - 34) * 0.8 - (0.5 if height == 1440 else 0.0)
    return _trial(height, crf, (30000 if height == 2160 else 18000) * 2 ** ((20 - crf) / 6), vmaf)


def _hard_uhd(height: int, crf: int) -> Trial:
    """Detailed 4K content: the 4K model falls through the top band inside the CRFs tried."""
    return _trial(height, crf, (30000 if height == 2160 else 18000) * 2 ** ((20 - crf) / 6),
                  99.0 - (crf - 20) * 0.8 - (1.0 if height == 1440 else 0.0))


def _runner(curve: object) -> tuple[list[list[int]], object]:
    runs: list[list[int]] = []

    def run(crfs: object) -> list[Trial]:
        runs.append(list(crfs))  # type: ignore[call-overload]
        return [curve(h, c) for h in (2160, 1440) for c in crfs]  # type: ignore[attr-defined,operator]

    return runs, run


def test_uhd_sample_reaches_past_the_crfs_where_the_4k_model_stays_above_the_top() -> None:
    # A soft picture: every UHD point up to CRF 34 is above the top, so the curve is tried one step
    # higher, where the 4K model falls under the top. The lowest CRF is tried all the same.
    runs, run = _runner(_soft_uhd)
    tried = uhd_sample_trials(run, (20, 27, 34), lambda _, t: t.vmaf, 95.0, 51)  # type: ignore[arg-type]
    assert runs == [[20, 27, 34], [41]]
    assert min(t.vmaf for t in tried if t.crf == 41) < 95
    # the steps stop after UHD_REACH_STEPS and at the codec's highest CRF
    runs, run = _runner(_soft_uhd)
    uhd_sample_trials(run, (20, 27, 34), lambda _, t: t.vmaf + 20, 95.0, 51)  # type: ignore[arg-type]
    assert runs == [[20, 27, 34], *([c] for c in range(41, 41 + 7 * UHD_REACH_STEPS, 7) if c <= 51)]
    runs, run = _runner(_soft_uhd)
    uhd_sample_trials(run, (20, 27, 34), lambda _, t: t.vmaf + 20, 95.0, 40)  # type: ignore[arg-type]
    assert runs == [[20, 27, 34]]
    # detailed content: nothing beyond the highest
    runs, run = _runner(_hard_uhd)
    uhd_sample_trials(run, (20, 27, 34), lambda _, t: t.vmaf, 95.0, 51)  # type: ignore[arg-type]
    assert runs == [[20, 27, 34]]


def test_uhd_correction_carries_the_preset_gain_through_each_curves_own_slope() -> None:
    # Bridge (1080p, HD model): medium is worth 3 VMAF at CRF 34, where superfast falls 1 per CRF.
    base = [_trial(1080, 20, 4000, 97), _trial(1080, 27, 2000, 92), _trial(1080, 34, 1000, 85)]
    hd = Correction(preset="superfast", final_preset="medium", heights=(360, 1080), crfs=(20, 27, 34),
                    rate_ratio=((0.9, 0.95, 1.0), (0.85, 0.9, 0.95)), vmaf_offset=((1, 2, 4), (1.0, 2.0, 3.0)),
                    measured=True)
    flat = [_soft_uhd(2160, c) for c in (27, 34, 41)]
    steep = [_trial(2160, c, 9000, 98 - (c - 20)) for c in (20, 27, 34)]   # falls as the bridge does at 34
    for uhd, expected in ((flat, 0.9), (steep, 3.0)):
        table = uhd_correction(hd, base, uhd)
        assert table.heights == (360, 1080, 2160)
        for height in (360, 540, 1080):                         # HD heights: unchanged at every CRF
            for crf in (18, 20, 24, 34, 41):
                assert table.at(height, crf) == pytest.approx(hd.at(height, crf))
        ratio, offset = table.at(2160, 34)
        assert ratio == pytest.approx(0.95) and offset == pytest.approx(expected, abs=0.05)
    # where the correction has no row at the bridge, it gets one with the values it held there
    table = uhd_correction(FIXED_CORRECTION, base, flat)
    assert table.heights == (360, 1080, 2160)
    assert table.at(720, 27) == pytest.approx(FIXED_CORRECTION.at(720, 27))


def test_a_flat_2160p_map_reaches_the_top_rungs_aim() -> None:
    """The flat map of a soft UHD title: with the sample's UHD trials only at 20-34, the 4K model
    scores 2160p above the top band everywhere, so the top rung takes the cheapest 2160p point far
    above its aim; with the reach, 2160p has points down through the band and the rung lands on it."""
    base = [_trial(1080, c, 3000 * 2 ** ((20 - c) / 6), 99 - (c - 20) * 1.2) for c in (20, 27, 34)]
    shot = [_trial(h, c, 3000 * (h / 1080) ** 1.6 * 2 ** ((20 - c) / 6), 99 - (c - 20) * 1.2 - (1080 - h) / 60)
            for h in (1080, 720, 540, 360) for c in (20, 27, 34)]
    config, rules = TrialConfig(), LadderConfig()
    same = Correction(preset="superfast", final_preset="superfast", heights=(1080,), crfs=(20, 27, 34),
                      rate_ratio=((1.0, 1.0, 1.0),), vmaf_offset=((0.0, 0.0, 0.0),), measured=True)

    def top_rung(uhd: list[Trial]) -> tuple[int, float]:
        plan = TrialPlan(heights=(1080, 720, 540, 360), skipped=(), crfs=(20, 27, 34),
                         correction=uhd_correction(same, base, uhd), sample_frames=5, sample_trials=(),
                         calibration_trials=(), cpu_s=0.0, uhd_heights=(2160, 1440), bridge=1080,
                         uhd_map=height_map(base, uhd, config), uhd_reach=reach_map(base, uhd))
        points = predict_points([*shot, *mapped_trials(shot, plan, _video(3840, 2160))], plan.correction)
        top = select_ladder([ShotPoints(0, 3.0, tuple(points))], rules)[-1]
        return top.height, top.vmaf

    old = [_soft_uhd(h, c) for h in (2160, 1440) for c in (20, 27, 34)]
    height, vmaf = top_rung(old)
    assert height == 2160 and vmaf > rules.top_vmaf_max + 1        # the bug: nowhere near the aim
    _, run = _runner(_soft_uhd)
    reached = uhd_sample_trials(run, (20, 27, 34), lambda _, t: t.vmaf, config.top_vmaf, 51)  # type: ignore[arg-type]
    height, vmaf = top_rung(reached)
    assert height == 2160 and rules.top_vmaf_min <= vmaf <= rules.top_vmaf_max


def test_reach_points_follow_each_shots_trial_at_the_highest_crf() -> None:
    config = TrialConfig()
    base = [_trial(1080, 20, 4000, 97), _trial(1080, 27, 2000, 93), _trial(1080, 34, 1000, 85)]
    uhd = [_trial(2160, 27, 7000, 98), _trial(2160, 34, 3000, 97), _trial(2160, 41, 1500, 94)]
    table = height_map(base, uhd, config)
    assert table.crfs == (27, 34)
    reach = reach_map(base, uhd)
    assert len(reach) == 1 and reach[0] == pytest.approx((2160, 41, 1.5, 9.0))
    plan = TrialPlan(heights=(1080,), skipped=(), crfs=(20, 27, 34), correction=table, sample_frames=5,
                     sample_trials=(), calibration_trials=(), cpu_s=0.0, uhd_heights=(2160,), bridge=1080,
                     uhd_map=table, uhd_reach=reach)
    shot = [_trial(1080, 20, 3000, 95), _trial(1080, 27, 1600, 90), _trial(1080, 34, 800, 82)]
    mapped = {t.crf: t for t in mapped_trials(shot, plan, _video(3840, 2160))}
    assert sorted(mapped) == [27, 34, 41]                    # CRF 20: below what the sample tried at 2160p
    assert (mapped[41].kbps, mapped[41].vmaf) == pytest.approx((1200, 91.0))
    assert (mapped[34].kbps, mapped[34].vmaf) == pytest.approx((2400, 94.0))
