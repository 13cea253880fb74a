"""Remote sources: ``s3://bucket/key`` URLs of dropped objects, fetched whole and verified before use.

A source URL names one object, with the key written as it is stored (not percent-encoded: S3
keys may hold ``%``, ``+`` and spaces). ``fetch_s3_object`` copies it into the work folder under
a content-addressed name (bucket, key and ETag), through a partial file that only gets the final
name once its size and ETag are checked. A second fetch of the same object is a no-op, and a
fetch cut short (a crash, a dropped connection) resumes from the partial file with a ranged GET
that only succeeds while the object is still the same (``If-Match`` on the ETag).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reelflow.errors import ConfigError, StorageError
from reelflow.infra.hashing import config_digest
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import BOTO_MAX_ATTEMPTS, MiB, S3Storage, translate_s3_error

log = logging.getLogger(__name__)

_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(-[0-9]+)?$")


@dataclass(frozen=True)
class S3Url:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def is_remote(source: str) -> bool:
    return source.startswith("s3://")


def parse_s3_url(url: str, *, key_required: bool = True) -> S3Url:
    """``s3://bucket/key`` (key as stored, not percent-encoded); ConfigError saying what is wrong."""
    if not url.startswith("s3://"):
        raise ConfigError(f"{url!r} is not an S3 URL: use s3://bucket/key")
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not _BUCKET_NAME.match(bucket):
        raise ConfigError(f"{url!r}: invalid S3 bucket name {bucket!r} (3-63 lowercase letters, digits, '.' or '-')")
    if key_required and (not key or key.endswith("/")):
        raise ConfigError(f"{url!r} names no object: use s3://bucket/key")
    return S3Url(bucket, key)


def s3_client(config: StorageConfig, service: str = "s3", endpoint_url: str | None = None) -> Any:
    """A boto3 client configured as the storage's (path-style addressing and retries for S3)."""
    if service == "s3":
        return S3Storage._make_client(config, BOTO_MAX_ATTEMPTS)
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    return session.client(service, endpoint_url=endpoint_url or config.s3_endpoint_url,
                           region_name=config.s3_region,
                           config=Config(retries={"total_max_attempts": BOTO_MAX_ATTEMPTS, "mode": "standard"},
                                         connect_timeout=10, read_timeout=60, user_agent_extra="reelflow"))


def normalise_etag(etag: str) -> str:
    """ETags come quoted from HEAD/GET/LIST and bare in event notifications."""
    return etag.strip().strip('"').lower()


def local_name(key: str) -> str:
    """The file name a fetched object gets: the key's last part, made safe for a file system."""
    name = re.sub(r"[^A-Za-z0-9._ +-]+", "_", key.rsplit("/", 1)[-1]).strip(" .") or "source"
    return name[-200:]


def fetch_s3_object(url: str, work_dir: Path, config: StorageConfig, *, etag: str | None = None,
                    client: Any = None) -> Path:
    """Copy the object ``url`` names into ``work_dir/sources/<digest>/<name>``; returns the path.

    ``etag``: the version the caller expects (from the bucket event); a different object under
    the key now is an error, not a silent switch to other bytes. The copy is verified (size, and
    the ETag where it is an MD5 or a multipart MD5) before it gets its final name.
    """
    where = parse_s3_url(url)
    s3 = client if client is not None else s3_client(config)
    action = f"cannot fetch {url}"

    def fail(exc: BaseException) -> StorageError:
        return translate_s3_error(exc, action, where.bucket, config.s3_endpoint_url)

    try:
        head = s3.head_object(Bucket=where.bucket, Key=where.key)
    except Exception as exc:
        error = fail(exc)
        if "no such object" in str(error):  # HEAD has no body: a missing bucket is a bare 404 too
            try:
                s3.head_bucket(Bucket=where.bucket)
            except Exception as bucket_exc:
                raise StorageError(f"{action}: bucket {where.bucket!r} does not exist") from bucket_exc
        raise error from exc
    current = normalise_etag(head["ETag"])
    size = int(head["ContentLength"])
    if etag is not None and normalise_etag(etag) != current:
        raise StorageError(f"{action}: the object was replaced since it was dropped (ETag {current}, the drop "
                           f"had {normalise_etag(etag)}); the newer object is ingested by its own run")
    folder = work_dir / "sources" / config_digest(where.bucket, where.key, current)[:16]
    dest = folder / local_name(where.key)
    if dest.is_file() and dest.stat().st_size == size:
        log.info("reusing fetched source %s", dest)
        return dest
    folder.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with open(partial, "ab") as out:
        # One fetch at a time per object: a second run of the same object waits, then finds `dest`.
        fcntl.flock(out.fileno(), fcntl.LOCK_EX)
        if dest.is_file() and dest.stat().st_size == size:
            return dest
        have = out.tell()
        if have > size:
            out.truncate(0)
            have = 0
        if have:
            log.info("resuming fetch of %s at byte %d of %d", url, have, size)
        try:
            if have < size:
                extra = {"Range": f"bytes={have}-"} if have else {}
                body = s3.get_object(Bucket=where.bucket, Key=where.key, IfMatch=head["ETag"], **extra)["Body"]
                for chunk in iter(lambda: body.read(MiB), b""):
                    out.write(chunk)
            out.flush()
        except Exception as exc:
            raise fail(exc) from exc
        problem = _verify(partial, size, current, lambda n: _part_size(s3, where, n))
        if problem:
            out.truncate(0)  # start again next time rather than resume from bytes that are wrong
            raise StorageError(f"{action}: the copy does not match the object ({problem})")
        partial.replace(dest)
    log.info("fetched %s (%d bytes) to %s", url, size, dest)
    return dest


def _part_size(s3: Any, where: S3Url, part: int) -> int:
    return int(s3.head_object(Bucket=where.bucket, Key=where.key, PartNumber=part)["ContentLength"])


def _verify(path: Path, size: int, etag: str, part_size: Any) -> str | None:
    """What is wrong with the copy, or None. ETags that are not MD5s (SSE-KMS) are not checked."""
    have = path.stat().st_size
    if have != size:
        return f"{have} bytes, the object has {size}"
    if not _MD5_ETAG.match(etag):
        log.info("ETag %s is not an MD5: only the size of %s was checked", etag, path.name)
        return None
    digest, _, parts = etag.partition("-")
    if not parts:
        got = _md5(_chunks(path, size)).hexdigest()
    else:
        chunk = part_size(1)
        if size and -(-size // chunk) != int(parts):
            return f"{-(-size // chunk)} parts of {chunk} bytes, the ETag says {parts}"
        md5s = b"".join(_md5(_chunks(path, chunk, start=offset)).digest() for offset in range(0, size, chunk))
        got = hashlib.md5(md5s, usedforsecurity=False).hexdigest()
    return None if got == digest else f"MD5 {got}, ETag {etag}"


def _md5(blocks: Iterator[bytes]) -> Any:
    md5 = hashlib.md5(usedforsecurity=False)
    for block in blocks:
        md5.update(block)
    return md5


def _chunks(path: Path, length: int, *, start: int = 0) -> Iterator[bytes]:
    with open(path, "rb") as f:
        f.seek(start)
        left = length
        while left > 0:
            block = f.read(min(MiB, left))
            if not block:
                return
            left -= len(block)
            yield block
