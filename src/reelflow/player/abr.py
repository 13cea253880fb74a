"""ABR rules: pure objects that pick the next segment's rung from what the player knows."""

from __future__ import annotations

import itertools
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache

import numpy as np
import numpy.typing as npt

from reelflow.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "RULES",
    "AbrRule",
    "AbrState",
    "BbaRule",
    "BolaRule",
    "DeviceCaps",
    "Download",
    "MpcRule",
    "ReelflowRule",
    "ThroughputRule",
    "allowed_top",
    "bola_parameters",
    "harmonic_mean",
    "make_rule",
    "plan_rewards",
    "robust_throughput",
]


@dataclass(frozen=True)
class Download:
    """One finished segment download, as the player measured it."""

    rung: int
    bytes: int
    seconds: float            # request to last byte: the round trip is inside, as a player sees it

    def __post_init__(self) -> None:
        if self.bytes <= 0 or self.seconds <= 0:
            raise ValueError(f"a download needs bytes and time, got {self.bytes} B in {self.seconds} s")

    @property
    def bps(self) -> float:
        return self.bytes * 8 / self.seconds


@dataclass(frozen=True)
class DeviceCaps:
    """What the device (or its network) allows; None is no limit."""

    max_height: int | None = None
    max_kbps: float | None = None
    cellular: bool = False    # rules may add a default height cap of their own on cellular


@dataclass(frozen=True)
class AbrState:
    """Everything a rule may look at before it picks the rung of segment ``chunk_index``.

    A real-time player knows less than the simulator: ``upcoming_sizes``, ``heights`` and
    ``chunks_left`` may be empty or None, and every rule then falls back to nominal bitrates.
    """

    chunk_index: int
    buffer_s: float
    ladder_kbps: tuple[float, ...]                        # ascending
    chunk_s: float = 4.0
    history: tuple[Download, ...] = ()                    # oldest first
    last_rung: int | None = None
    upcoming_sizes: tuple[tuple[int, ...], ...] = ()      # bytes, [k][rung] of segment chunk_index + k
    chunks_left: int | None = None                        # this one included; None when unknown (live)
    heights: tuple[int, ...] | None = None                # per rung, when the manifest says
    caps: DeviceCaps = field(default_factory=DeviceCaps)
    buffer_cap_s: float | None = None                     # the player's buffer target, when it has one
    playing: bool = False                                 # playback has started

    def __post_init__(self) -> None:
        if not self.ladder_kbps:
            raise ConfigError("the ladder is empty")
        if any(b <= a for a, b in itertools.pairwise(self.ladder_kbps)):
            raise ConfigError(f"ladder bitrates must ascend: {self.ladder_kbps}")
        if self.heights is not None and len(self.heights) != len(self.ladder_kbps):
            raise ConfigError("heights and ladder_kbps differ in length")

    def size_bytes(self, ahead: int, rung: int) -> float:
        """Size of segment chunk_index + ahead at ``rung``: known, or nominal bitrate x duration."""
        if ahead < len(self.upcoming_sizes):
            return float(self.upcoming_sizes[ahead][rung])
        return self.ladder_kbps[rung] * 1000 * self.chunk_s / 8


def harmonic_mean(values: Sequence[float]) -> float:
    """Harmonic mean; dominated by the slow samples, which is what a throughput estimate wants."""
    if not values:
        raise ValueError("harmonic mean of nothing")
    return len(values) / sum(1 / v for v in values)


def allowed_top(state: AbrState, default_cellular_height: int | None = None) -> int:
    """Highest rung index that the device caps allow (the lowest rung is always allowed)."""
    caps = state.caps
    max_height = caps.max_height
    if max_height is None and caps.cellular:
        max_height = default_cellular_height
    top = 0
    for i, kbps in enumerate(state.ladder_kbps):
        if caps.max_kbps is not None and kbps > caps.max_kbps:
            break
        if max_height is not None and state.heights is not None and state.heights[i] > max_height:
            break
        top = i
    return top


def _highest_below(ladder_kbps: Sequence[float], bps: float, top: int) -> int:
    """Highest rung at or below ``top`` whose nominal bitrate fits in ``bps``; else the lowest."""
    rung = 0
    for i in range(top + 1):
        if ladder_kbps[i] * 1000 <= bps:
            rung = i
    return rung


class AbrRule(ABC):
    """One ABR rule: ``choose`` per segment, ``on_download`` after each, ``reset`` per session.

    Rules never see the wall clock or the network, only an ``AbrState``, so the simulator and
    the HTTP player drive them the same way. ``choose`` always returns a rung the caps allow.
    """

    name: str = ""

    def choose(self, state: AbrState) -> int:
        top = self.top_rung(state)
        return min(max(self._choose(state, top), 0), top)

    def top_rung(self, state: AbrState) -> int:
        return allowed_top(state)

    @abstractmethod
    def _choose(self, state: AbrState, top: int) -> int:
        """The rule proper: a rung in 0..top."""

    def on_download(self, download: Download) -> None:  # noqa: B027 - a hook; most rules keep no state
        """Told after each finished download; rules without memory ignore it."""

    def reset(self) -> None:  # noqa: B027 - a hook; most rules keep no state
        """Forget the session: called before the first segment of each one."""


class ThroughputRule(AbrRule):
    """Rate-based: the highest rung below a safety factor times the harmonic mean of recent downloads."""

    name = "throughput"

    def __init__(self, window: int = 5, safety: float = 0.9) -> None:
        self.window = window
        self.safety = safety

    def _choose(self, state: AbrState, top: int) -> int:
        if not state.history:
            return 0
        estimate = harmonic_mean([d.bps for d in state.history[-self.window:]])
        return _highest_below(state.ladder_kbps, self.safety * estimate, top)


class BbaRule(AbrRule):
    """Buffer-based (Huang et al., SIGCOMM 2014), as Pensieve's BB baseline runs it.

    Lowest rung below the reservoir, highest above reservoir + cushion, and in between the rung
    whose index grows linearly with the buffer (rounded down), which is the rate map of BBA-0
    spread over rung indices rather than over kbit/s.
    """

    name = "bba"

    def __init__(self, reservoir_s: float = 5.0, cushion_s: float = 10.0) -> None:
        self.reservoir_s = reservoir_s
        self.cushion_s = cushion_s

    def _choose(self, state: AbrState, top: int) -> int:
        buffer_s = state.buffer_s
        if buffer_s < self.reservoir_s:
            return 0
        if buffer_s >= self.reservoir_s + self.cushion_s:
            return top
        return int(top * (buffer_s - self.reservoir_s) / self.cushion_s)


# dash.js BolaRule: BOLA never adds delay below 10 s of buffer, and wants 2 s more per rung.
BOLA_MINIMUM_BUFFER_S = 10.0
BOLA_BUFFER_PER_LEVEL_S = 2.0


def bola_parameters(ladder_kbps: Sequence[float], buffer_s: float) -> tuple[float, float, list[float]]:
    """(Vp, gp, utilities) as dash.js derives them from the buffer target.

    Utilities are ln(bitrate) shifted so that the lowest rung has utility 1. Vp and gp are chosen
    so that the lowest rung scores best up to 10 s of buffer and the highest from the buffer
    target on, the target being at least 10 s + 2 s per rung.
    """
    utilities = [math.log(k) - math.log(ladder_kbps[0]) + 1 for k in ladder_kbps]
    target = max(buffer_s, BOLA_MINIMUM_BUFFER_S + BOLA_BUFFER_PER_LEVEL_S * len(ladder_kbps))
    if len(ladder_kbps) == 1:
        return 0.0, 0.0, utilities
    gp = (utilities[-1] - 1) / (target / BOLA_MINIMUM_BUFFER_S - 1)
    vp = BOLA_MINIMUM_BUFFER_S / gp
    return vp, gp, utilities


class BolaRule(AbrRule):
    """BOLA-BASIC (Spiteri et al., INFOCOM 2016) with dash.js's parameters.

    Picks the rung maximising (Vp (u_m + gp) - Q) / S_m, Q the buffer in seconds and S_m the
    segment's size, taken as its nominal bitrate as dash.js does. Vp and gp come from
    ``bola_parameters`` with dash.js's stable buffer time (12 s by default), which the 10 s +
    2 s-per-rung floor lifts to 22 s on a six-rung ladder. Deriving them from the simulator's
    60 s cap instead is a different player; docs/benchmarks.md gives both figures.
    """

    name = "bola"

    def __init__(self, stable_buffer_s: float = 12.0) -> None:
        self.stable_buffer_s = stable_buffer_s

    def _choose(self, state: AbrState, top: int) -> int:
        vp, gp, utilities = bola_parameters(state.ladder_kbps, self.stable_buffer_s)
        best, best_score = 0, -math.inf
        for i in range(top + 1):
            score = (vp * (utilities[i] + gp) - state.buffer_s) / state.ladder_kbps[i]
            if score >= best_score:      # dash.js: ties go to the higher rung
                best, best_score = i, score
        return best


def robust_throughput(history: Sequence[Download], window: int = 5) -> float:
    """Robust MPC's estimate: harmonic mean of the last ``window`` downloads over 1 + its worst miss.

    The miss is the relative error of this same predictor on each of the last ``window``
    downloads (0 before there was a prediction), so a link that has lately surprised the
    predictor gets a proportionally more cautious estimate.
    """
    samples = [d.bps for d in history]
    if not samples:
        raise ValueError("no downloads to estimate from")
    errors = [0.0]
    for i in range(max(1, len(samples) - window), len(samples)):
        predicted = harmonic_mean(samples[max(0, i - window):i])
        errors.append(abs(predicted - samples[i]) / samples[i])
    return harmonic_mean(samples[-window:]) / (1 + max(errors[-window:]))


def _planning_horizon(state: AbrState, horizon: int) -> int | None:
    """Chunks to plan ahead, or None when there is nothing to plan with (no history, no chunks left)."""
    if not state.history:
        return None
    if state.chunks_left is not None:
        horizon = min(horizon, state.chunks_left)
    return horizon if horizon > 0 else None


@cache
def _plans(rungs: int, horizon: int, last: int = 0, max_up: int | None = None) -> npt.NDArray[np.intp]:
    """Rung sequences over ``horizon`` segments in itertools.product order.

    With ``max_up``, only those that never climb more than that many rungs per segment,
    starting from ``last``.
    """
    plans = np.array(list(itertools.product(range(rungs), repeat=horizon)), dtype=np.intp).reshape(-1, horizon)
    if max_up is not None:
        previous = np.concatenate([np.full((len(plans), 1), last), plans[:, :-1]], axis=1)
        plans = plans[((plans - previous) <= max_up).all(axis=1)]
    return plans


def plan_rewards(
    plans: npt.NDArray[np.intp], sizes: npt.NDArray[np.float64], kbps: npt.NDArray[np.float64], bps: float,
    buffer_s: float, last_rung: int, chunk_s: float, rebuffer_penalty: float, smooth_penalty: float,
    buffer_cap_s: float | None = None,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """QoE_lin of each plan (rows of rung indices) if throughput stays at ``bps``, and its end buffer.

    ``sizes[k, rung]`` is the byte size of the k-th upcoming segment. Without ``buffer_cap_s``
    the buffer grows without bound, as in robust MPC's own model.
    """
    n, horizon = plans.shape
    buffer = np.full(n, buffer_s)
    reward = np.zeros(n)
    last = np.full(n, kbps[last_rung])
    for k in range(horizon):
        rate = kbps[plans[:, k]]
        download = sizes[k, plans[:, k]] * 8 / bps
        rebuffer = np.maximum(download - buffer, 0.0)
        buffer = np.maximum(buffer - download, 0.0) + chunk_s
        if buffer_cap_s is not None:
            buffer = np.minimum(buffer, buffer_cap_s)
        reward += rate / 1000 - rebuffer_penalty * rebuffer - smooth_penalty * np.abs(rate - last) / 1000
        last = rate
    return reward, buffer


def _size_table(state: AbrState, horizon: int, top: int) -> npt.NDArray[np.float64]:
    return np.array([[state.size_bytes(k, r) for r in range(top + 1)] for k in range(horizon)], dtype=np.float64)


def _last_of_best(rewards: npt.NDArray[np.float64]) -> int:
    """Index of the last maximum: the reference MPC keeps the last of equal plans (``>=``)."""
    return len(rewards) - 1 - int(np.argmax(rewards[::-1]))


class MpcRule(AbrRule):
    """Robust MPC (Yin et al., SIGCOMM 2015), as Pensieve's robustMPC baseline runs it.

    Throughput: ``robust_throughput`` (harmonic mean of the last 5 over 1 + the worst recent
    miss). Plan: every rung sequence over the next ``horizon`` segments, scored by QoE_lin with
    the known segment sizes (nominal bitrates when unknown); the first rung of the best plan is
    played, ties going to the plan that comes last in enumeration order as in the reference
    code. The estimate is recomputed from the history, so the rule keeps no state.
    """

    name = "mpc"

    def __init__(self, horizon: int = 5, window: int = 5, rebuffer_penalty: float = 4.3,
                 smooth_penalty: float = 1.0) -> None:
        self.horizon = horizon
        self.window = window
        self.rebuffer_penalty = rebuffer_penalty
        self.smooth_penalty = smooth_penalty

    def _choose(self, state: AbrState, top: int) -> int:
        horizon = _planning_horizon(state, self.horizon)
        if horizon is None:
            return 0
        plans = _plans(top + 1, horizon)
        last = min(state.last_rung if state.last_rung is not None else 0, top)
        rewards, _ = plan_rewards(
            plans, _size_table(state, horizon, top), np.array(state.ladder_kbps, dtype=np.float64),
            robust_throughput(state.history, self.window), state.buffer_s, last, state.chunk_s,
            self.rebuffer_penalty, self.smooth_penalty)
        return int(plans[_last_of_best(rewards), 0])


class ReelflowRule(AbrRule):
    """reelflow's default: robust MPC's planner, made to keep a buffer and to climb gradually.

    Why each part is there (figures in docs/benchmarks.md):

    - Throughput: the same harmonic mean over 1 + worst recent miss as robust MPC; it already
      adapts its caution to how erratic the link has been.
    - Buffer value: robust MPC's stalls on the 3G traces come from outages (tunnels, handovers)
      that no predictor sees coming, and only buffer rides them out. Plans are scored by QoE_lin
      minus ``reservoir_weight`` per second they end below a 10 s reservoir and ``target_weight``
      per second below a 40 s target. The steep first term builds the reservoir fast from a low
      start; above 10 s the gentle second term lets the planner ramp up while it keeps filling.
      Both shrink towards the end of a known-length video, where buffer can no longer be played.
    - Gradual switches: plans may climb at most ``max_up`` rungs per segment (any drop is
      allowed), which spares QoE_lin's switch penalty on the way up.
    - Insufficient-buffer guard: a rung above the lowest is only taken if the segment would
      still arrive before the buffer runs dry at ``guard_factor`` times the estimate.
    - A low first rung (no history: the lowest), and device caps, with cellular devices held
      to ``cellular_max_height`` unless the caps say otherwise.
    """

    name = "reelflow"

    def __init__(self, *, reservoir_s: float = 10.0, target_s: float = 40.0, reservoir_weight: float = 1.5,
                 target_weight: float = 0.2, horizon: int = 5, window: int = 5, max_up: int = 2,
                 guard_factor: float = 0.8, rebuffer_penalty: float = 4.3, smooth_penalty: float = 1.0,
                 cellular_max_height: int | None = 720) -> None:
        self.reservoir_s = reservoir_s
        self.target_s = target_s
        self.reservoir_weight = reservoir_weight
        self.target_weight = target_weight
        self.horizon = horizon
        self.window = window
        self.max_up = max_up
        self.guard_factor = guard_factor
        self.rebuffer_penalty = rebuffer_penalty
        self.smooth_penalty = smooth_penalty
        self.cellular_max_height = cellular_max_height

    def top_rung(self, state: AbrState) -> int:
        return allowed_top(state, self.cellular_max_height)

    def _choose(self, state: AbrState, top: int) -> int:
        horizon = _planning_horizon(state, self.horizon)
        if horizon is None:
            return 0
        last = min(state.last_rung if state.last_rung is not None else 0, top)
        plans = _plans(top + 1, horizon, last, self.max_up)
        sizes = _size_table(state, horizon, top)
        bps = robust_throughput(state.history, self.window)
        rewards, end_buffer = plan_rewards(
            plans, sizes, np.array(state.ladder_kbps, dtype=np.float64), bps, state.buffer_s, last,
            state.chunk_s, self.rebuffer_penalty, self.smooth_penalty, state.buffer_cap_s)
        reservoir, target = self.reservoir_s, self.target_s
        if state.chunks_left is not None:
            # what is still buffered after the plan can only serve the segments after it
            playable = state.chunk_s * (state.chunks_left - horizon)
            reservoir, target = min(reservoir, playable), min(target, playable)
        rewards = rewards - self.reservoir_weight * np.maximum(reservoir - end_buffer, 0.0)
        rewards = rewards - self.target_weight * np.maximum(target - end_buffer, 0.0)
        first = plans[:, 0]
        unsafe = (first > 0) & (sizes[0, first] * 8 / (self.guard_factor * bps) > state.buffer_s)
        rewards = np.where(unsafe, -np.inf, rewards)
        return int(plans[_last_of_best(rewards), 0])


RULES: dict[str, Callable[[], AbrRule]] = {
    "throughput": ThroughputRule,
    "bba": BbaRule,
    "bola": BolaRule,
    "mpc": MpcRule,
    "reelflow": ReelflowRule,
}


def make_rule(name: str) -> AbrRule:
    """A fresh rule by its registry name."""
    try:
        return RULES[name]()
    except KeyError:
        raise ConfigError(f"unknown ABR rule {name!r}; known: {', '.join(RULES)}") from None
