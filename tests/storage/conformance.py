"""The storage contract (storage/base.py), checked against every backend.

Collected by conftest.py; ``store`` and ``make_store`` are parametrized over memory and LMDB.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Iterable

import pytest

from relengine.errors import (
    AlreadyExists,
    BatchTooLarge,
    DeadlineExceeded,
    InvalidArgument,
    PreconditionFailed,
    RevisionUnavailable,
    Unavailable,
)
from relengine.model import (
    CaveatRef,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    parse_relationship,
)
from relengine.results import Operation, Precondition, PreconditionKind, RelationshipUpdate
from relengine.storage import objects
from relengine.storage.base import SMALL_OBJECT, check_preconditions

UTC = dt.timezone.utc
DAY = 86_400.0


def rel(text: str) -> Relationship:
    return parse_relationship(text)


def update(op: Operation, text: str) -> RelationshipUpdate:
    return RelationshipUpdate(op, rel(text))


def write(store: Any, *updates: RelationshipUpdate, schema: str | None = None) -> Revision:
    ctx = store.transaction()
    with ctx as tx:
        if schema is not None:
            tx.set_schema(schema)
        for u in updates:
            tx.apply(u)
    revision: Revision | None = ctx.revision
    assert revision is not None
    return revision


def touch(store: Any, *texts: str) -> Revision:
    return write(store, *(update(Operation.TOUCH, t) for t in texts))


def delete(store: Any, *texts: str) -> Revision:
    return write(store, *(update(Operation.DELETE, t) for t in texts))


def strs(rels: Iterable[Relationship]) -> list[str]:
    return [str(r) for r in rels]


# -- revisions and basic reads --------------------------------------------------------------


def test_an_empty_store_is_at_revision_zero(store: Any) -> None:
    assert store.head_revision() == Revision(0)
    reader = store.snapshot()
    assert reader.revision == Revision(0)
    assert reader.schema_text() is None
    assert list(reader.subjects("doc", "d1", "viewer")) == []
    assert reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann")) is None


def test_a_store_has_one_unique_id_for_its_life(store: Any) -> None:
    unique = store.unique_id()
    assert isinstance(unique, str) and len(unique) >= 16
    touch(store, "doc:1#viewer@user:ann")
    assert store.unique_id() == unique


def test_each_write_gets_the_next_revision_and_old_readers_keep_their_view(store: Any) -> None:
    r1 = touch(store, "doc:d1#viewer@user:ann")
    r2 = touch(store, "doc:d1#viewer@user:bob")
    assert (r1, r2) == (Revision(1), Revision(2))
    assert store.head_revision() == r2
    old = store.snapshot(r1)
    r3 = delete(store, "doc:d1#viewer@user:ann")
    assert strs(old.subjects("doc", "d1", "viewer")) == ["doc:d1#viewer@user:ann"]
    assert strs(store.snapshot(r2).subjects("doc", "d1", "viewer")) == [
        "doc:d1#viewer@user:ann",
        "doc:d1#viewer@user:bob",
    ]
    assert strs(store.snapshot(r3).subjects("doc", "d1", "viewer")) == ["doc:d1#viewer@user:bob"]
    assert strs(store.snapshot().subjects("doc", "d1", "viewer")) == ["doc:d1#viewer@user:bob"]
    assert store.snapshot(Revision(0)).relationship(
        "doc", "d1", "viewer", SubjectRef("user", "bob")
    ) is None


def test_a_revision_newer_than_head_is_unavailable(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    with pytest.raises(RevisionUnavailable, match="newer"):
        store.snapshot(Revision(2))


def test_revision_tokens_round_trip(store: Any) -> None:
    revision = touch(store, "doc:d1#viewer@user:ann")
    assert store.snapshot(Revision.from_token(revision.token())).revision == revision


def test_point_reads_distinguish_every_part_of_the_key(store: Any) -> None:
    touch(store, "doc:d1#viewer@group:eng#member", "doc:d1#viewer@user:ann")
    reader = store.snapshot()
    found = reader.relationship("doc", "d1", "viewer", SubjectRef("group", "eng", "member"))
    assert found == rel("doc:d1#viewer@group:eng#member")
    assert reader.relationship("doc", "d1", "viewer", SubjectRef("group", "eng")) is None
    assert reader.relationship("doc", "d1", "editor", SubjectRef("user", "ann")) is None
    assert reader.relationship("doc", "d2", "viewer", SubjectRef("user", "ann")) is None
    assert reader.relationship("folder", "d1", "viewer", SubjectRef("user", "ann")) is None
    # "" and None are the same subject relation; the store returns None.
    same = reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann", ""))
    assert same is not None and same.subject == SubjectRef("user", "ann")


def test_subjects_are_ordered_and_include_wildcards_and_usersets(store: Any) -> None:
    touch(
        store,
        "doc:d1#viewer@user:bob",
        "doc:d1#viewer@user:*",
        "doc:d1#viewer@group:eng#member",
        "doc:d1#viewer@group:eng",
        "doc:d1#viewer@user:ann",
        "doc:d1#editor@user:zed",
        "doc:d10#viewer@user:zed",
        "doc:d#viewer@user:zed",
    )
    assert strs(store.snapshot().subjects("doc", "d1", "viewer")) == [
        "doc:d1#viewer@group:eng",
        "doc:d1#viewer@group:eng#member",
        "doc:d1#viewer@user:*",
        "doc:d1#viewer@user:ann",
        "doc:d1#viewer@user:bob",
    ]


def test_resources_of_a_subject_narrow_by_type_and_relation(store: Any) -> None:
    touch(
        store,
        "doc:d2#viewer@user:ann",
        "doc:d1#viewer@user:ann",
        "doc:d1#editor@user:ann",
        "folder:f1#viewer@user:ann",
        "doc:d3#viewer@user:ann2",
        "doc:d4#viewer@group:eng#member",
        "doc:d5#viewer@group:eng",
    )
    reader = store.snapshot()
    ann = SubjectRef("user", "ann")
    assert strs(reader.resources(ann)) == [
        "doc:d1#editor@user:ann",
        "doc:d1#viewer@user:ann",
        "doc:d2#viewer@user:ann",
        "folder:f1#viewer@user:ann",
    ]
    assert strs(reader.resources(ann, "doc")) == [
        "doc:d1#editor@user:ann",
        "doc:d1#viewer@user:ann",
        "doc:d2#viewer@user:ann",
    ]
    assert strs(reader.resources(ann, "doc", "viewer")) == [
        "doc:d1#viewer@user:ann",
        "doc:d2#viewer@user:ann",
    ]
    assert strs(reader.resources(ann, None, "viewer")) == [
        "doc:d1#viewer@user:ann",
        "doc:d2#viewer@user:ann",
        "folder:f1#viewer@user:ann",
    ]
    assert strs(reader.resources(SubjectRef("group", "eng", "member"))) == [
        "doc:d4#viewer@group:eng#member"
    ]
    assert strs(reader.resources(SubjectRef("group", "eng"))) == ["doc:d5#viewer@group:eng"]


def object_rows(reader: Any, rtype: str, rid: str) -> dict[str, list[Any]] | None:
    value = reader.object_rows(rtype, rid)
    return None if value is None else objects.decode(value)


def test_object_rows_and_subject_rows(store: Any) -> None:
    r1 = touch(
        store,
        "doc:d1#viewer@user:ann",
        "doc:d1#viewer@group:eng#member",
        "doc:d1#viewer@user:bob[cav]",
        "doc:d1#editor@user:*",
        "doc:d10#viewer@user:zed",
    )
    delete(store, "doc:d1#viewer@user:ann")
    cav = (CaveatRef("cav"), None)
    old, new = store.snapshot(r1), store.snapshot()
    assert object_rows(old, "doc", "d1") == {
        "editor": [("user", "*", None, None)],
        "viewer": [("user", "ann", None, None), ("group", "eng", "member", None), ("user", "bob", None, cav)],
    }
    assert object_rows(new, "doc", "d1") == {
        "editor": [("user", "*", None, None)],
        "viewer": [("group", "eng", "member", None), ("user", "bob", None, cav)],
    }
    value = new.object_rows("doc", "d1")
    assert objects.contains(value, objects.needle("user", "*"), frozenset({b"editor"}))
    assert not objects.contains(value, objects.needle("user", "*"), frozenset({b"viewer"}))
    assert not objects.contains(value, objects.needle("user", "ann"), frozenset({b"viewer", b"editor"}))
    assert objects.contains(old.object_rows("doc", "d1"), objects.needle("user", "ann"), frozenset({b"viewer"}))
    assert objects.targets(value, objects.header("editor")) == [("user", "*")]
    assert objects.targets(value, objects.header("viewer")) == []
    assert object_rows(new, "doc", "nothing") == {}
    assert old.subject_rows("doc", "d1", "viewer", "user") == [
        ("user", "ann", None, None), ("user", "bob", None, cav)
    ]
    assert new.subject_rows("doc", "d1", "viewer", "group") == [("group", "eng", "member", None)]
    assert new.subject_rows("doc", "d1", "viewer", "team") == []
    # ``limit``: the first rows in subject order, the same at head and at an older revision.
    assert old.subject_rows("doc", "d1", "viewer", "user", limit=1) == [("user", "ann", None, None)]
    assert new.subject_rows("doc", "d1", "viewer", "user", limit=1) == [("user", "bob", None, cav)]
    assert old.subject_rows("doc", "d1", "viewer", "user", limit=5) == old.subject_rows("doc", "d1", "viewer", "user")
    assert new.subject_rows("doc", "d1", "viewer", "group", limit=0) == []


def test_resource_ids(store: Any) -> None:
    """The ids of one (subject, resource type, relation): plain ones as ids, caveated and
    expiring ones with their payload; others' relations, types and subjects left out; each
    revision as it was (a deleted one still seen at the revision before)."""
    long_id = "x" * 200
    r1 = touch(
        store,
        "doc:d1#viewer@user:ann",
        "doc:d2#viewer@user:ann",
        "doc:d3#viewer@user:ann[cav]",
        "doc:d4#viewer@user:ann[expiration:2300-01-01T00:00:00Z]",
        f"doc:{long_id}#viewer@user:ann",
        "doc:d5#editor@user:ann",
        "folder:f1#viewer@user:ann",
        "doc:d6#viewer@user:bob",
        "doc:d7#viewer@group:eng#member",
    )
    delete(store, "doc:d2#viewer@user:ann")
    ann = SubjectRef("user", "ann")
    expires = dt.datetime(2300, 1, 1, tzinfo=UTC)
    for reader, plain in ((store.snapshot(r1), ["d1", "d2", long_id]), (store.snapshot(), ["d1", long_id])):
        ids, others = reader.resource_ids(ann, "doc", "viewer")
        assert sorted(ids) == sorted(plain)
        assert sorted(others) == [("d3", (CaveatRef("cav"), None)), ("d4", (None, expires))]
    reader = store.snapshot()
    assert reader.resource_ids(ann, "doc", "owner") == ([], [])
    assert reader.resource_ids(SubjectRef("group", "eng", "member"), "doc", "viewer") == (["d7"], [])
    assert reader.resource_ids(SubjectRef("group", "eng"), "doc", "viewer") == ([], [])


def test_object_rows_of_large_objects_and_of_every_revision(store: Any) -> None:
    """More than SMALL_OBJECT relationships: None (the engine reads such objects by index);
    each revision sees the object as it was then, however often it changed since."""
    names = [f"u{i:02}" for i in range(SMALL_OBJECT + 1)]
    revisions = [touch(store, f"doc:big#viewer@user:{n}") for n in names]
    expiring = dt.datetime(2300, 1, 1, tzinfo=UTC)
    later = write(store, RelationshipUpdate(
        Operation.TOUCH, Relationship(ObjectRef("doc", "big"), "owner", SubjectRef("user", "x"), None, expiring)
    ))
    for count, revision in enumerate(revisions, 1):
        rows = object_rows(store.snapshot(revision), "doc", "big")
        if count > SMALL_OBJECT:
            assert rows is None
        else:
            assert rows == {"viewer": [("user", n, None, None) for n in names[:count]]}
    assert object_rows(store.snapshot(later), "doc", "big") is None
    shrunk = delete(store, *[f"doc:big#viewer@user:{n}" for n in names[1:]])
    assert object_rows(store.snapshot(shrunk), "doc", "big") == {
        "viewer": [("user", "u00", None, None)],
        "owner": [("user", "x", None, (None, expiring))],
    }
    gone = delete(store, "doc:big#viewer@user:u00", "doc:big#owner@user:x")
    assert object_rows(store.snapshot(gone), "doc", "big") == {}
    assert object_rows(store.snapshot(revisions[0]), "doc", "big") == {"viewer": [("user", "u00", None, None)]}


def test_caveats_and_expirations_are_stored_faithfully_and_not_filtered(store: Any) -> None:
    past = dt.datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)
    future = dt.datetime(2300, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=-7)))
    caveated = Relationship(
        ObjectRef("doc", "d1"),
        "viewer",
        SubjectRef("user", "ann"),
        CaveatRef("only_if", {"b": [1, 2.5, "x", None, True], "a": {"nested": {"z": 1}}}),
        past,
    )
    expiring = Relationship(
        ObjectRef("doc", "d1"), "viewer", SubjectRef("user", "bob"), None, future
    )
    bare_caveat = Relationship(
        ObjectRef("doc", "d1"), "viewer", SubjectRef("user", "cid"), CaveatRef("no_context")
    )
    write(store, *(RelationshipUpdate(Operation.TOUCH, r) for r in (caveated, expiring, bare_caveat)))
    reader = store.snapshot()
    got = reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann"))
    assert got == caveated
    assert got is not None and got.expiration is not None and got.caveat is not None
    assert got.expiration.utcoffset() == dt.timedelta(0)
    assert got.expiration.microsecond == 789012
    assert dict(got.caveat.context or {}) == {
        "a": {"nested": {"z": 1}},
        "b": [1, 2.5, "x", None, True],
    }
    assert list(reader.subjects("doc", "d1", "viewer")) == [caveated, expiring, bare_caveat]
    assert list(reader.resources(SubjectRef("user", "bob"))) == [expiring]
    assert list(reader.read(RelationshipFilter("doc"))) == [caveated, expiring, bare_caveat]


def test_a_naive_expiration_is_rejected(store: Any) -> None:
    naive = Relationship(
        ObjectRef("doc", "d1"), "viewer", SubjectRef("user", "ann"), None, dt.datetime(2030, 1, 1)
    )
    with pytest.raises(InvalidArgument, match="time zone"):
        write(store, RelationshipUpdate(Operation.TOUCH, naive))
    assert store.head_revision() == Revision(0)


def test_long_ids_and_unusual_strings_round_trip(store: Any) -> None:
    long_id = "x" * 1024
    other = "x" * 1023 + "y"
    texts = [
        f"doc:{long_id}#viewer@user:{other}",
        f"doc:{other}#viewer@user:{long_id}",
        f"org/team/doc:{long_id}#viewer@org/team/user:ann",
        "doc:a|b=c+d-e/f_g#viewer@user:h",
    ]
    touch(store, *texts)
    reader = store.snapshot()
    assert sorted(strs(reader.read(RelationshipFilter("doc")))) == sorted(
        t for t in texts if t.startswith("doc:")
    )
    assert strs(reader.subjects("doc", long_id, "viewer")) == [texts[0]]
    assert strs(reader.resources(SubjectRef("user", long_id))) == [texts[1]]
    assert str(reader.relationship("doc", other, "viewer", SubjectRef("user", long_id))) == texts[1]
    everything = list(reader.read(RelationshipFilter("doc")))
    assert list(reader.read(RelationshipFilter("doc", resource_id_prefix="x" * 100))) == [
        r for r in everything if r.resource.id.startswith("x" * 100)
    ]
    assert strs(reader.read(RelationshipFilter("doc", resource_id_prefix=other))) == [texts[1]]
    delete(store, texts[0])
    assert strs(store.snapshot().subjects("doc", long_id, "viewer")) == []
    assert strs(reader.subjects("doc", long_id, "viewer")) == [texts[0]]


# -- writes -------------------------------------------------------------------------------


def test_create_of_a_live_relationship_fails_and_aborts_the_transaction(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    with pytest.raises(AlreadyExists):
        write(
            store,
            update(Operation.CREATE, "doc:d2#viewer@user:ann"),
            update(Operation.CREATE, "doc:d1#viewer@user:ann"),
        )
    assert store.head_revision() == Revision(1)
    assert store.snapshot().relationship("doc", "d2", "viewer", SubjectRef("user", "ann")) is None


def test_create_after_delete_and_create_within_one_transaction(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    write(
        store,
        update(Operation.DELETE, "doc:d1#viewer@user:ann"),
        update(Operation.CREATE, "doc:d1#viewer@user:ann[cav]"),
    )
    assert str(
        store.snapshot().relationship("doc", "d1", "viewer", SubjectRef("user", "ann"))
    ) == "doc:d1#viewer@user:ann[cav]"
    with pytest.raises(AlreadyExists):
        write(
            store,
            update(Operation.CREATE, "doc:d9#viewer@user:ann"),
            update(Operation.CREATE, "doc:d9#viewer@user:ann"),
        )


def test_touch_replaces_caveat_and_expiration_and_the_same_touch_is_no_change(store: Any) -> None:
    r1 = touch(store, 'doc:d1#viewer@user:ann[cav:{"a":1,"b":2}]')
    assert touch(store, 'doc:d1#viewer@user:ann[cav:{"b":2,"a":1}]') == r1
    r2 = touch(store, "doc:d1#viewer@user:ann[expiration:2300-01-01T00:00:00Z]")
    assert r2 == Revision(2)
    assert str(store.snapshot(r1).relationship("doc", "d1", "viewer", SubjectRef("user", "ann"))) == (
        'doc:d1#viewer@user:ann[cav:{"a":1,"b":2}]'
    )
    assert str(store.snapshot(r2).relationship("doc", "d1", "viewer", SubjectRef("user", "ann"))) == (
        "doc:d1#viewer@user:ann[expiration:2300-01-01T00:00:00Z]"
    )


def test_a_transaction_that_changes_nothing_commits_no_revision(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    assert delete(store, "doc:d2#viewer@user:ann") == Revision(1)
    assert write(store) == Revision(1)
    assert write(
        store,
        update(Operation.TOUCH, "doc:d3#viewer@user:ann"),
        update(Operation.DELETE, "doc:d3#viewer@user:ann"),
        update(Operation.DELETE, "doc:d1#viewer@user:ann"),
        update(Operation.TOUCH, "doc:d1#viewer@user:ann"),
    ) == Revision(1)
    assert store.head_revision() == Revision(1)
    assert list(store.watch(Revision(0), timeout=0)) != []
    assert list(store.watch(Revision(1), timeout=0)) == []


def test_a_relationship_changed_and_changed_back_in_one_transaction_is_no_change(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    assert write(
        store,
        update(Operation.TOUCH, 'doc:d1#viewer@user:ann[cav:{"a":1}]'),
        update(Operation.TOUCH, "doc:d1#viewer@user:ann"),
    ) == Revision(1)
    revision = write(
        store,
        update(Operation.TOUCH, 'doc:d1#viewer@user:ann[cav:{"a":1}]'),
        update(Operation.TOUCH, "doc:d1#viewer@user:ann[expiration:2300-01-01T00:00:00Z]"),
    )
    assert revision == Revision(2)
    assert strs(store.snapshot(revision).subjects("doc", "d1", "viewer")) == [
        "doc:d1#viewer@user:ann[expiration:2300-01-01T00:00:00Z]"
    ]
    assert strs(store.snapshot(Revision(1)).subjects("doc", "d1", "viewer")) == ["doc:d1#viewer@user:ann"]


def test_an_exception_in_the_block_aborts_everything(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.set_schema("definition user {}")
            tx.apply(update(Operation.TOUCH, "doc:d2#viewer@user:ann"))
            tx.apply(update(Operation.DELETE, "doc:d1#viewer@user:ann"))
            raise RuntimeError("boom")
    reader = store.snapshot()
    assert store.head_revision() == Revision(1)
    assert reader.schema_text() is None
    assert strs(reader.read(RelationshipFilter("doc"))) == ["doc:d1#viewer@user:ann"]
    # The store is still writable afterwards.
    assert touch(store, "doc:d3#viewer@user:ann") == Revision(2)


def test_the_batch_limit_is_enforced_with_a_clear_message(make_store: Any) -> None:
    store = make_store()
    updates = [update(Operation.TOUCH, f"doc:d{i}#viewer@user:ann") for i in range(1001)]
    assert write(store, *updates[:1000]) == Revision(1)
    with pytest.raises(BatchTooLarge, match="at most 1000 updates"):
        write(store, *updates)
    assert store.head_revision() == Revision(1)
    small = make_store(batch_limit=2)
    with pytest.raises(BatchTooLarge, match="at most 2 updates"):
        write(small, *updates[:3])


def test_a_transaction_may_set_its_own_batch_limit(make_store: Any) -> None:
    store = make_store(batch_limit=2)
    updates = [update(Operation.TOUCH, f"doc:d{i}#viewer@user:ann") for i in range(5)]
    ctx = store.transaction(batch_limit=None)  # a bulk import that bounds itself
    with ctx as tx:
        for u in updates:
            tx.apply(u)
    assert ctx.revision == Revision(1) and store.statistics().relationships == 5
    with pytest.raises(BatchTooLarge, match="at most 3 updates"):
        with store.transaction(batch_limit=3) as tx:
            for u in updates:
                tx.apply(update(Operation.DELETE, str(u.relationship)))
    assert store.head_revision() == Revision(1) and store.statistics().relationships == 5


def test_reads_through_a_transaction_see_its_own_writes(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann", "doc:d1#viewer@user:bob")
    with store.transaction() as tx:
        tx.apply(update(Operation.DELETE, "doc:d1#viewer@user:ann"))
        tx.apply(update(Operation.TOUCH, "doc:d1#viewer@user:cid"))
        tx.set_schema("definition doc {}")
        reader = tx.reader()
        assert strs(reader.subjects("doc", "d1", "viewer")) == [
            "doc:d1#viewer@user:bob",
            "doc:d1#viewer@user:cid",
        ]
        assert reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann")) is None
        assert strs(reader.resources(SubjectRef("user", "cid"))) == ["doc:d1#viewer@user:cid"]
        assert tx.schema_text() == "definition doc {}"
        assert tx.matches(RelationshipFilter("doc", subject=SubjectFilter("user", "cid")))
        assert not tx.matches(RelationshipFilter("doc", subject=SubjectFilter("user", "ann")))
        # The snapshot outside does not see them.
        assert strs(store.snapshot().subjects("doc", "d1", "viewer")) == [
            "doc:d1#viewer@user:ann",
            "doc:d1#viewer@user:bob",
        ]


def test_preconditions_helper(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    exists = RelationshipFilter("doc", "d1", relation="viewer")
    absent = RelationshipFilter("doc", "d2")
    with store.transaction() as tx:
        check_preconditions(
            tx,
            [
                Precondition(PreconditionKind.MUST_MATCH, exists),
                Precondition(PreconditionKind.MUST_NOT_MATCH, absent),
            ],
        )
    with pytest.raises(PreconditionFailed, match="MUST_NOT_MATCH"):
        with store.transaction() as tx:
            check_preconditions(tx, [Precondition(PreconditionKind.MUST_NOT_MATCH, exists)])
    with pytest.raises(PreconditionFailed, match="MUST_MATCH"):
        with store.transaction() as tx:
            check_preconditions(tx, [Precondition(PreconditionKind.MUST_MATCH, absent)])


def test_delete_matching_honours_its_limit_and_reports_completeness(store: Any) -> None:
    touch(store, *(f"doc:d{i}#viewer@user:u{i % 3}" for i in range(10)))
    target = RelationshipFilter("doc", subject=SubjectFilter("user", "u0"))
    with store.transaction() as tx:
        assert tx.delete_matching(target, limit=2) == (2, False)
    assert len(list(store.snapshot().read(target))) == 2
    with store.transaction() as tx:
        assert tx.delete_matching(target, limit=2) == (2, True)
        assert tx.delete_matching(target) == (0, True)
    with store.transaction() as tx:
        assert tx.delete_matching(RelationshipFilter("doc")) == (6, True)
    assert list(store.snapshot().read(RelationshipFilter("doc"))) == []
    assert store.head_revision() == Revision(4)


def test_delete_matching_does_not_count_against_the_batch_limit(make_store: Any) -> None:
    store = make_store(batch_limit=3)
    for start in range(0, 9, 3):
        touch(store, *(f"doc:d{i}#viewer@user:ann" for i in range(start, start + 3)))
    with store.transaction() as tx:
        assert tx.delete_matching(RelationshipFilter("doc")) == (9, True)
        tx.apply(update(Operation.TOUCH, "doc:x#viewer@user:ann"))


def test_delete_matching_past_its_deadline_deletes_nothing(store: Any) -> None:
    for start in range(0, 600, 200):  # more than DEADLINE_STEPS: the clock is read on the way too
        touch(store, *(f"doc:d{i}#viewer@user:ann" for i in range(start, start + 200)))
    head = store.head_revision()
    everything = RelationshipFilter("doc")
    with pytest.raises(DeadlineExceeded, match="past its deadline; nothing was deleted"):
        with store.transaction() as tx:
            tx.delete_matching(everything, deadline=time.monotonic() - 1)
    # Swallowing the error inside the block does not commit a part of the delete either.
    with pytest.raises(DeadlineExceeded):
        with store.transaction() as tx:
            tx.apply(update(Operation.TOUCH, "doc:new#viewer@user:ann"))
            try:
                tx.delete_matching(everything, limit=500, deadline=time.monotonic() - 1)
            except DeadlineExceeded:
                pass
    assert store.head_revision() == head
    assert len(list(store.snapshot().read(everything))) == 600
    with store.transaction() as tx:
        assert tx.delete_matching(everything, deadline=time.monotonic() + 60) == (600, True)
    assert list(store.snapshot().read(everything)) == []


# -- read with filters and pagination --------------------------------------------------------


FILTER_DATA = [
    "doc:a1#viewer@user:ann",
    "doc:a1#viewer@group:eng#member",
    "doc:a1#editor@user:ann",
    "doc:a2#viewer@user:bob",
    "doc:b1#viewer@user:ann",
    "doc:b1#viewer@user:*",
    "folder:a1#viewer@user:ann",
]


@pytest.mark.parametrize(
    ("filter", "expected"),
    [
        (RelationshipFilter("doc"), [0, 1, 2, 3, 4, 5]),
        (RelationshipFilter("doc", "a1"), [0, 1, 2]),
        (RelationshipFilter("doc", "a1", relation="viewer"), [0, 1]),
        (RelationshipFilter("doc", resource_id_prefix="a"), [0, 1, 2, 3]),
        (RelationshipFilter("doc", relation="viewer"), [0, 1, 3, 4, 5]),
        (RelationshipFilter("doc", subject=SubjectFilter("user")), [0, 2, 3, 4, 5]),
        (RelationshipFilter("doc", subject=SubjectFilter("user", "ann")), [0, 2, 4]),
        (RelationshipFilter("doc", subject=SubjectFilter("user", "*")), [5]),
        (RelationshipFilter("doc", subject=SubjectFilter("group", "eng", "member")), [1]),
        (RelationshipFilter("doc", subject=SubjectFilter("group", "eng", "")), []),
        (RelationshipFilter("doc", subject=SubjectFilter("user", "ann", "")), [0, 2, 4]),
        (
            RelationshipFilter(
                "doc", relation="viewer", subject=SubjectFilter("user", "ann", "")
            ),
            [0, 4],
        ),
        (RelationshipFilter("doc", "a1", subject=SubjectFilter("user", "ann")), [0, 2]),
        (RelationshipFilter("nothing"), []),
    ],
)
def test_read_filters(store: Any, filter: RelationshipFilter, expected: list[int]) -> None:
    touch(store, *FILTER_DATA)
    by_key = sorted(expected, key=lambda i: rel(FILTER_DATA[i]).key)
    got = strs(store.snapshot().read(filter))
    assert sorted(got) == sorted(FILTER_DATA[i] for i in by_key)
    assert got == [str(r) for r in sorted((rel(FILTER_DATA[i]) for i in expected), key=_order)]


def _order(r: Relationship) -> bytes:
    from relengine.storage import keys

    return keys.resource_key(*r.key)


@pytest.mark.parametrize("page", [1, 2, 3, 7])
def test_pagination_visits_each_relationship_once(store: Any, page: int) -> None:
    touch(store, *FILTER_DATA)
    for filter in (
        RelationshipFilter("doc"),
        RelationshipFilter("doc", subject=SubjectFilter("user", "ann")),
    ):
        reader = store.snapshot()
        everything = list(reader.read(filter))
        seen: list[Relationship] = []
        after = None
        while True:
            batch = list(reader.read(filter, after=after, limit=page))
            assert len(batch) <= page
            if not batch:
                break
            seen += batch
            after = batch[-1]
        assert seen == everything


def test_a_cursor_need_not_be_live(store: Any) -> None:
    touch(store, *FILTER_DATA)
    cursor = rel("doc:a1#viewer@user:ann")
    delete(store, str(cursor))
    assert strs(store.snapshot().read(RelationshipFilter("doc", "a1"), after=cursor)) == []
    assert strs(store.snapshot().read(RelationshipFilter("doc"), after=cursor, limit=1)) == [
        "doc:a2#viewer@user:bob"
    ]
    assert list(store.snapshot().read(RelationshipFilter("doc"), limit=0)) == []


# -- schema text ------------------------------------------------------------------------------


def test_schema_text_is_versioned_with_relationships(store: Any) -> None:
    r1 = write(store, schema="definition user {}")
    r2 = touch(store, "doc:d1#viewer@user:ann")
    r3 = write(store, schema="definition user {}\ndefinition doc {}")
    assert write(store, schema="definition user {}\ndefinition doc {}") == r3
    assert store.snapshot(Revision(0)).schema_text() is None
    assert store.snapshot(r1).schema_text() == "definition user {}"
    assert store.snapshot(r2).schema_text() == "definition user {}"
    assert store.snapshot(r3).schema_text() == "definition user {}\ndefinition doc {}"
    with store.transaction() as tx:
        assert tx.schema_text() == "definition user {}\ndefinition doc {}"


# -- watch ----------------------------------------------------------------------------------


def _changes(store: Any, after: int) -> list[tuple[int, str, str | None, bool]]:
    return [
        (c.revision.value, c.operation.value, None if c.relationship is None else str(c.relationship),
         c.schema_changed)
        for c in store.watch(Revision(after), timeout=0)
    ]


def test_watch_yields_net_changes_in_revision_order(store: Any) -> None:
    write(store, update(Operation.TOUCH, "doc:d1#viewer@user:ann"), schema="definition user {}")
    write(
        store,
        update(Operation.TOUCH, "doc:d2#viewer@user:bob"),
        update(Operation.TOUCH, "doc:d1#viewer@user:ann[cav]"),
        update(Operation.TOUCH, "doc:d3#viewer@user:tmp"),
        update(Operation.DELETE, "doc:d3#viewer@user:tmp"),
    )
    delete(store, "doc:d1#viewer@user:ann")
    assert _changes(store, 0) == [
        (1, "TOUCH", None, True),
        (1, "TOUCH", "doc:d1#viewer@user:ann", False),
        (2, "TOUCH", "doc:d1#viewer@user:ann[cav]", False),
        (2, "TOUCH", "doc:d2#viewer@user:bob", False),
        (3, "DELETE", "doc:d1#viewer@user:ann[cav]", False),
    ]
    assert _changes(store, 2) == [(3, "DELETE", "doc:d1#viewer@user:ann[cav]", False)]
    assert _changes(store, 3) == []
    with pytest.raises(RevisionUnavailable):
        store.watch(Revision(4), timeout=0)  # raised at the call, before iterating


def test_watch_blocks_until_a_write_from_another_thread(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann")
    started = threading.Event()

    def writer() -> None:
        started.wait()
        touch(store, "doc:d2#viewer@user:bob")

    thread = threading.Thread(target=writer)
    thread.start()
    stream = store.watch(Revision(1), timeout=10)
    started.set()
    change = next(stream)
    thread.join()
    assert (change.revision, str(change.relationship)) == (Revision(2), "doc:d2#viewer@user:bob")
    stream.close()


def test_watch_returns_after_its_timeout_without_changes(store: Any) -> None:
    assert list(store.watch(Revision(0), timeout=0.01)) == []


# -- garbage collection ---------------------------------------------------------------------


def test_revisions_older_than_the_window_are_unavailable(make_store: Any, clock: Any) -> None:
    store = make_store(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=None)
    r1 = touch(store, "doc:d1#viewer@user:ann")
    clock.advance(1800)
    r2 = touch(store, "doc:d1#viewer@user:bob")
    clock.advance(3601)
    r3 = delete(store, "doc:d1#viewer@user:ann")
    # r1 was superseded by r2 over an hour ago: too old, even before a collection ran.
    with pytest.raises(RevisionUnavailable, match="too old"):
        store.snapshot(r1)
    assert strs(store.snapshot(r2).subjects("doc", "d1", "viewer")) == [
        "doc:d1#viewer@user:ann",
        "doc:d1#viewer@user:bob",
    ]
    clock.advance(10 * DAY)
    with pytest.raises(RevisionUnavailable, match="too old"):
        store.snapshot(r2)
    # The head is always readable, however old.
    assert store.snapshot(r3).revision == r3
    assert strs(store.snapshot().subjects("doc", "d1", "viewer")) == ["doc:d1#viewer@user:bob"]


def test_gc_removes_what_no_readable_revision_needs(make_store: Any, clock: Any) -> None:
    store = make_store(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=None)
    write(store, update(Operation.TOUCH, "doc:d1#viewer@user:ann"), schema="s1")
    touch(store, "doc:d1#viewer@user:ann[cav]")
    write(store, schema="s2")
    clock.advance(2 * 3600)
    r4 = delete(store, "doc:d1#viewer@user:ann")
    r5 = touch(store, "doc:d2#viewer@user:bob")
    before = store.statistics()
    assert (before.relationships, before.dead_versions) == (1, 2)
    result = store.gc()
    assert result.horizon == Revision(3)
    assert result.versions_removed == 1
    assert result.revisions_removed == 3
    after = store.statistics()
    assert (after.gc_horizon, after.dead_versions) == (Revision(3), 1)
    # Revisions from the horizon on still read exactly.
    assert store.snapshot(Revision(3)).schema_text() == "s2"
    assert strs(store.snapshot(Revision(3)).subjects("doc", "d1", "viewer")) == [
        "doc:d1#viewer@user:ann[cav]"
    ]
    assert strs(store.snapshot(r4).read(RelationshipFilter("doc"))) == []
    assert strs(store.snapshot(r5).read(RelationshipFilter("doc"))) == ["doc:d2#viewer@user:bob"]
    with pytest.raises(RevisionUnavailable, match="too old"):
        store.snapshot(Revision(2))
    with pytest.raises(RevisionUnavailable, match="too old"):
        list(store.watch(Revision(2), timeout=0))
    assert [c.revision.value for c in store.watch(Revision(3), timeout=0)] == [4, 5]
    clock.advance(2 * 3600)
    result = store.gc()
    assert result.horizon == r5
    stats = store.statistics()
    assert (stats.dead_versions, stats.changelog_revisions, stats.relationships) == (0, 0, 1)
    assert store.snapshot().schema_text() == "s2"


def test_gc_runs_by_itself_after_commits(make_store: Any, clock: Any) -> None:
    store = make_store(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=60)
    touch(store, "doc:d1#viewer@user:ann")
    delete(store, "doc:d1#viewer@user:ann")
    clock.advance(2 * 3600)
    touch(store, "doc:d2#viewer@user:ann")
    stats = store.statistics()
    assert stats.gc_horizon == Revision(2)
    assert stats.dead_versions == 0


def test_a_reader_taken_before_gc_keeps_answering(make_store: Any, clock: Any) -> None:
    store = make_store(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=None)
    touch(store, "doc:d1#viewer@user:ann")
    clock.advance(1000)
    delete(store, "doc:d1#viewer@user:ann")
    reader = store.snapshot(Revision(1))
    clock.advance(2 * 3600)
    store.gc()
    assert strs(reader.subjects("doc", "d1", "viewer")) == ["doc:d1#viewer@user:ann"]


# -- bulk, statistics, lifecycle ----------------------------------------------------------------


def test_bulk_touch_writes_one_revision_with_touch_semantics(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann[cav]", "doc:d2#viewer@user:bob")
    exp = dt.datetime(2300, 1, 1, tzinfo=UTC)
    rows = [
        ("doc", "d1", "viewer", "user", "ann", ""),  # drops the caveat
        ("doc", "d2", "viewer", "user", "bob", ""),  # unchanged
        ("doc", "d3", "viewer", "group", "eng", "member", None, exp),
        ("doc", "d4", "viewer", "user", "x", ""),
        ("doc", "d4", "viewer", "user", "x", "", CaveatRef("later"), None),  # later row wins
    ]
    revision, changed = store.bulk_touch(rows)
    assert (revision, changed) == (Revision(2), 3)
    assert strs(store.snapshot().read(RelationshipFilter("doc"))) == [
        "doc:d1#viewer@user:ann",
        "doc:d2#viewer@user:bob",
        "doc:d3#viewer@group:eng#member[expiration:2300-01-01T00:00:00Z]",
        "doc:d4#viewer@user:x[later]",
    ]
    assert strs(store.snapshot(Revision(1)).read(RelationshipFilter("doc"))) == [
        "doc:d1#viewer@user:ann[cav]",
        "doc:d2#viewer@user:bob",
    ]
    assert store.bulk_touch(rows) == (Revision(2), 0)
    assert sorted(c.relationship and str(c.relationship) for c in store.watch(Revision(1), timeout=0)) == [
        "doc:d1#viewer@user:ann",
        "doc:d3#viewer@group:eng#member[expiration:2300-01-01T00:00:00Z]",
        "doc:d4#viewer@user:x[later]",
    ]


def test_bulk_touch_keeps_long_ids(store: Any) -> None:
    long_id = "q" * 1024
    rows = [("doc", long_id, "viewer", "user", long_id, ""), ("doc", "d1", "viewer", "user", "ann", "")]
    assert store.bulk_touch(rows) == (Revision(1), 2)
    reader = store.snapshot()
    assert [r.key for r in reader.read(RelationshipFilter("doc"))] == sorted(
        (r[:6] for r in rows), key=lambda k: _order(Relationship(
            ObjectRef(k[0], k[1]), k[2], SubjectRef(k[3], k[4]))))
    assert [r.resource.id for r in reader.resources(SubjectRef("user", long_id))] == [long_id]


def test_bulk_touch_ignores_the_batch_limit(make_store: Any) -> None:
    store = make_store(batch_limit=2)
    rows = [("doc", f"d{i}", "viewer", "user", "ann", "") for i in range(10)]
    assert store.bulk_touch(rows) == (Revision(1), 10)
    assert store.statistics().relationships == 10


def test_statistics_count_live_and_dead(store: Any) -> None:
    touch(store, "doc:d1#viewer@user:ann", "doc:d2#viewer@user:ann")
    touch(store, "doc:d1#viewer@user:ann[cav]")
    stats = store.statistics()
    assert stats.head_revision == Revision(2)
    assert (stats.relationships, stats.dead_versions, stats.changelog_revisions) == (2, 1, 2)


def test_a_closed_store_is_unavailable(store: Any) -> None:
    store.close()
    store.close()
    with pytest.raises(Unavailable):
        store.snapshot()
    with pytest.raises(Unavailable):
        store.head_revision()
    with pytest.raises(Unavailable):
        with store.transaction():
            pass


def test_readers_and_a_writer_in_threads(store: Any) -> None:
    touch(store, "doc:d0#viewer@user:ann")
    errors: list[BaseException] = []

    def read() -> None:
        try:
            for _ in range(200):
                reader = store.snapshot()
                count = reader.revision.value
                found = list(reader.read(RelationshipFilter("doc")))
                assert len(found) == count
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for i in range(1, 50):
        touch(store, f"doc:d{i}#viewer@user:ann")
    for t in threads:
        t.join()
    assert errors == []


# -- relationship counters --------------------------------------------------------------------


def set_counters(store: Any, counters: dict[str, bytes]) -> Revision:
    ctx = store.transaction()
    with ctx as tx:
        tx.set_counters(counters)
    revision: Revision | None = ctx.revision
    assert revision is not None
    return revision


def test_counters_are_versioned_with_revisions(store: Any) -> None:
    assert store.snapshot().counters() == {}
    r1 = touch(store, "doc:d1#viewer@user:ann")
    r2 = set_counters(store, {"docs": b"filter-1"})
    assert r2.value == r1.value + 1  # a counter change alone is a revision
    r3 = set_counters(store, {"docs": b"filter-1", "users": b"\x00\xff"})
    assert set_counters(store, {"docs": b"filter-1", "users": b"\x00\xff"}) == r3  # no change
    r4 = touch(store, "doc:d2#viewer@user:bob")
    r5 = set_counters(store, {"users": b"\x00\xff"})
    assert store.snapshot(r1).counters() == {}
    assert store.snapshot(r2).counters() == {"docs": b"filter-1"}
    assert store.snapshot(r3).counters() == {"docs": b"filter-1", "users": b"\x00\xff"}
    assert store.snapshot(r4).counters() == {"docs": b"filter-1", "users": b"\x00\xff"}
    assert store.snapshot(r5).counters() == {"users": b"\x00\xff"}
    assert store.snapshot().counters() == {"users": b"\x00\xff"}
    with store.transaction() as tx:
        assert tx.counters() == {"users": b"\x00\xff"}
        tx.set_counters({})
        assert tx.counters() == {}
    assert store.snapshot().counters() == {}
    assert store.snapshot(r5).counters() == {"users": b"\x00\xff"}
    # Watch reports no change for a revision that only changed counters.
    assert [c.revision for c in store.watch(r1, timeout=0)] == [r4]


def test_a_counter_change_is_aborted_with_its_transaction(store: Any) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.set_counters({"docs": b"x"})
            raise RuntimeError("abort")
    assert store.snapshot().counters() == {}
    assert store.head_revision() == Revision(0)


def test_gc_keeps_the_counters_every_readable_revision_sees(make_store: Any, clock: Any) -> None:
    store = make_store(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=None)
    set_counters(store, {"a": b"1"})
    set_counters(store, {"a": b"1", "b": b"2"})
    r3 = touch(store, "doc:d1#viewer@user:ann")
    clock.advance(2 * 3600)
    r4 = set_counters(store, {"b": b"2"})
    assert store.gc().horizon == r3
    assert store.snapshot(r3).counters() == {"a": b"1", "b": b"2"}
    assert store.snapshot(r4).counters() == {"b": b"2"}
    clock.advance(2 * 3600)
    touch(store, "doc:d2#viewer@user:ann")
    clock.advance(2 * 3600)
    store.gc()
    assert store.snapshot().counters() == {"b": b"2"}


# -- guard text -------------------------------------------------------------------------------


def set_guards(store: Any, text: str) -> Revision:
    ctx = store.transaction()
    with ctx as tx:
        tx.set_guards(text)
    revision: Revision | None = ctx.revision
    assert revision is not None
    return revision


def test_guard_text_is_versioned_with_revisions(store: Any) -> None:
    assert store.snapshot().guards_text() is None
    r1 = touch(store, "doc:d1#viewer@user:ann")
    r2 = set_guards(store, "guards: []\n")
    assert r2.value == r1.value + 1  # a guard change alone is a revision
    assert set_guards(store, "guards: []\n") == r2  # the same text again: no change
    r3 = touch(store, "doc:d2#viewer@user:bob")
    r4 = set_guards(store, "guards:\n  - name: é\n")
    assert store.snapshot(r1).guards_text() is None
    assert store.snapshot(r2).guards_text() == "guards: []\n"
    assert store.snapshot(r3).guards_text() == "guards: []\n"
    assert store.snapshot(r4).guards_text() == "guards:\n  - name: é\n"
    with store.transaction() as tx:
        assert tx.guards_text() == "guards:\n  - name: é\n"
        tx.set_guards("")
        assert tx.guards_text() == ""
    assert store.snapshot().guards_text() == ""
    # Schema text and counters are untouched by guards, and Watch reports nothing for them.
    assert store.snapshot().counters() == {}
    assert [c.revision for c in store.watch(r1, timeout=0)] == [r3]


def test_a_guard_change_is_aborted_with_its_transaction(store: Any) -> None:
    with pytest.raises(RuntimeError):
        with store.transaction() as tx:
            tx.set_guards("guards: []\n")
            raise RuntimeError("abort")
    assert store.snapshot().guards_text() is None
    assert store.head_revision() == Revision(0)


def test_gc_keeps_the_guard_text_every_readable_revision_sees(make_store: Any, clock: Any) -> None:
    store = make_store(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=None)
    set_guards(store, "one")
    set_guards(store, "two")
    set_counters(store, {"a": b"1"})
    r4 = touch(store, "doc:d1#viewer@user:ann")
    clock.advance(2 * 3600)
    r5 = set_guards(store, "three")
    assert store.gc().horizon == r4
    assert store.snapshot(r4).guards_text() == "two"
    assert store.snapshot(r5).guards_text() == "three"
    clock.advance(2 * 3600)
    touch(store, "doc:d2#viewer@user:ann")
    clock.advance(2 * 3600)
    store.gc()
    assert store.snapshot().guards_text() == "three"
    assert store.snapshot().counters() == {"a": b"1"}
