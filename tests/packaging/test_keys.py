"""keys: tiers by height, random keys, and the key store (sealed at rest, bound to title, tier and key id)."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

import pytest

from reelflow.errors import ConfigError, KeyNotFound, KeyStoreError
from reelflow.infra.database import open_database
from reelflow.infra.settings import load_settings
from reelflow.packaging.keys import (
    TIERS,
    ContentKey,
    KeyStore,
    generate_keys,
    load_or_create_master_key,
    tier_for_height,
)

MASTER = bytes(range(32))


@pytest.mark.parametrize(("height", "tier"), [
    (234, "SD"), (480, "SD"), (576, "SD"), (577, "HD720"), (720, "HD720"), (721, "HD"), (1080, "HD"),
    (1081, "UHD"), (2160, "UHD"),
])
def test_tier_for_height(height: int, tier: str) -> None:
    assert tier_for_height(height) == tier


def test_tier_for_height_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        tier_for_height(0)


def test_generated_keys_are_random_and_distinct() -> None:
    keys = generate_keys(["HD", "AUDIO", "SD", "SD"])
    assert list(keys) == ["AUDIO", "SD", "HD"]  # TIERS order, each once
    again = generate_keys(TIERS)
    material = [k.key_id for k in [*keys.values(), *again.values()]] + [k.key for k in [*keys.values(),
                                                                                       *again.values()]]
    assert len(set(material)) == len(material) == 16
    assert all(len(m) == 16 for m in material)
    with pytest.raises(ValueError, match="unknown tier"):
        generate_keys(["4K"])  # type: ignore[list-item]


def test_key_repr_hides_the_key() -> None:
    key = generate_keys(["SD"])["SD"]
    assert key.key.hex() not in repr(key) and str(key.key) not in repr(key)
    assert key.key_id_hex in key.key_id_uuid.replace("-", "")
    with pytest.raises(ValueError):
        ContentKey("SD", b"short", b"x" * 16)


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'service.db'}"


def test_round_trip_by_title_and_by_key_id(db_url: str) -> None:
    store = KeyStore(open_database(db_url), MASTER)
    keys = generate_keys(["AUDIO", "SD", "HD720"])
    store.put_title_keys("sintel", keys)
    assert store.get_title_keys("sintel") == keys
    title, key = store.get_key(keys["HD720"].key_id)
    assert (title, key) == ("sintel", keys["HD720"])
    # put replaces: the old keys are gone, also by key id
    newer = generate_keys(["AUDIO", "SD"])
    store.put_title_keys("sintel", newer)
    assert store.get_title_keys("sintel") == newer
    with pytest.raises(KeyNotFound, match=keys["HD720"].key_id_hex):
        store.get_key(keys["HD720"].key_id)
    with pytest.raises(KeyError):  # a KeyError too, for callers that expect one
        store.get_title_keys("other")
    assert store.delete_title_keys("sintel") == 2
    with pytest.raises(KeyNotFound, match="no content keys are stored for title 'sintel'"):
        store.get_title_keys("sintel")


def test_keys_are_sealed_at_rest(db_url: str, tmp_path: Path) -> None:
    store = KeyStore(open_database(db_url), MASTER)
    keys = generate_keys(["AUDIO", "SD"])
    store.put_title_keys("t1", keys)
    with sqlite3.connect(tmp_path / "service.db") as raw:
        rows = raw.execute("SELECT key_id, title_id, tier, nonce, sealed FROM content_keys").fetchall()
    assert len(rows) == 2
    dump = b"".join(b"".join(v if isinstance(v, bytes) else str(v).encode() for v in row) for row in rows)
    for key in keys.values():
        assert key.key not in dump and key.key.hex().encode() not in dump
        assert key.key_id in dump  # ids are public: the license server looks keys up by them
    assert all(len(row[4]) == 32 and len(row[3]) == 12 for row in rows)  # 16-byte key + 16-byte GCM tag


def test_wrong_master_key_is_a_clear_error(db_url: str) -> None:
    keys = generate_keys(["SD"])
    KeyStore(open_database(db_url), MASTER).put_title_keys("t1", keys)
    other = KeyStore(open_database(db_url), bytes(32))
    with pytest.raises(KeyStoreError, match="master key is not the one it was stored with"):
        other.get_title_keys("t1")


def test_sealed_key_moved_to_another_title_does_not_open(db_url: str, tmp_path: Path) -> None:
    """The title id is associated data: copying a sealed key under another title is detected."""
    store = KeyStore(open_database(db_url), MASTER)
    store.put_title_keys("a", generate_keys(["SD"]))
    with sqlite3.connect(tmp_path / "service.db") as raw:
        raw.execute("UPDATE content_keys SET title_id = 'b'")
    with pytest.raises(KeyStoreError, match="cannot be decrypted"):
        store.get_title_keys("b")


def test_master_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "secret" / "drm-master.key"
    first = load_or_create_master_key(path)
    assert len(first) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_master_key(path) == first
    path.write_text("not a key\n")
    with pytest.raises(ConfigError, match=r"drm-master\.key is not valid"):
        load_or_create_master_key(path)


def test_from_settings_uses_configured_or_default_key(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    work = tmp_path / "data" / "work"
    default = load_settings(database={"url": url}, storage={"work_dir": str(work)})
    store = KeyStore.from_settings(default)
    keys = generate_keys(["SD"])
    store.put_title_keys("t", keys)
    assert (tmp_path / "data" / "drm-master.key").is_file()  # beside the work folder, not inside it
    assert KeyStore.from_settings(default).get_title_keys("t") == keys
    explicit = load_settings(database={"url": url}, drm={"master_key": os.urandom(32).hex()})
    with pytest.raises(KeyStoreError):
        KeyStore.from_settings(explicit).get_title_keys("t")
