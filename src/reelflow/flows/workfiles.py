"""Work files that travel through the shared store when the per-shot encodes run on a Dask cluster.

A task on a Dask worker on another machine cannot read the flow's local work folder, so when
distributed the flow stages the source once under ``work/<sha16>/`` in the output store, each
task fetches what it reads into a cache on its own machine, and puts back the files it makes
(rung encodes) under the same prefix; the flow fetches those back for the packager.

Every stored file has a ``<key>.sha256`` beside it, written after the file: its presence says the
upload finished, and a fetch is verified against it before the copy gets its final name. So a
finished file is never moved twice (a re-run after a crash finds it), and a half-made one is
never used. Without a Dask address none of this is used: the tasks read and write local paths.
"""

from __future__ import annotations

import fcntl
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from reelflow.errors import StorageError
from reelflow.infra.hashing import sha256_file
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import Storage, open_storage

log = logging.getLogger(__name__)

WORK_PREFIX = "work"


@dataclass(frozen=True)
class WorkStore:
    """One source's work files in the shared store; picklable (a URL, not a client), so it crosses to workers.

    ``key`` names below ``work/<sha16>/``; ``cache`` is a folder on the machine that runs the task.
    """

    storage_url: str
    config: StorageConfig
    sha: str                # the source's SHA-256

    @property
    def prefix(self) -> str:
        return f"{WORK_PREFIX}/{self.sha[:16]}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def storage(self) -> Storage:
        return open_storage(self.storage_url, self.config)

    def cache(self) -> Path:
        """This machine's copy of the work files (its own work_dir, apart from any flow's work folder)."""
        return self.config.work_dir.expanduser().resolve() / "dask-cache" / self.sha[:16]

    def stored(self, name: str) -> bool:
        return self.storage().exists(self.key(name) + ".sha256")

    def put(self, local: Path, name: str) -> str:
        """Upload ``local`` as ``name`` (once: a finished upload is kept); returns its key."""
        store = self.storage()
        key = self.key(name)
        if not store.exists(key + ".sha256"):
            digest = sha256_file(local)
            store.put_file(local, key)
            store.put_bytes(f"{digest}\n".encode(), key + ".sha256", content_type="text/plain")
            log.info("stored %s as %s", local.name, store.url_for(key))
        return key

    def fetch(self, name: str, dest: Path | None = None) -> Path:
        """The stored ``name`` as a local file (default: in this machine's cache), verified; reused when there."""
        store = self.storage()
        key = self.key(name)
        dest = dest or self.cache() / name
        if dest.is_file():  # only a verified copy ever gets this name
            return dest
        try:
            digest = store.get_bytes(key + ".sha256").decode().strip()
        except StorageError as exc:
            raise StorageError(f"work file {store.url_for(key)} is not in the store (or its upload did not "
                               f"finish): {exc}") from exc
        dest.parent.mkdir(parents=True, exist_ok=True)
        lock = dest.with_name(dest.name + ".lock")
        with open(lock, "a") as held:
            # One fetch at a time per file on this machine: a second task waits, then finds `dest`.
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            if dest.is_file():
                return dest
            partial = dest.with_name(dest.name + f".partial-{os.getpid()}")
            store.download(key, partial)
            got = sha256_file(partial)
            if got != digest:
                partial.unlink(missing_ok=True)
                raise StorageError(f"work file {store.url_for(key)}: the copy has SHA-256 {got}, the store "
                                   f"says {digest}")
            partial.replace(dest)
        log.info("fetched %s to %s", store.url_for(key), dest)
        return dest

    def fetch_if_stored(self, name: str, dest: Path) -> bool:
        """Fetch ``name`` to ``dest`` when a finished upload of it exists (an encode done by an earlier run)."""
        if dest.is_file():
            return True
        if not self.stored(name):
            return False
        self.fetch(name, dest)
        return True


def source_name(source: Path) -> str:
    return "source" + source.suffix.lower()


def stage_source(source: Path, store: Storage, config: StorageConfig, sha: str) -> WorkStore:
    """Put the source under the work prefix once (the tasks on the cluster read it from there)."""
    work = WorkStore(store.url, config, sha)
    work.put(source, source_name(source))
    return work
