"""QC and shot detection split by time in the flow: chunk tasks on the thread pool and on a 2-worker Dask
cluster, cached per chunk, merged into what a whole pass finds."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prefect import flow

from reelflow.encoding import qc, shots
from reelflow.encoding.probe import probe
from reelflow.flows.ingest import hash_task, probe_task, qc_stage, shots_stage
from reelflow.infra.settings import Settings, load_settings
from reelflow.infra.storage import open_storage

LavfiMaker = Callable[..., Path]
distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def source(tears_of_steel: Path, lavfi_clip: LavfiMaker) -> Path:
    """Tears of Steel (three cuts) with frames 85-139 black and 150-222 frozen, a keyframe a second,
    and a tone: with 2 s chunks both runs and the cut at frame 185 lie across or near chunk edges."""
    return lavfi_clip(
        "split_flow_source.mp4", "-i", str(tears_of_steel), "-f", "lavfi", "-i", "sine=f=1000:r=48000:d=10",
        "-filter_complex", "[0:v]drawbox=c=black:t=fill:enable='between(n,85,139)',split[a][b];"
                           "[a][b]freezeframes=first=150:last=222:replace=150[v]",
        "-map", "[v]", "-map", "1:a", "-c:v", "libx264", "-preset", "ultrafast", "-qp", "0",
        "-x264-params", "keyint=24:min-keyint=24", "-c:a", "aac",
    )


def _settings(tmp: Path, chunk_s: float) -> Settings:
    return load_settings(qc={"chunk_s": chunk_s}, shots={"chunk_s": chunk_s},
                         storage={"work_dir": str(tmp / "work")})


@flow(name="split analysis")
def analyse(source: str, settings: Settings, store_url: str) -> dict[str, Any]:
    path = Path(source)
    info = probe_task(path)
    sha = hash_task(path)
    store = open_storage(store_url, settings.storage)
    report = qc_stage(path, sha, settings, info, store)
    return {"qc": report, "shots": shots_stage(path, sha, settings, info, store).to_dict()}


@pytest.fixture(scope="module")
def whole(source: Path) -> dict[str, Any]:
    settings = load_settings()
    return {"qc": qc.run_qc(source, settings.qc, conform=settings.conform).to_dict(),
            "shots": shots.detect_shots(source, settings.shots).to_dict()}


def _assert_same(split: dict[str, Any], whole: dict[str, Any]) -> None:
    assert split["shots"] == whole["shots"]
    assert split["qc"]["checks"] == whole["qc"]["checks"] and split["qc"]["verdict"] == whole["qc"]["verdict"]
    got, want = split["qc"]["measurements"], whole["qc"]["measurements"]
    assert got["video"]["idet"] == want["video"]["idet"] and got["audio"] == want["audio"]
    assert len(got["chunks"]) == 5


def test_thread_pool_split_equals_whole_and_is_cached_per_chunk(source: Path, whole: dict[str, Any],
                                                                tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, 2.0)
    assert len(qc.qc_chunks(probe(source), settings.qc)) == 5
    split = analyse(str(source), settings, str(tmp_path / "store"))
    _assert_same(split, whole)

    def gone(*_: Any, **__: Any) -> Any:
        raise AssertionError("a chunk was measured again")

    # Again: every chunk (and the sound pass) comes from the cache, so nothing is decoded.
    monkeypatch.setattr(qc, "measure_chunk", gone)
    monkeypatch.setattr(qc, "measure_audio", gone)
    monkeypatch.setattr(shots, "detect_chunk_cuts", gone)
    assert analyse(str(source), settings, str(tmp_path / "store")) == split


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as local:
        yield local


@pytest.mark.slow
def test_dask_workers_take_the_chunks(source: Path, whole: dict[str, Any], cluster: Any, tmp_path: Path) -> None:
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings
    from prefect_dask.task_runners import DaskTaskRunner

    settings = _settings(tmp_path, 2.0)
    on_dask = analyse.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
    with distributed.Client(cluster.scheduler_address) as client, distributed.get_task_stream(client) as stream, \
            temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):   # measured on the workers, not from the cache
        split = on_dask(str(source), settings, str(tmp_path / "store"))
        pids = client.run(os.getpid)
    _assert_same(split, whole)
    names = [str(t["key"]) for t in stream.data]
    assert sum("qc_chunk_task" in n for n in names) == 5 and sum("shots_chunk_task" in n for n in names) == 5
    assert {t["worker"] for t in stream.data} == set(pids)      # both workers had chunks
    assert any((tmp_path / "store" / "work").glob("*/source.mp4"))  # the workers read the staged copy
