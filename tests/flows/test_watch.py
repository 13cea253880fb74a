"""The watcher: S3 events in, one run per drop out; listing and folder fallbacks; the real deployment.

The exactly-once tests at scale create real flow runs of the real ingest deployment on the
session's Prefect server, but no worker executes them (50 ingests would take minutes here);
test_worker.py runs drops end to end through a worker.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from reelflow.errors import ReelflowError
from reelflow.flows.deploy import register
from reelflow.flows.watch import (
    DeploymentDispatcher,
    Drop,
    FolderSource,
    Ledger,
    ListingSource,
    Notice,
    RunRef,
    SqsSource,
    Watcher,
    idempotency_key,
    parse_s3_event,
    setup_notifications,
)
from reelflow.infra.settings import Settings, WatchConfig, load_settings

# --- events -----------------------------------------------------------------------------------


def _event(key: str, etag: str = "abc", name: str = "ObjectCreated:Put", bucket: str = "drops") -> str:
    return json.dumps({"Records": [{"eventName": name, "s3": {"bucket": {"name": bucket},
                                                                "object": {"key": key, "eTag": etag, "size": 5}}}]})


def test_event_keys_are_url_decoded() -> None:
    assert parse_s3_event(_event("in/My+Movie%2B1%25.mxf")) == [("drops", "in/My Movie+1%.mxf", "abc", 5)]
    assert parse_s3_event(_event("in%2Fa+b.mp4"))[0][1] == "in/a b.mp4"  # moto encodes '/' too


def test_test_events_and_other_events_give_nothing() -> None:
    assert parse_s3_event(json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "drops"})) == []
    assert parse_s3_event(_event("in/a.mp4", name="ObjectRemoved:Delete")) == []
    assert parse_s3_event("not json") == []


def test_sns_wrapped_events_are_unwrapped() -> None:
    wrapped = json.dumps({"Type": "Notification", "Message": _event("in/a.mp4", etag='"E1"')})
    assert parse_s3_event(wrapped) == [("drops", "in/a.mp4", "e1", 5)]


def test_idempotency_key_is_object_and_version() -> None:
    one = Drop(url="s3://drops/in/a.mp4", name="in/a.mp4", version="e1")
    assert idempotency_key(one) == "reelflow-ingest:s3://drops/in/a.mp4#e1"
    assert idempotency_key(one) != idempotency_key(Drop(url=one.url, name=one.name, version="e2"))
    long = Drop(url="s3://drops/" + "k" * 1000, name="k" * 1000, version="e1")
    assert len(idempotency_key(long)) <= 512


# --- the watcher's logic, with a source and a dispatcher in memory ------------------------------


class FakeSource:
    url = "memory://"

    def __init__(self) -> None:
        self.queue: list[Notice] = []
        self.objects: dict[str, Drop] = {}
        self.acked: list[Notice] = []

    def put(self, *drops: Drop) -> Notice:
        notice = Notice(drops=list(drops), token=len(self.queue))
        self.queue.append(notice)
        for drop in drops:
            self.objects[drop.name] = drop
        return notice

    def poll(self, timeout_s: float) -> list[Notice]:
        out, self.queue = self.queue, []
        return out

    def ack(self, notice: Notice) -> None:
        self.acked.append(notice)

    def lookup(self, name: str) -> Drop | None:
        return self.objects.get(name)

    def keep_alive(self, notice: Notice, seconds: float) -> None:
        pass


class FakeDispatcher:
    def __init__(self) -> None:
        self.runs: dict[str, tuple[Drop, Drop | None]] = {}
        self.fail = 0

    def submit(self, drop: Drop, sidecar: Drop | None) -> RunRef:
        if self.fail:
            self.fail -= 1
            raise ReelflowError("server down")
        key = idempotency_key(drop)
        created = key not in self.runs
        self.runs.setdefault(key, (drop, sidecar))
        return RunRef(run_id=key, created=created)


def _drop(name: str, version: str = "e1") -> Drop:
    return Drop(url=f"s3://drops/{name}", name=name, version=version)


def test_repeats_start_one_run_and_every_message_is_acked() -> None:
    source, runs = FakeSource(), FakeDispatcher()
    watcher = Watcher(source, runs, WatchConfig(sidecar_wait_s=0))
    first = source.put(_drop("in/a.mp4"))
    second = source.put(_drop("in/a.mp4"))  # the second event of a multipart upload
    watcher.step(0)
    third = source.put(_drop("in/a.mp4"))   # redelivered later
    watcher.step(0)
    assert len(runs.runs) == 1 and len(watcher.started) == 1
    assert {id(n) for n in source.acked} == {id(first), id(second), id(third)}


def test_sidecars_never_start_runs_and_join_their_media() -> None:
    source, runs = FakeSource(), FakeDispatcher()
    now = [0.0]
    watcher = Watcher(source, runs, WatchConfig(sidecar_wait_s=10), clock=lambda: now[0])
    source.put(_drop("in/b.json"))
    watcher.step(0)
    assert not runs.runs and len(source.acked) == 1
    source.put(_drop("in/b.mxf"), _drop("in/notes.txt"))
    watcher.step(0)
    (drop, sidecar), = runs.runs.values()
    assert drop.name == "in/b.mxf" and sidecar is not None and sidecar.name == "in/b.json"


def test_media_waits_a_bounded_time_for_its_sidecar() -> None:
    source, runs = FakeSource(), FakeDispatcher()
    now = [0.0]
    watcher = Watcher(source, runs, WatchConfig(sidecar_wait_s=10), clock=lambda: now[0])
    held = source.put(_drop("in/c.mp4"))
    source.put(_drop("in/d.mp4"))
    watcher.step(0)
    assert not runs.runs and held not in source.acked  # the message stays until the run is accepted
    source.objects["in/c.json"] = _drop("in/c.json")   # its event may come after the media's
    watcher.step(0)
    assert [d.name for d, s in runs.runs.values()] == ["in/c.mp4"] and held in source.acked
    now[0] = 11
    watcher.step(0)
    assert runs.runs[idempotency_key(_drop("in/d.mp4"))][1] is None  # started without, after the wait


def test_a_refused_run_is_retried_and_its_message_kept_until_then() -> None:
    source, runs = FakeSource(), FakeDispatcher()
    runs.fail = 1
    watcher = Watcher(source, runs, WatchConfig(sidecar_wait_s=0))
    notice = source.put(_drop("in/e.mp4"))
    watcher.step(0)
    assert not runs.runs and notice not in source.acked and watcher.errors == 1
    watcher.step(0)
    assert len(runs.runs) == 1 and notice in source.acked


# --- sources ----------------------------------------------------------------------------------


@pytest.fixture
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("REELFLOW_STORAGE__S3_ENDPOINT_URL", s3_endpoint)
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")


def _bucket(s3: Any, name: str) -> str:
    s3.create_bucket(Bucket=name)
    return name


def _settings(tmp_path: Path, **watch: Any) -> Settings:
    return load_settings(watch={"state_dir": str(tmp_path / "state"), "wait_time_s": 1, "sidecar_wait_s": 0,
                                "poll_s": 0.2, **watch})


def test_sqs_events_are_decoded_deduplicated_and_deleted(s3: Any, tmp_path: Path) -> None:
    bucket = _bucket(s3, "drops-sqs")
    settings = _settings(tmp_path)
    queue = setup_notifications(f"s3://{bucket}/in/", "drops-sqs-events", settings.storage, settings.watch)
    source = SqsSource(f"s3://{bucket}/in/", queue, settings.storage, settings.watch)
    runs = FakeDispatcher()
    watcher = Watcher(source, runs, settings.watch)
    big = tmp_path / "big.mxf"
    big.write_bytes(os.urandom(11 << 20))
    s3.upload_file(str(big), bucket, "in/Big Movie+1.mxf",
                   Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    s3.put_object(Bucket=bucket, Key="in/small one.mp4", Body=b"x")
    s3.put_object(Bucket=bucket, Key="elsewhere/x.mp4", Body=b"x")  # outside the prefix: no event
    started = watcher.drain(poll_s=1)
    assert sorted(s.drop.name for s in started) == ["in/Big Movie+1.mxf", "in/small one.mp4"]
    assert len(runs.runs) == 2  # the two events of the multipart upload, one run
    etag = s3.head_object(Bucket=bucket, Key="in/Big Movie+1.mxf")["ETag"].strip('"')
    assert idempotency_key(started[0].drop if "Big" in started[0].drop.name else started[1].drop).endswith(etag)
    sqs = boto3.client("sqs", endpoint_url=settings.storage.s3_endpoint_url, region_name="us-east-1")
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"
    source.ack(Notice(drops=[], token="stale-receipt-handle"))  # refused: logged, not fatal


def test_listing_fallback_persists_what_it_has_seen(s3: Any, tmp_path: Path) -> None:
    bucket = _bucket(s3, "drops-list")
    settings = _settings(tmp_path)
    s3.put_object(Bucket=bucket, Key="in/a.mp4", Body=b"a")
    s3.put_object(Bucket=bucket, Key="in/a.json", Body=b"{}")

    def listing() -> ListingSource:
        return ListingSource(f"s3://{bucket}/in/", settings.storage, settings.watch,
                             Ledger.for_url(settings.watch.state_dir, f"s3://{bucket}/in/"))

    runs = FakeDispatcher()
    started = Watcher(listing(), runs, settings.watch).drain(poll_s=0.2)
    assert [(s.drop.name, s.sidecar.name if s.sidecar else None) for s in started] == [("in/a.mp4", "in/a.json")]
    s3.put_object(Bucket=bucket, Key="in/b.mov", Body=b"b")
    s3.put_object(Bucket=bucket, Key="in/a.mp4", Body=b"a2")  # replaced: a new version, a new run
    restarted = Watcher(listing(), runs, settings.watch).drain(poll_s=0.2)  # a new process
    assert sorted(s.drop.name for s in restarted) == ["in/a.mp4", "in/b.mov"]
    assert len(runs.runs) == 3


def test_folder_files_are_picked_up_once_they_stop_growing(tmp_path: Path) -> None:
    folder = tmp_path / "drop"
    folder.mkdir()
    config = WatchConfig(stable_polls=3, poll_s=0.01, sidecar_wait_s=0)
    source = FolderSource(folder, config, Ledger(tmp_path / "seen.json"))
    runs = FakeDispatcher()
    watcher = Watcher(source, runs, config)
    growing = folder / "movie.mov"
    for _ in range(4):  # a copy in progress: a poll sees it grow each time
        with open(growing, "ab") as f:
            f.write(b"x" * 1000)
        watcher.step(0.05)
    assert not runs.runs
    for _ in range(3):
        watcher.step(0.05)
    (drop, _), = runs.runs.values()
    assert drop.url == growing.as_uri() and drop.size == 4000
    restarted = Watcher(FolderSource(folder, config, Ledger(tmp_path / "seen.json")), runs, config)
    assert restarted.drain(poll_s=0.05) == []


# --- the real deployment on the session's Prefect server ----------------------------------------


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings = load_settings(orchestration={"deployment": "watch-tests"})
    register(settings)
    yield "ingest/watch-tests"


def _runs_of(deployment: str) -> list[Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName

    with get_client(sync_client=True) as client:
        return list(client.read_flow_runs(
            deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[deployment.split("/")[1]])),
            limit=200))


def test_prefect_keeps_one_run_per_idempotency_key(deployment: str) -> None:
    dispatcher = DeploymentDispatcher(deployment)
    try:
        drop = _drop(f"in/idem-{time.time_ns()}.mp4")
        first = dispatcher.submit(drop, None)
        second = dispatcher.submit(drop, None)
        other = dispatcher.submit(Drop(url=drop.url, name=drop.name, version="e2"), None)
    finally:
        dispatcher.close()
    assert first.created and not second.created and second.run_id == first.run_id
    assert other.created and other.run_id != first.run_id


def test_fifty_drops_at_once_start_fifty_runs_exactly_once(s3: Any, tmp_path: Path, deployment: str) -> None:
    """50 objects put at once (each with a repeated event), a watcher restart and a second watcher
    on the same queue: exactly one flow run per object, every message deleted."""
    bucket = _bucket(s3, "drops-load")
    settings = _settings(tmp_path)
    queue = setup_notifications(f"s3://{bucket}/", "drops-load-events", settings.storage, settings.watch)
    sqs = boto3.client("sqs", endpoint_url=settings.storage.s3_endpoint_url, region_name="us-east-1")
    bodies = []
    for i in range(50):
        key = f"batch/title {i:02d}.mp4"
        etag = s3.put_object(Bucket=bucket, Key=key, Body=f"drop {i}".encode())["ETag"].strip('"')
        bodies.append(_event(key.replace(" ", "+"), etag=etag, bucket=bucket))
    for body in bodies[::5]:  # redelivered or duplicated events
        sqs.send_message(QueueUrl=queue, MessageBody=body)

    def watcher() -> Watcher:
        return Watcher(SqsSource(f"s3://{bucket}/", queue, settings.storage, settings.watch),
                       DeploymentDispatcher(deployment), settings.watch)

    one, two = watcher(), watcher()
    started = []
    for _ in range(30):  # two watchers taking turns on one queue
        started += one.step(0.2) + two.step(0.2)
        attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        if attrs["ApproximateNumberOfMessages"] == attrs["ApproximateNumberOfMessagesNotVisible"] == "0":
            break
    for _ in range(10):
        sqs.send_message(QueueUrl=queue, MessageBody=bodies[0])  # still a repeat after the runs exist
    started += watcher().drain(poll_s=0.2)
    created = [s for s in started if s.run.created]
    assert len(created) == 50 and len({s.drop.url for s in created}) == 50
    runs = [r for r in _runs_of(deployment) if r.parameters["source"].startswith(f"s3://{bucket}/")]
    assert len(runs) == 50
    assert sorted(r.parameters["source"] for r in runs) == sorted(f"s3://{bucket}/batch/title {i:02d}.mp4"
                                                                    for i in range(50))
    assert all(r.idempotency_key.startswith("reelflow-ingest:s3://") for r in runs)
    attrs = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
    assert attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


# --- the command line: bad input is one line and a non-zero exit --------------------------------


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "reelflow.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, check=False, timeout=120)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["watch", "s3://Not_A_Bucket/x"], 2, "invalid S3 bucket name"),
    (["watch", "ftp://host/x"], 2, "use s3://bucket/prefix or a local folder"),
    (["watch", "/no/such/folder"], 2, "not a folder"),
    (["watch", "s3://no-such-bucket-here/in/"], 1, "does not exist"),
    (["watch", "s3://drops-cli/in/", "--queue", "no-such-queue"], 1, "the queue does not exist"),
    (["watch", "s3://drops-cli/in/", "--deployment", "ingest/none"], 2, "does not exist on the Prefect server"),
])
def test_cli_bad_input(s3: Any, s3_endpoint: str, prefect_server: str, args: list[str], code: int,
                       message: str) -> None:
    if "drops-cli" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        _bucket(s3, "drops-cli")
    done = _cli(*args, "--once", env={"REELFLOW_STORAGE__S3_ENDPOINT_URL": s3_endpoint,
                                     "PREFECT_API_URL": prefect_server})
    assert done.returncode == code, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.startswith("reelflow: error:")]
    assert len(lines) == 1 and message in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_cli_unreachable_endpoint() -> None:
    done = _cli("watch", "s3://drops/in/", "--once", env={"REELFLOW_STORAGE__S3_ENDPOINT_URL": "http://127.0.0.1:9",
                                                          "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"})
    assert done.returncode == 1 and "connection to S3 at http://127.0.0.1:9 failed" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_cli_watch_once_json(s3: Any, s3_endpoint: str, prefect_server: str, deployment: str,
                             tmp_path: Path) -> None:
    bucket = _bucket(s3, "drops-cli-once")
    s3.put_object(Bucket=bucket, Key="in/one.mp4", Body=b"1")
    env = {"REELFLOW_STORAGE__S3_ENDPOINT_URL": s3_endpoint, "PREFECT_API_URL": prefect_server,
           "REELFLOW_WATCH__STATE_DIR": str(tmp_path), "REELFLOW_WATCH__POLL_S": "0.2",
           "REELFLOW_WATCH__SIDECAR_WAIT_S": "0"}
    done = _cli("watch", f"s3://{bucket}/in/", "--deployment", deployment, "--once", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (run,) = json.loads(done.stdout)
    assert run["source"] == f"s3://{bucket}/in/one.mp4" and run["created"]
    again = _cli("watch", f"s3://{bucket}/in/", "--deployment", deployment, "--once", "--json", env=env)
    assert json.loads(again.stdout) == []  # the seen-set: nothing new after a restart



def test_the_deployment_carries_the_global_limit_and_the_worker_config(tmp_path: Path) -> None:
    from prefect.client.orchestration import get_client

    settings = load_settings(orchestration={"deployment": "watch-limits", "global_max_ingests": 3})
    register(settings, config_file="/etc/reelflow.toml")
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("ingest/watch-limits")
    assert deployment.global_concurrency_limit is not None and deployment.global_concurrency_limit.limit == 3
    assert deployment.parameters == {"config_file": "/etc/reelflow.toml"}
    # the served module builds the flow with the worker's task runner (thread pool or Dask) in each run
    assert deployment.entrypoint == "reelflow.flows.served.ingest"


@pytest.mark.parametrize("args", [["worker"], ["watch", "/tmp"]])
def test_cli_unreachable_prefect_server(args: list[str], tmp_path: Path) -> None:
    done = _cli(*args, "--once" if args[0] == "watch" else "--register-only",
                env={"PREFECT_API_URL": "http://127.0.0.1:9/api", "REELFLOW_WATCH__STATE_DIR": str(tmp_path)})
    assert done.returncode == 1 and "the Prefect server at http://127.0.0.1:9/api" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_a_folder_drop_that_is_not_media_is_quarantined_not_deleted(tmp_path: Path, fast_config: Path) -> None:
    """Runs from a watched folder get file:// sources; one that is not media goes to quarantine."""
    from prefect.client.schemas.objects import State

    from reelflow.flows.ingest import ingest_flow

    drop = tmp_path / "drop" / "Not A Movie.mov"
    drop.parent.mkdir()
    drop.write_bytes(b"studio notes, not a video")
    store = tmp_path / "store"
    state: State[Any] = ingest_flow(load_settings(fast_config))(drop.as_uri(), storage=str(store),
                                                                config_file=str(fast_config), return_state=True)
    assert state.is_failed() and "quarantined at" in str(state.message)
    assert (store / "quarantine" / "not-a-movie" / drop.name).read_bytes() == drop.read_bytes()
    assert drop.read_bytes() == b"studio notes, not a video"
    assert not (store / "titles").exists()
