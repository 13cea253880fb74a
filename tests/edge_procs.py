"""Caching edges as real `reelflow edge` processes on 127.0.0.1 (for the playback, player and browser tests)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from playback_helpers import free_port

EDGE_TOKEN = "edge-test-token-0123456789"


class EdgeProcess:
    """`reelflow edge --parent ... --store ...` in a subprocess; ``kill()`` ends it like a crash (SIGKILL)."""

    def __init__(self, name: str, parent: str, store: Path, *, budget_bytes: int = 1 << 30,
                 service_url: str | None = None, isp: str | None = None, region: str | None = None,
                 heartbeat_s: float = 0.5, hub: bool = False, policy: str = "s3fifo") -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = [sys.executable, "-m", "reelflow.cli", "edge", "--name", name, "--port", str(self.port),
                "--parent", parent, "--store", str(store), "--budget-bytes", str(budget_bytes)]
        if service_url:
            argv += ["--service-url", service_url]
        if isp:
            argv += ["--isp", isp]
        if region:
            argv += ["--region", region]
        if hub:
            argv.append("--hub")
        env = {**os.environ, "REELFLOW_EDGE__TOKEN": EDGE_TOKEN, "REELFLOW_EDGE__HEARTBEAT_S": str(heartbeat_s),
               "REELFLOW_EDGE__POLICY": policy}
        self.log = store.parent / f"{name}.log"
        self._log = self.log.open("w")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=env)

    def __enter__(self) -> EdgeProcess:
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"edge {self.name} exited ({self.proc.returncode}):\n{self.log.read_text()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"edge {self.name} did not start:\n{self.log.read_text()}")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()

    def admin(self, path: str) -> Any:
        answer = httpx.get(f"{self.url}/admin/{path}", headers={"authorization": f"Bearer {EDGE_TOKEN}"}, timeout=10)
        answer.raise_for_status()
        return answer.json()


def wait_for_edges(service_url: str, names: set[str], *, up: bool = True, timeout_s: float = 60) -> dict[str, Any]:
    """Poll GET /api/edges until every edge in ``names`` is up (or, with up=False, down); its answer."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{service_url}/api/edges", timeout=10).json()
        state = {e["name"]: e["up"] for e in status["edges"]}
        if all(state.get(n, False) == up if up else state.get(n) is False for n in names):
            return dict(status)
        if time.monotonic() > deadline:
            raise AssertionError(f"edges {names} not {'up' if up else 'down'} after {timeout_s} s: {status}")
        time.sleep(0.1)
