"""A caching edge on 127.0.0.1: Gbit/s of cached segments to keep-alive clients, parent fetches per miss, and
the eviction policy's byte hit ratio on a Zipf video trace (S3-FIFO against LRU).

    .venv/bin/python bench/edge.py [--seconds 8] [--runs 3] [--connections 32] [--clients 64]

Set-up (not timed): 24 objects of 1 MB of random bytes as one title's segments in a temporary
local store; `reelflow serve` over it as the origin, `reelflow edge --hub` in front of it and
`reelflow edge` (the edge under test) with the hub as its parent, each its own process, as
they run in production (one uvicorn process each; the edge gets one core's worth of event loop,
the load generator runs in this process on the other core).

Throughput: every object is fetched once (so all are hits), then a small asyncio HTTP/1.1 client
(no HTTP library in the loop, so the client costs little) keeps ``--connections`` keep-alive
connections busy, closed loop, each asking for the objects round robin, for ``--seconds`` after
a 1 s warm-up; Gbit/s of response bodies, median over runs.

Miss: ``--clients`` concurrent requests for one object the edge does not hold; counted on the
parent (the hub's request counter) and by the edge's parent-fetch counter.

Policy: ``edge_cache.replay`` of the Zipf video trace of tests/playback/test_edge_cache.py
(300 titles, 1500 plays, alpha 0.9, plays stop early) at several cache sizes; with
``libcachesim`` importable (it is not a reelflow dependency: ``pip install --target DIR
libcachesim`` and PYTHONPATH=DIR) its LRU and S3-FIFO replay the same trace as a cross-check.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))       # this checkout's reelflow, as the servers run it
sys.path.insert(0, str(HERE.parent / "tests"))     # edge_procs, test_edge_cache's trace
sys.path.insert(0, str(HERE.parent / "tests" / "playback"))

PACKAGE = "titles/bench/v-bench0001/video/720p"
OBJECTS = 24
OBJECT_BYTES = 1 << 20


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start(argv: list[str], url: str, log: Path, env: dict[str, str]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT, env={**os.environ, **env})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{argv} did not start: {log.read_text()}")


async def load(port: int, paths: list[str], connections: int, seconds: float) -> tuple[int, float]:
    """Closed loop on keep-alive connections: (body bytes, seconds measured) after a 1 s warm-up."""
    counted = [0]
    counting = [False]
    stop = [False]

    async def connection(offset: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        while not stop[0]:
            path = paths[i % len(paths)]
            i += 1
            writer.write(f"GET /{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(next(line.split(b":", 1)[1] for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length")))
            await reader.readexactly(length)
            if counting[0]:
                counted[0] += length
        writer.close()

    tasks = [asyncio.create_task(connection(k)) for k in range(connections)]
    await asyncio.sleep(1.0)
    counting[0] = True
    started = time.perf_counter()
    await asyncio.sleep(seconds)
    counting[0] = False
    elapsed = time.perf_counter() - started
    stop[0] = True
    await asyncio.gather(*tasks, return_exceptions=True)
    return counted[0], elapsed


def miss_fetches(edge: str, hub: str, key: str, clients: int, auth: dict[str, str]) -> tuple[int, int, bool]:
    """(requests the hub got, parent fetches the edge made) for ``clients`` concurrent requests of one missing key."""
    hub_before = httpx.get(f"{hub}/admin/stats", headers=auth).json()["requests"]
    edge_before = httpx.get(f"{edge}/admin/stats", headers=auth).json()["parent_fetches"]
    barrier = threading.Barrier(clients)
    bodies: list[int] = []

    def get() -> None:
        with httpx.Client(timeout=60) as http:
            barrier.wait()
            bodies.append(len(http.get(f"{edge}/{key}").content))

    threads = [threading.Thread(target=get) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hub_after = httpx.get(f"{hub}/admin/stats", headers=auth).json()["requests"]
    edge_after = httpx.get(f"{edge}/admin/stats", headers=auth).json()["parent_fetches"]
    return hub_after - hub_before, edge_after - edge_before, all(b == OBJECT_BYTES for b in bodies)


def policies() -> list[dict[str, Any]]:
    from test_edge_cache import zipf_video_trace

    from reelflow.playback.edge_cache import Lru, S3Fifo, replay

    trace = zipf_video_trace(7)
    distinct = sum(dict(trace).values())
    try:
        import libcachesim as lcs  # type: ignore[import-not-found]
    except ImportError:
        lcs = None
    ids: dict[str, int] = {}
    rows = []
    for share in (0.01, 0.02, 0.05, 0.1, 0.2):
        capacity = int(distinct * share)
        row: dict[str, Any] = {"cache_share": share, "lru": replay(Lru(capacity), trace)[1],
                               "s3fifo": replay(S3Fifo(capacity), trace)[1]}
        if lcs is not None:
            for name, cache in (("lcs_lru", lcs.LRU(cache_size=capacity)),
                                ("lcs_s3fifo", lcs.S3FIFO(cache_size=capacity))):
                hit = total = 0
                for key, size in trace:
                    req = lcs.Request()
                    req.obj_id = ids.setdefault(key, len(ids) + 1)
                    req.obj_size = size
                    total += size
                    if cache.get(req):
                        hit += size
                row[name] = hit / total
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--clients", type=int, default=64)
    args = parser.parse_args()

    from edge_procs import EDGE_TOKEN

    auth = {"authorization": f"Bearer {EDGE_TOKEN}"}
    env = {"REELFLOW_EDGE__TOKEN": EDGE_TOKEN, "PYTHONPATH": str(HERE.parent / "src")}
    py = [sys.executable, "-m", "reelflow.cli"]
    with tempfile.TemporaryDirectory(prefix="reelflow-bench-edge-") as tmp:
        root = Path(tmp)
        store = root / "origin"
        (store / PACKAGE).mkdir(parents=True)
        for k in range(OBJECTS + 1):
            (store / PACKAGE / f"{k}.m4s").write_bytes(os.urandom(OBJECT_BYTES))
        ports = [free_port() for _ in range(3)]
        urls = [f"http://127.0.0.1:{p}" for p in ports]
        procs = []
        try:
            procs.append(start([*py, "serve", "--storage", str(store), "--port", str(ports[0])], urls[0],
                               root / "origin.log", env))
            procs.append(start([*py, "edge", "--name", "hub", "--hub", "--port", str(ports[1]), "--parent", urls[0],
                                "--store", str(root / "hub")], urls[1], root / "hub.log", env))
            procs.append(start([*py, "edge", "--name", "edge", "--port", str(ports[2]), "--parent", urls[1],
                                "--store", str(root / "edge")], urls[2], root / "edge.log", env))
            edge, hub = urls[2], urls[1]
            paths = [f"{PACKAGE}/{k}.m4s" for k in range(OBJECTS)]
            for path in paths:
                assert len(httpx.get(f"{edge}/{path}", timeout=30).content) == OBJECT_BYTES
            hub_requests, edge_fetches, whole = miss_fetches(edge, hub, f"{PACKAGE}/{OBJECTS}.m4s", args.clients, auth)
            print(f"miss: {args.clients} concurrent clients -> {hub_requests} request(s) at the parent, "
                  f"{edge_fetches} parent fetch(es) by the edge; every client got the whole object: {whole}")
            gbits = []
            for run in range(args.runs):
                nbytes, seconds = asyncio.run(load(ports[2], paths, args.connections, args.seconds))
                gbits.append(nbytes * 8 / seconds / 1e9)
                print(f"run {run + 1}: {gbits[-1]:.2f} Gbit/s of cached 1 MB segments, {args.connections} "
                      f"keep-alive connections, {seconds:.1f} s")
            print(f"median: {statistics.median(gbits):.2f} Gbit/s")
        finally:
            for proc in procs:
                proc.terminate()
                proc.wait(10)
    print("byte hit ratio on the Zipf video trace (cache size as a share of the distinct bytes):")
    for row in policies():
        print("  " + ", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()))


if __name__ == "__main__":
    main()
