"""A Dask worker reads only the byte ranges of the frames its task needs (flows/workfiles.py)."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

import boto3
import pytest

from reelflow.encoding.probe import probe
from reelflow.encoding.vmaf import seek_s
from reelflow.flows.workfiles import byte_ranges, merge_ranges, source_name, stage_source, subtract_ranges
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import open_storage


def test_ranges_merge_and_subtract() -> None:
    assert merge_ranges([(10, 20), (0, 5), (18, 30), (40, 50)], 0) == [(0, 5), (10, 30), (40, 50)]
    assert merge_ranges([(0, 5), (8, 10)], 3) == [(0, 10)]
    assert subtract_ranges([(0, 100)], [(10, 20), (50, 120)]) == [(0, 10), (20, 50)]
    assert subtract_ranges([(0, 10)], [(0, 10)]) == []


def test_a_frame_range_takes_its_gop_from_the_keyframe_before_to_the_one_after() -> None:
    """Decode order I0 P3 B1 B2 | I4 P7 B5 B6 | I8 ..., each packet 100 bytes after a 50-byte moov."""
    frames = [0, 3, 1, 2, 4, 7, 5, 6, 8, 11, 9, 10]
    packets = [[50 + 100 * i, 100, int(f % 4 == 0), f] for i, f in enumerate(frames)]
    index = {"size": 1250, "boxes": [[0, 50]], "packets": packets}
    assert byte_ranges(index, 5, 6, gap=0) == [(0, 50), (450, 850)]      # frame 5: its GOP, I4 to I8
    assert byte_ranges(index, 3, 5, gap=0) == [(0, 50), (50, 850)] or \
        byte_ranges(index, 3, 5, gap=0) == [(0, 850)]                      # frames 3 and 4: both GOPs
    assert byte_ranges(index, 0, 12, gap=0) == [(0, 1250)]
    assert byte_ranges(index, 20, 30, gap=0) == [(0, 50)]                 # past the end: the boxes only
    assert byte_ranges(index, 5, 6) == [(0, 850)]                         # closer than RANGE_GAP: one request


@pytest.fixture(scope="module")
def gops(sintel_fight: Path, lavfi_clip: Any) -> Path:
    """Sintel with a keyframe every second and B-frames (the clip itself is one 10 s GOP), plus its audio-less mux."""
    made: Path = lavfi_clip("sintel_gop24.mp4", "-i", str(sintel_fight), "-c:v", "libx264", "-preset", "ultrafast",
                            "-g", "24", "-bf", "2", "-crf", "18")
    return made


@pytest.fixture(scope="module")
def staged(s3_endpoint: str, gops: Path) -> dict[str, Any]:
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="ranges")
    config = StorageConfig(s3_endpoint_url=s3_endpoint)
    store = open_storage("s3://ranges/store", config)
    sha = hashlib.sha256(gops.read_bytes()).hexdigest()
    return {"work": stage_source(gops, store, config, sha), "store": store, "config": config}


def _frames_md5(path: Path, first: int, count: int, ffmpeg: str) -> list[str]:
    """Per-frame MD5 of ``count`` decoded frames from ``first``, seeked exactly as the stages seek."""
    info = probe(path)
    done = subprocess.run([ffmpeg, "-v", "error", "-seek_timestamp", "1", "-ss",
                           f"{seek_s(first, info.video.fps, info.video.start_s):.6f}", "-i", str(path),
                           "-map", "0:v", "-frames:v", str(count), "-f", "framemd5", "-"],
                          capture_output=True, text=True, check=True)
    return [line.rsplit(",", 1)[-1].strip() for line in done.stdout.splitlines() if not line.startswith("#")]


def test_a_worker_fetches_only_its_frames_and_decodes_them_as_from_the_whole_file(
        staged: dict[str, Any], gops: Path, ffmpeg: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sintel_fight = gops
    monkeypatch.chdir(tmp_path)
    work = staged["work"].__class__(staged["work"].storage_url,
                                    staged["config"].model_copy(update={"work_dir": tmp_path / "worker"}),
                                    staged["work"].sha)
    name = source_name(sintel_fight)
    sparse = work.fetch_frames(name, 100, 150)
    assert sparse != sintel_fight and sparse.stat().st_size == sintel_fight.stat().st_size
    fetched = json.loads(sparse.with_name(sparse.name + ".json").read_text())
    got = sum(b - a for a, b in fetched)
    assert got < 0.6 * sintel_fight.stat().st_size, (got, sintel_fight.stat().st_size)
    assert _frames_md5(sparse, 100, 50, ffmpeg) == _frames_md5(sintel_fight, 100, 50, ffmpeg)

    # a second task on the same worker fetches only what it lacks, and both ranges decode
    again = work.fetch_frames(name, 200, 240)
    assert again == sparse
    assert _frames_md5(sparse, 200, 40, ffmpeg) == _frames_md5(sintel_fight, 200, 40, ffmpeg)
    assert _frames_md5(sparse, 100, 50, ffmpeg) == _frames_md5(sintel_fight, 100, 50, ffmpeg)


def test_a_folder_store_is_read_in_place(sintel_fight: Path, tmp_path: Path) -> None:
    config = StorageConfig(work_dir=tmp_path / "worker")
    store = open_storage(str(tmp_path / "store"), config)
    work = stage_source(sintel_fight, store, config, "ab" * 32)
    path = work.fetch_frames(source_name(sintel_fight), 0, 10)
    assert path == store.local_path(work.key(source_name(sintel_fight)))
    assert not (tmp_path / "worker").exists()      # nothing copied to the worker
