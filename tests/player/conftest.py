"""Player fixtures: the playback tests' packaged title (imported from tests/playback, not copied) and a live service.

``services`` runs the real playback service (uvicorn, 127.0.0.1) over the store that holds the
clear and the encrypted 4 s Sintel title (three rungs, 2 s segments, cenc with a key per tier).
``broken_service`` serves a copy of that store with one segment file deleted.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

_PLAYBACK = Path(__file__).resolve().parents[1] / "playback"
if str(_PLAYBACK) not in sys.path:
    sys.path.insert(0, str(_PLAYBACK))  # playback_helpers, as tests/playback imports it


def _load_playback_fixtures() -> Any:
    spec = importlib.util.spec_from_file_location("playback_fixtures", _PLAYBACK / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


_fixtures = _load_playback_fixtures()
# The same fixtures as tests/playback: the clip, its encodes, the clear and encrypted packages, the keys.
clip = _fixtures.clip
renditions = _fixtures.renditions
store_root = _fixtures.store_root
clear_title = _fixtures.clear_title
encrypted_title = _fixtures.encrypted_title
key_source = _fixtures.key_source
ENC_ID, CLEAR_ID, VERSION = _fixtures.ENC_ID, _fixtures.CLEAR_ID, _fixtures.VERSION

from playback_helpers import Server, free_port, service_settings  # noqa: E402
from reelflow.playback.api import create_app  # noqa: E402


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
