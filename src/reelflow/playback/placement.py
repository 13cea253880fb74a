"""Off-peak placement: what each edge holds, chosen from forecast demand under its byte budget. Pure: no I/O.

The fill flow (flows/fill.py) reads plays from the service database, turns them into a forecast
with ``forecast``, asks ``place`` what each edge should hold and pushes the difference. The
simulator (bench/cdn_sim.py) calls the same two functions.

Demand is counted per (title, country, ISP): an edge serves the players of its country and, when
it has one, its ISP; the demand of a group is shared equally by the edges that serve it. A title
is worth, per byte it takes on an edge, the bytes that edge is expected to serve from it (the
knapsack ratio); each edge takes titles by that ratio, best first, while they fit. Popular titles
so end up everywhere, regional titles on their region's edges, and the long tail — below
``min_plays`` expected plays per edge — is left to hubs and the origin.

A title only goes to the edges of the countries it is available in, and only when it is released
or is released within ``lead_s`` of the fill, so new titles are in place at their release time.
A title not yet played has no history: its forecast is a prior, the configured expected plays of
a new release, decayed with its age, and it wins over history while it is larger.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GroupKey = tuple[str, str | None]            # (country, isp); isp None: every ISP of the country


@dataclass(frozen=True)
class Title:
    """A package as placement sees it: its files' bytes by rung, where and when it may play."""

    key: str
    rung_bytes: Mapping[str, int]            # rung name -> bytes of that rung's files (audio/manifests shared: "")
    countries: frozenset[str] | None = None  # None: available everywhere
    release_at: float = 0.0                  # epoch seconds; before it the title does not play
    watched_share: float = 0.5               # share of a rung's bytes a play fetches, on average
    expected_plays: float | None = None      # a new release's own prior per window (else the configured one)

    def available_in(self, country: str | None) -> bool:
        return self.countries is None or (country is not None and country in self.countries)


@dataclass(frozen=True)
class Edge:
    """An edge that players are steered to: its name, fill budget and where it serves."""

    name: str
    budget_bytes: int
    country: str | None = None
    isp: str | None = None
    rungs: frozenset[str] | None = None      # rungs its players' devices use; None: every rung


@dataclass(frozen=True)
class Play:
    """One play (or QoE record) as the forecast counts it."""

    title: str
    at: float
    country: str | None = None
    isp: str | None = None
    count: float = 1.0                       # plays this record stands for (rows grouped by hour)


@dataclass(frozen=True)
class Placed:
    """One title chosen for one edge: the rungs to push and why."""

    key: str
    rungs: tuple[str, ...]
    bytes: int
    plays: float                             # expected plays this edge serves per forecast window
    ratio: float                             # expected bytes served per byte stored
    release_at: float


@dataclass
class Forecast:
    """Expected plays per forecast window, by title and (country, isp)."""

    plays: dict[str, dict[GroupKey, float]] = field(default_factory=dict)

    def add(self, title: str, group: GroupKey, plays: float) -> None:
        if plays > 0:
            by_group = self.plays.setdefault(title, {})
            by_group[group] = by_group.get(group, 0.0) + plays


def forecast(plays: Iterable[Play], titles: Sequence[Title], now: float, window_s: float,
             half_life_s: float, new_release_plays: float, new_release_s: float) -> Forecast:
    """Expected plays per ``window_s`` by title and group, from ``plays`` before ``now``.

    Each play counts with weight 2^(-age/half_life), and the weights are scaled to one window
    (a steady title played n times per window forecasts n). A title released less than
    ``new_release_s`` before ``now``, or not yet released, is forecast at least its prior (its
    own ``expected_plays``, else ``new_release_plays``) per window, decaying with the same
    half-life from its release; what history lacks of it is spread evenly over its countries.
    """
    decay = math.log(2) / half_life_s
    per_window = window_s * decay                          # sum of weights of a steady 1/window rate = 1/that
    result = Forecast()
    observed: dict[str, float] = defaultdict(float)
    for play in plays:
        if play.at > now:
            continue
        weight = play.count * math.exp(-decay * (now - play.at)) * per_window
        result.add(play.title, (play.country or "", play.isp), weight)
        observed[play.title] += weight
    for title in titles:
        age = now - title.release_at
        expected = new_release_plays if title.expected_plays is None else title.expected_plays
        if age >= new_release_s or expected <= 0:
            continue
        prior = expected * math.exp(-decay * max(age, 0.0))
        missing = prior - observed.get(title.key, 0.0)
        if missing <= 0:
            continue
        countries = sorted(title.countries) if title.countries is not None else [""]
        for country in countries:                          # the prior tops history up to itself
            result.add(title.key, (country, None), missing / len(countries))
    return result


def _group_shares(edges: Sequence[Edge]) -> dict[GroupKey, list[Edge]]:
    """Which edges serve each group's players: the edges of that ISP, else the country's ISP-less edges."""
    groups: dict[GroupKey, list[Edge]] = defaultdict(list)
    for edge in edges:
        groups[(edge.country or "", edge.isp)].append(edge)
    return groups


def edge_plays(fc: Forecast, edges: Sequence[Edge]) -> dict[str, dict[str, float]]:
    """Expected plays per window that each edge serves, by title.

    Plays of (country, isp) go to that ISP's edges when it has any, else to the country's
    edges without an ISP, else to all the country's edges; plays of (country, None) — the
    new-release prior, or plays with no ISP — are spread over all the country's edges by count.
    A country ("" included) with no edge is served upstream and counts nowhere.
    """
    groups = _group_shares(edges)
    by_country: dict[str, list[Edge]] = defaultdict(list)
    for edge in edges:
        by_country[edge.country or ""].append(edge)
    everywhere = list(edges)
    result: dict[str, dict[str, float]] = defaultdict(dict)
    for title, by_group in fc.plays.items():
        for (country, isp), plays in by_group.items():
            if isp is not None and (country, isp) in groups:
                targets = groups[(country, isp)]
            elif isp is not None and (country, None) in groups:
                targets = groups[(country, None)]
            elif country:
                targets = by_country.get(country, [])
            else:                                          # no country known: every edge shares it
                targets = everywhere
            for edge in targets:
                served = result[edge.name]
                served[title] = served.get(title, 0.0) + plays / len(targets)
    return result


def place(titles: Sequence[Title], edges: Sequence[Edge], fc: Forecast, now: float, lead_s: float,
          min_plays: float = 0.0) -> dict[str, list[Placed]]:
    """What each edge holds: titles by expected bytes served per byte stored, best first, within budget.

    Only titles available in the edge's country and released before ``now + lead_s`` are
    candidates; only the rungs the edge's devices use are stored. A title that does not fit is
    skipped and smaller ones are still tried. The result lists each edge's titles in fill order:
    newest release first (a release about to happen must land first), then by ratio.
    """
    served = edge_plays(fc, edges)
    by_key = {t.key: t for t in titles}
    result: dict[str, list[Placed]] = {}
    for edge in edges:
        candidates: list[Placed] = []
        for key, plays in served.get(edge.name, {}).items():
            title = by_key.get(key)
            if title is None or plays < min_plays or plays <= 0:
                continue
            if not title.available_in(edge.country) or title.release_at > now + lead_s:
                continue
            rungs = tuple(sorted(r for r in title.rung_bytes
                                 if r == "" or edge.rungs is None or r in edge.rungs))
            video = [r for r in rungs if r != ""]
            if not video:
                continue
            stored = sum(title.rung_bytes[r] for r in rungs)
            if stored <= 0:
                continue
            per_play = title.watched_share * sum(title.rung_bytes[r] for r in video) / len(video)
            candidates.append(Placed(key, rungs, stored, plays, plays * per_play / stored, title.release_at))
        candidates.sort(key=lambda p: (-p.ratio, p.key))
        chosen: list[Placed] = []
        left = edge.budget_bytes
        for placed in candidates:
            if placed.bytes <= left:
                chosen.append(placed)
                left -= placed.bytes
        chosen.sort(key=lambda p: (-p.release_at, -p.ratio, p.key))
        result[edge.name] = chosen
    return result
