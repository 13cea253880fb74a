"""Placement at scale, simulated: byte hit ratio and peak-hour upstream of the off-peak fill against reactive LRU,
S3-FIFO and Belady's bound, on a country-scale deployment.

    .venv/bin/python bench/cdn_sim.py [--edges 3000] [--isps 300] [--regions 20] [--titles 15000]
                                      [--days 7] [--sessions 2000] [--replay-edges 16] [--seed 1]

Deterministic for a seed (numpy's PCG64). The model:

- Catalogue: ``--titles`` titles, each cut into ``--chunks`` equal chunks (the objects requested and
  cached); a title's bytes (all its rungs) are log-normal, median 2.5 GB. A share of titles is only
  available in a few regions (they are only asked for there).
- Demand: Zipf (alpha 0.9) over titles; a third of the titles are regional (8x in their home region,
  0.3x elsewhere); the rest get a mild per-region log-normal skew. Each day ``--releases`` titles are
  released at 08:00 with a boost (5x, halving every 2 days) on top of a rank drawn near the head.
- Sessions: ``--sessions`` per edge per day, start hour by a daily cycle (peak 21:00, trough
  04:00), a title by the day's regional demand, then chunks from the start, one every 10 minutes,
  stopping early (a geometric number, about half the title on average).
- Deployment: ``--edges`` edges in ``--isps`` ISPs spread over ``--regions`` regions, one budget
  each (``--budget-share`` of the catalogue's bytes). Edges are independent caches, so a sample of
  ``--replay-edges`` edges (spread over the regions) replays its requests; the service's view (the
  forecast) counts the plays of every edge of the country (drawn per title and region, Poisson).

Policies, each with the same bytes per edge, replayed after a warm-up day that is not counted:

- ``lru``, ``s3fifo``: playback/edge_cache.py, admitting every miss.
- ``fill``: what reelflow's edges run. Every day at 03:00 (the off-peak window) the placement of
  playback/placement.py (forecast from the previous days' plays, half-life one day; a new release's
  prior is its expected demand with log-normal error, sigma 0.5; lead one day) is pinned in
  ``--fill-share`` of the budget; the rest is an S3-FIFO cache of misses, as playback/edge.py does
  beside pinned objects. Pushes count as upstream bytes at 03:00.
- ``belady``: offline, demand-fetch: a miss is admitted when it is asked for again and the object
  asked for furthest in the future is evicted (sizes vary, so this is a byte-aware approximation of
  the optimum, the classic bound of a reactive cache; the fill, which fetches ahead, can beat it).
- ``belady_prefetch``: the same with the fill's privilege: at 03:00 each day the cache is refilled
  with the objects asked for soonest (counted as fill bytes). Also an approximation: with variable
  sizes and a heavy load it is not always above ``belady``.

Reported: byte hit ratio (bytes served from edges over bytes asked for) of the counted days and the
peak-hour upstream (bytes fetched from upstream during 21:00-22:00, as Mbit/s per edge; fill pushes
happen at 03:00, so none fall in it), and the fill's pushes (GB per edge per day), with the fill's
distance to LRU and to demand-fetch Belady.
"""

from __future__ import annotations

import argparse
import heapq
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from reelflow.playback.edge_cache import Lru, Policy, S3Fifo
from reelflow.playback.placement import Edge, Play, Title, forecast, place

DAY = 86_400.0
HOUR = 3_600.0
FILL_HOUR = 3
PEAK_HOUR = 21
RELEASE_HOUR = 8
CHUNK_S = 600.0
POLICIES = ("lru", "s3fifo", "fill", "belady", "belady_prefetch")
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


def run(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    world = build(args)
    rng = np.random.default_rng(args.seed + 1)
    n_titles, chunks = len(world.sizes), world.chunks
    chunk_bytes = (world.sizes // chunks).tolist()
    regions = [f"r{i}" for i in range(args.regions)]
    edges_per_region = np.bincount(world.region_of_edge, minlength=args.regions)
    # sample edges spread over regions
    order = np.argsort(world.region_of_edge, kind="stable")
    sample = order[np.linspace(0, len(order) - 1, args.replay_edges).astype(int)].tolist()
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
    fill_budget = int(world.budget * args.fill_share)
    # placement per region: the edges of a region share its forecast and budget (no ISP skew in the model)
    placements: dict[int, dict[int, set[int]]] = {}
    for day in days:
        now = day * DAY + FILL_HOUR * HOUR
        if day > 0:
            observe(day - 1)
        recent = [p for p in history if p.at > now - 4 * DAY]
        fc = forecast(recent, titles_meta, now=now, window_s=DAY, half_life_s=DAY,
                      new_release_plays=0.0, new_release_s=2 * DAY)
        reps = [Edge(regions[r], fill_budget, regions[r]) for r in range(args.regions)]
        chosen = place(titles_meta, reps, fc, now=now, lead_s=DAY)
        placements[day] = {r: {int(p.key) for p in chosen[regions[r]]} for r in range(args.regions)}

    totals = {name: {"asked": 0.0, "hit": 0.0, "peak_up": 0.0, "fill_up": 0.0} for name in POLICIES}
    for edge in sample:
        region = int(world.region_of_edge[edge])
        trace: list[tuple[float, int, int]] = []
        for day in days:
            trace.extend(sessions(world, rng, region, day, args.sessions, probs[day]))
        trace.sort()
        keys = [t * chunks + c for _, t, c in trace]
        names = [str(k) for k in keys]                          # the edge policies' keys are strings
        sizes = [chunk_bytes[t] for _, t, _ in trace]
        times = [at for at, _, _ in trace]
        counted_from = next((i for i, at in enumerate(times) if at >= DAY), len(times))
        fill_points = [next((i for i, at in enumerate(times) if at >= d * DAY + FILL_HOUR * HOUR), len(times))
                       for d in days]
        for name in POLICIES:
            stats = totals[name]
            policy: Policy = Lru(world.budget) if name == "lru" else S3Fifo(
                world.budget - fill_budget if name == "fill" else world.budget)
            belady = Belady(world.budget, keys, sizes) if name.startswith("belady") else None
            pinned: set[int] = set()
            next_fill = 0
            for i, key in enumerate(keys):
                while next_fill < len(days) and i >= fill_points[next_fill]:
                    day = days[next_fill]
                    if name == "fill":
                        titles_now = placements[day][region]
                        new = titles_now - pinned
                        pushed = sum(int(world.sizes[t]) for t in new)
                        pinned = titles_now
                        for t in new:
                            for c in range(chunks):
                                policy.remove(str(t * chunks + c))
                    elif name == "belady_prefetch" and belady is not None:
                        pushed = belady.refill(i)
                    else:
                        pushed = 0
                    if day >= 1:
                        stats["fill_up"] += pushed
                    next_fill += 1
                size = sizes[i]
                if name == "fill" and key // chunks in pinned:
                    hit = True
                elif belady is not None:
                    hit = belady.request(i)
                else:
                    hit = policy.access(names[i])
                    if not hit:
                        policy.insert(names[i], size)
                if i < counted_from:
                    continue
                stats["asked"] += size
                if hit:
                    stats["hit"] += size
                elif int(times[i] // HOUR) % 24 == PEAK_HOUR:
                    stats["peak_up"] += size
    result = {}
    for name, stats in totals.items():
        result[name] = {
            "byte_hit_ratio": stats["hit"] / max(stats["asked"], 1.0),
            "peak_mbps_per_edge": stats["peak_up"] * 8 / (args.days * HOUR) / len(sample) / 1e6,
            "fill_gb_per_edge_day": stats["fill_up"] / args.days / len(sample) / 1e9,
        }
    return result


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
    parser.add_argument("--replay-edges", type=int, default=16)
    parser.add_argument("--budget-share", type=float, default=0.05)
    parser.add_argument("--fill-share", type=float, default=0.8)
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


def main() -> None:
    args = arguments()
    started = time.perf_counter()
    result = run(args)
    lru, fill, bel = result["lru"], result["fill"], result["belady"]
    print(f"{args.edges} edges, {args.isps} ISPs, {args.regions} regions, {args.titles} titles, {args.days} days "
          f"(+1 warm-up), {args.sessions} sessions/edge/day, {args.replay_edges} edges replayed, "
          f"budget {args.budget_share:.0%} of the catalogue, fill share {args.fill_share:.0%}")
    print(f"{'policy':8} {'byte hit':>9} {'peak up Mbit/s/edge':>20} {'fill GB/edge/day':>17}")
    for name, r in result.items():
        print(f"{name:8} {r['byte_hit_ratio']:9.1%} {r['peak_mbps_per_edge']:20.1f} {r['fill_gb_per_edge_day']:17.1f}")
    print(f"fill - lru: {100 * (fill['byte_hit_ratio'] - lru['byte_hit_ratio']):+.1f} points; "
          f"belady - fill: {100 * (bel['byte_hit_ratio'] - fill['byte_hit_ratio']):+.1f} points; "
          f"peak upstream vs lru: {fill['peak_mbps_per_edge'] / max(lru['peak_mbps_per_edge'], 1e-9) - 1:+.0%}")
    print(f"{time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
