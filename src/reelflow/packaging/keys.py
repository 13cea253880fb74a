"""Content keys: one random key per track tier of a title, stored AES-GCM encrypted in the service database.

Tiers follow the lines of the video (SD up to 576, HD720 up to 720, HD up to 1080, UHD above) and
audio has its own, so a license server can hand a device only the tiers it may play (an L3
device no HD keys). A key never leaves this module in the clear except to the packager's argv
(redacted from logs, see ``infra.tools.run``) and to the license server through ``KeyStore``.

At rest each key is sealed with AES-256-GCM under the master key (``settings.drm``), with a fresh
96-bit nonce and the title id, tier and key id as associated data: a sealed key copied to another
row (another title, tier or key id) no longer opens.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import DateTime, LargeBinary, String, UniqueConstraint, delete, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from reelflow.errors import ConfigError, KeyNotFound, KeyStoreError
from reelflow.infra.database import Base, open_database
from reelflow.infra.settings import Settings, decode_master_key

log = logging.getLogger(__name__)

Tier = Literal["AUDIO", "SD", "HD720", "HD", "UHD"]
TIERS: tuple[Tier, ...] = get_args(Tier)
KEY_BYTES = 16
MASTER_KEY_BYTES = 32
_NONCE_BYTES = 12


def tier_for_height(height: int) -> Tier:
    """The video tier of a rendition ``height`` lines tall: SD <= 576 < HD720 <= 720 < HD <= 1080 < UHD."""
    if height <= 0:
        raise ValueError(f"a video height must be positive, not {height}")
    if height <= 576:
        return "SD"
    if height <= 720:
        return "HD720"
    if height <= 1080:
        return "HD"
    return "UHD"


@dataclass(frozen=True)
class ContentKey:
    """One content key: its tier, 16-byte key id (public, in manifests) and 16-byte key (secret)."""

    tier: Tier
    key_id: bytes
    key: bytes = field(repr=False)  # never in a repr, a log line or a traceback's locals summary

    def __post_init__(self) -> None:
        if self.tier not in TIERS:
            raise ValueError(f"unknown tier {self.tier!r}; one of {', '.join(TIERS)}")
        if len(self.key_id) != KEY_BYTES or len(self.key) != KEY_BYTES:
            raise ValueError(f"a key id and a key are {KEY_BYTES} bytes each")

    @property
    def key_id_hex(self) -> str:
        """The key id as 32 lower-case hex digits (HLS key URIs, the packager, ``title.json``)."""
        return self.key_id.hex()

    @property
    def key_id_uuid(self) -> str:
        """The key id as a UUID string, the form of DASH's ``cenc:default_KID``."""
        h = self.key_id.hex()
        return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def generate_keys(tiers: Iterable[Tier]) -> dict[Tier, ContentKey]:
    """A fresh random key id and key (from the OS's CSPRNG) for each tier, in ``TIERS`` order."""
    wanted = set(tiers)
    unknown = wanted - set(TIERS)
    if unknown:
        raise ValueError(f"unknown tier(s) {sorted(unknown)}; one of {', '.join(TIERS)}")
    return {t: ContentKey(t, secrets.token_bytes(KEY_BYTES), secrets.token_bytes(KEY_BYTES))
            for t in TIERS if t in wanted}


class StoredKey(Base):
    """A sealed content key: ``sealed`` is AES-GCM(master key, nonce, key, aad) with the tag appended."""

    __tablename__ = "content_keys"
    __table_args__ = (UniqueConstraint("title_id", "tier", name="uq_content_keys_title_tier"),)

    key_id: Mapped[bytes] = mapped_column(LargeBinary(KEY_BYTES), primary_key=True)
    title_id: Mapped[str] = mapped_column(String(128), index=True)
    tier: Mapped[str] = mapped_column(String(8))
    nonce: Mapped[bytes] = mapped_column(LargeBinary(_NONCE_BYTES))
    sealed: Mapped[bytes] = mapped_column(LargeBinary(KEY_BYTES + 16))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


def _aad(title_id: str, tier: str, key_id: bytes) -> bytes:
    return f"reelflow content key v1|{title_id}|{tier}|{key_id.hex()}".encode()


class KeyStore:
    """Content keys per title in the service database, sealed under the master key.

    The ingest flow puts a title's keys before it publishes the package that needs them; the
    license server and HLS key delivery read them by title or by key id.
    """

    def __init__(self, sessions: sessionmaker[Session], master_key: bytes) -> None:
        if len(master_key) != MASTER_KEY_BYTES:
            raise ConfigError(f"the DRM master key must be {MASTER_KEY_BYTES} bytes, not {len(master_key)}")
        self._sessions = sessions
        self._aead = AESGCM(master_key)

    @classmethod
    def from_settings(cls, settings: Settings) -> KeyStore:
        """The store on ``settings.database.url`` with the configured (or embedded default) master key."""
        return cls(open_database(settings.database.url), master_key_from_settings(settings))

    def _seal(self, title_id: str, key: ContentKey) -> StoredKey:
        nonce = os.urandom(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, key.key, _aad(title_id, key.tier, key.key_id))
        return StoredKey(key_id=key.key_id, title_id=title_id, tier=key.tier, nonce=nonce, sealed=sealed,
                         created_at=dt.datetime.now(dt.UTC))

    def _open(self, row: StoredKey) -> ContentKey:
        try:
            key = self._aead.decrypt(row.nonce, row.sealed, _aad(row.title_id, row.tier, row.key_id))
        except InvalidTag as exc:
            raise KeyStoreError(
                f"the content key {row.key_id.hex()} of title {row.title_id!r} ({row.tier}) cannot be decrypted: "
                "the DRM master key is not the one it was stored with (drm.master_key / drm.master_key_file), "
                "or the row was altered"
            ) from exc
        if row.tier not in TIERS:
            raise KeyStoreError(f"the content key {row.key_id.hex()} has an unknown tier {row.tier!r}")
        return ContentKey(tier=row.tier, key_id=row.key_id, key=key)

    def put_title_keys(self, title_id: str, keys: Mapping[Tier, ContentKey]) -> None:
        """Replace every key of ``title_id`` by ``keys``, in one transaction."""
        if not title_id:
            raise ValueError("a title id is required")
        for tier, key in keys.items():
            if key.tier != tier:
                raise ValueError(f"the key under {tier} is a {key.tier} key")
        rows = [self._seal(title_id, key) for key in keys.values()]
        try:
            with self._sessions.begin() as session:
                session.execute(delete(StoredKey).where(StoredKey.title_id == title_id))
                session.add_all(rows)
        except SQLAlchemyError as exc:
            raise KeyStoreError(f"the keys of title {title_id!r} cannot be stored: {_reason(exc)}") from exc
        log.info("stored %d content key(s) for %s: %s", len(rows), title_id,
                 ", ".join(f"{k.tier} {k.key_id_hex}" for k in keys.values()))

    def get_title_keys(self, title_id: str) -> dict[Tier, ContentKey]:
        """Every key of ``title_id`` by tier; KeyNotFound when the title has none."""
        rows = self._select(select(StoredKey).where(StoredKey.title_id == title_id), f"title {title_id!r}")
        if not rows:
            raise KeyNotFound(f"no content keys are stored for title {title_id!r}")
        keys = [self._open(row) for row in rows]
        return {k.tier: k for k in sorted(keys, key=lambda k: TIERS.index(k.tier))}

    def get_key(self, key_id: bytes) -> tuple[str, ContentKey]:
        """(title id, key) of the key with id ``key_id``; KeyNotFound when there is none."""
        rows = self._select(select(StoredKey).where(StoredKey.key_id == key_id), f"key id {key_id.hex()}")
        if not rows:
            raise KeyNotFound(f"no content key has the id {key_id.hex()}")
        return rows[0].title_id, self._open(rows[0])

    def delete_title_keys(self, title_id: str) -> int:
        """Forget every key of ``title_id`` (to rotate: the next ingest then makes new ones); returns how many."""
        try:
            with self._sessions.begin() as session:
                deleted = session.execute(delete(StoredKey).where(StoredKey.title_id == title_id))
        except SQLAlchemyError as exc:
            raise KeyStoreError(f"the keys of title {title_id!r} cannot be deleted: {_reason(exc)}") from exc
        return int(getattr(deleted, "rowcount", 0) or 0)

    def _select(self, query: object, what: str) -> list[StoredKey]:
        try:
            with self._sessions() as session:
                return list(session.scalars(query))  # type: ignore[call-overload]
        except SQLAlchemyError as exc:
            raise KeyStoreError(f"the content keys of {what} cannot be read: {_reason(exc)}") from exc


def _reason(exc: SQLAlchemyError) -> str:
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


def default_master_key_file(settings: Settings) -> Path:
    """``drm.master_key_file``, or ``drm-master.key`` beside the work folder."""
    return settings.drm.master_key_file or settings.storage.work_dir.parent / "drm-master.key"


def master_key_from_settings(settings: Settings) -> bytes:
    """The configured master key; without one, the embedded default key file (created once, mode 0600)."""
    configured = settings.drm.master_key_bytes()
    if configured is not None:
        return configured
    return load_or_create_master_key(default_master_key_file(settings))


def load_or_create_master_key(path: Path) -> bytes:
    """Read the hex master key in ``path``; create it (random, mode 0600) when it does not exist.

    Creation is exclusive, so two processes starting at once end up with the same key.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_master_key(path)
    except OSError as exc:
        raise ConfigError(f"the DRM master key file {path} cannot be created: {exc.strerror or exc}; "
                          "set drm.master_key or drm.master_key_file") from exc
    with os.fdopen(fd, "w") as out:
        out.write(secrets.token_hex(MASTER_KEY_BYTES) + "\n")
    log.warning("created the DRM master key file %s (mode 0600): back it up, or set drm.master_key; "
                "without it no stored content key can be read", path)
    return _read_master_key(path)


def _read_master_key(path: Path) -> bytes:
    for _ in range(50):  # another process may have created it a moment ago and be writing it
        try:
            text = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"the DRM master key file {path} cannot be read: {exc.strerror or exc}") from exc
        if text:
            break
        time.sleep(0.02)
    if path.stat().st_mode & 0o077:
        log.warning("the DRM master key file %s is readable by other users; chmod 600 it", path)
    try:
        return decode_master_key(text)
    except ValueError as exc:
        raise ConfigError(f"the DRM master key file {path} is not valid: {exc}") from exc
