"""Compiled schemas by revision and by text; the schema write that refuses to orphan stored
relationships, and the check of a relationship write against the schema it writes under."""

from __future__ import annotations

import threading
from typing import Callable

from ..engine.plan import plan_for
from ..errors import FailedPrecondition, RelEngineError, SchemaNotFound
from ..model import Relationship, RelationshipFilter, Revision
from ..schema.compiler import compile_schema
from ..schema.types import AllowedType, CompiledSchema, Relation
from ..schema.typesystem import check_relationship
from ..storage.base import Reader, Transaction, TupleStore

MAX_BY_REVISION = 1024  # revisions whose schema is remembered (cleared past this)
MAX_BY_TEXT = 16  # distinct schema texts kept compiled (cleared past this)


class Schemas:
    """The compiled schema of each revision, compiled once per distinct text.

    The schema of a revision never changes, and compiling is a pure function of the text, so
    neither table is ever invalidated; both are cleared when they grow past their bound. The
    same text gives the same ``CompiledSchema`` object, so what the engine derives from a
    schema (``CompiledSchema.derived``) is built once for all revisions that share it.
    Thread-safe: readers take no lock; two threads may compile the same text, either wins.
    """

    def __init__(self) -> None:
        self._by_text: dict[str, CompiledSchema] = {}
        self._by_revision: dict[int, CompiledSchema] = {}
        self._lock = threading.Lock()

    def at(self, reader: Reader) -> CompiledSchema:
        """The schema of the reader's revision; SchemaNotFound if none was written by then."""
        revision = reader.revision.value
        schema = self._by_revision.get(revision)
        if schema is not None:
            return schema
        text = reader.schema_text()
        if text is None:
            raise SchemaNotFound("no schema has been written yet; write one first")
        schema = self.compile(text)
        if len(self._by_revision) > MAX_BY_REVISION:
            self._by_revision.clear()
        self._by_revision[revision] = schema
        return schema

    def compile(self, text: str) -> CompiledSchema:
        """``text`` compiled (SchemaError if it is invalid), or the compilation of an earlier call."""
        schema = self._by_text.get(text)
        if schema is None:
            schema = compile_schema(text)
            with self._lock:
                if len(self._by_text) > MAX_BY_TEXT:
                    self._by_text.clear()
                self._by_text[text] = schema
        return schema

    def of(self, tx: Transaction) -> CompiledSchema:
        """The schema a write transaction writes under; SchemaNotFound if there is none yet."""
        text = tx.schema_text()
        if text is None:
            raise SchemaNotFound("no schema has been written yet; write one before relationships")
        return self.compile(text)

    def head(self, store: TupleStore) -> CompiledSchema:
        """The schema at the store's newest revision."""
        reader = store.snapshot()
        try:
            return self.at(reader)
        finally:
            reader.close()

    def write(
        self, store: TupleStore, text: str, source_name: str = "",
        check: Callable[[Transaction, CompiledSchema], None] | None = None,
    ) -> Revision | None:
        """Compile ``text`` and store it; the transaction's revision (``TransactionContext``).

        Raises SchemaError (with positions) if it is invalid, and FailedPrecondition if it
        would orphan stored relationships (``refuse_orphans``) or ``check(tx, new schema)``
        raises it (the stored guards). Nothing is written then.
        """
        new = compile_schema(text, source_name)
        ctx = store.transaction()
        with ctx as tx:
            old_text = tx.schema_text()
            if old_text is not None and old_text != text:
                refuse_orphans(self.compile(old_text), new, tx)
            if check is not None:
                check(tx, new)
            tx.set_schema(text)
        return ctx.revision


class _Allowed(set[tuple[str, str, str, str | None, bool, str | None, bool]]):
    """The shapes of relationship a schema was found to allow (its ``derived`` entry): the
    verdict of ``check_relationship`` depends on nothing else, so each shape is checked once."""


def check_update(schema: CompiledSchema, relationship: Relationship) -> None:
    """Raise unless ``schema`` allows ``relationship`` (a write of it, not a delete): the
    typesystem's InvalidRelationship / UnknownDefinition / UnknownRelation, or InvalidArgument
    for a caveat context the caveat does not take.

    The typesystem's verdict is kept per *shape* (resource type, relation, subject type,
    subject relation, wildcard or not, caveat name, with or without expiration) with the
    schema; a refused shape is checked again each time (its error names the relationship). A
    caveat context is checked on every relationship that has one."""
    allowed = schema.derived.get(_Allowed)
    if not isinstance(allowed, _Allowed):
        allowed = schema.derived[_Allowed] = _Allowed()
    s = relationship.subject
    caveat = relationship.caveat
    shape = (
        relationship.resource.type, relationship.relation, s.type, s.relation, s.id == "*",
        None if caveat is None else caveat.name, relationship.expiration is not None,
    )
    if shape not in allowed:
        check_relationship(schema, relationship)
        allowed.add(shape)  # another thread may add it too: a set's add is atomic
    if caveat is not None:
        plan_for(schema).check_caveat_context(caveat)


def refuse_orphans(old: CompiledSchema, new: CompiledSchema, tx: Transaction) -> None:
    """Raise FailedPrecondition if a relationship stored under ``old`` is not valid under
    ``new``: a relation removed, or a subject type, caveat or expiration no longer allowed
    where relationships use it. Only relations whose allowed types shrank are read."""
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
                        **_orphan_fields(new, type_name, now, rel),
                    ) from None


def _orphan_fields(new: CompiledSchema, type_name: str, now: object, rel: Relationship) -> dict[str, str]:
    """What the change that orphans ``rel`` is, in SpiceDB's terms (its WriteSchema error
    names the ``operation``, the relationship and the subject type no longer allowed)."""
    fields = {"kind": "orphan", "relationship": str(rel)}
    if new.definition(type_name) is None:
        return {**fields, "operation": "delete_object_definition"}
    if not isinstance(now, Relation):
        return {**fields, "operation": "delete_relation"}
    subject = rel.subject
    allowed = AllowedType(
        subject.type, None if subject.is_wildcard else subject.relation, subject.is_wildcard,
        rel.caveat.name if rel.caveat is not None else None, rel.expiration is not None,
    )
    return {**fields, "operation": "remove_allowed_type", "allowed_type": str(allowed)}
