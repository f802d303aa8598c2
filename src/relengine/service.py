"""The in-process API, ``Engine``: schema, relationships and checks over one TupleStore.

It picks revisions, compiles (and caches) the schema of each revision, validates writes
against the schema of the revision they write at, and wires the checker. No gRPC here.
"""

from __future__ import annotations

import datetime as _dt
import threading
from dataclasses import dataclass
from typing import Iterable, Sequence

from .config import EngineConfig
from .engine.check import LocalChecker
from .engine.dispatch import CheckResult, Permissionship
from .engine.expand import ExpandNode, expand
from .errors import BatchTooLarge, InvalidArgument, PreconditionFailed, SchemaNotFound
from .model import ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef
from .schema.compiler import compile_schema
from .schema.types import CompiledSchema
from .schema.typesystem import check_relationship
from .storage.base import (
    Operation,
    Precondition,
    PreconditionKind,
    Reader,
    RelationshipUpdate,
    TupleStore,
)


@dataclass(frozen=True, slots=True)
class CheckResponse:
    result: CheckResult
    revision: Revision

    @property
    def allowed(self) -> bool:
        return self.result.allowed

    @property
    def permissionship(self) -> Permissionship:
        return self.result.permissionship


class Engine:
    """Answers permission questions and writes relationships, at named revisions.

    Thread-safe: each call takes its own snapshot of the store.
    """

    def __init__(self, store: TupleStore, config: EngineConfig | None = None) -> None:
        self.store = store
        self.config = config or EngineConfig()
        self._schemas: dict[str, CompiledSchema] = {}
        self._lock = threading.Lock()

    # -- schema ----------------------------------------------------------------------
    def compiled_schema(self, reader: Reader) -> CompiledSchema:
        text = reader.schema_text()
        if text is None:
            raise SchemaNotFound("no schema has been written yet; write one first")
        return self._compile_cached(text)

    def _compile_cached(self, text: str) -> CompiledSchema:
        schema = self._schemas.get(text)
        if schema is None:
            schema = compile_schema(text)
            with self._lock:
                if len(self._schemas) > 16:
                    self._schemas.clear()
                self._schemas[text] = schema
        return schema

    def write_schema(self, text: str, source_name: str = "") -> Revision:
        """Compile and store a schema; raises SchemaError with positions if it is invalid."""
        compile_schema(text, source_name)
        ctx = self.store.transaction()
        with ctx as tx:
            tx.set_schema(text)
        assert ctx.revision is not None
        return ctx.revision

    def read_schema(self, at: Revision | None = None) -> tuple[str, Revision]:
        reader = self.store.snapshot(at)
        text = reader.schema_text()
        if text is None:
            raise SchemaNotFound("no schema has been written yet")
        return text, reader.revision

    # -- relationships ---------------------------------------------------------------
    def write(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = ()
    ) -> Revision:
        """Apply ``updates`` atomically after checking ``preconditions``; returns the revision.

        Each update is validated against the schema of the revision it writes at.
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
            for pre in preconditions:
                matched = tx.matches(pre.filter)
                if matched != (pre.kind is PreconditionKind.MUST_MATCH):
                    raise PreconditionFailed(
                        f"precondition {pre.kind.value} failed for filter {pre.filter}",
                    )
            for update in updates:
                if update.operation is not Operation.DELETE:
                    check_relationship(schema, update.relationship)
                tx.apply(update)
        assert ctx.revision is not None
        return ctx.revision

    def touch(self, relationships: Iterable[Relationship]) -> Revision:
        return self.write([RelationshipUpdate(Operation.TOUCH, r) for r in relationships])

    def delete(self, filter: RelationshipFilter, limit: int | None = None) -> tuple[Revision, int, bool]:
        ctx = self.store.transaction()
        with ctx as tx:
            count, complete = tx.delete_matching(filter, limit)
        assert ctx.revision is not None
        return ctx.revision, count, complete

    def read(
        self, filter: RelationshipFilter, *, at: Revision | None = None, limit: int | None = None
    ) -> tuple[list[Relationship], Revision]:
        reader = self.store.snapshot(at)
        return list(reader.read(filter, limit=limit)), reader.revision

    # -- questions -------------------------------------------------------------------
    def check(
        self,
        resource: ObjectRef,
        permission: str,
        subject: SubjectRef,
        *,
        at: Revision | None = None,
        now: _dt.datetime | None = None,
    ) -> CheckResponse:
        """Whether ``subject`` has ``permission`` (or relation) on ``resource`` at ``at`` (head)."""
        reader = self.store.snapshot(at)
        schema = self.compiled_schema(reader)
        checker = LocalChecker(schema, reader, max_depth=self.config.max_depth, now=now)
        result = checker.check(resource.type, resource.id, permission, subject)
        return CheckResponse(CheckResult(result), reader.revision)

    def expand(
        self, resource: ObjectRef, permission: str, *, at: Revision | None = None
    ) -> tuple[ExpandNode, Revision]:
        reader = self.store.snapshot(at)
        schema = self.compiled_schema(reader)
        return expand(schema, reader, resource, permission, max_depth=self.config.max_depth), reader.revision


def parse_updates(operation: Operation, texts: Iterable[str]) -> list[RelationshipUpdate]:
    from .model import parse_relationship

    out: list[RelationshipUpdate] = []
    for text in texts:
        if not text.strip():
            raise InvalidArgument("empty relationship")
        out.append(RelationshipUpdate(operation, parse_relationship(text)))
    return out
