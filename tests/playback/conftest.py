"""Playback fixtures: the packaged titles come from ``tests/packaged_titles.py`` (through tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def db_dir(tmp_path: Path) -> Path:
    return tmp_path
