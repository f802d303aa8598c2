"""Proto <-> model conversion: round trips, and validation at the edge."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from google.protobuf.duration_pb2 import Duration

from relengine import errors
from relengine.model import (
    Consistency,
    ObjectRef,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    parse_relationship,
)
from relengine.results import (
    Change,
    ExpandNode,
    Operation,
    Precondition,
    PreconditionKind,
    RelationshipUpdate,
)
from relengine.wire import convert as c
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2, schema_pb2


@pytest.mark.parametrize(
    "text",
    [
        "doc:1#viewer@user:ann",
        "doc:1#viewer@group:eng#member",
        "doc:1#viewer@user:*",
        'doc:1#viewer@user:ann[ip_allowed:{"cidr":"10.0.0.0/8","n":2}]',
        "doc:1#viewer@user:ann[expiration:2030-01-02T03:04:05.123456Z]",
        "org/doc:a|b=c#viewer@org/user:x-y+z",
    ],
)
def test_relationship_round_trip(text: str) -> None:
    rel = parse_relationship(text)
    msg = c.relationship_to_proto(rel)
    assert c.relationship_from_proto(core_pb2.Relationship.FromString(msg.SerializeToString())) == rel
    assert c.relationship_from_server(msg) == rel


@pytest.mark.parametrize(
    "filter",
    [
        RelationshipFilter("doc"),
        RelationshipFilter("doc", "1", relation="viewer"),
        RelationshipFilter("doc", resource_id_prefix="ab"),
        RelationshipFilter("doc", subject=SubjectFilter("user")),
        RelationshipFilter("doc", subject=SubjectFilter("group", "eng", "member")),
        RelationshipFilter("doc", subject=SubjectFilter("group", relation="")),
    ],
)
def test_filter_round_trip(filter: RelationshipFilter) -> None:
    assert c.filter_from_proto(c.filter_to_proto(filter)) == filter


@pytest.mark.parametrize(
    "consistency",
    [
        Consistency.minimize_latency(),
        Consistency.fully_consistent(),
        Consistency.at_least_as_fresh(Revision(7)),
        Consistency.at_exact_snapshot(Revision(255)),
    ],
)
def test_consistency_round_trip(consistency: Consistency) -> None:
    request = permissions_pb2.CheckRequest(consistency=c.consistency_to_proto(consistency))
    assert c.consistency_from_proto(request) == consistency
    assert c.consistency_from_proto(permissions_pb2.CheckRequest()) is None


def test_updates_preconditions_and_changes() -> None:
    update = RelationshipUpdate(Operation.CREATE, parse_relationship("doc:1#viewer@user:ann"))
    assert c.update_from_proto(c.update_to_proto(update)) == update
    pre = Precondition(PreconditionKind.MUST_NOT_MATCH, RelationshipFilter("doc", "1"))
    assert c.precondition_from_proto(c.precondition_to_proto(pre)) == pre
    change = Change(Revision(3), Operation.DELETE, update.relationship)
    assert c.change_from_proto(c.change_to_proto(change)) == change
    schema = Change(Revision(1), Operation.TOUCH, None, schema_changed=True)
    assert c.change_from_proto(c.change_to_proto(schema)) == schema


def test_expand_round_trip() -> None:
    leaf = ExpandNode("leaf", ObjectRef("doc", "1"), "viewer", subjects=(SubjectRef("user", "ann"), SubjectRef("group", "g", "member")))
    tree = ExpandNode("exclusion", ObjectRef("doc", "1"), "view", (leaf, ExpandNode("leaf", ObjectRef("doc", "1"), "banned")))
    assert c.expand_from_proto(c.expand_to_proto(tree)) == tree


def test_timestamps_are_utc() -> None:
    local = dt.datetime(2030, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    back = c.timestamp_to_datetime(c.datetime_to_timestamp(local))
    assert back == local and back.tzinfo == dt.timezone.utc


@pytest.mark.parametrize(
    "message, match",
    [
        (core_pb2.Relationship(relation="viewer"), "resource is required"),
        (
            core_pb2.Relationship(
                resource=core_pb2.ObjectReference(object_type="Doc", object_id="1"), relation="viewer",
                subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="a")),
            ),
            "invalid object type 'Doc'",
        ),
        (
            core_pb2.Relationship(
                resource=core_pb2.ObjectReference(object_type="doc", object_id="*"), relation="viewer",
                subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="a")),
            ),
            "invalid object id",
        ),
        (
            core_pb2.Relationship(
                resource=core_pb2.ObjectReference(object_type="doc", object_id="1"), relation="viewer",
                subject=core_pb2.SubjectReference(
                    object=core_pb2.ObjectReference(object_type="user", object_id="*"), optional_relation="member"
                ),
            ),
            "wildcard",
        ),
    ],
)
def test_invalid_relationships_are_refused(message: core_pb2.Relationship, match: str) -> None:
    with pytest.raises(errors.InvalidRelationship, match=match):
        c.relationship_from_proto(message)


@pytest.mark.parametrize(
    "seconds, nanos", [(253_402_300_800, 0), (-62_135_596_801, 0), (2**62, 0), (0, -1), (0, 10**9)],
    ids=["after-9999", "before-year-1", "huge", "negative-nanos", "too-many-nanos"],
)
def test_an_expiration_outside_the_timestamp_range_is_refused(seconds: int, nanos: int) -> None:
    """Found by tests/fuzz: protobuf's ValueError passed through (INTERNAL over gRPC)."""
    message = core_pb2.Relationship(
        resource=core_pb2.ObjectReference(object_type="doc", object_id="1"), relation="viewer",
        subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="a")),
    )
    message.optional_expires_at.seconds = seconds
    message.optional_expires_at.nanos = nanos
    with pytest.raises(errors.InvalidRelationship, match=r"^updates\[2\]\.relationship\.optional_expires_at: timestamp out of range"):
        c.relationship_from_proto(message, "updates[2].relationship")


def test_invalid_requests_are_refused() -> None:
    with pytest.raises(errors.InvalidArgument, match="operation"):
        c.update_from_proto(core_pb2.RelationshipUpdate())
    with pytest.raises(errors.InvalidArgument, match="not both"):
        c.filter_from_proto(core_pb2.RelationshipFilter(resource_type="doc", optional_resource_id="1", optional_resource_id_prefix="1"))
    with pytest.raises(errors.InvalidArgument, match="consistency.at_exact_snapshot: malformed revision token 'zz'"):
        c.consistency_from_proto(permissions_pb2.CheckRequest(consistency=core_pb2.Consistency(at_exact_snapshot="zz")))
    with pytest.raises(errors.InvalidArgument, match="context"):
        c.dict_to_struct({"x": object()})


def test_a_struct_becomes_plain_values_with_ints_where_integral() -> None:
    struct = c.dict_to_struct({"n": 2, "x": 2.5, "big": 2.0**60, "s": "a", "b": True, "none": None, "list": [1, {"k": [3.0]}]})
    assert struct is not None
    assert c.struct_to_dict(struct) == {"n": 2, "x": 2.5, "big": 2.0**60, "s": "a", "b": True, "none": None, "list": [1, {"k": [3]}]}
    assert type(c.struct_to_dict(struct)["big"]) is float  # past 2**53 a double is no exact int


def test_nan_and_infinity_in_a_struct_stay_floats_for_the_caveat_to_refuse() -> None:
    """json_format.MessageToDict raised a bare ValueError for them: an INTERNAL on the server."""
    struct = c.dict_to_struct({"x": float("nan"), "deep": {"y": [float("inf")]}, "z": float("-inf")})
    assert struct is not None
    plain = c.struct_to_dict(struct)
    assert plain["x"] != plain["x"] and plain["deep"] == {"y": [float("inf")]} and plain["z"] == float("-inf")
    message = permissions_pb2.CheckRequest(context=struct)
    assert c.optional_context(message) is not None and c.optional_context(permissions_pb2.CheckRequest()) is None


@pytest.mark.parametrize("seconds, nanos, problem", [
    (-1, 0, "within must not be negative, not -1 s"),
    (0, -5, "within must not be negative"),
    (1, -5, "within: a Duration's seconds (1) and nanos (-5) must have the same sign"),
    (2**63 - 1, 0, "within is past a Duration's range (315576000000 s)"),
])
def test_check_guards_within_out_of_range_is_invalid_argument(seconds: int, nanos: int, problem: str) -> None:
    request = schema_pb2.CheckGuardsRequest(within=Duration(seconds=seconds, nanos=nanos))
    with pytest.raises(errors.InvalidArgument, match=re.escape(problem)):
        c.within_from_proto(request)


def test_check_guards_within_is_a_timedelta() -> None:
    assert c.within_from_proto(schema_pb2.CheckGuardsRequest()) is None
    request = schema_pb2.CheckGuardsRequest(within=Duration(seconds=7 * 86_400, nanos=500_000))
    assert c.within_from_proto(request) == dt.timedelta(days=7, microseconds=500)
