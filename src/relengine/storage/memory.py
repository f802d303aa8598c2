"""Dict-backed reference store: the simplest correct TupleStore, for tests and small setups.

The versions live in a ``memory_state.State``: commits record new versions in place, where
readers at older revisions cannot observe them; garbage collection builds a new State, so a
Reader keeps the state it started with. Nothing is persisted.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import itertools
import threading
import time
import uuid
from typing import Callable, Final, Iterator, Mapping, Sequence

from ..errors import AlreadyExists, DeadlineExceeded, Unavailable
from ..model import CaveatRef, ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef
from ..results import Change, Operation, RelationshipUpdate
from . import keys, objects
from .base import (
    UNSET,
    DEADLINE_STEPS,
    DEFAULT_BATCH_LIMIT,
    DEFAULT_GC_INTERVAL,
    DEFAULT_GC_WINDOW,
    SMALL_OBJECT,
    BulkRow,
    GcResult,
    ResourceIds,
    Row,
    StoreStatistics,
    Unset,
    batch_too_large,
    check_deadline,
    check_readable,
    check_watchable,
    gc_cutoff,
    has_match,
    ids_of,
    is_gc_due,
    micros,
    to_delete,
)
from .memory_state import Key, State, visible

_UNSET = object()


def _normalize(rel: Relationship) -> Relationship:
    """The relationship as a store returns it: subject relation None, context copied, UTC."""
    subject = rel.subject
    if subject.relation == "":
        subject = SubjectRef(subject.type, subject.id, None)
    caveat = rel.caveat
    if caveat is not None and caveat.context is not None:
        caveat = CaveatRef(caveat.name, keys.canonical(caveat.context))
    expiration = rel.expiration
    if expiration is not None:
        expiration = keys.expiration_from_micros(keys.expiration_micros(expiration))
    return Relationship(rel.resource, rel.relation, subject, caveat, expiration)


def _resource_order(key: Key) -> bytes:
    """Stores list relationships in the order of their LMDB keys (see keys.py)."""
    return keys.resource_key(*key)


def _subject_order(key: Key) -> bytes:
    return keys.subject_key(key[3], key[4], key[5], key[0], key[2], key[1])


class MemoryStore:
    """A TupleStore in a dict. ``clock`` (epoch seconds) is injectable for GC tests.

    ``gc_interval``: seconds between automatic collections after commits (None: only ``gc()``).
    """

    current_watch: Final = True
    """``watch(after, timeout=0)`` lists every change up to the head of any Reader taken before
    the call: the Engine's group index (``engine.groups``) follows the store by it."""

    def __init__(
        self,
        *,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        gc_window: _dt.timedelta = DEFAULT_GC_WINDOW,
        gc_interval: float | None = DEFAULT_GC_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.batch_limit = batch_limit
        self.gc_window = gc_window
        self._gc_interval = gc_interval
        self._clock = clock
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._write_lock = threading.Lock()
        self._state = State()
        self._times: dict[int, int] = {0: micros(clock())}
        self._changes: list[Change] = []
        self._head = 0
        self._horizon = 0
        self._last_gc = clock()
        self._closed = False
        self._unique_id = uuid.uuid4().hex

    # -- TupleStore --------------------------------------------------------------------------

    def unique_id(self) -> str:
        return self._unique_id

    def head_revision(self) -> Revision:
        self._check_open()
        return Revision(self._head)

    def snapshot(self, revision: Revision | None = None) -> MemoryReader:
        with self._lock:
            self._check_open()
            if revision is None:
                return MemoryReader(self._state, self._head)
            check_readable(
                revision.value, self._head, self._horizon, self.gc_window, self._clock, self._times.get
            )
            return MemoryReader(self._state, revision.value)

    def transaction(self, *, batch_limit: int | None | Unset = UNSET) -> _MemoryTransactionContext:
        return _MemoryTransactionContext(self, batch_limit=_UNSET if isinstance(batch_limit, Unset) else batch_limit)

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        ctx = _MemoryTransactionContext(self, batch_limit=None)
        with ctx as tx:
            for row in rows:
                rt, rid, rel, st, sid, srel = row[:6]
                caveat, expiration = row[6:] if len(row) == 8 else (None, None)
                tx.apply(
                    RelationshipUpdate(
                        Operation.TOUCH,
                        Relationship(
                            ObjectRef(rt, rid), rel, SubjectRef(st, sid, srel or None), caveat,
                            expiration,
                        ),
                    )
                )
        assert ctx.revision is not None
        return ctx.revision, ctx.changed

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        with self._lock:
            self._check_open()
            check_watchable(after.value, self._head, self._horizon, self.gc_window)
        return self._watch(after.value, timeout)

    def _watch(self, position: int, timeout: float | None) -> Iterator[Change]:
        while True:
            with self._lock:
                deadline = None if timeout is None else time.monotonic() + timeout
                while self._head <= position:
                    self._check_open()
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        return
                    self._changed.wait(remaining)
                self._check_open()
                check_watchable(position, self._head, self._horizon, self.gc_window)
                start = bisect.bisect_right(self._changes, position, key=lambda c: c.revision.value)
                batch = self._changes[start:]
                position = self._head
            yield from batch

    def gc(self, *, now: float | None = None) -> GcResult:
        with self._write_lock, self._lock:
            self._check_open()
            return self._collect(self._clock() if now is None else now)

    def statistics(self) -> StoreStatistics:
        with self._lock:
            live = dead = 0
            for versions in self._state.versions.values():
                for version in versions:
                    if version.deleted is None:
                        live += 1
                    else:
                        dead += 1
            return StoreStatistics(
                head_revision=Revision(self._head),
                gc_horizon=Revision(self._horizon),
                relationships=live,
                dead_versions=dead,
                changelog_revisions=len({c.revision for c in self._changes}),
            )

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._changed.notify_all()

    # -- internals ---------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the store is closed")

    def _commit(self, tx: _MemoryTransaction) -> tuple[Revision, int]:
        """Apply ``tx``'s net changes as one revision (none if nothing changed)."""
        with self._lock:
            state = self._state
            revision = self._head + 1
            changes: list[Change] = []
            schema_changed = (
                tx.pending_schema is not None and tx.pending_schema != state.schema_at(self._head)
            )
            if schema_changed:
                assert tx.pending_schema is not None
                changes.append(Change(Revision(revision), Operation.TOUCH, None, True))
            counters_changed = (
                tx.pending_counters is not None and tx.pending_counters != state.counters_at(self._head)
            )
            guards_changed = tx.pending_guards is not None and tx.pending_guards != state.guards_at(self._head)
            writes: list[tuple[Key, Relationship | None, Relationship | None]] = []
            for key in sorted(tx.overlay):
                new = tx.overlay[key]
                old = visible(state.versions.get(key), self._head)
                if old != new:
                    writes.append((key, old, new))
            if not changes and not writes and not counters_changed and not guards_changed:
                return Revision(self._head), 0
            if schema_changed:
                assert tx.pending_schema is not None
                state.schemas.append((revision, tx.pending_schema))
            if counters_changed:
                assert tx.pending_counters is not None
                state.counters.append((revision, dict(tx.pending_counters)))
            if guards_changed:
                assert tx.pending_guards is not None
                state.guards.append((revision, tx.pending_guards))
            for key, old, new in writes:
                state.record(revision, key, old, new)
                if new is not None:
                    changes.append(Change(Revision(revision), Operation.TOUCH, new))
                else:
                    changes.append(Change(Revision(revision), Operation.DELETE, old))
            now = self._clock()
            self._times[revision] = max(micros(now), self._times[self._head])
            self._changes.extend(changes)
            self._head = revision
            self._changed.notify_all()
            if is_gc_due(self._gc_interval, self._last_gc, now):
                self._collect(now)
            return Revision(revision), len(writes)

    def _collect(self, now: float) -> GcResult:
        """Drop what no revision at or after the new horizon can see; see base.TupleStore.gc."""
        self._last_gc = now
        cutoff = gc_cutoff(now, self.gc_window)
        horizon = self._horizon
        while horizon < self._head and self._times[horizon + 1] <= cutoff:
            horizon += 1
        if horizon == self._horizon:
            return GcResult(Revision(horizon), 0, 0, 0)
        new, removed = self._state.collected(horizon)
        start = bisect.bisect_right(self._changes, horizon, key=lambda c: c.revision.value)
        changes_removed = start
        self._changes = self._changes[start:]
        stale = [rev for rev in self._times if rev < horizon]
        for rev in stale:
            del self._times[rev]
        self._state = new
        self._horizon = horizon
        return GcResult(Revision(horizon), removed, changes_removed, len(stale))


class MemoryReader:
    """A snapshot of a MemoryStore at one revision (or a transaction's view, with ``overlay``)."""

    __slots__ = ("_state", "_revision", "_overlay", "_schema")

    def __init__(
        self,
        state: State,
        revision: int,
        overlay: dict[Key, Relationship | None] | None = None,
        schema: object = _UNSET,
    ) -> None:
        self._state = state
        self._revision = revision
        self._overlay = overlay
        self._schema = schema

    @property
    def revision(self) -> Revision:
        return Revision(self._revision)

    def close(self) -> None:
        """Nothing to release; offered for symmetry with LmdbReader."""

    def __enter__(self) -> MemoryReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_text(self) -> str | None:
        if self._schema is not _UNSET:
            return self._schema  # type: ignore[return-value]
        return self._state.schema_at(self._revision)

    def counters(self) -> dict[str, bytes]:
        return self._state.counters_at(self._revision)

    def guards_text(self) -> str | None:
        return self._state.guards_at(self._revision)

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        key = (resource_type, resource_id, relation, subject.type, subject.id, subject.relation or "")
        return self._get(key)

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        prefix = (resource_type, resource_id, relation)
        candidates = self._candidates(self._state.by_resource.get(prefix), lambda k: k[:3] == prefix)
        return self._live(sorted(candidates, key=_resource_order))

    def subject_rows(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str, limit: int | None = None
    ) -> list[Row]:
        """See LmdbReader.subject_rows."""
        rows = (
            _row(rel) for rel in self.subjects(resource_type, resource_id, relation) if rel.subject.type == subject_type
        )
        return list(rows if limit is None else itertools.islice(rows, limit))

    def object_rows(self, resource_type: str, resource_id: str) -> bytes | None:
        """See Reader.object_rows."""
        candidates = self._candidates(
            self._state.by_type.get(resource_type), lambda k: k[0] == resource_type
        )
        live = list(self._live(sorted((k for k in candidates if k[1] == resource_id), key=_resource_order)))
        if len(live) > SMALL_OBJECT:
            return None
        return objects.encode(bytes(keys.REVISION_SIZE), [(rel.relation, _row(rel)) for rel in live])

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        skey = (subject.type, subject.id, subject.relation or "")
        candidates = self._candidates(self._state.by_subject.get(skey), lambda k: k[3:] == skey)
        ordered = sorted(
            (k for k in candidates
             if (resource_type is None or k[0] == resource_type)
             and (relation is None or k[2] == relation)),
            key=_subject_order,
        )
        return self._live(ordered)

    def resource_ids(self, subject: SubjectRef, resource_type: str, relation: str) -> ResourceIds:
        """See Reader.resource_ids."""
        return ids_of(self.resources(subject, resource_type, relation))

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        rtype = filter.resource_type
        candidates = self._candidates(self._state.by_type.get(rtype), lambda k: k[0] == rtype)
        ordered = sorted(candidates, key=_resource_order)
        if after is not None:
            start = keys.resource_key(*after.key)
            ordered = [k for k in ordered if _resource_order(k) > start]
        return self._matching(ordered, filter, limit)

    # -- internals ---------------------------------------------------------------------------

    def _get(self, key: Key) -> Relationship | None:
        overlay = self._overlay
        if overlay is not None and key in overlay:
            return overlay[key]
        return visible(self._state.versions.get(key), self._revision)

    def _candidates(self, indexed: set[Key] | None, belongs: Callable[[Key], bool]) -> set[Key]:
        found = set(indexed) if indexed else set()
        if self._overlay:
            found.update(k for k in self._overlay if belongs(k))
        return found

    def _live(self, ordered: list[Key]) -> Iterator[Relationship]:
        for key in ordered:
            rel = self._get(key)
            if rel is not None:
                yield rel

    def _matching(
        self, ordered: list[Key], filter: RelationshipFilter, limit: int | None
    ) -> Iterator[Relationship]:
        if limit is not None and limit <= 0:
            return
        count = 0
        for rel in self._live(ordered):
            if filter.matches(rel):
                yield rel
                count += 1
                if count == limit:
                    return


class _MemoryTransaction:
    """Buffers updates in an overlay; the store applies their net effect at commit."""

    def __init__(self, store: MemoryStore, batch_limit: int | None) -> None:
        self._store = store
        self._head = store._head
        self._state = store._state
        self._batch_limit = batch_limit
        self._updates = 0
        self.overlay: dict[Key, Relationship | None] = {}
        self.pending_schema: str | None = None
        self.pending_counters: dict[str, bytes] | None = None
        self.pending_guards: str | None = None
        self.spoilt: DeadlineExceeded | None = None  # a delete_matching ran out of time

    def reader(self) -> MemoryReader:
        schema: object = _UNSET if self.pending_schema is None else self.pending_schema
        return MemoryReader(self._state, self._head, self.overlay, schema)

    def schema_text(self) -> str | None:
        return self.reader().schema_text()

    def set_schema(self, text: str) -> None:
        self.pending_schema = text

    def counters(self) -> dict[str, bytes]:
        if self.pending_counters is not None:
            return dict(self.pending_counters)
        return self._state.counters_at(self._head)

    def set_counters(self, counters: Mapping[str, bytes]) -> None:
        self.pending_counters = dict(counters)

    def guards_text(self) -> str | None:
        if self.pending_guards is not None:
            return self.pending_guards
        return self._state.guards_at(self._head)

    def set_guards(self, text: str) -> None:
        self.pending_guards = text

    def apply(self, update: RelationshipUpdate) -> None:
        self._updates += 1
        if self._batch_limit is not None and self._updates > self._batch_limit:
            raise batch_too_large(self._batch_limit)
        rel = _normalize(update.relationship)
        key: Key = rel.key
        if update.operation is Operation.DELETE:
            self.overlay[key] = None
            return
        if update.operation is Operation.CREATE and self.reader()._get(key) is not None:
            raise AlreadyExists(f"relationship {rel} already exists", relationship=str(rel), **rel.identity())
        self.overlay[key] = rel

    def matches(self, filter: RelationshipFilter) -> bool:
        return has_match(self.reader(), filter)

    def delete_matching(
        self, filter: RelationshipFilter, limit: int | None = None, *, deadline: float | None = None
    ) -> tuple[int, bool]:
        try:
            doomed, complete = to_delete(self.reader(), filter, limit, deadline)
            for done, rel in enumerate(doomed, 1):
                self.overlay[rel.key] = None
                if done % DEADLINE_STEPS == 0:
                    check_deadline(deadline)
        except DeadlineExceeded as exc:
            self.spoilt = exc
            raise
        return len(doomed), complete


class _MemoryTransactionContext:
    def __init__(self, store: MemoryStore, batch_limit: int | None | object = _UNSET) -> None:
        self._store = store
        self._limit = store.batch_limit if batch_limit is _UNSET else batch_limit
        self._tx: _MemoryTransaction | None = None
        self.revision: Revision | None = None
        self.changed = 0

    def __enter__(self) -> _MemoryTransaction:
        store = self._store
        store._write_lock.acquire()
        try:
            with store._lock:
                store._check_open()
                self._tx = _MemoryTransaction(store, self._limit)  # type: ignore[arg-type]
        except BaseException:
            store._write_lock.release()
            raise
        return self._tx

    def __exit__(self, *exc: object) -> None:
        try:
            if exc[0] is None:
                assert self._tx is not None
                if self._tx.spoilt is not None:
                    raise self._tx.spoilt
                with self._store._lock:
                    self._store._check_open()
                    self.revision, self.changed = self._store._commit(self._tx)
        finally:
            self._tx = None
            self._store._write_lock.release()


def _row(rel: Relationship) -> Row:
    s = rel.subject
    return (s.type, s.id, s.relation, None if rel.caveat is None and rel.expiration is None else (rel.caveat, rel.expiration))


__all__ = ["MemoryReader", "MemoryStore"]
