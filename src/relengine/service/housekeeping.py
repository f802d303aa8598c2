"""Housekeeping of a store through the Engine: expired-relationship deletion, garbage
collection, and bulk imports validated against the head schema."""

from __future__ import annotations

import datetime as _dt
from typing import Any, Iterable

from ..engine.dispatch import Deadline
from ..errors import InvalidArgument
from ..model import Relationship, RelationshipFilter, Revision
from ..results import Operation, RelationshipUpdate
from ..schema.types import CompiledSchema, Relation
from ..storage.base import TupleStore
from ..storage.importer import bulk_session
from .schemas import check_update


def delete_expired(store: TupleStore, schema: CompiledSchema, now: _dt.datetime, batch: int) -> tuple[int, bool]:
    """Delete relationships whose expiration is at or before ``now``, ``batch`` per write (one
    revision each); returns how many went and whether anything was written.

    Only relations of ``schema`` that allow ``with expiration`` can hold them, so only those
    are read. Expired relationships already behave as absent; this reclaims their space and
    keeps reads short.
    """
    removed, wrote = 0, False
    for type_name, definition in schema.definitions.items():
        for name, member in definition.members.items():
            if not isinstance(member, Relation) or not any(a.expiration for a in member.allowed):
                continue
            while True:
                reader = store.snapshot()
                try:
                    doomed = [
                        RelationshipUpdate(Operation.DELETE, rel)
                        for rel in reader.read(RelationshipFilter(type_name, relation=name))
                        if rel.expiration is not None and rel.expiration <= now
                    ][:batch]
                finally:
                    reader.close()
                if not doomed:
                    break
                with store.transaction() as tx:
                    for update in doomed:
                        tx.apply(update)
                wrote = True
                removed += len(doomed)
                if len(doomed) < batch:
                    break
    return removed, wrote


def collect_garbage(store: TupleStore) -> None:
    """Let the store drop dead versions and changelog entries older than its window (a store
    without the notion has nothing to do)."""
    collect = getattr(store, "gc", None)
    if collect is not None:
        collect()


def import_relationships(
    store: TupleStore, schema: CompiledSchema, relationships: Iterable[Relationship], batch_size: int,
    clock: Deadline | None = None, loader: Any = None,
) -> tuple[int, Revision]:
    """TOUCH ``relationships`` in transactions of ``batch_size``, each validated against
    ``schema`` first; returns (count, last revision). InvalidArgument if the store has no bulk
    path; the schema's errors for an invalid relationship (earlier batches stay written).

    ``clock`` (the request's deadline and cancellation) is stepped per relationship and looked
    at once more right before each batch commits: DeadlineExceeded or Cancelled then ends the
    import. The batches committed before stay (each is its own transaction; importing again
    changes nothing), the batch being gathered is dropped, and nothing is committed after.
    ``loader``: what writes each batch (``bulk_touch``; default the store itself), such as
    ``guards.GuardedLoader``.
    """
    if not hasattr(store, "bulk_touch"):
        raise InvalidArgument("this store has no bulk import path")
    if loader is None:
        loader = store
    count = 0
    revision = store.head_revision()
    batch: list[tuple[Any, ...]] = []
    clock = clock or Deadline(None, "import")
    valid: set[tuple[Any, ...]] = set()  # shapes the schema allows: each is checked once
    step = clock.step
    with bulk_session(loader) as session:
        for rel in relationships:
            step()
            s = rel.subject
            caveat = rel.caveat
            row = (rel.resource.type, rel.resource.id, rel.relation, s.type, s.id, s.relation or "", caveat, rel.expiration)
            shape = (row[0], row[2], row[3], row[5], row[4] == "*",
                     None if caveat is None else caveat.name, row[7] is None)
            if shape not in valid or (caveat is not None and caveat.context):  # a context's values vary
                check_update(schema, rel)
                valid.add(shape)
            batch.append(row)
            if len(batch) >= batch_size:
                clock.look()
                revision, _ = session.bulk_touch(batch)
                count += len(batch)
                batch = []
        if batch:
            clock.look()
            revision, _ = session.bulk_touch(batch)
            count += len(batch)
    return count, revision


def import_file(
    store: TupleStore, schema: CompiledSchema, source: Any, fmt: str | None, loader: Any = None, **options: Any
) -> Any:
    """Import a file (text lines, CSV or YAML; see ``storage.importer``), validating every
    relationship against ``schema`` (caveat contexts included, as a write does). Returns the
    importer's ImportResult."""
    from ..storage.importer import import_relationships as load

    def validate(rel: Relationship) -> None:
        check_update(schema, rel)

    return load(loader or store, source, fmt, validate=validate, **options)  # type: ignore[arg-type]
