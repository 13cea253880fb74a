"""Prefect flows and tasks: the only package that imports Prefect."""

import os

# Both must be set before Prefect reads its settings, i.e. before the first prefect import.
# Stage modules log with logging.getLogger("reelflow...."): attaching those loggers to the run
# puts stage logs in the Prefect UI beside the task logs.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "reelflow")
# The embedded server would otherwise try to send telemetry from machines that have no route out.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
