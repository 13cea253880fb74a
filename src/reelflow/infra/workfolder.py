"""A title's work folder: marked in use while an ingest runs, removed after publish unless kept.

Everything an ingest makes on the way (the conformed or tone-mapped intermediate, trial logs,
encodes) sits under ``<work_dir>/<sha16>/``; a lossless intermediate of a feature is the size of
its master. Once the title record is written none of it is read again, so it is removed, unless
``storage.keep_work`` is set (to look at the files, or to re-ingest without re-encoding). A run
that fails keeps its folder: a re-run resumes from the finished encodes in it.

Two ingests of the same source share the folder. Each holds a shared lock on ``.in-use`` while
it runs; a finished run removes the folder only if it can then take that lock exclusively, i.e.
no other run still uses it. The OS drops a dead process's lock, so a crash never pins a folder.
"""

from __future__ import annotations

import fcntl
import logging
import shutil
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)

IN_USE = ".in-use"


def use_work_folder(work: Path) -> IO[str]:
    """Create ``work`` and mark it in use by this run; keep the returned handle open until the run ends."""
    work.mkdir(parents=True, exist_ok=True)
    handle = (work / IN_USE).open("a")
    fcntl.flock(handle, fcntl.LOCK_SH)
    return handle


def finish_with_work_folder(handle: IO[str], work: Path, *, keep: bool) -> bool:
    """End this run's use of ``work``; remove the folder unless ``keep`` or another run uses it.

    Returns whether it was removed.
    """
    try:
        if keep:
            return False
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)  # upgrade: fails while another run holds it
        except BlockingIOError:
            log.info("work folder %s is in use by another ingest: kept", work)
            return False
        size = sum(p.stat().st_size for p in work.rglob("*") if p.is_file())
        shutil.rmtree(work, ignore_errors=True)
        log.info("removed work folder %s (%.1f MB)", work, size / 1e6)
        return True
    finally:
        handle.close()
