"""Feature-length ingests (issue 18): one process against a Dask LocalCluster, and what N workers would do.

    .venv/bin/python bench/feature.py run --minutes 1 --config cheap --modes local,dask1,dask2,dask4 \\
        --out /tmp/feature.jsonl [--titles DIR] [--repeats 1]
    .venv/bin/python bench/feature.py report /tmp/feature.jsonl

``run`` builds the title if it is not cached (bench/feature_titles.py: 1080p24, multi-shot, from the
real clips) and ingests it with `reelflow ingest` in a subprocess (clear package, a fresh work
folder, Prefect's task cache refreshed so nothing is reused between runs), either on its own thread
pool (``local``) or on a LocalCluster of N single-thread worker processes started here (``daskN``,
``--dask ADDRESS``). One orchestration service (flows/server.py) is started in a REELFLOW_HOME of the
benchmark's own before the runs, so no run pays for starting it. Per run, one JSON line:

- wall time, and CPU: the ingest process with every child it reaped (wait4), plus the Dask
  workers' processes with theirs (/proc, before and after); per content minute. The Prefect
  server's CPU is recorded apart (``server_cpu_s``);
- peak RSS, sampled every 0.3 s: the sum over the ingest's process tree and the workers' trees,
  and the largest single process;
- the Prefect task runs (name, start, end) from the API; on a cluster also every Dask task: when the
  flow submitted it (the scheduler's transition log), when and where it ran (the task stream), and
  its CPU (its worker's CPU between start and stop: a worker runs one task at a time); each
  worker's busy share (its tasks' time over the run's wall time);
- the load average before and after (the machine is shared).

``report`` prints the tables of docs/benchmarks.md from those lines, and runs the scheduling
simulator (bench/feature_schedule.py) on the cluster runs: first against the runs themselves (the
same tasks on this machine's 2 shared cores, simulated against measured wall), then on N dedicated
one-core workers (N = 1..16), then stretched to a 2-hour title.

Configurations (``--config``): ``default`` is reelflow's defaults; ``cheap`` keeps the stage
structure (per-shot ladder, trials, feedback, every-frame VMAF of each rung) with faster presets and
fewer trial heights: encode and trials.final_preset ``veryfast``, trials.preset ``ultrafast``,
trials.heights 1080/720/432/270.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from feature_schedule import Job, RungCost, TaskRecord, jobs_from_records, scale_jobs, simulate, title_jobs
from feature_titles import build_title, default_folder

CONFIGS = {
    "default": "",
    "cheap": ('[encode]\npreset = "veryfast"\n[trials]\npreset = "ultrafast"\nfinal_preset = "veryfast"\n'
              "heights = [1080, 720, 432, 270]\n"),
}
SAMPLE_S = 0.3
FILM_MINUTES = 120.0
WORKER_COUNTS = (1, 2, 4, 8, 16)


# --- sampling the process trees -----------------------------------------------------------------

def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def tree_cpu_s(pid: int) -> float:
    """CPU of a process, the children it reaped, and its live descendants."""
    total = 0.0
    for i, proc in enumerate(_tree(pid)):
        with contextlib.suppress(psutil.NoSuchProcess):
            t = proc.cpu_times()
            total += t.user + t.system + ((t.children_user + t.children_system) if i == 0 else 0.0)
    return total


class Sampler:
    """Every SAMPLE_S: RSS over the trees of ``roots()`` (sum and largest process) and each worker's CPU."""

    def __init__(self, roots: Callable[[], list[int]], workers: dict[str, int]) -> None:
        self.roots, self.workers = roots, workers
        self.peak_sum = self.peak_one = 0
        self.cpu: dict[str, list[tuple[float, float]]] = {w: [] for w in workers}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        now = time.time()
        for address, pid in self.workers.items():
            self.cpu[address].append((now, tree_cpu_s(pid)))
        seen: dict[int, int] = {}
        for root in self.roots():
            for proc in _tree(root):
                with contextlib.suppress(psutil.NoSuchProcess):
                    seen[proc.pid] = proc.memory_info().rss
        if seen:
            self.peak_sum = max(self.peak_sum, sum(seen.values()))
            self.peak_one = max(self.peak_one, max(seen.values()))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()


def _at(samples: list[tuple[float, float]], t: float) -> float:
    """A worker's cumulative CPU at ``t``, linear between samples."""
    if not samples:
        return 0.0
    if t <= samples[0][0]:
        return samples[0][1]
    for (t0, c0), (t1, c1) in itertools.pairwise(samples):
        if t0 <= t <= t1:
            return c0 + (c1 - c0) * (t - t0) / max(t1 - t0, 1e-9)
    return samples[-1][1]


# --- one run ---------------------------------------------------------------------------------------

def _env(home: Path, config: Path, work: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(REELFLOW_HOME=str(home), REELFLOW_CONFIG=str(config), REELFLOW_STORAGE__WORK_DIR=str(work),
               PREFECT_TASKS_REFRESH_CACHE="true", PYTHONPATH=os.environ.get("PYTHONPATH", "src"))
    return env


def _server(home: Path) -> dict[str, Any]:
    state: dict[str, Any] = json.loads((home / "prefect" / "server.json").read_text())
    return state


def prefect_task_runs(api: str, since: float) -> list[dict[str, Any]]:
    """The task runs of the latest flow run started after ``since``: name, start, end (epoch s)."""
    import datetime as dt

    flows = httpx.post(f"{api}/flow_runs/filter", json={"sort": "START_TIME_DESC", "limit": 1}, timeout=60).json()
    if not flows:
        return []
    runs: list[dict[str, Any]] = []
    while True:
        page = httpx.post(f"{api}/task_runs/filter", json={
            "flow_runs": {"id": {"any_": [flows[0]["id"]]}}, "limit": 200, "offset": len(runs)}, timeout=60).json()
        runs += page
        if len(page) < 200:
            break

    def epoch(value: str | None) -> float | None:
        return dt.datetime.fromisoformat(value).timestamp() if value else None

    return sorted(({"name": r["name"], "start": epoch(r["start_time"]), "end": epoch(r["end_time"]),
                    "state": r["state_type"]} for r in runs), key=lambda r: r["start"] or math.inf)


@contextlib.contextmanager
def cluster(workers: int) -> Iterator[Any]:
    import dask
    import distributed
    from distributed.diagnostics.task_stream import TaskStreamPlugin

    with dask.config.set({"distributed.admin.low-level-log-length": 1_000_000}), \
            distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                     dashboard_address=None, silence_logs=40) as local, \
            distributed.Client(local) as client:
        # The scheduler records the task stream only once its plugin is there; without a dashboard it
        # is added at the first get_task_stream, after the run, which then finds nothing.
        local.scheduler.add_plugin(TaskStreamPlugin(local.scheduler, maxlen=1_000_000))
        yield local, client


def dask_tasks(local: Any, client: Any, since: float, pids: dict[str, int],
               cpu: dict[str, list[tuple[float, float]]]) -> list[dict[str, Any]]:
    """Every task of the run: name, worker, submitted, start, stop, CPU (its worker's, between start and stop)."""
    submitted: dict[str, float] = {}
    for entry in list(local.scheduler.transition_log):
        if entry.timestamp >= since and entry.start == "released":
            submitted.setdefault(str(entry.key), entry.timestamp)
    out = []
    for t in client.get_task_stream(start=since):
        compute = [s for s in t["startstops"] if s["action"] == "compute"]
        if not compute:
            continue
        start, stop = compute[0]["start"], compute[-1]["stop"]
        key = str(t["key"])
        worker = t["worker"]
        out.append({"key": key, "name": key.rsplit("-", 1)[0], "worker": worker,
                    "submitted": submitted.get(key, start), "start": start, "stop": stop,
                    "cpu_s": _at(cpu.get(worker, []), stop) - _at(cpu.get(worker, []), start)})
    return sorted(out, key=lambda r: r["start"])


def run_one(title: Path, minutes: float, config_name: str, workers: int, home: Path, scratch: Path,
            tag: str) -> dict[str, Any]:
    """One ingest of ``title``: ``workers`` 0 on its own thread pool, else on a LocalCluster of that many."""
    config = scratch / f"{config_name}.toml"
    config.write_text(CONFIGS[config_name])
    run_dir = scratch / tag
    env = _env(home, config, run_dir / "work")
    argv = [sys.executable, "-m", "reelflow.cli", "ingest", str(title), "--title-id", tag, "--storage",
            str(run_dir / "out"), "--no-drm", "--json"]
    server = _server(home)
    server_cpu0 = tree_cpu_s(server["pid"])
    with contextlib.ExitStack() as stack:
        local = client = None
        pids: dict[str, int] = {}
        if workers:
            local, client = stack.enter_context(cluster(workers))
            argv += ["--dask", local.scheduler_address]
            pids = client.run(os.getpid)
        worker_cpu0 = {w: tree_cpu_s(p) for w, p in pids.items()}
        load0 = os.getloadavg()
        since = time.time()
        started = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        sampler = Sampler(lambda: [proc.pid, *pids.values()], pids)
        out_chunks: list[bytes] = []
        err_chunks: list[bytes] = []
        readers = [threading.Thread(target=lambda s, b: b.append(s.read()), args=(stream, buf), daemon=True)
                   for stream, buf in ((proc.stdout, out_chunks), (proc.stderr, err_chunks))]
        for r in readers:
            r.start()
        with sampler:
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        for r in readers:
            r.join()
        load1 = os.getloadavg()
        ingest_cpu = usage.ru_utime + usage.ru_stime
        worker_cpu = sum(tree_cpu_s(p) - worker_cpu0[w] for w, p in pids.items())
        tasks = dask_tasks(local, client, since, pids, sampler.cpu) if workers else []
    record: dict[str, Any] = {}
    if proc.returncode == 0:
        with contextlib.suppress(json.JSONDecodeError):
            record = json.loads(out_chunks[0])
    result: dict[str, Any] = {
        "tag": tag, "title": title.name, "minutes": minutes, "config": config_name,
        "mode": f"dask{workers}" if workers else "local", "workers": workers, "exit": proc.returncode,
        "error": err_chunks[0].decode(errors="replace")[-2000:] if proc.returncode else None,
        "wall_s": wall, "ingest_cpu_s": ingest_cpu, "worker_cpu_s": worker_cpu,
        "cpu_s": ingest_cpu + worker_cpu, "cpu_s_per_content_min": (ingest_cpu + worker_cpu) / minutes,
        "server_cpu_s": tree_cpu_s(server["pid"]) - server_cpu0,
        "peak_rss_sum_mb": sampler.peak_sum / 2**20, "peak_rss_one_mb": sampler.peak_one / 2**20,
        "load_before": load0, "load_after": load1, "started": since,
        "shots": (record.get("shots") or {}).get("count"),
        "rungs": [r["name"] for r in record.get("renditions", []) if r.get("kind") == "video"],
        "prefect_tasks": prefect_task_runs(server["url"], since), "dask_tasks": tasks,
    }
    if tasks:
        busy = Counter[str]()
        for t in tasks:
            busy[t["worker"]] += t["stop"] - t["start"]
        result["busy_share"] = {w: busy[w] / wall for w in pids}
    return result


def command_run(args: argparse.Namespace) -> None:
    scratch = args.scratch
    scratch.mkdir(parents=True, exist_ok=True)
    home = scratch / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(REELFLOW_HOME=str(home))
    subprocess.run([sys.executable, "-m", "reelflow.cli", "orchestrator", "--start"], env=env, check=True,
                   capture_output=True)
    try:
        for minutes in (float(m) for m in args.minutes.split(",")):
            title = build_title(args.titles, minutes)
            for repeat in range(args.repeats):
                for mode in args.modes.split(","):
                    workers = 0 if mode == "local" else int(mode.removeprefix("dask"))
                    tag = f"m{minutes:g}-{args.config}-{mode}-r{repeat}-{time.strftime('%H%M%S')}"
                    print(f"{time.strftime('%H:%M:%S')} {tag} ...", file=sys.stderr, flush=True)
                    result = run_one(title, minutes, args.config, workers, home, scratch, tag)
                    with args.out.open("a") as out:
                        out.write(json.dumps(result) + "\n")
                    print(f"  exit {result['exit']}, wall {result['wall_s']:.0f} s, CPU {result['cpu_s']:.0f} s, "
                          f"peak RSS {result['peak_rss_sum_mb']:.0f} MB, load {result['load_before'][0]:.1f}"
                          + (f"\n  {result['error']}" if result["error"] else ""), file=sys.stderr, flush=True)
    finally:
        subprocess.run([sys.executable, "-m", "reelflow.cli", "orchestrator", "--stop"], env=env,
                       capture_output=True)


# --- the report ----------------------------------------------------------------------------------

def _records(run: dict[str, Any]) -> list[TaskRecord]:
    return [TaskRecord(t["key"], t["name"], t["submitted"], t["start"], t["stop"], t["cpu_s"], t["worker"])
            for t in run["dask_tasks"]]


def split_run(run: dict[str, Any]) -> tuple[float, float, float]:
    """(before the first Dask submission, the distributed part, after the last task) of a cluster run, in s."""
    tasks = run["dask_tasks"]
    first = min(t["submitted"] for t in tasks)
    last = max(t["stop"] for t in tasks)
    end = run["started"] + run["wall_s"]
    return first - run["started"], last - first, end - last


# Tasks that cover a stretch of the title (trials.group_s, ladder.task_s): a longer title has more of them.
# The others (a rung's join) cover the whole title: a longer title makes each longer.
PER_PIECE = ("trial_group_task", "encode_pieces_task", "rung_vmaf_task")


def replicated_names(runs: list[dict[str, Any]]) -> set[str]:
    """Task names whose count grows with the title: from the two most different lengths measured, else
    those PER_PIECE names by the flow's design."""
    by_length: dict[float, Counter[str]] = {}
    for run in runs:
        by_length.setdefault(run["minutes"], Counter(t["name"] for t in run["dask_tasks"]))
    if len(by_length) < 2:
        return {name for c in by_length.values() for name in c if any(p in name for p in PER_PIECE)}
    short, long = min(by_length), max(by_length)
    grow = long / short
    return {n for n in by_length[long] if by_length[long][n] >= max(2.0, 0.5 * grow * by_length[short].get(n, 1))}


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def command_report(args: argparse.Namespace) -> None:
    runs = [json.loads(line) for line in args.results.read_text().splitlines() if line.strip()]
    runs = [r for r in runs if r["exit"] == 0]
    print("### Cost and memory per run\n")
    print("| title | config | mode | wall s | CPU s | CPU s / content min | peak RSS tree MB | largest process MB "
          "| shots | rungs | Prefect task runs | Dask tasks | load 1-min before/after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        print(f"| {r['minutes']:g} min | {r['config']} | {r['mode']} | {r['wall_s']:.0f} | {r['cpu_s']:.0f} | "
              f"{r['cpu_s_per_content_min']:.0f} | {r['peak_rss_sum_mb']:.0f} | {r['peak_rss_one_mb']:.0f} | "
              f"{r['shots']} | {len(r['rungs'])} | {len(r['prefect_tasks'])} | {len(r['dask_tasks'])} | "
              f"{r['load_before'][0]:.1f}/{r['load_after'][0]:.1f} |")
    cluster_runs = [r for r in runs if r["dask_tasks"]]
    if not cluster_runs:
        return
    print("\n### LocalCluster: wall and each worker's busy share\n")
    print("| title | config | workers | wall s | before first task s | distributed part s | after last task s "
          "| busy share per worker | load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in cluster_runs:
        before, middle, after = split_run(r)
        shares = ", ".join(f"{s:.2f}" for s in sorted(r["busy_share"].values(), reverse=True))
        print(f"| {r['minutes']:g} min | {r['config']} | {r['workers']} | {r['wall_s']:.0f} | {before:.0f} | "
              f"{middle:.0f} | {after:.0f} | {shares} | {r['load_before'][0]:.1f} |")
    print("\n### The simulator against the measured runs\n")
    print("Simulated: the run's own tasks (CPU-s, width) and gates, the flow's CPU serial beside them; on 2 cores "
          "shared by the workers (this machine idle), and on the cores the run really got (its CPU over its wall).\n")
    print("| title | config | workers | measured wall s | simulated, 2 cores s | cores got | simulated, cores got s |")
    print("|---|---|---|---|---|---|---|")
    for r in cluster_runs:
        jobs = _jobs(r)
        got = r["cpu_s"] / r["wall_s"]
        on_two = simulate(jobs, r["workers"], machine="shared", cores=2.0).makespan_s + r["ingest_cpu_s"] / 2
        on_got = simulate(jobs, r["workers"], machine="shared", cores=got).makespan_s + r["ingest_cpu_s"] / got
        print(f"| {r['minutes']:g} min | {r['config']} | {r['workers']} | {r['wall_s']:.0f} | {on_two:.0f} | "
              f"{got:.2f} | {on_got:.0f} |")
    print("\n### Simulated on N dedicated one-core workers (task CPU-s as durations; the flow's CPU serial)\n")
    for config in sorted({r["config"] for r in cluster_runs}):
        mine = [r for r in cluster_runs if r["config"] == config]
        replicated = replicated_names(mine)
        print(f"config {config}; per-piece task names (replicated when stretched): {sorted(replicated)}\n")
        print("| title | from run | N | distributed part s | speed-up | per worker (target 0.7) | whole ingest s "
              "| speed-up |")
        print("|---|---|---|---|---|---|---|---|")
        for minutes in sorted({r["minutes"] for r in mine}):
            # the run with the most workers: the flow's submissions least delayed by queueing
            base = max((r for r in mine if r["minutes"] == minutes), key=lambda r: r["workers"])
            jobs, flow = _jobs(base), base["ingest_cpu_s"]
            one = simulate(jobs, 1).makespan_s
            for n in WORKER_COUNTS:
                t = simulate(jobs, n).makespan_s
                print(f"| {minutes:g} min | dask{base['workers']} | {n} | {t:.0f} | {one / t:.2f} | "
                      f"{one / t / n:.2f} | {flow + t:.0f} | {(flow + one) / (flow + t):.2f} |")
        # the 2-hour film: the longest title stretched; the flow's own CPU grows linearly
        longest = max(mine, key=lambda r: (r["minutes"], r["workers"]))
        factor = FILM_MINUTES / longest["minutes"]
        flow = longest["ingest_cpu_s"] * factor
        jobs = scale_jobs(_jobs(longest), factor, replicated)
        print(f"\n2-hour 1080p film from the {longest['minutes']:g}-minute {config} run (x{factor:g}): "
              f"{len(jobs)} tasks, {sum(j.work_s for j in jobs) / 3600:.1f} CPU-h on the workers, the flow's "
              f"{flow / 3600:.2f} CPU-h serial:\n")
        print("| N | distributed part h | speed-up | per worker | whole ingest h | speed-up |")
        print("|---|---|---|---|---|---|")
        one = simulate(jobs, 1).makespan_s
        for n in WORKER_COUNTS:
            t = one if n == 1 else simulate(jobs, n).makespan_s
            print(f"| {n} | {t / 3600:.2f} | {one / t:.2f} | {one / t / n:.2f} | {(t + flow) / 3600:.2f} | "
                  f"{(one + flow) / (t + flow):.2f} |")
        print()


def _jobs(run: dict[str, Any]) -> list[Job]:
    """The run's Dask tasks as jobs; the flow's own time between them is counted apart, as its CPU (the walls
    between tasks are stretched by the load of a shared machine)."""
    jobs = jobs_from_records(_records(run), min(t["submitted"] for t in run["dask_tasks"]))
    return [dataclasses.replace(j, delay_s=0.0) for j in jobs]


def command_film(args: argparse.Namespace) -> None:
    """The distributed part's graph for a film from per-content-minute stage costs (feature_schedule.title_jobs)."""
    rungs = [RungCost(*(float(x) for x in r.split(","))) for r in args.rung]
    jobs = title_jobs(args.minutes, args.trials, rungs, group_s=args.group_s, task_s=args.task_s,
                      split_s_per_min=args.split, chunk_s=args.chunk_s)
    serial = args.serial * args.minutes + args.serial_fixed
    one = simulate(jobs, 1).makespan_s
    print(f"{args.minutes:g} min: {len(jobs)} tasks, {one / 3600:.2f} CPU-h on the workers; serial before the "
          f"fan-out {serial / 3600:.2f} h\n")
    print("| N | distributed part h | speed-up | per worker (target 0.7) | whole ingest h |")
    print("|---|---|---|---|---|")
    for n in WORKER_COUNTS:
        t = simulate(jobs, n).makespan_s
        print(f"| {n} | {t / 3600:.2f} | {one / t:.2f} | {one / t / n:.2f} | {(t + serial) / 3600:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run")
    run.add_argument("--minutes", default="1")
    run.add_argument("--config", choices=sorted(CONFIGS), default="cheap")
    run.add_argument("--modes", default="local,dask1,dask2,dask4")
    run.add_argument("--repeats", type=int, default=1)
    run.add_argument("--titles", type=Path, default=default_folder())
    run.add_argument("--scratch", type=Path, default=Path("/tmp/bench-feature"))
    run.add_argument("--out", type=Path, required=True)
    report = sub.add_parser("report")
    report.add_argument("results", type=Path)
    film = sub.add_parser("film", help="simulate a film's rung stage from stage costs per content minute")
    film.add_argument("--minutes", type=float, default=FILM_MINUTES)
    film.add_argument("--trials", type=float, required=True, help="trial CPU-s per content minute")
    film.add_argument("--rung", action="append", required=True,
                      help="ENCODE,VMAF[,JOIN] CPU-s per content minute, once per rung encode, cheapest first")
    film.add_argument("--serial", type=float, default=0.0, help="the flow's own s per content minute")
    film.add_argument("--split", type=float, default=0.0, help="QC + shots CPU-s per content minute, in chunks")
    film.add_argument("--chunk-s", type=float, default=120.0, help="qc.chunk_s / shots.chunk_s")
    film.add_argument("--serial-fixed", type=float, default=0.0, help="the flow's own s per title (the sample)")
    film.add_argument("--group-s", type=float, default=20.0)
    film.add_argument("--task-s", type=float, default=60.0)
    args = parser.parse_args()
    {"run": command_run, "report": command_report, "film": command_film}[args.command](args)


if __name__ == "__main__":
    main()
