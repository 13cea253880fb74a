"""Player fixtures: a live playback service over the session's packaged titles (tests/packaged_titles.py).

``service`` runs the real playback service (uvicorn, 127.0.0.1) over the store that holds the
clear and the encrypted 6 s Sintel title (three rungs, 2 s segments, cenc with a key per tier).
``broken_service`` serves a copy of that store with one segment file deleted.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from packaged_titles import CLEAR_ID, ENC_ID, VERSION  # the session's packaged titles (tests/conftest.py)
from playback_helpers import Server, free_port, service_settings
from reelflow.playback.api import create_app

__all__ = ["CLEAR_ID", "ENC_ID", "VERSION"]


@dataclass(frozen=True)
class LiveService:
    url: str
    db_url: str       # the service's SQLite database, to check what it stored


@pytest.fixture(scope="module")
def service(encrypted_title: Any, clear_title: Any, key_source: Any,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveService]:
    """The playback service over the fixture store, with its own database."""
    port = free_port()
    settings = service_settings(encrypted_title.root, tmp_path_factory.mktemp("player-db"), port=port)
    with Server(create_app(settings, keys=key_source), port) as server:
        yield LiveService(server.url, settings.database.url)


@pytest.fixture(scope="module")
def broken_service(encrypted_title: Any, clear_title: Any, key_source: Any,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A service over a copy of the store in which the 234p rung's second segment is missing."""
    root = tmp_path_factory.mktemp("broken-store")
    shutil.copytree(encrypted_title.root, root, dirs_exist_ok=True)
    (root / f"titles/{ENC_ID}/{VERSION}/video/234p_300k/2.m4s").unlink()
    port = free_port()
    settings = service_settings(root, tmp_path_factory.mktemp("broken-db"), port=port)
    with Server(create_app(settings, keys=key_source), port) as server:
        yield server.url
