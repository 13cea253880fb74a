"""edge_cache: the eviction policies' invariants over any request sequence, and the replay that chose S3-FIFO."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from reelflow.playback.edge_cache import Lru, S3Fifo, make_policy, replay

requests = st.lists(st.tuples(st.sampled_from([f"k{i}" for i in range(30)]), st.integers(1, 400)), max_size=300)


@given(requests, st.integers(1, 2000), st.sampled_from(["s3fifo", "lru"]))
def test_never_over_capacity_and_evicted_keys_are_gone(trace: list[tuple[str, int]], capacity: int,
                                                       name: str) -> None:
    policy = make_policy(name, capacity)  # type: ignore[arg-type]
    sizes: dict[str, int] = {}
    held: set[str] = set()
    for key, size in trace:
        size = sizes.setdefault(key, size)          # an object keeps its size
        if policy.access(key):
            assert key in held
            continue
        assert key not in held
        evicted = policy.insert(key, size)
        held.add(key)
        held -= set(evicted)
        assert policy.used <= capacity
        assert policy.used == sum(sizes[k] for k in held)
        assert all(k in policy for k in held)
        assert not any(k in policy for k in evicted)
    shrunk = policy.resize(capacity // 2)
    assert policy.used <= capacity // 2 and not any(k in policy for k in shrunk)


def test_s3fifo_keeps_an_object_asked_for_again_through_a_scan() -> None:
    """One-hit wonders leave through the small FIFO; an object hit twice survives a scan LRU would not."""
    s3, lru = S3Fifo(100), Lru(100)
    for policy in (s3, lru):
        policy.insert("hot", 10)
        policy.access("hot")
        for i in range(50):                          # a scan of one-hit wonders, 5x the capacity
            policy.insert(f"scan{i}", 10)
    assert "hot" in s3 and "hot" not in lru


def zipf_video_trace(seed: int, titles: int = 300, plays: int = 1500, alpha: float = 0.9) -> list[tuple[str, int]]:
    """Plays of titles by Zipf popularity; each play asks for consecutive segments of one rung, most stop early."""
    rng = random.Random(seed)
    weights = [1 / (i + 1) ** alpha for i in range(titles)]
    lengths = [rng.randint(150, 1500) for _ in range(titles)]
    trace = []
    for title in rng.choices(range(titles), weights, k=plays):
        rung = rng.choice((0, 1, 1, 2, 2, 2))
        size = (150_000, 500_000, 1_200_000)[rung]
        for k in range(min(lengths[title], int(rng.expovariate(1 / 60)) + 1)):
            trace.append((f"{title}/{rung}/{k}", size))
    return trace


def test_s3fifo_beats_lru_on_a_zipf_video_trace() -> None:
    trace = zipf_video_trace(7)
    distinct = sum(dict(trace).values())
    for share in (0.02, 0.1):
        capacity = int(distinct * share)
        _, lru = replay(Lru(capacity), trace)
        _, s3 = replay(S3Fifo(capacity), trace)
        assert s3 > lru, (share, s3, lru)
