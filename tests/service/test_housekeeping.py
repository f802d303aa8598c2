"""Housekeeping: expired relationships deleted in batches, bulk imports validated against a
schema and stopped between batches by their deadline or their caller's going."""

from __future__ import annotations

import datetime as dt
from typing import Iterator

import pytest

from relengine.engine.dispatch import Deadline
from relengine.errors import Cancelled, InvalidArgument, InvalidRelationship, UnknownRelation
from relengine.model import Relationship, RelationshipFilter, parse_relationship
from relengine.schema import compile_schema
from relengine.service import housekeeping
from relengine.storage.memory import MemoryStore

SCHEMA = """
use expiration

definition user {}

definition doc {
    relation viewer: user | user with expiration
    relation owner: user
}
"""
NOW = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)


def relationships(store: MemoryStore) -> list[str]:
    reader = store.snapshot()
    try:
        return sorted(str(r) for r in reader.read(RelationshipFilter("doc")))
    finally:
        reader.close()


def test_delete_expired_goes_in_batches_and_keeps_the_rest() -> None:
    store, schema = MemoryStore(), compile_schema(SCHEMA)
    count, _ = housekeeping.import_relationships(
        store, schema,
        [parse_relationship(f"doc:a#viewer@user:u{i}[expiration:2020-01-01T00:00:00Z]") for i in range(5)]
        + [parse_relationship("doc:a#viewer@user:late[expiration:2040-01-01T00:00:00Z]"), parse_relationship("doc:a#owner@user:own")],
        batch_size=100,
    )
    assert count == 7
    head = store.head_revision()
    assert housekeeping.delete_expired(store, schema, NOW, batch=2) == (5, True)
    assert store.head_revision().value == head.value + 3  # batches of 2, 2 and 1
    assert relationships(store) == ["doc:a#owner@user:own", "doc:a#viewer@user:late[expiration:2040-01-01T00:00:00Z]"]
    assert housekeeping.delete_expired(store, schema, NOW, batch=2) == (0, False)


def test_collect_garbage_runs_the_stores_own() -> None:
    store = MemoryStore()
    housekeeping.collect_garbage(store)
    housekeeping.collect_garbage(object())  # type: ignore[arg-type]  # a store without the notion


def test_import_validates_each_relationship_and_keeps_earlier_batches() -> None:
    store, schema = MemoryStore(), compile_schema(SCHEMA)
    good = [parse_relationship(f"doc:a#owner@user:u{i}") for i in range(3)]
    with pytest.raises(UnknownRelation):
        housekeeping.import_relationships(store, schema, [*good, parse_relationship("doc:a#editor@user:x")], batch_size=2)
    assert len(relationships(store)) == 2  # the first batch
    again, revision = housekeeping.import_relationships(store, schema, good, batch_size=2)
    assert again == 3 and revision == store.head_revision()


@pytest.mark.parametrize(("goes_at", "kept"), [(9, 0), (14, 10), (19, 10)])
def test_an_import_whose_caller_has_gone_commits_nothing_more(goes_at: int, kept: int) -> None:
    """Batches of 10; the caller goes as relationship ``goes_at`` (0-based) is read. The batches
    committed before stay; the batch being gathered, even one just filled, is not committed."""
    store, schema = MemoryStore(), compile_schema(SCHEMA)
    gone = [False]

    def feed() -> Iterator[Relationship]:
        for i in range(35):
            gone[0] = gone[0] or i == goes_at
            yield parse_relationship(f"doc:a#owner@user:u{i:02d}")

    with pytest.raises(Cancelled, match="the import was cancelled"):
        housekeeping.import_relationships(store, schema, feed(), batch_size=10, clock=Deadline(None, "import", lambda: gone[0]))
    assert relationships(store) == [f"doc:a#owner@user:u{i:02d}" for i in range(kept)]


def test_import_needs_a_bulk_path() -> None:
    with pytest.raises(InvalidArgument, match="bulk"):
        housekeeping.import_relationships(object(), compile_schema(SCHEMA), [], batch_size=10)  # type: ignore[arg-type]


def test_import_file_validates_against_the_schema() -> None:
    store, schema = MemoryStore(), compile_schema(SCHEMA)
    result = housekeeping.import_file(store, schema, ["doc:a#owner@user:ann", "doc:b#owner@user:bob"], "text")
    assert result.relationships == 2 and relationships(store) == ["doc:a#owner@user:ann", "doc:b#owner@user:bob"]
    with pytest.raises(InvalidRelationship):
        housekeeping.import_file(store, schema, ["doc:c#owner@doc:x"], "text")


def test_import_file_checks_every_caveat_context_not_one_per_shape() -> None:
    """A context's values can be wrong where its shape (relation, subject type, caveat) is not:
    the second line was stored unchecked once the first had passed."""
    schema = compile_schema(
        "caveat small(n int) {\n    n < 10\n}\ndefinition user {}\n"
        "definition doc {\n    relation viewer: user with small\n}\n"
    )
    store = MemoryStore()
    lines = [
        'doc:a#viewer@user:ann[small:{"n": 1}]',
        'doc:b#viewer@user:bob[small:{"n": "many"}]',
        'doc:c#viewer@user:cid[small:{"m": 2}]',
        "doc:d#viewer@user:dan[small]",
    ]
    result = housekeeping.import_file(store, schema, lines, "text", on_error="skip")
    assert [e.line for e in result.errors] == [2, 3]
    assert "n" in result.errors[0].message and "m" in result.errors[1].message
    assert relationships(store) == ['doc:a#viewer@user:ann[small:{"n":1}]', "doc:d#viewer@user:dan[small]"]


def test_import_relationships_checks_caveat_contexts_as_a_write_does() -> None:
    """The bulk path (Import over gRPC) stored a context its caveat cannot take."""
    schema = compile_schema(
        "caveat small(n int) {\n    n < 10\n}\ndefinition user {}\n"
        "definition doc {\n    relation viewer: user with small\n}\n"
    )
    store = MemoryStore()
    bad = parse_relationship('doc:b#viewer@user:bob[small:{"n": "many"}]')
    with pytest.raises(InvalidArgument, match="`n`"):
        housekeeping.import_relationships(store, schema, [bad], batch_size=10)
    assert relationships(store) == []
