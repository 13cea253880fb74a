"""Content hashes of files and stable digests of settings, the two halves of every cache key."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import logging
from fractions import Fraction
from pathlib import Path, PurePath

from pydantic import BaseModel

log = logging.getLogger(__name__)

# 16 hex digits (64 bits): short enough for a folder name, and a collision between the few
# thousand keys one installation ever makes is out of reach.
DIGEST_CHARS = 16


def sha256_file(path: Path, *, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks so a mezzanine never sits in memory."""
    digest = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return digest.hexdigest()


def config_digest(*parts: object) -> str:
    """Short stable hash of JSON-serialisable parts, for cache keys.

    Pass only what changes the result (the stage's config, content hashes of its inputs), never
    paths of intermediate files or worker counts, or a cache hit becomes a miss for no reason.
    Dict order does not matter; types do (``Fraction(1, 2)``, ``0.5`` and ``"1/2"`` all differ).
    """
    text = json.dumps(list(parts), default=_encode, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()[:DIGEST_CHARS]


def _encode(value: object) -> object:
    """JSON stand-ins for the non-JSON types that appear in settings and stage inputs.

    Each stand-in is tagged with its type so that values which print alike (a path and a string,
    a fraction and its text) do not share a digest.
    """
    if isinstance(value, BaseModel):
        return {"__model__": type(value).__qualname__, **value.model_dump(mode="json")}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        # Fields one by one rather than dataclasses.asdict: asdict deep-copies every value, and
        # json calls us again for whatever inside is not plain JSON.
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__dataclass__": type(value).__qualname__, **fields}
    if isinstance(value, PurePath):
        return {"__path__": value.as_posix()}
    if isinstance(value, Fraction):
        return {"__fraction__": f"{value.numerator}/{value.denominator}"}
    if isinstance(value, enum.Enum):
        return {"__enum__": f"{type(value).__qualname__}.{value.name}"}
    if isinstance(value, set | frozenset):
        # Sets have no order; sort by each member's own canonical text.
        return {"__set__": sorted(value, key=lambda v: json.dumps(v, default=_encode, sort_keys=True))}
    if isinstance(value, bytes):
        return {"__bytes__": value.hex()}
    raise TypeError(
        f"config_digest cannot hash a {type(value).__qualname__}; pass JSON values, pydantic models, "
        "dataclasses, paths or fractions (hash a file's bytes with sha256_file, not the file object)"
    )
