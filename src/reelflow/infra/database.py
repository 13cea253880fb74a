"""The service database: one SQLAlchemy declarative base and an engine per URL (SQLite by default).

Every table (content keys, playback sessions, progress, QoE) is declared on ``Base`` in the
module that owns it; ``open_database`` creates what is missing. Postgres takes the same models
(``postgresql+psycopg://...``), SQLite is the embedded default.
"""

from __future__ import annotations

import functools
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from reelflow.errors import ConfigError


class Base(DeclarativeBase):
    """The declarative base of every reelflow table."""


def _sqlite_path(url: str) -> Path | None:
    prefix = "sqlite:///"
    return Path(url.removeprefix(prefix)) if url.startswith(prefix) and url != "sqlite:///:memory:" else None


@functools.cache
def engine_for(url: str) -> Engine:
    """One engine per URL per process; SQLite files get their folder, WAL and a busy timeout."""
    path = _sqlite_path(url)
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"database folder {path.parent} cannot be created: {exc.strerror or exc}") from exc
    try:
        engine = create_engine(url, connect_args={"timeout": 30} if path is not None else {})
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise ConfigError(f"database URL {url!r} is not usable: {exc}") from exc
    if path is not None:
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            # WAL lets the service read while an ingest writes keys; foreign keys are off by default.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()
    return engine


def open_database(url: str) -> sessionmaker[Session]:
    """A session factory on ``url``, with every table declared on ``Base`` created if missing."""
    engine = engine_for(url)
    try:
        Base.metadata.create_all(engine)
    except SQLAlchemyError as exc:
        raise ConfigError(f"database {url!r} cannot be opened: {exc}") from exc
    return sessionmaker(engine, expire_on_commit=False)
