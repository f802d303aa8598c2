"""model.py's own contract: the text forms of objects, subjects and relationships (parsed,
printed, and the errors naming what is wrong), caveat equality, filters, revision tokens,
consistency constructors and ``plain_constructor``."""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from typing import Any, Callable

import pytest

from relengine.errors import InvalidArgument, InvalidRelationship, RevisionUnavailable
from relengine.model import (
    CaveatRef,
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    format_timestamp,
    new_object,
    new_relationship,
    new_subject,
    parse_object,
    parse_relationship,
    parse_subject,
    parse_timestamp,
    plain_constructor,
)

UTC = dt.timezone.utc
REL = "doc:1#viewer@user:ann"

# -- text forms -------------------------------------------------------------------------------

ANN_VIEWS = Relationship(ObjectRef("doc", "1"), "viewer", SubjectRef("user", "ann"))


def case(name: str, text: str, canonical: str, **changes: Any) -> Any:
    """``text`` parses to ANN_VIEWS with ``changes`` and prints as ``canonical``."""
    return pytest.param(text, dataclasses.replace(ANN_VIEWS, **changes), canonical, id=name)


RELATIONSHIPS = [
    case("plain", REL, REL),
    case("subject-set", "doc:1#viewer@group:eng#member", "doc:1#viewer@group:eng#member", subject=SubjectRef("group", "eng", "member")),
    case("ellipsis-is-the-object-itself", "  doc:1#viewer@group:eng#...  ", "doc:1#viewer@group:eng", subject=SubjectRef("group", "eng")),
    case("wildcard", "doc:1#viewer@user:*", "doc:1#viewer@user:*", subject=SubjectRef("user", "*")),
    case(
        "prefixed-type-and-id-punctuation", "org/team/doc:a|b=c+d-e_f/g#viewer@user:ann",
        "org/team/doc:a|b=c+d-e_f/g#viewer@user:ann", resource=ObjectRef("org/team/doc", "a|b=c+d-e_f/g"),
    ),
    case("caveat-without-context", REL + "[only_ip]", REL + "[only_ip]", caveat=CaveatRef("only_ip")),
    case("empty-context-prints-as-none", REL + "[only_ip:{}]", REL + "[only_ip]", caveat=CaveatRef("only_ip")),
    case(
        "context-sorted-brackets-in-strings", REL + '[only_ip:{"b": 1, "a": ["]", "\\"]"]}]',
        REL + '[only_ip:{"a":["]","\\"]"],"b":1}]', caveat=CaveatRef("only_ip", {"a": ["]", '"]'], "b": 1}),
    ),
    case(
        "expiration-in-utc", REL + " [expiration:2026-01-01T01:00:00+01:00]", REL + "[expiration:2026-01-01T00:00:00Z]",
        expiration=dt.datetime(2026, 1, 1, tzinfo=UTC),
    ),
    case(
        "caveat-then-expiration", REL + '[only_ip:{"n":1}][expiration:2026-12-31T00:00:00.1234567z]',
        REL + '[only_ip:{"n":1}][expiration:2026-12-31T00:00:00.123456Z]',
        caveat=CaveatRef("only_ip", {"n": 1}), expiration=dt.datetime(2026, 12, 31, 0, 0, 0, 123456, tzinfo=UTC),
    ),
    case("a-caveat-named-expiration", REL + "[expiration]", REL + "[expiration]", caveat=CaveatRef("expiration")),
]


@pytest.mark.parametrize(("text", "parsed", "canonical"), RELATIONSHIPS)
def test_relationship_text_parses_and_prints(text: str, parsed: Relationship, canonical: str) -> None:
    rel = parse_relationship(text)
    assert rel == parsed
    assert str(rel) == canonical
    assert parse_relationship(canonical) == rel


# (text, a substring of the message)
BAD_RELATIONSHIPS = [
    pytest.param("doc:1viewer@user:ann", "is not of the form resource_type:id#relation@", id="no-hash"),
    pytest.param("doc:1#viewer", "is not of the form", id="no-subject"),
    pytest.param("Doc:1#viewer@user:ann", "invalid object type 'Doc'", id="uppercase-type"),
    pytest.param("ab:1#viewer@user:ann", "invalid object type 'ab'", id="short-type"),
    pytest.param("doc:1#viewer@us:ann", "invalid object type 'us'", id="short-subject-type"),
    pytest.param("doc:1#Viewer@user:ann", "invalid relation 'Viewer'", id="uppercase-relation"),
    pytest.param("doc:1#viewer@user:ann#x", "invalid relation 'x'", id="short-subject-relation"),
    pytest.param("doc:a b#viewer@user:ann", "is not of the form", id="space-in-id"),
    pytest.param("doc:a!#viewer@user:ann", "invalid object id 'a!'", id="bad-id-character"),
    pytest.param(f"doc:{'x' * 1025}#viewer@user:ann", "is too long: 1025 characters, at most 1024", id="long-id"),
    pytest.param("doc:*#viewer@user:ann", "a resource id cannot be the wildcard", id="wildcard-resource"),
    pytest.param("doc:1#viewer@user:*#member", "a wildcard subject cannot carry a relation", id="wildcard-subject-set"),
    pytest.param(REL + " junk", "unexpected text 'junk'", id="trailing-text"),
    pytest.param(REL + "[only_ip", "unclosed '['", id="unclosed-bracket"),
    pytest.param(REL + "[Only_ip]", "invalid caveat name 'Only_ip'", id="bad-caveat-name"),
    pytest.param(REL + "[only_ip:{x}]", "is not valid JSON: Expecting property name", id="context-not-json"),
    pytest.param(REL + "[only_ip:[1]]", "must be a JSON object", id="context-not-an-object"),
    # Python's json reads these, JSON has none, and no caveat parameter takes them
    pytest.param(REL + '[only_ip:{"x": NaN}]', "is not valid JSON: NaN is not a JSON number", id="context-nan"),
    pytest.param(REL + '[only_ip:{"x": [Infinity]}]', "Infinity is not a JSON number", id="context-infinity"),
    pytest.param(REL + '[only_ip:{"x": -Infinity}]', "-Infinity is not a JSON number", id="context-minus-infinity"),
    pytest.param(REL + '[only_ip:{"x": ' + "1" * 5000 + "}]", "is not valid JSON: Exceeds the limit", id="context-huge-int"),
    pytest.param(REL + '[only_ip:{"x": ' + "[" * 5000 + "]" * 5000 + "}]", "is not valid JSON: nested too deeply", id="context-deep"),
    pytest.param(REL + "[one_cav][two_cav]", "the caveat must come first and only once", id="two-caveats"),
    pytest.param(
        REL + "[expiration:2026-01-01T00:00:00Z][one_cav]", "the caveat must come first", id="caveat-after-expiration"
    ),
    pytest.param(
        REL + "[expiration:2026-01-01T00:00:00Z][expiration:2027-01-01T00:00:00Z]", "two expirations", id="two-expirations"
    ),
    pytest.param(REL + "[expiration:2026-01-01T00:00:00]", "has no time zone", id="expiration-without-zone"),
    pytest.param(REL + "[expiration:tomorrow]", "invalid RFC 3339 timestamp 'tomorrow'", id="expiration-not-a-time"),
]


@pytest.mark.parametrize(("text", "message"), BAD_RELATIONSHIPS)
def test_malformed_relationships_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(InvalidRelationship) as caught:
        parse_relationship(text)
    assert message in str(caught.value)
    assert isinstance(caught.value, InvalidArgument)


# (parser, text, what it parses to, or a substring of the error's message)
OBJECTS_AND_SUBJECTS = [
    pytest.param(parse_object, "doc:1", ObjectRef("doc", "1"), id="object"),
    pytest.param(parse_object, "org/doc:x", ObjectRef("org/doc", "x"), id="object-prefixed-type"),
    pytest.param(parse_object, "doc", "is not of the form type:id", id="object-no-colon"),
    pytest.param(parse_object, "doc:*", "cannot be the wildcard", id="object-wildcard"),
    pytest.param(parse_object, "Doc:1", "invalid object type", id="object-bad-type"),
    pytest.param(parse_object, "doc:a b", "invalid object id 'a b'", id="object-bad-id"),
    pytest.param(parse_object, "doc:", "invalid object id ''", id="object-empty-id"),
    pytest.param(parse_subject, "user:ann", SubjectRef("user", "ann"), id="subject"),
    pytest.param(parse_subject, "user:*", SubjectRef("user", "*"), id="subject-wildcard"),
    pytest.param(parse_subject, "group:eng#member", SubjectRef("group", "eng", "member"), id="subject-set"),
    pytest.param(parse_subject, "group:eng#...", SubjectRef("group", "eng"), id="subject-ellipsis"),
    pytest.param(parse_subject, "user", "is not of the form type:id[#relation]", id="subject-no-colon"),
    pytest.param(parse_subject, "user:*#member", "cannot carry a relation", id="subject-wildcard-set"),
    pytest.param(parse_subject, "user:ann#Bad", "invalid relation 'Bad'", id="subject-bad-relation"),
    pytest.param(parse_subject, "us:ann", "invalid object type 'us'", id="subject-bad-type"),
]


@pytest.mark.parametrize(("parse", "text", "expected"), OBJECTS_AND_SUBJECTS)
def test_objects_and_subjects(parse: Callable[[str], Any], text: str, expected: object) -> None:
    if isinstance(expected, str):
        with pytest.raises(InvalidRelationship, match=re.escape(expected)):
            parse(text)
    else:
        parsed = parse(text)
        assert parsed == expected
        assert str(parsed) == text.removesuffix("#...")


def test_references_compare_and_print() -> None:
    assert sorted([ObjectRef("doc", "b"), ObjectRef("doc", "a"), ObjectRef("al", "z")]) == [
        ObjectRef("al", "z"), ObjectRef("doc", "a"), ObjectRef("doc", "b"),
    ]
    assert SubjectRef("user", "*").is_wildcard and not SubjectRef("user", "ann").is_wildcard
    subjects = [SubjectRef("group", "eng", "member"), SubjectRef("group", "eng"), SubjectRef("doc", "1", "x")]
    assert sorted(subjects) == [SubjectRef("doc", "1", "x"), SubjectRef("group", "eng"), SubjectRef("group", "eng", "member")]
    assert str(SubjectRef("group", "eng", "member")) == "group:eng#member"
    plain = Relationship(ObjectRef("doc", "1"), "viewer", SubjectRef("group", "eng", "member"))
    caveated = dataclasses.replace(plain, caveat=CaveatRef("cav"))
    assert plain.key == caveated.key == ("doc", "1", "viewer", "group", "eng", "member")
    assert plain != caveated
    assert Relationship(ObjectRef("doc", "1"), "viewer", SubjectRef("user", "ann")).key[-1] == ""


@pytest.mark.parametrize(
    ("left", "right", "equal"),
    [
        pytest.param(CaveatRef("cav"), CaveatRef("cav", {}), True, id="none-and-empty-context"),
        pytest.param(CaveatRef("cav", {"a": 1, "b": [1]}), CaveatRef("cav", {"b": [1], "a": 1}), True, id="key-order"),
        pytest.param(CaveatRef("cav", {"a": 1}), CaveatRef("cav", {"a": 2}), False, id="other-value"),
        pytest.param(CaveatRef("cav", {"a": 1}), CaveatRef("other", {"a": 1}), False, id="other-name"),
    ],
)
def test_caveat_equality_is_by_name_and_canonical_context(left: CaveatRef, right: CaveatRef, equal: bool) -> None:
    assert (left == right) is equal
    assert (hash(left) == hash(right)) is equal
    assert (str(left) == str(right)) is equal


def test_caveat_is_never_equal_to_another_type() -> None:
    assert CaveatRef("cav") != "cav"
    assert CaveatRef("cav").__eq__("[cav]") is NotImplemented


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-31T00:00:00Z", dt.datetime(2026, 12, 31, tzinfo=UTC)),
        ("2026-12-31t00:00:00z", dt.datetime(2026, 12, 31, tzinfo=UTC)),
        ("2026-12-31T02:00:00+02:00", dt.datetime(2026, 12, 31, tzinfo=UTC)),
        ("2026-12-31T00:00:00.5Z", dt.datetime(2026, 12, 31, 0, 0, 0, 500000, tzinfo=UTC)),
        ("2026-12-31T00:00:00.123456789Z", dt.datetime(2026, 12, 31, 0, 0, 0, 123456, tzinfo=UTC)),
        (" 2026-12-31T00:00:00Z ", dt.datetime(2026, 12, 31, tzinfo=UTC)),
    ],
)
def test_timestamps_are_read_into_utc_and_printed_in_z(text: str, expected: dt.datetime) -> None:
    value = parse_timestamp(text)
    assert value == expected and value.tzinfo == UTC
    assert parse_timestamp(format_timestamp(value)) == value
    assert format_timestamp(value).endswith("Z")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2026-12-31", "no time zone"),
        ("soon", "invalid RFC 3339"),
        # in UTC, past the years a datetime holds (an OverflowError, found by tests/fuzz)
        ("9999-12-31T23:59:59-01:00", "out of range"),
        ("0001-01-01T00:00:00+01:00", "out of range"),
    ],
)
def test_bad_timestamps(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_timestamp(text)


# -- filters ------------------------------------------------------------------------------------

ANN_VIEWS_DOC_15 = parse_relationship("doc:15#viewer@user:ann")
ENG_VIEWS_DOC_2 = parse_relationship("doc:2#viewer@group:eng#member")


@pytest.mark.parametrize(
    ("filter", "matched"),
    [
        pytest.param(RelationshipFilter("doc"), {ANN_VIEWS_DOC_15, ENG_VIEWS_DOC_2}, id="type"),
        pytest.param(RelationshipFilter("folder"), set(), id="other-type"),
        pytest.param(RelationshipFilter("doc", "15"), {ANN_VIEWS_DOC_15}, id="id"),
        pytest.param(RelationshipFilter("doc", "1"), set(), id="id-is-not-a-prefix"),
        pytest.param(RelationshipFilter("doc", resource_id_prefix="1"), {ANN_VIEWS_DOC_15}, id="prefix"),
        pytest.param(RelationshipFilter("doc", relation="owner"), set(), id="relation"),
        pytest.param(RelationshipFilter("doc", relation="viewer"), {ANN_VIEWS_DOC_15, ENG_VIEWS_DOC_2}, id="relation-all"),
        pytest.param(RelationshipFilter("doc", subject=SubjectFilter("user")), {ANN_VIEWS_DOC_15}, id="subject-type"),
        pytest.param(RelationshipFilter("doc", subject=SubjectFilter("group", "eng")), {ENG_VIEWS_DOC_2}, id="subject-id"),
        pytest.param(RelationshipFilter("doc", subject=SubjectFilter("user", "bob")), set(), id="subject-other-id"),
        pytest.param(
            RelationshipFilter("doc", subject=SubjectFilter("group", relation="member")), {ENG_VIEWS_DOC_2}, id="subject-relation"
        ),
        pytest.param(
            RelationshipFilter("doc", subject=SubjectFilter("group", relation="")), set(), id="subject-object-itself"
        ),
        pytest.param(
            RelationshipFilter("doc", subject=SubjectFilter("user", relation="")), {ANN_VIEWS_DOC_15}, id="subject-plain"
        ),
    ],
)
def test_filters_match(filter: RelationshipFilter, matched: set[Relationship]) -> None:
    assert {r for r in (ANN_VIEWS_DOC_15, ENG_VIEWS_DOC_2) if filter.matches(r)} == matched


# -- revisions and consistency -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "token"), [(0, "r0"), (9, "r9"), (255, "rff"), (2**40, "r10000000000")])
def test_revision_tokens_round_trip(value: int, token: str) -> None:
    assert Revision(value).token() == str(Revision(value)) == token
    assert Revision.from_token(token) == Revision(value)


@pytest.mark.parametrize(
    "token",
    [
        "", "r", "ff", "R1", "rzz", "r-1", "r1.5",
        # int(..., 16) reads these, but no token is written so: only the canonical form is one
        "r+1", "r 1", "r1 ", " r1", "r1_0", "r0x10", "r01", "r00", "rA", "r1\n", "r\uff11",
        "r1" + "0" * 16,  # past 64 bits
    ],
)
def test_malformed_revision_tokens_are_invalid_argument(token: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed revision token") as info:
        Revision.from_token(token)
    assert not isinstance(info.value, RevisionUnavailable)  # that one is for revisions the store lacks
    assert info.value.fields() == {"token": token}


def test_a_long_malformed_token_is_quoted_shortened() -> None:
    with pytest.raises(InvalidArgument) as info:
        Revision.from_token("x" * 10_000)
    assert "'" + "x" * 64 + "'... (10000 characters)" in str(info.value) and len(str(info.value)) < 300
    assert info.value.fields() == {"token": "x" * 64 + "... (10000 characters)"}


def test_revisions_are_ordered() -> None:
    assert Revision(1) < Revision(2) and max(Revision(3), Revision(10)) == Revision(10)


@pytest.mark.parametrize(
    ("consistency", "mode", "revision"),
    [
        (Consistency.minimize_latency(), "minimize_latency", None),
        (Consistency.fully_consistent(), "fully_consistent", None),
        (Consistency.at_least_as_fresh("r5"), "at_least_as_fresh", Revision(5)),
        (Consistency.at_least_as_fresh(Revision(5)), "at_least_as_fresh", Revision(5)),
        (Consistency.at_exact_snapshot("ra"), "at_exact_snapshot", Revision(10)),
        (Consistency.at_exact_snapshot(Revision(10)), "at_exact_snapshot", Revision(10)),
    ],
)
def test_consistency_constructors(consistency: Consistency, mode: str, revision: Revision | None) -> None:
    assert (consistency.mode, consistency.revision) == (mode, revision)


@pytest.mark.parametrize("make", [Consistency.at_least_as_fresh, Consistency.at_exact_snapshot])
def test_consistency_refuses_a_malformed_token(make: Callable[[str], Consistency]) -> None:
    with pytest.raises(InvalidArgument, match="malformed revision token"):
        make("yesterday")


# -- plain_constructor ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Four:
    a: int
    b: int
    c: int
    d: int


@dataclasses.dataclass(frozen=True)
class Unslotted:
    a: int
    b: int


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    a: int
    b: int

    def __post_init__(self) -> None:
        raise AssertionError("never called by a plain constructor")


def test_the_model_constructors_make_equal_values() -> None:
    made = new_relationship(new_object("doc", "1"), "viewer", new_subject("group", "eng", "member"), None, None)
    assert made == parse_relationship("doc:1#viewer@group:eng#member")
    assert type(made.resource) is ObjectRef and type(made.subject) is SubjectRef and type(made) is Relationship
    assert hash(new_object("doc", "1")) == hash(ObjectRef("doc", "1"))


@pytest.mark.parametrize(
    ("cls", "names", "plain"),
    [
        pytest.param(Four, ("a", "b", "c", "d"), True, id="slotted"),
        pytest.param(Four, ("a", "b", "c"), False, id="other-fields"),
        pytest.param(Four, ("d", "c", "b", "a"), False, id="other-order"),
        pytest.param(Unslotted, ("a", "b"), False, id="unslotted"),
        pytest.param(Checked, ("a", "b"), False, id="post-init"),
    ],
)
def test_plain_constructor_falls_back_to_the_class(cls: type, names: tuple[str, ...], plain: bool) -> None:
    make = plain_constructor(cls, names)
    assert (make is not cls) is plain


def test_a_plain_constructor_sets_every_field_in_order() -> None:
    make = plain_constructor(Four, ("a", "b", "c", "d"))
    assert make(1, 2, 3, 4) == Four(1, 2, 3, 4)
    with pytest.raises(ValueError):
        make(1, 2, 3)


_PLAIN_FORMS = [
    "doc:1#viewer@user:ann", "  doc:1#viewer@user:ann \n", "doc:1#viewer@group:eng#member",
    "doc:1#viewer@group:eng#...", "doc:1#viewer@user:*", "pre/doc:a=b|c#viewer@user:x/y_z-1+2",
    "doc:1#viewer@user:*#member", "do:1#viewer@user:a", "doc:*#viewer@user:a", "doc:1#vi@user:a",
    "doc:1#viewer@user:a#me", "doc:1#viewer@user:a b", "doc:1#viewer@user:a[c]", "Doc:1#viewer@user:a",
    "doc:" + "x" * 1024 + "#viewer@user:a", "doc:" + "x" * 1025 + "#viewer@user:a", "doc:1#viewer_@user:a",
    "doc:1#viewer@user:é", "doc:1#viewer@user:a\nb",
]


@pytest.mark.parametrize("text", _PLAIN_FORMS)
def test_the_plain_forms_fast_path_parses_as_the_general_path_does(text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """parse_relationship matches the plain form (no caveat, no expiration) with one regular
    expression; whatever it accepts, the general path accepts the same way, and what it leaves
    to the general path raises the same."""
    import relengine.model as model

    def parsed() -> Any:
        try:
            return parse_relationship(text)
        except InvalidRelationship as exc:
            return exc.message

    fast = parsed()
    monkeypatch.setattr(model, "_PLAIN_REL_RE", re.compile(r"(?!)"))  # matches nothing
    assert parsed() == fast
