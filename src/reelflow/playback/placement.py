"""Off-peak placement: what each edge holds, chosen from forecast demand under its byte budget. Pure: no I/O.

The fill flow (flows/fill.py) reads plays from the service database, turns them into a forecast
with ``forecast``, asks ``place`` what each edge should hold and pushes the difference. The
simulator (bench/cdn_sim.py) calls the same two functions.

Demand is counted per (title, country, ISP): an edge serves the players of its country and, when
it has one, its ISP; the demand of a group is shared equally by the edges that serve it. A title
is worth, per byte it takes on an edge, the bytes that edge is expected to serve from it (the
knapsack ratio); each edge takes parts of titles by that ratio, best first, while they fit. Popular titles
so end up everywhere, regional titles on their region's edges, and the long tail — below
``min_plays`` expected plays per edge — is left to hubs and the origin.

A title only goes to the edges of the countries it is available in, and only when it is released
or is released within ``lead_s`` of the fill, so new titles are in place at their release time.
A title not yet played has no history: its forecast is a prior, the configured expected plays of
a new release, decayed with its age, and it wins over history while it is larger.

The unit placed is a part of a title, not the whole title: a title is cut into ``parts`` parts
of equal duration, and a play fetches a part only when it reaches it (``reach``, the share of plays
that reach the start of each part, estimated from QoE records by ``reach_curve``). Every play asks
for the first part, fewer for the last, so a part is worth ``reach`` times its title's plays, and an
edge holds the first parts (a prefix) of more titles than it could hold whole; the rest of a play
comes from the parent. An edge stores only the rungs its devices use (``Edge.rungs``).

The edges of one ISP serve the same players, and steering sends a player to the edge of its ISP
that holds the title, so they pool their budgets (``replicate_share`` below one): each holds the
ISP's best parts in that share of its budget (the head, on every edge, for load and for losing an
edge), and the rest of the ISP's budget holds the next titles once, each on one edge. An ISP of n
edges so holds (1 + n) / 2 times the distinct bytes of one edge (replicate share one half), which
is what turns the tail's first requests — most of what an edge misses at its peak hour — into hits.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

GroupKey = tuple[str, str | None]            # (country, isp); isp None: every ISP of the country
PARTS = 10                                   # parts a title is cut into (the fill's and the simulator's)
REPLICATE_SHARE = 0.5                        # share of an ISP edge's budget that holds the ISP's head


@dataclass(frozen=True)
class Title:
    """A package as placement sees it: its files' bytes by rung, where and when it may play."""

    key: str
    rung_bytes: Mapping[str, int]            # rung name -> bytes of that rung's files (audio/manifests shared: "")
    countries: frozenset[str] | None = None  # None: available everywhere
    release_at: float = 0.0                  # epoch seconds; before it the title does not play
    watched_share: float = 0.5               # share of a rung's bytes a play fetches, on average
    expected_plays: float | None = None      # a new release's own prior per window (else the configured one)
    part_bytes: Mapping[str, tuple[int, ...]] | None = None   # rung -> bytes in each part; None: equal parts

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
    """One title chosen for one edge: the rungs and the leading parts to push, and why."""

    key: str
    rungs: tuple[str, ...]
    bytes: int
    plays: float                             # expected plays this edge serves per forecast window
    ratio: float                             # expected bytes served per byte stored (of its first part)
    release_at: float
    parts: int = 1                           # the title's first ``parts`` parts are held ...
    of_parts: int = 1                        # ... of this many


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


def reach_curve(watched: Iterable[float], parts: int) -> tuple[float, ...]:
    """Share of plays that reach the start of each of ``parts`` equal parts, from each play's watched share.

    A play that watched a share f (0..1) of its title fetched part i when f > i / parts; part 0
    counts every play. No plays: every part is reached (as if each play watched the whole title).
    """
    reached = [0] * parts
    total = 0
    for share in watched:
        total += 1
        upto = min(parts, max(1, math.ceil(min(max(share, 0.0), 1.0) * parts - 1e-9)))
        for i in range(upto):
            reached[i] += 1
    if total == 0:
        return tuple(1.0 for _ in range(parts))
    return tuple(r / total for r in reached)


@dataclass(frozen=True)
class _Candidate:
    """A title as one edge sees it: the rungs it stores, their bytes per part and each part's worth."""

    key: str
    rungs: tuple[str, ...]
    part_bytes: tuple[int, ...]
    ratios: tuple[float, ...]                # expected bytes served per byte stored, per part
    plays: float
    release_at: float


def _split(total: int, parts: int) -> tuple[int, ...]:
    base, extra = divmod(total, parts)
    return tuple(base + (1 if i < extra else 0) for i in range(parts))


def _candidates(titles: Mapping[str, Title], edge: Edge, plays_of: Mapping[str, float], now: float,
                lead_s: float, min_plays: float, parts: int, reach: Sequence[float] | None) -> list[_Candidate]:
    out = []
    for key, plays in plays_of.items():
        title = titles.get(key)
        if title is None or plays < min_plays or plays <= 0:
            continue
        if not title.available_in(edge.country) or title.release_at > now + lead_s:
            continue
        rungs = tuple(sorted(r for r in title.rung_bytes if r == "" or edge.rungs is None or r in edge.rungs))
        video = [r for r in rungs if r != ""]
        if not video:
            continue
        stored = sum(title.rung_bytes[r] for r in rungs)
        if stored <= 0:
            continue
        per_byte = plays * sum(title.rung_bytes[r] for r in video) / len(video) / stored
        shares = [title.watched_share] * parts if reach is None else list(reach)
        split = title.part_bytes
        if split is not None and all(len(split.get(r, ())) == parts for r in rungs):
            part_bytes = tuple(sum(split[r][i] for r in rungs) for i in range(parts))
        else:
            part_bytes = _split(stored, parts)
        out.append(_Candidate(key, rungs, part_bytes, tuple(per_byte * r for r in shares), plays,
                              title.release_at))
    return out


def _pieces(candidates: Sequence[_Candidate]) -> list[tuple[float, str, int]]:
    """Every part of every candidate, best worth first; a title's parts in order (ties by key, then part)."""
    pieces = [(-c.ratios[i], c.key, i) for c in candidates for i in range(len(c.part_bytes))]
    pieces.sort()
    return pieces


def _greedy(pieces: Sequence[tuple[float, str, int]], by_key: Mapping[str, _Candidate],
            budget: int) -> tuple[dict[str, int], int]:
    """Parts taken best first while they fit, each only after the part before it: title -> leading parts held."""
    taken: dict[str, int] = {}
    left = budget
    for _neg, key, i in pieces:
        if taken.get(key, 0) != i:
            continue
        size = by_key[key].part_bytes[i]
        if size <= left:
            taken[key] = i + 1
            left -= size
    return taken, left


def _rendezvous(key: str, members: Sequence[Edge]) -> list[Edge]:
    """The pool's edges in ``key``'s rendezvous (highest random weight) order: stable, and spread evenly."""
    def weight(edge: Edge) -> bytes:
        return hashlib.blake2b(f"{key}\0{edge.name}".encode(), digest_size=8).digest()
    return sorted(members, key=weight, reverse=True)


def _placed(c: _Candidate, parts: int, plays: float) -> Placed:
    return Placed(c.key, c.rungs, sum(c.part_bytes[:parts]), plays, c.ratios[0], c.release_at, parts,
                  len(c.part_bytes))


def _fill_order(chosen: list[Placed]) -> list[Placed]:
    return sorted(chosen, key=lambda p: (-p.release_at, -p.ratio, p.key))


def place(titles: Sequence[Title], edges: Sequence[Edge], fc: Forecast, now: float, lead_s: float,
          min_plays: float = 0.0, parts: int = 1, reach: Sequence[float] | None = None,
          replicate_share: float = 1.0) -> dict[str, list[Placed]]:
    """What each edge holds: titles' leading parts by expected bytes served per byte stored, within budget.

    Only titles available in the edge's country and released before ``now + lead_s`` are
    candidates; only the rungs the edge's devices use are stored. A title is cut into ``parts``
    parts, each worth its title's plays times ``reach`` of it (no reach: ``watched_share`` for
    every part), and an edge holds a title's part only with the parts before it. A part that does
    not fit is skipped and smaller ones are still tried. Edges of one (country, ISP) pool their
    budgets when ``replicate_share`` is below one (module docstring). The result lists each edge's
    titles in fill order: newest release first (a release about to happen must land first), then
    by worth.
    """
    if len(reach or ()) not in (0, parts):
        raise ValueError(f"reach has {len(reach or ())} points for {parts} parts")
    served = edge_plays(fc, edges)
    by_key = {t.key: t for t in titles}
    pools: dict[GroupKey, list[Edge]] = defaultdict(list)
    for edge in edges:
        pooled = replicate_share < 1.0 and edge.isp is not None
        pools[(edge.country or "", edge.isp) if pooled else ("", f"\0{edge.name}")].append(edge)
    result: dict[str, list[Placed]] = {}
    for members in pools.values():
        if len(members) == 1:
            edge = members[0]
            cands = _candidates(by_key, edge, served.get(edge.name, {}), now, lead_s, min_plays, parts, reach)
            cand_of = {c.key: c for c in cands}
            taken, _left = _greedy(_pieces(cands), cand_of, edge.budget_bytes)
            result[edge.name] = _fill_order([_placed(cand_of[k], n, cand_of[k].plays) for k, n in taken.items()])
        else:
            result.update(_place_pool(members, by_key, served, now, lead_s, min_plays, parts, reach,
                                      replicate_share))
    return result


def _place_pool(members: Sequence[Edge], titles: Mapping[str, Title], served: Mapping[str, Mapping[str, float]],
                now: float, lead_s: float, min_plays: float, parts: int, reach: Sequence[float] | None,
                replicate_share: float) -> dict[str, list[Placed]]:
    """One ISP's edges: the head on each in ``replicate_share`` of its budget, then further titles once each."""
    group: dict[str, float] = defaultdict(float)
    for edge in members:
        for key, plays in served.get(edge.name, {}).items():
            group[key] += plays
    own: dict[str, dict[str, _Candidate]] = {}
    taken: dict[str, dict[str, int]] = {}
    left: dict[str, int] = {}
    done: list[tuple[Edge, dict[str, int], int]] = []
    for edge in members:                   # the head: each edge alone, in its replicated share
        replicated = int(edge.budget_bytes * replicate_share)
        twin = next((d for d in done if (d[0].country, d[0].rungs, d[0].budget_bytes) ==
                     (edge.country, edge.rungs, edge.budget_bytes) and served.get(d[0].name) == served.get(edge.name)),
                    None)
        if twin is not None:               # an edge like one already placed: the same head (saves the sort)
            own[edge.name], taken[edge.name], spare = own[twin[0].name], dict(twin[1]), twin[2]
        else:
            cands = _candidates(titles, edge, served.get(edge.name, {}), now, lead_s, min_plays, parts, reach)
            own[edge.name] = {c.key: c for c in cands}
            taken[edge.name], spare = _greedy(_pieces(cands), own[edge.name], replicated)
            done.append((edge, dict(taken[edge.name]), spare))
        left[edge.name] = edge.budget_bytes - replicated + spare
    head = {key for held in taken.values() for key in held}
    # the pool: the ISP's plays decide; a title goes to one edge, the first of its rendezvous order with room
    # for its first part (so a title stays where it is from one fill to the next while its edge has room),
    # and its later parts follow it there (steering sends a title's players to one holder)
    pool_cands = [c for c in _candidates(titles, members[0], group, now, lead_s, min_plays, parts, reach)
                  if c.key not in head]
    holder: dict[str, str] = {}
    for _neg, key, i in _pieces(pool_cands):
        if i:
            name = holder.get(key)
        else:
            name = next((e.name for e in _rendezvous(key, members) if key in own[e.name]
                         and own[e.name][key].part_bytes[0] <= left[e.name]), None)
        if name is None or taken[name].get(key, 0) != i:
            continue
        cand = own[name].get(key)
        if cand is None:
            continue
        size = cand.part_bytes[i]
        if size <= left[name]:
            taken[name][key] = i + 1
            left[name] -= size
            holder[key] = name
    out = {}
    for edge in members:
        out[edge.name] = _fill_order([_placed(own[edge.name][k], n, served[edge.name][k] if k in head
                                              else group[k]) for k, n in taken[edge.name].items()])
    return out
