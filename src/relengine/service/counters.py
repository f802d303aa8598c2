"""Relationship counters (SpiceDB's experimental counters): a name for a relationship filter,
registered in the store so every server on it shares them, versioned by revision like the
schema (``Transaction.set_counters``). Counting reads the filter's relationships at head.

A counter's filter is stored as ``msgpack([resource_type, resource_id, resource_id_prefix,
relation, subject_type, subject_id, subject_relation])`` (None for what is unset; a subject
type of None: no subject filter).
"""

from __future__ import annotations

from typing import Any

import msgpack

from ..engine.dispatch import Deadline
from ..errors import FailedPrecondition, StorageError
from ..model import RelationshipFilter, Revision, SubjectFilter
from ..storage.base import TupleStore
from .schemas import Schemas
from .transfer import check_filter, count


def encode(filter: RelationshipFilter) -> bytes:
    s = filter.subject
    packed: bytes = msgpack.packb(
        [filter.resource_type, filter.resource_id, filter.resource_id_prefix, filter.relation,
         None if s is None else s.type, None if s is None else s.id, None if s is None else s.relation],
        use_bin_type=True,
    )
    return packed


def decode(data: bytes) -> RelationshipFilter:
    try:
        rtype, rid, prefix, relation, stype, sid, srel = msgpack.unpackb(data, raw=False)
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise StorageError(f"a stored relationship counter cannot be read: {exc}") from exc
    subject = None if stype is None else SubjectFilter(stype, sid, srel)
    return RelationshipFilter(rtype, rid, prefix, relation, subject)


def already_registered(name: str, filter: RelationshipFilter) -> FailedPrecondition:
    s = filter.subject
    return FailedPrecondition(
        f"counter with name `{name}` already registered", kind="counter_registered", counter_name=name,
        new_filter_resource_type=filter.resource_type, new_filter_resource_id=filter.resource_id or "",
        new_filter_resource_id_prefix=filter.resource_id_prefix or "", new_filter_relation=filter.relation or "",
        new_filter_subject_type="" if s is None else s.type,
        new_filter_subject_id="" if s is None or s.id is None else s.id,
        new_filter_subject_relation="" if s is None or s.relation is None else s.relation,
    )


def not_registered(name: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"counter with name `{name}` not found", kind="counter_not_registered", counter_name=name
    )


def register(store: TupleStore, schemas: Schemas, name: str, filter: RelationshipFilter) -> Revision:
    """Register ``name`` for ``filter`` (checked against the schema); FailedPrecondition
    (kind ``counter_registered``) if the name is taken. Returns the revision it commits."""
    ctx = store.transaction()
    with ctx as tx:
        check_filter(schemas.of(tx), filter)
        counters = tx.counters()
        if name in counters:
            raise already_registered(name, filter)
        counters[name] = encode(filter)
        tx.set_counters(counters)
    assert ctx.revision is not None
    return ctx.revision


def unregister(store: TupleStore, name: str) -> Revision:
    """Remove ``name``; FailedPrecondition (kind ``counter_not_registered``) if unknown."""
    ctx = store.transaction()
    with ctx as tx:
        counters = tx.counters()
        if counters.pop(name, None) is None:
            raise not_registered(name)
        tx.set_counters(counters)
    assert ctx.revision is not None
    return ctx.revision


def read(store: TupleStore, schemas: Schemas, name: str, clock: Deadline) -> tuple[int, Revision]:
    """How many relationships match counter ``name`` at head, and that revision."""
    reader = store.snapshot()
    try:
        stored: Any = reader.counters().get(name)
        if stored is None:
            raise not_registered(name)
        return count(reader, schemas.at(reader), decode(stored), clock), reader.revision
    finally:
        reader.close()


__all__ = ["already_registered", "decode", "encode", "not_registered", "read", "register", "unregister"]
