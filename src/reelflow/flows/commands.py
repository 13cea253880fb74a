"""`reelflow watch` and `reelflow worker`: the command-line side of flows/watch.py and flows/deploy.py.

Registered on the app in cli.py; errors are reelflow errors, which cli.main turns into one line
and an exit code.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer

from reelflow.infra.settings import Settings

log = logging.getLogger(__name__)


def _cli_settings() -> tuple[Settings, str | None]:
    from reelflow import cli

    config = str(cli.state.settings_file.resolve()) if cli.state.settings_file else os.environ.get("REELFLOW_CONFIG")
    return cli._settings(), config


def _connect() -> None:
    """Use PREFECT_API_URL's server, or this machine's orchestration service (flows/server.py)."""
    from reelflow.flows.server import ensure_api

    ensure_api()


def watch(
    url: Annotated[str, typer.Argument(help="s3://bucket/prefix, or a local folder.", show_default=False)],
    queue: Annotated[str | None, typer.Option(
        "--queue", help="SQS queue (URL or name) with the bucket's ObjectCreated events (default: watch.queue; "
                        "none: list the bucket every watch.poll_s).")] = None,
    setup: Annotated[bool, typer.Option(
        "--setup", help="Create --queue and the bucket's event notification to it first.")] = False,
    deployment: Annotated[str | None, typer.Option(
        "--deployment", help="Ingest deployment to start runs of (default: orchestration.deployment).")] = None,
    once: Annotated[bool, typer.Option("--once", help="Start runs for what is there now, then exit.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the runs started as JSON (with --once).")] = False,
) -> None:
    """Watch URL for dropped media files; start one ingest run per file (exactly once per version)."""
    from reelflow.errors import ConfigError
    from reelflow.flows.deploy import deployment_name
    from reelflow.flows.watch import DeploymentDispatcher, Watcher, open_source, setup_notifications, watch_summary
    from reelflow.infra.remote import parse_s3_url

    settings, _ = _cli_settings()
    if url.startswith("s3://"):
        parse_s3_url(url, key_required=False)
    if setup:
        if not url.startswith("s3://") or not (queue or settings.watch.queue):
            raise ConfigError("--setup needs an s3:// URL and --queue NAME")
        queue = setup_notifications(url, queue or str(settings.watch.queue), settings.storage, settings.watch)
    source = open_source(url, settings, queue)  # checks the bucket/folder and the queue before Prefect
    _connect()
    from reelflow.cli import _emit_json, _quiet_console_tracebacks, err

    _quiet_console_tracebacks()
    dispatcher = DeploymentDispatcher(deployment or deployment_name(settings))
    watcher = Watcher(source, dispatcher, settings.watch)
    err.print(f"[bold]watch[/] {source.url} -> {dispatcher.name}"
              f"{' (queue ' + str(getattr(source, 'queue_url', '')) + ')' if hasattr(source, 'queue_url') else ''}")
    try:
        if once:
            started = watcher.drain(poll_s=min(1.0, settings.watch.poll_s))
            if json_out:
                _emit_json(watch_summary(started))
            else:
                err.print(f"{sum(s.run.created for s in started)} run(s) started, "
                          f"{sum(not s.run.created for s in started)} already had one")
        else:
            watcher.run()
    finally:
        dispatcher.close()
    if watcher.errors and once:
        sys.exit(1)


def worker(
    limit: Annotated[int | None, typer.Option(
        "--limit", min=1, help="Ingests this worker runs at once (default: orchestration.max_ingests).")] = None,
    deployment: Annotated[str | None, typer.Option(
        "--deployment", help="Deployment name (default: orchestration.deployment).")] = None,
    register_only: Annotated[bool, typer.Option(
        "--register-only", help="Create or update the deployment, then exit.")] = False,
    dask: Annotated[str | None, typer.Option(
        "--dask", help="Dask scheduler (tcp://HOST:PORT) the runs' per-shot encodes go to (default: "
                       "orchestration.dask_address; none: a thread pool here).")] = None,
) -> None:
    """Register the ingest deployment and run its flow runs (several workers may serve it)."""
    from reelflow.flows.deploy import deployment_name, register, serve_ingest

    settings, config_file = _cli_settings()
    changes = {k: v for k, v in (("deployment", deployment), ("dask_address", dask)) if v}
    if changes:
        settings = settings.model_copy(update={"orchestration": settings.orchestration.model_copy(update=changes)})
    _connect()  # before flows.ingest is imported: Prefect reads PREFECT_API_URL once, at import
    if settings.orchestration.dask_address and not register_only:
        from reelflow.flows.ingest import check_dask_address

        check_dask_address(settings.orchestration.dask_address)  # before anything is registered
    from reelflow.cli import _quiet_console_tracebacks, err

    _quiet_console_tracebacks()
    try:
        deployment_id = register(settings, config_file)  # fails here, with one line, on a bad server
    except Exception as exc:
        from reelflow.flows.watch import prefect_error

        raise prefect_error(exc, f"deployment {deployment_name(settings)!r}") from exc
    if register_only:
        err.print(f"registered {deployment_name(settings)} ({deployment_id})")
        return
    err.print(f"[bold]worker[/] serving {deployment_name(settings)}, at most "
              f"{limit or settings.orchestration.max_ingests} ingest(s) at once here; Ctrl-C stops")
    serve_ingest(settings, config_file, limit=limit)
