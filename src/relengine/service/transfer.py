"""Filters over every type, an export at one revision, and an import in one transaction: what
SpiceDB's bulk and counter APIs need beyond ``Engine.read`` and ``Engine.import_relationships``.

A filter whose ``resource_type`` is ``""`` matches relationships of every type (SpiceDB's
filters may leave the type out); such a filter is read type by type, over the definitions of
the schema, in name order (relationships of a type the schema lacks cannot exist: a schema
that would orphan them is refused).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable, Iterator

from ..config import DEFAULT_MAX_DEPTH
from ..engine.dispatch import Deadline
from ..errors import BatchTooLarge, InvalidArgument
from ..model import Relationship, RelationshipFilter, Revision, parse_relationship
from ..results import Operation, ReadResult, RelationshipUpdate, decode_cursor, encode_cursor, malformed_cursor
from ..schema.types import CompiledSchema
from ..storage.base import Reader, TupleStore
from . import guards
from .schemas import Schemas, check_update


def describe(filter: RelationshipFilter) -> str:
    """A filter as text, for messages (SpiceDB's ``filter`` metadata)."""
    parts = [f"resource_type:{filter.resource_type!r}"]
    if filter.resource_id is not None:
        parts.append(f"optional_resource_id:{filter.resource_id!r}")
    if filter.resource_id_prefix is not None:
        parts.append(f"optional_resource_id_prefix:{filter.resource_id_prefix!r}")
    if filter.relation is not None:
        parts.append(f"optional_relation:{filter.relation!r}")
    if filter.subject is not None:
        s = filter.subject
        sub = [f"subject_type:{s.type!r}"]
        if s.id is not None:
            sub.append(f"optional_subject_id:{s.id!r}")
        if s.relation is not None:
            sub.append(f"optional_relation:{s.relation!r}")
        parts.append("optional_subject_filter:{" + " ".join(sub) + "}")
    return " ".join(parts)


def check_filter(schema: CompiledSchema, filter: RelationshipFilter) -> None:
    """Raise unless ``filter`` names what ``schema`` has (SpiceDB's filter validation): its
    resource type and relation, its subject type and subject relation (UnknownDefinition /
    UnknownRelation), at least one field set and not both an id and an id prefix
    (InvalidArgument, kind ``filter``)."""
    subject = filter.subject
    if (
        not filter.resource_type and filter.resource_id is None and filter.resource_id_prefix is None
        and filter.relation is None and subject is None
    ):
        raise InvalidArgument(
            "the relationship filter provided is not valid: at least one field must be set",
            kind="filter", filter=describe(filter),
        )
    if filter.resource_type:
        schema.require(filter.resource_type, filter.relation)
    if subject is not None:
        schema.require(subject.type, subject.relation or None)
    if filter.resource_id is not None and filter.resource_id_prefix is not None:
        raise InvalidArgument(
            "the relationship filter provided is not valid: resource_id and resource_id_prefix "
            "cannot be set at the same time", kind="filter", filter=describe(filter),
        )


def matches(filter: RelationshipFilter, rel: Relationship) -> bool:
    """``filter.matches(rel)``, where a filter without a resource type matches every type."""
    if not filter.resource_type:
        filter = dataclasses.replace(filter, resource_type=rel.resource.type)
    return filter.matches(rel)


def per_type(schema: CompiledSchema, filter: RelationshipFilter) -> list[RelationshipFilter]:
    """``filter`` as one filter per resource type it can match, in type-name order."""
    if filter.resource_type:
        return [filter] if filter.resource_type in schema.definitions else []
    return [dataclasses.replace(filter, resource_type=name) for name in sorted(schema.definitions)]


def count(reader: Reader, schema: CompiledSchema, filter: RelationshipFilter, clock: Deadline) -> int:
    """How many relationships live at the reader's revision match ``filter``."""
    total = 0
    for each in per_type(schema, filter):
        for _ in clock.rows(reader.read(each)):
            total += 1
    return total


def export(
    reader: Reader, schema: CompiledSchema, filter: RelationshipFilter, after: Relationship | None, clock: Deadline,
) -> Iterator[ReadResult]:
    """Every relationship matching ``filter`` at the reader's revision, type by type in name
    order and in key order within a type, strictly after ``after``; each with the cursor that
    resumes after it (``resume_export``). Closes the reader when done."""
    revision = reader.revision
    try:
        for each in per_type(schema, filter):
            if after is not None and each.resource_type < after.resource.type:
                continue
            start = after if after is not None and each.resource_type == after.resource.type else None
            for rel in clock.rows(reader.read(each, after=start)):
                yield ReadResult(rel, encode_cursor(revision, str(rel)))
    finally:
        reader.close()


def resume_export(cursor: str) -> tuple[Revision, Relationship]:
    """The revision and the last relationship of an export's cursor (InvalidArgument if it
    is not one)."""
    revision, (text,) = decode_cursor(cursor, str)
    try:
        return revision, parse_relationship(text)
    except InvalidArgument:
        raise malformed_cursor(cursor) from None


def create_all(
    store: TupleStore, schemas: Schemas, relationships: Iterable[Relationship], limit: int, clock: Deadline,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> tuple[int, Revision]:
    """CREATE every relationship in one transaction, all or nothing: one that exists (or
    comes twice) raises AlreadyExists and nothing is written. Returns (count, revision).

    The relationships are gathered first, each checked against the head schema as it comes
    (so a bad one fails the import before the rest is read), and at most ``limit`` of them
    (BatchTooLarge past it: that bounds the memory an import holds); then the transaction
    checks them again against its own schema and writes them. The store's write lock is held
    only for the transaction, never while ``relationships`` is read (a client stream).
    The stored guards are enforced in the transaction (``guards.Enforcer``, ``max_depth`` for
    its walks): GuardViolated and nothing written.
    """
    schema = schemas.head(store)
    gathered: list[Relationship] = []
    for rel in relationships:
        clock.step()
        if len(gathered) >= limit:
            raise BatchTooLarge(
                f"an import is written in one transaction, which holds at most {limit} relationships "
                "on this server; split the relationships over several imports",
                limit=limit,
            )
        check_update(schema, rel)
        gathered.append(rel)
    clock.look()
    ctx = store.transaction(batch_limit=None)  # bounded above, by ``limit``
    with ctx as tx:
        current = schemas.of(tx)
        enforcer = guards.Enforcer.of(tx, schemas.of, max_depth)
        if enforcer is not None:
            enforcer.before((), [(r.resource.type, r.resource.id, r.relation, r.subject) for r in gathered])  # CREATEs only add
        for rel in gathered:
            clock.step()
            if current is not schema:
                check_update(current, rel)
            tx.apply(RelationshipUpdate(Operation.CREATE, rel))
        if enforcer is not None:
            enforcer.after()
        clock.look()  # the commit is the point of no return
    assert ctx.revision is not None
    return len(gathered), ctx.revision


__all__ = ["check_filter", "count", "create_all", "describe", "export", "matches", "per_type", "resume_export"]
