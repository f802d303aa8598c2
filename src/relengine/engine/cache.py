"""A size-bounded cache of check answers, and the Dispatcher that consults it.

The key includes the revision, so nothing is ever invalidated: an answer at revision R stays
true at R. Entries leave only when the cache is full (oldest first). Answers that a data cycle
cut short are never stored (they are only right for the question that was being answered).

Carried answers: after writes whose changes the Engine knows (``carry``), a question's answer
at the newest of them is its answer at the oldest revision since which none of those writes
can have changed it (``depends.Changes.settled``). An answer computed at that newest revision
is filed under that settled revision, and a lookup there that misses looks under it (and
copies what it finds to the newest revision, so the next lookup is one ``get``): so a write
does not empty the cache, and an answer no write reaches is found however many writes
followed, with one extra lookup the first time after each.
"""

from __future__ import annotations

import itertools
import json
import threading
from dataclasses import dataclass
from typing import Any, Hashable, Mapping, Protocol, Sequence

from ..model import SubjectRef
from .depends import Changes
from .dispatch import Dispatcher, Result


def cache_key(
    revision: int, context_key: str | None, rtype: str, rid: str, relation: str,
    subject_type: str, subject_id: str, subject_relation: str | None,
) -> tuple[object, ...]:
    """The key of one question's answer in a CheckCache: the revision, the request's caveat
    context (``context_key``: None when there is none) and the question's plain strings (not
    the SubjectRef: hashing and comparing strings stays in C). The one definition of the
    layout. Three hot paths build the same tuples inline, each naming the bench that pays for
    the call it saves (``CheckCache.answer``, ``CheckCache.answers``,
    ``CachingDispatcher.dispatch``); nothing outside
    this module builds a key."""
    if context_key is None:
        return (revision, rtype, rid, relation, subject_type, subject_id, subject_relation)
    return (revision, context_key, rtype, rid, relation, subject_type, subject_id, subject_relation)


def context_key(context: Mapping[str, Any] | None) -> str | None:
    """A canonical text of a caveat context, for cache keys (None: no context)."""
    if not context:
        return None
    return json.dumps(context, sort_keys=True, separators=(",", ":"), default=str)


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


Carry = tuple[int, Changes]
"""``CheckCache``'s carried answers: (the revision they are carried to, what the writes since
the changes' anchor may have changed)."""


class CheckCache:
    """Maps (revision, context, type, id, relation, subject) to an answer; thread-safe.

    Reads and inserts take no lock (dict operations are atomic); an eviction takes one, and an
    insert that finds another thread evicting goes on without it.
    """

    def __init__(self, capacity: int = 100_000) -> None:
        self.capacity = capacity
        self._data: dict[Hashable, Result] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        # (revision the answers are carried to, what the writes since an earlier one may have
        # changed): swapped whole, read without a lock.
        self._carry: Carry | None = None
        # LookupSubjects' sub-results, weighed in ids: as many as the cache has answers (some
        # 15 MiB at most by default; a huge group's listing is not kept, small ones are).
        self.subjects = RevisionMemo(capacity)

    # -- carried answers ---------------------------------------------------------------------
    def carry(self, to: int, changes: Changes) -> None:
        """Answers at revision ``to`` are filed under the revision ``changes`` settles each
        question at (``depends.Changes``): the answers kept there since its anchor hold at
        ``to`` for every question no write since may have changed."""
        self._carry = (to, changes)

    def carried_to(self) -> Carry | None:
        return self._carry

    def drop_carry(self) -> None:
        self._carry = None

    def _settled(self, key: tuple[Any, ...], at: int) -> Result | None:
        """The answer filed where the carry settles ``key`` (a key at its revision ``to``, the
        resource type at ``at``), copied under ``key`` itself when found, so that asking again
        at ``to`` is one lookup (as for any answer put at ``to``)."""
        settled = self._settled_at(key, at)
        if settled is None:
            return None
        data = self._data
        value = data.get((settled, *key[1:]))
        if value is not None:
            # ``put``'s common case, inlined: this runs for each question asked again after a
            # write (bench: mixed_read_write).
            if len(data) < self.capacity:
                data[key] = value
            else:
                self.put(key, value)
        return value

    def settled_key(self, key: tuple[Any, ...], at: int) -> tuple[Any, ...]:
        """Where to file an answer computed for ``key`` (resource type at ``at``): under the
        revision the carry settles it at, so that it is found after later writes too."""
        settled = self._settled_at(key, at)
        return key if settled is None else (settled, *key[1:])

    def _settled_at(self, key: tuple[Any, ...], at: int) -> int | None:
        """The revision the carry settles ``key`` at (resource type at ``at``), where that is
        older than the key's own; else None."""
        carry = self._carry
        if carry is None or carry[0] != key[0]:
            return None
        settled = carry[1].settled(key[at], key[at + 1], key[at + 2], key[0])
        return None if settled == key[0] else settled

    def get(self, key: Hashable) -> Result | None:
        value = self._data.get(key)
        if value is None and self._carry is not None and type(key) is tuple:
            value = self._settled(key, 1 if len(key) == 7 else 2)
        if value is None:
            self.misses += 1
        else:
            self.hits += 1
        return value

    def answer(
        self, revision: int, rtype: str, rid: str, relation: str, subject_type: str, subject_id: str,
        subject_relation: str | None,
    ) -> Result | None:
        """The answer to a question without a caveat context at ``revision``, for a caller that
        asks again through the dispatcher on a miss: counts only hits (the dispatcher counts
        the miss)."""
        # ``cache_key(revision, None, ...)``, inlined: this is the whole of a cached check (and
        # of each cached item of a bulk check), where the call would add about 50 ns to some
        # 600 (bench: cached_check; grpc_bulk_check's in-process baseline).
        key = (revision, rtype, rid, relation, subject_type, subject_id, subject_relation)
        value = self._data.get(key)
        if value is None and self._carry is not None:
            value = self._settled(key, 1)
        if value is not None:
            self.hits += 1
        return value

    def answers(
        self, revision: int, questions: Sequence[tuple[str, str, str, str, str, str | None]]
    ) -> list[Result | None]:
        """``answer`` of each (resource type, id, relation, subject type, id, relation) in one pass."""
        get = self._data.get
        # ``cache_key(revision, None, *question)``, inlined: a call per item would cost about a
        # sixteenth of a cached 1,000-item BulkCheck (bench: grpc_bulk_check).
        values = [get((revision, *question)) for question in questions]
        if self._carry is not None:
            settled = self._settled
            for i, (value, question) in enumerate(zip(values, questions)):
                if value is None:
                    values[i] = settled((revision, *question), 1)
        self.hits += len(values) - values.count(None)
        return values

    def count_hits(self, n: int = 1) -> None:
        """Hits answered from a copy of this cache's answers (the server keeps its replies)."""
        self.hits += n

    def put(self, key: Hashable, value: Result) -> None:
        if self.capacity <= 0:
            return
        data = self._data
        # One thread evicts; the others insert meanwhile (the cache may pass its capacity by a
        # few entries) rather than wait for the lock, or evict another tenth after it.
        if len(data) >= self.capacity and self._lock.acquire(blocking=False):
            try:
                if len(data) >= self.capacity:
                    # Evict the oldest tenth at once: cheaper than one at a time, close to LRU
                    # for the revision-keyed workload (old revisions age out first). The oldest
                    # keys only (islice): a copy of every key held the GIL for 1-6 ms at 100,000
                    # entries, a stall of every thread (bench: threads).
                    drop = max(1, self.capacity // 10)
                    for old in list(itertools.islice(data, drop)):
                        data.pop(old, None)
                    self.evictions += drop
            finally:
                self._lock.release()
        data[key] = value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._carry = None
            self.subjects.clear()

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(self.hits, self.misses, self.evictions, len(self._data), self.capacity)


class RevisionMemo:
    """Values derived from the relationships at one revision, shared by the requests at it
    (LookupSubjects' subject sets per member, ``lookup.SubjectWalker``); thread-safe.

    Only the newest revision put is kept: a put at a newer one starts afresh, one at an older
    one is dropped, a get at another finds nothing. What is stored holds at its revision for
    good; the walker stores nothing a data cycle cut short or that leaned on a relationship
    that will expire. Bounded by ``capacity`` in weight (the walker weighs a set by its ids):
    past it the memo starts afresh.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._revision = -1
        self._data: dict[Hashable, Any] = {}
        self._weight = 0

    def get(self, revision: int, key: Hashable) -> Any:
        if revision != self._revision:
            return None
        return self._data.get((revision, key))

    def put(self, revision: int, key: Hashable, value: Any, weight: int) -> None:
        if revision != self._revision:
            if revision < self._revision:
                return
            self._revision, self._data, self._weight = revision, {}, 0
        if self._weight + weight > self.capacity:
            if weight > self.capacity:
                return
            self._data, self._weight = {}, 0  # dict swapped whole: a racing get reads either
        self._data[(revision, key)] = value  # the revision too: another thread may start afresh meanwhile
        self._weight += weight + 1

    def clear(self) -> None:
        self._revision, self._data, self._weight = -1, {}, 0

    def __len__(self) -> int:
        return len(self._data)


class CachingDispatcher:
    """A Dispatcher that answers from ``cache`` when it can and asks ``inner`` otherwise.

    ``revision`` and the request's caveat context (``context_key``: None when there is none,
    else a canonical text of it) are part of every key. ``taint`` reads the inner checker's
    counters so that answers cut short by a data cycle, or resting on a relationship that
    will expire, are not stored.
    """

    def __init__(self, inner: Dispatcher, cache: CheckCache, revision: int, taint: "Taint", context_key: str | None = None) -> None:
        self.inner = inner
        self.cache = cache
        self.revision = revision
        self.taint = taint
        self.context_key = context_key

    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Result:
        # ``cache_key``, inlined: this runs once per sub-question of every check the cache
        # misses, where a call would add about 40 ns each (bench: uncached_check, deep_check;
        # grpc_check's first round).
        if self.context_key is None:
            key: tuple[object, ...] = (self.revision, rtype, rid, relation, subject.type, subject.id, subject.relation)
        else:
            key = (self.revision, self.context_key, rtype, rid, relation, subject.type, subject.id, subject.relation)
        cache = self.cache
        cached = cache.get(key)
        if cached is not None:
            return cached
        taint = self.taint
        cuts, bound = taint.cycle_cuts, taint.time_bound
        result = self.inner.dispatch(rtype, rid, relation, subject, depth)
        if taint.cycle_cuts == cuts and taint.time_bound == bound:
            cache.put(key if cache._carry is None else cache.settled_key(key, 1 if self.context_key is None else 2), result)
        return result


class Taint(Protocol):
    """The checker's counters of answers a cache must not keep."""

    cycle_cuts: int  # branches a data cycle cut short
    time_bound: int  # answers that leaned on a relationship with a future expiration
