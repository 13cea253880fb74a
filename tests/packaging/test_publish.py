"""Publishing a package, the title record and quarantine, on a local folder and on moto's S3."""

from __future__ import annotations

import functools
import json
import os
import threading
import time
import uuid
from fractions import Fraction
from pathlib import Path
from typing import Any

import boto3
import pytest

from reelflow.errors import SourceNotFound, StageError, StorageError, TransientStorageError
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import LocalStorage, S3Storage, Storage
from reelflow.packaging.publish import publish_package, quarantine, upload_tier, write_title_record

PREFIX = "titles/t1"

MASTER = """#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,URI="audio/en.m3u8",GROUP-ID="audio",LANGUAGE="en",NAME="en"
#EXT-X-STREAM-INF:BANDWIDTH=3300000,CODECS="avc1.64001f,mp4a.40.2",RESOLUTION=1280x720,AUDIO="audio"
video/720p_3000k.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=900000,CODECS="avc1.64001e,mp4a.40.2",RESOLUTION=640x360,AUDIO="audio"
video/360p_800k.m3u8
"""
MEDIA = """#EXTM3U
#EXT-X-TARGETDURATION:4
#EXT-X-MAP:URI="{rung}/init.mp4"
#EXTINF:4.000,
{rung}/1.m4s
#EXTINF:4.000,
{rung}/2.m4s
#EXT-X-ENDLIST
"""
SEGMENTS = [
    "video/720p_3000k/init.mp4", "video/720p_3000k/1.m4s", "video/720p_3000k/2.m4s",
    "video/360p_800k/init.mp4", "video/360p_800k/1.m4s", "video/360p_800k/2.m4s",
    "audio/en/init.mp4", "audio/en/1.m4s", "audio/en/2.m4s", "text/en.vtt",
]
PLAYLISTS = ["video/720p_3000k.m3u8", "video/360p_800k.m3u8", "audio/en.m3u8"]
MANIFESTS = ["manifest.mpd", "master.m3u8"]


@pytest.fixture
def package_dir(tmp_path: Path) -> Path:
    """A package laid out as packaging/packager.py makes it (contents are stand-ins)."""
    root = tmp_path / "package"
    for name in SEGMENTS:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(os.urandom(2000))
    for name in PLAYLISTS:
        (root / name).write_text(MEDIA.format(rung=name.removesuffix(".m3u8").split("/")[1]))
    (root / "master.m3u8").write_text(MASTER)
    (root / "manifest.mpd").write_text('<?xml version="1.0"?><MPD type="static"></MPD>\n')
    return root


@functools.cache
def admin_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    admin_client(endpoint).create_bucket(Bucket=bucket)
    return S3Storage(bucket, "out", StorageConfig(s3_endpoint_url=endpoint))


class Recording(Storage):
    """Passes calls through to a real storage and records when each write starts and ends."""

    def __init__(self, inner: Storage, fail_on: str | None = None) -> None:
        self.inner = inner
        self.url = inner.url
        self.fail_on = fail_on
        self.events: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    def check_readable(self) -> None:
        self.inner.check_readable()

    def _note(self, what: str, key: str) -> None:
        with self._lock:
            self.events.append((what, key))

    def put_file(self, local: Path, key: str, *, content_type: str | None = None) -> None:
        self._note("start", key)
        if key.endswith((".m4s", ".mp4")):
            time.sleep(0.005)  # widen the window in which a manifest could overtake a segment
        if key == self.fail_on:
            raise TransientStorageError(f"injected failure on {key}")
        self.inner.put_file(local, key, content_type=content_type)
        self._note("end", key)

    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None) -> None:
        self._note("start", key)
        self.inner.put_bytes(data, key, content_type=content_type)
        self._note("end", key)

    def url_for(self, key: str) -> str:
        return self.inner.url_for(key)

    def get_bytes(self, key: str) -> bytes:
        return self.inner.get_bytes(key)

    def download(self, key: str, dest: Path) -> Path:
        return self.inner.download(key, dest)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[str]:
        return self.inner.list(prefix)


def under(names: list[str]) -> set[str]:
    return {f"{PREFIX}/{n}" for n in names}


# --- publish_package ---------------------------------------------------------------------------


def test_publish_uploads_every_file_under_the_prefix(storage: Storage, package_dir: Path) -> None:
    keys = publish_package(package_dir, storage, PREFIX)
    everything = under(SEGMENTS + PLAYLISTS + MANIFESTS)
    assert len(keys) == len(everything)
    assert set(keys) == everything
    assert storage.list(f"{PREFIX}/") == sorted(everything)
    assert storage.get_bytes(f"{PREFIX}/master.m3u8") == (package_dir / "master.m3u8").read_bytes()
    assert storage.get_bytes(f"{PREFIX}/audio/en/2.m4s") == (package_dir / "audio/en/2.m4s").read_bytes()
    # The returned order is the upload order: media, then media playlists, then manifests.
    assert set(keys[: len(SEGMENTS)]) == under(SEGMENTS)
    assert set(keys[-len(MANIFESTS):]) == under(MANIFESTS)


@pytest.mark.parametrize("workers", [1, 4])
def test_manifests_go_up_only_after_what_they_point_at(storage: Storage, package_dir: Path,
                                                       workers: int) -> None:
    spy = Recording(storage)
    publish_package(package_dir, spy, PREFIX, workers=workers)
    assert len(spy.events) == 2 * len(SEGMENTS + PLAYLISTS + MANIFESTS)
    position = {event: i for i, event in enumerate(spy.events)}
    last_segment_end = max(position["end", k] for k in under(SEGMENTS))
    first_playlist_start = min(position["start", k] for k in under(PLAYLISTS))
    last_playlist_end = max(position["end", k] for k in under(PLAYLISTS))
    first_manifest_start = min(position["start", k] for k in under(MANIFESTS))
    assert last_segment_end < first_playlist_start
    assert last_playlist_end < first_manifest_start


def test_a_failed_segment_stops_the_publish_before_any_manifest(storage: Storage, package_dir: Path) -> None:
    spy = Recording(storage, fail_on=f"{PREFIX}/video/360p_800k/2.m4s")
    with pytest.raises(TransientStorageError, match="injected"):
        publish_package(package_dir, spy, PREFIX)
    stored = storage.list()
    assert stored  # other segments may be up; nothing points at them yet
    assert not any(k.endswith((".m3u8", ".mpd")) for k in stored)
    assert not any(what == "start" and key.endswith((".m3u8", ".mpd")) for what, key in spy.events)


def test_progress_counts_bytes_up_to_the_total(package_dir: Path, tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    publish_package(package_dir, LocalStorage(tmp_path / "store"), PREFIX,
                    progress=lambda done, total: calls.append((done, total)))
    total = sum(p.stat().st_size for p in package_dir.rglob("*") if p.is_file())
    assert calls[0] == (0, total)
    assert calls[-1] == (total, total)
    assert len(calls) == 1 + len(SEGMENTS + PLAYLISTS + MANIFESTS)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_content_types_after_publish_on_s3(s3_endpoint: str, package_dir: Path) -> None:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    admin = admin_client(s3_endpoint)
    admin.create_bucket(Bucket=bucket)
    publish_package(package_dir, S3Storage(bucket, "", StorageConfig(s3_endpoint_url=s3_endpoint)), PREFIX)
    expected = {
        "manifest.mpd": "application/dash+xml",
        "master.m3u8": "application/vnd.apple.mpegurl",
        "audio/en.m3u8": "application/vnd.apple.mpegurl",
        "video/720p_3000k/init.mp4": "video/mp4",
        "video/720p_3000k/1.m4s": "video/iso.segment",
        "audio/en/init.mp4": "audio/mp4",
        "text/en.vtt": "text/vtt",
    }
    for name, content_type in expected.items():
        assert admin.head_object(Bucket=bucket, Key=f"{PREFIX}/{name}")["ContentType"] == content_type


def test_publish_refuses_an_empty_or_missing_package(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(StageError, match="has no files"):
        publish_package(tmp_path / "empty", store, PREFIX)
    with pytest.raises(StageError, match="not a folder"):
        publish_package(tmp_path / "missing", store, PREFIX)


def test_upload_tier(tmp_path: Path) -> None:
    master = tmp_path / "m.m3u8"
    master.write_text(MASTER)
    media = tmp_path / "v.m3u8"
    media.write_text(MEDIA.format(rung="x"))
    assert upload_tier("video/1.m4s", tmp_path / "unused") == 0
    assert upload_tier("video/init.mp4", tmp_path / "unused") == 0
    assert upload_tier("video/720p.m3u8", media) == 1
    assert upload_tier("master.m3u8", master) == 2
    assert upload_tier("manifest.mpd", tmp_path / "unused") == 2


# --- title record ------------------------------------------------------------------------------


def test_title_record_is_written_last_and_reads_back(storage: Storage, package_dir: Path) -> None:
    spy = Recording(storage)
    keys = publish_package(package_dir, spy, PREFIX)
    record = {
        "title_id": "t1",
        "fps": Fraction(24000, 1001),
        "renditions": [k for k in keys if k.endswith("init.mp4")],
        "manifests": {"dash": storage.url_for(f"{PREFIX}/manifest.mpd"),
                      "hls": storage.url_for(f"{PREFIX}/master.m3u8")},
        "qc_report": Path("reports/qc.json"),
    }
    url = write_title_record(spy, PREFIX, record)
    assert url == storage.url_for(f"{PREFIX}/title.json")
    assert spy.events[-2:] == [("start", f"{PREFIX}/title.json"), ("end", f"{PREFIX}/title.json")]
    back = json.loads(storage.get_bytes(f"{PREFIX}/title.json"))
    assert back["fps"] == "24000/1001"
    assert back["qc_report"] == "reports/qc.json"
    assert back["manifests"] == record["manifests"]
    assert back["renditions"] == record["renditions"]


def test_title_record_that_is_not_json_is_refused_and_not_written(storage: Storage) -> None:
    with pytest.raises(StageError, match="title record"):
        write_title_record(storage, PREFIX, {"oops": object()})
    assert not storage.exists(f"{PREFIX}/title.json")


def test_title_record_content_type_on_s3(s3_endpoint: str) -> None:
    bucket = f"t-{uuid.uuid4().hex[:16]}"
    admin_client(s3_endpoint).create_bucket(Bucket=bucket)
    store = S3Storage(bucket, "out", StorageConfig(s3_endpoint_url=s3_endpoint))
    assert write_title_record(store, "t9", {"a": 1}) == f"s3://{bucket}/out/t9/title.json"
    head = admin_client(s3_endpoint).head_object(Bucket=bucket, Key="out/t9/title.json")
    assert head["ContentType"] == "application/json"


# --- quarantine --------------------------------------------------------------------------------


def test_quarantine_copies_and_leaves_the_source_untouched(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "studio" / "mezzanine.mov"
    source.parent.mkdir()
    data = os.urandom(50_000)
    source.write_bytes(data)
    os.utime(source, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    before = source.stat()
    spy = Recording(storage)
    report = {"errors": ["audio and video start 1.4 s apart"], "fps": Fraction(25)}

    url = quarantine(source, spy, "t1", report)

    assert url == storage.url_for("quarantine/t1")
    after = source.stat()
    assert source.read_bytes() == data
    same = ("st_mtime_ns", "st_ctime_ns", "st_size", "st_ino", "st_mode")
    assert [getattr(after, a) for a in same] == [getattr(before, a) for a in same]
    assert storage.get_bytes("quarantine/t1/mezzanine.mov") == data
    assert json.loads(storage.get_bytes("quarantine/t1/qc.json")) == {
        "errors": ["audio and video start 1.4 s apart"], "fps": "25/1"}
    # The report last: its presence means the copy is complete.
    assert [key for what, key in spy.events if what == "end"] == ["quarantine/t1/mezzanine.mov",
                                                                   "quarantine/t1/qc.json"]


@pytest.mark.parametrize("title_id", ["", "a/b", "..", "."])
def test_quarantine_refuses_a_title_id_that_is_not_one_segment(tmp_path: Path, title_id: str) -> None:
    source = tmp_path / "s.mp4"
    source.write_bytes(b"x")
    with pytest.raises(StageError, match="one path segment"):
        quarantine(source, LocalStorage(tmp_path / "store"), title_id, {})


def test_quarantine_of_a_missing_source(tmp_path: Path) -> None:
    with pytest.raises(SourceNotFound):
        quarantine(tmp_path / "gone.mp4", LocalStorage(tmp_path / "store"), "t1", {})


def test_quarantine_failure_is_a_storage_error_and_keeps_the_source(s3_endpoint: str, tmp_path: Path) -> None:
    source = tmp_path / "s.mp4"
    source.write_bytes(b"precious")
    gone = S3Storage("no-such-bucket-q", "", StorageConfig(s3_endpoint_url=s3_endpoint))
    with pytest.raises(StorageError, match="no-such-bucket-q"):
        quarantine(source, gone, "t1", {"errors": []})
    assert source.read_bytes() == b"precious"
