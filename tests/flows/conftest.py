"""Flow fixtures: one Prefect test server for the session, and a fast encode config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="session", autouse=True)
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A temporary Prefect API server (SQLite) shared by every flow test; yields its API URL.

    Task results (the cache of QC and shots) go to a folder of this session, so a test never
    sees a result cached by an earlier run.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_LOCAL_STORAGE_PATH, temporary_settings
    from prefect.testing.utilities import prefect_test_harness

    results = tmp_path_factory.mktemp("prefect-results")
    with temporary_settings({PREFECT_LOCAL_STORAGE_PATH: results}), \
            prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def fast_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML config for quick ingests: the fixed ladder, ultrafast x264, a private work folder and
    database, in the clear.

    DRM is off here so the flow tests can decode what they publish; ``drm_config`` turns it on.
    """
    folder = tmp_path_factory.mktemp("config")
    config = folder / "reelflow.toml"
    config.write_text(
        '[ladder]\nmode = "fixed"\n'
        '[encode]\npreset = "ultrafast"\n'
        f'[storage]\nkeep_work = true\nwork_dir = "{folder / "work"}"\n'
        f'[database]\nurl = "sqlite:///{folder / "service.db"}"\n'
        '[drm]\nenabled = false\n'
    )
    return config


@pytest.fixture(scope="session")
def ladder_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A TOML config for quick measured ladders: ultrafast trials predicting veryfast final encodes, in the clear."""
    folder = tmp_path_factory.mktemp("ladder-config")
    config = folder / "reelflow.toml"
    config.write_text(
        '[ladder]\nmode = "per-shot"\n'
        '[encode]\npreset = "veryfast"\n'
        '[trials]\npreset = "ultrafast"\nfinal_preset = "veryfast"\nx264_params = ""\n'
        f'[storage]\nkeep_work = true\nwork_dir = "{folder / "work"}"\n'
        f'[database]\nurl = "sqlite:///{folder / "service.db"}"\n'
        '[drm]\nenabled = false\n'
    )
    return config


@pytest.fixture(scope="session")
def drm_config(fast_config: Path) -> Path:
    """``fast_config`` with DRM on (the default of settings): cenc, keys in its private database."""
    config = fast_config.with_name("reelflow-drm.toml")
    config.write_text(fast_config.read_text().replace("[drm]\nenabled = false", "[drm]\nenabled = true"))
    return config
