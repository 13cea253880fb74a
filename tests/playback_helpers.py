"""Helpers of the playback tests: settings, a uvicorn server in a thread, play request bodies."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any

from reelflow.infra.settings import EdgeConfig, ServiceConfig, Settings

SECRET = "test-secret-0123456789abcdef0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def service_settings(store_root: Path, db_dir: Path, *, port: int = 8700, edge_url: str | None = None,
                     **service: Any) -> Settings:
    edges = (EdgeConfig(name="acme-edge", base_url=edge_url, isp="acme", region="US"),) if edge_url else ()
    config = ServiceConfig(port=port, token_secret=SECRET,  # type: ignore[arg-type]
                           edges=edges, **service)
    return Settings.model_validate({
        "storage": {"output": str(store_root)},
        "database": {"url": f"sqlite:///{db_dir / 'service.db'}"},
        "service": config.model_dump(),
    })


class Server:
    """A uvicorn server for an ASGI app on 127.0.0.1, in a thread."""

    def __init__(self, app: Any, port: int) -> None:
        import uvicorn

        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def device(level: str = "L3", drm: str = "clearkey", max_height: int = 2160,
           codecs: tuple[str, ...] = ("avc1", "mp4a")) -> dict[str, Any]:
    return {"type": "browser", "drm_system": drm, "security_level": level, "codecs": list(codecs),
            "max_height": max_height, "hdr": False}


def play_body(title_id: str, *, country: str = "US", connection: str = "wifi", isp: str | None = "acme",
              profile: str = "p1", **device_args: Any) -> dict[str, Any]:
    return {"title_id": title_id, "profile_id": profile, "device": device(**device_args),
            "network": {"country": country, "isp": isp, "connection": connection}}

