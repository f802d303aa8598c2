"""Read replicas: reads at a revision a replica has reached go to it, everything else to the primary.

``ReplicatedStore`` is a TupleStore over one primary ``PostgresStore`` and the PostgreSQL
streaming replicas of its database (``--datastore-read-replica``). Because relengine's
revisions live in its own tables (``relengine_meta.head``, ``relengine_revisions``), which
replicate like every other table, a replica knows exactly which revision it has replayed: its
snapshot reads its own ``head``. Hence the rule, which never gives an older answer than asked:

- ``snapshot(R)`` (an exact revision: minimize_latency's reused revision, at_exact_snapshot, a
  cursor's revision) opens a snapshot on a replica and keeps it only if that replica's head is
  at least R; else (lagging, or R collected there) the primary answers. A replica's snapshot
  at R holds exactly what the primary's does: revisions are handed out in commit order, and
  the replica replays commits in that order.
- ``replica_snapshot(at_least)`` (at_least_as_fresh, minimize_latency choosing afresh) is a
  snapshot at a replica's own head when that head is at least ``at_least``; None sends the
  caller to the primary. With ``within`` (minimize_latency: the quantization window), the
  primary is asked how long ago that revision stopped being its newest (``revision_age``),
  and an older one is refused: minimize_latency stays on a replica only while the replica is
  within the quantization window of the primary.
- ``snapshot()`` (no revision: fully_consistent, head), writes, schema writes, Watch, GC,
  imports and statistics go to the primary.

Health: a replica that fails (unreachable, an error, a query cancelled by recovery conflict) is
skipped, its pool closed, and the primary answers the same request: a Reader that fails in the
middle of a request re-opens at the same revision on the primary and goes on (an iterator
skips what it has already given: a snapshot lists in one order). A background prober connects
to skipped replicas every ``retry_seconds`` and puts each back once it answers (with the
primary's tables: a replica of some other database is refused). Requests never wait on a
replica known to be down.

``read_counts()`` says how many snapshots each side opened (the server's
``relengine_datastore_reads_total{target}`` metric): the tests prove with it that reads reach
a current replica.
"""

from __future__ import annotations

import datetime as _dt
import logging
import threading
import time
from typing import Any, Callable, Final, Iterator, Sequence

from ...errors import Cancelled, DeadlineExceeded, FailedPrecondition, RelEngineError, RevisionUnavailable
from ...model import Relationship, RelationshipFilter, Revision, SubjectRef
from ...results import Change
from ..base import (
    UNSET, BulkLoader, BulkRow, GcResult, Reader, ResourceIds, Row, StoreStatistics, TransactionContext, Unset,
)
from .errors import describe, translating
from .reader import PostgresReader
from .store import PostgresStore

log = logging.getLogger("relengine.storage.postgres")

RETRY_SECONDS: Final = 2.0
"""How long a replica that failed is skipped before the prober tries it again."""
REPLICA_POOL_TIMEOUT: Final = 1.0
"""The longest a read waits for a replica's pooled connection before the primary answers it
(a replica's pool is sized like the primary's; a busy one overflows to the primary)."""
PRIMARY: Final = "primary"
REPLICA: Final = "replica"


def _fails_over(exc: BaseException) -> bool:
    """Whether an error from a replica sends the read to the primary (and the replica out of
    rotation): anything but the caller's own deadline or cancellation, and a revision the
    replica has not reached (that one is not the replica's fault: see ``_Replica.snapshot``)."""
    return isinstance(exc, RelEngineError) and not isinstance(
        exc, (DeadlineExceeded, Cancelled, RevisionUnavailable)
    )


class _NotAReplica(FailedPrecondition):
    """A reachable replica whose tables belong to another database than the primary's."""


class _Replica:
    """One replica: its URI, its store while it is up, and until when it is skipped."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.where = describe(uri)
        self.store: PostgresStore | None = None
        self.retry_at = 0.0  # monotonic instant of the next probe while store is None
        self.reason = ""


class ReplicatedStore:
    """A TupleStore: ``primary`` for writes and fresh reads, the replicas at ``replica_uris``
    for reads at revisions they have reached (see the module docstring). ``store_options`` are
    the primary's (pool sizes, statement timeout...), used for each replica's own store.

    Raises FailedPrecondition when a reachable replica holds another database's tables (its
    relengine id differs from the primary's); an unreachable one is only skipped until it
    answers.
    """

    def __init__(
        self, primary: PostgresStore, replica_uris: Sequence[str], *, retry_seconds: float = RETRY_SECONDS,
        **store_options: Any,
    ) -> None:
        if not replica_uris:
            raise ValueError("a ReplicatedStore needs at least one replica")
        self.primary = primary
        self.retry_seconds = retry_seconds
        self._options = dict(store_options)
        self._options["gc_interval"] = None
        self._options["pool_timeout"] = min(float(self._options.get("pool_timeout", 10.0)), REPLICA_POOL_TIMEOUT)
        self._replicas = [_Replica(uri) for uri in replica_uris]
        self._lock = threading.Lock()
        self._next = 0
        self._counts = {PRIMARY: 0, REPLICA: 0}
        self._closed = threading.Event()
        self._prober: threading.Thread | None = None
        try:
            for replica in self._replicas:
                try:
                    self._open(replica)
                except _NotAReplica:
                    raise
                except RelEngineError as exc:
                    self._skip(replica, exc)
        except BaseException:
            self.close()
            raise

    # -- what the primary does alone -----------------------------------------------------------

    @property
    def batch_limit(self) -> int | None:
        return self.primary.batch_limit

    @property
    def gc_window(self) -> _dt.timedelta:
        return self.primary.gc_window

    def unique_id(self) -> str:
        return self.primary.unique_id()

    def head_revision(self) -> Revision:
        return self.primary.head_revision()

    def transaction(self, *, batch_limit: int | None | Unset = UNSET) -> TransactionContext:
        return self.primary.transaction(batch_limit=batch_limit)

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        return self.primary.bulk_touch(rows)

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        return self.primary.watch(after, timeout=timeout)

    def gc(self, *, now: float | None = None) -> GcResult:
        return self.primary.gc(now=now)

    def statistics(self) -> StoreStatistics:
        return self.primary.statistics()

    def close(self) -> None:
        self._closed.set()
        prober = self._prober
        if prober is not None and prober is not threading.current_thread():
            prober.join(timeout=10)
        for replica in self._replicas:
            store, replica.store = replica.store, None
            if store is not None:
                store.close()
        self.primary.close()

    # -- reads ---------------------------------------------------------------------------------

    def snapshot(self, revision: Revision | None = None) -> Reader:
        """At ``revision`` on a replica that has reached it, else on the primary; None (head)
        always on the primary."""
        if revision is not None:
            for replica, store in self._up():
                try:
                    reader = store.snapshot(revision)
                except RevisionUnavailable:
                    continue  # not replayed that far yet (or collected there): ask another, then the primary
                except RelEngineError as exc:
                    if not _fails_over(exc):
                        raise
                    self._skip(replica, exc, store)
                    continue
                return self._replica_reader(reader, replica, store)
        return self._primary_reader(revision)

    def replica_snapshot(self, at_least: Revision, *, within: float | None = None) -> tuple[Reader, float] | None:
        """(a snapshot at the newest revision of a replica that has reached ``at_least``, its
        age) or None when no replica has (or none is up): the caller asks the primary then.
        With ``within``, a revision that stopped being the primary's newest ``within`` seconds
        ago or more is refused (None); the age is asked of the primary (``revision_age``)."""
        for replica, store in self._up():
            try:
                reader = _open_at_least(store, at_least.value)
            except RelEngineError as exc:
                if not _fails_over(exc):
                    raise
                self._skip(replica, exc, store)
                continue
            if reader is None:
                continue
            age = 0.0
            if within is not None:
                try:
                    age = self.revision_age(reader.revision)
                except BaseException:
                    reader.close()
                    raise
                if age >= within:
                    reader.close()
                    return None  # the others are no fresher as a rule; the primary answers
            return self._replica_reader(reader, replica, store), age
        return None

    def revision_age(self, revision: Revision) -> float:
        """Seconds since ``revision`` stopped being the primary's newest (0.0 while it is the
        newest; infinity when the primary no longer knows when: collected). One query on the
        primary."""
        conn = self.primary._getconn()  # noqa: SLF001 - the store's sibling module
        try:
            with translating(self.primary.where):
                row = conn.execute(
                    "SELECT m.head, (SELECT committed_micros FROM relengine_revisions WHERE revision = %s) "
                    "FROM relengine_meta m WHERE m.id = 1",
                    (revision.value + 1,),
                ).fetchone()
        finally:
            self.primary._putconn(conn)  # noqa: SLF001
        assert row is not None
        if int(row[0]) <= revision.value:
            return 0.0
        if row[1] is None:
            return float("inf")
        return max(0.0, time.time() - int(row[1]) / 1_000_000)

    def read_counts(self) -> dict[str, int]:
        """How many snapshots the primary and the replicas opened so far (``primary``,
        ``replica``); a read that failed over counts on both."""
        with self._lock:
            return dict(self._counts)

    def replicas_up(self) -> list[str]:
        """The URIs of the replicas in rotation now (the others are skipped until they answer)."""
        return [r.uri for r in self._replicas if r.store is not None]

    # -- internals -----------------------------------------------------------------------------

    def _count(self, target: str) -> None:
        with self._lock:
            self._counts[target] += 1

    def _primary_reader(self, revision: Revision | None) -> Reader:
        reader = self.primary.snapshot(revision)
        self._count(PRIMARY)
        return reader

    def _replica_reader(self, reader: PostgresReader, replica: _Replica, store: PostgresStore) -> Reader:
        self._count(REPLICA)
        return FailoverReader(reader, lambda exc: self._fail_over(replica, store, exc))

    def _fail_over(self, replica: _Replica, store: PostgresStore, exc: RelEngineError) -> Callable[[Revision], Reader]:
        self._skip(replica, exc, store)
        return self._primary_reader

    def _up(self) -> list[tuple[_Replica, PostgresStore]]:
        """The replicas in rotation, starting one further each call (round robin)."""
        with self._lock:
            start = self._next
            self._next += 1
        count = len(self._replicas)
        found = []
        for i in range(count):
            replica = self._replicas[(start + i) % count]
            store = replica.store
            if store is not None:
                found.append((replica, store))
        return found

    def _open(self, replica: _Replica) -> None:
        """Open the replica's store (raises if it is unreachable or not the primary's copy)."""
        store = PostgresStore(replica.uri, **self._options)
        if store.unique_id() != self.primary.unique_id():
            store.close()
            raise _NotAReplica(
                f"the read replica {replica.where} holds another database: its relengine id "
                f"{store.unique_id()} is not the primary's {self.primary.unique_id()} "
                f"(give --datastore-read-replica a replica of {self.primary.where})"
            )
        if self._closed.is_set():
            store.close()
            return
        replica.store = store
        replica.reason = ""

    def _skip(self, replica: _Replica, exc: BaseException, store: PostgresStore | None = None) -> None:
        """Take ``replica`` out of rotation (its store closed) until the prober finds it back."""
        with self._lock:
            if store is not None and replica.store is not store:
                return  # already skipped (and perhaps back) by another thread
            replica.store = None
            replica.retry_at = time.monotonic() + self.retry_seconds
            replica.reason = str(exc)
            if self._prober is None or not self._prober.is_alive():
                self._prober = threading.Thread(target=self._probe, name="relengine-replica-prober", daemon=True)
                self._prober.start()
        log.warning(
            "read replica skipped; the primary answers its reads", extra={
                "event": "replica_skipped", "replica": replica.where, "reason": str(exc),
                "retry_seconds": self.retry_seconds,
            },
        )
        if store is not None:
            store.close()

    def _probe(self) -> None:
        """Until every replica is back (or the store closes): open each skipped one when due."""
        while not self._closed.is_set():
            down = [r for r in self._replicas if r.store is None]
            if not down:
                return
            now = time.monotonic()
            for replica in down:
                if replica.retry_at > now or self._closed.is_set():
                    continue
                try:
                    self._open(replica)
                except RelEngineError as exc:
                    replica.retry_at = time.monotonic() + self.retry_seconds
                    replica.reason = str(exc)
                    continue
                log.info("read replica back", extra={"event": "replica_back", "replica": replica.where})
            wait = min((r.retry_at for r in down if r.store is None), default=now) - time.monotonic()
            self._closed.wait(max(0.05, min(wait, self.retry_seconds)))


def _open_at_least(store: PostgresStore, at_least: int) -> PostgresReader | None:
    """A snapshot at ``store``'s own head if that is at least ``at_least``, else None: one
    round trip (the snapshot's transaction reads the head it will serve)."""
    reader = store.snapshot()
    if reader.revision.value < at_least:
        reader.close()
        return None
    return reader


class FailoverReader:
    """A replica's Reader that, when the replica fails in the middle of a request, re-opens at
    the same revision on the primary (``fail_over(error)`` returns the opener) and goes on."""

    def __init__(self, reader: Reader, fail_over: Callable[[RelEngineError], Callable[[Revision], Reader]]) -> None:
        self._reader = reader
        self._fail_over: Callable[[RelEngineError], Callable[[Revision], Reader]] | None = fail_over

    @property
    def revision(self) -> Revision:
        return self._reader.revision

    @property
    def on_replica(self) -> bool:
        """Whether this Reader still reads from its replica."""
        return self._fail_over is not None

    def close(self) -> None:
        self._reader.close()

    def __enter__(self) -> FailoverReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _switch(self, exc: RelEngineError) -> None:
        """To the primary, at the same revision, after ``exc`` from the replica."""
        fail_over, self._fail_over = self._fail_over, None
        if fail_over is None or not _fails_over(exc):
            raise exc
        old = self._reader
        try:
            old.close()
        except RelEngineError:
            pass  # the replica is gone; its connection goes with its pool
        self._reader = fail_over(exc)(old.revision)

    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        while True:
            try:
                return getattr(self._reader, name)(*args, **kwargs)
            except RelEngineError as exc:
                if self._fail_over is None:
                    raise
                self._switch(exc)

    def _iterate(self, name: str, *args: Any, **kwargs: Any) -> Iterator[Relationship]:
        given = 0
        while True:
            skip = given
            try:
                for item in getattr(self._reader, name)(*args, **kwargs):
                    if skip:
                        skip -= 1
                        continue
                    given += 1
                    yield item
                return
            except RelEngineError as exc:
                if self._fail_over is None:
                    raise
                self._switch(exc)

    def schema_text(self) -> str | None:
        return self._call("schema_text")  # type: ignore[no-any-return]

    def counters(self) -> dict[str, bytes]:
        return self._call("counters")  # type: ignore[no-any-return]

    def guards_text(self) -> str | None:
        return self._call("guards_text")  # type: ignore[no-any-return]

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        return self._call("relationship", resource_type, resource_id, relation, subject)  # type: ignore[no-any-return]

    def object_rows(self, resource_type: str, resource_id: str) -> bytes | None:
        return self._call("object_rows", resource_type, resource_id)  # type: ignore[no-any-return]

    def subject_rows(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str, limit: int | None = None
    ) -> list[Row]:
        return self._call(  # type: ignore[no-any-return]
            "subject_rows", resource_type, resource_id, relation, subject_type, limit
        )

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        return self._iterate("subjects", resource_type, resource_id, relation)

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        return self._iterate("resources", subject, resource_type, relation)

    def resource_ids(self, subject: SubjectRef, resource_type: str, relation: str) -> ResourceIds:
        return self._call("resource_ids", subject, resource_type, relation)  # type: ignore[no-any-return]

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        return self._iterate("read", filter, after=after, limit=limit)


def open_store(
    uri: str, read_replicas: Sequence[str] = (), *, replica_retry_seconds: float = RETRY_SECONDS, **options: Any
) -> PostgresStore | ReplicatedStore:
    """The store at ``uri`` (``PostgresStore``), over ``read_replicas`` too when there are some
    (a failed one is probed again every ``replica_retry_seconds``)."""
    primary = PostgresStore(uri, **options)
    if not read_replicas:
        return primary
    try:
        return ReplicatedStore(primary, read_replicas, retry_seconds=replica_retry_seconds, **options)
    except BaseException:
        primary.close()
        raise


__all__ = ["FailoverReader", "REPLICA_POOL_TIMEOUT", "RETRY_SECONDS", "ReplicatedStore", "open_store"]


def _satisfies_the_protocols(store: ReplicatedStore, reader: FailoverReader) -> tuple[BulkLoader, Reader]:
    """Never called: mypy checks here that the store satisfies ``storage.base``'s Protocols."""
    return store, reader
