"""Flow fixtures: one Prefect test server for the session, and a fast encode config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server() -> Iterator[str]:
    """A temporary Prefect API server (SQLite) shared by every flow test; yields its API URL."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML config for quick ingests: ultrafast x264 and a private work folder."""
    folder = tmp_path_factory.mktemp("config")
    config = folder / "reelflow.toml"
    config.write_text(
        '[encode]\npreset = "ultrafast"\n'
        f'[storage]\nwork_dir = "{folder / "work"}"\n'
    )
    return config
