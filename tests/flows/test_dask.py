"""The per-shot ingest on a 2-worker local Dask cluster: tasks on the workers, files through the store,
the same title as the local thread pool makes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reelflow.encoding.encode import read_keyframes
from reelflow.errors import ConfigError
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    """Two worker processes, one thread each, on this machine; the scheduler in this process."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  silence_logs=40) as local:
        yield local


@pytest.fixture(scope="module")
def sintel_6s(sintel_fight: Path, ffmpeg: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Sintel's fight, first 6 s (a few shots): short enough for two ingests on a loaded machine."""
    out = tmp_path_factory.mktemp("clip") / "sintel-6s.mp4"
    subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(sintel_fight), "-t", "6", "-c:v", "libx264",
                    "-preset", "ultrafast", "-crf", "14", "-c:a", "copy", str(out)], check=True)
    return out


def _config(folder: Path, ladder_config: Path) -> Path:
    """``ladder_config`` with a work folder of its own (nothing reused between the runs) and small trial
    groups (so several go out to the cluster)."""
    folder.mkdir()
    text = ladder_config.read_text()
    old_work = next(line for line in text.splitlines() if line.startswith("work_dir"))
    text = text.replace(old_work, f'work_dir = "{folder / "work"}"')
    text = text.replace("[trials]\n", "[trials]\ngroup_s = 2.0\n")
    config = folder / "reelflow.toml"
    config.write_text(text)
    return config


def _ingest(clip: Path, config: Path, store: Path, dask: str | None) -> dict[str, Any]:
    from prefect.settings import PREFECT_TASKS_REFRESH_CACHE, temporary_settings

    settings = load_settings(config, orchestration={"dask_address": dask})
    # refresh: each run measures its own trials, not the other run's cached ones
    with temporary_settings({PREFECT_TASKS_REFRESH_CACHE: True}):
        record: dict[str, Any] = ingest_flow(settings)(str(clip), title_id="sintel-dask", storage=str(store),
                                                       config_file=str(config))
    return record


@pytest.fixture(scope="module")
def runs(cluster: Any, sintel_6s: Path, ladder_config: Path,
         tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same ingest on the thread pool and on the cluster; the cluster's task stream of the second."""
    base = tmp_path_factory.mktemp("dask-runs")
    local = _ingest(sintel_6s, _config(base / "local", ladder_config), base / "store-local", None)
    dask_config = _config(base / "dask", ladder_config)
    with distributed.Client(cluster.scheduler_address) as client, distributed.get_task_stream(client) as stream:
        on_dask = _ingest(sintel_6s, dask_config, base / "store-dask", cluster.scheduler_address)
        pids = client.run(os.getpid)  # worker address -> pid
    return {"local": local, "dask": on_dask, "store": base / "store-dask", "stream": stream.data,
            "pids": pids, "work": load_settings(dask_config).storage.work_dir}


def _report(record: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(Path(record["ladder"]["report"]).read_text())
    return data


def test_the_encodes_ran_on_the_workers(runs: dict[str, Any]) -> None:
    stream = runs["stream"]
    workers = {t["worker"] for t in stream}
    assert workers <= set(runs["pids"]) and len(workers) == 2  # both worker processes had work
    assert os.getpid() not in runs["pids"].values()
    names = " ".join(str(t["key"]) for t in stream)
    for task in ("trial_group_task", "encode_pieces_task", "join_rung_task", "rung_vmaf_task"):
        assert task in names, (task, names[:300])


def test_source_and_encodes_went_through_the_store(runs: dict[str, Any]) -> None:
    sha = runs["dask"]["source"]["sha256"]
    work = runs["store"] / "work" / sha[:16]
    assert (work / "source.mp4").is_file() and (work / "source.mp4.sha256").read_text().strip() == sha
    video = [r for r in runs["dask"]["renditions"] if r["kind"] == "video"]
    report = json.loads(Path(runs["dask"]["ladder"]["report"]).read_text())
    used = {r["file"]["name"] for r in report["rungs"]}
    everything = sorted(work.glob("encode-*/*p_*k-*.mp4"))
    stored = [p for p in everything if p.name in used]
    assert len(stored) == len(video) >= 2
    # only the rungs kept are joined: the first encodes of rungs encoded again were scored from their pieces
    assert len(everything) == len(stored)
    assert len(list(work.glob("encode-*/pieces/*.mp4"))) >= len(video)
    # the cheapest rung's quick check ran on a worker too, on the pieces it fetched from the store
    assert report["checks"][0]["quick_vmaf"] is not None and report["checks"][0]["cpu_s"] > 0
    # the workers encoded into their own cache; the flow's copies came back from the store
    flow_copies = sorted(p for p in runs["work"].glob(f"{sha[:16]}/encode-*/*p_*k-*.mp4") if p.name in used)
    assert [p.name for p in flow_copies] == [p.name for p in stored]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(flow_copies, stored, strict=True))


def test_the_cluster_makes_the_same_title_as_the_thread_pool(runs: dict[str, Any]) -> None:
    """What x264 makes deterministically: the ladder, every plan number, the keyframes and frame counts.

    The encoded bytes (so rung sizes to the byte, delivered VMAF) may differ: x264's frame threads
    are not deterministic here, in either runner.
    """
    local, on_dask = _report(runs["local"]), _report(runs["dask"])
    assert on_dask["units"] == local["units"]
    assert on_dask["analysis"]["heights_tried"] == local["analysis"]["heights_tried"]

    def plan(report: dict[str, Any]) -> list[Any]:
        return [(r["name"], r["width"], r["height"], r["planned"], [s["crf"] for s in r["shots"]])
                for r in report["rungs"]]

    assert plan(on_dask) == plan(local)
    trials = [[(t["height"], t["crf"], t["kbps"], t["vmaf"]) for t in s["trials"]] for s in on_dask["shots"]]
    assert trials == [[(t["height"], t["crf"], t["kbps"], t["vmaf"]) for t in s["trials"]] for s in local["shots"]]

    def video(record: dict[str, Any]) -> list[Any]:
        return [(r["name"], r["width"], r["height"], r["frames"]) for r in record["renditions"] if r["kind"] == "video"]

    assert video(runs["dask"]) == video(runs["local"])
    assert on_dask["shots"] and runs["dask"]["shots"]["cuts"] == runs["local"]["shots"]["cuts"]
    for rung in on_dask["rungs"]:
        match = next(r for r in local["rungs"] if r["name"] == rung["name"])
        assert rung["delivered"]["frames_scored"] == match["delivered"]["frames_scored"] == 144
        assert rung["delivered"]["vmaf"] == pytest.approx(match["delivered"]["vmaf"], abs=1.0)
    cuts = runs["dask"]["shots"]["cuts"]
    sha = runs["dask"]["source"]["sha256"]
    for path in sorted(runs["work"].glob(f"{sha[:16]}/encode-*/*p_*k-*.mp4")):
        frames, keys = read_keyframes(path)
        assert frames == 144 and keys == sorted({0, *cuts, 96}), path.name


def test_an_unreachable_scheduler_is_one_clear_error() -> None:
    settings = load_settings(None, orchestration={"dask_address": "tcp://127.0.0.1:9"})
    with pytest.raises(ConfigError, match=r"no Dask scheduler answers at tcp://127\.0\.0\.1:9 "):
        ingest_flow(settings)
    with pytest.raises(ConfigError, match="not tcp://HOST:PORT"):
        ingest_flow(load_settings(None, orchestration={"dask_address": "127.0.0.1:8786"}))


def test_the_cli_refuses_an_unreachable_scheduler_before_any_work(sintel_fight: Path, tmp_path: Path) -> None:
    import sys

    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(sintel_fight), "--storage",
                           str(tmp_path / "store"), "--no-drm", "--dask", "tcp://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "no Dask scheduler answers at tcp://127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "store").exists()
