"""Watched bucket throughput: files dropped at once into S3 (moto, with SQS events) until ingested.

Each repeat drops N small clips back to back (each with its sidecar uploaded first, as
docs/deploy.md asks of studios) into a fresh prefix, with `reelflow watch`'s Watcher long-polling
the queue in a thread, and measures per drop:

- drop -> run accepted: from the media upload to the server accepting its flow run (the watcher);
- drop -> run start:    to the flow run entering Running (adds the worker's poll and process start,
                        and, for all but the first ``--limit`` drops, the wait for a free slot);
- drops per minute:     N / (last run finished - first drop) * 60, end to end (``--mode e2e``), or
                        N / (last run accepted - first drop) * 60 (``--mode dispatch``, no worker).

``e2e`` starts `reelflow worker --limit L` in a subprocess and runs the real ingest flow on each
clip (1 s, 416x234, one rung, ultrafast). A throw-away Prefect server on a temporary SQLite
database and moto's server are started by the script itself.

    .venv/bin/python bench/watch.py [--mode e2e|dispatch] [--drops 10] [--repeats 3] [--limit 2] [--worker-poll 1]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any


def _clip(folder: Path) -> Path:
    from reelflow.infra.tools import ffmpeg_exe

    out = folder / "tiny.mp4"
    subprocess.run([ffmpeg_exe(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=416x234:rate=25:duration=1",
                    "-c:v", "libx264", "-preset", "ultrafast", str(out)], check=True)
    return out


def _start_worker(folder: Path, env: dict[str, str], limit: int) -> subprocess.Popen[bytes]:
    from prefect.client.orchestration import get_client

    log = open(folder / "worker.log", "wb")  # noqa: SIM115 - the worker's lifetime
    process = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "worker", "--limit", str(limit)], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    with get_client(sync_client=True) as client:
        for _ in range(240):
            try:
                client.read_deployment_by_name("ingest/bench")
                return process
            except Exception:
                if process.poll() is not None:
                    break
                time.sleep(0.5)
    sys.exit(f"the worker did not start:\n{(folder / 'worker.log').read_text()[-3000:]}")


def one_repeat(index: int, args: argparse.Namespace, clip: Path, s3: Any, settings: Any, queue: str) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    from reelflow.flows.watch import DeploymentDispatcher, SqsSource, Started, Watcher

    prefix = f"r{index}-{time.time_ns()}/"
    source = SqsSource("s3://bench-drops/", queue, settings.storage, settings.watch)
    watcher = Watcher(source, DeploymentDispatcher("ingest/bench"), settings.watch)
    accepted: dict[str, Started] = {}
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for started in watcher.step(1):
                accepted[started.drop.name] = started

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    dropped: dict[str, float] = {}
    for i in range(args.drops):
        stem = f"{prefix}drop {i:03d}"
        s3.put_object(Bucket="bench-drops", Key=f"{stem}.json",
                      Body=json.dumps({"title_id": f"bench-{index}-{i:03d}"}).encode())
        dropped[f"{stem}.mp4"] = time.time()
        s3.upload_file(str(clip), "bench-drops", f"{stem}.mp4")
    deadline = time.monotonic() + 60 + args.drops * 30
    while len(accepted) < args.drops and time.monotonic() < deadline:
        time.sleep(0.1)
    runs: dict[str, Any] = {}
    if args.mode == "e2e":
        with get_client(sync_client=True) as client:
            while time.monotonic() < deadline:
                runs = {name: client.read_flow_run(s.run.run_id) for name, s in accepted.items()}
                if len(runs) == args.drops and all(r.state and r.state.is_final() for r in runs.values()):
                    break
                time.sleep(1)
    stop.set()
    thread.join()
    if len(accepted) < args.drops:
        sys.exit(f"only {len(accepted)} of {args.drops} drops got a run")
    first = min(dropped.values())
    to_accept = [accepted[k].accepted_at - dropped[k] for k in dropped]
    out: dict[str, Any] = {"to_accept": statistics.median(to_accept), "created": sum(s.run.created
                                                                                    for s in accepted.values())}
    if args.mode == "e2e":
        failed = [k for k, r in runs.items() if not (r.state and r.state.is_completed())]
        if failed:
            sys.exit(f"{len(failed)} runs did not complete, e.g. {failed[0]}")
        waits = [runs[k].start_time.timestamp() - dropped[k] for k in dropped]
        out["first_start"] = min(waits)  # no queue ahead of it: the watcher, the worker's poll, process start
        out["to_start"] = statistics.median(waits)
        last = max(r.end_time.timestamp() for r in runs.values())
    else:
        last = max(s.accepted_at for s in accepted.values())
    out["per_minute"] = args.drops / (last - first) * 60
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=("e2e", "dispatch"), default="e2e")
    parser.add_argument("--drops", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=2, help="Ingests at once on the worker.")
    parser.add_argument("--worker-poll", type=float, default=1.0, help="orchestration.poll_s of the worker.")
    args = parser.parse_args()
    logging.getLogger("reelflow").setLevel(logging.WARNING)  # one line per drop is noise here

    import boto3
    from moto.server import ThreadedMotoServer
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    from reelflow.flows.deploy import register
    from reelflow.flows.watch import setup_notifications
    from reelflow.infra.settings import load_settings

    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    with tempfile.TemporaryDirectory() as tmp, prefect_test_harness(server_startup_timeout=120):
        folder = Path(tmp)
        config = folder / "reelflow.toml"
        config.write_text(f'[ladder]\nmode = "fixed"\n[drm]\nenabled = false\n'
                          f'[encode]\npreset = "ultrafast"\n[storage]\nwork_dir = "{folder / "work"}"\n'
                          f'output = "{folder / "store"}"\ns3_endpoint_url = "{endpoint}"\n'
                          f'[watch]\nwait_time_s = 20\nstate_dir = "{folder / "watch"}"\n'
                          f'[orchestration]\ndeployment = "bench"\npoll_s = {args.worker_poll}\n')
        os.environ["REELFLOW_CONFIG"] = str(config)
        settings = load_settings(config)
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="bench-drops")
        queue = setup_notifications("s3://bench-drops/", "bench-events", settings.storage, settings.watch)
        env = {**os.environ, "PREFECT_API_URL": str(PREFECT_API_URL.value()),
               "PREFECT_LOCAL_STORAGE_PATH": str(folder / "results")}
        worker = _start_worker(folder, env, args.limit) if args.mode == "e2e" else None
        if worker is None:
            register(settings)
        clip = _clip(folder)
        results = []
        try:
            for index in range(args.repeats):
                results.append(one_repeat(index, args, clip, s3, settings, queue))
                print(f"repeat {index + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in results[-1].items()),
                      file=sys.stderr)
        finally:
            if worker is not None:
                os.killpg(worker.pid, signal.SIGINT)
                worker.wait(60)
            moto.stop()
    median = {k: statistics.median(r[k] for r in results) for k in results[0]}
    print("| mode | drops | worker limit | worker poll s | drop -> run accepted s | drop -> run start s: first, "
          "median | drops/min | repeats |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    start = f"{median['first_start']:.1f}, {median['to_start']:.1f}" if "to_start" in median else "–"
    per_repeat = ", ".join(f"{r['per_minute']:.1f}" for r in results)
    print(f"| {args.mode} | {args.drops} | {args.limit if args.mode == 'e2e' else '–'} | "
          f"{args.worker_poll if args.mode == 'e2e' else '–'} | {median['to_accept']:.2f} | {start} | "
          f"{median['per_minute']:.1f} | {args.repeats} (per repeat: "
          f"{per_repeat}) |")


if __name__ == "__main__":
    main()
