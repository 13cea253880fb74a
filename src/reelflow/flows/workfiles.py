"""Work files that travel through the shared store when the per-shot encodes run on a Dask cluster.

A task on a Dask worker on another machine cannot read the flow's local work folder, so when
distributed the flow stages the source once under ``work/<sha16>/`` in the output store, each
task fetches what it reads into a cache on its own machine, and puts back the files it makes
(rung encodes) under the same prefix; the flow fetches those back for the packager.

Every stored file has a ``<key>.sha256`` beside it, written after the file: its presence says the
upload finished, and a fetch is verified against it before the copy gets its final name. So a
finished file is never moved twice (a re-run after a crash finds it), and a half-made one is
never used. Without a Dask address none of this is used: the tasks read and write local paths.

The source is the big file, and a task needs only its frames (a group of pieces, a span of a
rung's VMAF): ``fetch_frames`` gives a task the source as a file, of which only the byte ranges
of those frames are guaranteed. A folder store (a shared file system) is read in place. From S3,
an MP4/MOV source is a sparse file in the worker's cache: the container's boxes (the sample
tables ffmpeg seeks with; ``mdat``'s header only) and the frames' packets, from the keyframe before
the first to the keyframe after the last, are fetched with ranged GETs and written at their own
offsets (``source.index.json``, made when the source is staged, lists each video packet's offset
and size). ffmpeg then seeks and decodes those frames as from the whole file. Other containers
are fetched whole.
"""

from __future__ import annotations

import bisect
import fcntl
import json
import logging
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

from reelflow.errors import StorageError
from reelflow.infra.hashing import sha256_file
from reelflow.infra.settings import StorageConfig
from reelflow.infra.storage import Storage, open_storage

log = logging.getLogger(__name__)

WORK_PREFIX = "work"
# Ranges closer than this are fetched as one: fewer requests for a few audio bytes between video packets.
RANGE_GAP = 256 << 10


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

    def fetch_frames(self, name: str, first: int, last: int) -> Path:
        """The stored source ``name`` as a file whose frames [first, last) can be decoded (module docstring)."""
        store = self.storage()
        key = self.key(name)
        in_place = store.local_path(key)
        if in_place is not None:
            return in_place
        try:
            index = json.loads(store.get_bytes(key + ".index.json"))
        except StorageError:
            return self.fetch(name)            # not an MP4/MOV source: fetched whole
        dest = self.cache() / name
        if dest.is_file():                     # fetched whole by another task
            return dest
        sparse = dest.with_name("sparse-" + dest.name)   # the same extension: ffmpeg and PyAV read it as the source
        wanted = byte_ranges(index, first, last)
        sparse.parent.mkdir(parents=True, exist_ok=True)
        with open(sparse.with_name(sparse.name + ".lock"), "a") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            record = sparse.with_name(sparse.name + ".json")
            have = [tuple(r) for r in json.loads(record.read_text())] if record.is_file() else []
            missing = subtract_ranges(wanted, have)
            if missing:
                with open(sparse, "r+b" if sparse.is_file() else "w+b") as f:
                    f.truncate(index["size"])
                    for start, end in missing:
                        f.seek(start)
                        f.write(store.get_range(key, start, end - start))
                    f.flush()
                    os.fsync(f.fileno())
                # recorded only once written: a task killed mid-fetch leaves ranges to fetch again
                record.write_text(json.dumps(merge_ranges([*have, *missing], 0)))
                log.info("fetched %d bytes of %s (frames %d-%d) in %d ranges", sum(e - s for s, e in missing),
                         store.url_for(key), first, last, len(missing))
        return sparse

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
    """Put the source under the work prefix once (the tasks on the cluster read it from there), with
    the index of its video packets when it is an MP4/MOV file (``fetch_frames``)."""
    work = WorkStore(store.url, config, sha)
    name = source_name(source)
    index_key = work.key(name) + ".index.json"
    if not store.exists(index_key):
        index = packet_index(source)
        if index is not None:
            store.put_bytes(json.dumps(index).encode(), index_key, content_type="application/json")
    work.put(source, name)      # after the index: a stored source always has its index if it can
    return work


# --- byte ranges of frames: pure, apart from reading the file's boxes and packets ---------------

def top_level_boxes(path: Path) -> list[tuple[str, int, int]] | None:
    """(type, offset, size) of an ISO-BMFF file's top-level boxes, or None if it is not one."""
    size = path.stat().st_size
    boxes = []
    with open(path, "rb") as f:
        offset = 0
        while offset < size:
            f.seek(offset)
            head = f.read(16)
            if len(head) < 8:
                return None
            length, kind = struct.unpack(">I4s", head[:8])
            if length == 1 and len(head) == 16:
                length = struct.unpack(">Q", head[8:16])[0]
            elif length == 0:
                length = size - offset
            if length < 8 or not kind.isascii():
                return None
            boxes.append((kind.decode("ascii", "replace"), offset, length))
            offset += length
    return boxes if boxes and boxes[0][0] in ("ftyp", "wide", "free", "moov", "mdat") else None


def packet_index(path: Path) -> dict[str, Any] | None:
    """The file's size, its top-level boxes (``mdat``'s header only) and each video packet in decode
    order as [offset, size, keyframe, frame], ``frame`` its place in presentation order; None unless
    the file is MP4/MOV with packet positions."""
    boxes = top_level_boxes(path)
    if boxes is None:
        return None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        packets = [(p.pos, p.size, bool(p.is_keyframe), p.pts) for p in container.demux(stream)
                   if p.size and p.pts is not None]
    if not packets or any(pos is None or pos < 0 for pos, *_ in packets):
        return None
    order = {pts: frame for frame, pts in enumerate(sorted(pts for *_, pts in packets))}
    return {"size": path.stat().st_size,
            # every box but mdat whole, and mdat's header (the demuxer walks the boxes to find the index)
            "boxes": [[offset, offset + (16 if kind == "mdat" else length)] for kind, offset, length in boxes],
            "packets": [[pos, size, int(key), order[pts]] for pos, size, key, pts in packets]}


def byte_ranges(index: dict[str, Any], first: int, last: int, gap: int = RANGE_GAP) -> list[tuple[int, int]]:
    """[start, end) byte ranges that decode frames [first, last): the boxes, and the packets in decode
    order from the last keyframe at or before ``first`` to the first keyframe after every packet of
    the range has come (a B-frame's reference may come after it)."""
    packets: list[list[int]] = index["packets"]
    keys = [i for i, p in enumerate(packets) if p[2]]
    if not keys:
        raise StorageError("the staged source's index lists no keyframe")
    inside = [i for i, p in enumerate(packets) if first <= p[3] < last]
    if not inside:
        return merge_ranges([tuple(b) for b in index["boxes"]], gap)
    start = keys[max(0, bisect.bisect_right(keys, min(inside)) - 1)]
    after = bisect.bisect_right(keys, max(inside))
    end = keys[after] if after < len(keys) else len(packets)
    spans = [(p[0], p[0] + p[1]) for p in packets[start:end]]
    return merge_ranges([*(tuple(b) for b in index["boxes"]), *spans], gap)


def merge_ranges(ranges: Sequence[Sequence[int]], gap: int) -> list[tuple[int, int]]:
    """Sorted [start, end) ranges with overlapping ones, and ones less than ``gap`` apart, joined."""
    out: list[tuple[int, int]] = []
    for start, end in sorted((int(a), int(b)) for a, b in ranges):
        if out and start - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def subtract_ranges(wanted: Sequence[tuple[int, int]], have: Sequence[Sequence[int]]) -> list[tuple[int, int]]:
    """The parts of ``wanted`` not covered by ``have`` (both lists of [start, end) ranges)."""
    out = []
    covered = merge_ranges(have, 0)
    for start, end in wanted:
        position = start
        for a, b in covered:
            if b <= position or a >= end:
                continue
            if a > position:
                out.append((position, a))
            position = max(position, b)
        if position < end:
            out.append((position, end))
    return out
