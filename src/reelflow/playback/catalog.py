"""The catalogue: title records read from storage, with their manifests parsed once and cached.

``titles/<id>/title.json`` is the only thing the service trusts (it is written last by the
ingest); it names the package folder ``titles/<id>/v-<digest>/``, whose manifests are read and
parsed when the title is first asked for, then kept for ``catalog_ttl_s``. A republished title
therefore shows up within that time, and a package is never half-read: its folder never changes.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import m3u8
import mpegdash.parser
from mpegdash.nodes import MPEGDASH

from reelflow.errors import NotFound, StageError, StorageError
from reelflow.infra.storage import Storage, join_key
from reelflow.packaging.titles import TITLE_KEY, is_title_id, title_key

log = logging.getLogger(__name__)

TITLES = "titles"
TITLE_ID = TITLE_KEY   # what a storage key / URL segment of a title may be (packaging/titles.py)
VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KID_HEX = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True)
class Encryption:
    scheme: str                        # cenc | cbcs
    systems: tuple[str, ...]
    key_ids: Mapping[str, str]         # tier -> kid hex (32 lower-case digits)


@dataclass(frozen=True)
class Title:
    """A published title, as the service uses it."""

    title_id: str
    version: str                       # the package folder: v-<digest>
    record: Mapping[str, Any]
    dash_name: str                     # manifest paths inside the package
    hls_name: str
    mpd: MPEGDASH                      # parsed once; filters work on copies
    hls_master: m3u8.M3U8
    media_playlists: Mapping[str, m3u8.M3U8]   # path in the package -> parsed media playlist
    encryption: Encryption | None
    countries: tuple[str, ...] | None  # None: everywhere
    duration_s: float | None
    loaded_at: float = field(default=0.0, compare=False)
    # The media playlists' text as packaged: m3u8 keeps one EXT-X-KEY per segment, so its dumps()
    # drops every key line but the last (the identity line Shaka's ClearKey path needs among them).
    media_texts: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def package_key(self) -> str:
        return join_key(TITLES, self.title_id, self.version)


def _relative(url: str, package: str) -> str:
    """A manifest's path inside the package, from the record's absolute URLs."""
    if not url.startswith(package.rstrip("/") + "/"):
        raise StageError(f"manifest {url} is not inside the package {package}")
    return url[len(package.rstrip("/")) + 1:]


def parse_encryption(value: Any) -> Encryption | None:
    if not value:
        return None
    kids = {str(tier): str(kid).replace("-", "").lower() for tier, kid in dict(value.get("key_ids") or {}).items()}
    for tier, kid in kids.items():
        if not KID_HEX.match(kid):
            raise StageError(f"key id {kid!r} of tier {tier} is not 16 bytes of hex")
    return Encryption(scheme=str(value.get("scheme", "cenc")), systems=tuple(value.get("systems") or ()),
                      key_ids=kids)


def load_title(storage: Storage, title_id: str) -> Title:
    """Read and parse a title, by its id or its storage key (packaging/titles.py); NotFound when it is
    not published (or not a valid id). The Title's ``title_id`` is the key: URLs and tokens use it."""
    if not is_title_id(title_id):
        raise NotFound(f"no title {title_id!r}: not a valid title id")
    title_id = title_key(title_id)
    record_key = join_key(TITLES, title_id, "title.json")
    try:
        raw = storage.get_bytes(record_key)
    except StorageError as exc:
        if "no such object" in str(exc):
            raise NotFound(f"no title {title_id!r} is published") from exc
        raise
    record = json.loads(raw)
    if record.get("status", "published") != "published":
        raise NotFound(f"title {title_id!r} is not published (status {record.get('status')!r})")
    package = str(record["package"])
    version = package.rstrip("/").rsplit("/", 1)[-1]
    if not VERSION.match(version):
        raise StageError(f"title {title_id}: package folder {version!r} is not a valid name")
    dash_name = _relative(str(record["manifests"]["dash"]), package)
    hls_name = _relative(str(record["manifests"]["hls"]), package)
    prefix = join_key(TITLES, title_id, version)
    mpd = mpegdash.parser.MPEGDASHParser.parse(storage.get_bytes(join_key(prefix, dash_name)).decode())
    master = m3u8.loads(storage.get_bytes(join_key(prefix, hls_name)).decode())
    base = hls_name.rpartition("/")[0]
    media: dict[str, m3u8.M3U8] = {}
    texts: dict[str, str] = {}
    for uri in [p.uri for p in master.playlists] + [m.uri for m in master.media if m.uri]:
        path = join_key(base, uri)
        if path not in media:
            texts[path] = storage.get_bytes(join_key(prefix, path)).decode()
            media[path] = m3u8.loads(texts[path])
    countries = record.get("countries")
    probe = record.get("source", {}).get("probe", {})
    duration = probe.get("duration_s") if isinstance(probe, dict) else None
    return Title(
        title_id=title_id, version=version, record=record, dash_name=dash_name, hls_name=hls_name, mpd=mpd,
        hls_master=master, media_playlists=media, encryption=parse_encryption(record.get("encryption")),
        countries=None if countries is None else tuple(str(c).upper() for c in countries),
        duration_s=float(duration) if isinstance(duration, int | float) else None, loaded_at=time.monotonic(),
        media_texts=texts,
    )


class Catalog:
    """Titles by id, loaded on first use and kept ``ttl_s`` seconds (thread-safe)."""

    def __init__(self, storage: Storage, ttl_s: float = 5.0) -> None:
        self.storage = storage
        self.ttl_s = ttl_s
        self._titles: dict[str, Title] = {}
        self._missing: dict[str, float] = {}
        self._lock = threading.Lock()

    def cached(self, title_id: str) -> Title | None:
        """The title if it is cached and fresh; no I/O (the event loop may call this)."""
        title = self._titles.get(title_id)
        if title is not None and time.monotonic() - title.loaded_at < self.ttl_s:
            return title
        return None

    def get(self, title_id: str) -> Title:
        """The title, from the cache or storage (blocking I/O: call from a worker thread)."""
        title = self.cached(title_id)
        if title is not None:
            return title
        missed = self._missing.get(title_id)
        if missed is not None and time.monotonic() - missed < self.ttl_s:
            raise NotFound(f"no title {title_id!r} is published")
        with self._lock:  # one load per title at a time; the others wait and take its result
            title = self.cached(title_id)
            if title is not None:
                return title
            try:
                title = load_title(self.storage, title_id)
            except NotFound:
                if is_title_id(title_id) and len(self._missing) < 10_000:
                    self._missing[title_id] = time.monotonic()  # unknown ids must not each cost a read
                raise
            self._missing.pop(title_id, None)
            self._titles[title_id] = title
            log.info("loaded title %s (%s)", title_id, title.version)
            return title
