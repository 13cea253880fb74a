"""The ingest deployment, and the worker that runs its flow runs (``reelflow worker``).

Prefect 3's own way for a process that both registers a deployment and executes its runs is
``flow.to_deployment(...)`` served by a ``Runner`` (``prefect.serve``): no work pool, no code
storage, works offline against the embedded server or a standalone one. Each flow run executes
in a subprocess of the worker, which imports the flow by module path (``reelflow.flows.ingest``),
so any machine with reelflow installed can serve it.

Two limits on how many ingests run at once:

- ``orchestration.max_ingests``: per worker process (the Runner's ``limit``): how many ingests
  share this machine;
- ``orchestration.global_max_ingests``: the deployment's concurrency limit, kept by the server
  across every worker; runs over it wait in ``AwaitingConcurrencySlot``.

Several workers may serve the same deployment: each proposes Pending for a scheduled run before
starting it, and the server lets only one proposal through.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from reelflow.infra.settings import Settings

log = logging.getLogger(__name__)

FLOW_NAME = "ingest"
SERVED_ENTRYPOINT = "reelflow.flows.served.ingest"


def deployment_name(settings: Settings) -> str:
    return f"{FLOW_NAME}/{settings.orchestration.deployment}"


def ingest_deployment(settings: Settings, config_file: str | None = None) -> Any:
    """The ingest flow as a RunnerDeployment (typed Any: Prefect's generics).

    ``config_file`` becomes the default of the runs' ``config_file`` parameter, so a run created by
    the watcher (which passes only the source and sidecar) uses this worker's settings.
    """
    from prefect.types.entrypoint import EntrypointType

    from reelflow.flows.ingest import ingest

    orchestration = settings.orchestration
    deployment: Any = ingest.to_deployment(
        name=orchestration.deployment,
        parameters={"config_file": config_file} if config_file else {},
        concurrency_limit=orchestration.global_max_ingests,
        description="Ingest one dropped mezzanine file (reelflow watch starts these runs).",
        tags=["reelflow"],
        entrypoint_type=EntrypointType.MODULE_PATH,  # an installed package, not a file in this folder
    )
    # The runs load the flow with the task runner of the worker's settings (a Dask cluster or a
    # bounded thread pool), not the bare module-level flow and its default pool.
    deployment.entrypoint = SERVED_ENTRYPOINT
    return deployment


def register(settings: Settings, config_file: str | None = None) -> str:
    """Create or update the deployment on the server; returns its id."""
    return str(ingest_deployment(settings, config_file).apply())


def serve_ingest(settings: Settings, config_file: str | None = None, *, limit: int | None = None,
                 poll_s: float | None = None) -> None:
    """Register the deployment and run its flow runs until interrupted (SIGINT/SIGTERM)."""
    from prefect import serve

    orchestration = settings.orchestration
    limit = limit or orchestration.max_ingests
    if orchestration.dask_address:
        from reelflow.flows.ingest import check_dask_address

        check_dask_address(orchestration.dask_address)
        # the runs' subprocesses read it from the environment (flows/served.py)
        os.environ["REELFLOW_ORCHESTRATION__DASK_ADDRESS"] = orchestration.dask_address
    if config_file:
        os.environ["REELFLOW_CONFIG"] = config_file
    deployment = ingest_deployment(settings, config_file)
    log.info("serving %s: at most %d ingest(s) here%s%s", deployment_name(settings), limit,
             f", {orchestration.global_max_ingests} across workers" if orchestration.global_max_ingests else "",
             f"; per-shot encodes on the Dask cluster at {orchestration.dask_address}"
             if orchestration.dask_address else "")
    # pause_on_shutdown=False: runs created while no worker is up must wait for the next worker,
    # not sit behind a paused deployment.
    serve(deployment, limit=limit, pause_on_shutdown=False, print_starting_message=False,
          query_seconds=poll_s or orchestration.poll_s)
