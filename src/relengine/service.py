"""The in-process API, ``Engine``: schema, relationships and questions over one TupleStore.

It picks the revision of each request (``Consistency``), compiles (and caches) the schema of
each revision, validates writes against the schema of the revision they write at, and wires
the checker, cache and lookups. The gRPC server calls exactly this API. No gRPC here.
"""

from __future__ import annotations

import datetime as _dt
import threading
import time
from typing import Any, Iterable, Iterator, Mapping, Sequence, TypeVar

from .config import EngineConfig
from .engine import lookup
from .engine.build import build_checker
from .engine.cache import CheckCache, context_key
from .engine.check import LocalChecker
from .engine.dispatch import NO, Conditional, Result, to_check_result
from .engine.expand import expand
from .engine.plan import plan_for
from .errors import (
    BatchTooLarge,
    DeadlineExceeded,
    FailedPrecondition,
    InvalidArgument,
    RelEngineError,
    RevisionUnavailable,
    SchemaNotFound,
)
from .model import (
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectRef,
)
from .results import (
    BulkCheckResponse,
    Change,
    CheckRequest,
    CheckResponse,
    CheckResult,
    DeleteResult,
    EngineStatistics,
    ExpandNode,
    Operation,
    Precondition,
    ReadResult,
    RelationshipUpdate,
    ResourceResult,
    Stream,
    SubjectResult,
    decode_cursor,
    encode_cursor,
)
from .schema.compiler import compile_schema
from .schema.types import CompiledSchema, Relation
from .schema.typesystem import check_relationship
from .storage.base import Reader, TupleStore, check_preconditions

T = TypeVar("T")
Question = tuple[str, str, str, SubjectRef, "Mapping[str, Any] | None"]
"""(resource type, resource id, permission, subject, caveat context or None): one bulk item."""


class Engine:
    """Answers permission questions and writes relationships, at named revisions.

    Thread-safe: each call takes its own snapshot of the store; nothing holds a read
    transaction across calls. Every answer carries the revision it was computed at.
    """

    def __init__(self, store: TupleStore, config: EngineConfig | None = None) -> None:
        self.store = store
        self.config = config or EngineConfig()
        self._schemas: dict[str, CompiledSchema] = {}
        self._by_revision: dict[int, CompiledSchema] = {}
        self._lock = threading.Lock()
        self._quantized: tuple[Revision, float] | None = None
        self._responses: dict[tuple[Result, int], CheckResponse] = {}
        self.cache = CheckCache(self.config.cache_size)

    @classmethod
    def open(cls, data_dir: str, config: EngineConfig | None = None, **store_options: Any) -> Engine:
        """An Engine on the LMDB store in ``data_dir`` (created if missing)."""
        from .storage.lmdb import LmdbStore

        return cls(LmdbStore(data_dir, **store_options), config)

    def close(self) -> None:
        self.store.close()

    def head_revision(self) -> Revision:
        return self.store.head_revision()

    # -- revisions -------------------------------------------------------------------
    def snapshot(self, consistency: Consistency | None = None) -> Reader:
        """A Reader at the revision ``consistency`` asks for (default: minimize_latency)."""
        mode = consistency.mode if consistency is not None else "minimize_latency"
        if mode == "minimize_latency":
            recent = self._recent_revision()
            if recent is not None:
                return self.store.snapshot(recent)
            reader = self.store.snapshot()
            self._quantized = (reader.revision, time.monotonic())
            return reader
        if mode == "fully_consistent":
            return self.store.snapshot()
        if mode == "at_exact_snapshot":
            assert consistency is not None and consistency.revision is not None
            return self.store.snapshot(consistency.revision)
        if mode == "at_least_as_fresh":
            assert consistency is not None and consistency.revision is not None
            wanted = consistency.revision
            head = self.store.head_revision()
            if wanted > head:
                raise RevisionUnavailable(
                    f"revision {wanted} is newer than the store's newest revision {head}",
                )
            chosen = self._quantized_revision(head)
            return self.store.snapshot(chosen if chosen >= wanted else head)
        raise InvalidArgument(f"unknown consistency mode {mode!r}")

    def _committed(self, revision: Revision | None) -> Revision:
        """After a write through this Engine, its next minimize_latency read sees the write."""
        assert revision is not None
        self._quantized = None
        return revision

    def _recent_revision(self) -> Revision | None:
        """The revision minimize_latency reuses, if it was chosen less than
        ``quantization_seconds`` ago (so that cached answers keep hitting); else None."""
        quantized = self._quantized
        if quantized is not None and time.monotonic() - quantized[1] < self.config.quantization_seconds:
            return quantized[0]
        return None

    def _quantized_revision(self, head: Revision) -> Revision:
        """The recent revision if there is one no newer than ``head``; else ``head``, from now on."""
        recent = self._recent_revision()
        if recent is not None and recent <= head:
            return recent
        self._quantized = (head, time.monotonic())
        return head

    # -- schema ----------------------------------------------------------------------
    def compiled_schema(self, reader: Reader) -> CompiledSchema:
        """The schema of the reader's revision (the schema of a revision never changes, so it
        is remembered per revision and read from the store once)."""
        revision = reader.revision.value
        schema = self._by_revision.get(revision)
        if schema is not None:
            return schema
        text = reader.schema_text()
        if text is None:
            raise SchemaNotFound("no schema has been written yet; write one first")
        schema = self._compile_cached(text)
        if len(self._by_revision) > 1024:
            self._by_revision.clear()
        self._by_revision[revision] = schema
        return schema

    def _compile_cached(self, text: str) -> CompiledSchema:
        schema = self._schemas.get(text)
        if schema is None:
            schema = compile_schema(text)
            with self._lock:
                if len(self._schemas) > 16:
                    self._schemas.clear()
                self._schemas[text] = schema
        return schema

    def _head_schema(self) -> CompiledSchema:
        reader = self.store.snapshot()
        try:
            return self.compiled_schema(reader)
        finally:
            reader.close()

    def write_schema(self, text: str, source_name: str = "") -> Revision:
        """Compile and store a schema.

        Raises SchemaError (with positions) if it is invalid, and FailedPrecondition if it would
        orphan stored relationships: a relation removed, or a subject type, caveat or expiration
        no longer allowed where relationships use it. Nothing is written then.
        """
        new = compile_schema(text, source_name)
        ctx = self.store.transaction()
        with ctx as tx:
            old_text = tx.schema_text()
            if old_text is not None and old_text != text:
                _refuse_orphans(self._compile_cached(old_text), new, tx)
            tx.set_schema(text)
        return self._committed(ctx.revision)

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
        of a live relationship), InvalidRelationship / UnknownDefinition / UnknownRelation.
        """
        limit = self.config.max_updates_per_write
        if len(updates) > limit:
            raise BatchTooLarge(
                f"a write may carry at most {limit} updates, got {len(updates)}; split the batch",
                limit=limit,
            )
        ctx = self.store.transaction()
        with ctx as tx:
            text = tx.schema_text()
            if text is None:
                raise SchemaNotFound("no schema has been written yet; write one before relationships")
            schema = self._compile_cached(text)
            check_preconditions(tx, preconditions)
            plan = plan_for(schema)
            for update in updates:
                if update.operation is not Operation.DELETE:
                    check_relationship(schema, update.relationship)
                    if update.relationship.caveat is not None:
                        plan.check_caveat_context(update.relationship.caveat)
                tx.apply(update)
        return self._committed(ctx.revision)

    def touch(self, relationships: Iterable[Relationship]) -> Revision:
        return self.write([RelationshipUpdate(Operation.TOUCH, r) for r in relationships])

    def delete_expired(self, *, now: _dt.datetime | None = None, batch: int = 1000) -> int:
        """Delete relationships whose expiration has passed; returns how many went.

        Only relations that allow ``with expiration`` can hold them, so only those are read.
        Expired relationships already behave as absent; this reclaims their space and keeps
        reads short. Each batch is one write (one revision).
        """
        moment = now or _dt.datetime.now(_dt.timezone.utc)
        schema = self._head_schema()
        removed = 0
        for type_name, definition in schema.definitions.items():
            for name, member in definition.members.items():
                if not isinstance(member, Relation) or not any(a.expiration for a in member.allowed):
                    continue
                while True:
                    reader = self.store.snapshot()
                    try:
                        doomed = [
                            RelationshipUpdate(Operation.DELETE, rel)
                            for rel in reader.read(RelationshipFilter(type_name, relation=name))
                            if rel.expiration is not None and rel.expiration <= moment
                        ][:batch]
                    finally:
                        reader.close()
                    if not doomed:
                        break
                    ctx = self.store.transaction()
                    with ctx as tx:
                        for update in doomed:
                            tx.apply(update)
                    self._committed(ctx.revision)
                    removed += len(doomed)
                    if len(doomed) < batch:
                        break
        return removed

    def gc(self) -> int:
        """Housekeeping: delete expired relationships, then let the store drop dead versions and
        changelog entries older than its window. Returns how many expired relationships went."""
        removed = self.delete_expired()
        collect = getattr(self.store, "gc", None)
        if collect is not None:
            collect()
        return removed

    def import_relationships(self, relationships: Iterable[Relationship], *, batch_size: int = 50_000) -> tuple[int, Revision]:
        """TOUCH many relationships in large transactions, past the per-write limit; each is
        validated against the head schema first. Returns (count, last revision). Restartable:
        importing the same relationships again changes nothing."""
        from .storage.base import BulkLoader

        store = self.store
        if not hasattr(store, "bulk_touch"):
            raise InvalidArgument("this store has no bulk import path")
        loader: BulkLoader = store  # type: ignore[assignment]
        schema = self._head_schema()
        count = 0
        revision = store.head_revision()
        batch: list[tuple[Any, ...]] = []
        for rel in relationships:
            check_relationship(schema, rel)
            s = rel.subject
            batch.append((rel.resource.type, rel.resource.id, rel.relation, s.type, s.id, s.relation or "", rel.caveat, rel.expiration))
            if len(batch) >= batch_size:
                revision, _ = loader.bulk_touch(batch)
                count += len(batch)
                batch = []
        if batch:
            revision, _ = loader.bulk_touch(batch)
            count += len(batch)
        self._quantized = None
        return count, revision

    def import_file(self, source: Any, fmt: str | None = None, **options: Any) -> Any:
        """Import a file (text lines, CSV or YAML; see ``storage.importer``), validating every
        relationship against the head schema. Returns the importer's ImportResult."""
        from .storage.importer import import_relationships

        schema = self._head_schema()

        def validate(rel: Relationship) -> None:
            check_relationship(schema, rel)

        result = import_relationships(self.store, source, fmt, validate=validate, **options)  # type: ignore[arg-type]
        self._quantized = None
        return result

    def delete(
        self,
        filter: RelationshipFilter,
        *,
        limit: int | None = None,
        preconditions: Sequence[Precondition] = (),
    ) -> DeleteResult:
        """Delete every live relationship matching ``filter`` (at most ``limit``), atomically."""
        ctx = self.store.transaction()
        with ctx as tx:
            check_preconditions(tx, preconditions)
            count, complete = tx.delete_matching(filter, limit)
        return DeleteResult(self._committed(ctx.revision), count, complete)

    def read(
        self,
        filter: RelationshipFilter,
        *,
        consistency: Consistency | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        deadline: float | None = None,
    ) -> Stream[ReadResult]:
        """Live relationships matching ``filter``, in key order, with a cursor per result.

        A cursor pins the revision it was issued at, so pages are consistent with each other.
        """
        after: Relationship | None = None
        if cursor is not None:
            revision, parts = decode_cursor(cursor)
            reader = self.store.snapshot(revision)
            from .model import parse_relationship

            after = parse_relationship(str(parts[0]))
        else:
            reader = self.snapshot(consistency or Consistency.fully_consistent())
        revision = reader.revision

        def items() -> Iterator[ReadResult]:
            try:
                for index, rel in enumerate(reader.read(filter, after=after, limit=limit)):
                    if deadline is not None and index % 256 == 0:
                        _check_deadline(deadline)
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
        return build_checker(
            self.compiled_schema(reader), reader, max_depth=self.config.max_depth, deadline=deadline,
            context=context, cache=self.cache if self.config.cache_size > 0 and now is None else None, now=now,
        )

    def statistics(self) -> EngineStatistics:
        stats = self.cache.statistics()
        return EngineStatistics(
            cache_hits=stats.hits,
            cache_misses=stats.misses,
            cache_evictions=stats.evictions,
            cache_size=stats.size,
            cache_capacity=stats.capacity,
            head_revision=self.store.head_revision(),
        )

    def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        *,
        consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None,
        deadline: float | None = None,
        at: Revision | None = None,
        now: _dt.datetime | None = None,
    ) -> CheckResponse:
        """Whether ``subject`` has ``permission`` (or relation) on ``resource``.

        ``at`` is shorthand for ``Consistency.at_exact_snapshot(at)``; ``deadline`` is a
        ``time.monotonic()`` instant after which the check raises DeadlineExceeded.
        """
        if (consistency is None or consistency.mode == "minimize_latency") and at is None and now is None and not context:
            cached = self.cached_check(resource.type, resource.id, permission, subject.type, subject.id, subject.relation)
            if cached is not None:
                return cached
        if at is not None:
            consistency = Consistency.at_exact_snapshot(at)
        reader = self.snapshot(consistency)
        try:
            result = self._checker(reader, deadline, context, now).check(resource.type, resource.id, permission, subject)
        finally:
            reader.close()  # never hold a read transaction past the call
        return self._response(result, reader.revision)

    def cached_check(
        self, resource_type: str, resource_id: str, permission: str, subject_type: str, subject_id: str,
        subject_relation: str | None,
    ) -> CheckResponse | None:
        """The answer ``check`` would give under the default consistency if it is in the cache
        now, else None. It touches no store and checks nothing (only questions that were
        answered, so valid, are in the cache): the hot path of ``check``, for callers that do
        work first only on a miss (the server validates a request and reads its deadline)."""
        revision = self.cache_revision()
        if revision is None:
            return None
        hit = self.cache.answer(revision.value, resource_type, resource_id, permission, subject_type, subject_id, subject_relation)
        return None if hit is None else self._response(hit, revision)

    def cache_revision(self) -> Revision | None:
        """The revision whose cached answers the default consistency (minimize_latency) reads
        now, or None if it would choose one afresh (none chosen recently) or the cache is off.
        Answers found in the cache at this revision are the ones ``check`` would give."""
        return self._recent_revision() if self.config.cache_size > 0 else None

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
        self,
        items: Sequence[CheckRequest],
        *,
        consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> BulkCheckResponse:
        """Many checks at one revision; each item gets its result or its own error."""
        return self.check_questions(
            [(i.resource.type, i.resource.id, i.permission, i.subject, i.context) for i in items],
            consistency=consistency, context=context, deadline=deadline,
        )

    def check_questions(
        self,
        questions: Sequence[Question],
        *,
        consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None,
        deadline: float | None = None,
    ) -> BulkCheckResponse:
        """``bulk_check`` of (resource type, resource id, permission, subject, caveat context or
        None) tuples: what the server hands over, without building a CheckRequest per item."""
        self._check_batch(len(questions))
        reader = self.snapshot(consistency)
        revision = reader.revision
        checkers: dict[str | None, LocalChecker] = {}
        results: list[CheckResult | RelEngineError] = []
        append = results.append
        of = to_check_result
        # Items without a caveat context are looked up in the cache first, as Engine.check does.
        cached = self.cache.answer if self.config.cache_size > 0 and not context else None
        try:
            # One checker per caveat context: items that share it share the objects they read.
            default = checkers[context_key(context)] = self._checker(reader, deadline, context)
            for rtype, rid, permission, subject, item_context in questions:
                try:
                    if item_context is None:
                        if cached is not None:
                            hit = cached(revision.value, rtype, rid, permission, subject.type, subject.id, subject.relation)
                            if hit is not None:
                                append(of(hit))
                                continue
                        checker = default
                    else:
                        key = context_key(item_context)
                        checker = checkers.get(key)  # type: ignore[assignment]
                        if checker is None:
                            checker = checkers[key] = self._checker(reader, deadline, item_context)
                    append(of(checker.check(rtype, rid, permission, subject)))
                except RelEngineError as exc:
                    append(exc)
        finally:
            reader.close()
        return BulkCheckResponse(results, revision)

    def lookup_resources(
        self,
        resource_type: str,
        permission: str,
        subject: SubjectRef,
        *,
        consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        deadline: float | None = None,
    ) -> Stream[ResourceResult]:
        """Every ``resource_type`` object on which ``subject`` has ``permission``, by id.

        Walks the subject index backwards through the schema; never enumerates all resources.
        ``limit`` caps the page; each result's cursor resumes after it at the same revision.
        """
        after, reader = self._resume(cursor, consistency)
        try:
            limit = self._limit(limit)
            checker = self._checker(reader, deadline, context)
            found = lookup.lookup_resources(checker, resource_type, permission, subject)
        finally:
            reader.close()
        revision = reader.revision
        if after is not None:
            found = [(rid, result) for rid, result in found if rid > after]

        def items() -> Iterator[ResourceResult]:
            for rid, result in _page(found, limit):
                answer = to_check_result(result)
                yield ResourceResult(rid, answer.permissionship, answer.missing_parameters, encode_cursor(revision, rid))

        return Stream(revision, items())

    def lookup_subjects(
        self,
        resource: ObjectRef,
        permission: str,
        subject_type: str,
        *,
        subject_relation: str | None = None,
        consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None,
        limit: int | None = None,
        cursor: str | None = None,
        deadline: float | None = None,
    ) -> Stream[SubjectResult]:
        """Every subject of ``subject_type`` (``#subject_relation``) with ``permission`` on ``resource``.

        A wildcard grant is reported as one result with id ``*``, its ``excluded`` listing the
        subjects an exclusion removed; concrete subjects follow sorted by id.
        """
        after, reader = self._resume(cursor, consistency)
        try:
            limit = self._limit(limit)
            checker = self._checker(reader, deadline, context)
            found = lookup.lookup_subjects(checker, resource.type, resource.id, permission, subject_type, subject_relation)
        finally:
            reader.close()
        revision = reader.revision
        entries: list[SubjectResult] = []
        if found.wildcard is not NO:
            answer = to_check_result(found.wildcard)
            excluded = tuple(SubjectRef(subject_type, i, subject_relation) for i in sorted(found.excluded))
            entries.append(
                SubjectResult(
                    SubjectRef(subject_type, "*"), answer.permissionship, answer.missing_parameters, excluded,
                    encode_cursor(revision, "*"),
                )
            )
        for sid, result in found.subjects:
            answer = to_check_result(result)
            entries.append(
                SubjectResult(
                    SubjectRef(subject_type, sid, subject_relation),
                    answer.permissionship,
                    answer.missing_parameters,
                    (),
                    encode_cursor(revision, sid),
                )
            )
        if after is not None:
            entries = [e for e in entries if e.subject.id != "*" and e.subject.id > after]

        return Stream(revision, iter(_page(entries, limit)))

    def _resume(self, cursor: str | None, consistency: Consistency | None) -> tuple[str | None, Reader]:
        if cursor is None:
            return None, self.snapshot(consistency)
        revision, parts = decode_cursor(cursor)
        if not parts or not isinstance(parts[0], str):
            raise InvalidArgument(f"malformed cursor {cursor!r}")
        return parts[0], self.store.snapshot(revision)

    def _limit(self, limit: int | None) -> int | None:
        if limit is None or limit == 0:
            return None
        if limit < 0:
            raise InvalidArgument(f"limit must not be negative, got {limit}")
        if limit > self.config.max_lookup_limit:
            raise InvalidArgument(
                f"limit {limit} is above the maximum page size {self.config.max_lookup_limit}"
            )
        return limit

    def expand(
        self,
        resource: ObjectRef,
        permission: str,
        *,
        consistency: Consistency | None = None,
        at: Revision | None = None,
        deadline: float | None = None,
    ) -> tuple[ExpandNode, Revision]:
        if at is not None:
            consistency = Consistency.at_exact_snapshot(at)
        reader = self.snapshot(consistency)
        try:
            schema = self.compiled_schema(reader)
            _check_deadline(deadline)
            tree = expand(schema, reader, resource, permission, max_depth=self.config.max_depth)
            _check_deadline(deadline)
        finally:
            reader.close()
        return tree, reader.revision


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DeadlineExceeded("the request ran past its deadline")


def _refuse_orphans(old: CompiledSchema, new: CompiledSchema, tx: Any) -> None:
    """Raise FailedPrecondition if a relationship stored under ``old`` is not valid under ``new``."""
    for type_name, definition in old.definitions.items():
        for name, member in definition.members.items():
            if not isinstance(member, Relation):
                continue
            now = new.member(type_name, name)
            if isinstance(now, Relation) and set(now.allowed) >= set(member.allowed):
                continue  # nothing that was allowed is refused now
            for rel in tx.reader().read(RelationshipFilter(type_name, relation=name)):
                try:
                    check_relationship(new, rel)
                except RelEngineError as exc:
                    raise FailedPrecondition(
                        f"the new schema would orphan stored relationships: {exc}; delete them "
                        "first (relengine delete) or keep what they need in the schema",
                        definition=type_name,
                        relation=name,
                    ) from None


def _page(items: list[T], limit: int | None) -> list[T]:
    return items if limit is None else items[:limit]
