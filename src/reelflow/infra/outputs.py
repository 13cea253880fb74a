"""Checks on where a command will write, made before the work whose result would go there.

A plot or a saved stream that cannot be written should fail in the first second with the path
and the fix, not after minutes of analysis or playback with a traceback.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from reelflow.errors import ConfigError, DiskFull


def check_output_file(path: Path, what: str) -> Path:
    """``path`` can be written as a file: not a folder, in a folder that exists and this user may write.

    An existing file there is replaced (it is this command's own output from an earlier run).
    """
    path = path.expanduser()
    if path.is_dir():
        raise ConfigError(f"{what} {path} is a folder: give a file name in it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ConfigError(f"{what} {path}: the folder {folder} does not exist; create it or choose another path")
    _check_writable(folder, f"{what} {path}")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} exists and cannot be replaced (read-only); choose another path")
    return path


def check_output_folder(path: Path, what: str) -> Path:
    """``path`` is a folder this user can write in, or can be created as one."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{what} {path} is a file, not a folder: give a folder")
    existing = path
    while not existing.exists():  # the nearest existing ancestor is the one that must be writable
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {path}: {existing} is a file, so no folder can be made there; choose another")
    _check_writable(existing, f"{what} {path}")
    return path


def _check_writable(folder: Path, what: str) -> None:
    """By writing a file there: permission bits say nothing for root, read-only mounts or /proc."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".reelflow-write-check-"):
            pass
    except OSError as exc:
        raise ConfigError(f"{what}: cannot write in {folder} ({exc.strerror or exc}); choose another path") from exc


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """DiskFull now when the disk of ``folder`` (or its nearest existing parent) has less than ``needed_bytes``."""
    existing = folder.expanduser()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    free = shutil.disk_usage(existing).free
    if free < needed_bytes:
        raise DiskFull(folder, free, f"; {what} needs about {needed_bytes / 1e9:.2f} GB")
