"""The ladder analysis without Prefect (trials -> hulls -> rungs), the final per-shot encodes, and ladder.json.

``analyse_ladder`` is what ``reelflow ladder`` and bench/ladder.py call; the ingest flow runs the
same steps (``plan_trials``, ``trial_shots`` per group, ``select_ladder``) as tasks so that the
shot groups fan out and each step is cached. ``deliver_rungs`` encodes the rungs cheapest first
and checks each against its plan, carrying what one missed by into the next (``RungCheck``).
``ladder_report`` builds the report stored with the title: every trial
point, the hulls, the rungs with their per-shot CRFs, planned against delivered quality, and the
CPU seconds of each stage.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

from reelflow.encoding.encode import Rendition, ShotCrf, encode_rung_per_shot, half_rate, ladder_for_source
from reelflow.encoding.hull import RdPoint, ShotPoints, at_height, at_kbps, per_title_hull, title_hull
from reelflow.encoding.ladder import PlannedRung, ShotPlan, select_ladder
from reelflow.encoding.probe import MediaInfo
from reelflow.encoding.shots import Shot, split_at
from reelflow.encoding.trials import ShotTrials, TrialPlan, frame_sizes, group_shots, plan_trials, trial_shots
from reelflow.encoding.vmaf import VmafResult, vmaf_model_for
from reelflow.errors import StageError
from reelflow.infra.hashing import config_digest
from reelflow.infra.settings import EncodeConfig, LadderConfig, LadderMode, Settings

log = logging.getLogger(__name__)

# Planned and delivered VMAF of a rung should agree within this (the acceptance bound).
PLAN_TOLERANCE_VMAF = 1.0


@dataclass(frozen=True)
class RungCheck:
    """One rung as the closed loop encoded it: cheapest first, each checked against its plan.

    The trials predict the final preset's quality from a faster preset and a correction measured
    on a sample of the title, and a sample of a few seconds misjudges the gap between the presets
    by up to about 2 VMAF (bench/calibration_sample.py). Then every rung misses its plan in the
    same direction (docs/benchmarks.md: by 1.0-2.5 at the cheapest rung on 6 of 8 titles of
    ../shared/media), and the miss changes slowly from rung to rung (Tears of Steel +1.1 at the
    bottom rising to +2.2 at the top; the talking head +2.3 falling to +0.9). So the rungs are
    encoded in ascending rate, and each carries the error of the rung below at its plan (``carried_vmaf``,
    made up at its own dVMAF/dCRF before its first encode, when above ``ladder.feedback_vmaf``).
    Every encode is scored on every frame anyway (the delivered column of the report), so the
    check is free; a rung still more than ``ladder.recheck_vmaf`` off its plan is encoded once more,
    moved by its own miss, and only then is a first encode and its VMAF analysis, not final.

    The cheapest rung carries nothing, so it is the one most often encoded twice (6 of 8 titles in
    session 5), and a full VMAF run at the source's display size costs far more than its encode
    (the hard-cut composite's 270p rung: 11.8 CPU s, mostly VMAF at 720p). So its first encode is
    scored on every ``ladder.first_check_subsample``-th frame first (``quick_vmaf``; 0.3-0.4 of a
    full run's CPU at 5, and within 0.5 VMAF of it on ../shared/media, docs/benchmarks.md); a miss
    beyond ``first_check_vmaf`` (0.7) there re-encodes it at once, and the full run scores only the
    encode that stays. That is less than ``recheck_vmaf``: a subsample read of 0.9 may be a full
    miss of 1.1 (Tears of Steel's 1.11 and Caminandes' -1.12 went through that way at 1.0), and a
    needless second encode of the cheapest rung costs far less than a full VMAF run thrown away.
    Otherwise the full run decides as for every rung.

    Neither check re-encodes a rung aimed at the top band that reads inside it, nor the top rung a
    little above it (``meets_top_band``, which says why): the band, not the plan's exact figure, is
    what such a rung is for.
    """

    rung: str                 # the planned rung's name
    planned_vmaf: float
    carried_vmaf: float       # the rung below's error at its plan, made up before the first encode
    carried_shift: float      # CRF moved for that (0.0: nothing carried)
    first_vmaf: float         # the first encode: every frame, or (first_step > 1) the quick check's subsample
    recheck_shift: float      # CRF moved again for a second encode; 0.0 when the first was kept
    cpu_s: float              # analysis: the quick check, and the first encode with its VMAF when replaced
    quick_vmaf: float | None = None   # the quick check of the first encode, where one ran
    first_step: int = 1       # VMAF subsample step first_vmaf was measured at (1: every frame)

    @property
    def first_error(self) -> float:
        return self.planned_vmaf - self.first_vmaf

    @property
    def rechecked(self) -> bool:
        return self.recheck_shift != 0.0

    @property
    def error_at_plan(self) -> float:
        """What the first encode says the plan missed by before anything was carried (the next rung's
        carry). A carried move clamped at MAX_CRF_SHIFT made up less than it carried; that is ignored."""
        return self.first_error + self.carried_vmaf if self.carried_shift else self.first_error

    def to_dict(self) -> dict[str, Any]:
        return {"rung": self.rung, "planned_vmaf": round(self.planned_vmaf, 3),
                "carried_vmaf": round(self.carried_vmaf, 3), "carried_crf_shift": round(self.carried_shift, 2),
                "first_vmaf": round(self.first_vmaf, 3), "first_error": round(self.first_error, 3),
                "rechecked": self.rechecked, "recheck_crf_shift": round(self.recheck_shift, 2),
                "quick_vmaf": None if self.quick_vmaf is None else round(self.quick_vmaf, 3),
                "first_vmaf_step": self.first_step, "cpu_s": round(self.cpu_s, 2)}


@dataclass(frozen=True)
class LadderAnalysis:
    """What the trials measured and the rungs chosen from them, for one title."""

    mode: LadderMode
    plan: TrialPlan | None                 # None in fixed mode: nothing was tried
    shots: tuple[ShotTrials, ...]          # per allocation unit (see ``units``)
    rungs: tuple[PlannedRung, ...]         # ascending rate; empty in fixed mode
    units: tuple[Shot, ...] = ()           # what each gets its own CRF: shots, or shots cut at the segment grid
    fixed: tuple[tuple[int, int, int], ...] = field(default=())   # (width, height, kbps) of the reference ladder
    checks: tuple[RungCheck, ...] = ()     # set by deliver_rungs; the rungs then carry the CRFs encoded

    @property
    def points(self) -> list[ShotPoints]:
        return [s.points for s in self.shots]

    @property
    def sample_cpu_s(self) -> float:
        return self.plan.cpu_s if self.plan is not None else 0.0

    @property
    def trials_cpu_s(self) -> float:
        return sum(s.cpu_s for s in self.shots)

    @property
    def discarded_cpu_s(self) -> float:
        """The first encodes that a second replaced with their VMAF, and the cheapest rung's quick check."""
        return sum(c.cpu_s for c in self.checks)

    @property
    def cpu_s(self) -> float:
        """Everything the analysis cost: the sample (cut, pruning, calibration), every shot's trials,
        and the discarded first encodes of rechecked rungs."""
        return self.sample_cpu_s + self.trials_cpu_s + self.discarded_cpu_s


def analyse_ladder(
    src: Path, info: MediaInfo, shots: Sequence[Shot], settings: Settings, work_dir: Path,
    *, keyframes: Sequence[int] = (), mode: LadderMode | None = None, parallel: int = 1,
) -> LadderAnalysis:
    """Trials for every shot, then the ladder in ``mode`` (default: the settings'); groups run ``parallel`` at once."""
    mode = mode or settings.ladder.mode
    fixed = tuple((r.width, r.height, r.kbps) for r in ladder_for_source(info.video, settings.encode.ladder))
    if mode == "fixed":
        return LadderAnalysis(mode=mode, plan=None, shots=(), rungs=(), fixed=fixed)
    config = settings.trials
    units = allocation_units(shots, keyframes, info, settings)
    plan = plan_trials(src, info, shots, config, work_dir)
    groups = group_shots(units, info.video.fps, config)
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        results = list(pool.map(lambda g: trial_shots(src, info, g, config, work_dir, plan=plan,
                                                      keyframes=keyframes), groups))
    measured = tuple(s for group in results for s in group)
    rungs = select_ladder([s.points for s in measured], settings.ladder, mode)
    return LadderAnalysis(mode=mode, plan=plan, shots=measured, rungs=tuple(rungs), fixed=fixed, units=units)


# --- the closed loop: rungs encoded cheapest first, each checked against its plan -----------------

# Where the trials show no slope (quality saturated near 100), a rung's CRFs move at most this far.
MAX_CRF_SHIFT = 4.0


def crf_slope(rung: PlannedRung, points: Sequence[ShotPoints]) -> float | None:
    """Duration-weighted dVMAF/dCRF of the rung's units around their planned CRFs, at its height.

    From each unit's points at the rung's height (the trials' probes and the points interpolated
    between them), the two around the planned CRF, or the two nearest it where a carried move took
    it beyond the CRFs tried; None where no unit has two points there.
    """
    by_index = {s.index: s for s in points}
    total, weight = 0.0, 0.0
    for plan in rung.shots:
        unit = by_index.get(plan.index)
        if unit is None:
            raise StageError(f"rung {rung.name} plans unit {plan.index}, which has no trial points")
        at = sorted({(p.crf, p.vmaf) for p in unit.points if p.height == rung.height})
        if len(at) < 2:
            continue
        above = next((i for i, c in enumerate(at) if c[0] > plan.crf), len(at))
        i = min(max(above, 1), len(at) - 1)          # at[i - 1] <= CRF < at[i], clamped to the ends
        lo, hi = at[i - 1], at[i]
        total += unit.duration_s * (hi[1] - lo[1]) / (hi[0] - lo[0])
        weight += unit.duration_s
    return total / weight if weight else None


def crf_shift(error: float, slope: float | None) -> float:
    """The CRF change that makes up a VMAF ``error`` (planned - delivered) at ``slope`` (VMAF per CRF)."""
    if slope is None or slope >= 0:
        return 0.0
    return max(-MAX_CRF_SHIFT, min(MAX_CRF_SHIFT, error / slope))


def shifted_rung(rung: PlannedRung, delta: float) -> PlannedRung:
    """The rung with every unit's CRF moved by ``delta``; planned rate and quality stay (they are the aim)."""
    def moved(p: ShotPlan) -> ShotPlan:
        return replace(p, crf=round(min(51.0, max(0.0, p.crf + delta)), 2))
    return replace(rung, shots=tuple(moved(p) for p in rung.shots))


def carried_shift(rung: PlannedRung, carried_vmaf: float, points: Sequence[ShotPoints], config: LadderConfig) -> float:
    """The CRF move that makes up the error carried from the rung below (0.0 within ``feedback_vmaf``, or off)."""
    if not config.feedback or abs(carried_vmaf) <= config.feedback_vmaf:
        return 0.0
    return crf_shift(carried_vmaf, crf_slope(rung, points))


def meets_top_band(rung: PlannedRung, delivered_vmaf: float, config: LadderConfig, *, top: bool) -> bool:
    """Whether a rung aimed at the top band delivered what that band promises, whatever its plan said.

    A rung is aimed at the band [``top_vmaf_min``, ``top_vmaf_max``] when it is planned in or above
    it (the HD ladder's top, a UHD title's UHD rungs: ladder.py plans them at the aim, or above it where
    ``min_step_ratio`` holds a UHD rung above the HD top) or is the ladder's top rung. Such a rung that
    reads inside the band is kept: a second encode would only move it within the band it is already in.

    Above the band, only the top rung is kept, and only up to ``recheck_vmaf`` over ``top_vmaf_max``
    (so its delivered VMAF stays within 1 of the window). A second encode of the top rung is the
    dearest single step of the analysis (on a UHD title the 2160p encode is about half the final
    encodes' CPU, on a title of any length), while the bits it would save just above the band sit on
    the 4K model's flat top; docs/benchmarks.md ("UHD") has the measurements. Further above the band
    the top rung pays too many bits on the rung most views stream, and is encoded again at its own
    slope. A rung below the top that reads above the band would out-score the rung above it for fewer
    bits: it is re-encoded, and so is every rung that falls below the band more than ``recheck_vmaf``
    under its plan.
    """
    if not (top or rung.vmaf >= config.top_vmaf_min):
        return False
    if config.top_vmaf_min <= delivered_vmaf <= config.top_vmaf_max:
        return True
    tolerance = config.recheck_vmaf if config.recheck_vmaf is not None else 0.0
    return top and config.top_vmaf_max < delivered_vmaf <= config.top_vmaf_max + tolerance


def recheck_shift(rung: PlannedRung, delivered_vmaf: float, points: Sequence[ShotPoints],
                  config: LadderConfig, *, top: bool = False) -> float:
    """The CRF move for a second encode of a rung that missed its plan by more than ``recheck_vmaf``
    (its miss at its own slope); 0.0 when it met the plan, when it met the top band it was aimed at
    (``meets_top_band``; ``top``: the ladder's top rung), or when the trials give no slope."""
    error = rung.vmaf - delivered_vmaf
    if config.recheck_vmaf is None or abs(error) <= config.recheck_vmaf:
        return 0.0
    if meets_top_band(rung, delivered_vmaf, config, top=top):
        return 0.0
    return crf_shift(error, crf_slope(rung, points))


def deliver_rungs(
    analysis: LadderAnalysis, encode: Callable[[PlannedRung], Rendition],
    measure: Callable[[Rendition], Delivered], config: LadderConfig,
    quick: Callable[[Rendition, int], VmafResult] | None = None,
    half_rate_rung: Callable[[PlannedRung], bool] | None = None,
) -> tuple[LadderAnalysis, dict[str, Rendition], dict[str, Delivered]]:
    """The planned rungs encoded and scored cheapest first, each checked against its plan (RungCheck).

    ``encode`` makes a rung's final encode at the CRFs it carries and ``measure`` scores it on every
    frame; ``quick`` scores it on every n-th frame (the cheapest rung's first check; without it that
    rung is checked on every frame like the others). The flow passes its tasks, bench/ladder.py plain
    calls. Without ``measure_delivered`` nothing is scored, carried or rechecked. Returns the
    analysis with the CRFs as encoded and the checks, and the renditions and measurements by planned
    rung name.

    A rung that ``half_rate_rung`` says is half rate (encode.half_rate) is encoded at its planned CRFs
    and scored, but neither checked nor carried: the trials encode at the source's rate (a half-rate
    hull would double the trials of the heights that can be either), so its plan predicts the
    full-rate encode, and its miss is the motion it gives up, which no CRF move makes up. The first
    full-rate rung above it starts afresh, as the cheapest rung does.
    """
    is_half = half_rate_rung or (lambda rung: False)
    made: dict[str, Rendition] = {}
    delivered: dict[str, Delivered] = {}
    carried = 0.0
    for i, planned in enumerate(analysis.rungs):
        # The first rung scored with another VMAF model (a UHD title's first rung above 1080p) starts
        # afresh: a miss on one model's scale says nothing exact on the other's, and its points are
        # mapped from 1080p (trials.py), so it is checked quickly first, as the cheapest rung is.
        first_of_model = i == 0 or vmaf_model_for(planned.height) != vmaf_model_for(analysis.rungs[i - 1].height) \
            or is_half(analysis.rungs[i - 1])
        if first_of_model:
            carried = 0.0
        if is_half(planned):
            made[planned.name] = encode(planned)
            if config.measure_delivered:
                delivered[planned.name] = measure(made[planned.name])
            continue
        moved = carried_shift(planned, carried, analysis.points, config) if config.measure_delivered else 0.0
        rung = shifted_rung(planned, moved) if moved else planned
        rendition = encode(rung)
        check = None
        if config.measure_delivered:
            step = config.first_check_subsample if first_of_model else 1
            quick_score = quick(rendition, step) if quick is not None and step > 1 else None
            again = 0.0
            top = i == len(analysis.rungs) - 1
            if quick_score is not None and abs(rung.vmaf - quick_score.mean) > config.first_check_vmaf \
                    and not meets_top_band(rung, quick_score.mean, config, top=top):
                # off on the subsample already: encoded again at once, the full run scores only the second
                first_vmaf, discarded = quick_score.mean, rendition.cpu_s
                again = crf_shift(rung.vmaf - first_vmaf, crf_slope(rung, analysis.points))
            if not again:
                step, score = 1, measure(rendition)
                first_vmaf = score.vmaf.mean
                again = recheck_shift(rung, first_vmaf, analysis.points, config, top=top)
                discarded = rendition.cpu_s + score.vmaf.cpu_s if again else 0.0
            check = RungCheck(rung=rung.name, planned_vmaf=rung.vmaf, carried_vmaf=carried, carried_shift=moved,
                              first_vmaf=first_vmaf, recheck_shift=again,
                              cpu_s=discarded + (quick_score.cpu_s if quick_score else 0.0),
                              quick_vmaf=quick_score.mean if quick_score else None, first_step=step)
            log.info("%s: delivered VMAF %.2f%s against %.2f planned (carried %+.2f: CRFs %+.2f)%s", rung.name,
                     first_vmaf, f" (every {step}th frame)" if step > 1 else "", rung.vmaf, carried, moved,
                     f"; encoding it again with CRFs moved by {again:+.2f}" if again else "")
            if again:
                rung = shifted_rung(rung, again)
                rendition = encode(rung)
                score = measure(rendition)
            delivered[rung.name] = score
            carried = check.error_at_plan
        made[rung.name] = rendition
        analysis = replace(analysis, rungs=(*analysis.rungs[:i], rung, *analysis.rungs[i + 1:]),
                           checks=analysis.checks + ((check,) if check is not None else ()))
    return analysis, made, delivered


def allocation_units(shots: Sequence[Shot], keyframes: Sequence[int], info: MediaInfo,
                     settings: Settings) -> tuple[Shot, ...]:
    """What gets its own CRF in a rung: the shots, or (``allocate_per = "segment"``) their pieces
    between the keyframes every rung has anyway (shot starts and the segment grid)."""
    if settings.ladder.allocate_per == "shot":
        return tuple(shots)
    return split_at(shots, keyframes, info.video.fps)


def shot_crfs(rung: PlannedRung, shots: Sequence[Shot]) -> list[ShotCrf]:
    """The rung's per-shot CRFs as the frame ranges the encoder takes."""
    by_index = {s.index: s for s in shots}
    if {p.index for p in rung.shots} != set(by_index):
        raise StageError(f"rung {rung.name} plans other shots than the title has")
    return [ShotCrf(by_index[p.index].start_frame, by_index[p.index].end_frame, p.crf)
            for p in sorted(rung.shots, key=lambda p: by_index[p.index].start_frame)]


def piece_groups(pieces: Sequence[ShotCrf], fps: Fraction, task_s: float, at_least: int = 1) -> list[list[ShotCrf]]:
    """A rung's pieces in consecutive groups of about ``task_s`` seconds (a longer piece alone), one task
    each; at least ``at_least`` groups where there are that many pieces, so a short title's rung still
    runs its pieces side by side."""
    total = sum(p.end_frame - p.start_frame for p in pieces)
    count = min(len(pieces), max(at_least, round(total / max(1.0, float(task_s * fps)))))
    limit = total / max(1, count)
    groups: list[list[ShotCrf]] = []
    filled = 0.0
    for piece in pieces:
        frames = piece.end_frame - piece.start_frame
        # a new group when this piece would carry the current one past its share of the title
        if not groups or (filled + frames / 2 > limit * len(groups) and len(groups) < count):
            groups.append([])
        groups[-1].append(piece)
        filled += frames
    return groups


def rung_file_name(rung: PlannedRung, codec: str = "h264") -> str:
    """A name that changes with the plan: a reused file must be the encode of this very plan."""
    digest = config_digest(rung.width, rung.height, rung.crfs) if codec == "h264" else \
        config_digest(codec, rung.width, rung.height, rung.crfs)
    return f"{rung.height}p_{round(rung.kbps)}k-{digest[:8]}.mp4"


def encode_planned_rung(
    src: Path, info: MediaInfo, rung: PlannedRung, shots: Sequence[Shot], keyframes: Sequence[int],
    config: EncodeConfig, out_dir: Path,
) -> Rendition:
    """The rung's final encode: shot by shot at its planned CRFs, joined, keyframes verified; at half
    rate when the rung is within the bounds of ``encode.half_rate``."""
    return encode_rung_per_shot(src, info, rung.width, rung.height, shot_crfs(rung, shots), keyframes, config.preset,
                                out_dir / rung_file_name(rung, config.codec), target_kbps=round(rung.kbps),
                                codec=config.codec, preroll=config.preroll_frames, jobs=config.parallel_encodes,
                                half_rate=planned_half_rate(rung, info, config))


def planned_half_rate(rung: PlannedRung, info: MediaInfo, config: EncodeConfig) -> bool:
    """Whether a planned rung is encoded at half rate (encode.half_rate at its size and planned rate)."""
    return half_rate(info.video.fps, rung.width, rung.height, rung.kbps, config)


# --- the report ------------------------------------------------------------------------------

@dataclass(frozen=True)
class Delivered:
    """A delivered rung as measured: payload rate and VMAF on every frame, per shot too."""

    kbps: float                        # video payload (packet sizes) over the duration
    vmaf: VmafResult
    shot_kbps: tuple[float, ...]
    shot_vmaf: tuple[float, ...]


def measure_delivered(rendition: Rendition, vmaf: VmafResult, shots: Sequence[Shot], info: MediaInfo,
                      coded_sizes: Sequence[int] | None = None) -> Delivered:
    """Split a rung's every-frame VMAF and its frame sizes by shot: ``coded_sizes`` (each coded frame's
    bytes in presentation order, as the pieces of a rung not joined yet give them), else read from the file.

    A half-rate rung's frame k is the source's frame 2k: its bytes count there (every shot starts
    on an even frame, so each shot gets its own frames' bytes)."""
    fps = info.video.fps
    count = math.ceil(info.video.frames / 2) if rendition.half_rate else info.video.frames
    coded = list(coded_sizes) if coded_sizes is not None else frame_sizes(rendition.path, count)
    if len(coded) != count:
        raise StageError(f"{rendition.name}: {len(coded)} coded frames, {count} expected")
    sizes = [0 if i % 2 else coded[i // 2] for i in range(info.video.frames)] if rendition.half_rate else coded
    if len(vmaf.scores) != info.video.frames:
        raise StageError(f"{rendition.name}: VMAF scored {len(vmaf.scores)} frames, the title has "
                         f"{info.video.frames}; delivered rungs are scored on every frame")
    shot_kbps, shot_vmaf = [], []
    for s in shots:
        seconds = float(s.frames / fps)
        shot_kbps.append(sum(sizes[s.start_frame:s.end_frame]) * 8 / 1000 / seconds)
        shot_vmaf.append(statistics.fmean(vmaf.scores[s.start_frame:s.end_frame]))
    total_s = float(info.video.frames / fps)
    return Delivered(kbps=sum(sizes) * 8 / 1000 / total_s, vmaf=vmaf, shot_kbps=tuple(shot_kbps),
                     shot_vmaf=tuple(shot_vmaf))


HALF_RATE_REPORT = {
    "frames": "the source's even frames (0, 2, 4, ...) at half its rate; keyframes at the same times as every rung's",
    "planned": "from trials at the source's rate: planned kbps and VMAF are those of a full-rate encode at the "
               "rung's CRFs, which the half-rate encode uses as they are (not checked against the plan, nothing "
               "carried to the next rung: analysis.deliver_rungs)",
    "scored": "VMAF against every source frame, each half-rate frame standing for itself and the next source "
              "frame (shown twice, as a player does), so the lost motion counts; 'vmaf_below_full_rate_plan' is "
              "the planned full-rate VMAF minus that",
}


def _point(p: RdPoint) -> dict[str, Any]:
    return {"width": p.width, "height": p.height, "crf": round(p.crf, 2), "kbps": round(p.kbps, 1),
            "vmaf": round(p.vmaf, 3)}


def fixed_estimates(analysis: LadderAnalysis) -> list[tuple[float, float, str]]:
    """The fixed ladder's rungs placed on the per-title hull of their height (kbps, VMAF, label).

    A prediction from the trials, not a measurement: it shows the saving without encoding the fixed
    ladder too. Rungs at heights that were not tried (pruned, or not candidates) are left out.
    """
    points = analysis.points
    out = []
    for _width, height, kbps in analysis.fixed:
        if not points or not all(any(p.height == height for p in s.points) for s in points):
            continue
        hull = per_title_hull(at_height(points, height))
        if not hull or kbps < hull[0].kbps:
            continue
        out.append((float(kbps), at_kbps(hull, min(kbps, hull[-1].kbps)).vmaf, f"{height}p {kbps}k"))
    return out


def ladder_report(
    analysis: LadderAnalysis, *, title_id: str, codec: str, settings: Settings,
    renditions: Mapping[str, Rendition] | None = None, delivered: Mapping[str, Delivered] | None = None,
    delivered_cpu_s: float = 0.0,
) -> dict[str, Any]:
    """ladder.json: trials, hulls, rungs with per-shot choices, planned against delivered, CPU per stage.

    ``renditions`` and ``delivered`` are keyed by the planned rung's name; ``vmaf_models`` says
    which model scored each candidate height (trials and rungs) and at what size.
    """
    renditions = renditions or {}
    delivered = delivered or {}
    points = analysis.points
    final_cpu = sum(r.cpu_s for r in renditions.values())
    rungs = []
    for rung in analysis.rungs:
        entry: dict[str, Any] = {
            "name": rung.name, "width": rung.width, "height": rung.height,
            "vmaf_model": vmaf_model_for(rung.height),
            "planned": {"kbps": round(rung.kbps, 1), "vmaf": round(rung.vmaf, 3)},
            "shots": [{"shot": p.index, "crf": round(p.crf, 2), "planned_kbps": round(p.kbps, 1),
                       "planned_vmaf": round(p.vmaf, 3)} for p in rung.shots],
        }
        rendition = renditions.get(rung.name)
        if rendition is not None:
            entry["file"] = {"name": rendition.path.name, "kbps": rendition.kbps, "frames": rendition.frames,
                             "encode_cpu_s": round(rendition.cpu_s, 2)}
            entry.update(frame_rate=rendition.frame_rate, half_rate=rendition.half_rate)
        measured = delivered.get(rung.name)
        if measured is not None:
            entry["delivered"] = {"kbps": round(measured.kbps, 1), "vmaf": round(measured.vmaf.mean, 3),
                                  "vmaf_model": measured.vmaf.model,
                                  "vmaf_harmonic": round(measured.vmaf.harmonic_mean, 3),
                                  "vmaf_min": round(measured.vmaf.min, 3), "vmaf_p5": round(measured.vmaf.p5, 3),
                                  "frames_scored": measured.vmaf.frames}
            # a half-rate rung's plan is a full-rate prediction: its miss is no planning error (HALF_RATE_REPORT)
            entry["vmaf_error" if rendition is None or not rendition.half_rate else "vmaf_below_full_rate_plan"] = \
                round(rung.vmaf - measured.vmaf.mean, 3)
            for shot, kbps, vmaf in zip(entry["shots"], measured.shot_kbps, measured.shot_vmaf, strict=True):
                shot.update(delivered_kbps=round(kbps, 1), delivered_vmaf=round(vmaf, 3))
        rungs.append(entry)
    errors = [abs(r["vmaf_error"]) for r in rungs if "vmaf_error" in r]
    plan = analysis.plan
    hull_of = title_hull if analysis.mode == "per-shot" else per_title_hull
    heights = sorted({p.height for s in points for p in s.points}, reverse=True)
    return {
        "title_id": title_id,
        "mode": analysis.mode,
        "codec": codec,
        "final_preset": settings.encode.preset,
        "trial_preset": settings.trials.preset if plan is not None else None,
        "rules": settings.ladder.model_dump(mode="json"),
        # Which libvmaf model scored each height's trials and rungs, and at what size (vmaf.py); the
        # hull never compares the two models' scores (ladder.py stacks UHD rungs on the HD ladder).
        "vmaf_models": {str(h): {"model": model, "scored_at": f"{w}x{sh}"} for h, model, w, sh in plan.scoring}
        if plan is not None else {},
        "analysis": None if plan is None else {
            "heights_tried": list(plan.heights), "heights_skipped": list(plan.skipped), "crfs": list(plan.crfs),
            "crfs_per_height": {str(h): list(plan.crfs_at(h)) for h in plan.heights},
            "sample_frames": plan.sample_frames,
            "heights_mapped": list(plan.uhd_heights),
            "uhd_map": None if plan.uhd_map is None else {
                "from_height": plan.bridge, "heights": list(plan.uhd_map.heights), "crfs": list(plan.uhd_map.crfs),
                "rate_ratio": [[round(r, 4) for r in row] for row in plan.uhd_map.rate_ratio],
                "vmaf_offset": [[round(v, 3) for v in row] for row in plan.uhd_map.vmaf_offset]},
            "correction": {"measured": plan.correction.measured, "heights": list(plan.correction.heights),
                           "crfs": list(plan.correction.crfs),
                           "rate_ratio": [list(r) for r in plan.correction.rate_ratio],
                           "vmaf_offset": [list(r) for r in plan.correction.vmaf_offset]},
        },
        "checks": [c.to_dict() for c in analysis.checks],
        "half_rate": {**HALF_RATE_REPORT, "max_height": settings.encode.half_rate_max_height,
                      "max_kbps": settings.encode.half_rate_max_kbps,
                      "rungs": [n for n, r in renditions.items() if r.half_rate]}
        if any(r.half_rate for r in renditions.values()) else None,
        "cpu_s": {
            "analysis": round(analysis.cpu_s, 2),
            "analysis_sample": round(analysis.sample_cpu_s, 2),
            "analysis_trials": round(analysis.trials_cpu_s, 2),
            "analysis_discarded": round(analysis.discarded_cpu_s, 2),
            "final_encodes": round(final_cpu, 2),
            "delivered_vmaf": round(delivered_cpu_s, 2),
            "analysis_over_final": round(analysis.cpu_s / final_cpu, 3) if final_cpu > 0 else None,
        },
        "rungs": rungs,
        "planned_vs_delivered": None if not errors else {
            "rungs_measured": len(errors), "within_1_vmaf": sum(e <= PLAN_TOLERANCE_VMAF for e in errors),
            "max_abs_error": round(max(errors), 3), "mean_abs_error": round(statistics.fmean(errors), 3)},
        "fixed_ladder": [{"width": w, "height": h, "kbps": k} for w, h, k in analysis.fixed],
        "fixed_ladder_predicted": [{"kbps": k, "vmaf": round(v, 3), "rung": label}
                                   for k, v, label in fixed_estimates(analysis)],
        "hulls": {str(h): [{"kbps": round(a.kbps, 1), "vmaf": round(a.vmaf, 3)} for a in hull_of(at_height(points, h))]
                  for h in heights if all(any(p.height == h for p in s.points) for s in points)},
        "units": {"allocate_per": settings.ladder.allocate_per if analysis.mode == "per-shot" else "title",
                  "frames": [[u.start_frame, u.end_frame] for u in analysis.units]},
        "shots": [{"shot": s.points.index, "duration_s": round(s.points.duration_s, 3), "cpu_s": round(s.cpu_s, 2),
                   "trials": [{"width": t.width, "height": t.height, "crf": t.crf, "preset": t.preset,
                               "kbps": round(t.kbps, 1), "vmaf": round(t.vmaf, 3), "frames_scored": t.frames_scored}
                              for t in s.trials],
                   "points": [_point(p) for p in s.points.points]} for s in analysis.shots],
    }


def summary(analysis: LadderAnalysis, codec: str) -> dict[str, Any]:
    """What ``reelflow ladder --json`` prints: the rungs, and what the analysis cost."""
    rungs: list[dict[str, Any]]
    if analysis.mode == "fixed":
        rungs = [{"width": w, "height": h, "kbps": k, "vmaf": None} for w, h, k in analysis.fixed]
    else:
        rungs = [{"width": r.width, "height": r.height, "kbps": round(r.kbps, 1), "vmaf": round(r.vmaf, 2),
                  "vmaf_model": vmaf_model_for(r.height), "crfs": [round(c, 2) for c in r.crfs]}
                 for r in analysis.rungs]
    plan = analysis.plan
    return {
        "mode": analysis.mode, "codec": codec, "rungs": rungs,
        "analysis_cpu_s": round(analysis.cpu_s, 2),
        "shots": len(analysis.shots),
        "heights_tried": list(plan.heights) if plan else [],
        "heights_skipped": list(plan.skipped) if plan else [],
        "heights_mapped": list(plan.uhd_heights) if plan else [],
        "fixed_ladder": [{"width": w, "height": h, "kbps": k} for w, h, k in analysis.fixed],
    }
