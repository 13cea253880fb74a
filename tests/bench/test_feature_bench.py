"""The pure parts of bench/feature.py: the seeded shot plan of the feature-length titles and the
list-scheduling simulator that extrapolates the measured task records."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from feature_schedule import Job, RungCost, TaskRecord, jobs_from_records, scale_jobs, simulate, title_jobs
from feature_titles import CLIPS, cut_frames, plan_shots, title_shots


def test_shot_plan_is_seeded_exact_and_varied() -> None:
    plan = plan_shots(24 * 300, 24, seed=18)
    assert plan == plan_shots(24 * 300, 24, seed=18) != plan_shots(24 * 300, 24, seed=19)
    assert sum(s.frames for s in plan) == 24 * 300
    assert all(48 <= s.frames <= 240 for s in plan[:-1]) and plan[-1].frames >= 1
    assert all(a.clip != b.clip for a, b in itertools.pairwise(plan))
    usable = dict(CLIPS)
    assert all(s.start_s + s.frames / 24 <= usable[s.clip] + 1e-3 for s in plan)
    assert len({s.clip for s in plan}) >= 8          # most of the clips, so every kind of picture


def test_shorter_titles_are_the_start_of_longer_ones() -> None:
    one, five = title_shots(1, 24, 18), title_shots(5, 24, 18)
    assert sum(s.frames for s in one) == 1440 and sum(s.frames for s in five) == 7200
    assert one[:-1] == five[: len(one) - 1] and one[-1].frames <= five[len(one) - 1].frames
    assert cut_frames(one) == [c for c in cut_frames(five) if c < 1440][: len(one) - 1]


def _job(key: str, work: float, after: int = 0, width: float = 1.0, delay: float = 0.0, name: str = "t") -> Job:
    return Job(key, name, work, width, after, delay)


def test_a_chain_takes_its_sum_and_independent_jobs_spread() -> None:
    chain = [_job("a", 3), _job("b", 4, after=1), _job("c", 5, after=2, delay=1)]
    assert simulate(chain, 4).makespan_s == pytest.approx(13)
    free = [_job(str(i), 10) for i in range(4)]
    assert simulate(free, 1).makespan_s == pytest.approx(40)
    assert simulate(free, 2).makespan_s == pytest.approx(20)
    schedule = simulate(free, 8)
    assert schedule.makespan_s == pytest.approx(10) and sum(b > 0 for b in schedule.busy_s) == 4


def test_shared_cores_are_split_and_capped_by_width() -> None:
    wide = [_job("a", 10, width=2), _job("b", 10, width=2)]
    assert simulate(wide, 1, machine="shared", cores=2).makespan_s == pytest.approx(10)   # 5 s each, in turn
    assert simulate(wide, 2, machine="shared", cores=2).makespan_s == pytest.approx(10)   # 1 core each
    narrow = [_job("a", 10), _job("b", 10)]
    assert simulate(narrow, 4, machine="shared", cores=2).makespan_s == pytest.approx(10)
    assert simulate(narrow, 4, machine="shared", cores=1).makespan_s == pytest.approx(20)


def test_records_give_gates_delays_and_widths() -> None:
    records = [TaskRecord("t1", "trial", 0.0, 0.0, 10.0, 10.0), TaskRecord("t2", "trial", 0.0, 0.0, 12.0, 12.0),
               TaskRecord("r1", "rung", 14.0, 14.0, 20.0, 12.0), TaskRecord("v1", "vmaf", 14.0, 20.0, 30.0, 10.0)]
    jobs = jobs_from_records(records, origin=0.0)
    by = {j.key: j for j in jobs}
    assert by["t1"].after == by["t2"].after == 0
    assert by["r1"].after == by["v1"].after == 2 and by["r1"].delay_s == pytest.approx(2.0)
    assert by["r1"].width == pytest.approx(2.0) and by["t1"].width == pytest.approx(1.0)
    # on two workers, one core each: trials side by side, then rung and VMAF side by side
    assert simulate(jobs, 2).makespan_s == pytest.approx(12 + 2 + 12)


def test_a_longer_title_has_more_pieces_and_longer_whole_title_jobs() -> None:
    jobs = [_job("t", 10, name="trial"), _job("v", 6, after=1, name="vmaf")]
    long = scale_jobs(jobs, 3, replicated={"trial"})
    assert [j.name for j in long] == ["trial"] * 3 + ["vmaf"]
    assert long[-1].work_s == pytest.approx(18) and long[-1].after == 3
    assert simulate(long, 3).makespan_s == pytest.approx(10 + 18)
    assert simulate(long, 1).makespan_s == pytest.approx(30 + 18)


def test_a_title_graph_fans_out_inside_each_rung_and_joins_at_the_end() -> None:
    rungs = [RungCost(encode_s=60, vmaf_s=120, join_s=1)] * 3
    jobs = title_jobs(10, 300, rungs, group_s=20, task_s=60, split_s_per_min=24, chunk_s=120)
    assert len(jobs) == 5 + 30 + 3 * (10 + 10) + 3
    assert sum(j.work_s for j in jobs) == pytest.approx(10 * (24 + 300 + 3 * 181))
    assert simulate(jobs, 1).makespan_s == pytest.approx(10 * (24 + 300 + 3 * 181))
    # ten workers: QC+shots chunks and each phase in one wave (the trials in three), the three joins side by side
    assert simulate(jobs, 10).makespan_s == pytest.approx(48 + 300 + 3 * (60 + 120) + 10)
