"""ABR rules on crafted situations: each rule's defining behaviour, caps, and graceful degradation."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reelflow.errors import ConfigError
from reelflow.player.abr import (
    RULES,
    AbrRule,
    AbrState,
    BbaRule,
    BolaRule,
    DeviceCaps,
    Download,
    MpcRule,
    ReelflowRule,
    ThroughputRule,
    allowed_top,
    bola_parameters,
    harmonic_mean,
    make_rule,
    plan_rewards,
    robust_throughput,
)

LADDER = (300.0, 750.0, 1200.0, 1850.0, 2850.0, 4300.0)
HEIGHTS = (240, 360, 480, 720, 1080, 1440)     # Pensieve's labels for the envivio rungs


def at_mbps(mbps: float, rung: int = 1, seconds: float = 4.0) -> Download:
    """A download that measured ``mbps``: ``seconds`` long, its size made to fit."""
    return Download(rung=rung, bytes=round(mbps * 1e6 * seconds / 8), seconds=seconds)


def state(buffer_s: float = 10.0, history: tuple[Download, ...] = (), **kw: object) -> AbrState:
    values: dict[str, object] = {"chunk_index": len(history), "buffer_s": buffer_s, "ladder_kbps": LADDER,
                                 "history": history, "last_rung": history[-1].rung if history else None}
    values.update(kw)
    return AbrState(**values)  # type: ignore[arg-type]


# --- shared pieces -----------------------------------------------------------------------------


def test_harmonic_mean_is_dominated_by_slow_samples() -> None:
    assert harmonic_mean([1.0, 2.0, 4.0]) == pytest.approx(3 / (1 + 1 / 2 + 1 / 4))   # 12/7
    with pytest.raises(ValueError):
        harmonic_mean([])


def test_download_bps_counts_the_whole_request() -> None:
    assert Download(rung=0, bytes=500_000, seconds=2.0).bps == 2_000_000
    with pytest.raises(ValueError):
        Download(rung=0, bytes=500_000, seconds=0.0)


def test_state_refuses_a_ladder_that_does_not_ascend() -> None:
    with pytest.raises(ConfigError):
        state(ladder_kbps=(750.0, 300.0))
    with pytest.raises(ConfigError):
        state(heights=(240, 360))


def test_size_falls_back_to_nominal_bitrate_without_sizes() -> None:
    known = state(upcoming_sizes=((1, 2, 3, 4, 5, 6),))
    assert known.size_bytes(0, 2) == 3
    assert known.size_bytes(1, 2) == 1200 * 1000 * 4 / 8      # beyond the known sizes: nominal
    assert state().size_bytes(0, 0) == 150_000


def test_allowed_top_applies_bitrate_and_height_caps() -> None:
    assert allowed_top(state()) == 5
    assert allowed_top(state(caps=DeviceCaps(max_kbps=2000))) == 3
    assert allowed_top(state(caps=DeviceCaps(max_height=720), heights=HEIGHTS)) == 3
    assert allowed_top(state(caps=DeviceCaps(max_height=720))) == 5          # heights unknown: cannot apply
    assert allowed_top(state(caps=DeviceCaps(cellular=True), heights=HEIGHTS)) == 5   # no default for all
    assert allowed_top(state(caps=DeviceCaps(cellular=True), heights=HEIGHTS), 720) == 3
    assert allowed_top(state(caps=DeviceCaps(max_kbps=100))) == 0            # the lowest rung always stays


# --- throughput ----------------------------------------------------------------------------------


def test_throughput_picks_highest_rung_under_safety_times_harmonic_mean() -> None:
    """Downloads at 1, 2 and 4 Mbit/s: harmonic mean 12/7 = 1.714; x0.9 = 1.543 Mbit/s -> 1200."""
    history = (at_mbps(1), at_mbps(2), at_mbps(4))
    assert ThroughputRule().choose(state(history=history)) == 2
    # 2 Mbit/s steady: 0.9 x 2 = 1.8 < 1.85, so 1200; without the safety factor, 1850
    steady = (at_mbps(2),) * 3
    assert ThroughputRule(safety=0.9).choose(state(history=steady)) == 2
    assert ThroughputRule(safety=1.0).choose(state(history=steady)) == 3


def test_throughput_looks_only_at_its_window_and_starts_low() -> None:
    history = (at_mbps(0.1),) + (at_mbps(10),) * 5
    assert ThroughputRule(window=5).choose(state(history=history)) == 5
    assert ThroughputRule(window=6).choose(state(history=history)) == 0
    assert ThroughputRule().choose(state()) == 0


# --- BBA ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("buffer_s", "rung"), [
    (0.0, 0), (4.99, 0),            # below the 5 s reservoir: lowest
    (5.0, 0), (7.0, 1), (10.0, 2), (12.0, 3), (14.99, 4),    # the cushion: floor(5 x (B - 5) / 10)
    (15.0, 5), (60.0, 5),           # reservoir + cushion and above: highest
])
def test_bba_maps_buffer_to_rung(buffer_s: float, rung: int) -> None:
    assert BbaRule().choose(state(buffer_s)) == rung


def test_bba_ignores_throughput_and_respects_caps() -> None:
    assert BbaRule().choose(state(3.0, history=(at_mbps(50),))) == 0
    assert BbaRule().choose(state(30.0, caps=DeviceCaps(max_kbps=1500))) == 2


# --- BOLA --------------------------------------------------------------------------------------


def test_bola_parameters_follow_dash_js() -> None:
    """Utilities ln(R/R0) + 1; the target is max(12, 10 + 2 x 6) = 22 s; Vp and gp put the lowest
    rung's threshold at 10 s and the highest rung's at the target: Vp (u + gp - 1) = 10 and 22."""
    vp, gp, utilities = bola_parameters(LADDER, 12.0)
    assert utilities[0] == 1.0
    assert utilities[-1] == pytest.approx(1 + math.log(4300 / 300))
    assert gp == pytest.approx(math.log(4300 / 300) / (22 / 10 - 1))
    assert vp == pytest.approx(10 / gp)
    assert vp * (utilities[0] + gp - 1) == pytest.approx(10.0)
    assert vp * (utilities[-1] + gp - 1) == pytest.approx(22.0)
    vp60, gp60, _ = bola_parameters(LADDER, 60.0)             # a bigger buffer target moves the top out
    assert vp60 * (utilities[-1] + gp60 - 1) == pytest.approx(60.0)


def test_bola_climbs_with_the_buffer() -> None:
    rule = BolaRule()
    picks = [rule.choose(state(b)) for b in np.arange(0.0, 30.0, 0.5)]
    assert picks[0] == 0 and picks[-1] == 5
    assert picks == sorted(picks)
    assert rule.choose(state(9.0)) == 0                      # still the lowest just under 10 s
    assert rule.choose(state(22.5)) == 5
    assert BolaRule(stable_buffer_s=60.0).choose(state(22.5)) < 5


# --- robust MPC ----------------------------------------------------------------------------------


def test_robust_throughput_discounts_by_the_worst_recent_miss() -> None:
    """Four downloads at 1 Mbit/s, then 2: the predictor said 1 for the last one, a 50% miss.
    Harmonic mean of the five = 5 / 4.5 = 1.111 Mbit/s; divided by 1.5 = 0.741 Mbit/s."""
    history = (at_mbps(1),) * 4 + (at_mbps(2),)
    assert robust_throughput(history) == pytest.approx(5 / 4.5 / 1.5 * 1e6)
    assert robust_throughput((at_mbps(3),) * 7) == pytest.approx(3e6)


def test_plan_rewards_by_hand() -> None:
    """One plan [1, 2] from rung 1, 1 Mbit/s, buffer 1 s, segments of 750 and 1200 kbit/s x 4 s:
    downloads 3.0 s and 4.8 s; rebuffer 2.0 s then 0.8 s; buffers 4.0 and 4.0 s.
    QoE = 0.75 + 1.2 - 4.3 x 2.8 - 0.45 = -10.54."""
    kbps = np.array(LADDER)
    sizes = np.array([kbps * 1000 * 4 / 8] * 2)
    rewards, end = plan_rewards(np.array([[1, 2]]), sizes, kbps, 1e6, 1.0, 1, 4.0, 4.3, 1.0)
    assert rewards[0] == pytest.approx(0.75 + 1.2 - 4.3 * 2.8 - 0.45)
    assert end[0] == pytest.approx(4.0)


def _mpc_by_brute_force(s: AbrState, bps: float, horizon: int) -> int:
    """The reference's loop, plan by plan (``>=`` keeps the last of equal plans)."""
    best, best_reward = 0, -math.inf
    for plan in itertools.product(range(len(LADDER)), repeat=horizon):
        buffer, reward, last = s.buffer_s, 0.0, LADDER[s.last_rung or 0]
        for k, rung in enumerate(plan):
            download = s.size_bytes(k, rung) * 8 / bps
            reward -= 4.3 * max(download - buffer, 0.0)
            buffer = max(buffer - download, 0.0) + 4.0
            reward += LADDER[rung] / 1000 - abs(LADDER[rung] - last) / 1000
            last = LADDER[rung]
        if reward >= best_reward:
            best, best_reward = plan[0], reward
    return best


@pytest.mark.parametrize(("mbps", "buffer_s"), [(0.4, 3.0), (1.3, 8.0), (2.2, 5.0), (3.0, 20.0)])
def test_mpc_matches_brute_force_enumeration(mbps: float, buffer_s: float) -> None:
    sizes = tuple(tuple(int(k * 1000 * 4 / 8 * (1 + 0.1 * ((i + r) % 3 - 1))) for r, k in enumerate(LADDER))
                  for i in range(5))
    s = state(buffer_s, history=(at_mbps(mbps, rung=2),) * 5, upcoming_sizes=sizes, chunks_left=20)
    assert MpcRule().choose(s) == _mpc_by_brute_force(s, mbps * 1e6, 5)


def test_mpc_on_steady_links_picks_the_obvious() -> None:
    assert MpcRule().choose(state(20.0, history=(at_mbps(10, rung=5),) * 5)) == 5
    assert MpcRule().choose(state(4.0, history=(at_mbps(0.35, rung=0),) * 5)) == 0
    # two segments left on a fast link: (5, 5) scores 8.6 - 1.45 against (4, 4)'s 5.7; with one
    # left, climbing gains exactly what the switch costs, and the tie stays put (float: 2.85 > 2.8499..)
    fast = (at_mbps(6, rung=4),) * 5
    assert MpcRule().choose(state(10.0, history=fast, chunks_left=2)) == 5


# --- reelflow --------------------------------------------------------------------------------------


def test_reelflow_starts_low_and_ramps_gradually() -> None:
    """Steady 6 Mbit/s and a buffer that grows by 2 s a segment: rungs climb at most 2 per step
    and reach the top once the buffer is past the 10 s reservoir."""
    rule = ReelflowRule()
    assert rule.choose(state(0.0)) == 0
    history: tuple[Download, ...] = (at_mbps(6, rung=0),)
    picks = []
    for step in range(8):
        rung = rule.choose(state(4.0 + 2 * step, history=history, chunks_left=40))
        picks.append(rung)
        history += (at_mbps(6, rung=rung),)
    assert all(b - a <= 2 for a, b in itertools.pairwise([0, *picks]))
    assert picks[-1] == 5


def test_reelflow_builds_the_reservoir_before_climbing() -> None:
    """At 2 Mbit/s with 4 s buffered, a 1850 kbit/s segment would leave the buffer flat; the rule
    fills the reservoir first, where robust MPC goes for the bitrate."""
    history = (at_mbps(2, rung=1),) * 5
    s = state(4.0, history=history, chunks_left=40)
    assert ReelflowRule().choose(s) < MpcRule().choose(s)


def test_reelflow_guard_refuses_a_segment_that_would_run_the_buffer_dry() -> None:
    """1 Mbit/s, 2 s buffered, coming from rung 2: a 750 kbit/s segment takes 3 s, more than
    the 2 s left even before the 0.8 guard factor, so only the lowest rung is allowed."""
    history = (at_mbps(1, rung=2),) * 5
    assert ReelflowRule().choose(state(2.0, history=history, chunks_left=40)) == 0


def test_reelflow_respects_device_caps_with_a_cellular_default() -> None:
    fast = (at_mbps(20, rung=5),) * 5
    assert ReelflowRule().choose(state(50.0, history=fast)) == 5
    cellular = state(50.0, history=fast, caps=DeviceCaps(cellular=True), heights=HEIGHTS)
    assert ReelflowRule().choose(cellular) == 3                                    # 720p
    assert ReelflowRule(cellular_max_height=None).choose(cellular) == 5
    explicit = state(50.0, history=fast, caps=DeviceCaps(cellular=True, max_height=1080), heights=HEIGHTS)
    assert ReelflowRule().choose(explicit) == 4
    assert ReelflowRule().choose(state(50.0, history=fast, caps=DeviceCaps(max_kbps=1000))) == 1


def test_reelflow_works_without_sizes_or_a_known_length() -> None:
    """What a live HTTP player knows: no upcoming sizes, no end of video."""
    history = (at_mbps(3, rung=3),) * 5
    rung = ReelflowRule().choose(state(30.0, history=history, upcoming_sizes=(), chunks_left=None))
    assert rung in (3, 4, 5)


# --- every rule --------------------------------------------------------------------------------------


def test_registry_makes_fresh_rules_by_name() -> None:
    assert set(RULES) == {"throughput", "bba", "bola", "mpc", "reelflow"}
    for name in RULES:
        rule = make_rule(name)
        assert isinstance(rule, AbrRule) and rule.name == name
        assert make_rule(name) is not rule
    with pytest.raises(ConfigError, match="unknown ABR rule 'pensieve'"):
        make_rule("pensieve")


downloads = st.builds(Download, rung=st.integers(0, 5), bytes=st.integers(1_000, 3_000_000),
                      seconds=st.floats(0.05, 30.0))


@settings(max_examples=60, deadline=None)
@given(buffer_s=st.floats(0.0, 60.0), history=st.lists(downloads, max_size=8),
       max_kbps=st.one_of(st.none(), st.floats(100.0, 5000.0)), with_sizes=st.booleans(),
       chunks_left=st.one_of(st.none(), st.integers(1, 48)))
def test_every_rule_returns_an_allowed_rung(buffer_s: float, history: list[Download], max_kbps: float | None,
                                            with_sizes: bool, chunks_left: int | None) -> None:
    sizes = tuple(tuple(int(k * 500) for k in LADDER) for _ in range(5)) if with_sizes else ()
    s = state(buffer_s, history=tuple(history), caps=DeviceCaps(max_kbps=max_kbps), upcoming_sizes=sizes,
              chunks_left=chunks_left, buffer_cap_s=60.0)
    top = allowed_top(s)
    for name in RULES:
        assert 0 <= make_rule(name).choose(s) <= top
