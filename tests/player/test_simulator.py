"""The trace-driven simulator on tiny hand-computed traces, against the reference logs, and its I/O."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from reelflow.errors import ConfigError, StageError
from reelflow.player.abr import AbrRule, AbrState, BbaRule, BolaRule
from reelflow.player.plots import bitrate_series, buffer_series, require_matplotlib, throughput_series
from reelflow.player.simulator import (
    ENVIVIO_KBPS,
    STANDARD,
    ChunkLog,
    Session,
    SimSetup,
    Trace,
    Video,
    load_trace,
    load_traces,
    load_video,
    markdown_table,
    simulate,
    simulate_all,
    simulate_command,
    summarize,
)

REPO = Path(__file__).resolve().parents[2]
TRACES_DIR = Path(os.environ.get("SHARED_TRACES_DIR", REPO.parent / "shared" / "traces"))

# 0.95 x 1 Mbit/s moves 950 000 bits a second: these sizes take exactly 1 s and 4 s of trace time.
ONE_SECOND = 118_750
FOUR_SECONDS = 475_000


class Scripted(AbrRule):
    """Plays a fixed rung per segment and records the states it was shown."""

    name = "scripted"

    def __init__(self, rungs: Sequence[int]) -> None:
        self.rungs = list(rungs)
        self.seen: list[AbrState] = []

    def _choose(self, state: AbrState, top: int) -> int:
        self.seen.append(state)
        return self.rungs[state.chunk_index]


def constant(mbps: float, name: str = "constant") -> Trace:
    return Trace(name, (0.0, 1000.0), (mbps, mbps))


def test_constant_link_by_hand() -> None:
    """1 Mbit/s, segments of 1 s (rung 0, 500 kbit/s) or 4 s (rung 1, 1000 kbit/s), rungs 0, 1, 1.

    chunk 0: 1.00 + 0.08 RTT = 1.08 s, all of it startup (counted as rebuffer, as the reference
             does); buffer 0 -> 4.00; reward 0.5 - 4.3 x 1.08 = -4.144
    chunk 1: 4.08 s, the buffer (4.00) runs dry 0.08 s early: stall 0.08; buffer 0 + 4 = 4.00;
             reward 1.0 - 4.3 x 0.08 - |1.0 - 0.5| = 0.156
    chunk 2: the same download and stall; reward 1.0 - 0.344 = 0.656
    QoE_lin per chunk leaves the startup chunk out: (0.156 + 0.656) / 2 = 0.406.
    Rebuffer ratio: 0.16 s stalled over 0.16 + 3 x 4 s = 0.01316.
    """
    video = Video((500.0, 1000.0), ((ONE_SECOND,) * 3, (FOUR_SECONDS,) * 3))
    rule = Scripted([9, 1, 1])                         # rung 9 is never asked for: chunk 0 is fixed
    session = simulate(constant(1.0), video, rule, SimSetup(chunks=3, first_rung=0))
    c0, c1, c2 = session.chunks
    assert [c.rung for c in session.chunks] == [0, 1, 1]
    assert [c.download_s for c in session.chunks] == pytest.approx([1.08, 4.08, 4.08])
    assert [c.rebuffer_s for c in session.chunks] == pytest.approx([1.08, 0.08, 0.08])
    assert [c.buffer_s for c in session.chunks] == pytest.approx([4.0, 4.0, 4.0])
    assert [c.start_s for c in session.chunks] == pytest.approx([0.0, 1.08, 5.16])
    assert [c.reward for c in session.chunks] == pytest.approx([-4.144, 0.156, 0.656])
    assert session.qoe_per_chunk == pytest.approx(0.406)
    assert session.startup_s == pytest.approx(1.08)
    assert session.stall_s == pytest.approx(0.16) and session.stalled
    assert session.rebuffer_ratio == pytest.approx(0.16 / 12.16)
    assert session.switches == 1
    assert session.avg_kbps == pytest.approx(2500 / 3)
    assert c1.throughput_bps == pytest.approx(FOUR_SECONDS * 8 / 4.08)
    # what the rule was shown for chunk 1: chunk 0's download and the buffer after it
    shown = rule.seen[0]
    assert (shown.chunk_index, shown.buffer_s, shown.last_rung, shown.chunks_left) == (1, 4.0, 0, 2)
    assert shown.history[0].seconds == pytest.approx(1.08)
    assert shown.upcoming_sizes == ((ONE_SECOND, FOUR_SECONDS), (ONE_SECOND, FOUR_SECONDS))
    assert c0.sleep_s == c2.sleep_s == 0.0


def test_buffer_cap_sleeps_in_half_seconds_while_the_trace_runs_on() -> None:
    """Cap 5 s; 1 s segments; the link is 1 Mbit/s up to trace time 4 s and 2 Mbit/s after.

    chunk 0: trace 0 -> 1, 1.08 s; buffer 4.00
    chunk 1: trace 1 -> 2, 1.08 s; buffer 2.92 + 4 = 6.92, over the cap by 1.92: sleep 2.0 s
             (trace 2 -> 4); buffer 4.92 (the round trip is no trace time, as in the reference)
    chunk 2: at 2 Mbit/s now: 0.5 + 0.08 = 0.58 s; buffer 4.34 + 4 = 8.34: sleep 3.5 s; 4.84
    """
    trace = Trace("step", (0.0, 4.0, 1000.0), (0.0, 1.0, 2.0))
    video = Video((500.0,), ((ONE_SECOND,) * 3,))
    rule = Scripted([0, 0, 0])
    session = simulate(trace, video, rule, SimSetup(chunks=3, first_rung=0, buffer_cap_s=5.0))
    assert [c.download_s for c in session.chunks] == pytest.approx([1.08, 1.08, 0.58])
    assert [c.sleep_s for c in session.chunks] == pytest.approx([0.0, 2.0, 3.5])
    assert [c.buffer_s for c in session.chunks] == pytest.approx([4.0, 4.92, 4.84])
    assert rule.seen[1].buffer_s == pytest.approx(4.92)
    assert session.end_s == pytest.approx(1.08 + 1.08 + 2.0 + 0.58 + 3.5)


def test_a_short_trace_loops_from_time_zero() -> None:
    """Samples at 0.5, 1.5, 2.5 s: 1 Mbit/s over (0.5, 1.5], 3 Mbit/s over (1.5, 2.5].

    chunk 0, 3.5 Mbit: 0.95 Mbit in the first second, 2.55 at 2.85 Mbit/s: 1 + 17/19 s
    chunk 1, 2.375 Mbit: 0.3 Mbit in the 2/19 s left of the lap; the next lap starts at time 0
    (not 0.5) with the second sample, so 1 Mbit/s holds for 1.5 s: 1.425 Mbit; the last 0.65 at
    2.85 Mbit/s: 13/57 s. Total 2/19 + 1.5 + 13/57 = 1.8333 s (1.5 s if the lap started at 0.5).
    """
    trace = Trace("short", (0.5, 1.5, 2.5), (9.0, 1.0, 3.0))
    video = Video((1000.0,), ((437_500, 296_875),))
    session = simulate(trace, video, Scripted([0, 0]), SimSetup(chunks=2, first_rung=0))
    assert [c.download_s for c in session.chunks] == pytest.approx([36 / 19 + 0.08, 1.5 + 1 / 3 + 0.08])


def test_first_rung_can_be_left_to_the_rule() -> None:
    video = Video((500.0, 1000.0), ((ONE_SECOND,) * 2, (FOUR_SECONDS,) * 2))
    rule = Scripted([1, 0])
    session = simulate(constant(1.0), video, rule, SimSetup(chunks=2, first_rung=None))
    assert [c.rung for c in session.chunks] == [1, 0]
    assert rule.seen[0].history == () and not rule.seen[0].playing
    assert session.chunks[0].reward == pytest.approx(1.0 - 4.3 * 4.08)    # no switch penalty on chunk 0


def test_simulator_refuses_what_it_cannot_run() -> None:
    video = Video((500.0,), ((ONE_SECOND,) * 2,))
    with pytest.raises(StageError, match="wants 3 segments"):
        simulate(constant(1.0), video, Scripted([0, 0, 0]), SimSetup(chunks=3, first_rung=0))
    with pytest.raises(StageError, match="chose rung 4"):
        simulate(constant(1.0), video, _Broken(), SimSetup(chunks=2, first_rung=0))
    with pytest.raises(StageError, match="no throughput"):
        Trace("dead", (0.0, 10.0), (5.0, 0.0))
    with pytest.raises(StageError, match="backwards"):
        Trace("odd", (0.0, 2.0, 1.0), (1.0, 1.0, 1.0))


class _Broken(AbrRule):
    name = "broken"

    def choose(self, state: AbrState) -> int:   # skips the clamp on purpose
        return 4

    def _choose(self, state: AbrState, top: int) -> int:
        return 4


def test_summary_pools_stalls_and_averages_the_rest() -> None:
    def session(trace: str, rebuffers: Sequence[float], rungs: Sequence[int]) -> Session:
        chunks = tuple(ChunkLog(index=i, rung=r, kbps=ENVIVIO_KBPS[r], bytes=1, start_s=0.0, download_s=1.0,
                                rebuffer_s=rb, sleep_s=0.0, buffer_s=4.0, reward=float(i))
                       for i, (rb, r) in enumerate(zip(rebuffers, rungs, strict=True)))
        return Session(rule="x", trace=trace, chunk_s=4.0, chunks=chunks)

    a = session("a", [1.0, 0.0, 0.0, 0.0], [1, 1, 1, 1])       # startup only: not a stall
    b = session("b", [1.0, 0.0, 2.0, 0.0], [1, 2, 2, 1])
    s = summarize("x", [a, b])
    assert s.sessions == 2
    assert s.qoe_per_chunk == pytest.approx(2.0)                 # rewards 1, 2, 3 in both
    assert s.no_stall_share == 0.5
    assert s.rebuffer_ratio == pytest.approx(2.0 / (2.0 + 32.0))
    assert s.switches_per_chunk == pytest.approx((0 + 2 / 4) / 2)
    assert s.startup_s == 1.0
    assert "| x | 2.000 |" in markdown_table([s])


# --- the reference simulator and the published figures -------------------------------------------


@pytest.fixture(scope="module")
def traces_dir() -> Path:
    if not (TRACES_DIR / "hsdpa").is_dir():
        pytest.skip(f"{TRACES_DIR} is not here (../shared/traces is beside the repo in CI)")
    return TRACES_DIR


@pytest.fixture(scope="module")
def envivio(traces_dir: Path) -> Video:
    return load_video(traces_dir / "envivio_sizes")


def test_bba_reproduces_the_reference_log_of_norway_bus_1(traces_dir: Path, envivio: Video) -> None:
    """Pensieve's fixed_env.py + bb.py on norway_bus_1, as logged in github.com/kalgod/abr
    (baselines/log_sim_bb_norway_bus_1): per chunk the bitrate, the buffer after it, and chunk 0's
    rebuffer of 0.887 s. Equal to the last digits: the same arithmetic, in seconds, not ms."""
    session = simulate(load_trace(traces_dir / "hsdpa" / "norway_bus_1"), envivio, BbaRule())
    reference = [(750, 4.0), (300, 7.620216376998051), (750, 10.853236070566433), (1200, 13.544847689592281),
                 (2850, 14.319626918701006), (2850, 15.872150376985378), (4300, 15.485843540723323),
                 (4300, 14.450529311881008)]
    assert [(c.kbps, c.buffer_s) for c in session.chunks[:8]] == [(k, pytest.approx(b)) for k, b in reference]
    assert session.chunks[0].rebuffer_s == pytest.approx(0.8872836624630916)
    assert session.chunks[-1].buffer_s == pytest.approx(14.858153983845249)
    assert session.chunks[-1].kbps == 4300


def test_standard_setup_reproduces_published_bola_and_bba(traces_dir: Path, envivio: Video) -> None:
    """../shared/traces/README.md: BOLA 0.79 and BBA 0.63 QoE_lin per chunk on hsdpa/."""
    traces = load_traces(traces_dir / "hsdpa")
    assert len(traces) == 142
    bola = summarize("bola", simulate_all(traces, envivio, BolaRule(), STANDARD))
    bba = summarize("bba", simulate_all(traces, envivio, BbaRule(), STANDARD))
    assert bola.qoe_per_chunk == pytest.approx(0.79, abs=0.03)
    assert bba.qoe_per_chunk == pytest.approx(0.63, abs=0.03)


def test_envivio_sizes_load_with_the_nominal_ladder(envivio: Video) -> None:
    assert envivio.ladder_kbps == ENVIVIO_KBPS
    assert envivio.chunks == 49
    assert envivio.sizes[0][:3] == (181801, 155580, 139857)


# --- files and the command -----------------------------------------------------------------------


def _write_inputs(tmp_path: Path) -> tuple[Path, Path]:
    traces = tmp_path / "traces"
    traces.mkdir()
    (traces / "flat").write_text("0.0 2.0\n10.0 2.0\n\n20.0 2.0\n")
    (traces / "step").write_text("0 5\n5 0.5\n30 3\n")
    (traces / ".hidden").write_text("not a trace")
    sizes = tmp_path / "sizes"
    sizes.mkdir()
    for rung, kbps in enumerate((400, 1000, 2500)):
        (sizes / f"video_size_{rung}").write_text(f"{kbps * 500}\n" * 50)
    return traces, sizes


def test_loaders_read_the_two_column_format(tmp_path: Path) -> None:
    traces, sizes = _write_inputs(tmp_path)
    loaded = load_traces(traces)
    assert [t.name for t in loaded] == ["flat", "step"]
    assert loaded[0].times_s == (0.0, 10.0, 20.0) and loaded[1].mbps == (5.0, 0.5, 3.0)
    video = load_video(sizes)
    assert video.ladder_kbps == (400.0, 1000.0, 2500.0)          # from the mean sizes: not envivio
    assert video.chunks == 50
    (traces / "bad").write_text("0 1\n1 fast\n")
    with pytest.raises(StageError, match=r"bad:2"):
        load_traces(traces)
    with pytest.raises(ConfigError, match="does not exist"):
        load_traces(tmp_path / "nowhere")
    (sizes / "video_size_2").unlink()
    (sizes / "video_size_3").write_text("1\n")
    with pytest.raises(ConfigError, match="video_size_0"):
        load_video(sizes)


def test_simulate_command_prints_json_per_rule_and_session(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    traces, sizes = _write_inputs(tmp_path)
    assert simulate_command(traces, sizes, ["bba,mpc", "reelflow"], as_json=True, plot_dir=None) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["rule"] for r in out["rules"]] == ["bba", "mpc", "reelflow"]
    assert all(r["sessions"] == 2 for r in out["rules"])
    assert len(out["sessions"]) == 6
    assert out["setup"]["chunks"] == 48 and out["setup"]["buffer_cap_s"] == 60.0
    assert out["ladder_kbps"] == [400.0, 1000.0, 2500.0]


def test_simulate_command_prints_a_table_and_refuses_unknown_rules(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    traces, sizes = _write_inputs(tmp_path)
    assert simulate_command(traces, sizes, ["throughput"], as_json=False, plot_dir=None) == 0
    out = capsys.readouterr().out
    assert "| rule | QoE_lin/chunk |" in out and "| throughput |" in out
    with pytest.raises(ConfigError, match="unknown ABR rule 'best'"):
        simulate_command(traces, sizes, ["bba,best"], as_json=False, plot_dir=None)


def test_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    real = importlib.import_module

    def no_matplotlib(name: str, package: str | None = None) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(importlib, "import_module", no_matplotlib)
    with pytest.raises(ConfigError, match="pip install matplotlib"):
        require_matplotlib()
    traces, sizes = _write_inputs(tmp_path)
    with pytest.raises(ConfigError, match="matplotlib"):
        simulate_command(traces, sizes, ["bba"], as_json=False, plot_dir=tmp_path / "plots")
    assert not (tmp_path / "plots").exists()


def test_plot_series_follow_the_session() -> None:
    """The data behind the PNG panels, from the hand-computed session of the first test."""
    video = Video((500.0, 1000.0), ((ONE_SECOND,) * 3, (FOUR_SECONDS,) * 3))
    session = simulate(constant(1.0), video, Scripted([0, 1, 1]), SimSetup(chunks=3, first_rung=0))
    rate = bitrate_series(session)
    assert rate.y == (0.5, 0.5, 1.0, 1.0, 1.0, 1.0)
    assert rate.x == pytest.approx((0.0, 1.08, 1.08, 5.16, 5.16, 9.24))
    buf = buffer_series(session)
    # empty until chunk 0 lands at 1.08 s (4 s); dry again at 5.08 s, refilled at 5.16 s
    assert list(zip(buf.x, buf.y, strict=True))[:6] == [
        (0.0, 0.0), (0.0, 0.0), (pytest.approx(1.08), 0.0), (pytest.approx(1.08), 4.0),
        (pytest.approx(1.08), 4.0), (pytest.approx(5.08), 0.0)]
    looped = throughput_series(Trace("short", (0.5, 1.5, 2.5), (9.0, 1.0, 3.0)), until_s=3.0)
    assert looped.x == (0.0, 1.0, 1.0, 2.0, 2.0, 3.5)           # the second lap's first sample spans 1.5 s
    assert looped.y == (1.0, 1.0, 3.0, 3.0, 1.0, 1.0)


def test_write_plots_draws_three_panels_per_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """matplotlib is optional and may be absent: a stand-in records what would be drawn."""
    import importlib
    from unittest import mock

    from reelflow.player.plots import write_plots

    fig, panels = mock.MagicMock(), (mock.MagicMock(), mock.MagicMock(), mock.MagicMock())
    pyplot = mock.MagicMock()
    pyplot.subplots.return_value = (fig, panels)
    fake = {"matplotlib": mock.MagicMock(), "matplotlib.pyplot": pyplot}
    real = importlib.import_module
    monkeypatch.setattr(importlib, "import_module", lambda name, package=None: fake.get(name) or real(name, package))

    video = Video((500.0, 1000.0), ((ONE_SECOND,) * 3, (FOUR_SECONDS,) * 3))
    traces = [constant(1.0, "a/b c"), constant(2.0, "d")]
    results = {name: [simulate(t, video, Scripted([0, 1, 1]), SimSetup(chunks=3, first_rung=0)) for t in traces]
               for name in ("one", "two")}
    written = write_plots(tmp_path / "plots", traces, results)
    assert written == [tmp_path / "plots" / "a_b_c.png", tmp_path / "plots" / "d.png"]
    assert [c.args[0] for c in fig.savefig.call_args_list] == written
    assert panels[1].plot.call_count == 4                      # two rules on each of two traces
    fake["matplotlib"].use.assert_called_with("Agg")
