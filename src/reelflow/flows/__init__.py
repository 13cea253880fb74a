"""Prefect flows and tasks: the only package that imports Prefect."""

import os

# Must be set before Prefect reads its settings: the embedded server would otherwise try to send
# telemetry from machines that have no route out.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
