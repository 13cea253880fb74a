"""segments: range parsing, and serving from S3 (moto) with ranges, ETag and 416."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import boto3
import pytest

from reelflow.errors import Forbidden
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import S3Storage
from reelflow.packaging import publish
from reelflow.playback.segments import SegmentServer, check_path, parse_range


@pytest.mark.parametrize(("header", "size", "expected"), [
    ("bytes=0-9", 100, (0, 9)), ("bytes=90-", 100, (90, 99)), ("bytes=-10", 100, (90, 99)),
    ("bytes=50-500", 100, (50, 99)), ("bytes=-500", 100, (0, 99)), ("items=0-1", 100, None),
    ("bytes=0-1,5-6", 100, None), ("bytes=x-y", 100, None),
])
def test_parse_range(header: str, size: int, expected: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize("header", ["bytes=100-", "bytes=5-2", "bytes=-0"])
def test_unsatisfiable_ranges(header: str) -> None:
    with pytest.raises(ValueError):
        parse_range(header, 100)


@pytest.mark.parametrize("path", ["../x.mp4", "a/../../x.mp4", "a//b.mp4", ".hidden.mp4", "a\\b.mp4", "x.mpd",
                                  "title.json", "a/./b.m4s", "keys/abc"])
def test_check_path_refuses(path: str) -> None:
    with pytest.raises(Forbidden):
        check_path("film", "v-1", path)


def test_s3_segments_with_ranges(s3_endpoint: str, clear_title: Any, tmp_path: Path) -> None:
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket="svc-segments")
    store = S3Storage("svc-segments", "out", StorageConfig(s3_endpoint_url=s3_endpoint))
    package = clear_title.root / "titles/sintel-clear/v-test0001"
    publish.publish_package(package, store, "titles/sintel-clear/v-test0001")
    server = SegmentServer(store)
    ref = check_path("sintel-clear", "v-test0001", "video/234p_300k/1.m4s")
    data = (package / "video/234p_300k/1.m4s").read_bytes()
    whole = server.respond(ref, {})
    assert whole.status_code == 200 and whole.body == data
    assert whole.headers["content-type"] == "video/iso.segment"
    part = server.respond(ref, {"range": "bytes=4-11"})
    assert part.status_code == 206 and part.body == data[4:12]
    assert part.headers["content-range"] == f"bytes 4-11/{len(data)}"
    assert server.respond(ref, {"range": f"bytes={len(data)}-"}).status_code == 416
    assert server.respond(ref, {"if-none-match": whole.headers["etag"]}).status_code == 304
    stale = server.respond(ref, {"range": "bytes=0-3", "if-range": '"old"'})
    assert stale.status_code == 200  # If-Range with another validator: the whole file
