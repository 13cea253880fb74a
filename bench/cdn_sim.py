"""Placement at scale, simulated: byte hit ratio and peak-hour upstream of the off-peak fill against reactive LRU,
S3-FIFO and Belady's bound, on a country-scale deployment.

    .venv/bin/python bench/cdn_sim.py [--edges 3000] [--isps 300] [--regions 20] [--titles 15000]
                                      [--days 7] [--sessions 2000] [--replay-isps 2] [--seed 1]
                                      [--parts 10] [--replicate-share 0.5] [--explain]

Deterministic for a seed (numpy's PCG64). The model:

- Catalogue: ``--titles`` titles, each cut into ``--chunks`` equal chunks (the objects requested and
  cached); a title's bytes (what a play of the whole title fetches) are log-normal, median 2.5 GB. A
  share of titles is only available in a few regions (they are only asked for there).
- Demand: Zipf (alpha 0.9) over titles; a third of the titles are regional (8x in their home region,
  0.3x elsewhere); the rest get a mild per-region log-normal skew. Each day ``--releases`` titles are
  released at 08:00 with a boost (5x, halving every 2 days) on top of a rank drawn near the head.
- Sessions: ``--sessions`` per edge per day, start hour by a daily cycle (peak 21:00, trough
  04:00), a title by the day's regional demand, then chunks from the start, one every 10 minutes,
  stopping early (a geometric number, about half the title on average).
- Deployment: ``--edges`` edges in ``--isps`` ISPs spread over ``--regions`` regions, one budget
  each (``--budget-share`` of the catalogue's bytes). ``--replay-isps`` ISPs (spread over the
  regions) replay the requests of every one of their edges; the service's view (the forecast)
  counts the plays of every edge of the country (drawn per title and region, Poisson).

Policies, each with the same bytes per edge, replayed after a warm-up day that is not counted:

- ``lru``, ``s3fifo``: playback/edge_cache.py, admitting every miss, each player on its own edge.
- ``lru_pool``: a reference, not something reelflow runs: LRU edges of an ISP as one cache, each
  title's requests sent to the edge its number hashes to (so the ISP holds n edges' worth of distinct
  bytes, and the edges' load follows the titles hashed to them).
- ``fill``: what reelflow's edges run. Every day at 03:00 (the off-peak window) the placement of
  playback/placement.py (forecast from the previous days' plays, half-life one day; a new release's
  prior is its expected demand with log-normal error, sigma 0.5; lead one day; ``--parts`` parts per
  title by the reach of each, estimated from a sample of plays' watched shares as QoE records give
  it; an ISP's edges pooled with ``--replicate-share``) is pinned in ``--fill-share`` of the budget;
  the rest is an S3-FIFO cache of misses, as playback/edge.py does beside pinned objects. A player
  goes to the edge of its ISP that holds its title (its own edge when it does, or when none does), as
  steering ranks them. Pushes count as upstream bytes at 03:00.
- ``belady``: offline, demand-fetch, per edge: a miss is admitted when it is asked for again and the
  object asked for furthest in the future is evicted (sizes vary, so this is a byte-aware
  approximation of the optimum, the classic bound of a reactive cache; the fill, which fetches ahead,
  can beat it).
- ``belady_prefetch``: the same with the fill's privilege: at 03:00 each day the cache is refilled
  with the objects asked for soonest (counted as fill bytes). Also an approximation: with variable
  sizes and a heavy load it is not always above ``belady``.

Reported: byte hit ratio (bytes served from edges over bytes asked for) of the counted days, the
peak-hour upstream (bytes fetched from upstream during 21:00-22:00, as Mbit/s per edge; fill pushes
happen at 03:00, so none fall in it), the fill's pushes (GB per edge per day), and the most loaded
edge of an ISP against the ISP's mean (bytes served, averaged over the ISPs). ``--explain`` splits
each policy's peak-hour upstream: first request of the object that day at its edge or not, a title's
first chunk or a later one, and (fill) whether the ISP held the title at all.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reelflow.playback.edge_cache import Lru, Policy, S3Fifo
from reelflow.playback.placement import (
    PARTS,
    REPLICATE_SHARE,
    Edge,
    Forecast,
    Play,
    Title,
    forecast,
    place,
    reach_curve,
)

DAY = 86_400.0
HOUR = 3_600.0
FILL_HOUR = 3
PEAK_HOUR = 21
RELEASE_HOUR = 8
CHUNK_S = 600.0
POLICIES = ("lru", "s3fifo", "lru_pool", "fill", "belady", "belady_prefetch")
# share of sessions starting in each hour: trough at 04:00, peak at 21:00
DIURNAL = np.array([3, 2, 1.2, 0.8, 0.6, 0.6, 0.8, 1.2, 1.8, 2.2, 2.5, 2.8,
                    3.2, 3.2, 3.0, 3.0, 3.4, 4.2, 5.4, 6.8, 8.0, 8.6, 7.2, 5.0])
DIURNAL = DIURNAL / DIURNAL.sum()


@dataclass
class World:
    """The catalogue, the demand model and the deployment."""

    sizes: np.ndarray            # bytes per title
    base: np.ndarray             # titles x regions demand weight (release boost not included)
    release_day: np.ndarray      # day of release (< 0: already out before the run)
    region_of_edge: np.ndarray
    isp_of_edge: np.ndarray
    budget: int
    chunks: int


def build(args: argparse.Namespace) -> World:
    rng = np.random.default_rng(args.seed)
    n, r = args.titles, args.regions
    sizes = np.exp(rng.normal(math.log(2.5e9), 0.5, n)).astype(np.int64)
    sizes -= sizes % args.chunks
    zipf = 1.0 / np.arange(1, n + 1) ** 0.9
    rng.shuffle(zipf)
    base = np.exp(rng.normal(0.0, 0.3, (n, r)))
    home = rng.integers(0, r, n)
    regional = rng.random(n) < 1 / 3
    base[regional] = 0.3
    base[np.flatnonzero(regional), home[regional]] = 8.0
    limited = rng.random(n) < 0.15                             # available in home and two more regions
    mask = np.ones((n, r), dtype=bool)
    for t in np.flatnonzero(limited):
        mask[t] = False
        mask[t, home[t]] = True
        mask[t, rng.integers(0, r, 2)] = True
    base = base * zipf[:, None] * mask
    release_day = np.full(n, -1000)
    heads = np.argsort(-zipf)
    for day in range(1, args.days + 1):                         # releases: titles near the head, kept unreleased
        picks = rng.choice(heads[:600], size=args.releases, replace=False)
        release_day[picks] = np.where(release_day[picks] < 0, day, release_day[picks])
    isp_region = rng.integers(0, r, args.isps)
    isp_region[:r] = np.arange(r)                               # every region has an ISP
    isp_of_edge = rng.integers(0, args.isps, args.edges)
    isp_of_edge[: args.isps] = np.arange(args.isps)             # every ISP has an edge
    budget = int(args.budget_share * sizes.sum())
    return World(sizes, base, release_day, isp_region[isp_of_edge], isp_of_edge, budget, args.chunks)


def demand(world: World, day: int) -> np.ndarray:
    """Titles x regions probability of a session's title on ``day`` (releases boosted, unreleased zero)."""
    age = day - world.release_day
    boost = np.where(world.release_day < 0, 1.0, np.where(age < 0, 0.0, 1.0 + 4.0 * 0.5 ** (np.maximum(age, 0) / 2)))
    weights = world.base * boost[:, None]
    probs: np.ndarray = weights / weights.sum(axis=0, keepdims=True)
    return probs


def sessions(world: World, rng: np.random.Generator, region: int, day: int, count: int,
             probs: np.ndarray) -> list[tuple[float, int, int]]:
    """One edge's requests of ``day``: (time, title, chunk), where a released title is not asked before release."""
    n = rng.poisson(count)
    titles = rng.choice(len(probs), size=n, p=probs[:, region])
    starts = day * DAY + (rng.choice(24, size=n, p=DIURNAL) + rng.random(n)) * HOUR
    released = world.release_day[titles] == day
    starts = np.where(released, np.maximum(starts, day * DAY + RELEASE_HOUR * HOUR + rng.random(n) * HOUR * 14),
                      starts)
    watched = np.minimum(rng.geometric(1.0 / (world.chunks / 2), n), world.chunks)
    out: list[tuple[float, int, int]] = []
    for start, title, k in zip(starts.tolist(), titles.tolist(), watched.tolist(), strict=True):
        out.extend((start + c * CHUNK_S, title, c) for c in range(k))
    return out


class Belady:
    """Furthest-next-use eviction over a known trace, with a free refill at each fill time."""

    def __init__(self, capacity: int, keys: list[int], sizes: list[int]) -> None:
        self.capacity = capacity
        self.keys, self.sizes = keys, sizes
        nxt = [math.inf] * len(keys)
        last: dict[int, int] = {}
        for i in range(len(keys) - 1, -1, -1):
            nxt[i] = last.get(keys[i], math.inf)
            last[keys[i]] = i
        self.next = nxt
        self.size_of = dict(zip(keys, sizes, strict=True))
        self.held: dict[int, float] = {}          # key -> next use
        self.heap: list[tuple[float, int]] = []
        self.used = 0

    def refill(self, position: int) -> int:
        """The objects asked for soonest from ``position`` on, up to the capacity; the bytes newly fetched."""
        chosen: dict[int, float] = {}
        used = 0
        for i in range(position, len(self.keys)):
            key = self.keys[i]
            if key in chosen:
                continue
            if used + self.sizes[i] > self.capacity:
                break
            chosen[key] = i
            used += self.sizes[i]
        fetched = sum(self.sizes[int(i)] for k, i in chosen.items() if k not in self.held)
        self.held, self.used = chosen, used
        self.heap = [(-i, k) for k, i in chosen.items()]
        heapq.heapify(self.heap)
        return fetched

    def request(self, i: int) -> bool:
        """Serve request ``i``: True on a hit; a miss is admitted when it is asked for again."""
        key, size, nxt = self.keys[i], self.sizes[i], self.next[i]
        if key in self.held:
            self.held[key] = nxt
            heapq.heappush(self.heap, (-nxt, key))
            return True
        if nxt == math.inf or size > self.capacity:
            return False
        self.held[key] = nxt
        self.used += size
        heapq.heappush(self.heap, (-nxt, key))
        while self.used > self.capacity:
            neg, victim = heapq.heappop(self.heap)
            if self.held.get(victim) != -neg:
                continue                          # stale entry
            del self.held[victim]
            self.used -= self.size_of[victim]
        return False


def _scaled(fc: Forecast, factor: dict[str, float]) -> Forecast:
    """``fc`` with each country's plays times its factor (a country's plays as the sampled edges' share)."""
    out = Forecast()
    for title, groups in fc.plays.items():
        for (country, isp), plays in groups.items():
            out.add(title, (country, isp), plays * factor.get(country, 0.0))
    return out


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    world = build(args)
    rng = np.random.default_rng(args.seed + 1)
    n_titles, chunks = len(world.sizes), world.chunks
    if chunks % args.parts:
        raise SystemExit(f"--chunks {chunks} is not a multiple of --parts {args.parts}")
    per_part = chunks // args.parts
    chunk_bytes = (world.sizes // chunks).tolist()
    regions = [f"r{i}" for i in range(args.regions)]
    edges_per_region = np.bincount(world.region_of_edge, minlength=args.regions)
    # sample ISPs spread over the regions; every edge of a sampled ISP is replayed
    isp_region = np.zeros(args.isps, dtype=int)
    isp_region[world.isp_of_edge] = world.region_of_edge
    isp_order = np.argsort(isp_region, kind="stable")
    sampled_isps = sorted(set(isp_order[np.linspace(0, args.isps - 1, args.replay_isps).astype(int)].tolist()))
    clusters = [np.flatnonzero(world.isp_of_edge == g).tolist() for g in sampled_isps]
    replayed = [e for members in clusters for e in members]
    days = list(range(0, args.days + 1))                        # day 0 warms up
    probs = {d: demand(world, d) for d in range(-2, args.days + 1)}
    # the service's view: every edge's plays, per title and region, per day
    history: list[Play] = []

    def observe(day: int) -> None:
        totals = edges_per_region * args.sessions
        counts = rng.poisson(probs[day] * totals[None, :])
        for t, reg in zip(*np.nonzero(counts), strict=True):
            history.append(Play(str(t), (day + 0.5) * DAY, regions[reg], None, float(counts[t, reg])))

    observe(-2)
    observe(-1)
    titles_meta = []
    err = np.exp(rng.normal(0.0, 0.5, n_titles))
    for t in range(n_titles):
        rel = int(world.release_day[t])
        expected = None
        if rel > 0:                                             # its first day's country demand, with error
            p = demand(world, rel)[t]
            expected = float((p * edges_per_region * args.sessions).sum() * err[t])
        countries = frozenset(regions[r] for r in np.flatnonzero(world.base[t] > 0))
        titles_meta.append(Title(str(t), {"all": int(world.sizes[t])}, countries if len(countries) < len(regions)
                                 else None, release_at=(rel * DAY + RELEASE_HOUR * HOUR) if rel > 0 else 0.0,
                                 watched_share=0.5, expected_plays=expected))
    # the reach of each part, as the service estimates it from QoE records (each play's watched share)
    watched_rng = np.random.default_rng(args.seed + 2)
    watched = np.minimum(watched_rng.geometric(1.0 / (chunks / 2), 20_000), chunks) / chunks
    reach = reach_curve(watched.tolist(), args.parts)
    fill_budget = int(world.budget * args.fill_share)
    specs = [Edge(f"e{e}", fill_budget, regions[int(world.region_of_edge[e])], f"i{int(world.isp_of_edge[e])}")
             for e in replayed]
    sampled_per_region = np.bincount(world.region_of_edge[replayed], minlength=args.regions)
    factor = {regions[r]: float(sampled_per_region[r] / edges_per_region[r]) for r in range(args.regions)
              if sampled_per_region[r]}
    # what each replayed edge holds after each day's fill: edge -> title -> chunks held (a prefix)
    placements: dict[int, dict[int, dict[int, int]]] = {}
    for day in days:
        now = day * DAY + FILL_HOUR * HOUR
        if day > 0:
            observe(day - 1)
        recent = [p for p in history if p.at > now - 4 * DAY]
        fc = forecast(recent, titles_meta, now=now, window_s=DAY, half_life_s=DAY,
                      new_release_plays=0.0, new_release_s=2 * DAY)
        chosen = place(titles_meta, specs, _scaled(fc, factor), now=now, lead_s=DAY, parts=args.parts,
                       reach=reach, replicate_share=args.replicate_share)
        placements[day] = {e: {int(p.key): p.parts * per_part for p in chosen[f"e{e}"]} for e in replayed}

    totals = {name: {"asked": 0.0, "hit": 0.0, "peak_up": 0.0, "fill_up": 0.0, "skew": 0.0} for name in POLICIES}
    explain: dict[str, dict[str, float]] = {name: defaultdict(float) for name in POLICIES}
    for members in clusters:
        region = int(world.region_of_edge[members[0]])
        traces: list[list[tuple[float, int, int]]] = []
        for _ in members:
            trace: list[tuple[float, int, int]] = []
            for day in days:
                trace.extend(sessions(world, rng, region, day, args.sessions, probs[day]))
            trace.sort()
            traces.append(trace)
        for name in POLICIES:
            if name.startswith("belady"):
                for trace in traces:
                    _replay_belady(name, trace, world, chunk_bytes, days, totals[name], explain[name])
                totals[name]["skew"] += 1.0                     # each edge serves its own players
            else:
                _replay_cluster(name, members, traces, world, chunk_bytes, days, placements, args,
                                totals[name], explain[name])
    result = {}
    for name, stats in totals.items():
        result[name] = {
            "byte_hit_ratio": stats["hit"] / max(stats["asked"], 1.0),
            "peak_mbps_per_edge": stats["peak_up"] * 8 / (args.days * HOUR) / len(replayed) / 1e6,
            "fill_gb_per_edge_day": stats["fill_up"] / args.days / len(replayed) / 1e9,
            "max_edge_load": stats["skew"] / len(clusters),
            "edges_replayed": float(len(replayed)),
        }
        if args.explain:
            result[name].update({f"peak {k}": v / max(stats["peak_up"], 1.0) for k, v in explain[name].items()})
    return result


def _replay_cluster(name: str, members: list[int], traces: list[list[tuple[float, int, int]]], world: World,
                    chunk_bytes: list[int], days: list[int], placements: dict[int, dict[int, dict[int, int]]],
                    args: argparse.Namespace, stats: dict[str, float], explain: dict[str, float]) -> None:
    """One ISP's edges against policy ``name``: each player goes to its own edge, except for a title that
    another edge of its ISP holds pinned (``fill``: steering's "holds the title") or, in ``lru_pool``,
    to the edge its title hashes to."""
    chunks = world.chunks
    fill_budget = int(world.budget * args.fill_share)
    merged = sorted((at, title, c, m) for m, trace in enumerate(traces) for at, title, c in trace)
    caches: list[Policy] = [Lru(world.budget) if name.startswith("lru") else
                            S3Fifo(world.budget - fill_budget if name == "fill" else world.budget) for _ in members]
    pinned: list[dict[int, int]] = [{} for _ in members]
    holders: dict[int, list[int]] = {}
    served = [0.0] * len(members)
    seen: list[set[int]] = [set() for _ in members]           # objects asked for today, per edge
    fill_at = [d * DAY + FILL_HOUR * HOUR for d in days]
    next_fill = 0
    for at, title, c, own in merged:
        while next_fill < len(days) and at >= fill_at[next_fill]:
            day = days[next_fill]
            for m in range(len(members)):
                seen[m].clear()
            if name == "fill":
                holders = {}
                for m, edge in enumerate(members):
                    now_held = placements[day][edge]
                    pushed = 0
                    for t, n in now_held.items():
                        before = pinned[m].get(t, 0)
                        if n > before:
                            pushed += (n - before) * chunk_bytes[t]
                            for k in range(before, n):
                                caches[m].remove(str(t * chunks + k))
                        holders.setdefault(t, []).append(m)
                    pinned[m] = now_held
                    if day >= 1:
                        stats["fill_up"] += pushed
            next_fill += 1
        if name == "fill":
            where = holders.get(title)
            m = own if where is None or own in where else where[0]
        elif name == "lru_pool":
            m = title % len(members)
        else:
            m = own
        key = title * chunks + c
        size = chunk_bytes[title]
        first = key not in seen[m]
        seen[m].add(key)
        if name == "fill" and c < pinned[m].get(title, 0):
            hit = True
        else:
            hit = caches[m].access(str(key))
            if not hit:
                caches[m].insert(str(key), size)
        if at < DAY:
            continue
        stats["asked"] += size
        served[m] += size
        if hit:
            stats["hit"] += size
        elif int(at // HOUR) % 24 == PEAK_HOUR:
            stats["peak_up"] += size
            explain["first of the day at its edge" if first else "asked before today at its edge"] += size
            explain["a title's first chunk" if c == 0 else "a later chunk"] += size
            if name == "fill":
                explain["title held in the ISP" if title in holders else "title held nowhere in the ISP"] += size
    stats["skew"] += max(served) / max(sum(served) / len(served), 1.0)


def _replay_belady(name: str, trace: list[tuple[float, int, int]], world: World, chunk_bytes: list[int],
                   days: list[int], stats: dict[str, float], explain: dict[str, float]) -> None:
    """One edge's trace against offline Belady (demand-fetch, or with a free refill at each fill time)."""
    chunks = world.chunks
    keys = [t * chunks + c for _, t, c in trace]
    sizes = [chunk_bytes[t] for _, t, _ in trace]
    times = [at for at, _, _ in trace]
    belady = Belady(world.budget, keys, sizes)
    fill_at = [d * DAY + FILL_HOUR * HOUR for d in days]
    next_fill = 0
    for i in range(len(keys)):
        while next_fill < len(days) and times[i] >= fill_at[next_fill]:
            pushed = belady.refill(i) if name == "belady_prefetch" else 0
            if days[next_fill] >= 1:
                stats["fill_up"] += pushed
            next_fill += 1
        hit = belady.request(i)
        if times[i] < DAY:
            continue
        stats["asked"] += sizes[i]
        if hit:
            stats["hit"] += sizes[i]
        elif int(times[i] // HOUR) % 24 == PEAK_HOUR:
            stats["peak_up"] += sizes[i]


def arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--edges", type=int, default=3000)
    parser.add_argument("--isps", type=int, default=300)
    parser.add_argument("--regions", type=int, default=20)
    parser.add_argument("--titles", type=int, default=15_000)
    parser.add_argument("--chunks", type=int, default=10)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--releases", type=int, default=10)
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--replay-isps", type=int, default=2)
    parser.add_argument("--budget-share", type=float, default=0.05)
    parser.add_argument("--fill-share", type=float, default=0.8)
    parser.add_argument("--parts", type=int, default=PARTS)
    parser.add_argument("--replicate-share", type=float, default=REPLICATE_SHARE)
    parser.add_argument("--explain", action="store_true")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    started = time.perf_counter()
    result = run(args)
    lru, fill, bel = result["lru"], result["fill"], result["belady"]
    print(f"{args.edges} edges, {args.isps} ISPs, {args.regions} regions, {args.titles} titles, {args.days} days "
          f"(+1 warm-up), {args.sessions} sessions/edge/day, {args.replay_isps} ISPs replayed "
          f"({lru['edges_replayed']:.0f} edges), budget {args.budget_share:.0%} of the catalogue, fill share "
          f"{args.fill_share:.0%}, {args.parts} parts, replicate share {args.replicate_share:.0%}, seed {args.seed}")
    print(f"{'policy':16} {'byte hit':>9} {'peak up Mbit/s/edge':>20} {'fill GB/edge/day':>17} {'max edge load':>14}")
    for name, r in result.items():
        print(f"{name:16} {r['byte_hit_ratio']:9.1%} {r['peak_mbps_per_edge']:20.1f} "
              f"{r['fill_gb_per_edge_day']:17.1f} {r['max_edge_load']:14.2f}")
        for key in sorted(k for k in r if k.startswith("peak ")):
            print(f"    {key[5:]:40} {r[key]:6.1%} of its peak-hour upstream")
    print(f"fill - lru: {100 * (fill['byte_hit_ratio'] - lru['byte_hit_ratio']):+.1f} points; "
          f"belady - fill: {100 * (bel['byte_hit_ratio'] - fill['byte_hit_ratio']):+.1f} points; "
          f"peak upstream vs lru: {fill['peak_mbps_per_edge'] / max(lru['peak_mbps_per_edge'], 1e-9) - 1:+.1%}; "
          f"vs lru_pool: {fill['peak_mbps_per_edge'] / max(result['lru_pool']['peak_mbps_per_edge'], 1e-9) - 1:+.1%}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
