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
    name: Annotated[str | None, typer.Option("--name", help="Edge name (default: edge.name).")] = None,
    host: HostOpt = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535, help="Port (default: edge.port, 8701).")
                    ] = None,
    storage: StorageOpt = None,
    parent: Annotated[str | None, typer.Option(
        "--parent", help="Fetch misses from this URL (a hub edge or the playback service) and cache them; "
        "without it the edge serves --storage directly.")] = None,
    store: Annotated[Path | None, typer.Option("--store", help="The directory this edge caches into.")] = None,
    budget_bytes: Annotated[int | None, typer.Option("--budget-bytes", min=1 << 20,
                                                     help="Bytes the store may hold (default: edge.budget_bytes).")
                            ] = None,
    public_url: Annotated[str | None, typer.Option(
        "--public-url", help="URL players reach this edge at (default http://HOST:PORT).")] = None,
    service_url: Annotated[str | None, typer.Option(
        "--service-url", help="Send heartbeats to this playback service (default: edge.service_url).")] = None,
    isp: Annotated[str | None, typer.Option("--isp", help="The ISP network it sits in.")] = None,
    region: Annotated[str | None, typer.Option("--region", help="Country or region it serves.")] = None,
    hub: Annotated[bool, typer.Option("--hub", help="A hub: feeds edges, never steered to by the service.")] = False,
) -> None:
    """Run a CDN edge: a cache of package files (segments) filled from --parent, or the storage served directly."""
    from reelflow.cli import state
    from reelflow.errors import ConfigError

    edge_options = {"name": name, "host": host, "port": port, "parent": parent,
                    "store": str(store.resolve()) if store else None, "budget_bytes": budget_bytes,
                    "public_url": public_url, "service_url": service_url, "isp": isp, "region": region,
                    "serves_players": False if hub else None}
    overrides: dict[str, object] = {"edge": {k: v for k, v in edge_options.items() if v is not None}}
    if storage:
        overrides["storage"] = {"output": storage if "://" in storage else str(Path(storage).resolve())}
    settings = load_settings(state.settings_file, **overrides)
    config = settings.edge
    if config.parent is None and store is not None:
        raise ConfigError("--store caches what --parent serves: give --parent too (a hub edge or the service)")
    _check_port_free(config.host, config.port)
    if config.parent is not None:
        from reelflow.playback.edge import create_caching_edge_app

        app = create_caching_edge_app(settings)
        typer.echo(f"reelflow edge {config.name} on {config.base_url}: cache in {config.store} "
                   f"({config.budget_bytes} bytes, {config.policy}), misses from {config.parent}"
                   + (f", heartbeats to {config.service_url}" if config.service_url else ""), err=True)
    else:
        from reelflow.infra.storage import open_storage
        from reelflow.playback.api import create_edge_app

        open_storage(settings.storage.output, settings.storage).check_readable()
        app = create_edge_app(settings, name=config.name)
        typer.echo(f"reelflow edge {config.name} on {config.base_url} (titles from {settings.storage.output})",
                   err=True)
    _run(app, config.host, config.port)
