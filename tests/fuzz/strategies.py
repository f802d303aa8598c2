"""Hypothesis strategies for the fuzz suite: names, ids, tokens, cursors, caveat contexts, every
relengine.v1 request message built field by field, and raw message bodies (random bytes,
truncated or corrupted valid messages, fields sent with the wrong wire type).

Each strategy mixes values the world knows (``world``: they reach the engine) with well-formed
unknown ones and garbage (they reach the validation), so that one run covers both.
"""

from __future__ import annotations

import base64
import math
import re
import struct as _struct
from typing import Any, Callable

import msgpack
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import strategies as st

from relengine.model import OBJECT_ID_RE, RELATION_NAME_RE, TYPE_NAME_RE, ObjectRef, Revision, SubjectRef
from relengine.results import encode_cursor
from relengine.wire import convert
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2, relationships_pb2, schema_pb2

from .world import CAVEATS, IDS, MEMBERS, PARAMETERS, RELATIONS, RELATIONSHIPS, RELATIONSHIPS_TEXT, SCHEMA, TYPES, schema_sources

Draw = Callable[[st.SearchStrategy[Any]], Any]

# -- text ------------------------------------------------------------------------------------

CHARACTERS = st.characters(exclude_categories=("Cs",))  # a proto string must be valid UTF-8
LONG = 3000  # "lengths up to a few thousand characters"


def texts(max_size: int = 40) -> st.SearchStrategy[str]:
    """Any text: short random unicode, or one character repeated up to ``LONG`` times."""
    return st.one_of(
        st.text(CHARACTERS, max_size=max_size),
        st.builds(lambda c, n: c * n, CHARACTERS, st.integers(0, LONG)),
        st.sampled_from(["", " ", "\x00", "...", "*", "#", "@", ":", "/", "a/b", "\u212a", "ａｂｃ", "e\u0301"]),
    )


def mostly(common: st.SearchStrategy[Any], *rare: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """``common`` about nine times in ten, else one of ``rare``: most fields of a message hold
    what the server takes, so that a request gets past validation to the engine with one bad
    field or none (shrinking goes towards ``common``)."""
    wild = st.one_of(*rare)
    # Not one_of(common, common, ..., *rare): one_of draws each distinct branch equally often.
    return st.integers(0, 9).flatmap(lambda i: common if i < 9 else wild)


def names(known: list[str], pattern: Any) -> st.SearchStrategy[str]:
    """A type, relation or caveat name: a known one (mostly), a well-formed unknown one, or any text."""
    return mostly(st.sampled_from(known), st.from_regex(pattern, fullmatch=True), texts())


type_names = names(TYPES, TYPE_NAME_RE)
relation_names = names(RELATIONS, RELATION_NAME_RE)
caveat_names = names(CAVEATS, TYPE_NAME_RE)
object_ids = mostly(
    st.sampled_from(IDS),
    st.from_regex(OBJECT_ID_RE, fullmatch=True),
    st.builds(lambda n: "x" * n, st.integers(1020, 1030)),  # around the 1024 limit
    texts(),
)

# -- revision tokens and cursors ---------------------------------------------------------------

HEAD_GUESS = 64  # revisions the worlds reach during a run (plenty of tokens below and above)

tokens = mostly(
    st.integers(0, HEAD_GUESS).map(lambda n: Revision(n).token()),
    st.integers(0, 2**64 - 1).map(lambda n: Revision(n).token()),
    st.sampled_from(["", "r", "r0", "r00", "R1", "r-1", "r 1", "r1 ", "rg", "r" + "f" * 17, "0x1", "1"]),
    texts(),
)


def _cursor_parts() -> st.SearchStrategy[list[Any]]:
    """What a cursor could hold after its revision; integers as msgpack takes them (64 bits)."""
    numbers = st.integers(-(2**63), 2**64 - 1)
    scalar = st.one_of(st.sampled_from(IDS), st.sampled_from(RELATIONSHIPS_TEXT), texts(), numbers, st.none(), st.binary(max_size=8))
    return st.lists(st.one_of(scalar, st.lists(scalar, max_size=3)), max_size=3)


cursors = mostly(
    # What a page gives out (an id, or a relationship's text for reads), at revisions near and far.
    st.builds(lambda r, part: encode_cursor(Revision(r), part), st.integers(0, HEAD_GUESS), st.sampled_from(IDS + RELATIONSHIPS_TEXT)),
    st.builds(lambda r, part: encode_cursor(Revision(r), part), st.integers(0, 2**64 - 1), texts()),
    # Well-encoded but not what a page gives: other shapes, types, revisions out of range.
    st.builds(lambda r, parts: encode_cursor(Revision(r), *parts), st.integers(-(2**63), 2**64 - 1), _cursor_parts()),
    st.builds(lambda raw: base64.urlsafe_b64encode(msgpack.packb(raw)).decode().rstrip("="), _cursor_parts()),
    # A read cursor naming a relationship whose caveat context nests deeper than any parser's stack.
    st.builds(
        lambda n: encode_cursor(Revision(1), 'group:eng#member@user:ann[fuzz_limits:{"a":' + "[" * n + "]" * n + "}]"),
        st.integers(1, 50_000),
    ),
    st.binary(max_size=64).map(lambda raw: base64.urlsafe_b64encode(raw).decode()),
    texts(),
)

# -- caveat contexts -------------------------------------------------------------------------

SPECIAL_FLOATS = [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 2.0**53, 2.0**53 + 2, 2.0**63, 2.0**64, 1e20]
SPECIAL_STRINGS = [
    "1h", "-5s", "1.5h", "9999999999999h", "1d", "",  # durations
    "2020-01-01T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "+275760-09-13T00:00:00Z", "2020-13-45T99:99:99Z",
    "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "2020-01-01T00:00:00.123456789123+14:00",
    "10.0.0.1", "::1", "10.0.0.0/8", "256.1.1.1", "fe80::1%eth0", "not-an-ip",  # ip addresses
    "AAAA", "!!!", "aGVsbG8=",  # bytes (base64)
    "42", "-1", "1e3", "0x10", "NaN", "Infinity", "18446744073709551616",  # numbers as strings
]


def json_values(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    leaves = st.one_of(
        st.none(), st.booleans(), numbers, st.sampled_from(SPECIAL_FLOATS), st.sampled_from(SPECIAL_STRINGS), texts(20),
    )
    return st.recursive(
        leaves,
        lambda children: st.one_of(
            st.lists(children, max_size=4),
            st.dictionaries(st.one_of(st.sampled_from(PARAMETERS + ["k"]), texts(10)), children, max_size=4),
        ),
        max_leaves=12,
    )


def contexts(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A caveat context: some of the world's caveat parameters with values of their types
    (mostly), or any names with any JSON values, NaN and the infinities included, numbers
    from ``numbers``."""
    fitting = {
        "amount": st.integers(-20, 20), "ratio": st.floats(-2, 2), "flag": st.booleans(), "label": texts(5),
        "count": st.integers(0, 5), "blob": st.binary(max_size=6).map(lambda b: base64.b64encode(b).decode()),
        "wait": st.sampled_from(["1s", "30m", "2h", "1h30m"]), "moment": st.sampled_from(["2019-06-01T00:00:00Z", "2024-01-01T12:00:00Z"]),
        "ip": st.sampled_from(["10.1.2.3", "192.168.0.1", "::1"]), "anything": json_values(numbers),
        "numbers": st.lists(st.integers(-3, 3), max_size=4), "labels": st.dictionaries(st.sampled_from(["k", "j"]), texts(5), max_size=2),
    }
    return mostly(
        st.fixed_dictionaries({}, optional=fitting),
        st.dictionaries(mostly(st.sampled_from(PARAMETERS), texts(10)), json_values(numbers), max_size=6),
    )


# What a Struct can carry: doubles (an int becomes one).
struct_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-(2**70), 2**70))
# What a Python caller can pass: any int too.
python_numbers = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(), st.integers(-(2**64), 2**64))


def to_struct(value: dict[str, Any]) -> Struct:
    out = Struct()
    out.update(value)
    return out


structs = contexts(struct_numbers).map(to_struct)


def _nested_struct(depth: int) -> Struct:
    """A Struct nested ``depth`` levels (past protobuf's recursion limit for large ones)."""
    inner: Any = 1
    for _ in range(depth):
        inner = {"k": inner}
    return to_struct({"labels": inner})


any_structs = mostly(structs, st.integers(1, 200).map(_nested_struct))

# -- messages --------------------------------------------------------------------------------


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value, or None for "leave the field unset"."""
    return st.one_of(st.none(), strategy)


def required(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A value (mostly), or None for "leave the field unset"."""
    return mostly(strategy, st.none())


def _extend(repeated: Any, messages: list[Any]) -> None:
    """``repeated.extend(messages)`` by copies: extend parses each message again, which fails
    on the Structs nested past protobuf's limit (those are for the server to refuse)."""
    for message in messages:
        repeated.add().CopyFrom(message)


def _set(msg: Any, field: str, value: Any) -> None:
    """Set a message field (or leave it unset for None)."""
    if value is None:
        return
    if isinstance(value, Message):
        getattr(msg, field).CopyFrom(value)
    else:
        setattr(msg, field, value)


_WORLD_OBJECTS = sorted({r.resource for r in RELATIONSHIPS} | {ObjectRef(r.subject.type, r.subject.id) for r in RELATIONSHIPS})
_WORLD_SUBJECTS = sorted({r.subject for r in RELATIONSHIPS} | {SubjectRef(o.type, o.id) for o in _WORLD_OBJECTS})


@st.composite
def _any_object_ref(draw: Draw) -> core_pb2.ObjectReference:
    return core_pb2.ObjectReference(object_type=draw(type_names), object_id=draw(object_ids))


@st.composite
def _any_subject_ref(draw: Draw) -> core_pb2.SubjectReference:
    relation = draw(st.one_of(st.just(""), st.just("..."), relation_names))
    return core_pb2.SubjectReference(object=draw(required(object_refs())), optional_relation=relation)


def object_refs() -> st.SearchStrategy[core_pb2.ObjectReference]:
    """An object of the world (mostly), or any."""
    return mostly(st.sampled_from(_WORLD_OBJECTS).map(convert.object_to_proto), _any_object_ref())


def subject_refs() -> st.SearchStrategy[core_pb2.SubjectReference]:
    """A subject of the world (mostly), or any."""
    return mostly(st.sampled_from(_WORLD_SUBJECTS).map(convert.subject_to_proto), _any_subject_ref())


@st.composite
def consistencies(draw: Draw) -> core_pb2.Consistency | None:
    kind = draw(st.sampled_from([None, "empty", "minimize_latency", "fully_consistent", "at_least_as_fresh", "at_exact_snapshot"]))
    if kind is None:
        return None
    if kind == "empty":
        return core_pb2.Consistency()
    if kind in ("minimize_latency", "fully_consistent"):
        return core_pb2.Consistency(**{kind: draw(st.booleans())})
    return core_pb2.Consistency(**{kind: draw(tokens)})


timestamps = mostly(
    st.builds(lambda s: Timestamp(seconds=s), st.integers(0, 4_102_444_800)),  # 1970 to 2100
    st.builds(lambda s, n: Timestamp(seconds=s, nanos=n), st.integers(-(2**63), 2**63 - 1), st.integers(-(2**31), 2**31 - 1)),
    st.sampled_from([-62_135_596_800, -62_135_596_801, 253_402_300_799, 253_402_300_800]).map(lambda s: Timestamp(seconds=s)),
)


@st.composite
def _world_relationship(draw: Draw) -> core_pb2.Relationship:
    """A relationship of the world, its caveat or expiration sometimes changed."""
    msg = convert.relationship_to_proto(draw(st.sampled_from(RELATIONSHIPS)))
    change = draw(st.sampled_from(["none", "context", "caveat", "expiration", "neither"]))
    if change == "context":
        msg.optional_caveat.caveat_name = msg.optional_caveat.caveat_name or draw(caveat_names)
        msg.optional_caveat.context.CopyFrom(draw(any_structs))
    elif change == "caveat":
        msg.optional_caveat.caveat_name = draw(caveat_names)
    elif change == "expiration":
        msg.optional_expires_at.CopyFrom(draw(timestamps))
    elif change == "neither":
        msg.ClearField("optional_caveat")
        msg.ClearField("optional_expires_at")
    return msg


def relationships() -> st.SearchStrategy[core_pb2.Relationship]:
    """A relationship of the world, or one like it (mostly), or any."""
    return mostly(_world_relationship(), _any_relationship())


@st.composite
def _any_relationship(draw: Draw) -> core_pb2.Relationship:
    msg = core_pb2.Relationship(relation=draw(relation_names))
    _set(msg, "resource", draw(required(object_refs())))
    _set(msg, "subject", draw(required(subject_refs())))
    if draw(st.booleans()):
        msg.optional_caveat.caveat_name = draw(caveat_names)
        _set(msg.optional_caveat, "context", draw(maybe(any_structs)))
    _set(msg, "optional_expires_at", draw(maybe(timestamps)))
    return msg


enum_values = mostly(st.integers(1, 3), st.integers(-(2**31), 2**31 - 1))
limits = mostly(st.integers(0, 3), st.sampled_from([100_000, 100_001, 2**31, 2**32 - 1]), st.integers(0, 2**32 - 1))


@st.composite
def subject_filters(draw: Draw) -> core_pb2.SubjectFilter:
    msg = core_pb2.SubjectFilter(subject_type=draw(type_names))
    _set(msg, "optional_subject_id", draw(maybe(object_ids)))
    _set(msg, "optional_relation", draw(maybe(st.one_of(st.just(""), st.just("..."), relation_names))))
    return msg


@st.composite
def filters(draw: Draw) -> core_pb2.RelationshipFilter:
    msg = core_pb2.RelationshipFilter(resource_type=draw(type_names))
    for field, strategy in [
        ("optional_resource_id", object_ids),
        ("optional_resource_id_prefix", st.one_of(st.just(""), object_ids)),
        ("optional_relation", relation_names),
    ]:
        _set(msg, field, draw(maybe(strategy)))
    _set(msg, "optional_subject_filter", draw(maybe(subject_filters())))
    return msg


@st.composite
def preconditions(draw: Draw) -> core_pb2.Precondition:
    msg = core_pb2.Precondition(operation=draw(enum_values))
    _set(msg, "filter", draw(required(filters())))
    return msg


@st.composite
def updates(draw: Draw) -> core_pb2.RelationshipUpdate:
    msg = core_pb2.RelationshipUpdate(operation=draw(enum_values))
    _set(msg, "relationship", draw(required(relationships())))
    return msg


def permission_of(draw: Draw, resource_type: str) -> str:
    """A relation or permission of ``resource_type`` (mostly), or any name."""
    members = MEMBERS.get(resource_type)
    return str(draw(mostly(st.sampled_from(members), relation_names) if members else relation_names))


def _question(draw: Draw, msg: Any) -> Any:
    """``msg`` with its resource, permission and subject set (fields of a check)."""
    resource = draw(required(object_refs()))
    _set(msg, "resource", resource)
    msg.permission = permission_of(draw, resource.object_type if resource is not None else "")
    _set(msg, "subject", draw(required(subject_refs())))
    return msg


@st.composite
def check_requests(draw: Draw) -> permissions_pb2.CheckRequest:
    msg = _question(draw, permissions_pb2.CheckRequest())
    _set(msg, "consistency", draw(consistencies()))
    _set(msg, "context", draw(maybe(any_structs)))
    return msg


@st.composite
def bulk_check_items(draw: Draw) -> permissions_pb2.BulkCheckItem:
    return _question(draw, permissions_pb2.BulkCheckItem())


@st.composite
def bulk_check_requests(draw: Draw) -> permissions_pb2.BulkCheckRequest:
    msg = permissions_pb2.BulkCheckRequest()
    _extend(msg.items, draw(st.lists(bulk_check_items(), max_size=8)))
    repeat = draw(st.sampled_from([0, 0, 0, 10_000, 10_001]))  # at and past the item limit
    if repeat and msg.items:
        _extend(msg.items, [msg.items[0]] * (repeat - len(msg.items)))
    _set(msg, "consistency", draw(consistencies()))
    _set(msg, "context", draw(maybe(any_structs)))
    return msg


@st.composite
def expand_requests(draw: Draw) -> permissions_pb2.ExpandRequest:
    msg = permissions_pb2.ExpandRequest()
    resource = draw(required(object_refs()))
    _set(msg, "resource", resource)
    msg.permission = permission_of(draw, resource.object_type if resource is not None else "")
    _set(msg, "consistency", draw(consistencies()))
    return msg


@st.composite
def lookup_resources_requests(draw: Draw) -> permissions_pb2.LookupResourcesRequest:
    resource_type = draw(type_names)
    msg = permissions_pb2.LookupResourcesRequest(
        resource_object_type=resource_type, permission=permission_of(draw, resource_type), optional_limit=draw(limits),
        optional_cursor=draw(st.one_of(st.just(""), cursors)),
    )
    _set(msg, "consistency", draw(consistencies()))
    _set(msg, "subject", draw(required(subject_refs())))
    _set(msg, "context", draw(maybe(any_structs)))
    return msg


@st.composite
def lookup_subjects_requests(draw: Draw) -> permissions_pb2.LookupSubjectsRequest:
    resource = draw(required(object_refs()))
    msg = permissions_pb2.LookupSubjectsRequest(
        permission=permission_of(draw, resource.object_type if resource is not None else ""),
        subject_object_type=draw(type_names),
        optional_subject_relation=draw(st.one_of(st.just(""), st.just("..."), relation_names)),
        optional_limit=draw(limits), optional_cursor=draw(st.one_of(st.just(""), cursors)),
    )
    _set(msg, "consistency", draw(consistencies()))
    _set(msg, "resource", resource)
    _set(msg, "context", draw(maybe(any_structs)))
    return msg


@st.composite
def write_requests(draw: Draw) -> relationships_pb2.WriteRequest:
    msg = relationships_pb2.WriteRequest()
    _extend(msg.updates, draw(st.lists(updates(), max_size=6)))
    if draw(st.integers(0, 9)) == 0 and msg.updates:  # at and past the batch limit
        _extend(msg.updates, [msg.updates[0]] * (draw(st.sampled_from([1000, 1001])) - len(msg.updates)))
    _extend(msg.preconditions, draw(st.lists(preconditions(), max_size=3)))
    return msg


@st.composite
def read_requests(draw: Draw) -> relationships_pb2.ReadRequest:
    msg = relationships_pb2.ReadRequest(optional_limit=draw(limits), optional_cursor=draw(st.one_of(st.just(""), cursors)))
    _set(msg, "consistency", draw(consistencies()))
    _set(msg, "filter", draw(required(filters())))
    return msg


@st.composite
def delete_requests(draw: Draw) -> relationships_pb2.DeleteRequest:
    msg = relationships_pb2.DeleteRequest(optional_limit=draw(limits))
    _set(msg, "filter", draw(required(filters())))
    _extend(msg.preconditions, draw(st.lists(preconditions(), max_size=3)))
    return msg


watch_requests = st.builds(relationships_pb2.WatchRequest, optional_start_revision=st.one_of(st.just(""), tokens))


@st.composite
def import_requests(draw: Draw) -> list[relationships_pb2.ImportRequest]:
    """A request stream: a few messages of a few relationships each (none at all, too)."""
    out = []
    for _ in range(draw(st.integers(0, 3))):
        msg = relationships_pb2.ImportRequest()
        _extend(msg.relationships, draw(st.lists(relationships(), max_size=4)))
        out.append(msg)
    return out


@st.composite
def read_schema_requests(draw: Draw) -> schema_pb2.ReadSchemaRequest:
    msg = schema_pb2.ReadSchemaRequest()
    _set(msg, "consistency", draw(consistencies()))
    return msg


@st.composite
def guard_files(draw: Draw) -> str:
    """Guard files, valid or not: YAML of the right shape with names that exist or not, and
    values of any type."""
    names = st.sampled_from(["doc", "user", "group", "view", "viewer", "member", "nope", "", "Doc", "a" * 65])
    value = st.one_of(names, st.integers(-3, 5), st.booleans(), st.none(), st.just("2"))
    guards = draw(st.lists(st.dictionaries(
        st.sampled_from(["name", "description", "resource", "permission", "subject_type", "at_least", "extra"]),
        value, max_size=7), max_size=3))
    import yaml

    return str(yaml.safe_dump({"guards": guards} if draw(st.booleans()) else guards))


# -- schema text -------------------------------------------------------------------------------

SCHEMA_WORDS = [
    "definition", "relation", "permission", "caveat", "use", "expiration", "self", "typechecking", "import", "partial",
    "nil", "with", "and", "->", ".any(", ".all(", "(", ")", "{", "}", "+", "-", "&", "|", ":", "#", "*", ";", ",", "=",
    "/", "...", "<", ">", "list<", "map<", "int", "uint", "string", "any", "ipaddress", "/*", "*/", "//", "/**", "\n",
    "\"", "'", "`", "\\", "\t", " ", "user", "viewer", "view", "doc", "a" * 65, "x/" * 40,
]


@st.composite
def mutated(draw: Draw, sources: list[str], words: list[str]) -> str:
    """One of ``sources`` after a few random edits (none, sometimes): characters or lines
    deleted, duplicated or moved, a name swapped for another of the text's, an operator for
    another, ``words`` or any text put in, or deep nesting spliced in."""
    text = draw(st.sampled_from(sources))
    for _ in range(draw(st.integers(0, 4))):
        n = len(text)
        a = draw(st.integers(0, n))
        b = draw(st.integers(a, min(n, a + 10)))
        lines = text.split("\n")
        i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
        found = re.findall(r"[A-Za-z_][A-Za-z0-9_/]*", text) or ["a"]
        edit = draw(st.sampled_from(["delete", "duplicate", "lines", "name", "operator", "word", "text", "nest"]))
        if edit == "delete":
            text = text[:a] + text[b:]
        elif edit == "duplicate":
            text = text[:b] + text[a:b] + text[b:]
        elif edit == "lines":
            line = lines.pop(i) if draw(st.booleans()) else lines[i]
            lines.insert(min(j, len(lines)), line)
            text = "\n".join(lines)
        elif edit == "name":
            old, new = draw(st.sampled_from(found)), draw(st.sampled_from(found))
            text = text.replace(old, new, 1) if draw(st.booleans()) else re.sub(rf"\b{re.escape(old)}\b", new, text)
        elif edit == "operator":
            ops = [m.start() for m in re.finditer(r"[-+&|]", text)]
            if ops:
                at = draw(st.sampled_from(ops))
                text = text[:at] + draw(st.sampled_from(["+", "-", "&", "|", "->", ""])) + text[at + 1:]
        elif edit == "word":
            text = text[:a] + draw(st.sampled_from(words)) + text[b:]
        elif edit == "text":
            text = text[:a] + draw(texts(20)) + text[b:]
        else:
            depth = draw(st.one_of(st.integers(1, 40), st.integers(1, 5000)))
            name = draw(st.sampled_from(found))
            # Where nesting gets parsed: a permission's expression, a caveat parameter's type.
            starts = [m.end() for m in re.finditer(r"= |\b(int|string|any|double|bool)\b", text)]
            if starts and draw(st.booleans()):
                a = b = draw(st.sampled_from(starts))
            opener, closer = draw(st.sampled_from([("(", ")"), ("list<", ">"), ("[", "]"), ("{", "}"), (f"{name} + ", ""), (f"{name} - ", ""), (f"{name}->", "")]))
            text = text[:a] + opener * depth + name + closer * depth + text[b:]
    return text


@st.composite
def deep_schemas(draw: Draw) -> str:
    """The world's schema with one part nested ``depth`` levels: a permission's expression
    (parentheses, a chain of one operator, alternating operators, arrows), a caveat
    parameter's type or a caveat's expression."""
    depth = draw(st.sampled_from([10, 30, 60, 100, 200, 500, 1000, 3000]))
    kind = draw(st.sampled_from(["parens", "union", "exclusion", "mixed", "arrows", "type", "cel"]))
    if kind == "type":
        return SCHEMA.replace("numbers list<int>", "numbers " + "list<" * depth + "int" + ">" * depth)
    if kind == "cel":
        return SCHEMA.replace("amount < 10", "(" * depth + "amount < 10" + ")" * depth)
    if kind == "parens":
        expression = "(" * depth + "viewer" + ")" * depth
    elif kind == "union":
        expression = " + ".join(["viewer"] * depth)
    elif kind == "exclusion":
        expression = " - ".join(["viewer"] * depth)
    elif kind == "mixed":
        expression = "viewer"
        for i in range(depth):
            expression = f"({expression} {'+&-'[i % 3]} owner)"
    else:
        expression = "folder" + "->view" * depth
    return SCHEMA.replace("permission both = viewer & owner", f"permission both = {expression}")


# -- every method's requests ----------------------------------------------------------------------

SCHEMA_SOURCES = schema_sources()
REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "Check": check_requests(),
    "BulkCheck": bulk_check_requests(),
    "Expand": expand_requests(),
    "LookupResources": lookup_resources_requests(),
    "LookupSubjects": lookup_subjects_requests(),
    "Write": write_requests(),
    "Read": read_requests(),
    "Delete": delete_requests(),
    "Watch": watch_requests,
    "Import": import_requests(),  # a list: the request stream
    "WriteSchema": st.builds(
        schema_pb2.WriteSchemaRequest, schema=st.one_of(mutated(SCHEMA_SOURCES, SCHEMA_WORDS), deep_schemas(), texts()),
    ),
    "ReadSchema": read_schema_requests(),
    "WriteGuards": st.builds(schema_pb2.WriteGuardsRequest, guards=st.one_of(guard_files(), texts())),
    "ReadGuards": st.builds(schema_pb2.ReadGuardsRequest, consistency=st.one_of(st.none(), consistencies())),
    "CheckGuards": st.one_of(
        st.just(schema_pb2.CheckGuardsRequest()),
        st.builds(
            lambda seconds, nanos: schema_pb2.CheckGuardsRequest(within=Duration(seconds=seconds, nanos=nanos)),
            # past Duration's own range (about 10,000 years) and timedelta's, negative, mixed signs
            st.one_of(st.integers(-400_000_000_000, 400_000_000_000), st.integers(-(2**63), 2**63 - 1),
                      st.sampled_from([0, 1, -1, 7 * 86_400])),
            st.one_of(st.integers(-(10**9), 10**9), st.just(0)),
        ),
    ),
}
"""Well-formed requests of every relengine.v1 method, by name."""


# -- raw bodies ----------------------------------------------------------------------------------

_WIRE_OF_TYPE = {
    FieldDescriptor.TYPE_DOUBLE: 1, FieldDescriptor.TYPE_FIXED64: 1, FieldDescriptor.TYPE_SFIXED64: 1,
    FieldDescriptor.TYPE_FLOAT: 5, FieldDescriptor.TYPE_FIXED32: 5, FieldDescriptor.TYPE_SFIXED32: 5,
    FieldDescriptor.TYPE_STRING: 2, FieldDescriptor.TYPE_BYTES: 2, FieldDescriptor.TYPE_MESSAGE: 2,
}


def varint(value: int) -> bytes:
    value &= 2**64 - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


@st.composite
def wire_messages(draw: Draw, descriptor: Descriptor | None, depth: int = 0) -> bytes:
    """A body in protobuf's wire format for ``descriptor``'s message: its fields (mostly) and
    unknown ones, each with the declared wire type or another, valid payloads or not."""
    out = bytearray()
    fields = list(descriptor.fields) if descriptor is not None else []
    for _ in range(draw(st.integers(0, 6))):
        field = draw(st.sampled_from(fields)) if fields and draw(st.integers(0, 4)) else None
        number = field.number if field is not None else draw(st.one_of(st.integers(1, 20), st.integers(0, 2**29 - 1)))
        declared = _WIRE_OF_TYPE.get(field.type, 0) if field is not None else None
        if field is not None and field.is_repeated and declared == 0:
            declared = draw(st.sampled_from([0, 2]))  # packed or not
        wire = declared if declared is not None and draw(st.booleans()) else draw(st.integers(0, 7))
        out += varint(number << 3 | wire)
        if wire == 0:
            out += draw(st.one_of(st.integers(0, 2**64 - 1).map(varint), st.just(b"\xff" * 11), st.just(b"\x80")))
        elif wire == 1:
            out += draw(st.one_of(st.binary(min_size=8, max_size=8), st.floats().map(lambda f: _struct.pack("<d", f))))
        elif wire == 5:
            out += draw(st.binary(min_size=4, max_size=4))
        elif wire == 2:
            sub = field.message_type if field is not None and field.type == FieldDescriptor.TYPE_MESSAGE else None
            payload = draw(st.one_of(
                st.binary(max_size=64),
                st.sampled_from(TYPES + RELATIONS + IDS).map(str.encode),
                st.just(b"\xc3\x28\xa0\xa1\xff"),  # not UTF-8
                wire_messages(sub, depth + 1) if depth < 4 else st.just(b""),
            ))
            length = len(payload) + draw(st.sampled_from([0, 0, 0, 1, -1, 2**31]))
            out += varint(max(length, 0)) + payload
        # 3 and 4 (groups) and 6 and 7 (no such wire type) come without a payload
    return bytes(out)


def raw_bodies(descriptor: Descriptor, valid: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Request bodies for a method taking ``descriptor``'s message, ``valid`` its messages."""
    serialized = valid.map(lambda msg: msg.SerializeToString())
    return st.one_of(
        st.binary(max_size=256),
        wire_messages(descriptor),
        wire_messages(descriptor),
        st.tuples(serialized, st.integers(0, 2**16)).map(lambda pair: pair[0][: pair[1] % (len(pair[0]) + 1)]),  # truncated
        st.tuples(serialized, st.lists(st.tuples(st.integers(0, 2**16), st.integers(0, 255)), min_size=1, max_size=4)).map(_flipped),
        st.tuples(serialized, wire_messages(descriptor)).map(lambda pair: pair[0] + pair[1]),  # valid, then more
        st.integers(1, 200).map(lambda n: (b"\x22\x00" if n % 2 else b"") + b"\x2a\x80\x80\x01" * n),  # deep, lying lengths
    )


def _flipped(pair: tuple[bytes, list[tuple[int, int]]]) -> bytes:
    data, flips = bytearray(pair[0]), pair[1]
    for where, value in flips:
        if data:
            data[where % len(data)] = value
    return bytes(data)
