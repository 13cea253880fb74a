"""Faults: an ingest killed mid-encode resumes; transient S3 errors are retried; failures publish nothing."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from prefect.client.schemas.objects import State

from reelflow.encoding.encode import read_keyframes
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings
from reelflow.infra.storage import S3Storage


def _config(folder: Path, preset: str = "ultrafast") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "reelflow.toml"
    # the fixed ladder in the clear: what is tested is the crash and the retries, not the ladder or keys
    config.write_text(f'[ladder]\nmode = "fixed"\n[drm]\nenabled = false\n'
                      f'[encode]\npreset = "{preset}"\nparallel_encodes = 1\n'
                      f'[storage]\nkeep_work = true\nwork_dir = "{folder / "work"}"\n')
    return config


def _run(source: str, storage: str, config: Path, title_id: str) -> State[Any]:
    state: State[Any] = ingest_flow(load_settings(config))(source, title_id=title_id, storage=storage,
                                                           config_file=str(config), return_state=True)
    return state


def _finished_encodes(work: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in work.glob("*/encode-*/*p_*.mp4") if ".partial" not in p.name}


def _ingest_killed_when(argv: list[str], env: dict[str, str], ready: Callable[[], bool], what: str,
                        timeout_s: float) -> None:
    """Start an ingest in a process group of its own and SIGKILL the group (the flow and its ffmpeg) once
    ``ready()`` holds."""
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not ready():
        assert process.poll() is None, process.stderr.read().decode()[-3000:] if process.stderr else ""
        assert time.monotonic() < deadline, f"no {what} finished in time"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def test_sigkill_mid_encode_then_rerun_reuses_finished_encodes(
    lavfi_clip: Any, prefect_server: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """720p, 4 s: seven rungs encoded one at a time. The process group is killed once a rung is
    finished; the rerun keeps every finished file (same inode and mtime), says so, encodes the rest,
    and publishes what a clean run publishes."""
    source = lavfi_clip("crash_720p.mp4", "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=25:duration=4",
                        "-c:v", "libx264", "-preset", "ultrafast")
    config = _config(tmp_path / "crashed", preset="veryfast")
    work, store = tmp_path / "crashed" / "work", tmp_path / "crashed" / "store"
    code = ("import sys; from pathlib import Path; from reelflow.flows.ingest import ingest_flow; "
            "from reelflow.infra.settings import load_settings; c = sys.argv[1]; "
            "ingest_flow(load_settings(Path(c)))(sys.argv[2], title_id='crash', storage=sys.argv[3], config_file=c)")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results")}
    _ingest_killed_when([sys.executable, "-c", code, str(config), str(source), str(store)], env,
                        lambda: bool(_finished_encodes(work)), "encode", 180)
    finished = _finished_encodes(work)
    assert 1 <= len(finished) < 7, f"killed too late to test anything: {len(finished)} of 7 rungs finished"
    assert not (store / "titles" / "crash" / "title.json").exists()  # nothing a reader trusts yet

    with caplog.at_level(logging.INFO, logger="reelflow"):
        resumed = _run(str(source), str(store), config, "crash").result()
    assert {p: _finished_encodes(work)[p] for p in finished} == finished  # not encoded again
    reused = {r.getMessage().rsplit("/", 1)[-1] for r in caplog.records if "reusing finished encode" in r.getMessage()}
    assert reused == {p.name for p in finished}
    assert len(_finished_encodes(work)) == 7

    clean_config = _config(tmp_path / "clean", preset="veryfast")
    clean = _run(str(source), str(tmp_path / "clean" / "store"), clean_config, "crash").result()
    # x264's frame threads make two encodes of one input differ in a few bytes (measured here: the
    # same command twice gives different streams unless -threads 1), so a clean run is compared on
    # what the encodes must agree on; kbps within 3%.
    def shape(record: dict[str, Any]) -> list[dict[str, Any]]:
        return [{k: v for k, v in r.items() if k != "kbps"} for r in record["renditions"]]

    assert shape(resumed) == shape(clean)
    for ours, theirs in zip(resumed["renditions"], clean["renditions"], strict=True):
        assert ours["kbps"] == pytest.approx(theirs["kbps"], rel=0.03)
    assert Path(resumed["package"]).name == Path(clean["package"]).name  # same inputs, same version folder
    clean_encodes = {p.name: p for p in _finished_encodes(tmp_path / "clean" / "work")}
    for path in _finished_encodes(work):
        assert read_keyframes(path) == read_keyframes(clean_encodes[path.name]), path.name
    published = sorted(p.relative_to(resumed["package"]).as_posix() for p in Path(resumed["package"]).rglob("*")
                        if p.is_file())
    assert published == sorted(p.relative_to(clean["package"]).as_posix()
                               for p in Path(clean["package"]).rglob("*") if p.is_file())


def _finished_pieces(work: Path) -> dict[Path, tuple[int, int]]:
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns)
            for p in work.glob("*/encode-*/pieces/*.mp4") if ".partial" not in p.name}


@pytest.mark.slow
def test_sigkill_mid_rung_then_rerun_keeps_every_finished_piece(sintel_fight: Path, lavfi_clip: Any,
                                                                 tmp_path: Path, prefect_server: str) -> None:
    """A per-shot rung is made piece by piece, one task each (ladder.task_s below a piece). The
    process group is killed once some pieces of the cheapest rung are finished and before the rung
    is joined; the rerun (same task-result store, so the same plan) keeps every finished piece
    (same inode and mtime) and publishes the title."""
    # Sintel's first 5 s (cuts at 58 and 76, keyframes every 2 s): about five units per rung
    source = lavfi_clip("sintel_5s.mp4", "-i", str(sintel_fight), "-t", "5", "-c:v", "libx264", "-crf", "12",
                        "-preset", "ultrafast")
    folder = tmp_path / "per-shot"
    folder.mkdir()
    config = folder / "reelflow.toml"
    config.write_text('[ladder]\nmode = "per-shot"\ntask_s = 0.1\n[drm]\nenabled = false\n'
                      '[encode]\npreset = "veryfast"\nparallel_encodes = 1\n'
                      '[trials]\npreset = "ultrafast"\nfinal_preset = "veryfast"\nx264_params = ""\n'
                      'heights = [360, 234]\n'
                      f'[storage]\nkeep_work = true\nwork_dir = "{folder / "work"}"\n')
    work, store = folder / "work", folder / "store"
    code = ("import sys; from pathlib import Path; from reelflow.flows.ingest import ingest_flow; "
            "from reelflow.infra.settings import load_settings; c = sys.argv[1]; "
            "ingest_flow(load_settings(Path(c)))(sys.argv[2], title_id='pieces', storage=sys.argv[3], config_file=c)")
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results")}
    argv = [sys.executable, "-c", code, str(config), str(source), str(store)]
    _ingest_killed_when(argv, env, lambda: len(_finished_pieces(work)) >= 2, "piece", 300)   # mid-rung
    finished = _finished_pieces(work)
    assert not list(work.glob("*/encode-*/*p_*k-*.mp4")), "killed too late: a rung was joined already"

    rerun = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    after = _finished_pieces(work)
    assert {p: after.get(p) for p in finished} == finished     # not one finished piece made again
    record = json.loads((store / "titles" / "pieces" / "title.json").read_text())
    assert record["status"] == "published" and len([r for r in record["renditions"] if r["kind"] == "video"]) >= 2


# --- S3 faults, injected through botocore's event hooks -----------------------------------------


Fault = Callable[[str, str], "ClientError | None"]


@pytest.fixture
def s3_faults(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Fault]]:
    """Each reelflow S3 client calls these with (operation, key) before each request; one that
    returns an error raises it (as the service would), once per call it decides to."""
    faults: list[Fault] = []
    original = S3Storage._make_client

    def make_client(config: Any, max_attempts: int) -> Any:
        client = original(config, max_attempts)

        def before(params: dict[str, Any], model: Any, **_: Any) -> None:
            for fault in faults:
                error = fault(model.name, str(params.get("Key", "")))
                if error is not None:
                    raise error

        client.meta.events.register("before-parameter-build.s3", before)
        return client

    monkeypatch.setattr(S3Storage, "_make_client", staticmethod(make_client))
    yield faults


def _error(code: str, status: int, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"},
                        "ResponseMetadata": {"HTTPStatusCode": status}}, operation)


def _once(operation: str, key_suffix: str, code: str, status: int, count: list[int]) -> Fault:
    def fault(op: str, key: str) -> ClientError | None:
        if op == operation and key.endswith(key_suffix) and not count[0]:
            count[0] += 1
            return _error(code, status, op)
        return None

    return fault


def _task_runs(state: State[Any], *wanted: str, timeout_s: float = 60) -> dict[str, Any]:
    """The flow run's task runs by name, once every ``wanted`` one is there: the server records task
    runs from events it ingests in the background, so the last ones of a run can arrive late."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    deadline = time.monotonic() + timeout_s
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
        named = {run.name.rsplit("-", 1)[0]: run for run in runs}
        if all(name in named for name in wanted) or time.monotonic() > deadline:
            return named
        time.sleep(0.5)


@pytest.fixture
def dropped(lavfi_clip: Any, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, str]:
    """A 2 s clip dropped in s3://drops-faults/in/, and the S3 endpoint in the environment."""
    monkeypatch.setenv("REELFLOW_STORAGE__S3_ENDPOINT_URL", s3_endpoint)
    clip = lavfi_clip("fault_2s.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2",
                      "-c:v", "libx264", "-preset", "ultrafast")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    for bucket in ("drops-faults", "faults-out"):
        if bucket not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
            s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(clip), "drops-faults", "in/fault clip.mp4")
    return s3, "s3://drops-faults/in/fault clip.mp4"


def test_transient_s3_errors_are_retried(dropped: tuple[Any, str], tmp_path: Path,
                                         s3_faults: list[Fault]) -> None:
    """A throttled download of the drop and a 503 on the title record: each task is tried again
    and the run completes."""
    s3, source = dropped
    fetches, records = [0], [0]
    s3_faults.append(_once("GetObject", "fault clip.mp4", "SlowDown", 503, fetches))
    s3_faults.append(_once("PutObject", "title.json", "ServiceUnavailable", 503, records))
    state = _run(source, "s3://faults-out/retry", _config(tmp_path), "retried")
    assert state.is_completed(), state.message
    assert fetches == [1] and records == [1]  # each fault happened once
    runs = _task_runs(state, "fetch source", "title record")
    assert runs["fetch source"].run_count == 2 and runs["title record"].run_count == 2
    record = json.loads(s3.get_object(Bucket="faults-out", Key="retry/titles/retried/title.json")["Body"].read())
    assert record["status"] == "published"


def test_a_failed_run_publishes_no_record_and_leaves_the_drop(dropped: tuple[Any, str], tmp_path: Path,
                                                              s3_faults: list[Fault]) -> None:
    """Access denied on the title record is not retried: the run fails with the reason, the
    package is there but no title.json points at it, and the dropped object is untouched."""
    s3, source = dropped
    denied = [0]
    s3_faults.append(_once("PutObject", "title.json", "AccessDenied", 403, denied))
    before = s3.head_object(Bucket="drops-faults", Key="in/fault clip.mp4")["ETag"]
    state = _run(source, "s3://faults-out/denied", _config(tmp_path), "denied")
    assert state.is_failed()
    assert "access denied" in str(state.message) and "title.json" in str(state.message)
    assert _task_runs(state, "title record")["title record"].run_count == 1
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="faults-out", Prefix="denied/").get("Contents", [])]
    assert any(k.endswith("manifest.mpd") for k in keys)
    assert not any(k.endswith("title.json") for k in keys)
    assert s3.head_object(Bucket="drops-faults", Key="in/fault clip.mp4")["ETag"] == before
