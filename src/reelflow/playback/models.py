"""The playback service's tables (resume positions, QoE reports) and the queries on them.

Declared on ``infra.database.Base``, so ``open_database`` creates them. The hot path of a play
(``/api/play``) only reads one row by primary key; the writes come from players during playback.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from sqlalchemy import JSON, DateTime, Float, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from reelflow.infra.database import Base


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Progress(Base):
    """Where a profile stopped in a title: one row per (profile, title), updated in place."""

    __tablename__ = "playback_progress"

    profile_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    title_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    position_s: Mapped[float] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), index=True)


class QoeReport(Base):
    """One player's report on one session: startup, stalls, switches, the bitrates it played."""

    __tablename__ = "playback_qoe"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    session_id: Mapped[str] = mapped_column(String(64), index=True)
    title_id: Mapped[str] = mapped_column(String(128), index=True)
    profile_id: Mapped[str] = mapped_column(String(64))
    startup_ms: Mapped[float] = mapped_column(Float)
    stall_count: Mapped[int] = mapped_column(Integer)
    stall_ms: Mapped[float] = mapped_column(Float)
    switch_count: Mapped[int] = mapped_column(Integer)
    bitrates_kbps: Mapped[list[float]] = mapped_column(JSON)
    played_s: Mapped[float | None] = mapped_column(Float, nullable=True)
    extra: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    received_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


@dataclass(frozen=True)
class Resume:
    title_id: str
    position_s: float
    duration_s: float | None
    updated_at: dt.datetime

    def to_dict(self) -> dict[str, Any]:
        return {"title_id": self.title_id, "position_s": self.position_s, "duration_s": self.duration_s,
                "updated_at": _aware(self.updated_at).isoformat(timespec="seconds")}


def _aware(when: dt.datetime) -> dt.datetime:
    # SQLite hands datetimes back naive; they were stored in UTC.
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def save_progress(db: sessionmaker[Session], profile_id: str, title_id: str, position_s: float,
                  duration_s: float | None) -> Resume:
    now = _now()
    with db.begin() as session:
        row = session.get(Progress, (profile_id, title_id))
        if row is None:
            session.add(Progress(profile_id=profile_id, title_id=title_id, position_s=position_s,
                                 duration_s=duration_s, updated_at=now))
        else:
            row.position_s, row.updated_at = position_s, now
            if duration_s is not None:
                row.duration_s = duration_s
            duration_s = row.duration_s
    return Resume(title_id, position_s, duration_s, now)


def get_progress(db: sessionmaker[Session], profile_id: str, title_id: str) -> Resume | None:
    with db() as session:
        row = session.get(Progress, (profile_id, title_id))
        return None if row is None else Resume(row.title_id, row.position_s, row.duration_s, row.updated_at)


def continue_watching(db: sessionmaker[Session], profile_id: str, limit: int = 50) -> list[Resume]:
    """The profile's titles, most recently watched first."""
    query = (select(Progress).where(Progress.profile_id == profile_id)
             .order_by(Progress.updated_at.desc(), Progress.title_id).limit(limit))
    with db() as session:
        return [Resume(r.title_id, r.position_s, r.duration_s, r.updated_at) for r in session.scalars(query)]


def save_qoe(db: sessionmaker[Session], *, session_id: str, title_id: str, profile_id: str, startup_ms: float,
             stall_count: int, stall_ms: float, switch_count: int, bitrates_kbps: list[float],
             played_s: float | None, extra: dict[str, Any] | None) -> int:
    with db.begin() as session:
        row = QoeReport(session_id=session_id, title_id=title_id, profile_id=profile_id, startup_ms=startup_ms,
                        stall_count=stall_count, stall_ms=stall_ms, switch_count=switch_count,
                        bitrates_kbps=bitrates_kbps, played_s=played_s, extra=extra, received_at=_now())
        session.add(row)
        session.flush()
        return row.id


class ResumeCache:
    """Resume positions by (profile, title), written through by this process, kept ``ttl_s`` seconds.

    /api/play reads a position on every play; the cache saves that read (and the hop to a worker
    thread) on the hot path. This process's own writes update it at once; a write through another
    replica shows here within ``ttl_s`` (0 turns the cache off).
    """

    def __init__(self, db: sessionmaker[Session], ttl_s: float = 30.0, size: int = 100_000) -> None:
        self.db = db
        self.ttl_s = ttl_s
        self.size = size
        self._items: OrderedDict[tuple[str, str], tuple[float, Resume | None]] = OrderedDict()
        self._lock = threading.Lock()

    def cached(self, profile_id: str, title_id: str) -> tuple[bool, Resume | None]:
        """(hit, position): no I/O, so the event loop may call it."""
        item = self._items.get((profile_id, title_id))
        if item is None or time.monotonic() - item[0] >= self.ttl_s:
            return False, None
        return True, item[1]

    def _put(self, profile_id: str, title_id: str, resume: Resume | None) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            self._items[(profile_id, title_id)] = (time.monotonic(), resume)
            self._items.move_to_end((profile_id, title_id))
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def get(self, profile_id: str, title_id: str) -> Resume | None:
        """From the cache or the database (blocking on a miss: call from a worker thread)."""
        hit, resume = self.cached(profile_id, title_id)
        if hit:
            return resume
        resume = get_progress(self.db, profile_id, title_id)
        self._put(profile_id, title_id, resume)
        return resume

    def save(self, profile_id: str, title_id: str, position_s: float, duration_s: float | None) -> Resume:
        resume = save_progress(self.db, profile_id, title_id, position_s, duration_s)
        self._put(profile_id, title_id, resume)
        return resume
