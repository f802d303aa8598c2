"""Key and value encoding (storage/keys.py): round trips and order, by property."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relengine.errors import InvalidArgument
from relengine.model import CaveatRef
from relengine.storage import keys

# Mostly short strings over a small alphabet (so prefixes and ties are common), some with NUL
# and non-ASCII characters, some long enough to be shortened.
alphabet = st.sampled_from(["a", "b", "\x00", "\x01", "\x02", "\xff", "é", "\U0001f600", "z"])
short = st.text(alphabet, max_size=6)
component = st.one_of(short, short, st.text(), st.text(alphabet, min_size=70, max_size=130))
key_parts = st.lists(component, min_size=1, max_size=6).map(tuple)
six = st.tuples(component, component, component, component, component, component)
plain = st.text(st.characters(exclude_characters="\x00\x01\n", exclude_categories=["Cs"]), max_size=90)


def _long(t: tuple[str, ...]) -> bool:
    def escaped_size(p: str) -> int:
        raw = p.encode()
        return len(raw) + raw.count(b"\x00") + raw.count(b"\x01")

    return any(escaped_size(p) > keys.LONGEST_COMPONENT for p in t)


@pytest.mark.slow
@settings(max_examples=300)
@given(key_parts)
def test_encode_round_trips(parts: tuple[str, ...]) -> None:
    encoded = keys.encode(parts)
    if _long(parts):
        assert keys.is_shortened(encoded)
        with pytest.raises(ValueError):
            keys.decode(encoded)
    else:
        assert keys.decode(encoded) == parts


@pytest.mark.slow
@settings(max_examples=300)
@given(key_parts, key_parts)
def test_encoding_preserves_order(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    ea, eb = keys.encode(a), keys.encode(b)
    if not _long(a) and not _long(b):
        assert (ea < eb) == (a < b)
    assert (ea == eb) == (a == b)


@pytest.mark.slow
@settings(max_examples=300)
@given(key_parts, key_parts)
def test_a_key_prefix_is_exactly_a_tuple_prefix(a: tuple[str, ...], b: tuple[str, ...]) -> None:
    # What makes range scans by (type, id, relation) correct.
    is_prefix = len(a) <= len(b) and b[: len(a)] == a
    assert keys.encode(b).startswith(keys.encode(a)) == is_prefix


@pytest.mark.slow
@settings(max_examples=200)
@given(six)
def test_index_keys_agree_with_encode(s: tuple[str, str, str, str, str, str]) -> None:
    rt, rid, rel, st_, sid, srel = s
    assert keys.resource_key(*s) == keys.encode(s)
    assert keys.subject_key(st_, sid, srel, rt, rel, rid) == keys.encode((st_, sid, srel, rt, rel, rid))
    version = keys.encode_revision(3) + keys.encode_payload(None, None, s)
    assert keys.resource_strings(keys.resource_key(*s), version) == s
    assert keys.subject_strings(keys.subject_key(st_, sid, srel, rt, rel, rid), version) == s
    assert keys.subject_key_of(keys.resource_key(*s), version) == keys.subject_key(
        st_, sid, srel, rt, rel, rid
    )


@pytest.mark.slow
@settings(max_examples=100)
@given(st.lists(six, max_size=5))
def test_encode_many_matches_encode(rows: list[tuple[str, ...]]) -> None:
    many = keys.encode_many(rows)
    if many is not None:
        assert many == [keys.encode(r) for r in rows]
    else:
        assert any(c in p for r in rows for p in r for c in "\x00\x01\n")


@pytest.mark.slow
@settings(max_examples=100)
@given(st.lists(six, max_size=5))
def test_index_keys_many_match_the_one_row_keys(rows: list[tuple[str, str, str, str, str, str]]) -> None:
    many = keys.index_keys_many(rows)
    if many is not None:
        assert many == (
            [keys.resource_key(*r) for r in rows],
            [keys.subject_key(r[3], r[4], r[5], r[0], r[2], r[1]) for r in rows],
        )
    else:
        assert any(c in p for r in rows for p in r for c in "\x00\x01\n")


def test_index_keys_many_leave_other_rows_to_the_one_row_keys() -> None:
    long = "x" * 200
    assert keys.index_keys_many([("doc", long, "viewer", "user", "ann", "")]) == (
        [keys.resource_key("doc", long, "viewer", "user", "ann", "")],
        [keys.subject_key("user", "ann", "", "doc", "viewer", long)],
    )
    assert keys.index_keys_many([("doc", "1", "viewer", "user", "ann", "", None, None)]) is None  # type: ignore[list-item]
    assert keys.index_keys_many([("doc", "a\x01b", "viewer", "user", "ann", "")]) is None


@given(st.tuples(plain, plain, plain, plain, plain, plain))
def test_fit_key_matches_encode_for_joined_keys(s: tuple[str, ...]) -> None:
    joined = ("\x00".join(s) + "\x00").encode()
    assert keys.fit_key(joined) == keys.encode(s)


def test_keys_always_fit_lmdb() -> None:
    huge = "é" * 1024
    key = keys.resource_key(huge, huge, huge, huge, huge, huge)
    assert len(key) + keys.REVISION_SIZE <= 511


@given(short, component)
def test_partial_prefixes_match_what_they_start(prefix: str, rest: str) -> None:
    full = keys.encode(("doc", prefix + rest))
    assert full.startswith(keys.encode(("doc",)) + keys.encode_partial(prefix))


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1))
def test_revisions_sort_numerically(a: int, b: int) -> None:
    assert (keys.encode_revision(a) < keys.encode_revision(b)) == (a < b)
    assert keys.decode_revision(keys.encode_revision(a)) == a


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)
moments = st.datetimes(
    min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30), timezones=st.just(dt.timezone.utc)
)


@pytest.mark.slow
@settings(max_examples=200)
@given(
    st.one_of(st.none(), st.builds(CaveatRef, st.text(min_size=1), st.none() | st.dictionaries(st.text(), json_values))),
    st.none() | moments,
)
def test_payload_round_trips(caveat: CaveatRef | None, expiration: dt.datetime | None) -> None:
    payload = keys.encode_payload(caveat, expiration)
    assert (payload == b"") == (caveat is None and expiration is None)
    assert keys.decode_payload(payload) == (caveat, expiration)


def test_payload_is_canonical_for_equal_contexts() -> None:
    a = keys.encode_payload(CaveatRef("c", {"x": 1, "y": {"b": 2, "a": 1}}), None)
    b = keys.encode_payload(CaveatRef("c", {"y": {"a": 1, "b": 2}, "x": 1}), None)
    assert a == b


def test_expiration_keeps_microseconds_and_rejects_naive_times() -> None:
    moment = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    back = keys.expiration_from_micros(keys.expiration_micros(moment))
    assert back == moment and back.tzinfo == dt.timezone.utc
    with pytest.raises(InvalidArgument, match="time zone"):
        keys.expiration_micros(dt.datetime(2024, 1, 1))


def test_changes_round_trip() -> None:
    data = keys.encode_changes(True, bytes([keys.CREATED, keys.DELETED]), [b"k1", b"k2"], [b"v1", b"v2"])
    assert keys.decode_changes(data) == (True, bytes([keys.CREATED, keys.DELETED]), [b"k1", b"k2"], [b"v1", b"v2"])
