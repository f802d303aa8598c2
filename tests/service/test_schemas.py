"""Schemas: compiled once per text, remembered per revision; orphan refusal; write validation."""

from __future__ import annotations

import pytest

from relengine.errors import FailedPrecondition, InvalidArgument, InvalidRelationship, SchemaNotFound, UnknownRelation
from relengine.model import parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.service.schemas import Schemas, check_update
from relengine.storage.memory import MemoryStore

SCHEMA = """
definition user {}

caveat on_network(ip string) {
    ip == "10.0.0.1"
}

definition doc {
    relation viewer: user | user with on_network
    relation banned: user
    permission view = viewer - banned
}
"""


def touch(store: MemoryStore, *texts: str) -> None:
    with store.transaction() as tx:
        for text in texts:
            tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship(text)))


def test_a_revision_without_a_schema_has_none() -> None:
    store = MemoryStore()
    with pytest.raises(SchemaNotFound):
        Schemas().head(store)
    with store.transaction() as tx, pytest.raises(SchemaNotFound):
        Schemas().of(tx)


def test_revisions_that_share_a_text_share_one_compiled_schema() -> None:
    store, schemas = MemoryStore(), Schemas()
    first = schemas.write(store, SCHEMA)
    touch(store, "doc:a#viewer@user:ann")
    one = schemas.head(store)
    assert store.head_revision() > first
    reader = store.snapshot(first)
    assert schemas.at(reader) is one  # another revision, the same text: the same object
    assert schemas.compile(SCHEMA) is one
    assert Schemas().compile(SCHEMA) == one and Schemas().compile(SCHEMA) is not one


def test_the_schema_of_a_revision_stays_that_revisions() -> None:
    store, schemas = MemoryStore(), Schemas()
    old = schemas.write(store, SCHEMA)
    wider = SCHEMA.replace("relation banned: user", "relation banned: user\n    relation owner: user")
    new = schemas.write(store, wider)
    assert new > old
    assert schemas.at(store.snapshot(old)).member("doc", "owner") is None
    assert schemas.at(store.snapshot(new)).member("doc", "owner") is not None


def test_a_schema_that_would_orphan_relationships_is_refused_and_nothing_is_written() -> None:
    store, schemas = MemoryStore(), Schemas()
    schemas.write(store, SCHEMA)
    touch(store, "doc:a#banned@user:bob")
    head = store.head_revision()
    without = SCHEMA.replace("    relation banned: user\n", "").replace("viewer - banned", "viewer")
    with pytest.raises(FailedPrecondition, match="orphan") as info:
        schemas.write(store, without)
    assert info.value.fields() == {
        "definition": "doc", "relation": "banned", "kind": "orphan", "operation": "delete_relation",
        "relationship": "doc:a#banned@user:bob",
    }
    assert store.head_revision() == head
    widened = SCHEMA.replace("relation banned: user", "relation banned: user | doc")
    assert schemas.write(store, widened) > head  # nothing that was allowed is refused


def test_check_update_validates_against_the_schema() -> None:
    schema = Schemas().compile(SCHEMA)
    check_update(schema, parse_relationship('doc:a#viewer@user:ann[on_network:{"ip":"10.0.0.1"}]'))
    with pytest.raises(InvalidArgument):
        check_update(schema, parse_relationship('doc:a#viewer@user:ann[on_network:{"port":1}]'))
    with pytest.raises(UnknownRelation):
        check_update(schema, parse_relationship("doc:a#owner@user:ann"))


def test_check_update_keeps_the_verdict_per_shape_but_names_each_refused_relationship() -> None:
    """The typesystem's verdict is kept per shape with the schema; a refused shape is refused
    again, its error naming the relationship of that call, and a caveat context is checked on
    every relationship (its values are not part of the shape)."""
    schema = Schemas().compile(SCHEMA)
    check_update(schema, parse_relationship("doc:a#viewer@user:ann"))
    check_update(schema, parse_relationship("doc:b#viewer@user:bob"))  # the same shape: allowed
    for who in ("ann", "bob"):
        with pytest.raises(InvalidRelationship, match=f"doc:a#viewer@user:{who}\\[expiration"):
            check_update(schema, parse_relationship(f"doc:a#viewer@user:{who}[expiration:2300-01-01T00:00:00Z]"))
        with pytest.raises(InvalidRelationship, match=f"user:{who}#member"):
            check_update(schema, parse_relationship(f"doc:a#viewer@user:{who}#member"))
    check_update(schema, parse_relationship('doc:a#viewer@user:ann[on_network:{"ip":"10.0.0.1"}]'))
    with pytest.raises(InvalidArgument):  # the same shape, a context the caveat does not take
        check_update(schema, parse_relationship('doc:a#viewer@user:ann[on_network:{"port":1}]'))
    narrower = Schemas().compile(SCHEMA.replace("relation viewer: user | user with on_network", "relation viewer: user with on_network"))
    with pytest.raises(InvalidRelationship):  # another schema keeps its own verdicts
        check_update(narrower, parse_relationship("doc:b#viewer@user:bob"))
