"""remote: s3:// source URLs, and fetching dropped objects whole and verified (moto's S3 server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from reelflow.errors import ConfigError, StorageError
from reelflow.infra.remote import fetch_s3_object, parse_s3_url
from reelflow.infra.settings import StorageConfig


@pytest.fixture
def bucket(s3_endpoint: str) -> tuple[Any, StorageConfig]:
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    if "drops-remote" not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket="drops-remote")
    return s3, StorageConfig(s3_endpoint_url=s3_endpoint)


def test_urls_keep_the_key_as_stored() -> None:
    assert parse_s3_url("s3://drops/in/My Movie+1%.mxf").key == "in/My Movie+1%.mxf"
    assert parse_s3_url("s3://drops", key_required=False).key == ""
    for bad in ("http://drops/x", "s3://Drops/x", "s3://drops/", "s3://drops/folder/"):
        with pytest.raises(ConfigError):
            parse_s3_url(bad)


def test_fetch_verifies_and_reuses(bucket: tuple[Any, StorageConfig], tmp_path: Path) -> None:
    s3, config = bucket
    data = os.urandom(300_000)
    s3.put_object(Bucket="drops-remote", Key="in/a movie+1.mp4", Body=data)
    path = fetch_s3_object("s3://drops-remote/in/a movie+1.mp4", tmp_path, config)
    assert path.read_bytes() == data and path.name == "a movie+1.mp4"
    inode = path.stat().st_ino
    again = fetch_s3_object("s3://drops-remote/in/a movie+1.mp4", tmp_path, config)
    assert again == path and again.stat().st_ino == inode  # content-addressed: fetched once
    assert not list(path.parent.glob("*.partial"))


def test_multipart_etag_is_checked(bucket: tuple[Any, StorageConfig], tmp_path: Path) -> None:
    s3, config = bucket
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 << 20))
    s3.upload_file(str(big), "drops-remote", "in/big.mxf",
                   Config=TransferConfig(multipart_threshold=5 << 20, multipart_chunksize=5 << 20))
    assert s3.head_object(Bucket="drops-remote", Key="in/big.mxf")["ETag"].endswith('-3"')
    path = fetch_s3_object("s3://drops-remote/in/big.mxf", tmp_path / "work", config)
    assert path.read_bytes() == big.read_bytes()


def test_a_partial_fetch_resumes(bucket: tuple[Any, StorageConfig], tmp_path: Path) -> None:
    s3, config = bucket
    data = os.urandom(200_000)
    s3.put_object(Bucket="drops-remote", Key="in/resume.mp4", Body=data)
    first = fetch_s3_object("s3://drops-remote/in/resume.mp4", tmp_path, config)
    # As a crash would leave it: the first 70,000 bytes under the partial name, no final file.
    partial = first.with_name(first.name + ".partial")
    partial.write_bytes(data[:70_000])
    first.unlink()
    ranges: list[str] = []

    def spy(params: dict[str, Any], **_: Any) -> None:
        ranges.append(params.get("Range", ""))

    client = boto3.client("s3", endpoint_url=config.s3_endpoint_url, region_name="us-east-1")
    client.meta.events.register("provide-client-params.s3.GetObject", spy)
    path = fetch_s3_object("s3://drops-remote/in/resume.mp4", tmp_path, config, client=client)
    assert path.read_bytes() == data and ranges == ["bytes=70000-"]


def test_a_wrong_partial_is_refused_and_dropped(bucket: tuple[Any, StorageConfig], tmp_path: Path) -> None:
    s3, config = bucket
    data = os.urandom(50_000)
    s3.put_object(Bucket="drops-remote", Key="in/wrong.mp4", Body=data)
    first = fetch_s3_object("s3://drops-remote/in/wrong.mp4", tmp_path, config)
    first.unlink()
    first.with_name(first.name + ".partial").write_bytes(b"x" * 1000)  # not the object's bytes
    with pytest.raises(StorageError, match="does not match the object"):
        fetch_s3_object("s3://drops-remote/in/wrong.mp4", tmp_path, config)
    assert fetch_s3_object("s3://drops-remote/in/wrong.mp4", tmp_path, config).read_bytes() == data


def test_a_replaced_object_is_not_fetched_in_place_of_the_drop(bucket: tuple[Any, StorageConfig],
                                                                tmp_path: Path) -> None:
    s3, config = bucket
    s3.put_object(Bucket="drops-remote", Key="in/replaced.mp4", Body=b"old")
    with pytest.raises(StorageError, match="replaced since it was dropped"):
        fetch_s3_object("s3://drops-remote/in/replaced.mp4", tmp_path, config, etag="0" * 32)


def test_missing_object_and_bucket(bucket: tuple[Any, StorageConfig], tmp_path: Path) -> None:
    _, config = bucket
    with pytest.raises(StorageError, match="no such object"):
        fetch_s3_object("s3://drops-remote/in/none.mp4", tmp_path, config)
    with pytest.raises(StorageError, match="does not exist"):
        fetch_s3_object("s3://no-such-bucket-here/x.mp4", tmp_path, config)
