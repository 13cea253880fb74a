"""A list-scheduling simulator for an ingest's distributed tasks: the same work on N workers.

Pure: it takes task records measured on a Dask cluster (bench/feature.py) and returns times. The
stage structure is read from the records themselves: a task was submitted by the flow at some
moment, and it can only have needed what had finished by then. So each task waits here for every
task that finished before its submission in the measured run (a superset of its real inputs: the
estimate errs towards less parallelism), plus the flow's own time between the last of those
finishing and the submission (``delay_s``: the flow choosing the ladder, planning the next rung).

A task's work is the CPU-seconds it used (its worker and that worker's ffmpeg children), its
width the cores it kept busy when it ran (CPU over wall). Two machine models:

- ``dedicated``: every worker has ``cores_per_worker`` cores of its own (a task runs at
  min(width, cores) cores): the model for N machines or N pinned cores;
- ``shared``: all workers share ``cores`` cores (each running task gets an equal share, at most
  its width, the rest going to the others): this box, against which the model is checked.

Workers run one task at a time (one thread each, as bench/feature.py starts them); a free worker
takes the task that has been ready longest.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

EPSILON_S = 0.05   # a task that ended this close after a submission still counts as before it (clocks, logs)


@dataclass(frozen=True)
class TaskRecord:
    """One task as measured: when the flow submitted it, when it ran, and its CPU time."""

    key: str
    name: str
    submitted: float
    start: float
    stop: float
    cpu_s: float
    worker: str = ""


@dataclass(frozen=True)
class Job:
    """A task for the simulator: ``work_s`` CPU-seconds, at most ``width`` cores, after the first ``after``
    jobs in measured finishing order and ``delay_s`` of the flow's time."""

    key: str
    name: str
    work_s: float
    width: float
    after: int
    delay_s: float


def jobs_from_records(records: Sequence[TaskRecord], origin: float) -> list[Job]:
    """The jobs, in measured finishing order; ``origin``: the first submission's gate (the flow's start
    of the distributed part), from which a job that waits on nothing counts its delay."""
    ordered = sorted(records, key=lambda r: (r.stop, r.start))
    stops = [r.stop for r in ordered]
    jobs = []
    for r in ordered:
        after = _count_at_or_before(stops, r.submitted + EPSILON_S)
        gate = stops[after - 1] if after else origin
        wall = max(r.stop - r.start, 1e-6)
        jobs.append(Job(r.key, r.name, max(r.cpu_s, 0.0), max(1.0, r.cpu_s / wall), after,
                        max(0.0, r.submitted - gate)))
    return jobs


def _count_at_or_before(sorted_values: Sequence[float], limit: float) -> int:
    lo, hi = 0, len(sorted_values)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_values[mid] <= limit:
            lo = mid + 1
        else:
            hi = mid
    return lo


@dataclass(frozen=True)
class Schedule:
    makespan_s: float
    busy_s: tuple[float, ...]     # per worker: time it had a task
    finish: dict[str, float]      # per job key


Machine = Literal["dedicated", "shared"]


def simulate(jobs: Sequence[Job], workers: int, *, machine: Machine = "dedicated", cores: float = 1.0) -> Schedule:
    """List-schedule ``jobs`` (in finishing order, as jobs_from_records gives them) on ``workers``.

    ``cores``: per worker when ``dedicated``, in all when ``shared``. Work is fluid: a running job
    progresses at its core share, re-shared at every start and finish.
    """
    if workers < 1:
        raise ValueError("workers must be at least 1")
    n = len(jobs)
    finish = [math.inf] * n
    prefix_max = [0.0] * (n + 1)      # latest finish among the first k jobs, once all k are done
    done_prefix = 0                   # the first done_prefix jobs are all finished
    finished = [False] * n
    waiting_by_after: dict[int, list[int]] = {}
    for i, job in enumerate(jobs):
        waiting_by_after.setdefault(job.after, []).append(i)
    ready: list[tuple[float, int]] = []          # (ready time, index): a heap
    arrivals: list[tuple[float, int]] = []       # jobs whose gate is done, released at time + delay
    running: dict[int, tuple[int, float]] = {}   # job -> (worker, remaining work)
    free = list(range(workers))
    busy = [0.0] * workers
    started_at: dict[int, float] = {}
    now = 0.0

    gates_open = [0]                  # gates 0..gates_open-1 have released their jobs

    def release_up_to(k: int) -> None:
        for after in range(gates_open[0], k + 1):
            for i in waiting_by_after.pop(after, []):
                heapq.heappush(arrivals, (prefix_max[after] + jobs[i].delay_s, i))
        gates_open[0] = k + 1

    release_up_to(0)
    while done_prefix < n:
        while arrivals and arrivals[0][0] <= now + 1e-12:
            t, i = heapq.heappop(arrivals)
            heapq.heappush(ready, (t, i))
        while free and ready:
            _, i = heapq.heappop(ready)
            w = free.pop(0)
            running[i] = (w, jobs[i].work_s)
            started_at[i] = now
        rates = _rates(jobs, running, machine, cores)
        next_done = min(((rem / rates[i] if rates[i] > 0 else math.inf) for i, (_, rem) in running.items()),
                        default=math.inf)
        next_arrival = arrivals[0][0] - now if arrivals else math.inf
        step = min(next_done, next_arrival)
        if step == math.inf:
            if not running and not arrivals and not ready:
                missing = [jobs[i].key for i in range(n) if not finished[i]]
                raise ValueError(f"jobs that can never start: {missing[:5]}")
            step = 0.0
        now += step
        for i in list(running):
            w, rem = running[i]
            rem -= rates[i] * step
            if rem <= 1e-9:
                del running[i]
                finished[i] = True
                finish[i] = now
                busy[w] += now - started_at[i]
                free.append(w)
                free.sort()
            else:
                running[i] = (w, rem)
        grew = done_prefix
        while done_prefix < n and finished[done_prefix]:
            prefix_max[done_prefix + 1] = max(prefix_max[done_prefix], finish[done_prefix])
            done_prefix += 1
        if done_prefix != grew:
            release_up_to(done_prefix)
    return Schedule(now, tuple(busy), {jobs[i].key: finish[i] for i in range(n)})


def _rates(jobs: Sequence[Job], running: dict[int, tuple[int, float]], machine: Machine,
           cores: float) -> dict[int, float]:
    if machine == "dedicated":
        return {i: min(jobs[i].width, cores) for i in running}
    # shared: water-filling of ``cores`` among the running jobs, each capped at its width
    rates: dict[int, float] = {}
    left, todo = cores, sorted(running, key=lambda i: jobs[i].width)
    while todo:
        share = left / len(todo)
        i = todo[0]
        if jobs[i].width <= share:
            rates[i] = jobs[i].width
            left -= jobs[i].width
            todo.pop(0)
        else:
            for j in todo:
                rates[j] = share
            break
    return rates


def scale_jobs(jobs: Sequence[Job], factor: float, replicated: set[str]) -> list[Job]:
    """The jobs of a title ``factor`` times as long (factor >= 1).

    Jobs named in ``replicated`` are per piece of the title (trial groups, rung pieces): there are
    ``factor`` times as many, each as long as now. The others are per title (a whole rung's VMAF, say):
    as many as now, each ``factor`` times as long. The flow's delays grow by ``factor`` too (its own
    work between tasks is per title). A job's gate stays the same stage: a copy of a job waits for
    every copy of the jobs its original waited for.
    """
    if factor < 1:
        raise ValueError("factor must be at least 1")
    copies = max(1, round(factor))
    out: list[tuple[int, int, Job]] = []          # (original index, copy, job)
    for i, job in enumerate(jobs):
        if job.name in replicated:
            out += [(i, c, replace(job, key=f"{job.key}#{c}", delay_s=job.delay_s * factor)) for c in range(copies)]
        else:
            out.append((i, 0, replace(job, work_s=job.work_s * factor, delay_s=job.delay_s * factor)))
    # new finishing order: by original order, copies together; ``after`` counts the copies of the first k
    count_before = [0] * (len(jobs) + 1)
    for i, job in enumerate(jobs):
        count_before[i + 1] = count_before[i] + (copies if job.name in replicated else 1)
    return [replace(job, after=count_before[job.after]) for _, _, job in out]


@dataclass(frozen=True)
class RungCost:
    """One rung of a measured ladder, per content minute: its pieces' encode, its join, its VMAF (CPU-s)."""

    encode_s: float
    vmaf_s: float
    join_s: float = 0.0


def title_jobs(minutes: float, trials_s_per_min: float, rungs: Sequence[RungCost], *, group_s: float = 20.0,
               task_s: float = 60.0, split_s_per_min: float = 0.0, chunk_s: float = 120.0) -> list[Job]:
    """The distributed part's task graph as flows/ingest.py submits it, for a title of ``minutes``.

    QC and shot detection in chunks of ``chunk_s`` seconds (``split_s_per_min``: their CPU per content
    minute, 0 to leave them out); trial groups of ``group_s`` seconds, all at once; then rung after rung
    (each carries the one below's miss): its pieces in groups of ``task_s`` seconds, then its VMAF in
    spans as long, each span scored from the pieces that cover it; last, every rung's join, side by
    side. A phase waits for every job of the phases before it.
    """
    seconds = minutes * 60
    jobs: list[Job] = []

    def phase(name: str, count: int, work_s: float, gate: int | None = None) -> None:
        before = len(jobs) if gate is None else gate
        jobs.extend(Job(f"{name}-{len(jobs) + i}", name, work_s, 1.0, before, 0.0) for i in range(count))

    if split_s_per_min:
        chunks = max(1, math.ceil(seconds / chunk_s))
        phase("qc+shots", chunks, split_s_per_min * minutes / chunks)
    trial_groups = max(1, math.ceil(seconds / group_s))
    phase("trials", trial_groups, trials_s_per_min * minutes / trial_groups)
    spans = max(1, math.ceil(seconds / task_s))
    for i, rung in enumerate(rungs):
        phase(f"rung{i}-pieces", spans, rung.encode_s * minutes / spans)
        phase(f"rung{i}-vmaf", spans, rung.vmaf_s * minutes / spans)
    gate = len(jobs)
    for i, rung in enumerate(rungs):
        if rung.join_s:
            phase(f"rung{i}-join", 1, rung.join_s * minutes, gate)
    return jobs
