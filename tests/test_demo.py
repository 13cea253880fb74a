"""scripts/demo.sh (what `make demo` runs) end to end on a loaded machine: ingest, serve, a page URL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from playback_helpers import free_port
from reelflow.flows.server import stop_server

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_demo_passes_beside_a_cpu_hog(fast_demo_config: Path, tmp_path: Path) -> None:
    """Two busy loops keep both cores loaded while the demo starts the orchestration service, ingests
    (a fast config keeps this test short; the orchestration path is the demo's own), and serves."""
    home, port = tmp_path / "home", free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(REELFLOW_HOME=str(home), REELFLOW_CONFIG=str(fast_demo_config), REELFLOW_DEMO_PORT=str(port),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        done = subprocess.run(["bash", "scripts/demo.sh"], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=900, stdin=subprocess.DEVNULL)
    finally:
        for hog in hogs:
            hog.kill()
    try:
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert f"http://127.0.0.1:{port}/play/demo" in done.stdout
        page = httpx.get(f"http://127.0.0.1:{port}/play/demo", timeout=10)
        assert page.status_code == 200 and "demo" in page.text
        console = httpx.get(f"http://127.0.0.1:{port}/api/console/titles", timeout=10).json()
        assert [t["title_id"] for t in console["titles"]] == ["demo"]
    finally:
        pidfile = home / "serve.pid"
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
        stop_server(home / "prefect")


@pytest.fixture
def fast_demo_config(tmp_path: Path) -> Path:
    config = tmp_path / "demo.toml"
    config.write_text('[ladder]\nmode = "fixed"\n[encode]\npreset = "ultrafast"\n')
    return config
