"""Prefect flows and tasks: the only package that imports Prefect."""

import os

# Stage modules log with logging.getLogger("reelflow...."); this makes Prefect attach those
# loggers to the run, so stage logs show in the Prefect UI beside the task logs. It must be set
# before Prefect configures logging, i.e. before the first prefect import.
os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "reelflow")
