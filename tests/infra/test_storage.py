"""Storage backends (local folder, S3 on moto's server) with the same test bodies, and error translation."""

from __future__ import annotations

import errno
import functools
import hashlib
import http.server
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore import exceptions as bx

from reelflow.errors import ConfigError, StorageError, TransientStorageError
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import (
    BOTO_MAX_ATTEMPTS,
    LocalStorage,
    S3Storage,
    Storage,
    content_type_for,
    open_storage,
    translate_os_error,
    translate_s3_error,
)

MiB = 1 << 20


def s3_config(endpoint: str) -> StorageConfig:
    # The smallest threshold S3 allows, so an 11 MB file is three parts.
    return StorageConfig(s3_endpoint_url=endpoint, multipart_threshold_mb=5, multipart_chunk_mb=5)


@functools.cache
def admin_client(endpoint: str) -> Any:
    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")


def new_bucket(endpoint: str) -> str:
    name = f"t-{uuid.uuid4().hex[:16]}"
    admin_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    """An empty store: a folder in tmp, or a fresh bucket (under a prefix) on the moto server."""
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    endpoint: str = request.getfixturevalue("s3_endpoint")
    return S3Storage(new_bucket(endpoint), "titles/run1", s3_config(endpoint))


@pytest.fixture
def s3(s3_endpoint: str) -> S3Storage:
    return S3Storage(new_bucket(s3_endpoint), "out", s3_config(s3_endpoint))


# --- both backends -----------------------------------------------------------------------------


def test_bytes_round_trip_and_overwrite(storage: Storage) -> None:
    storage.put_bytes(b"first", "a/b/c.json")
    assert storage.get_bytes("a/b/c.json") == b"first"
    storage.put_bytes(b"second", "a/b/c.json")
    assert storage.get_bytes("a/b/c.json") == b"second"
    assert storage.exists("a/b/c.json")
    assert not storage.exists("a/b/other.json")
    assert not storage.exists("a/b")  # a "folder" is not an object


def test_file_round_trip(storage: Storage, tmp_path: Path) -> None:
    src = tmp_path / "in.m4s"
    src.write_bytes(os.urandom(300_000))
    storage.put_file(src, "video/720p/1.m4s")
    dest = storage.download("video/720p/1.m4s", tmp_path / "deep" / "out.m4s")
    assert dest == tmp_path / "deep" / "out.m4s"
    assert dest.read_bytes() == src.read_bytes()


def test_list_is_relative_sorted_and_a_string_prefix(storage: Storage) -> None:
    for key in ["video/720p/2.m4s", "video/720p/1.m4s", "video/720p.m3u8", "video/1080p/1.m4s",
                "audio/en/1.m4s", "manifest.mpd"]:
        storage.put_bytes(b"x", key)
    assert storage.list() == ["audio/en/1.m4s", "manifest.mpd", "video/1080p/1.m4s", "video/720p.m3u8",
                              "video/720p/1.m4s", "video/720p/2.m4s"]
    assert storage.list("video/720p/") == ["video/720p/1.m4s", "video/720p/2.m4s"]
    # Plain string prefix, as S3 does it: "video/720p" also matches the playlist beside the folder.
    assert storage.list("video/720p") == ["video/720p.m3u8", "video/720p/1.m4s", "video/720p/2.m4s"]
    assert storage.list("vid") == storage.list("video")
    assert storage.list("nothing/here/") == []


def test_sizes_come_without_reading_the_objects(storage: Storage) -> None:
    storage.put_bytes(bytes(1234), "video/720p/1.m4s")
    storage.put_bytes(bytes(10), "video/720p/2.m4s")
    storage.put_bytes(b"", "video/720p.m3u8")
    storage.put_bytes(bytes(7), "audio/en/1.m4s")
    assert storage.size("video/720p/1.m4s") == 1234 and storage.size("video/720p.m3u8") == 0
    assert storage.sizes("video/720p") == {"video/720p.m3u8": 0, "video/720p/1.m4s": 1234, "video/720p/2.m4s": 10}
    assert storage.sizes("nothing/") == {}
    with pytest.raises(StorageError, match=r"video/720p/3\.m4s.*no such object"):
        storage.size("video/720p/3.m4s")
    with pytest.raises(StorageError, match=r"no such object"):
        storage.size("video/720p")                     # a "folder" is not an object


def test_missing_key_is_a_storage_error_naming_the_key(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"nothing/here\.json.*no such object") as info:
        storage.get_bytes("nothing/here.json")
    assert not isinstance(info.value, TransientStorageError | KeyError)
    with pytest.raises(StorageError, match=r"nothing/here\.json"):
        storage.download("nothing/here.json", tmp_path / "x")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize("key", ["", "/abs", "a//b", "a/../../etc/passwd", "./a", "a/.", "a/.reelflow-tmp-1"])
def test_bad_keys_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(StorageError, match="invalid storage key"):
        storage.put_bytes(b"x", key)


def test_url_for(storage: Storage) -> None:
    url = storage.url_for("video/1.m4s")
    assert url.startswith(storage.url)
    assert url.endswith("/video/1.m4s")


def test_local_error_on_the_sending_side_is_a_storage_error(storage: Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"missing\.mp4") as info:
        storage.put_file(tmp_path / "missing.mp4", "x.mp4")
    assert isinstance(info.value.__cause__, FileNotFoundError)


# --- S3 specifics ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "expected"), [
    ("manifest.mpd", "application/dash+xml"),
    ("master.m3u8", "application/vnd.apple.mpegurl"),
    ("video/720p/1.m4s", "video/iso.segment"),
    ("video/720p/init.mp4", "video/mp4"),
    ("audio/en/init.mp4", "audio/mp4"),
    ("subs/en.vtt", "text/vtt"),
    ("title.json", "application/json"),
    ("ladder.png", "image/png"),
    ("source.mxf", "application/octet-stream"),
])
def test_content_types_as_stored(s3: S3Storage, tmp_path: Path, key: str, expected: str) -> None:
    local = tmp_path / "f"
    local.write_bytes(b"data")
    s3.put_file(local, key)
    s3.put_bytes(b"data", f"b/{key}")
    for full in (f"out/{key}", f"out/b/{key}"):
        assert s3.client.head_object(Bucket=s3.bucket, Key=full)["ContentType"] == expected


def test_explicit_content_type_wins(s3: S3Storage) -> None:
    s3.put_bytes(b"{}", "weird.bin", content_type="application/json")
    assert s3.client.head_object(Bucket=s3.bucket, Key="out/weird.bin")["ContentType"] == "application/json"


def test_large_file_goes_up_in_parts(s3: S3Storage, tmp_path: Path) -> None:
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(11 * MiB))
    small = tmp_path / "small.mp4"
    small.write_bytes(os.urandom(MiB))
    s3.put_file(big, "video/big.mp4")
    s3.put_file(small, "video/small.mp4")
    head = s3.client.head_object(Bucket=s3.bucket, Key="out/video/big.mp4")
    assert head["ETag"].strip('"').endswith("-3")  # 5 + 5 + 1 MB
    assert head["ContentType"] == "video/mp4"
    assert head["ContentLength"] == 11 * MiB
    assert "-" not in s3.client.head_object(Bucket=s3.bucket, Key="out/video/small.mp4")["ETag"]
    back = s3.download("video/big.mp4", tmp_path / "back.mp4")
    assert hashlib.sha256(back.read_bytes()).digest() == hashlib.sha256(big.read_bytes()).digest()


def test_missing_bucket_says_which_and_how_to_fix(s3_endpoint: str, tmp_path: Path) -> None:
    gone = S3Storage("no-such-bucket-here", "out", s3_config(s3_endpoint))
    local = tmp_path / "f.m4s"
    local.write_bytes(b"x")
    calls: list[Any] = [
        lambda: gone.put_bytes(b"x", "a.json"),
        lambda: gone.put_file(local, "a.m4s"),
        lambda: gone.get_bytes("a.json"),
        lambda: gone.list(),
        lambda: gone.exists("a.json"),  # a HEAD 404 has no body: the bucket is checked apart
        lambda: gone.size("a.json"),
        lambda: gone.sizes("a/"),
    ]
    for call in calls:
        with pytest.raises(StorageError, match=r"'no-such-bucket-here' does not exist.*create it") as info:
            call()
        assert not isinstance(info.value, TransientStorageError)
        assert isinstance(info.value.__cause__, bx.ClientError)


def test_boto_retries_are_modest(s3: S3Storage) -> None:
    retries = s3.client.meta.config.retries
    assert retries["mode"] == "standard"
    assert retries["total_max_attempts"] == BOTO_MAX_ATTEMPTS <= 3


# --- open_storage ------------------------------------------------------------------------------


def test_open_storage_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s3 = open_storage("s3://my-bucket/a/b/", StorageConfig(s3_endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s3, S3Storage)
    assert (s3.bucket, s3.prefix, s3.url) == ("my-bucket", "a/b", "s3://my-bucket/a/b")
    assert s3.url_for("x/y.mpd") == "s3://my-bucket/a/b/x/y.mpd"
    bare = open_storage("s3://my-bucket")
    assert isinstance(bare, S3Storage)
    assert (bare.prefix, bare.url, bare.url_for("k")) == ("", "s3://my-bucket", "s3://my-bucket/k")

    monkeypatch.chdir(tmp_path)
    local = open_storage("reelflow-data/out")
    assert isinstance(local, LocalStorage)
    assert local.url == str(tmp_path / "reelflow-data" / "out")
    assert local.url_for("a/b.mpd") == str(tmp_path / "reelflow-data" / "out" / "a" / "b.mpd")
    uri = open_storage(f"file://{tmp_path}/x%20y")
    assert isinstance(uri, LocalStorage)
    assert uri.root == tmp_path / "x y"


@pytest.mark.parametrize("url", ["", "gs://bucket/x", "http://host/x", "s3://", "s3:/bucket",
                                 "s3://Bad_Bucket/x", "file://otherhost/x", "s3://bucket/x?versionId=1"])
def test_open_storage_refuses_other_forms(url: str) -> None:
    with pytest.raises(ConfigError, match=r"s3://bucket\[/prefix\]|bucket name") as info:
        open_storage(url)
    if url:
        assert repr(url) in str(info.value)


# --- content types -----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "expected"), [
    ("manifest.mpd", "application/dash+xml"),
    ("MASTER.M3U8", "application/vnd.apple.mpegurl"),
    ("audio/en.m3u8", "application/vnd.apple.mpegurl"),
    ("video/720p/12.m4s", "video/iso.segment"),
    ("audio/en/3.m4s", "video/iso.segment"),
    ("video/720p/init.mp4", "video/mp4"),
    ("audio/en/init.mp4", "audio/mp4"),
    ("audio_init.mp4", "audio/mp4"),
    ("audiobook/video/init.mp4", "video/mp4"),  # "audio" must be a word of the path, not a substring
    ("subs/fr.vtt", "text/vtt"),
    ("title.json", "application/json"),
    ("hull.png", "image/png"),
    ("no_suffix", "application/octet-stream"),
    ("source.mov", "application/octet-stream"),
])
def test_content_type_for(name: str, expected: str) -> None:
    assert content_type_for(name) == expected


# --- local specifics ---------------------------------------------------------------------------


def test_local_writes_are_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = LocalStorage(tmp_path / "store")
    store.put_bytes(b"complete old", "title.json")

    def torn(src: Any, dst: Any, length: int = 0) -> None:
        dst.write(b"half of the n")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("reelflow.infra.storage.shutil.copyfileobj", torn)
    new = tmp_path / "new.json"
    new.write_bytes(b"complete new")
    with pytest.raises(StorageError, match="disk full") as info:
        store.put_file(new, "title.json")
    assert isinstance(info.value.__cause__, OSError)
    assert store.get_bytes("title.json") == b"complete old"
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["title.json"]  # no temp file left


def test_local_temp_files_are_invisible_and_modes_normal(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    store.put_bytes(b"x", "a/b.json")
    (tmp_path / "store" / "a" / ".reelflow-tmp-0123-c.json").write_bytes(b"in flight")
    assert store.list() == ["a/b.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "store" / "a" / "b.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_local_real_fault_is_a_storage_error(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "a").write_bytes(b"a file where a folder should be")
    store = LocalStorage(tmp_path / "store")
    with pytest.raises(StorageError, match="cannot write") as info:
        store.put_bytes(b"x", "a/b.json")
    assert isinstance(info.value.__cause__, OSError)
    assert not isinstance(info.value, TransientStorageError)


@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "disk full"),
    (errno.EDQUOT, "disk full"),
    (errno.EACCES, "permission denied"),
    (errno.EPERM, "permission denied"),
    (errno.EROFS, "read-only"),
    (errno.EIO, "Input/output error"),
])
def test_translate_os_error(code: int, words: str) -> None:
    error = translate_os_error(OSError(code, os.strerror(code), "/data/x"), "cannot write /data/x")
    assert type(error) is StorageError
    assert words in str(error)
    assert "/data/x" in str(error)


# --- classification of botocore errors ---------------------------------------------------------


def client_error(code: str, status: int, message: str = "") -> bx.ClientError:
    return bx.ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "PutObject",
    )


@pytest.mark.parametrize(("code", "status", "kind", "words"), [
    ("NoSuchBucket", 404, StorageError, "bucket 'bkt' does not exist"),
    ("NoSuchKey", 404, StorageError, "no such object"),
    ("404", 404, StorageError, "no such object"),
    ("AccessDenied", 403, StorageError, "access denied"),
    ("403", 403, StorageError, "access denied"),
    ("InvalidAccessKeyId", 403, StorageError, "rejected the credentials"),
    ("SignatureDoesNotMatch", 403, StorageError, "AWS_SECRET_ACCESS_KEY"),
    ("ExpiredToken", 400, StorageError, "rejected the credentials"),
    ("AuthorizationHeaderMalformed", 400, StorageError, "s3_region"),
    ("PermanentRedirect", 301, StorageError, "another region"),
    ("InvalidArgument", 400, StorageError, "InvalidArgument"),
    ("EntityTooLarge", 400, StorageError, "EntityTooLarge"),
    ("SlowDown", 503, TransientStorageError, "throttling"),
    ("Throttling", 400, TransientStorageError, "throttling"),
    ("RequestTimeout", 400, TransientStorageError, "RequestTimeout"),
    ("InternalError", 500, TransientStorageError, "InternalError"),
    ("ServiceUnavailable", 503, TransientStorageError, "unavailable"),
    ("BadGateway", 502, TransientStorageError, "HTTP 502"),
    ("504", 504, TransientStorageError, "HTTP 504"),
    ("TooManyRequests", 429, TransientStorageError, "HTTP 429"),
])
def test_translate_client_errors(code: str, status: int, kind: type[StorageError], words: str) -> None:
    error = translate_s3_error(client_error(code, status, "told"), "cannot write s3://bkt/k", "bkt")
    assert type(error) is kind
    assert words in str(error)
    assert str(error).startswith("cannot write s3://bkt/k: ")


@pytest.mark.parametrize(("exc", "kind"), [
    (bx.EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), TransientStorageError),
    (bx.ConnectTimeoutError(endpoint_url="http://x"), TransientStorageError),
    (bx.ReadTimeoutError(endpoint_url="http://x"), TransientStorageError),
    (bx.ConnectionClosedError(endpoint_url="http://x"), TransientStorageError),
    (bx.ResponseStreamingError(error="reset"), TransientStorageError),
    (bx.IncompleteReadError(actual_bytes=1, expected_bytes=2), TransientStorageError),
    (ConnectionResetError(errno.ECONNRESET, "reset"), TransientStorageError),
    (bx.SSLError(endpoint_url="https://x", error="bad cert"), StorageError),
    (bx.NoCredentialsError(), StorageError),
    (bx.PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"), StorageError),
    (bx.ParamValidationError(report="bad"), StorageError),
    (FileNotFoundError(errno.ENOENT, "No such file or directory", "/x.mp4"), StorageError),
])
def test_translate_botocore_errors(exc: BaseException, kind: type[StorageError]) -> None:
    error = translate_s3_error(exc, "cannot read s3://bkt/k", "bkt")
    assert type(error) is kind


# --- real injected faults ----------------------------------------------------------------------


class FaultServer:
    """An HTTP server that answers every request with one S3 error, and counts requests."""

    def __init__(self, status: int, code: str) -> None:
        self.requests = 0
        outer = self
        body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                f"<Message>injected</Message><RequestId>1</RequestId></Error>").encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # answers "Expect: 100-continue" instead of making boto wait

            def _answer(self) -> None:
                outer.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", "0" if self.command == "HEAD" else str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_PUT = do_HEAD = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    yield


def test_injected_5xx_is_transient_after_boto_retries(aws_env: None) -> None:
    with FaultServer(500, "InternalError") as fault:
        store = S3Storage("bkt", "p", StorageConfig(s3_endpoint_url=fault.url))
        started = time.monotonic()
        with pytest.raises(TransientStorageError, match=r"InternalError.*HTTP 500") as info:
            store.put_bytes(b"x", "a.json")
        assert fault.requests == BOTO_MAX_ATTEMPTS  # boto retried a little, then let go
        assert time.monotonic() - started < 5
        assert isinstance(info.value.__cause__, bx.ClientError)


def test_injected_throttling_is_transient(aws_env: None) -> None:
    with FaultServer(503, "SlowDown") as fault:
        store = S3Storage("bkt", "", StorageConfig(s3_endpoint_url=fault.url), max_attempts=1)
        with pytest.raises(TransientStorageError, match="SlowDown"):
            store.get_bytes("a.json")


def test_injected_access_denied_is_not_retried(aws_env: None) -> None:
    with FaultServer(403, "AccessDenied") as fault:
        store = S3Storage("bkt", "", StorageConfig(s3_endpoint_url=fault.url))
        with pytest.raises(StorageError, match="access denied") as info:
            store.put_bytes(b"x", "a.json")
        assert not isinstance(info.value, TransientStorageError)
        assert fault.requests == 1


def test_refused_connection_is_transient(aws_env: None) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago, so nothing listens on it
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = S3Storage("bkt", "", StorageConfig(s3_endpoint_url=f"http://127.0.0.1:{port}"), max_attempts=1)
    with pytest.raises(TransientStorageError, match="connection to S3") as info:
        store.list()
    assert isinstance(info.value.__cause__, bx.EndpointConnectionError)
