"""A size-bounded cache of check answers, and the Dispatcher that consults it.

The key includes the revision, so nothing is ever invalidated: an answer at revision R stays
true at R. Entries leave only when the cache is full (oldest first). Answers that a data cycle
cut short are never stored (they are only right for the question that was being answered).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Hashable, Protocol

from ..model import SubjectRef
from .dispatch import Dispatcher, Permissionship


@dataclass(frozen=True, slots=True)
class CacheStatistics:
    hits: int
    misses: int
    evictions: int
    size: int
    capacity: int

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class CheckCache:
    """Maps (revision, type, id, relation, subject) to a Permissionship; thread-safe.

    Reads take no lock (a dict lookup is atomic); inserts and evictions do.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._data: dict[Hashable, Permissionship] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0

    def get(self, key: Hashable) -> Permissionship | None:
        value = self._data.get(key)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def put(self, key: Hashable, value: Permissionship) -> None:
        if self.capacity <= 0:
            return
        data = self._data
        if len(data) >= self.capacity:
            with self._lock:
                # Evict the oldest tenth at once: cheaper than one at a time, close to LRU
                # for the revision-keyed workload (old revisions age out first).
                drop = max(1, self.capacity // 10)
                for old in list(data)[:drop]:
                    data.pop(old, None)
                self.evictions += drop
        data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(self.hits, self.misses, self.evictions, len(self._data), self.capacity)


class CachingDispatcher:
    """A Dispatcher that answers from ``cache`` when it can and asks ``inner`` otherwise.

    ``revision`` is part of every key; ``cuts`` reads the inner checker's cycle-cut counter so
    that answers cut short by a data cycle are not stored.
    """

    def __init__(self, inner: Dispatcher, cache: CheckCache, revision: int, cuts: "CycleCounter") -> None:
        self.inner = inner
        self.cache = cache
        self.revision = revision
        self.cuts = cuts

    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Permissionship:
        key = (self.revision, rtype, rid, relation, subject)
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        before = self.cuts.cycle_cuts
        result = self.inner.dispatch(rtype, rid, relation, subject, depth)
        if self.cuts.cycle_cuts == before:
            self.cache.put(key, result)
        return result


class CycleCounter(Protocol):
    """Anything counting the branches a data cycle cut short (the LocalChecker)."""

    cycle_cuts: int
