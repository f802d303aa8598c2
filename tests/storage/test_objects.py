"""The object value layout: searches by needle and header agree with the rows it was made of."""

from __future__ import annotations

import datetime as dt

from hypothesis import given
from hypothesis import strategies as st

from relengine.model import CaveatRef
from relengine.storage import objects
from relengine.storage.base import SMALL_OBJECT

REV = bytes(8)
# Names and ids that look like parts of the layout: they must neither match wrongly nor break it.
NAMES = ["user", "u", "user\x01u", "a\x00b", "x\x02y", "*", "usera", "ause", "\x01", ""]
RELATIONS = ["viewer", "v", "viewer\x00x", "e\x02"]
EXTRAS = [None, (CaveatRef("cav", {"n": 0}), None), (None, dt.datetime(2300, 1, 1, tzinfo=dt.timezone.utc))]

rows = st.tuples(
    st.sampled_from(RELATIONS),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES), st.sampled_from([None, "member"]), st.sampled_from(EXTRAS)),
)


def test_a_plain_object_is_direct_entries_after_the_head() -> None:
    value = objects.encode(REV, [("viewer", ("user", "ann", None, None)), ("owner", ("user", "bob", None, None))])
    assert value == REV + b"S" + b"\x02viewer\x00user\x01ann\x00\x02owner\x00user\x01bob\x00\x02"
    assert objects.decode(value) == {"viewer": [("user", "ann", None, None)], "owner": [("user", "bob", None, None)]}


def test_empty_and_large_objects() -> None:
    assert objects.encode(REV, []) == REV + objects.EMPTY
    assert objects.decode(REV + objects.EMPTY) == {}
    many = [("viewer", ("user", f"u{i}", None, None)) for i in range(SMALL_OBJECT + 1)]
    assert objects.encode(REV, many) == REV + b"L"
    assert objects.decode(objects.encode(REV, many)) is None
    assert objects.decode(objects.encode(REV, many[:-1])) == {"viewer": [row for _, row in many[:-1]]}


@given(st.lists(rows, max_size=SMALL_OBJECT, unique_by=lambda r: (r[0], r[1][:3])))
def test_the_value_answers_what_the_rows_say(pairs: list[tuple[str, tuple[str, str, str | None, object]]]) -> None:
    value = objects.encode(REV, pairs)  # type: ignore[arg-type]
    expected: dict[str, list[object]] = {}
    for relation, row in pairs:
        expected.setdefault(relation, []).append(row)
    decoded = objects.decode(value)
    assert decoded is not None
    assert {k: sorted(map(repr, v)) for k, v in decoded.items()} == {k: sorted(map(repr, v)) for k, v in expected.items()}
    plain = {(rel, st_, sid) for rel, (st_, sid, srel, extra) in pairs if srel is None and extra is None}
    for relation in RELATIONS:
        for st_ in NAMES:
            for sid in NAMES:
                direct = objects.contains(value, objects.needle(st_, sid), frozenset({relation.encode()}))
                if direct:  # a direct hit is always a real plain relationship...
                    assert (relation, st_, sid) in plain
                elif (relation, st_, sid) in plain:  # ...and a plain one is a hit or kept in others
                    assert (st_, sid, None, None) in objects.others(value).get(relation, ())
        targets = objects.targets(value, objects.header(relation))
        assert set(targets) <= {(st_, sid) for rel, st_, sid in plain if rel == relation}
        kept = {(r[0], r[1]) for r in objects.others(value).get(relation, ()) if r[2] is None and r[3] is None}
        assert set(targets) | kept == {(st_, sid) for rel, st_, sid in plain if rel == relation}
