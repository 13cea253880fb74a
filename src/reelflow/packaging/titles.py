"""Title ids and the storage keys they map to: studio ids (upper case, EIDR DOIs) kept, paths kept safe.

A title id is 1-128 characters: letters (either case), digits and ``. _ - : /``, starting with a
letter or digit; ``/`` only between non-empty segments that are not ``.`` or ``..``, so an id
never names a path outside its title. ``10.5240/7791-8534-2C23-9030-8610-5`` (an EIDR id) is one.

Storage keys, URL path segments, play tokens and the key store use the title's *key*
(``title_key``): an id that is already a key (lower case, ``a-z 0-9 . _ -``, the ids reelflow has
always taken) is its own key, so titles published before keep their folders; any other id maps to
``<slug>--<10 hex digits of its SHA-256>``, where the slug is the id lower-cased with every other
character run as ``-``. The hash makes the mapping collision-free between ids (``ABC`` and ``abc``
get different keys, which also matters on case-insensitive file systems); it is not reversible,
so the title record keeps the id itself beside its key (``title_id``, ``title_key``).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from reelflow.errors import ConfigError

TITLE_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
TITLE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$")


def is_title_id(value: str) -> bool:
    if not TITLE_ID.match(value):
        return False
    return all(part not in ("", ".", "..") for part in value.split("/"))


def default_title_id(source: Path) -> str:
    """A title id from the file name: lower case, runs of other characters as one dash."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", source.stem.lower()).strip("-._")
    return slug[:128] or "title"


def check_title_id(title_id: str) -> str:
    """The id itself, or ConfigError saying what a title id may hold."""
    if not is_title_id(title_id):
        raise ConfigError(
            f"title id {title_id!r} is not valid: use 1-128 of letters, digits, '.', '_', '-', ':' and '/' "
            "(between non-empty segments other than '.' and '..'), starting with a letter or digit, "
            "e.g. 'sintel' or '10.5240/7791-8534-2C23-9030-8610-5'"
        )
    return title_id


def title_key(title_id: str) -> str:
    """The storage key (folder name, URL segment) of a valid title id; see the module docstring."""
    if TITLE_KEY.match(title_id):
        return title_id
    check_title_id(title_id)
    slug = re.sub(r"[^a-z0-9._-]+", "-", title_id.lower()).strip("-._")[:100] or "title"
    return f"{slug}--{hashlib.sha256(title_id.encode()).hexdigest()[:10]}"
