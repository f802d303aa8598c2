"""The in-process API, ``Engine``: schema, relationships and questions over one TupleStore.

The facade of the service layer: it picks the revision of each request (``revisions``), the
schema of that revision (``schemas``), builds the check pipeline (``engine.build``) and leaves
housekeeping to ``housekeeping``. The gRPC server calls exactly this API. No gRPC here.
"""

from __future__ import annotations

import datetime as _dt
import os
import threading
from typing import Any, Callable, Final, Iterable, Iterator, Mapping, Sequence

from ..config import EngineConfig
from ..engine import impact, lookup
from ..engine.build import build_checker
from ..engine.groups import GroupIndex, GroupView, indexed_relations_of
from ..engine.cache import Carry, CheckCache
from ..engine.check import LocalChecker
from ..engine.depends import Changes, dependencies
from ..engine.dispatch import Conditional, Deadline, Result, to_check_result
from ..engine.expand import expand
from ..engine.trace import Tracer
from ..errors import BatchTooLarge, InvalidArgument, MaxDepthExceeded, SchemaNotFound, TooManyToDelete
from ..model import Consistency, ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef
from ..results import (
    AccessChange,
    AccessChanges,
    BulkCheckResponse,
    Change,
    CheckExplanation,
    CheckRequest,
    CheckResponse,
    CheckResult,
    DeleteResult,
    EngineStatistics,
    ExpandNode,
    GuardViolation,
    Operation,
    Precondition,
    ReadResult,
    RelationshipUpdate,
    ResourceResult,
    Stream,
    SubjectResult,
    encode_cursor,
)
from ..schema import print_schema
from ..schema.types import CompiledSchema
from ..storage.base import DEFAULT_BATCH_LIMIT, Reader, ReplicaReads, TupleStore, check_preconditions
from . import bulk, counters, guards, housekeeping, pages, transfer
from .bulk import Question
from .revisions import Revisions
from .schemas import Schemas, check_update

__all__ = ["Engine", "Question"]


Cancel = Callable[[], bool]
"""Whether the caller has gone (the server asks the gRPC call); see ``engine.dispatch.Deadline``."""


MAX_CARRIED_CHANGES: Final = 10_000
"""How many changed members or objects the cache's carried answers may track before a write
starts them again from the revision before it (``depends.Changes``: kept in memory, some
200 bytes each)."""
_SPARE_CHECKERS: Final = 32
"""Checkers ``Engine.check`` keeps between checks at most (one per thread that checks at once)."""
POSTGRES_SCHEMES: Final = ("postgresql://", "postgres://")
"""How a datastore location names a PostgreSQL database (``Engine.open``, ``--datastore``)."""
LMDB_SCHEME: Final = "lmdb://"
"""How one names an LMDB data directory: ``lmdb:///srv/relengine`` (or the path itself)."""


class _DryRun(Exception):
    """Raised out of a transaction to abort it (``Engine.write_impact``); never escapes."""


class Engine:
    """Answers permission questions and writes relationships, at named revisions.

    Thread-safe: each call reads its own snapshot of the store. A check at the default
    consistency reuses the read transaction of an earlier one at the same revision (see
    ``Revisions.lease``: kept at most for the revision's reuse period and until the next check,
    closed by a write through the Engine, ``gc`` and ``close``); nothing else holds a read
    transaction across calls. Every answer carries the revision it was computed at.

    Deadlines and cancellation: ``deadline`` is a ``time.monotonic()`` instant past which a call
    raises DeadlineExceeded; ``cancelled``, where a call takes it, is asked (with the clock,
    every few hundred steps of its loops) whether the caller has gone, and the call then raises
    Cancelled. Lookups, expand, read, import and bulk check take both.
    """

    def __init__(self, store: TupleStore, config: EngineConfig | None = None) -> None:
        self.store = store
        self.config = config = config or EngineConfig()
        self.cache = CheckCache(config.cache_size)
        self._revisions = Revisions(store, config.quantization_seconds, self.cache.drop_carry)
        self._writing = threading.Lock()
        self._schemas = Schemas()
        self._responses: dict[tuple[Result, int], CheckResponse] = {}
        # Checkers that ``check`` keeps for the next check at the same revision, with what
        # they were built for: (schema, group index view, revision, whether the view is final).
        self._spares: list[tuple[LocalChecker, tuple[CompiledSchema, GroupView | None, int, bool]]] = []
        # Bound once: the check path calls them per request.
        self._snapshot = self._revisions.snapshot
        self._lease, self._give_back = self._revisions.lease, self._revisions.give_back
        self._recent = self._revisions.recent
        self._schema_at = self._schemas.at
        self._caching = self.cache if config.cache_size > 0 else None  # None: the cache is off
        # The group index follows the store's changelog: only where a watch lists every change
        # committed so far (LMDB, memory; not PostgreSQL, whose watch may lag its LISTEN).
        indexed = config.group_index and bool(getattr(store, "current_watch", False))
        self._groups = GroupIndex(lambda after: store.watch(after, timeout=0)) if indexed else None

    @classmethod
    def open(
        cls, location: str | os.PathLike[str], config: EngineConfig | None = None, *,
        read_replicas: Sequence[str] = (), **store_options: Any,
    ) -> Engine:
        """An Engine on the store at ``location``: a PostgreSQL URI (``postgresql://...``, a
        database migrated by ``relengine datastore migrate``; LMDB's ``max_map_size`` is
        ignored there), ``lmdb:///path``, or an LMDB data directory (created if missing).
        ``read_replicas``: PostgreSQL URIs of streaming replicas of that database, which answer
        the reads they are fresh enough for (``storage.postgres.replicas``).
        ``store_options`` go to the store: ``PostgresStore``'s ``pool_min``, ``pool_max``,
        ``pool_timeout``, ``statement_timeout``...; ``LmdbStore``'s ``max_map_size``..."""
        location = os.fspath(location)
        if location.startswith(POSTGRES_SCHEMES):
            from ..storage.postgres.replicas import open_store

            store_options.pop("max_map_size", None)
            for uri in read_replicas:
                if not uri.startswith(POSTGRES_SCHEMES):
                    raise InvalidArgument(
                        f"a read replica must be a PostgreSQL URI (postgresql://USER@HOST:PORT/DB), "
                        f"not a {uri.partition(':')[0]!r} one"
                    )
            return cls(open_store(location, read_replicas, **store_options), config)
        if read_replicas:
            raise InvalidArgument("read replicas need a PostgreSQL datastore (postgresql://...), not LMDB")
        from ..storage.lmdb import LmdbStore

        if location.startswith(LMDB_SCHEME):
            location = location[len(LMDB_SCHEME):]
        return cls(LmdbStore(location, **store_options), config)

    def close(self) -> None:
        self._revisions.close_idle(stop=True)
        while self._spares:
            self._spares.pop()[0].release()
        self.store.close()

    def head_revision(self) -> Revision:
        return self.store.head_revision()

    def snapshot(self, consistency: Consistency | None = None) -> Reader:
        """A Reader at the revision ``consistency`` asks for (default: minimize_latency)."""
        return self._snapshot(consistency)

    # -- schema ----------------------------------------------------------------------
    def compiled_schema(self, reader: Reader) -> CompiledSchema:
        """The schema of the reader's revision (the schema of a revision never changes, so it
        is remembered per revision and read from the store once)."""
        return self._schema_at(reader)

    def write_schema(self, text: str, source_name: str = "") -> Revision:
        """Compile and store a schema.

        Raises SchemaError (with positions) if it is invalid, and FailedPrecondition if it would
        orphan stored relationships: a relation removed, or a subject type, caveat or expiration
        no longer allowed where relationships use it, or break a stored guard (a name it uses
        gone; the error names the guard). Nothing is written then.
        """
        return self._revisions.committed(
            self._schemas.write(self.store, text, source_name, check=guards.refuse_broken)
        )

    def read_schema(self, consistency: Consistency | None = None) -> tuple[str, Revision]:
        reader = self.snapshot(consistency or Consistency.fully_consistent())
        try:
            text = reader.schema_text()
        finally:
            reader.close()
        if text is None:
            raise SchemaNotFound("no schema has been written yet")
        return text, reader.revision

    # -- relationships ---------------------------------------------------------------
    def write(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = ()
    ) -> Revision:
        """Apply ``updates`` atomically after checking ``preconditions``; returns the revision.

        Each update is validated against the schema of the revision it writes at. Raises
        BatchTooLarge past ``max_updates_per_write``, PreconditionFailed, AlreadyExists (CREATE
        of a live relationship), InvalidRelationship / UnknownDefinition / UnknownRelation,
        GuardViolated (the write would take an object below a stored guard; see ``guards``).
        """
        self._check_updates(updates)
        # One write of this Engine at a time from the revision it starts at to the carry it
        # leaves (the store serializes the transactions anyway): two interleaved ones would each
        # find the other's revision between theirs and leave no carry.
        with self._writing:
            before = self._revisions.recent()
            carried = self.cache.carried_to()
            self._revisions.close_idle()  # no idle read transaction keeps the write from reusing pages
            ctx = self.store.transaction()
            with ctx as tx:
                schema = self._schemas.of(tx)
                check_preconditions(tx, preconditions)
                enforcer = guards.Enforcer.of(tx, self._schemas.of, self.config.max_depth)
                if enforcer is not None:
                    enforcer.before(*guards.narrowing(tx, updates))
                for update in updates:
                    if update.operation is not Operation.DELETE:
                        check_update(schema, update.relationship)
                    tx.apply(update)
                if enforcer is not None:
                    enforcer.after()
            revision = self._revisions.committed(ctx.revision)  # ends any carry; _carry sets the next
            self._carry(before, carried, revision, schema, updates)
        if self._groups is not None:
            self._groups.advance(revision, updates)  # the write pays for the group index's maintenance
        return revision

    def _carry(
        self, before: Revision | None, carried: Carry | None, revision: Revision, schema: CompiledSchema,
        updates: Sequence[RelationshipUpdate],
    ) -> None:
        """Let the cached answers outlive this write: the answers kept since the carry's anchor
        (the revision before the first of the writes it follows) hold at this write's revision
        for every question the written relationships cannot reach (``depends``), and the cache
        files them so (``CheckCache.carry``). Only when nothing else was written between
        (consecutive revisions: no other process or path wrote) and the changes stay few: past
        ``MAX_CARRIED_CHANGES`` the carry starts again from the revision before this write."""
        if self._caching is None:
            return
        previous = revision.value - 1
        if carried is not None and carried[0] == revision.value:  # the write changed nothing
            self.cache.carry(*carried)
            return
        if carried is not None and carried[0] == previous:
            changes = carried[1]
        elif before is not None and before.value == previous:
            changes = Changes(previous)
        else:
            return
        deps = dependencies(schema)
        written = {(r.resource.type, r.resource.id, r.relation) for r in (u.relationship for u in updates)}
        changes.mark(deps, revision.value, written)
        if changes.size() > MAX_CARRIED_CHANGES and changes.anchor != previous:
            changes = Changes(previous)  # readers of the carry before keep theirs: marked above is newer than it
            changes.mark(deps, revision.value, written)
        if changes.size() > MAX_CARRIED_CHANGES:
            return  # this write alone is past the limit: no carry
        self.cache.carry(revision.value, changes)

    def write_impact(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = (), *,
        deadline: float | None = None, now: _dt.datetime | None = None,
    ) -> list[AccessChange]:
        """Who would gain or lose which permission if ``write(updates, preconditions)`` ran
        now, sorted; nothing is written. The write runs in a real transaction (the same checks
        and errors as ``write``), is compared with the state it started from, and is aborted:
        other writers wait for it meanwhile. See ``engine.impact``."""
        self._check_updates(updates)
        found: list[AccessChange] = []
        try:
            with self.store.transaction() as tx:
                schema = self._schemas.of(tx)
                before = self.store.snapshot()  # the state tx started from: no writer commits while tx is open
                try:
                    check_preconditions(tx, preconditions)
                    for update in updates:
                        if update.operation is not Operation.DELETE:
                            check_update(schema, update.relationship)
                        tx.apply(update)
                    written = {(u.relationship.resource.type, u.relationship.resource.id, u.relationship.relation)
                               for u in updates}
                    found = sorted(impact.write_impact(
                        schema, before, tx.reader(), sorted(written), max_depth=self.config.max_depth, now=now,
                        deadline=deadline,
                    ))
                finally:
                    before.close()
                raise _DryRun
        except _DryRun:
            return found

    def schema_impact(
        self, old_text: str, new_text: str, *, consistency: Consistency | None = None,
        deadline: float | None = None, now: _dt.datetime | None = None,
    ) -> Iterator[AccessChange]:
        """Every (resource, permission, subject) whose answer differs between schema
        ``old_text`` and ``new_text`` on the stored relationships (read at ``consistency``,
        default the newest revision), as the walk finds them (``engine.impact``); nothing is
        written. Raises SchemaError for either text before the iterator is returned."""
        return impact.flatten(self.schema_impact_grouped(
            old_text, new_text, consistency=consistency, deadline=deadline, now=now))

    def schema_impact_grouped(
        self, old_text: str, new_text: str, *, consistency: Consistency | None = None,
        deadline: float | None = None, now: _dt.datetime | None = None,
    ) -> Iterator[AccessChange | AccessChanges]:
        """``schema_impact`` with the plain changes of each (resource, permission, subject
        type) together, as one AccessChanges (no object per change: what ``relengine schema
        diff`` streams when a change moves millions of answers)."""
        old, new = self._schemas.compile(old_text), self._schemas.compile(new_text)
        reader = self._snapshot(consistency or Consistency.fully_consistent())

        def changes() -> Iterator[AccessChange | AccessChanges]:
            try:
                yield from impact.schema_impact_grouped(old, new, reader, max_depth=self.config.max_depth, now=now,
                                                        deadline=deadline)
            finally:
                reader.close()

        return changes()

    def _check_updates(self, updates: Sequence[RelationshipUpdate]) -> None:
        limit = self.config.max_updates_per_write
        if len(updates) > limit:
            raise BatchTooLarge(
                f"a write may carry at most {limit} updates, got {len(updates)}; split the batch",
                limit=limit,
            )

    def touch(self, relationships: Iterable[Relationship]) -> Revision:
        return self.write([RelationshipUpdate(Operation.TOUCH, r) for r in relationships])

    def delete_expired(self, *, now: _dt.datetime | None = None, batch: int = 1000) -> int:
        """Delete relationships whose expiration has passed; returns how many went.

        Only relations that allow ``with expiration`` can hold them, so only those are read.
        Expired relationships already behave as absent; this reclaims their space and keeps
        reads short. Each batch is one write (one revision). A store without a schema holds
        none (the server's housekeeping runs before one is written).
        """
        moment = now or _dt.datetime.now(_dt.timezone.utc)
        try:
            schema = self._schemas.head(self.store)
        except SchemaNotFound:
            return 0
        removed, wrote = housekeeping.delete_expired(self.store, schema, moment, batch)
        if wrote:
            self._revisions.forget()
        return removed

    def gc(self) -> int:
        """Housekeeping: delete expired relationships, then let the store drop dead versions and
        changelog entries older than its window. Returns how many expired relationships went."""
        removed = self.delete_expired()
        self._revisions.close_idle()  # an idle process keeps no read transaction past a collection
        housekeeping.collect_garbage(self.store)
        return removed

    def import_relationships(
        self, relationships: Iterable[Relationship], *, batch_size: int = 50_000, deadline: float | None = None,
        cancelled: Cancel | None = None,
    ) -> tuple[int, Revision]:
        """TOUCH many relationships in large transactions, past the per-write limit; each is
        validated against the head schema first. Returns (count, last revision). Restartable:
        importing the same relationships again changes nothing.

        Each batch is its own transaction. Past ``deadline``, or once ``cancelled()``, the
        import raises DeadlineExceeded or Cancelled: the batches committed before stay, the one
        being gathered is dropped, and nothing is committed after.
        """
        schema = self._schemas.head(self.store)
        clock = Deadline(deadline, "import", cancelled)
        try:
            return housekeeping.import_relationships(
                self.store, schema, relationships, batch_size, clock, self._loader()
            )
        finally:
            self._revisions.forget()

    def create_relationships(
        self, relationships: Iterable[Relationship], *, limit: int | None = None, deadline: float | None = None,
        cancelled: Cancel | None = None,
    ) -> tuple[int, Revision]:
        """CREATE ``relationships`` in one transaction, all or nothing (SpiceDB's bulk import):
        one that exists or comes twice raises AlreadyExists and nothing is written; each is
        validated against the schema. At most ``limit`` (default: the store's batch limit);
        BatchTooLarge past it. Returns (count, revision). See ``transfer.create_all``."""
        if limit is None:
            limit = int(getattr(self.store, "batch_limit", DEFAULT_BATCH_LIMIT))
        clock = Deadline(deadline, "import", cancelled)
        count, revision = transfer.create_all(
            self.store, self._schemas, relationships, limit, clock, self.config.max_depth
        )
        return count, self._revisions.committed(revision)

    def export(
        self, filter: RelationshipFilter, *, consistency: Consistency | None = None, cursor: str | None = None,
        deadline: float | None = None, cancelled: Cancel | None = None,
    ) -> Stream[ReadResult]:
        """Every live relationship matching ``filter`` (a ``resource_type`` of ``""``: every
        type), type by type in name order, then in key order, each with a cursor. A cursor
        resumes after its relationship at its revision, so the pages of one export are
        consistent with each other. Raises DeadlineExceeded / Cancelled as ``read``."""
        if cursor is None:
            after, reader = None, self._snapshot(consistency or Consistency.fully_consistent())
        else:
            revision, after = transfer.resume_export(cursor)
            reader = self.store.snapshot(revision)
        try:
            schema = self._schema_at(reader)
        except BaseException:
            reader.close()
            raise
        clock = Deadline(deadline, "export", cancelled)
        return Stream(reader.revision, transfer.export(reader, schema, filter, after, clock))

    def check_filter(self, filter: RelationshipFilter, reader: Reader | None = None) -> None:
        """Raise unless the schema (of ``reader``, default head) knows what ``filter`` names;
        see ``transfer.check_filter``."""
        try:
            schema = self._schemas.head(self.store) if reader is None else self._schema_at(reader)
        except SchemaNotFound:
            schema = self._schemas.compile("")  # no schema yet: no definition is known
        transfer.check_filter(schema, filter)

    # -- guards --------------------------------------------------------------------------
    def write_guards(self, text: str, source_name: str = "") -> Revision:
        """Store a guard file (YAML; see ``guards``) beside the schema, checked against the
        head schema; empty text removes every guard. Raises GuardFileError (line and column)
        for a bad file or a name the schema lacks, SchemaNotFound before any schema. Objects
        that violate a guard already are allowed (``guard_violations`` lists them)."""
        ctx = self.store.transaction()
        with ctx as tx:
            guards.parse_guards(text, self._schemas.of(tx), source_name)
            tx.set_guards(text)
        return self._revisions.committed(ctx.revision)

    def read_guards(self, consistency: Consistency | None = None) -> tuple[str, Revision]:
        """The stored guard file text (``""`` if none) and the revision it was read at."""
        reader = self.snapshot(consistency or Consistency.fully_consistent())
        try:
            return reader.guards_text() or "", reader.revision
        finally:
            reader.close()

    def guard_violations(
        self, within: _dt.timedelta | None = None, *, now: _dt.datetime | None = None,
        deadline: float | None = None, cancelled: Cancel | None = None,
    ) -> list[GuardViolation]:
        """Every object the store knows (the resource or the subject of some relationship)
        below a stored guard now, with its count; with ``within``, also those that fall below it
        by then as their relationships expire. At head; DeadlineExceeded / Cancelled as ``read``."""
        reader = self.snapshot(Consistency.fully_consistent())
        try:
            text = reader.guards_text()
            if not text:
                return []
            schema = self._schema_at(reader)
            return guards.violations(
                schema, reader, guards.guards_of(text, schema), self.config.max_depth, within=within, now=now,
                clock=Deadline(deadline, "guards check", cancelled),
            )
        finally:
            reader.close()

    def _loader(self) -> guards.GuardedLoader:
        """What writes the batches of an import: the store's bulk path, guarded."""
        return guards.GuardedLoader(self.store, self._schemas.of, self.config.max_depth)

    # -- relationship counters ---------------------------------------------------------
    def register_counter(self, name: str, filter: RelationshipFilter) -> Revision:
        """Register counter ``name`` for ``filter`` (shared by every Engine on the store);
        FailedPrecondition if the name is taken. See ``counters``."""
        return self._revisions.committed(counters.register(self.store, self._schemas, name, filter))

    def unregister_counter(self, name: str) -> Revision:
        return self._revisions.committed(counters.unregister(self.store, name))

    def count_relationships(
        self, name: str, *, deadline: float | None = None, cancelled: Cancel | None = None
    ) -> tuple[int, Revision]:
        """How many relationships match counter ``name`` at head, and that revision."""
        return counters.read(self.store, self._schemas, name, Deadline(deadline, "count", cancelled))

    def import_file(self, source: Any, fmt: str | None = None, **options: Any) -> Any:
        """Import a file (text lines, CSV or YAML; see ``storage.importer``), validating every
        relationship against the head schema. Returns the importer's ImportResult."""
        result = housekeeping.import_file(
            self.store, self._schemas.head(self.store), source, fmt, self._loader(), **options
        )
        self._revisions.forget()
        return result

    def delete(
        self, filter: RelationshipFilter, *, limit: int | None = None,
        preconditions: Sequence[Precondition] = (), deadline: float | None = None, partial: bool = True,
    ) -> DeleteResult:
        """Delete every live relationship matching ``filter`` (at most ``limit``), atomically.

        With ``partial=False`` a ``limit`` that leaves matches behind deletes nothing and
        raises TooManyToDelete (SpiceDB's delete without ``optional_allow_partial_deletions``).
        Past ``deadline`` (a ``time.monotonic()`` instant), during the store's scan or just
        before the commit, raises DeadlineExceeded and deletes nothing.
        """
        self._revisions.close_idle()  # no idle read transaction keeps the delete from reusing pages
        ctx = self.store.transaction()
        with ctx as tx:
            check_preconditions(tx, preconditions)
            enforcer = guards.Enforcer.of(tx, self._schemas.of, self.config.max_depth)
            if enforcer is not None:
                enforcer.before(guards.deleted_by(tx, filter, limit))
            count, complete = tx.delete_matching(filter, limit, deadline=deadline)
            if enforcer is not None:
                enforcer.after()
            if not complete and not partial:
                raise TooManyToDelete(
                    f"found more than {limit} relationships to be deleted and partial deletion was not requested",
                    limit=limit, **filter.fields(),
                )
            Deadline(deadline, "delete").look()  # the commit is the point of no return
        return DeleteResult(self._revisions.committed(ctx.revision), count, complete)

    def read(
        self, filter: RelationshipFilter, *, consistency: Consistency | None = None, limit: int | None = None,
        cursor: str | None = None, deadline: float | None = None, cancelled: Cancel | None = None,
        expired: bool = True,
    ) -> Stream[ReadResult]:
        """Live relationships matching ``filter``, in key order, with a cursor per result.

        A cursor pins the revision it was issued at, so pages are consistent with each other.
        With ``expired=False`` relationships whose expiration has passed are left out (before
        ``limit`` counts, so a page is short only at the end). The stream raises
        DeadlineExceeded past ``deadline`` and Cancelled once ``cancelled()``.
        """
        after, reader = pages.resume_read(cursor, consistency, self._snapshot, self.store)
        revision = reader.revision
        clock = Deadline(deadline, "read", cancelled)

        def rows() -> Iterator[Relationship]:
            if expired:
                yield from clock.rows(reader.read(filter, after=after, limit=limit))
                return
            now = _dt.datetime.now(_dt.timezone.utc)
            left = limit
            for rel in clock.rows(reader.read(filter, after=after)):
                if rel.expiration is not None and rel.expiration <= now:
                    continue
                if left is not None:
                    if left <= 0:
                        return
                    left -= 1
                yield rel

        def items() -> Iterator[ReadResult]:
            try:
                for rel in rows():
                    yield ReadResult(rel, encode_cursor(revision, str(rel)))
            finally:
                reader.close()

        return Stream(revision, items())

    def watch(self, after: Revision | None = None, *, timeout: float | None = None) -> Iterator[Change]:
        """Every change after ``after`` (default: from now), in order; blocks for new ones."""
        start = after if after is not None else self.store.head_revision()
        return self.store.watch(start, timeout=timeout)

    # -- questions -------------------------------------------------------------------
    def _checker(
        self, reader: Reader, deadline: float | None, context: Mapping[str, Any] | None,
        now: _dt.datetime | None = None,
    ) -> LocalChecker:
        # Answers at a caller-chosen "now" (expiration tests) must not be cached as real ones.
        schema, groups = self._schema_and_view(reader, deadline)
        return build_checker(
            schema, reader, max_depth=self.config.max_depth, deadline=deadline,
            context=context, cache=self._caching if now is None else None, now=now, groups=groups,
        )

    def _schema_and_view(self, reader: Reader, deadline: float | None) -> tuple[CompiledSchema, GroupView | None]:
        """The schema at ``reader``'s revision and the group index's view there (None: none)."""
        schema = self._schema_at(reader)
        return schema, None if self._groups is None else self._groups.view(schema, reader, deadline)

    def _pooled_check(
        self, reader: Reader, deadline: float | None, resource: ObjectRef, permission: str, subject: SubjectRef,
    ) -> Result:
        """``check``'s walk without a caveat context or a chosen "now", on a checker an earlier
        check at the same revision, schema and group index view left (``LocalChecker.reuse``),
        else a new one; kept for the next one after (at most ``_SPARE_CHECKERS``; one that
        raised is dropped)."""
        revision = reader.revision.value
        spares = self._spares
        checker: LocalChecker | None = None
        built: tuple[CompiledSchema, GroupView | None] | None = None  # the schema and view at ``reader``, once looked up
        if spares:
            try:
                spare, made = spares.pop()
            except IndexError:  # another thread took the last one
                pass
            else:
                # A revision's schema never changes, and a group index view checks itself (it
                # answers nothing once the index has moved): a checker of this revision that
                # had the view it could have serves as it is.
                if made[2] == revision and made[3]:
                    checker = spare
                else:
                    built = self._schema_and_view(reader, deadline)
                    if made[0] is built[0] and made[1] is built[1] and made[2] == revision:
                        checker = spare
                    else:
                        spare.release()
                if checker is not None:
                    checker.reuse(reader, deadline, self._caching is not None)
        if checker is None:
            schema, groups = built if built is not None else self._schema_and_view(reader, deadline)
            checker = build_checker(
                schema, reader, max_depth=self.config.max_depth, deadline=deadline, cache=self._caching, groups=groups,
            )
            # Whether the checker has the view it could have: one, or none to have (no index,
            # or nothing of the schema indexed), not none for now (a move that ran out of time).
            final = groups is not None or self._groups is None or not indexed_relations_of(schema)
            made = (schema, groups, revision, final)
        try:
            result = checker.check(resource.type, resource.id, permission, subject)
        except BaseException:
            checker.release()
            raise
        if len(spares) < _SPARE_CHECKERS:
            spares.append((checker, made))
        else:
            checker.release()  # no cyclic garbage per check
        return result

    def statistics(self) -> EngineStatistics:
        stats = self.cache.statistics()
        return EngineStatistics(
            cache_hits=stats.hits,
            cache_misses=stats.misses,
            cache_evictions=stats.evictions,
            cache_size=stats.size,
            cache_capacity=stats.capacity,
            head_revision=self.store.head_revision(),
            datastore_reads=tuple(sorted(self.store.read_counts().items())) if isinstance(self.store, ReplicaReads) else (),
        )

    def check(
        self, resource: ObjectRef, permission: str, subject: SubjectRef, *,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None,
        deadline: float | None = None, at: Revision | None = None, now: _dt.datetime | None = None,
        cache_missed: bool = False,
    ) -> CheckResponse:
        """Whether ``subject`` has ``permission`` (or relation) on ``resource``.

        ``at`` is shorthand for ``Consistency.at_exact_snapshot(at)``; ``deadline`` is a
        ``time.monotonic()`` instant after which the check raises DeadlineExceeded.
        ``cache_missed``: the caller has just asked ``cached_check`` and found nothing, so the
        check goes straight to the walk (whose answers still fill the cache).
        """
        latest = (consistency is None or consistency.mode == "minimize_latency") and at is None
        if latest and now is None and not context and not cache_missed and self._caching is not None:
            cached = self.cached_check(resource.type, resource.id, permission, subject.type, subject.id, subject.relation)
            if cached is not None:
                return cached
        if latest:
            reader, period = self._lease()  # a Reader of an earlier check at this revision, if one is idle
        else:
            if at is not None:
                consistency = Consistency.at_exact_snapshot(at)
            reader, period = self._snapshot(consistency), None
        try:
            if now is None and not context:
                result = self._pooled_check(reader, deadline, resource, permission, subject)
            else:
                checker = self._checker(reader, deadline, context, now)
                try:
                    result = checker.check(resource.type, resource.id, permission, subject)
                finally:
                    checker.release()  # no cyclic garbage per check
        except RecursionError:
            reader.close()
            raise MaxDepthExceeded.stack("check") from None
        except BaseException:
            reader.close()
            raise
        revision = reader.revision
        self._give_back(reader, period)  # kept for the next check of its period, or closed
        return self._response(result, revision)

    def explain(
        self, resource: ObjectRef, permission: str, subject: SubjectRef, *,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None,
        deadline: float | None = None, at: Revision | None = None, now: _dt.datetime | None = None,
    ) -> CheckExplanation:
        """``check``, answered with its trace: which relations, arrows and subject sets were
        walked, what each answered, the caveats evaluated, how long each took, and which
        relationships granted the answer (``CheckExplanation.granted_by``).

        The trace comes from a walk of its own (``engine.trace``): it never reads or fills the
        answer cache, and is several times slower than ``check``; ``check`` itself is not
        touched by it. The answer is the one ``check`` gives. Past the depth budget or
        ``deadline`` it raises as ``check`` does; ``engine.trace.partial_trace(error)`` then
        gives the trace walked so far.
        """
        if at is not None:
            consistency = Consistency.at_exact_snapshot(at)
        reader = self._snapshot(consistency)
        try:
            schema = self._schema_at(reader)
            tracer = Tracer(schema, reader, max_depth=self.config.max_depth, deadline=deadline, context=context, now=now)
            result, trace = tracer.check(resource.type, resource.id, permission, subject)
        except RecursionError:
            raise MaxDepthExceeded.stack("check") from None
        finally:
            reader.close()
        text = schema.source_text or print_schema(schema)
        return CheckExplanation(to_check_result(result), reader.revision, trace, text)

    def cached_check(
        self, resource_type: str, resource_id: str, permission: str, subject_type: str, subject_id: str,
        subject_relation: str | None,
    ) -> CheckResponse | None:
        """The answer ``check`` would give under the default consistency if it is in the cache
        now, else None. It touches no store and checks nothing (only questions that were
        answered, so valid, are in the cache): the hot path of ``check``, for callers that do
        work first only on a miss (the server validates a request and reads its deadline)."""
        revision = self._recent() if self._caching is not None else None  # cache_revision(), inlined (bench: cached_check)
        if revision is None:
            return None
        hit = self.cache.answer(revision.value, resource_type, resource_id, permission, subject_type, subject_id, subject_relation)
        if hit is None:
            return None
        # ``_response``'s lookup, inlined: a hit's response is almost always there, and the call
        # would cost a twelfth of a cached check (bench: cached_check).
        response = self._responses.get((hit, revision.value))
        return response if response is not None else self._response(hit, revision)

    def cache_revision(self) -> Revision | None:
        """The revision whose cached answers the default consistency (minimize_latency) reads
        now, or None if it would choose one afresh (none chosen recently) or the cache is off.
        Answers found in the cache at this revision are the ones ``check`` would give."""
        return self._recent() if self._caching is not None else None

    def cached_answers(
        self, rows: Sequence[tuple[str, str, str, str, str, str | None]]
    ) -> tuple[Revision, list[CheckResult | None]] | None:
        """``cached_check`` for many (resource type, id, permission, subject type, id,
        relation) rows at once: the revision the default consistency reads now and each row's
        cached answer (None where there is none), or None if no recent revision is known or the
        cache is off. Answer the misses at exactly that revision to keep one revision."""
        self._check_batch(len(rows))
        revision = self.cache_revision()
        if revision is None:
            return None
        found = self.cache.answers(revision.value, rows)
        of = to_check_result
        return revision, [None if f is None else of(f) for f in found]

    def _check_batch(self, items: int) -> None:
        if items > self.config.max_bulk_check_items:
            raise BatchTooLarge(f"a bulk check may carry at most {self.config.max_bulk_check_items} items, got {items}")

    def _response(self, result: Result, revision: Revision) -> CheckResponse:
        """The CheckResponse of a plain answer at ``revision`` is made once and shared (it is
        immutable); conditional ones are made each time."""
        key = (result, revision.value)
        response = self._responses.get(key)
        if response is None:
            response = CheckResponse(to_check_result(result), revision)
            if not isinstance(result, Conditional):
                if len(self._responses) >= 8:
                    self._responses.clear()
                self._responses[key] = response
        return response

    def bulk_check(
        self, items: Sequence[CheckRequest], *, consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None, deadline: float | None = None, cancelled: Cancel | None = None,
    ) -> BulkCheckResponse:
        """Many checks at one revision; each item gets its result or its own error. Past
        ``deadline``, or once ``cancelled()``, the whole call raises DeadlineExceeded or Cancelled."""
        return self.check_questions(
            [(i.resource.type, i.resource.id, i.permission, i.subject, i.context) for i in items],
            consistency=consistency, context=context, deadline=deadline, cancelled=cancelled,
        )

    def check_questions(
        self, questions: Sequence[Question], *, consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None, deadline: float | None = None, cancelled: Cancel | None = None,
    ) -> BulkCheckResponse:
        """``bulk_check`` of (resource type, resource id, permission, subject, caveat context or
        None) tuples: what the server hands over, without building a CheckRequest per item."""
        self._check_batch(len(questions))
        reader = self._snapshot(consistency)
        cached = self.cache.answer if self._caching is not None and not context else None
        clock = Deadline(deadline, "bulk check", cancelled)
        try:
            results = bulk.answer(
                questions, lambda ctx: self._checker(reader, deadline, ctx), context, reader.revision.value, cached,
                clock,
            )  # an item that runs out of Python's stack gets MaxDepthExceeded there
        finally:
            reader.close()
        return BulkCheckResponse(results, reader.revision)

    def lookup_resources(
        self, resource_type: str, permission: str, subject: SubjectRef, *,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None,
        limit: int | None = None, cursor: str | None = None, deadline: float | None = None,
        cancelled: Cancel | None = None,
    ) -> Stream[ResourceResult]:
        """Every ``resource_type`` object on which ``subject`` has ``permission``, by id.

        Walks the subject index backwards through the schema; never enumerates all resources.
        ``limit`` caps the page; each result's cursor resumes after it at the same revision.
        """
        after, reader = pages.resume(cursor, consistency, self._snapshot, self.store)
        try:
            limit = pages.check_limit(limit, self.config.max_lookup_limit)
            checker = self._checker(reader, deadline, context)
            found = lookup.lookup_resources(checker, resource_type, permission, subject, cancelled)
        except RecursionError:
            raise MaxDepthExceeded.stack("lookup") from None
        finally:
            reader.close()
        return Stream(reader.revision, pages.resources(found, after, limit, reader.revision))

    def lookup_subjects(
        self, resource: ObjectRef, permission: str, subject_type: str, *, subject_relation: str | None = None,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None,
        limit: int | None = None, cursor: str | None = None, deadline: float | None = None,
        cancelled: Cancel | None = None,
    ) -> Stream[SubjectResult]:
        """Every subject of ``subject_type`` (``#subject_relation``) with ``permission`` on ``resource``.

        A wildcard grant is reported as one result with id ``*``, its ``excluded`` listing the
        subjects an exclusion removed; concrete subjects follow sorted by id.
        """
        after, reader = pages.resume(cursor, consistency, self._snapshot, self.store)
        # A listing that holds for every request at its revision is kept in the cache's memo
        # (FoundSubjects.lasting), with the sub-results of the walks (SubjectWalker.lasting).
        memo = self._caching.subjects if self._caching is not None else None
        key = ("listing", resource.type, resource.id, permission, subject_type, subject_relation)
        try:
            limit = pages.check_limit(limit, self.config.max_lookup_limit)
            entries = memo.get(reader.revision.value, key) if memo is not None else None
            if entries is None:
                checker = self._checker(reader, deadline, context)
                found = lookup.lookup_subjects(
                    checker, resource.type, resource.id, permission, subject_type, subject_relation, cancelled, memo
                )
                entries = pages.subjects(found, subject_type, subject_relation, reader.revision)
                if memo is not None and found.lasting:
                    memo.put(reader.revision.value, key, entries, len(entries))
        except RecursionError:
            raise MaxDepthExceeded.stack("lookup") from None
        finally:
            reader.close()
        return Stream(reader.revision, iter(pages.subject_page(entries, after, limit)))

    def expand(
        self, resource: ObjectRef, permission: str, *, consistency: Consistency | None = None,
        at: Revision | None = None, deadline: float | None = None, cancelled: Cancel | None = None,
        spicedb: bool = False,
    ) -> tuple[ExpandNode, Revision]:
        """The userset tree of ``permission`` (or a relation) on ``resource``, and its revision
        (``spicedb``: in the shape SpiceDB's API gives it, see ``engine.expand.expand``).

        The walk keeps the depth budget (MaxDepthExceeded) and ``deadline`` (DeadlineExceeded),
        and stops once ``cancelled()`` (Cancelled).
        """
        if at is not None:
            consistency = Consistency.at_exact_snapshot(at)
        reader = self._snapshot(consistency)
        try:
            schema = self._schema_at(reader)
            tree = expand(
                schema, reader, resource, permission, max_depth=self.config.max_depth, deadline=deadline,
                cancelled=cancelled, spicedb=spicedb,
            )
        except RecursionError:
            raise MaxDepthExceeded.stack("expand") from None
        finally:
            reader.close()
        return tree, reader.revision

