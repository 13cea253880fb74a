"""Load /api/play and the ClearKey license endpoint of `reelflow serve` on 127.0.0.1; requests/s and latency.

    .venv/bin/python bench/service.py [--rate 1000] [--seconds 10] [--runs 3] [--connections 32]

Set-up (not timed): a 2 s lavfi clip is encoded to two rungs (234p, 720p) plus AAC, packaged with
cenc and a key per tier (Shaka Packager raw keys), and published as one title in a temporary local
store, with its keys in a ``MemoryKeySource`` (the service reads keys through the same interface as
the database's key store); the service is started in its own process, as `reelflow serve` runs it
(one uvicorn process, SQLite database).

The load generator is a separate process: a small asyncio HTTP/1.1 client on keep-alive
connections (no HTTP library in the loop, so the client costs little of the shared 2 cores). It
is open-loop: request i is due at start + i/rate, and its latency is measured from when it was
due, so a server (or client) that falls behind shows it as latency instead of hiding it
(no coordinated omission). Each run is a 2 s warm-up, then ``--seconds`` measured.
Scenarios: play only, license only, and both mixed 1:1. Printed: achieved requests/s, p50, p99
and max latency, and errors, per run and the median over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing as mp
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"


# --- set-up --------------------------------------------------------------------------------------

def make_title(folder: Path) -> dict[str, Any]:
    """Encode, package (cenc, key per tier) and publish the bench title; returns the keys as hex."""
    from reelflow.encoding.audio import encode_audio
    from reelflow.encoding.encode import encode_video_rung, keyframe_frames
    from reelflow.encoding.probe import probe
    from reelflow.infra.settings import EncodeConfig, Rung
    from reelflow.infra.storage import LocalStorage
    from reelflow.infra.tools import ffmpeg_exe, packager_exe
    from reelflow.packaging import publish
    from reelflow.packaging.packager import stream_descriptor

    source = folder / "source.mp4"
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y",
                    "-f", "lavfi", "-i", "testsrc2=size=1280x720:rate=24:duration=2",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=2",
                    "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", str(source)],
                   check=True)
    config = EncodeConfig(preset="ultrafast", segment_s=2.0)
    info = probe(source)
    keyframes = keyframe_frames([0], info.video.frames, info.video.fps, config.segment_s)
    rungs = [Rung(width=416, height=234, kbps=300), Rung(width=1280, height=720, kbps=1500)]
    renditions = [encode_video_rung(source, r, keyframes, info, config, folder / f"{r.name}.mp4") for r in rungs]
    renditions.append(encode_audio(source, info, config, folder / "audio.mp4"))
    tiers = {"234p_300k": "SD", "720p_1500k": "HD720"}
    keys = {t: (secrets.token_bytes(16), secrets.token_bytes(16)) for t in ("AUDIO", "SD", "HD720")}
    out = folder / "package"
    out.mkdir()
    subprocess.run([
        packager_exe(),
        *(f"{stream_descriptor(r)},drm_label={tiers.get(r.name, 'AUDIO')}" for r in renditions),
        "--enable_raw_key_encryption",
        "--keys", ",".join(f"label={t}:key_id={k.hex()}:key={v.hex()}" for t, (k, v) in keys.items()),
        "--protection_systems", "Widevine,CommonSystem", "--clear_lead", "0", "--segment_duration", "2",
        "--mpd_output", "manifest.mpd", "--hls_master_playlist_output", "master.m3u8", "--hls_playlist_type", "VOD",
        "--generate_static_live_mpd",
    ], cwd=out, check=True, capture_output=True)
    store = LocalStorage(folder / "store")
    prefix = "titles/bench/v-bench"
    publish.publish_package(out, store, prefix)
    publish.write_title_record(store, "titles/bench", {
        "title_id": "bench", "status": "published", "package": store.url_for(prefix),
        "manifests": {"dash": store.url_for(f"{prefix}/manifest.mpd"), "hls": store.url_for(f"{prefix}/master.m3u8")},
        "encryption": {"scheme": "cenc", "systems": ["widevine", "clearkey"],
                       "key_ids": {t: k.hex() for t, (k, _) in keys.items()}},
        "countries": ["US", "CA", "GB"],
    })
    return {t: [k.hex(), v.hex()] for t, (k, v) in keys.items()}


def serve(folder: Path, port: int) -> None:
    """The service process: `reelflow serve`'s app and uvicorn settings, keys from memory."""
    import uvicorn

    from reelflow.infra.settings import Settings
    from reelflow.playback.api import create_app
    from reelflow.playback.license import MemoryKey, MemoryKeySource

    keys = json.loads((folder / "keys.json").read_text())
    source = MemoryKeySource({"bench": {t: MemoryKey(t, bytes.fromhex(k), bytes.fromhex(v))
                                        for t, (k, v) in keys.items()}})
    settings = Settings.model_validate({
        "storage": {"output": str(folder / "store")},
        "database": {"url": f"sqlite:///{folder / 'service.db'}"},
        "service": {"port": port, "token_secret": "bench-secret-" + "x" * 32},
    })
    from reelflow.playback.commands import uvicorn_options

    uvicorn.run(create_app(settings, keys=source), host=HOST, port=port, **uvicorn_options())


# --- load ----------------------------------------------------------------------------------------

class Connection:
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection(HOST, port))

    async def request(self, raw: bytes) -> int:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await self.reader.readexactly(length)
        return status


def post(path: str, body: bytes, port: int) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def play_request(i: int, port: int) -> bytes:
    body = {"title_id": "bench", "profile_id": f"profile-{i % 500}",
            "device": {"type": "browser", "drm_system": "clearkey", "security_level": "L3",
                       "codecs": ["avc1", "mp4a"], "max_height": 1080, "hdr": False},
            "network": {"country": "US", "isp": "acme", "connection": "wifi"}}
    return post("/api/play", json.dumps(body).encode(), port)


async def run_load(port: int, scenario: str, rate: float, seconds: float, warmup: float, connections: int,
                   keys: dict[str, list[str]]) -> dict[str, float]:
    pool: asyncio.Queue[Connection] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await Connection.open(port))
    # tokens for the license requests, from real plays
    conn = await pool.get()
    tokens = []
    for i in range(20):
        raw = play_request(i, port)
        conn.writer.write(raw)
        head = await conn.reader.readuntil(b"\r\n\r\n")
        length = int(next(ln[15:] for ln in head.split(b"\r\n") if ln[:15].lower() == b"content-length:"))
        tokens.append(json.loads(await conn.reader.readexactly(length))["token"])
    pool.put_nowait(conn)
    kids = [base64.urlsafe_b64encode(bytes.fromhex(keys[t][0])).rstrip(b"=").decode() for t in ("SD", "AUDIO")]
    license_body = json.dumps({"kids": kids, "type": "temporary"}).encode()
    plays = [play_request(i, port) for i in range(500)]
    licenses = [post(f"/api/license?token={t}", license_body, port) for t in tokens]

    def request_for(i: int) -> bytes:
        if scenario == "play" or (scenario == "mixed" and i % 2 == 0):
            return plays[i % len(plays)]
        return licenses[i % len(licenses)]

    latencies: list[float] = []
    errors = 0
    total = int(rate * (warmup + seconds))
    start = time.perf_counter() + 0.05
    measured_from = start + warmup

    async def one(i: int, due: float) -> None:
        nonlocal errors
        conn = await pool.get()
        try:
            status = await conn.request(request_for(i))
        finally:
            pool.put_nowait(conn)
        done = time.perf_counter()
        if due >= measured_from:
            latencies.append(done - due)
            if status != 200:
                errors += 1

    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(i, due)))
        if len(tasks) > 4096:
            tasks = [t for t in tasks if not t.done()]
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - measured_from
    latencies.sort()
    return {"rps": len(latencies) / elapsed, "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "max_ms": 1000 * latencies[-1],
            "errors": errors, "requests": len(latencies)}


def load_process(port: int, scenario: str, args: argparse.Namespace, keys: dict[str, list[str]],
                 out: Any) -> None:
    result = asyncio.run(run_load(port, scenario, args.rate, args.seconds, 2.0, args.connections, keys))
    out.send(result)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/healthz", timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="Requests per second offered.")
    parser.add_argument("--seconds", type=float, default=10.0, help="Measured seconds per run.")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--scenarios", default="play,license,mixed")
    parser.add_argument("--port", type=int, default=18700)
    parser.add_argument("--json", action="store_true", help="Print the results as JSON too.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="reelflow-bench-") as tmp:
        folder = Path(tmp)
        keys = make_title(folder)
        (folder / "keys.json").write_text(json.dumps(keys))
        server = mp.get_context("spawn").Process(target=serve, args=(folder, args.port), daemon=True)
        server.start()
        try:
            wait_for(args.port)
            results: dict[str, list[dict[str, float]]] = {}
            print(f"offered {args.rate:.0f} req/s, {args.connections} connections, {args.seconds:g} s per run, "
                  f"{args.runs} runs; cpus {os.cpu_count()}; load avg {os.getloadavg()[0]:.2f}")
            for scenario in args.scenarios.split(","):
                for run in range(args.runs):
                    receive, send = mp.get_context("spawn").Pipe(duplex=False)
                    client = mp.get_context("spawn").Process(target=load_process,
                                                             args=(args.port, scenario, args, keys, send))
                    cpu_before = cpu_seconds(server.pid or 0)
                    client.start()
                    result = receive.recv()
                    client.join()
                    # the whole run (warm-up and token set-up too) over the requests measured: an upper bound
                    result["cpu_ms_per_request"] = 1000 * (cpu_seconds(server.pid or 0) - cpu_before) / (
                        result["rps"] * (args.seconds + 2.0))
                    results.setdefault(scenario, []).append(result)
                    print(f"  {scenario:8s} run {run + 1}: {result['rps']:7.0f} req/s  "
                          f"p50 {result['p50_ms']:6.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
                          f"max {result['max_ms']:7.1f} ms  errors {result['errors']}  "
                          f"server CPU {result['cpu_ms_per_request']:.3f} ms/req  "
                          f"load avg {os.getloadavg()[0]:.2f}")
            print("\nmedians over runs:")
            print("| scenario | req/s | p50 ms | p99 ms | errors | server CPU ms/request |")
            print("|---|---:|---:|---:|---:|---:|")
            names = ("rps", "p50_ms", "p99_ms", "errors", "cpu_ms_per_request")
            for scenario, runs in results.items():
                med = {k: statistics.median(r[k] for r in runs) for k in names}
                print(f"| {scenario} | {med['rps']:.0f} | {med['p50_ms']:.2f} | {med['p99_ms']:.2f} | "
                      f"{med['errors']:.0f} | {med['cpu_ms_per_request']:.3f} |")
            if args.json:
                print(json.dumps(results, indent=2))
        finally:
            server.terminate()
            server.join(10)
    sys.exit(0)


if __name__ == "__main__":
    main()
