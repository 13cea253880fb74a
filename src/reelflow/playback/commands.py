"""`reelflow serve` and `reelflow edge`: the playback service and a CDN edge under uvicorn."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from reelflow.infra.settings import Settings, load_settings

log = logging.getLogger(__name__)

HostOpt = Annotated[str | None, typer.Option("--host", help="Interface to listen on (default: service.host).")]
StorageOpt = Annotated[str | None, typer.Option(
    "--storage", help="Where titles are: a local directory or s3://bucket/prefix (default: storage.output).")]


PortOpt = Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port (default: service.port, 8700).")]


def _settings(storage: str | None, **service: object) -> Settings:
    """The settings with the command's options over them, validated like the file's; the titles'
    store checked readable, so a server never starts on a store it cannot serve from."""
    from reelflow.cli import state
    from reelflow.infra.storage import open_storage

    changes = {k: v for k, v in service.items() if v is not None}
    overrides: dict[str, object] = {"service": changes}
    if storage:
        overrides["storage"] = {"output": storage if "://" in storage else str(Path(storage).resolve())}
    settings = load_settings(state.settings_file, **overrides)
    open_storage(settings.storage.output, settings.storage).check_readable()
    return settings


def _check_port_free(host: str, port: int) -> None:
    """ConfigError now, not a uvicorn traceback later, when the address is taken."""
    import socket

    from reelflow.errors import ConfigError

    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror or exc}): another process (an earlier "
                              "reelflow serve or edge?) has it; stop it or choose another --port") from exc


def uvicorn_options() -> dict[str, object]:
    """How both commands (and bench/service.py) run uvicorn.

    access_log off: a log line per segment request costs more than serving it; errors are still
    logged. loop/http "auto" take uvloop and httptools, the fast C implementations, when installed.
    """
    return {"log_level": "warning", "access_log": False, "loop": "auto", "http": "auto"}


def _run(app: object, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(app, host=host, port=port, **uvicorn_options())  # type: ignore[arg-type]


def serve_command(
    host: HostOpt = None,
    port: PortOpt = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="URL players reach the service at (default http://HOST:PORT).")] = None,
    storage: StorageOpt = None,
) -> None:
    """Run the playback service: play API, license server, manifests, segments, QoE, demo page."""
    from reelflow.playback.api import create_app

    settings = _settings(storage, host=host, port=port, public_url=public_url)
    config = settings.service
    _check_port_free(config.host, config.port)
    app = create_app(settings)
    typer.echo(f"reelflow playback service on {config.base_url} (titles from {settings.storage.output}); "
               f"a title plays at {config.base_url}/play/<title id>", err=True)
    _run(app, config.host, config.port)


def edge_command(
    name: Annotated[str, typer.Option("--name", help="Edge name, as in service.edges.")] = "edge",
    host: HostOpt = None,
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to listen on.")] = 8701,
    storage: StorageOpt = None,
) -> None:
    """Run a CDN edge: serves the package files (segments) of the titles in storage, with ranges and CORS."""
    from reelflow.playback.api import create_edge_app

    settings = _settings(storage, host=host)
    _check_port_free(settings.service.host, port)
    app = create_edge_app(settings, name=name)
    typer.echo(f"reelflow edge {name} on http://{settings.service.host}:{port} "
               f"(titles from {settings.storage.output})", err=True)
    _run(app, settings.service.host, port)
