"""Caching edges as real `reelflow edge` processes: origin (the service) -> hub edge -> edge, on 127.0.0.1.

What is checked on the wire: a miss is fetched once and then a hit, byte for byte the origin's;
N concurrent requests for one missing object make one request to the parent (counted by the
parent); a parent that sends a short or corrupt object gets it neither served whole nor stored;
the store stays within its byte budget; the fill's admin PUT stores only verified objects, pinned.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge_procs import EDGE_TOKEN, EdgeProcess
from packaged_titles import CLEAR_ID, VERSION
from playback_helpers import Server, free_port, service_settings
from reelflow.playback.api import create_app

pytestmark = pytest.mark.slow
PACKAGE = f"titles/{CLEAR_ID}/{VERSION}"


@pytest.fixture(scope="module")
def origin(clear_title: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    settings = service_settings(clear_title.root, tmp_path_factory.mktemp("edge-db"), port=port)
    with Server(create_app(settings, load_keys=False), port) as server:
        yield server.url


@pytest.fixture(scope="module")
def media_keys(clear_title: Any) -> list[str]:
    """Every media file of the clear title, as store keys, largest first."""
    root = Path(clear_title.root)
    files = [p for p in (root / PACKAGE).rglob("*") if p.suffix in (".m4s", ".mp4")]
    return [str(p.relative_to(root)) for p in sorted(files, key=lambda p: -p.stat().st_size)]


@pytest.fixture(scope="module")
def hub(origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    with EdgeProcess("hub", origin, tmp_path_factory.mktemp("hub") / "store", hub=True) as edge:
        yield edge


@pytest.fixture(scope="module")
def edge(hub: EdgeProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeProcess]:
    with EdgeProcess("edge1", hub.url, tmp_path_factory.mktemp("edge1") / "store") as child:
        yield child


def test_miss_then_hit_byte_for_byte_with_ranges(origin: str, edge: EdgeProcess, media_keys: list[str]) -> None:
    key = media_keys[0]
    with httpx.Client(timeout=20) as http:
        truth = http.get(f"{origin}/{key}").content
        miss = http.get(f"{edge.url}/{key}")
        hit = http.get(f"{edge.url}/{key}")
        part = http.get(f"{edge.url}/{key}", headers={"range": "bytes=100-1099"})
        tail = http.get(f"{edge.url}/{key}", headers={"range": "bytes=-10"})
        bad = http.get(f"{edge.url}/{key}", headers={"range": f"bytes={len(truth)}-"})
        absent = http.get(f"{edge.url}/{PACKAGE}/video/nope/1.m4s")
        escape = http.get(f"{edge.url}/titles/{CLEAR_ID}/{VERSION}/title.json")
    assert miss.status_code == hit.status_code == 200
    assert miss.headers["x-cache"] == "MISS" and hit.headers["x-cache"] == "HIT"
    assert miss.content == hit.content == truth
    sha = hashlib.sha256(truth).hexdigest()
    assert hit.headers["etag"] == f'"{sha}"' and hit.headers["x-content-sha256"] == sha
    assert part.status_code == 206 and part.content == truth[100:1100]
    assert part.headers["content-range"] == f"bytes 100-1099/{len(truth)}"
    assert tail.status_code == 206 and tail.content == truth[-10:]
    assert bad.status_code == 416
    assert absent.status_code == 404 and escape.status_code == 403
    held = edge.admin("contents")
    assert {o["key"]: o["sha256"] for o in held["objects"]}[key] == sha
    assert held["titles"][f"{CLEAR_ID}/{VERSION}"][0] >= 1


def test_concurrent_misses_make_one_parent_request(origin: str, hub: EdgeProcess, edge: EdgeProcess,
                                                   media_keys: list[str]) -> None:
    key = media_keys[1]
    truth = httpx.get(f"{origin}/{key}").content
    before, fetched = hub.admin("stats")["requests"], edge.admin("stats")["parent_fetches"]
    n = 24
    barrier = threading.Barrier(n)

    def get(_: int) -> bytes:
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            return http.get(f"{edge.url}/{key}").content

    with ThreadPoolExecutor(n) as pool:
        bodies = list(pool.map(get, range(n)))
    assert all(b == truth for b in bodies)
    assert hub.admin("stats")["requests"] - before == 1          # counted on the parent
    assert edge.admin("stats")["parent_fetches"] - fetched == 1


class _BadParent(http.server.BaseHTTPRequestHandler):
    """Serves every path as 200 000 bytes: ``short`` sends half and closes, ``corrupt`` a wrong SHA-256."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = os.urandom(200_000)
        self.send_response(200)
        self.send_header("content-type", "video/iso.segment")
        self.send_header("content-length", str(len(body)))
        if "corrupt" in self.path:
            self.send_header("x-content-sha256", hashlib.sha256(b"something else").hexdigest())
        self.end_headers()
        self.wfile.write(body[:100_000] if "short" in self.path else body)
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def bad_parent() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _BadParent)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("kind", ["short", "corrupt"])
def test_a_short_or_corrupt_parent_object_is_neither_served_whole_nor_stored(kind: str, bad_parent: str,
                                                                           tmp_path: Path) -> None:
    store = tmp_path / "store"
    key = f"{PACKAGE}/video/{kind}/1.m4s"
    with EdgeProcess(f"bad-{kind}", bad_parent, store) as edge:
        for _ in range(2):
            received = b""
            try:
                with httpx.stream("GET", f"{edge.url}/{key}", timeout=20) as answer:
                    for chunk in answer.iter_raw():
                        received += chunk
            except httpx.HTTPError:
                pass
            assert len(received) < 200_000                     # never the whole (wrong) object
        contents = edge.admin("contents")
        stats = edge.admin("stats")
    assert contents["objects"] == [] and stats["parent_failures"] == 2 and stats["parent_fetches"] == 2
    assert [p for p in store.rglob("*") if p.is_file()] == []   # no object, no sidecar, no temporary file


def test_eviction_keeps_the_store_within_its_budget(hub: EdgeProcess, media_keys: list[str], origin: str,
                                                    tmp_path: Path) -> None:
    budget = 1 << 20
    sizes = {k: len(httpx.get(f"{origin}/{k}").content) for k in media_keys}
    assert sum(sizes.values()) > 1.5 * budget      # the title does not fit: something must go
    store = tmp_path / "store"
    with EdgeProcess("small", hub.url, store, budget_bytes=budget) as edge, httpx.Client(timeout=20) as http:
        for _ in range(2):
            for key in media_keys:
                answer = http.get(f"{edge.url}/{key}")
                assert answer.status_code == 200 and len(answer.content) == sizes[key]
        contents = edge.admin("contents")
    on_disk = sum(p.stat().st_size for p in (store / "objects").rglob("*.m4s")) + \
        sum(p.stat().st_size for p in (store / "objects").rglob("*.mp4"))
    assert contents["used_bytes"] <= budget and on_disk <= budget
    assert 0 < len(contents["objects"]) < len(media_keys)


def test_fill_put_stores_verified_objects_pinned(origin: str, media_keys: list[str], tmp_path: Path) -> None:
    key = media_keys[-1]
    body = httpx.get(f"{origin}/{key}").content
    sha = hashlib.sha256(body).hexdigest()
    auth = {"authorization": f"Bearer {EDGE_TOKEN}"}
    with EdgeProcess("filled", origin, tmp_path / "store") as edge, httpx.Client(timeout=20) as http:
        url = f"{edge.url}/admin/objects/{key}"
        assert http.put(url, content=body, headers={"x-content-sha256": sha}).status_code == 401
        wrong = http.put(url, content=body[:-1] + bytes([body[-1] ^ 1]), headers={**auth, "x-content-sha256": sha})
        assert wrong.status_code == 400 and edge.admin("contents")["objects"] == []
        assert http.put(url, content=body, headers={**auth, "x-content-sha256": sha}).status_code == 201
        served = http.get(f"{edge.url}/{key}")
        contents = edge.admin("contents")
        assert served.headers["x-cache"] == "HIT" and served.content == body
        assert contents["objects"] == [{"key": key, "size": len(body), "sha256": sha, "pinned": True}]
        assert contents["pinned_bytes"] == len(body)
        assert edge.admin("stats")["parent_fetches"] == 0
        assert http.delete(url, headers=auth).status_code == 204
        assert edge.admin("contents")["objects"] == []
