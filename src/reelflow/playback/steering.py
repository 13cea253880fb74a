"""CDN steering: rank the live edges for one player; the origin is always the last resort.

The edges come from their heartbeats (``EdgeRegistry``: each ``reelflow edge`` with a
service_url POSTs one every heartbeat_s): health, load, and the titles each holds. An edge
whose last heartbeat is older than ``service.edge_missed_beats`` of its intervals is down.
Until any edge has reported, the static ``service.edges`` of the settings are ranked instead.

The order, most important first:

1. unhealthy edges are never handed out;
2. an edge inside the player's ISP network (no transit, the cheapest and usually fastest path);
3. an edge the off-peak fill placed the title on (its pinned objects: the edges of an ISP pool
   their budgets, so a title of the pool is placed on one of them — playback/placement.py);
4. an edge that holds the title otherwise (cached; a miss would fetch from the origin anyway);
5. an edge in the player's country/region;
6. the least loaded; then the name, so the ranking is deterministic.

The service itself (the origin) comes after every edge.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

ORIGIN = "origin"


class RankableEdge(Protocol):
    """What the ranking reads of an edge (``EdgeConfig`` of the settings, or a ``LiveEdge``)."""

    @property
    def name(self) -> str: ...
    @property
    def base_url(self) -> str: ...
    @property
    def isp(self) -> str | None: ...
    @property
    def region(self) -> str | None: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def load(self) -> float: ...
    @property
    def titles(self) -> tuple[str, ...] | None: ...


@dataclass(frozen=True)
class EdgeReport:
    """One heartbeat of one edge."""

    name: str
    base_url: str
    isp: str | None = None
    region: str | None = None
    healthy: bool = True
    load: float = 0.0                 # share of its capacity in use (bytes/s or connections), 0 idle
    bytes_per_s: float = 0.0
    connections: int = 0
    free_bytes: int = 0
    used_bytes: int = 0
    heartbeat_s: float = 5.0
    serves_players: bool = True
    holdings: Mapping[str, tuple[int, int]] = field(default_factory=dict)   # "<title>/<version>": (objects, bytes)
    placed: frozenset[str] = frozenset()                                      # "<title>/<version>" the fill pinned


@dataclass(frozen=True)
class LiveEdge:
    """An edge as its heartbeats describe it, for the ranking."""

    name: str
    base_url: str
    isp: str | None
    region: str | None
    healthy: bool
    load: float
    titles: tuple[str, ...]
    placed: tuple[str, ...] = ()             # titles the fill pinned here


class EdgeRegistry:
    """The edges' last heartbeats, in memory (each service replica hears every edge it is told about)."""

    def __init__(self, missed_beats: float = 1.5, clock: Callable[[], float] = time.monotonic) -> None:
        self.missed_beats = missed_beats
        self.clock = clock
        self._last: dict[str, tuple[float, EdgeReport]] = {}

    @property
    def reporting(self) -> bool:
        """Whether any edge has ever reported: then only heartbeats count, not the static list."""
        return bool(self._last)

    def beat(self, report: EdgeReport) -> None:
        self._last[report.name] = (self.clock(), report)

    def alive(self, name: str) -> bool:
        seen = self._last.get(name)
        return seen is not None and self.clock() - seen[0] <= seen[1].heartbeat_s * self.missed_beats

    def candidates(self) -> list[LiveEdge]:
        """Every edge that serves players, down ones (late heartbeat, or unhealthy) marked unhealthy."""
        return [LiveEdge(r.name, r.base_url, r.isp, r.region, r.healthy and self.alive(r.name), r.load,
                         tuple(sorted({h.split("/", 1)[0] for h in r.holdings})),
                         tuple(sorted({h.split("/", 1)[0] for h in r.placed})))
                for _, r in self._last.values() if r.serves_players]

    def status(self) -> list[dict[str, Any]]:
        now = self.clock()
        return [{"name": r.name, "base_url": r.base_url, "isp": r.isp, "region": r.region,
                 "up": r.healthy and self.alive(r.name), "last_heartbeat_s": round(now - at, 3), "load": r.load,
                 "bytes_per_s": r.bytes_per_s, "connections": r.connections, "free_bytes": r.free_bytes,
                 "used_bytes": r.used_bytes, "serves_players": r.serves_players,
                 "titles": {k: list(v) for k, v in r.holdings.items()}, "placed": sorted(r.placed)}
                for name, (at, r) in sorted(self._last.items())]


@dataclass(frozen=True)
class CdnChoice:
    """One ranked base URL for a title's segments."""

    name: str
    base_url: str
    same_isp: bool = False
    has_title: bool = True


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def rank_edges(edges: Iterable[RankableEdge], *, title_id: str, isp: str | None, country: str | None,
               origin_url: str) -> list[CdnChoice]:
    """Edges in the order a player should try them, the origin last. Pure: no I/O, no clock."""
    def key(edge: RankableEdge) -> tuple[bool, bool, bool, bool, float, str]:
        holds = edge.titles is None or title_id in edge.titles
        placed = isinstance(edge, LiveEdge) and title_id in edge.placed
        return (not _same(edge.isp, isp), not placed, not holds, not _same(edge.region, country), edge.load,
                edge.name)

    ranked = sorted((e for e in edges if e.healthy), key=key)
    choices = [CdnChoice(e.name, e.base_url, _same(e.isp, isp), e.titles is None or title_id in e.titles)
               for e in ranked]
    return [*choices, CdnChoice(ORIGIN, origin_url.rstrip("/"))]
