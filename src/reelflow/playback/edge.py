"""A caching CDN edge (`reelflow edge --parent URL --store DIR`): its store, parent fetches, admin, heartbeats.

    GET|HEAD /titles/{id}/{version}/{path}   a package file: a hit from the store, a miss from the parent
    PUT    /admin/objects/{key}              the off-peak fill: store an object, pinned (bearer token)
    DELETE /admin/objects/{key}              the fill takes a pinned object back
    GET    /admin/contents                   what the store holds (bearer token)
    GET    /admin/stats                      requests, hits, misses, parent fetches, bytes (bearer token)
    GET    /healthz

A miss is fetched from the parent (a hub edge, or the playback service as the origin) once,
however many requests ask for it while it comes: the first request starts a fetch that runs on
its own (a client that goes away does not stop it), and every request for the object, the first
included, is streamed from the temporary file as the bytes land. The object gets its final name
(rename) only when its size equals the parent's Content-Length and its SHA-256 equals the
parent's ``X-Content-SHA256`` (or an ETag that is a SHA-256, as edges send); the last byte of the
streamed copy is held back until then, so a client never receives a whole corrupt object: a
failed check closes its connection short. A failed fetch leaves nothing in the store.

Objects fetched on demand are evicted by the policy of playback/edge_cache.py within the byte
budget left beside the pinned ones. Objects the fill PUTs are pinned: they stay until the fill
deletes them. On start the store is read back (each object has a small JSON sidecar written
before it is visible under its final name's index); stray temporary files are removed.

Heartbeats (``edge.service_url``) carry name, URL, ISP/region, health, load (bytes/s over the
last interval, requests in flight), free bytes and the titles held, as
``{"<title>/<version>": [objects, bytes]}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import os
import re
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from reelflow.errors import PlaybackError
from reelflow.infra.settings import EdgeNodeConfig, Settings
from reelflow.infra.storage import content_type_for
from reelflow.playback.cors import with_cors
from reelflow.playback.edge_cache import Policy, make_policy
from reelflow.playback.segments import IMMUTABLE, check_path, parse_range

log = logging.getLogger(__name__)

CHUNK = 256 * 1024
_SHA = re.compile(r"^[0-9a-f]{64}$")
_NO_STORE = {"cache-control": "no-store"}


class FetchFailed(Exception):
    """A parent fetch that gave no usable object; ``status`` is what clients get (404 or 502)."""

    def __init__(self, message: str, status: int = 502) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Entry:
    """One whole, verified object in the store."""

    size: int
    sha256: str
    content_type: str
    pinned: bool = False


@dataclass
class Fetch:
    """A parent fetch in flight; readers follow ``written`` and wait on ``changed``."""

    key: str
    tmp: Path
    size: int | None = None
    content_type: str = "application/octet-stream"
    written: int = 0
    verified: bool = False
    error: FetchFailed | None = None
    started: asyncio.Event = field(default_factory=asyncio.Event)       # size known, or failed
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    done: bool = False
    writer: int = -1                  # the temporary file, created with the fetch, so readers can open it at once
    reader: BinaryIO | None = None    # shared by its readers (pread); closed when the last one lets go of the fetch

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()


@dataclass
class Stats:
    requests: int = 0
    hits: int = 0
    misses: int = 0
    parent_fetches: int = 0
    parent_failures: int = 0
    bytes_served: int = 0
    in_flight: int = 0


def expected_sha(headers: httpx.Headers) -> str | None:
    """The SHA-256 a parent vouches for: ``X-Content-SHA256``, or a strong ETag that is one."""
    value = str(headers.get("x-content-sha256", "")).strip().lower()
    if _SHA.match(value):
        return value
    etag = str(headers.get("etag", "")).strip()
    if etag.startswith('"') and _SHA.match(etag.strip('"').lower()):
        return etag.strip('"').lower()
    return None


class EdgeStore:
    """The store of one edge: whole objects under ``root/objects/<key>``, fetches in ``root/tmp``."""

    def __init__(self, root: Path, budget_bytes: int, policy: str = "s3fifo") -> None:
        self.root = root
        self.objects = root / "objects"
        self.tmpdir = root / "tmp"
        self.objects.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.tmpdir, ignore_errors=True)      # a fetch the last run did not finish
        self.tmpdir.mkdir(parents=True)
        self.budget = budget_bytes
        self.entries: dict[str, Entry] = {}
        self.pinned_bytes = 0
        self.policy: Policy = make_policy(policy, budget_bytes)  # type: ignore[arg-type]
        self._serial = 0
        self._load()

    # --- paths and the index ---------------------------------------------------------------

    def path(self, key: str) -> Path:
        return self.objects / key

    def _meta(self, key: str) -> Path:
        return self.objects / (key + ".meta.json")

    def new_tmp(self) -> Path:
        self._serial += 1
        return self.tmpdir / f"{os.getpid()}-{self._serial}"

    def _load(self) -> None:
        for meta in sorted(self.objects.rglob("*.meta.json")):
            key = str(meta.relative_to(self.objects))[: -len(".meta.json")]
            data_path = self.path(key)
            try:
                info = json.loads(meta.read_text())
                entry = Entry(int(info["size"]), str(info["sha256"]), str(info["content_type"]), bool(info["pinned"]))
                if data_path.stat().st_size != entry.size:
                    raise ValueError("size differs")
            except (OSError, ValueError, KeyError) as exc:
                log.warning("edge store: dropping %s (%s)", key, exc)
                meta.unlink(missing_ok=True)
                data_path.unlink(missing_ok=True)
                continue
            self._index(key, entry)

    def _index(self, key: str, entry: Entry) -> None:
        self.entries[key] = entry
        if entry.pinned:
            self.pinned_bytes += entry.size
            self._drop(self.policy.resize(max(self.budget - self.pinned_bytes, 0)))
        else:
            self._drop(self.policy.insert(key, entry.size))

    def _drop(self, keys: list[str]) -> None:
        for key in keys:
            entry = self.entries.pop(key, None)
            if entry is None:
                continue
            self._meta(key).unlink(missing_ok=True)
            self.path(key).unlink(missing_ok=True)   # a reader with the file open keeps reading it
            log.debug("edge store: evicted %s (%d bytes)", key, entry.size)

    @property
    def used_bytes(self) -> int:
        return sum(e.size for e in self.entries.values())

    def lookup(self, key: str) -> Entry | None:
        entry = self.entries.get(key)
        if entry is not None and not entry.pinned:
            self.policy.access(key)
        return entry

    def commit(self, key: str, tmp: Path, entry: Entry) -> None:
        """Give a verified temporary file its final name and index it (evicting what no longer fits)."""
        old = self.entries.pop(key, None)
        if old is not None:
            if old.pinned:
                self.pinned_bytes -= old.size
            else:
                self.policy.remove(key)
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        meta_tmp = tmp.with_suffix(".meta")
        meta_tmp.write_text(json.dumps({"size": entry.size, "sha256": entry.sha256,
                                        "content_type": entry.content_type, "pinned": entry.pinned}))
        os.replace(tmp, final)
        os.replace(meta_tmp, self._meta(key))
        self._index(key, entry)

    def remove(self, key: str) -> bool:
        entry = self.entries.get(key)
        if entry is None:
            return False
        if entry.pinned:
            self.pinned_bytes -= entry.size
            self.entries[key] = Entry(entry.size, entry.sha256, entry.content_type, False)
            self._drop([key])
            self.policy.resize(self.budget - self.pinned_bytes)
        else:
            self.policy.remove(key)
            self._drop([key])
        return True

    def holdings(self) -> dict[str, list[int]]:
        """``{"<title>/<version>": [objects, bytes]}``: the compact form heartbeats carry."""
        titles: dict[str, list[int]] = {}
        for key, entry in self.entries.items():
            parts = key.split("/")
            if len(parts) >= 4:
                held = titles.setdefault(f"{parts[1]}/{parts[2]}", [0, 0])
                held[0] += 1
                held[1] += entry.size
        return titles

    def placed(self) -> list[str]:
        """The titles (``<title>/<version>``) the fill pinned objects of here: steering's first choice for them."""
        return sorted({"/".join(key.split("/")[1:3]) for key, entry in self.entries.items()
                       if entry.pinned and len(key.split("/")) >= 4})

    def free_bytes(self) -> int:
        disk = shutil.disk_usage(self.root).free
        return max(min(self.budget - self.used_bytes, disk), 0)


class Edge:
    """One caching edge: store, parent client, single-flight fetches, counters."""

    def __init__(self, config: EdgeNodeConfig) -> None:
        assert config.store is not None and config.parent is not None
        self.config = config
        self.store = EdgeStore(config.store, config.budget_bytes, config.policy)
        self.fetches: dict[str, Fetch] = {}
        self.stats = Stats()
        self.started = time.time()
        self._http: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._last_beat = (time.monotonic(), 0)

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            timeout = httpx.Timeout(self.config.fetch_timeout_s, connect=min(self.config.fetch_timeout_s, 5.0))
            self._http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64))
        return self._http

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.aclose()

    def spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- the miss path ----------------------------------------------------------------------

    def fetch(self, key: str) -> Fetch:
        """The fetch of ``key`` in flight, or a new one: one parent request per object at a time."""
        running = self.fetches.get(key)
        if running is not None:
            return running
        job = Fetch(key, self.store.new_tmp())
        job.writer = os.open(job.tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        job.reader = job.tmp.open("rb")
        self.fetches[key] = job
        self.stats.parent_fetches += 1
        self.spawn(self._run_fetch(job))
        return job

    async def _run_fetch(self, job: Fetch) -> None:
        url = f"{self.config.parent}/{job.key}"
        digest = hashlib.sha256()
        fd = job.writer
        want: str | None = None
        try:
            try:
                # identity: the bytes stored are the bytes the parent's Content-Length and hash describe
                async with self.http.stream("GET", url, headers={"accept-encoding": "identity"}) as answer:
                    if answer.status_code == 404:
                        raise FetchFailed(f"the parent has no {job.key}", 404)
                    if answer.status_code != 200:
                        raise FetchFailed(f"the parent answered {answer.status_code} for {job.key}")
                    length = answer.headers.get("content-length")
                    if length is None or not length.isdigit():
                        raise FetchFailed(f"the parent sent {job.key} without a Content-Length")
                    job.size = int(length)
                    job.content_type = answer.headers.get("content-type") or content_type_for(job.key)
                    want = expected_sha(answer.headers)
                    job.started.set()
                    async for chunk in answer.aiter_raw(CHUNK):
                        if job.written + len(chunk) > job.size:
                            raise FetchFailed(f"the parent sent more than {job.size} bytes of {job.key}")
                        os.write(fd, chunk)
                        digest.update(chunk)
                        job.written += len(chunk)
                        await job.notify()
            finally:
                os.close(fd)
            if job.written != job.size:
                raise FetchFailed(f"the parent sent {job.written} of {job.size} bytes of {job.key}")
            sha = digest.hexdigest()
            if want is not None and sha != want:
                raise FetchFailed(f"{job.key} from the parent has SHA-256 {sha[:12]}..., not {want[:12]}...")
            self.store.commit(job.key, job.tmp, Entry(job.size, sha, job.content_type))
            job.verified = True
        except (httpx.HTTPError, OSError, FetchFailed) as exc:
            failure = exc if isinstance(exc, FetchFailed) else FetchFailed(f"fetching {job.key} from the parent "
                                                                           f"failed: {exc.__class__.__name__}: {exc}")
            log.warning("edge %s: %s", self.config.name, failure)
            self.stats.parent_failures += 1
            job.error = failure
            job.tmp.unlink(missing_ok=True)
        finally:
            job.done = True
            job.started.set()
            self.fetches.pop(job.key, None)
            await job.notify()

    async def _follow(self, job: Fetch, first: int, last: int) -> AsyncIterator[bytes]:
        """Bytes ``first..last`` of a fetch as they land; the object's last byte only once it is verified."""
        assert job.size is not None and job.reader is not None
        fd = job.reader.fileno()           # opened with the fetch: readable after the rename or an eviction
        self.stats.in_flight += 1
        try:
            pos = first
            while pos <= last:
                if job.error is not None:
                    raise job.error                     # ends the response short: the client sees a broken body
                ready = job.size if job.verified else min(job.written, job.size - 1)
                if ready > pos:
                    chunk = os.pread(fd, min(CHUNK, ready - pos, last + 1 - pos), pos)
                    pos += len(chunk)
                    self.stats.bytes_served += len(chunk)
                    yield chunk
                    continue
                async with job.changed:
                    if job.error is None and not job.verified and min(job.written, job.size - 1) <= pos:
                        await job.changed.wait()
        finally:
            self.stats.in_flight -= 1

    # --- responses ------------------------------------------------------------------------------

    async def respond(self, request: Request) -> Response:
        params = request.path_params
        try:
            ref = check_path(params["title_id"], params["version"], params["path"])
        except PlaybackError as exc:
            return _error(exc.status, str(exc))
        key = ref.key
        head = request.method == "HEAD"
        self.stats.requests += 1
        entry = self.store.lookup(key)
        if entry is not None:
            self.stats.hits += 1
            return self._hit(key, entry, request, head)
        self.stats.misses += 1
        job = self.fetch(key)
        await job.started.wait()
        if job.error is not None and job.size is None:
            return _error(job.error.status, str(job.error))
        assert job.size is not None
        headers = {"content-type": job.content_type, "cache-control": IMMUTABLE, "accept-ranges": "bytes",
                   "x-cache": "MISS"}
        first, last, status = 0, job.size - 1, 200
        if request.headers.get("range"):
            try:
                span = parse_range(request.headers["range"], job.size)
            except ValueError:
                return Response(status_code=416, headers={"content-range": f"bytes */{job.size}"})
            if span is not None:
                first, last, status = span[0], span[1], 206
                headers["content-range"] = f"bytes {first}-{last}/{job.size}"
        headers["content-length"] = str(last - first + 1)
        if head:
            return Response(status_code=status, headers=headers)
        return StreamingResponse(self._follow(job, first, last), status_code=status, headers=headers)

    def _hit(self, key: str, entry: Entry, request: Request, head: bool) -> Response:
        etag = f'"{entry.sha256}"'
        headers = {"etag": etag, "x-content-sha256": entry.sha256, "cache-control": IMMUTABLE,
                   "accept-ranges": "bytes", "x-cache": "HIT"}
        inm = request.headers.get("if-none-match")
        if inm and (inm.strip() == "*" or etag in {t.strip().removeprefix("W/") for t in inm.split(",")}):
            return Response(status_code=304, headers=headers)
        first, last, status = 0, entry.size - 1, 200
        range_header = request.headers.get("range")
        if_range = request.headers.get("if-range")
        if range_header and (not if_range or if_range.strip() == etag):
            try:
                span = parse_range(range_header, entry.size)
            except ValueError:
                return Response(status_code=416, headers={**headers, "content-range": f"bytes */{entry.size}"})
            if span is not None:
                first, last, status = span[0], span[1], 206
                headers["content-range"] = f"bytes {first}-{last}/{entry.size}"
        length = last - first + 1
        headers["content-length"] = str(length)
        if head:
            return Response(status_code=status, headers=headers, media_type=entry.content_type)
        try:
            body = _read(self.store.path(key), first, length)
        except OSError:                              # evicted between lookup and read: serve it as a miss
            return _error(503, f"{key} is being replaced; retry")
        self.stats.bytes_served += length
        return Response(body, status_code=status, headers=headers, media_type=entry.content_type)

    # --- admin -------------------------------------------------------------------------------------

    def authorized(self, request: Request) -> Response | None:
        """None when the request carries the edge's bearer token; else the refusal."""
        token = self.config.token.get_secret_value() if self.config.token else None
        if not token:
            return _error(403, "the admin endpoints are off: set edge.token")
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(value.strip().encode(), token.encode()):
            return _error(401, "admin endpoints need Authorization: Bearer <edge.token>")
        return None

    async def put_object(self, request: Request) -> Response:
        """The fill stores a whole object, pinned: Content-Length and X-Content-SHA256 are checked."""
        refused = self.authorized(request)
        if refused is not None:
            return refused
        key = request.path_params["key"]
        parts = key.split("/", 3)
        try:
            if len(parts) != 4 or parts[0] != "titles":
                raise PlaybackError(f"{key!r} is not titles/<title>/<version>/<path>")
            key = check_path(parts[1], parts[2], parts[3]).key
        except PlaybackError as exc:
            return _error(exc.status, str(exc))
        length, want = request.headers.get("content-length", ""), request.headers.get("x-content-sha256", "").lower()
        if not length.isdigit() or not _SHA.match(want):
            return _error(400, "a fill PUT needs Content-Length and X-Content-SHA256 (hex)")
        size = int(length)
        held = self.store.entries.get(key)
        pinned_after = self.store.pinned_bytes + size - (held.size if held is not None and held.pinned else 0)
        if pinned_after > self.store.budget:
            return _error(507, f"pinning {key} ({size} bytes) would put {pinned_after} pinned bytes over the budget "
                               f"of {self.store.budget}")
        tmp = self.store.new_tmp()
        digest, written = hashlib.sha256(), 0
        try:
            with tmp.open("wb") as out:
                async for chunk in request.stream():
                    written += len(chunk)
                    if written > size:
                        break
                    out.write(chunk)
                    digest.update(chunk)
            if written != size or digest.hexdigest() != want:
                tmp.unlink(missing_ok=True)
                return _error(400, f"the body of {key} is {written} bytes with SHA-256 {digest.hexdigest()[:12]}..., "
                                   f"not {size} bytes with {want[:12]}...")
            self.store.commit(key, tmp, Entry(size, want, content_type_for(key), pinned=True))
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return _json({"key": key, "size": size, "sha256": want, "pinned": True}, 201)

    async def delete_object(self, request: Request) -> Response:
        refused = self.authorized(request)
        if refused is not None:
            return refused
        key = request.path_params["key"]
        if not self.store.remove(key):
            return _error(404, f"the edge holds no {key}")
        return Response(status_code=204)

    async def contents(self, request: Request) -> Response:
        refused = self.authorized(request)
        if refused is not None:
            return refused
        store = self.store
        return _json({
            "edge": self.config.name, "budget_bytes": store.budget, "used_bytes": store.used_bytes,
            "pinned_bytes": store.pinned_bytes, "policy": self.config.policy, "titles": store.holdings(),
            "objects": [{"key": k, "size": e.size, "sha256": e.sha256, "pinned": e.pinned}
                        for k, e in sorted(store.entries.items())],
        })

    async def stats_view(self, request: Request) -> Response:
        refused = self.authorized(request)
        if refused is not None:
            return refused
        return _json({**self.stats.__dict__, "objects": len(self.store.entries), "used_bytes": self.store.used_bytes})

    # --- heartbeats ------------------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        """What the service is told every heartbeat_s (and the load over the interval since the last one)."""
        now = time.monotonic()
        then, served_then = self._last_beat
        self._last_beat = (now, self.stats.bytes_served)
        bps = (self.stats.bytes_served - served_then) / max(now - then, 1e-3)
        config = self.config
        load = max(bps * 8 / config.capacity_bps, self.stats.in_flight / config.max_connections)
        return {
            "name": config.name, "base_url": config.base_url, "isp": config.isp, "region": config.region,
            "serves_players": config.serves_players, "heartbeat_s": config.heartbeat_s, "healthy": True,
            "load": round(min(load, 10.0), 6), "bytes_per_s": round(bps, 1), "connections": self.stats.in_flight,
            "free_bytes": self.store.free_bytes(), "used_bytes": self.store.used_bytes,
            "titles": self.store.holdings(), "placed": self.store.placed(),
        }

    async def heartbeats(self) -> None:
        """POST a heartbeat to the service every heartbeat_s; a failed one is logged and the next one tried."""
        config = self.config
        assert config.service_url is not None
        url = f"{config.service_url}/api/edges/heartbeat"
        headers = {"authorization": f"Bearer {config.token.get_secret_value()}"} if config.token else {}
        while True:
            try:
                answer = await self.http.post(url, json=self.heartbeat(), headers=headers,
                                              timeout=max(config.heartbeat_s, 1.0))
                if answer.status_code >= 400:
                    log.warning("edge %s: heartbeat refused (%d): %s", config.name, answer.status_code,
                                answer.text[:200])
            except httpx.HTTPError as exc:
                log.warning("edge %s: heartbeat to %s failed: %s", config.name, url, exc)
            await asyncio.sleep(config.heartbeat_s)


def _read(path: Path, first: int, length: int) -> bytes:
    """A hit's bytes: one pread from the page cache (segments are a few MB)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, length, first)
    finally:
        os.close(fd)


def _json(data: Any, status: int = 200) -> Response:
    return Response(json.dumps(data, separators=(",", ":")), status_code=status, media_type="application/json",
                    headers=_NO_STORE)


def _error(status: int, message: str) -> Response:
    code = {400: "invalid_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 416: "range",
            502: "bad_gateway", 503: "unavailable", 507: "insufficient_storage"}.get(status, "error")
    return _json({"error": code, "message": message}, status)


def create_caching_edge_app(settings: Settings, *, config: EdgeNodeConfig | None = None) -> ASGIApp:
    """The caching edge as an ASGI app (wrapped in CORS); ``app.state.edge`` is its ``Edge``."""
    node = config or settings.edge
    edge = Edge(node)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if node.service_url:
            edge.spawn(edge.heartbeats())
        yield
        await edge.close()

    async def healthz(request: Request) -> Response:
        return _json({"status": "ok", "edge": node.name})

    def route(path: str, endpoint: Callable[[Request], Awaitable[Response]], methods: list[str]) -> Route:
        return Route(path, endpoint, methods=methods)

    app = Starlette(routes=[
        route("/healthz", healthz, ["GET"]),
        route("/titles/{title_id}/{version}/{path:path}", edge.respond, ["GET", "HEAD"]),
        route("/admin/objects/{key:path}", edge.put_object, ["PUT"]),
        route("/admin/objects/{key:path}", edge.delete_object, ["DELETE"]),
        route("/admin/contents", edge.contents, ["GET"]),
        route("/admin/stats", edge.stats_view, ["GET"]),
    ], lifespan=lifespan)
    app.state.edge = edge
    return with_cors(app, settings.service)
