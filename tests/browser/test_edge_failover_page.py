"""The service's /play page in headless Chromium fails over when its edge is killed mid-play.

The edge (a real `reelflow edge` process, heartbeating, in the page's ISP) fetches from a gate
in front of the origin that holds back the request for the second video segment; when the page
asks for it, the edge is killed (SIGKILL) with the page's request in flight. The page must go
on from the next ranked CDN (the origin) and play to 5 s.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from browser_helpers import ROOT, play_in_browser
from edge_procs import EdgeProcess, wait_for_edges
from packaged_titles import CLEAR_ID
from playback_helpers import Server, free_port, service_settings
from reelflow.playback.api import create_app

pytestmark = pytest.mark.slow
SHAKA_DIST = ROOT / "node_modules/shaka-player/dist"


class Gate:
    """A parent for the edge: forwards to the origin, holding back requests for ``held`` until released."""

    def __init__(self, origin: str, held: str) -> None:
        self.asked = threading.Event()
        self.release = threading.Event()
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.endswith(held):
                    gate.asked.set()
                    gate.release.wait(60)
                answer = httpx.get(origin + self.path, timeout=20)
                self.send_response(answer.status_code)
                for name in ("content-type", "content-length", "etag"):
                    if name in answer.headers:
                        self.send_header(name, answer.headers[name])
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Gate:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def origin(browser_ready: None, clear_title: Any, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    settings = service_settings(clear_title.root, tmp_path, port=port, shaka_dir=str(SHAKA_DIST))
    with Server(create_app(settings, load_keys=False), port) as server:
        yield server.url


def test_play_page_fails_over_when_its_edge_is_killed(origin: str, tmp_path: Path) -> None:
    with Gate(origin, "/2.m4s") as gate, \
            EdgeProcess("edge-web", gate.url, tmp_path / "edge", service_url=origin, isp="webisp") as edge:
        wait_for_edges(origin, {"edge-web"})

        def kill_when_asked() -> None:
            if gate.asked.wait(120):
                edge.kill()
                gate.release.set()

        killer = threading.Thread(target=kill_when_asked, daemon=True)
        killer.start()
        result = play_in_browser(f"{origin}/play/{CLEAR_ID}?isp=webisp&drm=none")
        killer.join(5)
        report = result.report()
        assert edge.proc.poll() is not None, report                       # it was killed mid-play
        assert result["state"] in ("playing", "ended") and result["error"] is None, report
        assert result["current_time"] >= 5.0 and result["frames"] > 0, report
        failovers = [line for line in result["log"] if "CDN failover" in line]
        assert len(failovers) == 1 and f"{edge.url} -> {origin}" in failovers[0], report
