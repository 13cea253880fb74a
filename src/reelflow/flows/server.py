"""The machine's one orchestration service: a Prefect API server that every reelflow process shares.

Without ``PREFECT_API_URL``, Prefect starts an ephemeral API server inside each process that runs
a flow: every ingest pays its start-up, and two started at once on a loaded machine time out
(DESIGN.md).
Instead, the first reelflow process that needs orchestration starts ``prefect server start``
detached, with its database, log and address under ``REELFLOW_HOME/prefect/``; later processes
find it there (``server.json``) and only connect. An exclusive lock on ``server.lock`` makes the
start race-free: a process that finds the lock taken waits for the one holding it and then uses
the server it started. The server outlives the process that started it, as a database would;
``reelflow orchestrator --stop`` stops it.

``PREFECT_API_URL`` set in the environment wins: then that server is used and none is started.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from reelflow.errors import OrchestrationError
from reelflow.infra.home import home_path

log = logging.getLogger(__name__)

API_URL_ENV = "PREFECT_API_URL"
# Generous: a loaded machine starts the server slowly, and every later run here waits on it anyway.
START_TIMEOUT_S = 240.0
# A busy server answers /health in milliseconds; one that does not within this is gone or wedged.
HEALTH_TIMEOUT_S = 5.0
# How long a server recorded as running may stay silent (a loaded machine) before a new one
# replaces it.
STALE_AFTER_S = 30.0


@dataclass(frozen=True)
class ServerState:
    """What server.json records about the running service."""

    url: str          # the API URL, http://127.0.0.1:PORT/api
    pid: int          # the server's process (and process group) id
    started_at: float
    log: str          # its log file


def state_dir() -> Path:
    return home_path("prefect")


def read_state(folder: Path | None = None) -> ServerState | None:
    path = (folder or state_dir()) / "server.json"
    try:
        return ServerState(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def healthy(url: str, timeout_s: float = HEALTH_TIMEOUT_S) -> bool:
    """Whether a Prefect API answers at ``url`` (its /health endpoint)."""
    try:
        return httpx.get(f"{url}/health", timeout=timeout_s).status_code == 200
    except httpx.HTTPError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, but then not ours (the health check decides)
    return True


def ensure_api(*, start_timeout_s: float = START_TIMEOUT_S) -> str:
    """The Prefect API URL this process should use, put in ``PREFECT_API_URL``; a server is started if none runs.

    Call before Prefect is imported: Prefect reads its settings from the environment once.
    """
    given = os.environ.get(API_URL_ENV)
    if given:
        return given
    folder = state_dir()
    state = read_state(folder)
    if state is None or not healthy(state.url):
        folder.mkdir(parents=True, exist_ok=True)
        with _locked(folder / "server.lock", start_timeout_s):
            state = read_state(folder)  # started by the process that held the lock?
            if state is None or not _usable(state):
                if state is not None:
                    _stop(state)
                state = _start(folder, start_timeout_s)
    os.environ[API_URL_ENV] = state.url
    # Task results (the QC and shots caches) beside the server's database, not in ~/.prefect.
    os.environ.setdefault("PREFECT_LOCAL_STORAGE_PATH", str(folder / "results"))
    log.info("orchestration: Prefect API %s (pid %d)", state.url, state.pid)
    return state.url


def _usable(state: ServerState) -> bool:
    """A recorded server whose process lives is given time to answer (it may only be busy)."""
    deadline = time.monotonic() + STALE_AFTER_S
    while _alive(state.pid):
        if healthy(state.url):
            return True
        if time.monotonic() > deadline:
            log.warning("the Prefect server %s (pid %d) has not answered for %.0f s: replacing it",
                        state.url, state.pid, STALE_AFTER_S)
            return False
        time.sleep(1.0)
    return False


@contextlib.contextmanager
def _locked(path: Path, timeout_s: float) -> Iterator[None]:
    """An exclusive lock on ``path`` across processes; released by the OS if the holder dies."""
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise OrchestrationError(
                        f"another reelflow process has been starting the Prefect server for over {timeout_s:.0f} s "
                        f"(lock {path}); see {path.parent / 'server.log'}, or set PREFECT_API_URL") from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def server_argv(port: int) -> list[str]:
    return [sys.executable, "-m", "prefect", "server", "start",
            "--host", "127.0.0.1",              # this machine only: the API has no authentication
            "--port", str(port)]


def _start(folder: Path, timeout_s: float) -> ServerState:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != API_URL_ENV}
    env.update(PREFECT_HOME=str(folder),                 # its database (SQLite) and profiles live here
               PREFECT_SERVER_ANALYTICS_ENABLED="false")  # no telemetry from machines with no route out
    log_path = folder / "server.log"
    url = f"http://127.0.0.1:{port}/api"
    log.info("starting the Prefect server at %s (log %s)", url, log_path)
    with log_path.open("ab") as out:
        process = subprocess.Popen(server_argv(port), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                   env=env, cwd=folder, start_new_session=True)  # outlives this process
    started = time.time()
    deadline = time.monotonic() + timeout_s
    while not healthy(url, timeout_s=2.0):
        if process.poll() is not None:
            raise OrchestrationError(f"the Prefect server exited with code {process.returncode} while starting; "
                                     f"its log: {log_path}")
        if time.monotonic() > deadline:
            _kill_group(process.pid)
            raise OrchestrationError(f"the Prefect server did not answer within {timeout_s:.0f} s of starting "
                                     f"(machine overloaded?); its log: {log_path}; or set PREFECT_API_URL")
        time.sleep(0.3)
    state = ServerState(url=url, pid=process.pid, started_at=started, log=str(log_path))
    partial = folder / f"server.json.{os.getpid()}"
    partial.write_text(json.dumps(asdict(state)))
    partial.replace(folder / "server.json")
    log.info("Prefect server up at %s in %.1f s", url, time.time() - started)
    return state


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)


def _stop(state: ServerState, wait_s: float = 15.0) -> None:
    _kill_group(state.pid)
    deadline = time.monotonic() + wait_s
    while _alive(state.pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(state.pid, os.WNOHANG)
        time.sleep(0.2)
    if _alive(state.pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(state.pid, signal.SIGKILL)


def stop_server(folder: Path | None = None) -> ServerState | None:
    """Stop the recorded server, if any; returns what it was."""
    folder = folder or state_dir()
    state = read_state(folder)
    if state is None:
        return None
    with _locked(folder / "server.lock", START_TIMEOUT_S):
        _stop(state)
        (folder / "server.json").unlink(missing_ok=True)
    return state
