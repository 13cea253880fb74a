"""Eviction policies of an edge's store, by bytes: S3-FIFO and LRU. Pure: keys and sizes, no files, no clock.

An edge (playback/edge.py) asks its policy what to evict; the policy knows nothing of disks.
Objects placed by the off-peak fill are pinned and are not the policy's: the edge gives the
policy the budget that is left beside them.

S3-FIFO (Yang et al., SOSP 2023) keeps a small FIFO (10% of the bytes) that new objects enter,
a main FIFO for the objects that were asked for again while in the small one, and a ghost list
of keys recently dropped from the small one (a ghost hit goes straight to main). One-hit
wonders (a segment that one player asked for once) leave quickly through the small FIFO; a hit
is one counter increment, no list move. Main evicts like CLOCK: an object with a count left is
re-inserted with the count less one. docs/benchmarks.md (section "Edge") has the replay that
chose it over LRU.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Literal, Protocol

PolicyName = Literal["s3fifo", "lru"]
MAX_FREQ = 3


class Policy(Protocol):
    """What an edge asks of an eviction policy."""

    capacity: int

    @property
    def used(self) -> int: ...

    def __contains__(self, key: object) -> bool: ...

    def access(self, key: str) -> bool:
        """A request for ``key``: True (and the policy notes the hit) when it is held."""

    def insert(self, key: str, size: int) -> list[str]:
        """Admit ``key`` (not held) of ``size`` bytes; the keys evicted to make room, oldest first.
        An object larger than the capacity is not admitted and comes back as evicted itself."""

    def remove(self, key: str) -> None:
        """Forget ``key`` (deleted from outside the policy); nothing when it is not held."""

    def resize(self, capacity: int) -> list[str]:
        """A new capacity; the keys evicted to fit it."""


@dataclass
class Lru:
    """Least recently used, by bytes."""

    capacity: int
    _items: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _used: int = 0

    @property
    def used(self) -> int:
        return self._used

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def access(self, key: str) -> bool:
        if key in self._items:
            self._items.move_to_end(key)
            return True
        return False

    def insert(self, key: str, size: int) -> list[str]:
        if size > self.capacity:
            return [key]
        self._items[key] = size
        self._used += size
        return self._fit()

    def remove(self, key: str) -> None:
        size = self._items.pop(key, None)
        if size is not None:
            self._used -= size

    def resize(self, capacity: int) -> list[str]:
        self.capacity = capacity
        return self._fit()

    def _fit(self) -> list[str]:
        evicted = []
        while self._used > self.capacity:
            key, size = self._items.popitem(last=False)
            self._used -= size
            evicted.append(key)
        return evicted


@dataclass
class S3Fifo:
    """S3-FIFO by bytes: small FIFO (``small_share`` of the capacity), main FIFO, ghost keys."""

    capacity: int
    small_share: float = 0.1
    _small: OrderedDict[str, int] = field(default_factory=OrderedDict)   # key -> size, newest last
    _main: OrderedDict[str, int] = field(default_factory=OrderedDict)
    _freq: dict[str, int] = field(default_factory=dict)
    _ghost: OrderedDict[str, None] = field(default_factory=OrderedDict)
    _small_used: int = 0
    _main_used: int = 0

    @property
    def used(self) -> int:
        return self._small_used + self._main_used

    def __contains__(self, key: object) -> bool:
        return key in self._freq

    def access(self, key: str) -> bool:
        count = self._freq.get(key)
        if count is None:
            return False
        self._freq[key] = min(count + 1, MAX_FREQ)
        return True

    def insert(self, key: str, size: int) -> list[str]:
        if size > self.capacity:
            return [key]
        self._freq[key] = 0
        if key in self._ghost:                        # asked for again soon after it left: main
            del self._ghost[key]
            self._main[key] = size
            self._main_used += size
        else:
            self._small[key] = size
            self._small_used += size
        return self._fit()

    def remove(self, key: str) -> None:
        if self._freq.pop(key, None) is None:
            return
        if key in self._small:
            self._small_used -= self._small.pop(key)
        else:
            self._main_used -= self._main.pop(key)

    def resize(self, capacity: int) -> list[str]:
        self.capacity = capacity
        return self._fit()

    def _fit(self) -> list[str]:
        evicted: list[str] = []
        while self.used > self.capacity:
            if self._small and (self._small_used > self.small_share * self.capacity or not self._main):
                self._evict_small(evicted)
            else:
                self._evict_main(evicted)
        return evicted

    def _evict_small(self, evicted: list[str]) -> None:
        key, size = self._small.popitem(last=False)
        self._small_used -= size
        if self._freq[key] > 0:                       # asked for again while in small: keep it, in main
            self._freq[key] = 0
            self._main[key] = size
            self._main_used += size
            return
        del self._freq[key]
        evicted.append(key)
        self._ghost[key] = None
        while len(self._ghost) > max(len(self._main), 1) * 2:   # remembers about as many keys as main holds
            self._ghost.popitem(last=False)

    def _evict_main(self, evicted: list[str]) -> None:
        key, size = self._main.popitem(last=False)
        count = self._freq[key]
        if count > 0:                                 # CLOCK: one more round for each hit it had
            self._freq[key] = count - 1
            self._main[key] = size
            return
        self._main_used -= size
        del self._freq[key]
        evicted.append(key)


def make_policy(name: PolicyName, capacity: int) -> Policy:
    return S3Fifo(capacity) if name == "s3fifo" else Lru(capacity)


def replay(policy: Policy, trace: list[tuple[str, int]]) -> tuple[float, float]:
    """Replay ``(key, size)`` requests, admitting every miss: (object hit ratio, byte hit ratio)."""
    hits = hit_bytes = total_bytes = 0
    for key, size in trace:
        total_bytes += size
        if policy.access(key):
            hits += 1
            hit_bytes += size
        else:
            policy.insert(key, size)
    return hits / max(len(trace), 1), hit_bytes / max(total_bytes, 1)
