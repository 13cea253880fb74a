"""Package files (init segments, media segments, subtitles) served from storage, as an origin or an edge.

``GET /titles/<title id>/<package folder>/<path>``: only media files inside one title's package
are served. The path is checked part by part before storage sees it (no empty, ``.``, ``..``,
hidden or backslashed parts, a known media suffix), and for a local store the resolved file must
still be inside the package folder, so neither ``..`` nor a symlink leads out of the title.
Manifests are not served here: players get device-filtered ones from ``/api/titles/...``.

Responses carry the content type from ``infra.storage.content_type_for``, ``Accept-Ranges``, an
ETag and ``Cache-Control: public, max-age=31536000, immutable`` (a package folder never changes:
a republished title gets a new one). Range requests get 206 or 416; ``If-None-Match`` gets 304.
Local files are streamed by Starlette's FileResponse (single and multiple ranges); other stores
(S3) are read whole once into a byte-bounded LRU and sliced, which suits segments of a few MB.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import FileResponse, Response

from reelflow.errors import Forbidden, NotFound, StorageError
from reelflow.infra.storage import LocalStorage, Storage, content_type_for, join_key
from reelflow.playback.catalog import TITLE_ID, TITLES, VERSION

MEDIA_SUFFIXES = frozenset({".mp4", ".m4s", ".m4a", ".m4v", ".m4i", ".cmfv", ".cmfa", ".vtt", ".ttml", ".webvtt",
                            ".ts", ".aac", ".webm", ".jpg", ".png"})
IMMUTABLE = "public, max-age=31536000, immutable"
KEY_PATH = re.compile(r"^(?:.+/)?keys/([0-9a-f]{32})$")
_PART = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.$=+,@-]*$")


@dataclass(frozen=True)
class PackagePath:
    """A checked path to one file of one title's package."""

    title_id: str
    version: str
    path: str                          # inside the package

    @property
    def key(self) -> str:
        return join_key(TITLES, self.title_id, self.version, self.path)


def key_request(path: str) -> str | None:
    """The kid (hex) when ``path`` is an HLS key URI, ``<...>/keys/<kid hex>``, inside a package."""
    match = KEY_PATH.match(path)
    return match.group(1) if match else None


def check_path(title_id: str, version: str, path: str) -> PackagePath:
    """The package path, or Forbidden (a path out of the title, or not a media file) / NotFound."""
    if not TITLE_ID.match(title_id) or not VERSION.match(version):
        raise NotFound("no such title package")
    parts = path.split("/")
    if not path or len(path) > 512 or any(not _PART.match(p) or p in (".", "..") for p in parts):
        raise Forbidden(f"{path!r} is not a file inside the title's package")
    if os.path.splitext(parts[-1])[1].lower() not in MEDIA_SUFFIXES:
        raise Forbidden(f"{parts[-1]!r} is not a media file; manifests come from /api/titles/<id>/...")
    return PackagePath(title_id, version, path)


def _etag(*parts: object) -> str:
    return '"' + hashlib.sha1("-".join(str(p) for p in parts).encode()).hexdigest()[:20] + '"'


def _not_modified(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
    return "*" in tags or etag in tags


class SegmentServer:
    """Reads package files from one storage for the segment routes."""

    def __init__(self, storage: Storage, cache_bytes: int = 256 << 20) -> None:
        self.storage = storage
        self.cache_bytes = cache_bytes
        self._cache: OrderedDict[str, tuple[bytes, str]] = OrderedDict()
        self._cached = 0
        self._lock = threading.Lock()

    def _local_file(self, ref: PackagePath) -> Path:
        assert isinstance(self.storage, LocalStorage)
        package = os.path.realpath(self.storage.root / TITLES / ref.title_id / ref.version)
        real = os.path.realpath(os.path.join(package, ref.path))
        if os.path.commonpath([package, real]) != package:
            raise Forbidden(f"{ref.path!r} leads out of the title's package")
        if not os.path.isfile(real):
            raise NotFound(f"no file {ref.path!r} in {ref.title_id}/{ref.version}")
        return Path(real)

    def _bytes(self, ref: PackagePath) -> tuple[bytes, str]:
        with self._lock:
            hit = self._cache.get(ref.key)
            if hit is not None:
                self._cache.move_to_end(ref.key)
                return hit
        try:
            data = self.storage.get_bytes(ref.key)
        except StorageError as exc:
            if "no such object" in str(exc):
                raise NotFound(f"no file {ref.path!r} in {ref.title_id}/{ref.version}") from exc
            raise
        item = (data, _etag(hashlib.sha1(data).hexdigest()))
        if len(data) <= self.cache_bytes // 8:
            with self._lock:
                if ref.key not in self._cache:
                    self._cache[ref.key] = item
                    self._cached += len(data)
                while self._cached > self.cache_bytes:
                    _, (old, _) = self._cache.popitem(last=False)
                    self._cached -= len(old)
        return item

    def respond(self, ref: PackagePath, headers: dict[str, str], *, head: bool = False) -> Response:
        """The response for a GET/HEAD of ``ref`` (blocking I/O: call from a worker thread)."""
        content_type = content_type_for(ref.path)
        if isinstance(self.storage, LocalStorage):
            path = self._local_file(ref)
            stat = path.stat()
            etag = _etag(stat.st_size, stat.st_mtime_ns, stat.st_ino)
            if _not_modified(headers.get("if-none-match"), etag):
                return Response(status_code=304, headers={"etag": etag, "cache-control": IMMUTABLE})
            # FileResponse handles Range (206, multipart ranges, 416) and If-Range itself.
            return FileResponse(path, media_type=content_type, stat_result=stat,
                                headers={"etag": etag, "cache-control": IMMUTABLE})
        data, etag = self._bytes(ref)
        if _not_modified(headers.get("if-none-match"), etag):
            return Response(status_code=304, headers={"etag": etag, "cache-control": IMMUTABLE})
        return byte_range_response(data, content_type, etag, headers.get("range"), headers.get("if-range"),
                                   head=head)


def parse_range(header: str, size: int) -> tuple[int, int] | None:
    """The one byte range (first, last inclusive) of a Range header; None: serve it all (several ranges,
    or a form this server does not do); ValueError when it cannot be satisfied."""
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        first = int(first_s) if first_s else -1
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first < 0:  # a suffix: the last ``last`` bytes
        if not last_s:
            return None
        if last <= 0:
            raise ValueError(f"range {header!r} asks for no bytes")
        return max(0, size - last), size - 1
    if first >= size or last < first:
        raise ValueError(f"range {header!r} is outside 0-{size - 1}")
    return first, min(last, size - 1)


def byte_range_response(data: bytes, content_type: str, etag: str, range_header: str | None,
                        if_range: str | None, *, head: bool = False) -> Response:
    size = len(data)
    base = {"etag": etag, "cache-control": IMMUTABLE, "accept-ranges": "bytes"}
    if range_header and (not if_range or if_range.strip() == etag):
        try:
            span = parse_range(range_header, size)
        except ValueError:
            return Response(status_code=416, headers={**base, "content-range": f"bytes */{size}"})
        if span is not None:
            first, last = span
            body = data[first:last + 1]
            headers = {**base, "content-range": f"bytes {first}-{last}/{size}", "content-length": str(len(body))}
            return Response(b"" if head else body, status_code=206, media_type=content_type, headers=headers)
    headers = {**base, "content-length": str(size)}
    return Response(b"" if head else data, media_type=content_type, headers=headers)
