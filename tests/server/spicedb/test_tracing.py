"""``with_tracing`` through the official ``authzed`` client against a real server: the
``debug_trace`` of CheckPermission and of each CheckBulkPermissions item, and the trace a
failed traced check adds to its ErrorInfo."""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

import grpc
import grpcutil
import pytest
from authzed.api.v1 import (
    CheckBulkPermissionsRequest,
    CheckBulkPermissionsRequestItem,
    CheckPermissionRequest,
    CheckPermissionResponse,
    ObjectReference,
    Relationship,
    RelationshipUpdate,
    SubjectReference,
    SyncClient,
    WriteRelationshipsRequest,
    WriteSchemaRequest,
)
from authzed.api.v1 import debug_pb2
from google.protobuf import text_format
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from relengine import EngineConfig
from relengine.server.app import Server, ServerConfig
from relengine.wire.spicedb.trace import SOURCE

from ..harness import make_engine

KEY = "tracing-key"
Trace = debug_pb2.CheckDebugTrace

SCHEMA = """
caveat on_day(day string, allowed string) { day == allowed }

definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation viewer: user | group#member
    permission view = viewer
}

definition doc {
    relation folder: folder
    relation viewer: user | group#member | user with on_day
    relation banned: user
    permission view = (viewer + folder->view) - banned
}
"""

RELATIONSHIPS = [
    ("group", "eng", "member", "user", "ann", ""),
    ("doc", "1", "viewer", "group", "eng", "member"),
    ("doc", "1", "folder", "folder", "f", ""),
    ("folder", "f", "viewer", "user", "tom", ""),
    ("folder", "f", "viewer", "user", "bob", ""),
    ("doc", "1", "banned", "user", "bob", ""),
    ("group", "a", "member", "group", "b", "member"),
    ("group", "b", "member", "group", "c", "member"),
    ("group", "c", "member", "group", "d", "member"),
    ("group", "d", "member", "user", "deep", ""),
]


def serve(tmp_path: pathlib.Path, **config: Any) -> tuple[Server, SyncClient, Any]:
    engine = make_engine(tmp_path / "data", EngineConfig(**config))
    server = Server(engine, ServerConfig(listen="127.0.0.1:0", preshared_key=KEY, threads=4))
    server.start()
    client = SyncClient(server.address, grpcutil.insecure_bearer_token_credentials(KEY))
    client.WriteSchema(WriteSchemaRequest(schema=SCHEMA))
    updates = [
        RelationshipUpdate(operation=RelationshipUpdate.OPERATION_TOUCH, relationship=Relationship(
            resource=ObjectReference(object_type=rt, object_id=ri), relation=rel,
            subject=SubjectReference(object=ObjectReference(object_type=st, object_id=si), optional_relation=sr)))
        for rt, ri, rel, st, si, sr in RELATIONSHIPS
    ]
    caveated = Relationship(
        resource=ObjectReference(object_type="doc", object_id="2"), relation="viewer",
        subject=SubjectReference(object=ObjectReference(object_type="user", object_id="cat")))
    caveated.optional_caveat.caveat_name = "on_day"
    caveated.optional_caveat.context.update({"allowed": "tue"})
    updates.append(RelationshipUpdate(operation=RelationshipUpdate.OPERATION_TOUCH, relationship=caveated))
    client.WriteRelationships(WriteRelationshipsRequest(updates=updates))
    return server, client, engine


@pytest.fixture
def served(tmp_path: pathlib.Path) -> Iterator[tuple[SyncClient, Any]]:
    server, client, engine = serve(tmp_path)
    yield client, engine
    server.stop(grace=0)
    engine.close()


def check(resource: str, permission: str, subject: str, *, tracing: bool = True,
          context: dict[str, Any] | None = None) -> CheckPermissionRequest:
    rt, ri = resource.split(":")
    st, si = subject.split(":")
    request = CheckPermissionRequest(
        resource=ObjectReference(object_type=rt, object_id=ri), permission=permission,
        subject=SubjectReference(object=ObjectReference(object_type=st, object_id=si)), with_tracing=tracing)
    if context is not None:
        request.context.update(context)
    return request


def tree(node: Trace) -> list[Any]:
    """[type:id#permission, result, children...] of a trace node."""
    result = Trace.Permissionship.Name(node.result).removeprefix("PERMISSIONSHIP_")
    children = [tree(c) for c in node.sub_problems.traces]
    return [f"{node.resource.object_type}:{node.resource.object_id}#{node.permission}", result, *children]


def every(node: Trace) -> Iterator[Trace]:
    yield node
    for child in node.sub_problems.traces:
        yield from every(child)


def test_a_traced_check_returns_the_tree_it_walked(served: tuple[SyncClient, Any]) -> None:
    client, _ = served
    response = client.CheckPermission(check("doc:1", "view", "user:ann"))
    assert response.permissionship == CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
    assert response.HasField("debug_trace")
    root = response.debug_trace.check
    assert tree(root) == [
        "doc:1#view", "HAS_PERMISSION",
        ["doc:1#viewer", "HAS_PERMISSION", ["group:eng#member", "HAS_PERMISSION"]],
        ["doc:1#banned", "NO_PERMISSION"],
    ]
    viewer = root.sub_problems.traces[0]
    assert root.permission_type == Trace.PERMISSION_TYPE_PERMISSION
    assert viewer.permission_type == Trace.PERMISSION_TYPE_RELATION
    found = viewer.sub_problems.traces[0]  # a HAS leaf: where the subject was found
    assert found.WhichOneof("resolution") == "was_cached_result" and not found.was_cached_result
    assert root.WhichOneof("resolution") == "sub_problems"
    nodes = list(every(root))
    assert {n.trace_operation_id for n in nodes} == {root.trace_operation_id} != {""}
    assert {n.source for n in nodes} == {SOURCE} and SOURCE.startswith("relengine:")
    assert all(n.subject.object.object_id == "ann" and n.subject.optional_relation == "" for n in nodes)
    assert root.duration.ToNanoseconds() >= viewer.duration.ToNanoseconds() > 0
    assert "definition doc" in response.debug_trace.schema_used
    assert response.checked_at.token


def test_arrows_and_exclusions_in_the_trace(served: tuple[SyncClient, Any]) -> None:
    client, _ = served
    tom = client.CheckPermission(check("doc:1", "view", "user:tom")).debug_trace.check
    assert tree(tom)[3] == ["folder:f#view", "HAS_PERMISSION", ["folder:f#viewer", "HAS_PERMISSION"]]
    bob = client.CheckPermission(check("doc:1", "view", "user:bob"))
    assert bob.permissionship == CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION
    assert tree(bob.debug_trace.check)[0:2] == ["doc:1#view", "NO_PERMISSION"]
    assert tree(bob.debug_trace.check)[-1] == ["doc:1#banned", "HAS_PERMISSION"]


def test_an_untraced_check_has_no_trace_and_a_cached_answer_is_still_walked(served: tuple[SyncClient, Any]) -> None:
    client, engine = served
    for _ in range(2):
        plain = client.CheckPermission(check("doc:1", "view", "user:ann", tracing=False))
        assert not plain.HasField("debug_trace")
    hits = engine.statistics().cache_hits
    traced = client.CheckPermission(check("doc:1", "view", "user:ann"))
    assert traced.debug_trace.check.sub_problems.traces
    assert traced.permissionship == plain.permissionship and traced.checked_at == plain.checked_at
    assert engine.statistics().cache_hits == hits


def test_caveat_evaluation_info(served: tuple[SyncClient, Any]) -> None:
    client, _ = served
    missing = client.CheckPermission(check("doc:2", "viewer", "user:cat"))
    assert missing.permissionship == CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION
    assert list(missing.partial_caveat_info.missing_required_context) == ["day"]
    info = missing.debug_trace.check.caveat_evaluation_info
    assert (info.caveat_name, info.expression, info.result) == (
        "on_day", "day == allowed", debug_pb2.CaveatEvalInfo.RESULT_MISSING_SOME_CONTEXT)
    assert list(info.partial_caveat_info.missing_required_context) == ["day"]
    assert dict(info.context) == {"allowed": "tue"}
    assert missing.debug_trace.check.result == Trace.PERMISSIONSHIP_CONDITIONAL_PERMISSION

    yes = client.CheckPermission(check("doc:2", "viewer", "user:cat", context={"day": "tue"}))
    assert yes.permissionship == CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
    info = yes.debug_trace.check.caveat_evaluation_info
    assert info.result == debug_pb2.CaveatEvalInfo.RESULT_TRUE
    assert dict(info.context) == {"allowed": "tue", "day": "tue"}
    assert not yes.debug_trace.check.caveat_evaluation_info.HasField("partial_caveat_info")
    no = client.CheckPermission(check("doc:2", "viewer", "user:cat", context={"day": "mon"}))
    assert no.debug_trace.check.caveat_evaluation_info.result == debug_pb2.CaveatEvalInfo.RESULT_FALSE


def test_bulk_items_carry_their_own_trace(served: tuple[SyncClient, Any]) -> None:
    client, _ = served
    questions = [("doc:1", "view", "user:ann"), ("doc:1", "nope", "user:ann"), ("doc:1", "view", "user:bob"),
                 ("doc:2", "viewer", "user:cat")]
    items = []
    for resource, permission, subject in questions:
        c = check(resource, permission, subject)
        items.append(CheckBulkPermissionsRequestItem(resource=c.resource, permission=c.permission, subject=c.subject))
    traced = client.CheckBulkPermissions(CheckBulkPermissionsRequest(items=items, with_tracing=True))
    plain = client.CheckBulkPermissions(CheckBulkPermissionsRequest(items=items))
    assert [p.WhichOneof("response") for p in traced.pairs] == ["item", "error", "item", "item"]
    for t, p in zip(traced.pairs, plain.pairs, strict=True):
        assert t.request == p.request
        if t.WhichOneof("response") == "item":
            assert t.item.permissionship == p.item.permissionship
            assert t.item.partial_caveat_info == p.item.partial_caveat_info
            assert not p.item.HasField("debug_trace")
        else:
            assert t.error.code == p.error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    ann = traced.pairs[0].item.debug_trace.check
    assert ann.duration.ToNanoseconds() == 0  # the item's wrapper, as SpiceDB's
    assert tree(ann) == ["doc:1#view", "HAS_PERMISSION", tree(ann.sub_problems.traces[0])]
    assert len(tree(ann.sub_problems.traces[0])) == 4
    assert "definition doc" in traced.pairs[0].item.debug_trace.schema_used
    assert traced.pairs[3].item.debug_trace.check.sub_problems.traces[0].caveat_evaluation_info.caveat_name == "on_day"
    assert traced.checked_at == plain.checked_at


def test_a_traced_check_past_the_depth_budget_carries_its_trace(tmp_path: pathlib.Path) -> None:
    server, client, engine = serve(tmp_path, max_depth=2)
    try:
        with pytest.raises(grpc.RpcError) as raised:
            client.CheckPermission(check("group:a", "member", "user:deep"))
        status = rpc_status.from_call(raised.value)
        assert status is not None
        [detail] = status.details
        info = error_details_pb2.ErrorInfo()
        detail.Unpack(info)
        assert info.reason == "ERROR_REASON_MAXIMUM_DEPTH_EXCEEDED"
        text = info.metadata["debug_trace_proto_text"]
        trace = text_format.Parse(text, debug_pb2.DebugInformation()).check
        path = [trace]
        while path[-1].sub_problems.traces:
            path.append(path[-1].sub_problems.traces[-1])
        assert [n.resource.object_id for n in path] == ["a", "b", "c", "d"]
        assert {n.result for n in path} == {Trace.PERMISSIONSHIP_UNSPECIFIED}
        with pytest.raises(grpc.RpcError) as untraced:  # an untraced one: the same error, no trace
            client.CheckPermission(check("group:a", "member", "user:deep", tracing=False))
        plain = error_details_pb2.ErrorInfo()
        rpc_status.from_call(untraced.value).details[0].Unpack(plain)  # type: ignore[union-attr]
        assert plain.reason == info.reason and "debug_trace_proto_text" not in plain.metadata
    finally:
        server.stop(grace=0)
        engine.close()
