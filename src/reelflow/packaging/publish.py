"""Publish: upload a package (segments before manifests), record the title last, quarantine failures."""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from fractions import Fraction
from pathlib import Path, PurePath
from typing import Any

from pydantic import BaseModel

from reelflow.errors import SourceNotFound, StageError
from reelflow.infra.storage import Storage, content_type_for, join_key

log = logging.getLogger(__name__)

TITLE_RECORD = "title.json"
QUARANTINE = "quarantine"
QC_REPORT = "qc.json"

Progress = Callable[[int, int], None]


def upload_tier(relative: str, path: Path) -> int:
    """When a package file may go up: 0 media, 1 media playlists, 2 top-level manifests.

    A reader follows MPD/master playlist -> media playlist -> segments, so each tier goes up
    only after everything it points at is stored, and nobody sees a link to a missing file.
    """
    suffix = os.path.splitext(relative)[1].lower()
    if suffix == ".mpd":
        return 2
    if suffix == ".m3u8":
        # Only a master playlist lists variants; the packager also writes media playlists.
        text = path.read_text(errors="replace")
        return 2 if "#EXT-X-STREAM-INF" in text or "#EXT-X-MEDIA:" in text else 1
    return 0


def publish_package(package_dir: Path, storage: Storage, prefix: str, *,
                    progress: Progress | None = None, workers: int = 4) -> list[str]:
    """Upload every file under ``package_dir`` to ``<prefix>/<relative path>``; returns the keys.

    Segments and init segments go first, media playlists next, the MPD and master playlist last,
    each tier finished before the next starts. Files within a tier go up ``workers`` at a time
    (S3 uploads of small segments are bound by round trips, not bandwidth). The first failure
    stops the upload and is raised; what was already stored stays, and no manifest points at it.
    ``progress(bytes_done, bytes_total)`` is called from this thread after each file.
    """
    files = _package_files(package_dir)
    tiers: dict[int, list[tuple[str, Path]]] = {}
    for relative, path in files:
        tiers.setdefault(upload_tier(relative, path), []).append((relative, path))
    sizes = {relative: path.stat().st_size for relative, path in files}
    total = sum(sizes.values())
    done = 0
    if progress:
        progress(0, total)
    keys: list[str] = []
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="publish") as pool:
        for tier in sorted(tiers):
            batch = tiers[tier]
            futures: dict[Future[None], str] = {
                pool.submit(storage.put_file, path, join_key(prefix, relative),
                            content_type=content_type_for(relative)): relative
                for relative, path in batch
            }
            # Report progress as files finish, but stop at the first failure.
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for future in finished:
                    error = future.exception()
                    if error is not None:
                        for other in pending:
                            other.cancel()
                        wait(pending)  # let uploads in flight end before the error leaves
                        raise error
                    done += sizes[futures[future]]
                    if progress:
                        progress(done, total)
            keys.extend(join_key(prefix, relative) for relative, _ in batch)
            log.debug("published tier %d: %d files", tier, len(batch))
    where = storage.url_for(join_key(prefix)) if join_key(prefix) else storage.url
    log.info("published %d files (%d bytes) to %s", len(keys), total, where)
    return keys


def _package_files(package_dir: Path) -> list[tuple[str, Path]]:
    if not package_dir.is_dir():
        raise StageError(f"nothing to publish: {package_dir} is not a folder")
    files: list[tuple[str, Path]] = []
    for folder, dirs, names in os.walk(package_dir):
        dirs.sort()
        for name in sorted(names):
            path = Path(folder, name)
            if path.is_file():
                files.append((path.relative_to(package_dir).as_posix(), path))
    if not files:
        raise StageError(f"nothing to publish: {package_dir} has no files")
    return files


def write_title_record(storage: Storage, prefix: str, record: Mapping[str, Any]) -> str:
    """Write ``<prefix>/title.json``; returns its URL.

    Call it after everything the record names is stored: the title record is the only thing
    readers (the playback service, the watcher's exactly-once check) trust, so its presence
    means the title is complete. Each backend stores it in one atomic write.
    """
    key = join_key(prefix, TITLE_RECORD)
    storage.put_bytes(_json_bytes(record, "title record"), key, content_type="application/json")
    url = storage.url_for(key)
    log.info("title record written: %s", url)
    return url


def quarantine(source: Path, storage: Storage, title_id: str, report: Mapping[str, Any]) -> str:
    """Copy the source to ``quarantine/<title_id>/<name>`` with its report beside it as ``qc.json``.

    The source is only read, never moved or deleted: a studio's mezzanine is not ours to lose.
    The report is written after the copy, so a ``qc.json`` means the quarantine is complete.
    Returns the URL of the quarantine folder.
    """
    if not title_id or "/" in title_id or title_id in (".", ".."):
        raise StageError(f"cannot quarantine under title id {title_id!r}: it must be one path segment")
    if not source.is_file():
        raise SourceNotFound(source, "does not exist, so it cannot be quarantined")
    folder = join_key(QUARANTINE, title_id)
    data = _json_bytes(report, "QC report")  # before the copy: a bad report should not cost an upload
    storage.put_file(source, join_key(folder, source.name))
    storage.put_bytes(data, join_key(folder, QC_REPORT), content_type="application/json")
    url = storage.url_for(folder)
    log.warning("quarantined %s at %s", source, url)
    return url


def _json_bytes(value: Mapping[str, Any], what: str) -> bytes:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=_plain)
    except (TypeError, ValueError) as exc:
        raise StageError(f"the {what} cannot be written as JSON: {exc}") from exc
    return (text + "\n").encode()


def _plain(value: object) -> object:
    """Plain JSON for the types stages put in reports (readers want "24000/1001", not a tag)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, PurePath):
        return value.as_posix()
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, set | frozenset):
        return sorted(value)
    raise TypeError(f"{type(value).__qualname__} is not JSON-serialisable")
