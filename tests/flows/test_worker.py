"""`reelflow worker` end to end: drops in moto's S3, the watcher, the served deployment, real ingests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from reelflow.flows.watch import DeploymentDispatcher, SqsSource, Watcher, setup_notifications
from reelflow.infra.settings import load_settings

DEPLOYMENT = "worker-tests"


@pytest.fixture(scope="module")
def worker(prefect_server: str, s3_endpoint: str, fast_config: Path,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """`reelflow worker` in a subprocess, serving its own deployment on the session's server."""
    folder = tmp_path_factory.mktemp("worker")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "REELFLOW_CONFIG": str(fast_config),
           "REELFLOW_STORAGE__S3_ENDPOINT_URL": s3_endpoint, "REELFLOW_STORAGE__OUTPUT": str(folder / "store"),
           "REELFLOW_ORCHESTRATION__DEPLOYMENT": DEPLOYMENT, "REELFLOW_ORCHESTRATION__POLL_S": "1",
           "PREFECT_LOCAL_STORAGE_PATH": str(folder / "results")}
    log = open(folder / "worker.log", "w")  # noqa: SIM115 - open for the fixture's lifetime
    process = subprocess.Popen([sys.executable, "-m", "reelflow.cli", "worker", "--limit", "2"], env=env,
                               stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        from prefect.client.orchestration import get_client

        deadline = time.monotonic() + 90
        with get_client(sync_client=True) as client:
            while True:
                try:
                    client.read_deployment_by_name(f"ingest/{DEPLOYMENT}")
                    break
                except Exception:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise AssertionError((folder / "worker.log").read_text()[-3000:]) from None
                    time.sleep(0.5)
        yield env, folder
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
        log.close()


def _wait_for(run_ids: list[str], timeout: float) -> dict[str, Any]:
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while True:
            runs = {i: client.read_flow_run(i) for i in run_ids}
            if all(r.state and r.state.is_final() for r in runs.values()) or time.monotonic() > deadline:
                return runs
            time.sleep(1)


def test_drops_are_ingested_by_the_worker(worker: tuple[dict[str, str], Path], lavfi_clip: Any,
                                          s3_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    """A clip with its sidecar is published under the sidecar's title id; a file that is not media
    fails its run, is quarantined with a report, and stays in the bucket."""
    env, folder = worker
    clip = lavfi_clip("drop_2s.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2",
                      "-c:v", "libx264", "-preset", "ultrafast")
    monkeypatch.setenv("REELFLOW_STORAGE__S3_ENDPOINT_URL", s3_endpoint)
    settings = load_settings(watch={"wait_time_s": 1, "sidecar_wait_s": 5, "state_dir": str(tmp_path)})
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="drops-worker")
    queue = setup_notifications("s3://drops-worker/in/", "drops-worker-events", settings.storage, settings.watch)
    s3.put_object(Bucket="drops-worker", Key="in/Studio Cut.json",
                  Body=json.dumps({"title_id": "studio-cut", "countries": ["FR"]}).encode())
    s3.upload_file(str(clip), "drops-worker", "in/Studio Cut.mp4")
    s3.put_object(Bucket="drops-worker", Key="in/broken.mp4", Body=b"this is not a video")

    watcher = Watcher(SqsSource("s3://drops-worker/in/", queue, settings.storage, settings.watch),
                      DeploymentDispatcher(f"ingest/{DEPLOYMENT}"), settings.watch)
    started = {s.drop.name: s for s in watcher.drain(poll_s=1)}
    assert set(started) == {"in/Studio Cut.mp4", "in/broken.mp4"}
    assert started["in/Studio Cut.mp4"].sidecar is not None
    runs = _wait_for([s.run.run_id for s in started.values()], timeout=240)
    good, bad = runs[started["in/Studio Cut.mp4"].run.run_id], runs[started["in/broken.mp4"].run.run_id]
    log = (folder / "worker.log").read_text()
    assert good.state is not None and good.state.is_completed(), log[-4000:]
    store = folder / "store"
    record = json.loads((store / "titles" / "studio-cut" / "title.json").read_text())
    assert record["source"]["name"] == "Studio Cut.mp4" and record["status"] == "published"
    assert good.parameters["config_file"] == env["REELFLOW_CONFIG"]  # the worker's default parameter

    assert bad.state is not None and bad.state.is_failed(), log[-4000:]
    assert "quarantined at" in str(bad.state.message)
    assert (store / "quarantine" / "broken" / "broken.mp4").read_bytes() == b"this is not a video"
    report = json.loads((store / "quarantine" / "broken" / "qc.json").read_text())
    assert report["verdict"] == "error" and report["checks"][0]["name"] == "probe"
    assert not (store / "titles" / "broken").exists()
    assert s3.get_object(Bucket="drops-worker", Key="in/broken.mp4")["Body"].read() == b"this is not a video"


def test_a_drop_replaced_before_its_run_fetched_it_fails_saying_so(
        worker: tuple[dict[str, str], Path], s3_endpoint: str) -> None:
    """The run ingests the version that was dropped (the ETag in its idempotency key) or none."""
    from reelflow.flows.watch import Drop

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="drops-replaced")
    first = s3.put_object(Bucket="drops-replaced", Key="in/late.mp4", Body=b"first upload")["ETag"].strip('"')
    s3.put_object(Bucket="drops-replaced", Key="in/late.mp4", Body=b"second upload")
    dispatcher = DeploymentDispatcher(f"ingest/{DEPLOYMENT}")
    try:
        run = dispatcher.submit(Drop(url="s3://drops-replaced/in/late.mp4", name="in/late.mp4", version=first), None)
    finally:
        dispatcher.close()
    state = _wait_for([run.run_id], timeout=120)[run.run_id].state
    assert state is not None and state.is_failed()
    assert "replaced since it was dropped" in str(state.message)
