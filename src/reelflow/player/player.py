"""The real-time playback loop: segments in order, an ABR rule per segment, a wall-clock buffer.

One thread does everything. The playback clock is advanced from the wall clock whenever the
loop looks at it (after each downloaded chunk too), so the buffer drains while a download
runs, a stall starts at the exact moment the buffer ran dry, and ends when the next segment
lands. Playback starts when the first segment (video and the audio under it) has arrived; the
startup time runs from the play request to that moment.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from reelflow.errors import CdnUnavailable, PlayerError
from reelflow.player.abr import AbrRule, AbrState, DeviceCaps, Download
from reelflow.player.manifest import Presentation, Segment, Track
from reelflow.player.session import PlayerHttp

log = logging.getLogger(__name__)

__all__ = ["FailoverLog", "PlayResult", "PlaybackClock", "Player", "PlayerConfig", "SegmentLog", "StallLog", "qoe_lin"]

REBUFFER_PENALTY = 4.3   # QoE_lin, as in the simulator (../shared/traces/README.md)
_EPS = 1e-6
_PACKAGE_BASE = re.compile(r"/titles/[^/]+/[^/]+/?$")


@dataclass(frozen=True)
class StallLog:
    at_s: float              # media position where playback stopped
    duration_s: float


@dataclass(frozen=True)
class FailoverLog:
    at_s: float              # session time (since the play request)
    from_cdn: str            # base URLs
    to_cdn: str
    reason: str              # connection error class, "http 503", "timeout"


@dataclass(frozen=True)
class SegmentLog:
    number: int
    rung: int
    label: str
    kbps: float              # the rung's nominal bitrate
    bytes: int
    download_s: float
    wall_s: float            # session time when it arrived
    buffer_s: float          # after it arrived


@dataclass
class PlayResult:
    """One playback session, and what the QoE report and the summary are made of."""

    title: str
    format: str
    abr: str
    start_s: float
    position_s: float = 0.0
    duration_s: float = 0.0
    startup_s: float | None = None
    segments: list[SegmentLog] = field(default_factory=list)
    stalls: list[StallLog] = field(default_factory=list)
    ladder: list[str] = field(default_factory=list)
    withheld: list[str] = field(default_factory=list)     # rungs whose key the license did not grant
    failovers: list[FailoverLog] = field(default_factory=list)

    @property
    def played_s(self) -> float:
        return max(self.position_s - self.start_s, 0.0)

    @property
    def stall_s(self) -> float:
        return sum(s.duration_s for s in self.stalls)

    @property
    def switches(self) -> list[tuple[int, float, float]]:
        """(segment index, from kbps, to kbps) at each rung change."""
        return [(i, a.kbps, b.kbps) for i, (a, b) in enumerate(zip(self.segments, self.segments[1:], strict=False), 1)
                if a.rung != b.rung]

    @property
    def avg_kbps(self) -> float:
        return sum(s.kbps for s in self.segments) / len(self.segments) if self.segments else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title, "format": self.format, "abr": self.abr, "start_s": self.start_s,
            "position_s": round(self.position_s, 3), "played_s": round(self.played_s, 3),
            "startup_s": self.startup_s, "stall_count": len(self.stalls), "stall_s": round(self.stall_s, 3),
            "switch_count": len(self.switches), "avg_kbps": round(self.avg_kbps, 1),
            "qoe_lin_per_chunk": qoe_lin(self), "ladder": self.ladder, "withheld": self.withheld,
            "stalls": [asdict(s) for s in self.stalls], "segments": [asdict(s) for s in self.segments],
            "failovers": [asdict(f) for f in self.failovers],
        }

    def qoe_body(self) -> dict[str, Any]:
        """The body of POST /api/qoe."""
        seg_s = self.played_s / len(self.segments) if self.segments else 0.0
        return {
            "startup_ms": round((self.startup_s or 0.0) * 1000, 1),
            "stalls": [{"at_s": s.at_s, "duration_ms": round(s.duration_s * 1000, 1)} for s in self.stalls],
            "switches": [{"at_s": round(self.start_s + i * seg_s, 3), "from_kbps": a, "to_kbps": b}
                         for i, a, b in self.switches],
            "bitrates_kbps": [s.kbps for s in self.segments],
            "played_s": round(self.played_s, 3),
            "failovers": [{"at_s": f.at_s, "from": f.from_cdn, "to": f.to_cdn, "reason": f.reason}
                          for f in self.failovers],
        }


def qoe_lin(result: PlayResult) -> float | None:
    """QoE_lin per segment: mean bitrate (Mbit/s) minus 4.3 per stalled second and the switch sizes."""
    if not result.segments:
        return None
    rates = [s.kbps / 1000 for s in result.segments]
    total = sum(rates) - REBUFFER_PENALTY * result.stall_s - sum(abs(b - a) for a, b in itertools.pairwise(rates))
    return round(total / len(rates), 4)


class PlaybackClock:
    """Media position and buffered end, moved on from a wall clock; records stalls."""

    def __init__(self, start_s: float, end_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.position_s = start_s
        self.buffered_to_s = start_s
        self.end_s = end_s
        self.started_at: float | None = None
        self.stalled_since: float | None = None
        self.stalls: list[StallLog] = []
        self.last = clock()

    @property
    def buffer_s(self) -> float:
        return max(self.buffered_to_s - self.position_s, 0.0)

    @property
    def finished(self) -> bool:
        return self.started_at is not None and self.position_s >= self.end_s - _EPS

    def advance(self) -> None:
        now = self.clock()
        if self.started_at is not None and self.stalled_since is None:
            elapsed = now - self.last
            room = self.buffered_to_s - self.position_s
            if elapsed >= room and self.buffered_to_s < self.end_s - _EPS:
                self.position_s = self.buffered_to_s
                self.stalled_since = self.last + max(room, 0.0)      # ran dry at this moment
            else:
                self.position_s = min(self.position_s + elapsed, self.buffered_to_s, self.end_s)
        self.last = now

    def append(self, media_end_s: float) -> None:
        """Media up to ``media_end_s`` is buffered: starts playback, or ends a stall."""
        self.advance()
        self.buffered_to_s = max(self.buffered_to_s, min(media_end_s, self.end_s))
        if self.started_at is None:
            self.started_at = self.last
        elif self.stalled_since is not None:
            self.stalls.append(StallLog(round(self.position_s, 3), round(self.last - self.stalled_since, 3)))
            self.stalled_since = None


@dataclass(frozen=True)
class PlayerConfig:
    buffer_cap_s: float = 30.0
    progress_every_s: float = 10.0
    keep_media: bool = False      # keep init and segment bytes for --save


@dataclass
class Media:
    """The bytes that were played, for --save: per video segment its rung; audio in order."""

    video_inits: dict[int, bytes] = field(default_factory=dict)
    video: list[tuple[int, bytes]] = field(default_factory=list)
    audio_init: bytes = b""
    audio: list[bytes] = field(default_factory=list)


class Player:
    """Plays ``presentation`` from ``start_s`` to ``end_s`` with ``rule``; calls ``on_update`` to redraw."""

    def __init__(self, http: PlayerHttp, presentation: Presentation, rule: AbrRule, caps: DeviceCaps, *,
                 title: str, start_s: float = 0.0, end_s: float | None = None, t0: float | None = None,
                 config: PlayerConfig = PlayerConfig(), withheld: tuple[str, ...] = (),
                 on_update: Callable[[Player], None] | None = None,
                 on_progress: Callable[[float], None] | None = None) -> None:
        self.http = http
        self.p = presentation
        self.rule = rule
        self.caps = caps
        self.config = config
        self.on_update = on_update
        self.on_progress = on_progress
        self.t0 = t0 if t0 is not None else time.monotonic()
        self.video = presentation.video
        self.audio: Track | None = presentation.audio[0] if presentation.audio else None
        counts = {len(t.segments) for t in self.video}
        if len(counts) != 1:
            raise PlayerError("the video rungs have different segment counts; this player needs aligned rungs")
        duration = presentation.duration_s or self.video[0].segments[-1].end_s
        end = min(end_s, duration) if end_s is not None else duration
        self.start_index = _index_at(self.video[0].segments, start_s)
        self.clock = PlaybackClock(start_s, end)
        self.result = PlayResult(title, presentation.format, rule.name, start_s, position_s=start_s,
                                 duration_s=duration, ladder=[t.label for t in self.video], withheld=list(withheld))
        self.media = Media()
        self.history: list[Download] = []
        self.rung: int | None = None
        self.cdn = 0                  # index of the CDN in use among the presentation's ranked bases
        self.last_bps: float | None = None
        self._audio_next = _index_at(self.audio.segments, start_s) if self.audio else 0
        self._last_progress = time.monotonic()
        self.rule.reset()

    # --- state for the display ----------------------------------------------------------------

    @property
    def state(self) -> str:
        if self.clock.started_at is None:
            return "starting"
        if self.clock.finished:
            return "ended"
        return "stalled" if self.clock.stalled_since is not None else "playing"

    def tick(self, _nbytes: int = 0) -> None:
        """Advance the clock and redraw (called after every downloaded chunk, too)."""
        self.clock.advance()
        if self.on_update is not None:
            self.on_update(self)

    # --- the loop -------------------------------------------------------------------------------

    def run(self) -> PlayResult:
        segments = self.video[0].segments
        last = self.start_index
        while last < len(segments) and segments[last].start_s < self.clock.end_s - _EPS:
            last += 1
        ladder = tuple(t.kbps for t in self.video)
        heights = tuple(t.height or 0 for t in self.video) if all(t.height for t in self.video) else None
        for k in range(self.start_index, last):
            self._wait_for_room()
            state = AbrState(chunk_index=k - self.start_index, buffer_s=self.clock.buffer_s, ladder_kbps=ladder,
                             chunk_s=segments[k].duration_s, history=tuple(self.history), last_rung=self.rung,
                             chunks_left=last - k, heights=heights, caps=self.caps,
                             buffer_cap_s=self.config.buffer_cap_s, playing=self.clock.started_at is not None)
            rung = self.rule.choose(state)
            self._fetch(k, rung)
            self._maybe_progress()
        while not self.clock.finished:
            time.sleep(min(0.1, max(self.clock.end_s - self.clock.position_s, 0.01)))
            self.tick()
            self._maybe_progress()
        self.result.position_s = self.clock.position_s
        self.result.stalls = list(self.clock.stalls)
        if self.on_update is not None:
            self.on_update(self)
        return self.result

    def _wait_for_room(self) -> None:
        while self.clock.buffer_s > self.config.buffer_cap_s:
            time.sleep(min(0.25, self.clock.buffer_s - self.config.buffer_cap_s))
            self.tick()
            self._maybe_progress()

    def _get(self, track: Track, seg: Segment | None, what: str) -> bytes:
        """A file from the current CDN; when it cannot deliver, the same file from the next ranked one,
        which then serves the rest of the session (failovers are logged for QoE)."""
        path = seg.path if seg is not None else track.init_path
        byte_range = seg.byte_range if seg is not None else track.init_range
        while True:
            url = self.p.segment_url(track, path, self.cdn)
            try:
                return self.http.download(url, f"{what} ({path})", byte_range).data
            except CdnUnavailable as exc:
                if track.base or self.cdn + 1 >= len(self.p.bases):   # HLS, or the last CDN (the origin)
                    raise
                failover = FailoverLog(round(time.monotonic() - self.t0, 3), cdn_of(self.p.bases[self.cdn]),
                                       cdn_of(self.p.bases[self.cdn + 1]), exc.reason)
                log.warning("%s; going on from %s", exc, failover.to_cdn)
                self.result.failovers.append(failover)
                self.cdn += 1
                self.tick()

    def _fetch(self, k: int, rung: int) -> None:
        track = self.video[rung]
        seg = track.segments[k]
        if rung not in self.media.video_inits:
            self.media.video_inits[rung] = self._get(track, None, f"{track.label} init segment")
        started = time.monotonic()
        data = self._get(track, seg, f"{track.label} segment {seg.number}")
        nbytes = len(data)
        audio_bytes = self._fetch_audio(seg.end_s)
        seconds = max(time.monotonic() - started, 1e-6)
        nbytes += audio_bytes
        download = Download(rung, nbytes, seconds)
        self.history.append(download)
        self.rule.on_download(download)
        self.last_bps = download.bps
        if self.config.keep_media:
            self.media.video.append((rung, data))
        self.clock.append(seg.end_s)
        if self.result.startup_s is None and self.clock.started_at is not None:
            self.result.startup_s = round(self.clock.started_at - self.t0, 3)
        self.result.segments.append(SegmentLog(seg.number, rung, track.label, track.kbps, nbytes,
                                               round(seconds, 4), round(time.monotonic() - self.t0, 3),
                                               round(self.clock.buffer_s, 3)))
        self.rung = rung
        self.tick()

    def _fetch_audio(self, until_s: float) -> int:
        """Audio segments that start before ``until_s`` and are not here yet; their bytes."""
        if self.audio is None:
            return 0
        total = 0
        if not self.media.audio_init and self._audio_next < len(self.audio.segments):
            self.media.audio_init = self._get(self.audio, None, "audio init segment")
        while self._audio_next < len(self.audio.segments) and self.audio.segments[self._audio_next].start_s < \
                until_s - _EPS:
            seg = self.audio.segments[self._audio_next]
            data = self._get(self.audio, seg, f"audio segment {seg.number}")
            total += len(data)
            if self.config.keep_media:
                self.media.audio.append(data)
            self._audio_next += 1
        return total

    def _maybe_progress(self) -> None:
        now = time.monotonic()
        if self.on_progress is not None and now - self._last_progress >= self.config.progress_every_s:
            self._last_progress = now
            self.on_progress(self.clock.position_s)


def cdn_of(base: str) -> str:
    """The CDN's base URL (as /api/play ranks it) of a manifest BaseURL ``<cdn>/titles/<id>/<version>/``."""
    return _PACKAGE_BASE.sub("", base)


def _index_at(segments: tuple[Segment, ...], position_s: float) -> int:
    """Index of the segment that holds ``position_s`` (the first one before, the last one after)."""
    for i, seg in enumerate(segments):
        if position_s < seg.end_s - _EPS:
            return i
    return max(len(segments) - 1, 0)
