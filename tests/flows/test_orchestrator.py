"""flows/server.py: one Prefect API per machine, shared by concurrent CLI ingests, started race-free."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from reelflow.flows import server


def _env(home: Path, config: Path) -> dict[str, str]:
    """A shell without PREFECT_API_URL: the CLI must find or start the machine's service itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
    env.update(REELFLOW_HOME=str(home), REELFLOW_CONFIG=str(config))
    return env


def test_given_api_url_wins_and_nothing_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REELFLOW_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert server.ensure_api() == "http://127.0.0.1:9/api"
    assert not (tmp_path / "prefect").exists()


def test_refused_file_answers_without_starting_a_server(tmp_path: Path, fast_config: Path) -> None:
    bad = tmp_path / "not-media.mov"
    bad.write_bytes(b"this is not a movie\n" * 100)
    done = subprocess.run([sys.executable, "-m", "reelflow.cli", "ingest", str(bad), "--json"],
                          capture_output=True, text=True, env=_env(tmp_path / "home", fast_config), check=False)
    assert done.returncode == 1
    assert "reelflow: error:" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "home" / "prefect" / "server.json").exists()


@pytest.mark.slow
def test_concurrent_ingests_share_one_server_beside_a_cpu_hog(lavfi_clip, fast_config: Path,  # type: ignore[no-untyped-def]
                                                              tmp_path: Path) -> None:
    """Three `reelflow ingest` at once on a loaded machine, with a stale record of a dead server: all
    publish, through one server that they started together and that later commands find."""
    clip = lavfi_clip("server-clip.mp4", "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=24:duration=2",
                      "-f", "lavfi", "-i", "sine=frequency=440:duration=2", "-c:v", "libx264", "-preset",
                      "ultrafast", "-c:a", "aac", "-shortest")
    home = tmp_path / "home"
    (home / "prefect").mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (home / "prefect" / "server.json").write_text(json.dumps(
        {"url": "http://127.0.0.1:9/api", "pid": int(dead.stdout), "started_at": 0, "log": "-"}))
    env = _env(home, fast_config)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        runs = [subprocess.Popen([sys.executable, "-m", "reelflow.cli", "ingest", str(clip), "--title-id", f"c{i}",
                                  "--json", "--storage", str(tmp_path / "out")],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
                for i in range(3)]
        results = [(p.wait(timeout=600), p.stdout.read(), p.stderr.read()) for p in runs]  # type: ignore[union-attr]
    finally:
        for hog in hogs:
            hog.kill()
    try:
        _check_shared_server(results, home, env)
    finally:
        server.stop_server(home / "prefect")  # never left running by a failed assertion


def _check_shared_server(results: list[tuple[int, str, str]], home: Path, env: dict[str, str]) -> None:
    for code, out, errors in results:
        assert code == 0, errors[-3000:]
        assert json.loads(out)["status"] == "published"
    state = server.read_state(home / "prefect")
    assert state is not None and state.url != "http://127.0.0.1:9/api"
    runs_seen = httpx.post(f"{state.url}/flow_runs/count", json={}, timeout=10).json()
    assert runs_seen == 3  # every ingest ran on this one server
    status = subprocess.run([sys.executable, "-m", "reelflow.cli", "orchestrator", "--json"], capture_output=True,
                            text=True, env=env, check=True)
    assert json.loads(status.stdout)["running"] is True
    subprocess.run([sys.executable, "-m", "reelflow.cli", "orchestrator", "--stop"], env=env, check=True)
    assert not server.healthy(state.url, timeout_s=2)
    assert server.read_state(home / "prefect") is None
