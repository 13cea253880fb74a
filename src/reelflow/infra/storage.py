"""Output storage: a local directory laid out like buckets, or S3 (and S3-compatible stores).

Both backends take the same keys: ``/``-separated, relative to the storage's own prefix, with no
empty, ``.`` or ``..`` segments, so a key means the same object in either place. botocore and
OS errors are translated here, once, into StorageError, or TransientStorageError when a retry
may cure them (throttling, 5xx, dropped connections); the flow retries only the latter.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import secrets
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urlsplit

from reelflow.errors import ConfigError, StorageError, TransientStorageError
from reelflow.infra.settings import StorageConfig

log = logging.getLogger(__name__)

MiB = 1 << 20

# StorageConfig is frozen, so one shared default instance is safe.
_DEFAULT_CONFIG = StorageConfig()

# boto3's own retries (standard mode: throttling, 5xx, connection errors, with backoff) are
# kept short so a store that is really down surfaces as TransientStorageError within seconds;
# the flow then retries the whole task, with its own delays, and shows each attempt in the UI.
BOTO_MAX_ATTEMPTS = 3

# Temporary files of atomic local writes; list() hides them so a reader never sees half a file.
_TMP_PREFIX = ".reelflow-tmp-"

_CONTENT_TYPES = {
    ".mpd": "application/dash+xml",
    ".m3u8": "application/vnd.apple.mpegurl",
    ".m4s": "video/iso.segment",
    ".mp4": "video/mp4",
    ".m4v": "video/mp4",
    ".m4a": "audio/mp4",
    ".ts": "video/mp2t",
    ".aac": "audio/aac",
    ".vtt": "text/vtt",
    ".ttml": "application/ttml+xml",
    ".json": "application/json",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".svg": "image/svg+xml",
    ".html": "text/html; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".csv": "text/csv; charset=utf-8",
}


def content_type_for(name: str) -> str:
    """Content type of a packaged file, from its name (a key or a path relative to the package).

    An MP4 whose path has an ``audio`` part (``audio/en/init.mp4``, ``audio_init.mp4``) is an
    audio-only init segment, ``audio/mp4``; players pick a decoder from this. Pass the path
    inside the package, not a full key, so a title called "audio-show" does not count.
    """
    lowered = name.lower()
    suffix = os.path.splitext(lowered)[1]
    if suffix == ".mp4" and "audio" in re.split(r"[^a-z0-9]+", lowered):
        return "audio/mp4"
    return _CONTENT_TYPES.get(suffix, "application/octet-stream")


def join_key(*parts: str) -> str:
    """Join key parts with single slashes, dropping empty parts (an empty prefix adds nothing)."""
    return "/".join(p.strip("/") for p in parts if p.strip("/"))


def _check_key(key: str) -> str:
    segments = key.split("/")
    if (not key or key.startswith("/") or "\0" in key
            or any(s in ("", ".", "..") or s.startswith(_TMP_PREFIX) for s in segments)):
        raise StorageError(
            f"invalid storage key {key!r}: keys are relative, '/'-separated, with no empty, '.' or '..' "
            f"parts and none starting with {_TMP_PREFIX!r}"
        )
    return key


def _check_prefix(prefix: str) -> str:
    """A listing prefix: a key, a key with a trailing '/', or '' for everything."""
    if prefix:
        _check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class Storage(ABC):
    """Where packages, title records and quarantined sources go: keys to bytes.

    There is deliberately no delete: nothing in reelflow removes what it has stored, and a
    quarantined source must never disappear.
    """

    url: str

    @abstractmethod
    def url_for(self, key: str) -> str:
        """Where a key lives, for people and title records."""

    @abstractmethod
    def put_file(self, local: Path, key: str, *, content_type: str | None = None) -> None:
        """Store a local file under ``key``; the content type is guessed from the key when None."""

    @abstractmethod
    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None) -> None:
        """Store bytes under ``key``; the content type is guessed from the key when None."""

    @abstractmethod
    def get_bytes(self, key: str) -> bytes:
        """The bytes under ``key``; StorageError naming the key when there is none."""

    @abstractmethod
    def download(self, key: str, dest: Path) -> Path:
        """Copy the object under ``key`` to ``dest`` (replaced atomically); returns ``dest``."""

    @abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """``length`` bytes of the object under ``key`` from byte ``start`` (fewer at its end)."""

    def local_path(self, key: str) -> Path | None:
        """The object as a file this machine can read in place (a folder store), or None (S3)."""
        return None

    def size(self, key: str) -> int:
        """Bytes of the object under ``key`` without reading it; StorageError naming the key when there is none.

        This default reads the object; the folder and S3 stores ask their metadata (stat, HEAD).
        """
        return len(self.get_bytes(key))

    def sizes(self, prefix: str = "") -> dict[str, int]:
        """The keys that start with ``prefix`` and their sizes, without reading the objects (S3: one listing)."""
        return {key: self.size(key) for key in self.list(prefix)}

    @abstractmethod
    def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    @abstractmethod
    def list(self, prefix: str = "") -> list[str]:
        """Keys that start with ``prefix`` (plain string prefix, as in S3), sorted."""

    @abstractmethod
    def check_readable(self) -> None:
        """StorageError unless the store is there to be read (a server checks this before it starts)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


# ---------------------------------------------------------------------------------------------
# Local directory


def translate_os_error(exc: OSError, action: str) -> StorageError:
    """StorageError for a local I/O failure, with what to do about the common ones."""
    where = f" ({exc.filename})" if exc.filename else ""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageError(f"{action}: disk full{where}; free space or point storage.output elsewhere")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return StorageError(f"{action}: permission denied{where}; check the folder's owner and mode")
    if exc.errno == errno.EROFS:
        return StorageError(f"{action}: read-only file system{where}")
    return StorageError(f"{action}: {exc.strerror or exc}{where}")


def _atomic_write(dest: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write through a temporary file beside ``dest``, then rename it over ``dest``.

    The rename is atomic on one file system, so a reader sees the old file or the whole new
    one, never a torn write; fsync first so a crash cannot leave a complete-looking empty file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{_TMP_PREFIX}{secrets.token_hex(8)}")  # not dest.name: it may be near NAME_MAX
    # os.open with 0o666 rather than mkstemp, whose 0600 would survive the rename and hide the
    # file from a web server running as another user; the umask still applies.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class LocalStorage(Storage):
    """A folder on this machine; keys are paths below it. Writes are atomic."""

    def __init__(self, root: Path | str) -> None:
        # abspath, not resolve: keep the path the user gave (symlinks and all), made absolute.
        self.root = Path(os.path.abspath(Path(root).expanduser()))
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / _check_key(key)

    def check_readable(self) -> None:
        if not self.root.exists():
            raise StorageError(f"storage folder {self.root} does not exist: ingest a title into it first "
                               "(reelflow ingest FILE --storage ...), or give the folder that holds titles/")
        if not self.root.is_dir():
            raise StorageError(f"storage {self.root} is a file, not a folder: give the folder that holds titles/")
        if not os.access(self.root, os.R_OK | os.X_OK):
            raise StorageError(f"storage folder {self.root} cannot be read by this user: check its permissions")

    def url_for(self, key: str) -> str:
        return str(self._path(key))

    def put_file(self, local: Path, key: str, *, content_type: str | None = None) -> None:
        # A file system keeps no content type; a web server serving this folder guesses from the
        # name, as content_type_for does.
        dest = self._path(key)
        try:
            with open(local, "rb") as src:
                _atomic_write(dest, lambda f: shutil.copyfileobj(src, f, MiB))
        except OSError as exc:
            raise translate_os_error(exc, f"cannot copy {local} to {dest}") from exc
        log.debug("stored %s -> %s", local, dest)

    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None) -> None:
        dest = self._path(key)
        try:
            _atomic_write(dest, lambda f: f.write(data))
        except OSError as exc:
            raise translate_os_error(exc, f"cannot write {dest}") from exc

    def get_bytes(self, key: str) -> bytes:
        path = self._path(key)
        try:
            return path.read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageError(f"cannot read {path}: no such object") from exc
        except OSError as exc:
            raise translate_os_error(exc, f"cannot read {path}") from exc

    def download(self, key: str, dest: Path) -> Path:
        path = self._path(key)
        try:
            with open(path, "rb") as src:
                _atomic_write(dest, lambda f: shutil.copyfileobj(src, f, MiB))
        except (FileNotFoundError, IsADirectoryError) as exc:
            if exc.filename == str(path):
                raise StorageError(f"cannot download {path}: no such object") from exc
            raise translate_os_error(exc, f"cannot copy {path} to {dest}") from exc
        except OSError as exc:
            raise translate_os_error(exc, f"cannot copy {path} to {dest}") from exc
        return dest

    def get_range(self, key: str, start: int, length: int) -> bytes:
        path = self._path(key)
        try:
            with open(path, "rb") as f:
                f.seek(start)
                return f.read(length)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
            raise StorageError(f"cannot read {path}: no such object") from exc
        except OSError as exc:
            raise translate_os_error(exc, f"cannot read {path}") from exc

    def local_path(self, key: str) -> Path | None:
        path = self._path(key)
        return path if path.is_file() else None

    def size(self, key: str) -> int:
        path = self._path(key)
        try:
            if not path.is_file():
                raise FileNotFoundError(path)
            return path.stat().st_size
        except FileNotFoundError as exc:
            raise StorageError(f"cannot stat {path}: no such object") from exc
        except OSError as exc:
            raise translate_os_error(exc, f"cannot stat {path}") from exc

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str = "") -> list[str]:
        _check_prefix(prefix)
        # Walk only the deepest folder the prefix names, then filter by plain string prefix, so
        # "video/72" matches "video/720p/1.m4s" exactly as it would in S3.
        top = self.root / prefix.rpartition("/")[0]
        keys: list[str] = []

        def fail(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                raise translate_os_error(exc, f"cannot list {top}") from exc

        for folder, dirs, files in os.walk(top, onerror=fail):
            dirs.sort()
            rel = Path(folder).relative_to(self.root).as_posix()
            for name in files:
                if name.startswith(_TMP_PREFIX):
                    continue
                key = name if rel == "." else f"{rel}/{name}"
                if key.startswith(prefix):
                    keys.append(key)
        return sorted(keys)


# ---------------------------------------------------------------------------------------------
# S3

# Error codes that a retry may cure. S3 sends SlowDown/503 when throttling; the others are the
# service's own hiccups. Everything else (missing bucket, access, bad request) stays wrong.
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "ThrottledException", "RequestThrottled",
    "TooManyRequestsException", "RequestLimitExceeded", "BandwidthLimitExceeded",
    "RequestTimeout", "RequestTimeoutException", "InternalError", "ServiceUnavailable",
    "ServerBusy", "PriorRequestNotComplete", "OperationAborted",
})
_TRANSIENT_STATUS = frozenset({429, 500, 502, 503, 504})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_ACCESS_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "403"})
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken",
    "TokenRefreshRequired", "AuthorizationHeaderMalformed",
})


def translate_s3_error(exc: BaseException, action: str, bucket: str,
                       endpoint: str | None = None) -> StorageError:
    """The one classification of botocore (and s3transfer) failures; the caller raises it ``from exc``.

    ``action`` says what was being done ("cannot read s3://b/k"); the message adds why and, for
    the usual mistakes, how to fix it.
    """
    from botocore import exceptions as bx

    at = f" at {endpoint}" if endpoint else ""
    if isinstance(exc, bx.ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "") or "")
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        said = f"{code}: {message}" if message else code
        if code == "NoSuchBucket":
            return _no_such_bucket(action, bucket, endpoint)
        if code in _NOT_FOUND_CODES:
            return StorageError(f"{action}: no such object")
        if code in _CREDENTIAL_CODES:
            return StorageError(
                f"{action}: S3{at} rejected the credentials ({said}); check AWS_ACCESS_KEY_ID / "
                "AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), storage.s3_region, and storage.s3_endpoint_url "
                "for a non-AWS store"
            )
        if code in _ACCESS_CODES:
            return StorageError(
                f"{action}: access denied ({said}); the credentials in use need s3:GetObject, "
                f"s3:PutObject and s3:ListBucket on bucket {bucket!r}"
            )
        if code in _TRANSIENT_CODES or status in _TRANSIENT_STATUS:
            return TransientStorageError(
                f"{action}: S3{at} is throttling or unavailable ({said}, HTTP {status})"
            )
        if code in ("PermanentRedirect", "IllegalLocationConstraintException"):
            return StorageError(
                f"{action}: bucket {bucket!r} is in another region ({said}); set storage.s3_region"
            )
        return StorageError(f"{action}: {said or exc} (HTTP {status})")
    if isinstance(exc, bx.SSLError):
        # Before ConnectionError, its base: a certificate problem does not go away by retrying.
        return StorageError(
            f"{action}: TLS failed{at} ({exc}); check storage.s3_endpoint_url and the certificates"
        )
    if isinstance(exc, bx.ConnectionError | bx.HTTPClientError | bx.IncompleteReadError):
        # Refused or reset connections, timeouts, a body cut short.
        return TransientStorageError(f"{action}: connection to S3{at} failed ({exc})")
    if isinstance(exc, bx.NoCredentialsError | bx.PartialCredentialsError | bx.CredentialRetrievalError):
        return StorageError(
            f"{action}: no usable AWS credentials ({exc}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE"
        )
    if isinstance(exc, bx.BotoCoreError):
        return StorageError(f"{action}: {exc}")
    if isinstance(exc, ConnectionError | TimeoutError):
        return TransientStorageError(f"{action}: connection to S3{at} failed ({exc})")
    if isinstance(exc, OSError):
        return translate_os_error(exc, action)  # the local side: the file being sent or written
    return StorageError(f"{action}: {type(exc).__name__}: {exc}")


def _no_such_bucket(action: str, bucket: str, endpoint: str | None) -> StorageError:
    at = f" at {endpoint}" if endpoint else ""
    return StorageError(
        f"{action}: bucket {bucket!r} does not exist{at}; create it (aws s3 mb s3://{bucket}) "
        "or point --storage / storage.output at an existing bucket"
    )


def _error_code(exc: BaseException) -> str | None:
    """The S3 error code of a ClientError (a bare status such as "404" for HEAD requests)."""
    from botocore.exceptions import ClientError

    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return None


def _s3_errors() -> tuple[type[BaseException], ...]:
    """What the S3 boundary catches: botocore's errors and OS errors (local file, raw socket)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (BotoCoreError, ClientError, OSError)


_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class S3Storage(Storage):
    """A bucket and key prefix in S3 or an S3-compatible store (MinIO, Ceph, moto)."""

    def __init__(self, bucket: str, prefix: str = "", config: StorageConfig = _DEFAULT_CONFIG, *,
                 max_attempts: int = BOTO_MAX_ATTEMPTS, client: Any = None) -> None:
        if not _BUCKET_NAME.match(bucket):
            raise ConfigError(
                f"invalid S3 bucket name {bucket!r}: 3-63 lowercase letters, digits, '.' or '-'"
            )
        self.bucket = bucket
        self.prefix = join_key(*prefix.split("/"))
        if self.prefix:
            _check_key(self.prefix)
        self.config = config
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self.client = client if client is not None else self._make_client(config, max_attempts)
        self._bucket_seen = False

    @staticmethod
    def _make_client(config: StorageConfig, max_attempts: int) -> Any:
        import boto3
        from botocore.config import Config

        options: dict[str, Any] = {
            # total_max_attempts counts the first request; botocore's "max_attempts" would not.
            "retries": {"total_max_attempts": max_attempts, "mode": "standard"},
            "connect_timeout": 10,
            "read_timeout": 60,
            "user_agent_extra": "reelflow",
        }
        if config.s3_endpoint_url:
            # Path-style addressing: MinIO, Ceph and moto on an IP address have no per-bucket
            # host names. botocore >= 1.36 also sends CRC32 checksum headers by default, which
            # several S3-compatible stores refuse; ask for checksums only where S3 requires them.
            options |= {
                "s3": {"addressing_style": "path"},
                "request_checksum_calculation": "when_required",
                "response_checksum_validation": "when_required",
            }
        session = boto3.session.Session()  # one per storage: the default session is not thread-safe
        return session.client(
            "s3", endpoint_url=config.s3_endpoint_url, region_name=config.s3_region, config=Config(**options)
        )

    def _key(self, key: str) -> str:
        return join_key(self.prefix, _check_key(key))

    def _error(self, exc: BaseException, action: str) -> StorageError:
        return translate_s3_error(exc, action, self.bucket, self.config.s3_endpoint_url)

    def url_for(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def put_file(self, local: Path, key: str, *, content_type: str | None = None) -> None:
        full = self._key(key)
        extra = {"ContentType": content_type or content_type_for(key)}
        action = f"cannot upload {local} to s3://{self.bucket}/{full}"
        try:
            size = local.stat().st_size
            if size > self.config.multipart_threshold_mb * MiB:
                self._put_multipart(local, full, extra)
            else:
                with open(local, "rb") as body:
                    self.client.put_object(Bucket=self.bucket, Key=full, Body=body, **extra)
        except _s3_errors() as exc:
            raise self._error(exc, action) from exc
        log.debug("uploaded %s -> s3://%s/%s", local, self.bucket, full)

    def _put_multipart(self, local: Path, full: str, extra: dict[str, str]) -> None:
        # s3transfer's manager directly rather than client.upload_file: upload_file re-wraps
        # ClientError as S3UploadFailedError, losing the error code we classify on. The manager
        # uploads parts in parallel, raises parts' errors as they are, and aborts the upload.
        from boto3.s3.transfer import TransferConfig, create_transfer_manager

        transfer = TransferConfig(
            multipart_threshold=self.config.multipart_threshold_mb * MiB,
            multipart_chunksize=self.config.multipart_chunk_mb * MiB,
            max_concurrency=4,
            preferred_transfer_client="classic",
        )
        with create_transfer_manager(self.client, transfer) as manager:
            manager.upload(str(local), self.bucket, full, extra_args=extra).result()

    def put_bytes(self, data: bytes, key: str, *, content_type: str | None = None) -> None:
        full = self._key(key)
        try:
            self.client.put_object(Bucket=self.bucket, Key=full, Body=data,
                                   ContentType=content_type or content_type_for(key))
        except _s3_errors() as exc:
            raise self._error(exc, f"cannot write s3://{self.bucket}/{full}") from exc

    def get_bytes(self, key: str) -> bytes:
        full = self._key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            data: bytes = response["Body"].read()  # inside the try: the body streams after the headers
        except _s3_errors() as exc:
            raise self._error(exc, f"cannot read s3://{self.bucket}/{full}") from exc
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        full = self._key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full,
                                              Range=f"bytes={start}-{start + length - 1}")
            data: bytes = response["Body"].read()
        except _s3_errors() as exc:
            raise self._error(exc, f"cannot read bytes {start}-{start + length - 1} of s3://{self.bucket}/{full}") \
                from exc
        return data

    def download(self, key: str, dest: Path) -> Path:
        full = self._key(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=full)
            body = response["Body"]
            _atomic_write(dest, lambda f: shutil.copyfileobj(body, f, MiB))
        except _s3_errors() as exc:
            raise self._error(exc, f"cannot download s3://{self.bucket}/{full} to {dest}") from exc
        return dest

    def exists(self, key: str) -> bool:
        full = self._key(key)
        action = f"cannot check s3://{self.bucket}/{full}"
        try:
            self.client.head_object(Bucket=self.bucket, Key=full)
            return True
        except _s3_errors() as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise self._error(exc, action) from exc
        # A HEAD response has no body, so a missing bucket is a bare 404 like a missing key:
        # ask about the bucket once, or exists() would quietly say False forever.
        self._check_bucket(action)
        return False

    def size(self, key: str) -> int:
        full = self._key(key)
        action = f"cannot stat s3://{self.bucket}/{full}"
        try:
            return int(self.client.head_object(Bucket=self.bucket, Key=full)["ContentLength"])
        except _s3_errors() as exc:
            if _error_code(exc) not in _NOT_FOUND_CODES:
                raise self._error(exc, action) from exc
        self._check_bucket(action)               # a HEAD's bare 404 is also what a missing bucket gives
        raise StorageError(f"{action}: no such object")

    def sizes(self, prefix: str = "") -> dict[str, int]:
        return dict(self._listing(prefix))

    def check_readable(self) -> None:
        self._check_bucket(f"cannot read s3://{self.bucket}/{self.prefix}")

    def _check_bucket(self, action: str) -> None:
        if self._bucket_seen:
            return
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except _s3_errors() as exc:
            if _error_code(exc) in _NOT_FOUND_CODES | {"NoSuchBucket"}:
                raise _no_such_bucket(action, self.bucket, self.config.s3_endpoint_url) from exc
            raise self._error(exc, action) from exc
        self._bucket_seen = True

    def _listing(self, prefix: str) -> list[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, sorted by key: a listing carries the sizes."""
        _check_prefix(prefix)
        base = f"{self.prefix}/" if self.prefix else ""
        items: list[tuple[str, int]] = []
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=base + prefix
            )
            for page in pages:
                items.extend((item["Key"][len(base):], int(item["Size"])) for item in page.get("Contents", ()))
        except _s3_errors() as exc:
            raise self._error(exc, f"cannot list s3://{self.bucket}/{base}{prefix}") from exc
        return sorted(items)

    def list(self, prefix: str = "") -> list[str]:
        return [key for key, _ in self._listing(prefix)]


# ---------------------------------------------------------------------------------------------


def open_storage(url: str, config: StorageConfig = _DEFAULT_CONFIG) -> Storage:
    """The storage a URL names: ``s3://bucket[/prefix]``, ``file:///path`` or a plain path."""
    accepted = "use s3://bucket[/prefix], file:///absolute/path or a local folder path"
    if not url.strip():
        raise ConfigError(f"empty storage URL; {accepted}")
    # Anything that looks like scheme: (two letters or more, so "C:" stays a path) is a URL.
    scheme = re.match(r"^([A-Za-z][A-Za-z0-9+.-]+):", url)
    if scheme is None:
        return LocalStorage(Path(url))
    parts = urlsplit(url)
    name = scheme.group(1).lower()
    is_plain = not (parts.query or parts.fragment)
    if name == "s3" and url[len("s3:"):].startswith("//") and parts.netloc and is_plain:
        try:
            return S3Storage(parts.netloc, unquote(parts.path), config)
        except ConfigError as exc:
            raise ConfigError(f"storage URL {url!r}: {exc}") from exc
    if name == "file" and parts.netloc in ("", "localhost") and parts.path.startswith("/"):
        return LocalStorage(Path(unquote(parts.path)))
    raise ConfigError(f"unsupported storage URL {url!r}; {accepted}")
