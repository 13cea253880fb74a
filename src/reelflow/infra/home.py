"""Where reelflow keeps its state on this machine: one folder for every command, wherever it runs.

``REELFLOW_HOME`` when set, else ``$XDG_DATA_HOME/reelflow`` (``~/.local/share/reelflow``). Under it:

    output/            published packages (storage.output's default)
    work/              intermediate files, keyed by content hash (storage.work_dir)
    service.db         the service database: content keys, progress, QoE (database.url)
    drm-master.key     the master key that seals the content keys (drm.master_key_file)
    service-token.key  the play-token secret (service.token_secret_file)
    watch/             the watcher's seen-sets (watch.state_dir)
    prefect/           the local orchestration service: its database, log and address (flows/server.py)

Every path can still be set on its own in the settings; a relative path there is relative to the
working directory, as a person typing it expects.
"""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "REELFLOW_HOME"


def reelflow_home() -> Path:
    """The state folder (absolute; not created here)."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().resolve()
    data = os.environ.get("XDG_DATA_HOME")
    base = Path(data).expanduser() if data else Path.home() / ".local" / "share"
    return (base / "reelflow").resolve()


def home_path(*parts: str) -> Path:
    """A path under the state folder."""
    return reelflow_home().joinpath(*parts)
