"""CDN steering: rank the configured edges for one player; the origin is always the last resort.

The order, most important first:

1. unhealthy edges are never handed out;
2. an edge inside the player's ISP network (no transit, the cheapest and usually fastest path);
3. an edge that holds the title (a miss would fetch from the origin anyway);
4. an edge in the player's country/region;
5. the least loaded; then the name, so the ranking is deterministic.

The service itself (the origin) comes after every edge.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from reelflow.infra.settings import EdgeConfig

ORIGIN = "origin"


@dataclass(frozen=True)
class CdnChoice:
    """One ranked base URL for a title's segments."""

    name: str
    base_url: str
    same_isp: bool = False
    has_title: bool = True


def _same(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and a.strip().casefold() == b.strip().casefold()


def rank_edges(edges: Iterable[EdgeConfig], *, title_id: str, isp: str | None, country: str | None,
               origin_url: str) -> list[CdnChoice]:
    """Edges in the order a player should try them, the origin last. Pure: no I/O, no clock."""
    def key(edge: EdgeConfig) -> tuple[bool, bool, bool, float, str]:
        holds = edge.titles is None or title_id in edge.titles
        return (not _same(edge.isp, isp), not holds, not _same(edge.region, country), edge.load, edge.name)

    ranked = sorted((e for e in edges if e.healthy), key=key)
    choices = [CdnChoice(e.name, e.base_url, _same(e.isp, isp), e.titles is None or title_id in e.titles)
               for e in ranked]
    return [*choices, CdnChoice(ORIGIN, origin_url.rstrip("/"))]
