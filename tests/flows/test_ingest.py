"""The ingest flow end to end on real media: DASH and HLS that decode, resume, quarantine, S3, CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.client.schemas.objects import State

from reelflow.encoding.encode import read_keyframes
from reelflow.errors import InvalidMedia, QCFailed
from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings


def run_flow(source: Path, storage: str, config: Path, title_id: str | None = None) -> dict[str, Any]:
    record: dict[str, Any] = run_flow_state(source, storage, config, title_id).result()
    return record


def run_flow_state(source: Path, storage: str, config: Path, title_id: str | None = None) -> State[Any]:
    flow = ingest_flow(load_settings(config))
    state: State[Any] = flow(str(source), title_id=title_id, storage=storage, config_file=str(config),
                             return_state=True)
    return state


@pytest.fixture(scope="module")
def sintel_run(
    sintel_fight: Path, fast_config: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, State[Any]]:
    """Sintel (240 frames, 10 s, 7 cuts, no audio) ingested once into a local store."""
    store = tmp_path_factory.mktemp("store")
    return store, run_flow_state(sintel_fight, str(store), fast_config, title_id="sintel")


@pytest.fixture(scope="module")
def sintel_ingest(sintel_run: tuple[Path, State[Any]]) -> tuple[Path, dict[str, Any]]:
    store, state = sintel_run
    return store, state.result()


def test_stage_logs_reach_the_prefect_api(sintel_run: tuple[Path, State[Any]]) -> None:
    """What the UI shows: task logs and the stage modules' own logger lines, for this flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    _, state = sintel_run
    run_id = state.state_details.flow_run_id
    APILogHandler().flush()  # logs travel to the API in background batches; wait for them
    with get_client(sync_client=True) as client:
        logs = client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])), limit=200)
    names = {log.name for log in logs}
    messages = " ".join(log.message for log in logs)
    assert "reelflow.packaging.packager" in names  # a stage module's logger, not only Prefect's
    assert "360p_365k:" in messages and "reusing" not in messages


def test_dash_and_hls_decode_with_the_source_frames_and_duration(
    sintel_ingest: tuple[Path, dict[str, Any]], decode: Callable[..., dict[str, float]]
) -> None:
    store, record = sintel_ingest
    title = Path(record["package"])
    assert title.parent == store / "titles" / "sintel" and title.name.startswith("v-")
    assert record["manifests"]["dash"] == str(title / "manifest.mpd")
    rungs = [r for r in record["renditions"] if r["kind"] == "video"]
    assert [(r["width"], r["height"]) for r in rungs] == [(416, 234), (640, 360)]
    for index in range(len(rungs)):
        for manifest in ("manifest.mpd", "master.m3u8"):
            result = decode(title / manifest, "-map", f"0:v:{index}")
            assert result["frames"] == 240, (manifest, index)
            assert result["seconds"] == pytest.approx(10.0, abs=0.05), (manifest, index)


def test_title_record_is_complete_and_written_last(
    sintel_ingest: tuple[Path, dict[str, Any]], truth: dict[str, Any]
) -> None:
    store, record = sintel_ingest
    title = store / "titles" / "sintel"
    package = Path(record["package"])
    on_disk = json.loads((title / "title.json").read_text())
    assert on_disk == record
    assert record["source"]["sha256"] == truth["03_sintel_fight_10s_640x360.mp4"]["sha256"]
    assert record["qc"]["verdict"] in ("pass", "warning")
    assert json.loads((package / "qc.json").read_text())["verdict"] == record["qc"]["verdict"]
    assert record["shots"]["count"] == len(json.loads((package / "shots.json").read_text())["shots"])
    assert [r["kind"] for r in record["renditions"]] == ["video", "video"]  # Sintel's clip has no audio
    newest = max((p for p in title.rglob("*") if p.is_file() and p.name != "title.json"),
                 key=lambda p: p.stat().st_mtime_ns)
    assert (title / "title.json").stat().st_mtime_ns > newest.stat().st_mtime_ns


def test_every_rung_has_a_keyframe_at_every_shot_start_and_grid_point(
    sintel_ingest: tuple[Path, dict[str, Any]], fast_config: Path
) -> None:
    _, record = sintel_ingest
    shot_starts = [0, *record["shots"]["cuts"]]
    wanted = sorted({*shot_starts, 0, 96, 192})  # 4 s grid at 24 fps
    # this title's own work folder: other tests of the session share the config's work_dir
    work = load_settings(fast_config).storage.work_dir / record["source"]["sha256"][:16]
    encodes = sorted(work.rglob("encode-*/*p_*.mp4"))
    assert len(encodes) == 2
    for path in encodes:
        frames, keys = read_keyframes(path)
        assert frames == 240 and keys == wanted, path.name


def test_rerun_reuses_finished_encodes(sintel_fight: Path, fast_config: Path,
                                       sintel_ingest: tuple[Path, dict[str, Any]]) -> None:
    store, first = sintel_ingest
    work = load_settings(fast_config).storage.work_dir / first["source"]["sha256"][:16]
    encodes = sorted(work.rglob("encode-*/*.mp4"))
    assert len(encodes) == 2
    before = {p: p.stat().st_mtime_ns for p in encodes}
    state = run_flow_state(sintel_fight, str(store), fast_config, title_id="sintel")
    second = state.result()
    assert {p: p.stat().st_mtime_ns for p in encodes} == before  # not encoded again
    assert second["renditions"] == first["renditions"] and second["manifests"] == first["manifests"]
    # QC and shots came from Prefect's cache, keyed on the source's hash and the stage config
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[state.state_details.flow_run_id])))
    states = {run.name.rsplit("-", 1)[0]: run.state.name for run in runs if run.state}
    assert states["qc"] == "Cached" and states["shots"] == "Cached"


def test_qc_error_quarantines_and_keeps_the_source(lavfi_clip: Any, fast_config: Path, tmp_path: Path) -> None:
    """Audio starting 2 s after the video is a QC error: no package, a copy and its report in quarantine."""
    made = lavfi_clip("late_audio.mp4", "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=4",
                      "-itsoffset", "2", "-f", "lavfi", "-i", "sine=frequency=440:duration=2:sample_rate=48000",
                      "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    late = tmp_path / "late_audio.mp4"
    late.write_bytes(made.read_bytes())
    before = (late.read_bytes(), late.stat().st_mtime_ns)
    store = tmp_path / "store"
    with pytest.raises(QCFailed) as caught:
        run_flow(late, str(store), fast_config, title_id="late")
    assert "av_start_offset" in str(caught.value)
    assert (late.read_bytes(), late.stat().st_mtime_ns) == before  # the source is never touched
    quarantined = store / "quarantine" / "late"
    assert (quarantined / late.name).read_bytes() == before[0]
    assert json.loads((quarantined / "qc.json").read_text())["verdict"] == "error"
    assert not (store / "titles" / "late").exists()


def test_bad_source_fails_before_any_work(fast_config: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.mov"
    text.write_text("not a video")
    with pytest.raises(InvalidMedia, match="not a media file"):
        run_flow(text, str(tmp_path / "store"), fast_config)
    assert not (tmp_path / "store").exists()


def test_ingest_to_s3(lavfi_clip: Any, fast_config: Path, s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4 s clip with a cut and a tone, published to moto's S3: segments, manifests, title record."""
    source = lavfi_clip("cut_tone.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=2",
                        "-f", "lavfi", "-i", "smptehdbars=size=640x360:rate=25:duration=2",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=4:sample_rate=48000",
                        "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0,format=yuv420p[v]",
                        "-map", "[v]", "-map", "2:a", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="ingest-out")
    monkeypatch.setenv("REELFLOW_STORAGE__S3_ENDPOINT_URL", s3_endpoint)
    record = run_flow(source, "s3://ingest-out/vod", fast_config, title_id="cut-tone")
    package = record["package"].removeprefix("s3://ingest-out/")
    assert package.startswith("vod/titles/cut-tone/v-")
    assert record["manifests"]["dash"] == f"s3://ingest-out/{package}/manifest.mpd"
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket="ingest-out", Prefix="vod/titles/cut-tone/")["Contents"]}
    assert {"vod/titles/cut-tone/title.json", f"{package}/manifest.mpd", f"{package}/master.m3u8",
            f"{package}/qc.json"} <= keys
    assert any(k.endswith(".m4s") and "/audio/" in k for k in keys)
    head = s3.head_object(Bucket="ingest-out", Key=f"{package}/manifest.mpd")
    assert head["ContentType"] == "application/dash+xml"
    stored = json.loads(s3.get_object(Bucket="ingest-out", Key="vod/titles/cut-tone/title.json")["Body"].read())
    assert stored["title_id"] == "cut-tone"
    assert [r["kind"] for r in stored["renditions"]] == ["video", "video", "audio"]


def test_audio_stays_in_sync_and_ends_with_the_video(
    lavfi_clip: Any, fast_config: Path, tmp_path: Path, decode: Callable[..., dict[str, float]]
) -> None:
    """Video 0.5 s after the audio, audio 1.5 s too long: QC warns, and the published audio is cut
    to the video's 8 s span in DASH and HLS alike."""
    source = lavfi_clip("late_video.mp4", "-itsoffset", "0.5", "-f", "lavfi",
                        "-i", "testsrc2=size=640x360:rate=24:duration=8",
                        "-f", "lavfi", "-i", "sine=frequency=440:duration=9.5:sample_rate=48000",
                        "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac")
    record = run_flow(source, str(tmp_path / "store"), fast_config, title_id="late-video")
    assert {"av_start_offset", "duration_mismatch"} <= set(record["qc"]["warnings"])
    package = Path(record["package"])
    for manifest in ("manifest.mpd", "master.m3u8"):
        video = decode(package / manifest, "-map", "0:v:0")
        audio = decode(package / manifest, "-map", "0:a:0")
        assert video["frames"] == 192, manifest  # every frame, none padded at the head
        assert audio["seconds"] == pytest.approx(8.0, abs=0.1), manifest


def test_republishing_a_title_leaves_the_old_package_intact(
    lavfi_clip: Any, fast_config: Path, tmp_path: Path
) -> None:
    """New content under the same title id goes to a new folder; title.json moves to it last."""
    store = tmp_path / "store"
    first_clip = lavfi_clip("ten_s.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=10",
                            "-c:v", "libx264", "-preset", "ultrafast")
    second_clip = lavfi_clip("six_s.mp4", "-f", "lavfi", "-i", "smptehdbars=size=640x360:rate=25:duration=6",
                             "-c:v", "libx264", "-preset", "ultrafast")
    first = run_flow(first_clip, str(store), fast_config, title_id="reissue")
    before = {p: p.read_bytes() for p in Path(first["package"]).rglob("*") if p.is_file()}
    second = run_flow(second_clip, str(store), fast_config, title_id="reissue")
    assert second["package"] != first["package"]
    assert {p: p.read_bytes() for p in before} == before  # nothing a reader of the old record uses changed
    current = json.loads((store / "titles" / "reissue" / "title.json").read_text())
    assert current["package"] == second["package"] and current["source"]["sha256"] != first["source"]["sha256"]


def test_cli_ingest_json(sintel_fight: Path, fast_config: Path, prefect_server: str, tmp_path: Path) -> None:
    """`reelflow ingest SOURCE --json` prints the title record and leaves a playable DASH and HLS."""
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "REELFLOW_CONFIG": str(fast_config),
           "PREFECT_LOCAL_STORAGE_PATH": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(sintel_fight), "--json",
                           "--storage", str(tmp_path / "out")], capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    record = json.loads(done.stdout)
    assert record["title_id"] == "03_sintel_fight_10s_640x360"
    assert Path(record["manifests"]["dash"]).is_file() and Path(record["manifests"]["hls"]).is_file()


def test_cli_bad_input_is_one_line_and_non_zero(prefect_server: str, tmp_path: Path) -> None:
    env = {**os.environ, "PREFECT_API_URL": prefect_server}
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(tmp_path / "missing.mxf")],
                          capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 1
    assert "reelflow: error:" in done.stderr and "no such file" in done.stderr
    assert "Traceback" not in done.stderr
