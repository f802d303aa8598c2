"""The storage contract: a TupleStore hands out Readers (snapshots) and Transactions.

Two implementations satisfy it, checked by one conformance suite (tests/storage/):
``memory.MemoryStore`` (the reference, simplest correct one) and ``lmdb.LmdbStore`` (the product).

Revisions
    Every committed transaction that changed something gets the next revision (head + 1);
    one that changed nothing commits no revision. A Reader at revision R sees exactly the
    relationships and the schema text live at R, whatever is written later, until R falls out
    of the garbage-collection window (default 24 hours, counted from the commit that
    superseded R). Asking for a revision newer than head, or one older than the window, raises
    RevisionUnavailable; a store never answers for a revision it can no longer see exactly.

Relationships
    A relationship is identified by its key (resource, relation, subject); its caveat and
    expiration are attributes. Stores keep both faithfully and do not filter expired
    relationships: whether an expired one counts is the engine's decision. A subject relation
    of ``""`` and ``None`` are the same (the whole object); stores return ``None``.

Order
    "Key order" is the order of the strings, compared as tuples, with one exception both
    stores share: a string longer than 80 UTF-8 bytes (an id, in practice) sorts by its first
    24 bytes and then by a hash (``keys`` explains why). Cursors work the same either way.

Threads and processes
    A store may be shared by threads. A Reader is used by one thread at a time and is
    short-lived: take one per request, never hold it across requests (the LMDB Reader pins a
    read transaction; it is released by ``close()`` or when the Reader is dropped). Write
    transactions are serialised. The LMDB store may also be shared by processes on one data
    directory: a commit in one is visible to the next ``snapshot()`` in the others.

Errors
    Only ``relengine.errors``: RevisionUnavailable, AlreadyExists, BatchTooLarge, StoreFull
    (the size limit or the disk reached: the message says which and what to do),
    DeadlineExceeded (``delete_matching``), InvalidArgument, Unavailable (store closed),
    StorageError (an unexpected fault of the storage library, kept as ``__cause__``).

Policy
    What both stores decide alike lives here, below the Protocols: the defaults (batch limit,
    GC window and interval), the revision window (``check_readable``, ``check_watchable``,
    ``gc_cutoff``), the batch limit's error, and how a limited delete picks its relationships.
"""

from __future__ import annotations

import datetime as _dt
import enum
import time
from dataclasses import dataclass
from typing import Any, Callable, Final, Iterable, Iterator, Mapping, Protocol, Sequence, runtime_checkable

from ..errors import BatchTooLarge, DeadlineExceeded, PreconditionFailed, RevisionUnavailable
from ..model import CaveatRef, Relationship, RelationshipFilter, Revision, SubjectRef
from ..results import Change, Operation, Precondition, PreconditionKind, RelationshipUpdate

DEFAULT_BATCH_LIMIT: Final = 1000  # updates per transaction (Transaction.apply)
DEFAULT_GC_WINDOW: Final = _dt.timedelta(hours=24)  # how long superseded revisions stay readable
DEFAULT_GC_INTERVAL: Final = 60.0  # seconds between automatic collections after commits
DEADLINE_STEPS: Final = 256  # relationships read or deleted between looks at the clock

# Objects with at most this many live relationships are "small": ``Reader.object_rows`` hands
# all of them over at once (most objects: a container has a handful of roles).
SMALL_OBJECT: Final = 16

Row = tuple[str, str, "str | None", Any]
"""A relationship seen from its resource: subject type, subject id, subject relation (None for
the object itself), and None or (caveat, expiration)."""


ResourceIds = tuple[list[str], list[tuple[str, Any]]]
"""Resources seen from a subject (``Reader.resource_ids``): the ids reached by plain
relationships, and (id, (caveat, expiration)) for the others; in no particular order."""


@dataclass(frozen=True, slots=True)
class GcResult:
    """What one garbage collection removed; ``horizon`` is the oldest revision still readable."""

    horizon: Revision
    versions_removed: int
    changes_removed: int
    revisions_removed: int


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    """A store's size at head; the byte counts are None where the store has no such notion."""

    head_revision: Revision
    gc_horizon: Revision
    relationships: int
    dead_versions: int
    changelog_revisions: int
    bytes_used: int | None = None
    map_size: int | None = None


BulkRow = (
    tuple[str, str, str, str, str, str]
    | tuple[str, str, str, str, str, str, CaveatRef | None, _dt.datetime | None]
)
"""A relationship as a plain tuple, for the bulk path: resource type, resource id, relation,
subject type, subject id, subject relation (``""`` for the whole object), and optionally caveat
and expiration. Building model objects costs more than storing them; the importer hands stores
these."""


class Reader(Protocol):
    """A consistent snapshot at one revision. Cheap to create; use it for one request.

    Every method sees exactly the state at ``revision``. Iterators are lazy: they read as they
    are consumed, so stopping early is cheap; consume them before the Reader is dropped.
    Unchanged by later writes, by other processes, and by LMDB map growth.
    """

    def close(self) -> None:
        """Release the snapshot (the LMDB read transaction) now; idempotent."""
        ...

    @property
    def revision(self) -> Revision: ...

    def schema_text(self) -> str | None:
        """The schema text live at this revision, or None if none was ever written."""
        ...

    def counters(self) -> dict[str, bytes]:
        """The relationship counters registered at this revision: name -> what the engine
        stored for it (opaque to the store)."""
        ...

    def guards_text(self) -> str | None:
        """The guard file text live at this revision (opaque to the store), or None if none
        was ever written."""
        ...

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        """Every live relationship ``resource_type:resource_id#relation@*``, ordered by subject
        (type, id, relation with ``""`` first). One range scan of the by-resource index."""
        ...

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        """The live relationship with exactly this key, or None. One point read."""
        ...

    def object_rows(self, resource_type: str, resource_id: str) -> bytes | None:
        """Every live relationship of one object as one value (layout in ``objects``), or None
        if it has more than ``SMALL_OBJECT``: the engine answers every question about a small
        object from this one read."""
        ...

    def subject_rows(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str, limit: int | None = None
    ) -> list[Row]:
        """The live subjects of one type on ``resource_type:resource_id#relation``, as Rows, in
        subject order; at most ``limit`` (the first ones) when given. One range scan that skips
        the relation's other subject types."""
        ...

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        """Every live relationship whose subject is exactly ``subject`` (a relation of None
        means the object itself), optionally narrowed to a resource type and relation, ordered
        by (resource type, relation, resource id). One range scan of the by-subject index."""
        ...

    def resource_ids(self, subject: SubjectRef, resource_type: str, relation: str) -> ResourceIds:
        """The ids of the objects ``resource_type:*#relation@subject`` names (``resources``
        narrowed to both, as ids and payloads rather than relationships: LookupResources reads
        thousands). One range scan of the by-subject index."""
        ...

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        """Live relationships matching ``filter`` in key order (resource type, id, relation,
        subject), strictly after ``after`` (the cursor: the last relationship of the previous
        page; it need not be live any more), at most ``limit`` of them (None: all)."""
        ...


class Transaction(Protocol):
    """A write transaction; all its changes commit as one new revision, or none do.

    Reads through a transaction see the state it started from (head when it began; no other
    writer can commit meanwhile) plus its own writes. Raising out of the ``with`` block aborts
    it and leaves no trace. A transaction is used by the thread that opened it.
    """

    def reader(self) -> Reader:
        """The state as this transaction sees it (its own writes included); valid until the
        transaction ends."""
        ...

    def schema_text(self) -> str | None:
        """The schema text as this transaction sees it."""
        ...

    def set_schema(self, text: str) -> None:
        """Replace the schema text; setting the same text again is no change."""
        ...

    def counters(self) -> dict[str, bytes]:
        """The relationship counters as this transaction sees them (see Reader.counters)."""
        ...

    def set_counters(self, counters: Mapping[str, bytes]) -> None:
        """Replace the relationship counters; versioned like the schema text (a change is a
        revision of its own, even with no relationship changed; the same counters again is no
        change). Watch reports nothing for it."""
        ...

    def guards_text(self) -> str | None:
        """The guard file text as this transaction sees it (its own ``set_guards`` included)."""
        ...

    def set_guards(self, text: str) -> None:
        """Replace the guard file text; versioned as the counters are (a change is a revision
        of its own; the same text again is no change; Watch reports nothing for it)."""
        ...

    def apply(self, update: RelationshipUpdate) -> None:
        """Apply one update: CREATE of a live relationship raises AlreadyExists; TOUCH creates
        or replaces the caveat and expiration (the same values again is no change); DELETE of an
        absent relationship does nothing. Past the store's batch limit (default 1000 updates per
        transaction) raises BatchTooLarge. A naive expiration raises InvalidArgument."""
        ...

    def matches(self, filter: RelationshipFilter) -> bool:
        """Whether any live relationship (own writes included) matches ``filter``."""
        ...

    def delete_matching(
        self, filter: RelationshipFilter, limit: int | None = None, *, deadline: float | None = None
    ) -> tuple[int, bool]:
        """Delete live relationships matching ``filter`` in key order, at most ``limit`` (None:
        all); returns (count deleted, whether all matching were deleted). Not counted against
        the batch limit.

        ``deadline``: a ``time.monotonic()`` instant (None: none). The clock is read before the
        first relationship and then every ``DEADLINE_STEPS`` relationships read or deleted;
        once it is past, raises DeadlineExceeded and the transaction is spoilt: it aborts when
        its ``with`` block ends, raising that error again if the block swallowed it, so
        nothing of it is committed (nothing deleted)."""
        ...


class Unset(enum.Enum):
    """The type of ``UNSET``: an argument not given (where None means something)."""

    UNSET = "unset"


UNSET: Final = Unset.UNSET


class TupleStore(Protocol):
    """Where relationships and the schema live, at revisions."""

    def head_revision(self) -> Revision:
        """The newest committed revision (0 for an empty store)."""
        ...

    def unique_id(self) -> str:
        """An id made with the store and kept for its life (uuid4 hex): revision tokens carry
        it, so that a token minted by another store is told apart from one of this store."""
        ...

    def snapshot(self, revision: Revision | None = None) -> Reader:
        """A Reader at ``revision`` (default: head). Raises RevisionUnavailable for a revision
        newer than head or older than the garbage-collection window."""
        ...

    def transaction(self, *, batch_limit: int | None | Unset = UNSET) -> "TransactionContext":
        """``with store.transaction() as tx: ...``; after the block, ``ctx.revision`` is the
        committed revision (unchanged head if nothing changed). A transaction applies at most
        the store's ``batch_limit`` updates (BatchTooLarge past it), or ``batch_limit`` when
        given (None: no limit; a bulk import that bounds itself). Raises StoreFull when the store
        has no room (nothing of the transaction is kept), Unavailable when closed. A store with
        a size limit keeps room for deletes: when it is full, it refuses what adds data
        (StoreFull, from ``apply``, ``bulk_touch`` or the commit of a new schema) and still
        commits transactions that only delete, within a reserve (see ``lmdb.env``)."""
        ...

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        """Every change after ``after``, in revision order, then block for new ones (up to
        ``timeout`` seconds without a change, forever if None), including commits made by other
        processes sharing the store. Raises RevisionUnavailable if ``after`` is newer than head
        or its changes were garbage-collected; the iterator holds no transaction between
        changes."""
        ...

    def gc(self, *, now: float | None = None) -> GcResult:
        """Remove dead versions, changelog entries, schema versions and revision timestamps
        that no revision inside the window needs (``now`` in epoch seconds, default the store's
        clock). Stores also run it by themselves from time to time after commits."""
        ...

    def statistics(self) -> StoreStatistics: ...

    def close(self) -> None:
        """Release the store; later calls raise Unavailable. Closing twice is allowed."""
        ...


class TransactionContext(Protocol):
    revision: Revision | None

    def __enter__(self) -> Transaction: ...

    def __exit__(self, *exc: object) -> bool | None: ...


class BulkLoader(TupleStore, Protocol):
    """A store with a lean path for imports: one transaction of TOUCHes, no batch limit."""

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        """TOUCH every row in one transaction (later rows win over earlier ones with the same
        key); returns (revision, number of relationships that changed). Rows are trusted to be
        valid (the importer checked them). Raises StoreFull like a transaction (the LMDB store
        first grows its map and retries where ``max_map_size`` allows). The changes of one bulk
        revision are reported by ``watch`` in no particular order. Holds no memory of the batch
        once it returns (the LMDB store also releases the pages it mapped for it), so an import
        of any size runs in memory bounded by its batch size."""
        ...


@runtime_checkable
class ReplicaReads(Protocol):
    """A store that can also read from replicas of its database, which may lag behind it (the
    PostgreSQL store with read replicas: ``postgres.replicas``). Its ``snapshot(R)`` already
    reads R from a replica that has reached R; ``snapshot()`` (head) reads the primary. The
    revision picker (``service.revisions``) asks these for the modes that accept any revision
    from some point on."""

    def replica_snapshot(self, at_least: Revision, *, within: float | None = None) -> tuple[Reader, float] | None:
        """(a Reader at the newest revision of a replica that has reached ``at_least``, that
        revision's age) or None when no replica has (the caller reads the primary then). The
        age is how many seconds ago the revision stopped being the primary's newest (0.0 while
        it is); with ``within``, a revision that old or older is refused (None), else the age
        is not asked of the primary and given as 0.0."""
        ...

    def read_counts(self) -> dict[str, int]:
        """How many Readers each target opened so far (``primary``, ``replica``)."""
        ...


class BatchLoader(BulkLoader, Protocol):
    """A BulkLoader that takes a whole import at once (the PostgreSQL store: a first import
    into an empty store is one transaction whose indexes are built after the rows are in)."""

    def bulk_load(self, batches: Iterable[Sequence[BulkRow]]) -> tuple[Revision, int]:
        """TOUCH the rows of every batch, reading one batch at a time (memory stays bounded by
        a batch), later rows winning; returns (the last revision written, the number of
        relationships that changed). The store may commit everything as one revision or each
        batch as its own. The importer stops iterating at its first bad batch (abort), and
        what came before is committed, as with ``bulk_touch`` batches."""
        ...


# -- policy shared by the stores --------------------------------------------------------------


def micros(seconds: float) -> int:
    """Epoch seconds (a store's clock) as the integer microseconds revisions are stamped with."""
    return int(seconds * 1_000_000)


def gc_cutoff(now: float, window: _dt.timedelta) -> int:
    """Epoch micros: a revision superseded by a commit stamped at or before this is out of the
    GC window at ``now`` (epoch seconds)."""
    return micros(now) - window // _dt.timedelta(microseconds=1)


def is_gc_due(interval: float | None, last: float, now: float) -> bool:
    """Whether a commit at ``now`` runs the automatic collection, the last one having run at
    ``last`` (``interval`` None: never)."""
    return interval is not None and now - last >= interval


def too_old(revision: int, window: _dt.timedelta) -> RevisionUnavailable:
    """The error for a revision that fell out of the GC window."""
    return RevisionUnavailable(
        f"revision {Revision(revision)} is too old: revisions superseded more than {window} ago "
        "are garbage-collected; retry at a newer revision",
        revision=Revision(revision).token(),
    )


def check_readable(
    revision: int, head: int, horizon: int, window: _dt.timedelta, clock: Callable[[], float],
    commit_micros: Callable[[int], int | None],
) -> None:
    """Raise RevisionUnavailable unless a Reader at ``revision`` can see exactly that revision:
    not newer than ``head``, not older than the collected ``horizon``, and not superseded (the
    commit of ``revision + 1``, stamped ``commit_micros(revision + 1)``, None if unknown) longer
    than ``window`` ago by ``clock``."""
    if revision > head:
        raise RevisionUnavailable(
            f"revision {Revision(revision)} is newer than the newest revision {Revision(head)}",
            revision=Revision(revision).token(),
        )
    if revision < horizon:
        raise too_old(revision, window)
    if revision < head:
        stamp = commit_micros(revision + 1)
        if stamp is None or stamp <= gc_cutoff(clock(), window):
            raise too_old(revision, window)


def check_watchable(after: int, head: int, horizon: int, window: _dt.timedelta) -> None:
    """Raise RevisionUnavailable unless the changes after ``after`` can all be listed: it is
    not newer than ``head`` and its changelog is not collected (``horizon``)."""
    if after > head:
        raise RevisionUnavailable(
            f"cannot watch after revision {Revision(after)}: it is newer than the newest "
            f"revision {Revision(head)}",
            revision=Revision(after).token(),
        )
    if after < horizon:
        raise too_old(after, window)


def batch_too_large(limit: int) -> BatchTooLarge:
    """The error of the update past a transaction's batch limit (see Transaction.apply)."""
    return BatchTooLarge(
        f"a transaction may hold at most {limit} updates; split the batch "
        "into smaller ones (or raise the store's batch_limit)",
        limit=limit,
    )


def ids_of(relationships: Iterable[Relationship]) -> ResourceIds:
    """``Reader.resource_ids`` from the relationships ``Reader.resources`` gives: for stores
    without a cheaper way."""
    ids: list[str] = []
    others: list[tuple[str, Any]] = []
    for rel in relationships:
        if rel.caveat is None and rel.expiration is None:
            ids.append(rel.resource.id)
        else:
            others.append((rel.resource.id, (rel.caveat, rel.expiration)))
    return ids, others


def has_match(reader: Reader, filter: RelationshipFilter) -> bool:
    """Transaction.matches, read through the transaction's ``reader``."""
    return any(True for _ in reader.read(filter, limit=1))


def check_deadline(deadline: float | None) -> None:
    """Raise DeadlineExceeded if the ``time.monotonic()`` instant ``deadline`` has passed."""
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded("the delete ran past its deadline; nothing was deleted")


def to_delete(
    reader: Reader, filter: RelationshipFilter, limit: int | None, deadline: float | None = None
) -> tuple[list[Relationship], bool]:
    """What Transaction.delete_matching deletes: the first ``limit`` (None: all) relationships
    matching ``filter`` in key order, and whether that is all of them. Looks at ``deadline``
    before the first and then every DEADLINE_STEPS relationships (see delete_matching)."""
    check_deadline(deadline)
    rows = reader.read(filter, limit=None if limit is None else limit + 1)
    if deadline is None:
        found = list(rows)
    else:
        found = []
        for rel in rows:
            found.append(rel)
            if len(found) % DEADLINE_STEPS == 0:
                check_deadline(deadline)
    if limit is None or len(found) <= limit:
        return found, True
    return found[:limit], False


def check_preconditions(tx: Transaction, preconditions: Iterable[Precondition]) -> None:
    """Raise PreconditionFailed for the first precondition that does not hold in ``tx``."""
    for pre in preconditions:
        found = tx.matches(pre.filter)
        if found != (pre.kind is PreconditionKind.MUST_MATCH):
            verb = "matched nothing" if pre.kind is PreconditionKind.MUST_MATCH else "matched"
            raise PreconditionFailed(
                f"precondition {pre.kind.value} failed: filter {pre.filter} {verb}",
                kind=pre.kind.value, **pre.filter.fields(),
            )


__all__ = [
    "DEADLINE_STEPS",
    "DEFAULT_BATCH_LIMIT",
    "DEFAULT_GC_INTERVAL",
    "DEFAULT_GC_WINDOW",
    "BulkLoader",
    "BulkRow",
    "GcResult",
    "Reader",
    "ReplicaReads",
    "StoreStatistics",
    "Transaction",
    "TransactionContext",
    "TupleStore",
    "batch_too_large",
    "check_deadline",
    "check_preconditions",
    "check_readable",
    "check_watchable",
    "gc_cutoff",
    "has_match",
    "is_gc_due",
    "micros",
    "to_delete",
    "too_old",
]
