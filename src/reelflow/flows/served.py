"""The flow that the ingest deployment's runs load: ``ingest`` with the task runner the worker's settings choose.

A served run executes in a subprocess that imports its flow by entrypoint, so the runner given to
``ingest_flow`` in the worker would be lost; this module makes the same choice in the subprocess,
from the settings it inherits (``REELFLOW_CONFIG``, ``REELFLOW_ORCHESTRATION__DASK_ADDRESS``, which
``reelflow worker`` sets). Imported only there: settings are read when it is imported.
"""

from __future__ import annotations

from typing import Any

from reelflow.flows.ingest import ingest_flow
from reelflow.infra.settings import load_settings

ingest: Any = ingest_flow(load_settings())
