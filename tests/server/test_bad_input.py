"""Bad input over real gRPC: each gets a clear error with the right status, and the server keeps
serving. The requests are built with the raw stubs, since the clients refuse most of them
before sending."""

from __future__ import annotations

from typing import Any, Callable

import grpc
import pytest

from relengine import CaveatRef, Consistency, ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef, errors
from relengine.errors import SchemaError
from relengine.client import Client
from relengine.results import decode_cursor, encode_cursor
from relengine.wire._proto.relengine.v1 import (
    core_pb2,
    permissions_pb2,
    permissions_pb2_grpc,
    relationships_pb2,
    relationships_pb2_grpc,
)
from relengine.wire.status import error_from_rpc_error

from .harness import Running


def failure(call: Callable[[], Any]) -> grpc.RpcError:
    """The error ``call`` fails with (a stream is read to its end)."""
    with pytest.raises(grpc.RpcError) as info:
        result = call()
        if not isinstance(result, (bytes, permissions_pb2.CheckResponse)) and hasattr(result, "__iter__"):
            list(result)
    return info.value


def question(resource_id: str = "1", subject_id: str = "ann", **fields: Any) -> permissions_pb2.CheckRequest:
    return permissions_pb2.CheckRequest(
        resource=core_pb2.ObjectReference(object_type="doc", object_id=resource_id),
        permission="view",
        subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id=subject_id)),
        **fields,
    )


def still_serving(loaded: Client) -> None:
    assert loaded.check("doc:2", "view", "user:ann").allowed


# -- revision tokens -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", ["zz", "r+1", "r 1", "r1_0", "r0x10", "r01", "R1", "r" + "f" * 17])
def test_a_malformed_revision_token_is_invalid_argument(running: Running, loaded: Client, token: str) -> None:
    with running.channel() as channel:
        permissions = permissions_pb2_grpc.PermissionsServiceStub(channel)
        relationships = relationships_pb2_grpc.RelationshipsServiceStub(channel)
        for call, where in [
            (lambda: permissions.Check(question(consistency=core_pb2.Consistency(at_exact_snapshot=token)), timeout=10),
             "consistency.at_exact_snapshot"),
            (lambda: permissions.Check(question(consistency=core_pb2.Consistency(at_least_as_fresh=token)), timeout=10),
             "consistency.at_least_as_fresh"),
            (lambda: relationships.Watch(relationships_pb2.WatchRequest(optional_start_revision=token), timeout=10),
             "optional_start_revision"),
        ]:
            error = failure(call)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (where, error.details())
            assert error.details().startswith(f"{where}: malformed revision token")
    still_serving(loaded)


def test_a_well_formed_token_the_store_lacks_stays_out_of_range(running: Running, loaded: Client) -> None:
    future = Revision(loaded.check("doc:2", "view", "user:ann").revision.value + 1000).token()
    with running.channel() as channel:
        permissions = permissions_pb2_grpc.PermissionsServiceStub(channel)
        error = failure(lambda: permissions.Check(question(consistency=core_pb2.Consistency(at_exact_snapshot=future)), timeout=10))
    assert error.code() is grpc.StatusCode.OUT_OF_RANGE
    assert type(error_from_rpc_error(error)).__name__ == "RevisionUnavailable"


# -- caveat context ------------------------------------------------------------------------------

CAVEATED = """\
caveat under_limit(amount double, limit double) { amount < limit }
definition user {}
definition doc {
    relation viewer: user with under_limit
    permission view = viewer
}
"""


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_nan_or_infinity_in_a_caveat_context_is_invalid_argument(client: Client, bad: float) -> None:
    """Once json_format's ValueError: INTERNAL. Now the caveat parameter refuses it by name."""
    client.write_schema(CAVEATED)
    client.touch("doc:1#viewer@user:ann[under_limit]")
    fresh = Consistency.fully_consistent()
    context = {"amount": bad, "limit": 10}
    calls: list[Callable[[], Any]] = [
        lambda: client.check("doc:1", "view", "user:ann", context=context, consistency=fresh),
        lambda: list(client.lookup_resources("doc", "view", "user:ann", context=context, consistency=fresh)),
        lambda: list(client.lookup_subjects("doc:1", "view", "user", context=context, consistency=fresh)),
        lambda: client.touch(Relationship(ObjectRef("doc", "2"), "viewer", SubjectRef("user", "ann"), CaveatRef("under_limit", context))),
    ]
    for call in calls:
        with pytest.raises(errors.InvalidArgument, match="parameter `amount`.*not a finite number") as info:
            call()
        assert info.value.fields()["parameter"] == "amount"
    (item,) = client.bulk_check(["doc:1#view@user:ann"], context=context, consistency=fresh).results
    assert isinstance(item, errors.InvalidArgument) and item.fields()["parameter"] == "amount"
    assert client.check("doc:1", "view", "user:ann", context={"amount": 1, "limit": 10}, consistency=fresh).allowed


# -- cursors -------------------------------------------------------------------------------------

CURSORS = {"revision-only": "kQE", "not-msgpack": "abc", "a-number-for-the-id": "kgUH", "not-base64": "!!!"}


@pytest.mark.parametrize("cursor", CURSORS.values(), ids=CURSORS.keys())
def test_a_malformed_cursor_is_invalid_argument(running: Running, loaded: Client, cursor: str) -> None:
    with running.channel() as channel:
        permissions = permissions_pb2_grpc.PermissionsServiceStub(channel)
        relationships = relationships_pb2_grpc.RelationshipsServiceStub(channel)
        ann = core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="ann"))
        for call in [
            lambda: relationships.Read(
                relationships_pb2.ReadRequest(filter=core_pb2.RelationshipFilter(resource_type="doc"), optional_cursor=cursor), timeout=10),
            lambda: permissions.LookupResources(permissions_pb2.LookupResourcesRequest(
                resource_object_type="doc", permission="view", subject=ann, optional_cursor=cursor), timeout=10),
            lambda: permissions.LookupSubjects(permissions_pb2.LookupSubjectsRequest(
                resource=core_pb2.ObjectReference(object_type="doc", object_id="1"), permission="view",
                subject_object_type="user", optional_cursor=cursor), timeout=10),
        ]:
            error = failure(call)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details().startswith(f"malformed cursor {cursor!r}")
    still_serving(loaded)


def test_a_cursor_past_the_head_is_out_of_range(running: Running, loaded: Client) -> None:
    (first, _) = loaded.read(RelationshipFilter("doc"), limit=2)
    revision, parts = decode_cursor(first.cursor, str)
    future = encode_cursor(Revision(revision.value + 1000), *parts)
    with running.channel() as channel:
        relationships = relationships_pb2_grpc.RelationshipsServiceStub(channel)
        error = failure(lambda: relationships.Read(
            relationships_pb2.ReadRequest(filter=core_pb2.RelationshipFilter(resource_type="doc"), optional_cursor=future), timeout=10))
    assert error.code() is grpc.StatusCode.OUT_OF_RANGE


# -- long input ----------------------------------------------------------------------------------

LONG_IDS = {"ascii": "a" * 7000, "punctuation": "a!" * 3500, "non-ascii": "é" * 7000, "huge": "b" * 100_000}


@pytest.mark.parametrize("long_id", LONG_IDS.values(), ids=LONG_IDS.keys())
def test_a_long_bad_id_is_invalid_argument_every_time(running: Running, loaded: Client, long_id: str) -> None:
    """The status repeats only the start of the id, so it always fits in the trailers (a client
    refuses metadata past 8 KiB, often but not always, with RESOURCE_EXHAUSTED)."""
    with running.channel() as channel:
        permissions = permissions_pb2_grpc.PermissionsServiceStub(channel)
        relationships = relationships_pb2_grpc.RelationshipsServiceStub(channel)
        write = relationships_pb2.WriteRequest(updates=[core_pb2.RelationshipUpdate(
            operation=core_pb2.RelationshipUpdate.OPERATION_TOUCH,
            relationship=core_pb2.Relationship(
                resource=core_pb2.ObjectReference(object_type="doc", object_id=long_id), relation="viewer",
                subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="ann")),
            ),
        )])
        calls = [
            lambda: permissions.Check(question(resource_id=long_id), timeout=10),
            lambda: permissions.Check(question(subject_id=long_id), timeout=10),
            lambda: relationships.Write(write, timeout=10),
        ]
        for _ in range(10):
            for call in calls:
                error = failure(call)
                assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
                assert f"... ({len(long_id)} characters)" in error.details()
                assert len(error.details()) < 500
    still_serving(loaded)


def test_a_schema_with_long_lines_and_many_errors_is_invalid_argument(running: Running, loaded: Client) -> None:
    """A schema error's ErrorInfo lists its issues with their source lines: the first that fit."""
    text = "\n".join(f"definition doc{i} {{ relation {'x' * 3000}: nobody }}" for i in range(12))
    for _ in range(3):
        with pytest.raises(SchemaError) as info:
            loaded.write_schema(text)
        assert 1 <= len(info.value.issues) < 12 and info.value.issues[0].line == 1
    still_serving(loaded)


# -- out-of-range and deeply nested values (found by tests/fuzz) -------------------------------


def test_an_expiration_outside_the_timestamp_range_is_invalid_argument(running: Running, loaded: Client) -> None:
    """Once protobuf's ValueError from Timestamp.ToDatetime: INTERNAL for Write and Import."""
    relationship = core_pb2.Relationship(
        resource=core_pb2.ObjectReference(object_type="doc", object_id="1"), relation="viewer",
        subject=core_pb2.SubjectReference(object=core_pb2.ObjectReference(object_type="user", object_id="ann")),
    )
    relationship.optional_expires_at.seconds = 253_402_300_800  # 10000-01-01: one past the last second
    write = relationships_pb2.WriteRequest(
        updates=[core_pb2.RelationshipUpdate(operation=core_pb2.RelationshipUpdate.OPERATION_TOUCH, relationship=relationship)]
    )
    with running.channel() as channel:
        relationships = relationships_pb2_grpc.RelationshipsServiceStub(channel)
        for call, where in [
            (lambda: relationships.Write(write, timeout=10), "updates[0].relationship.optional_expires_at"),
            (lambda: relationships.Import(iter([relationships_pb2.ImportRequest(relationships=[relationship])]), timeout=10),
             "relationships[0].optional_expires_at"),
        ]:
            error = failure(call)
            assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details().startswith(f"{where}: timestamp out of range"), error.details()
    still_serving(loaded)


READ_CURSOR_TEXTS = {
    "deep-context": 'doc:1#viewer@user:ann[only_ip:{"a":' + "[" * 5000 + "]" * 5000 + "}]",
    "expiration-past-year-9999": "doc:1#viewer@user:ann[expiration:9999-12-31T23:59:59-01:00]",
}


@pytest.mark.parametrize("text", READ_CURSOR_TEXTS.values(), ids=READ_CURSOR_TEXTS.keys())
def test_a_read_cursor_naming_an_unreadable_relationship_is_invalid_argument(running: Running, loaded: Client, text: str) -> None:
    """A read cursor carries a relationship's text; one whose caveat context nests past the
    JSON parser's stack (a RecursionError), or whose expiration is past year 9999 in UTC (an
    OverflowError), was INTERNAL."""
    cursor = encode_cursor(Revision(1), text)
    with running.channel() as channel:
        relationships = relationships_pb2_grpc.RelationshipsServiceStub(channel)
        error = failure(lambda: relationships.Read(
            relationships_pb2.ReadRequest(filter=core_pb2.RelationshipFilter(resource_type="doc"), optional_cursor=cursor), timeout=10))
    assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert error.details().startswith("malformed cursor")
    still_serving(loaded)
