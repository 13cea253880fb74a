"""Browser fixtures: the playback service on 127.0.0.1, a web player on another origin, and a runner
for tests/browser/play.mjs (Playwright driving Debian's headless Chromium, no browser download).

`make test` installs what these need (Makefile: browser-deps): /usr/bin/chromium from apt, and
shaka-player and playwright-core from package-lock.json into ./node_modules.
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from browser_helpers import CHROMIUM, HERE, ROOT
from packaged_titles import KeyDatabase, PackagedTitle
from playback_helpers import SECRET, Server, free_port
from reelflow.infra.settings import Settings
from reelflow.playback.api import create_app

SHAKA_DIST = ROOT / "node_modules/shaka-player/dist"
PLAYWRIGHT = ROOT / "node_modules/playwright-core"


def _missing(message: str) -> None:
    """Skip on a developer machine that has not run `make browser-deps`; in CI (CI=true) fail."""
    message += " (make browser-deps installs it)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def browser_ready() -> None:
    if not CHROMIUM.is_file():
        _missing(f"{CHROMIUM} is not installed")
    if not (SHAKA_DIST / "shaka-player.compiled.js").is_file() or not PLAYWRIGHT.is_dir():
        _missing("shaka-player / playwright-core are not in node_modules")
    if shutil.which("node") is None:
        _missing("node is not on PATH")


@pytest.fixture(scope="session")
def service_url(browser_ready: None, clear_title: PackagedTitle, encrypted_title: PackagedTitle,
                cbcs_title: PackagedTitle, key_database: KeyDatabase) -> Iterator[str]:
    """The playback service (uvicorn, 127.0.0.1, a free port) over the packaged titles.

    It reads the keys the way `reelflow serve` does: from the key store in its database
    (settings.database.url), opened with the master key in settings.drm.
    """
    port = free_port()
    settings = Settings.model_validate({
        "storage": {"output": str(encrypted_title.root)},
        "database": {"url": key_database.url},
        "drm": {"master_key": key_database.master_key_hex},
        "service": {"port": port, "token_secret": SECRET, "shaka_dir": str(SHAKA_DIST)},
    })
    with Server(create_app(settings), port) as server:
        yield server.url


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="session")
def player_origin(browser_ready: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A static web server on another port (so another origin) with player.html and Shaka Player."""
    site = tmp_path_factory.mktemp("site")
    shutil.copy(HERE / "player.html", site / "player.html")
    (site / "shaka").symlink_to(SHAKA_DIST, target_is_directory=True)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
