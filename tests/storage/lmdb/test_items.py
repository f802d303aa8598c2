"""By-resource items (storage/lmdb/items.py): (key, version) pairs as strings, relationships and
objects index values, and the bounded prefix scan."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Iterator

import lmdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relengine.model import CaveatRef, ObjectRef, Relationship, SubjectRef
from relengine.storage import keys, objects
from relengine.storage.base import SMALL_OBJECT
from relengine.storage.lmdb import items

REV = keys.encode_revision(7)
LONG = "q" * 100  # shortened in keys: its strings live in the version
EXPIRES = dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc)


def item(strings: tuple[str, str, str, str, str, str], caveat: CaveatRef | None = None,
         expiration: dt.datetime | None = None) -> tuple[bytes, bytes]:
    """The (key, version) the writer stores for these strings, as of revision 7."""
    key = keys.resource_key(*strings)
    return key, REV + keys.encode_payload(caveat, expiration, strings if keys.is_shortened(key) else None)


PLAIN = ("doc", "d1", "viewer", "user", "ann", "")
ESCAPED = ("doc", "d1", "viewer", "user", "a\x01n\x00n", "")  # arbitrary text, not a model id
SHORTENED = ("doc", "d1", "viewer", "user", LONG, "member")


@pytest.mark.parametrize("strings", [PLAIN, ESCAPED, SHORTENED], ids=["plain", "escaped", "shortened"])
def test_resource_strings_of_every_kind_of_key(strings: tuple[str, str, str, str, str, str]) -> None:
    assert tuple(items.resource_strings(*item(strings))) == strings


@pytest.mark.parametrize(
    "relationship",
    [
        Relationship(ObjectRef("doc", "d1"), "viewer", SubjectRef("user", "ann")),
        Relationship(ObjectRef("doc", "d1"), "viewer", SubjectRef("group", "eng", "member"), CaveatRef("cav", {"n": 1})),
        Relationship(ObjectRef("doc", LONG), "viewer", SubjectRef("user", LONG), None, EXPIRES),
    ],
    ids=["plain", "subject-set-with-caveat", "long-ids-with-expiration"],
)
def test_relationship_of_an_item_is_the_relationship_written(relationship: Relationship) -> None:
    key, version = item(relationship.key, relationship.caveat, relationship.expiration)
    assert items.relationship_of(key, version) == relationship


def test_object_value_of_plain_items_is_the_object_encoded_from_its_rows() -> None:
    found = [item(("doc", "d1", "editor", "user", "bob", "")), item(PLAIN)]
    prefix = keys.object_prefix(found[0][0])
    value = items.object_value(REV, found, len(prefix))
    assert value == objects.encode(REV, [("editor", ("user", "bob", None, None)), ("viewer", ("user", "ann", None, None))])


def test_object_value_keeps_subject_relations_payloads_and_the_strings_of_unusual_keys() -> None:
    found = [
        item(("doc", "d1", "viewer", "group", "eng", "member")),
        item(("doc", "d1", "viewer", "user", "ann", ""), CaveatRef("cav"), EXPIRES),
        item(ESCAPED),
        item(SHORTENED),
    ]
    prefix = keys.object_prefix(found[0][0])
    assert objects.decode(items.object_value(REV, found, len(prefix))) == {
        "viewer": [
            ("group", "eng", "member", None),
            ("user", "ann", None, (CaveatRef("cav"), EXPIRES)),
            ("user", "a\x01n\x00n", None, None),
            ("user", LONG, "member", None),
        ]
    }


def test_object_value_of_more_than_a_small_object_is_large() -> None:
    found = [item(("doc", "d1", "viewer", "user", f"u{i:02}", "")) for i in range(SMALL_OBJECT + 1)]
    size = len(keys.object_prefix(found[0][0]))
    assert items.object_value(REV, found, size) == REV + bytes((objects.LARGE,))
    assert objects.decode(items.object_value(REV, found[:-1], size)) == {
        "viewer": [("user", f"u{i:02}", None, None) for i in range(SMALL_OBJECT)]
    }


@pytest.fixture
def cursor(tmp_path: Path) -> Iterator[lmdb.Cursor[bytes]]:
    """A cursor over a small database of keys around the prefix ``a\\x00``."""
    env = lmdb.open(str(tmp_path), max_dbs=1)
    try:
        with env.begin(write=True) as txn:
            for key in (b"a", b"a\x00x\x00", b"a\x00y\x00", b"a\x00z\x00", b"ab\x00", b"b\x00"):
                txn.put(key, b"v" + key)
        with env.begin() as txn:
            yield txn.cursor()
    finally:
        env.close()


def test_scan_takes_at_most_one_item_past_the_limit_and_stops_at_the_prefix(cursor: lmdb.Cursor[bytes]) -> None:
    assert [k for k, _ in items.scan(cursor, b"a\x00", 10)] == [b"a\x00x\x00", b"a\x00y\x00", b"a\x00z\x00"]
    assert items.scan(cursor, b"a\x00", 1) == [(b"a\x00x\x00", b"va\x00x\x00"), (b"a\x00y\x00", b"va\x00y\x00")]
    assert items.scan(cursor, b"c", 10) == []
    assert items.scan(cursor, b"aa", 10) == []


_SUBJECTS = [("user", f"u{i}", "") for i in range(6)] + [("group", "g1", ""), ("group", "g1", "member"), ("user", LONG, "")]
_RELATIONS = ["editor", "reader", "viewer"]


@settings(max_examples=300, deadline=None)
@given(st.sets(st.tuples(st.sampled_from(_RELATIONS), st.sampled_from(_SUBJECTS)), max_size=SMALL_OBJECT + 2),
       st.tuples(st.sampled_from(_RELATIONS), st.sampled_from(_SUBJECTS)), st.booleans(), st.booleans())
def test_an_edited_objects_entry_is_the_entry_built_from_the_relationships_after(
    rows: set[tuple[str, tuple[str, str, str]]], change: tuple[str, tuple[str, str, str]], add: bool, caveated: bool,
) -> None:
    """One relationship created or deleted (the single-section edit, or the general path where
    it does not apply) gives the value object_value builds from the object's relationships
    after it, or None where the entry cannot be edited (the caller rebuilds it then)."""
    def one(relation: str, subject: tuple[str, str, str]) -> tuple[bytes, bytes]:
        plain = not subject[2] and subject[1] != LONG
        return item(("doc", "d1", relation, *subject), CaveatRef("cav") if caveated and not plain else None)

    before = sorted(one(r, s) for r, s in rows)
    size = len(keys.object_prefix(one(*change)[0]))
    known = items.object_value(REV, before, size)
    if known[objects.KIND_OFFSET] == objects.LARGE:
        return
    key, version = one(*change)
    present = any(k == key for k, _ in before)
    after = [p for p in before if p[0] != key] + ([] if not add else [(key, version)])
    op = keys.CREATED if add else keys.DELETED
    edited = items.edited_value(known, keys.encode_revision(8), size, [(op, key, version)])
    if edited is None:
        plain = len(version) == keys.REVISION_SIZE and keys.SHORTENED not in key and not change[1][2]
        assert not plain or present is add  # a plain change is refused only where it does not match
        return
    assert present is not add
    assert edited == items.object_value(keys.encode_revision(8), sorted(after), size)
