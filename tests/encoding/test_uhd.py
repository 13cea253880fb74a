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
    Trial,
    TrialPlan,
    candidate_heights,
    height_map,
    mapped_trials,
    plan_trials,
    trial_shots,
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
