"""ExperimentalService through the official authzed client: relationship counters and the
deprecated bulk methods."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import grpc
import pytest
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import experimental_service_pb2 as es
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import SyncClient
from authzed.api.v1 import schema_service_pb2 as ss
from grpcutil import insecure_bearer_token_credentials

from relengine import Engine

from ..test_app import Process
from .streams_harness import KEY, SCHEMA, Serving, client, error_info, relationship, serving, text, write  # noqa: F401

DOC_VIEWERS = ps.RelationshipFilter(resource_type="doc", optional_relation="viewer")


def register(client: Any, name: str, filter: ps.RelationshipFilter = DOC_VIEWERS) -> None:
    client.ExperimentalRegisterRelationshipCounter(
        es.ExperimentalRegisterRelationshipCounterRequest(name=name, relationship_filter=filter)
    )


def count(client: Any, name: str) -> tuple[int, str]:
    response = client.ExperimentalCountRelationships(es.ExperimentalCountRelationshipsRequest(name=name))
    assert response.WhichOneof("counter_result") == "read_counter_value"
    value = response.read_counter_value
    return value.relationship_count, value.read_at.token


def unregister(client: Any, name: str) -> None:
    client.ExperimentalUnregisterRelationshipCounter(es.ExperimentalUnregisterRelationshipCounterRequest(name=name))


def refused(call: Any) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return error_info(caught.value)


# -- counters ----------------------------------------------------------------------------------


def test_a_counter_counts_its_filter_at_head(client: Any) -> None:
    write(client, "doc:1#viewer@user:ann", "doc:1#owner@user:ann", "group:eng#member@user:ann")
    register(client, "doc_viewers")
    register(client, "anns", ps.RelationshipFilter(
        optional_subject_filter=ps.SubjectFilter(subject_type="user", optional_subject_id="ann")))
    assert count(client, "doc_viewers")[0] == 1
    assert count(client, "anns")[0] == 3
    token = write(client, "doc:2#viewer@user:bob", "doc:3#viewer@group:eng#member")
    assert count(client, "doc_viewers") == (3, token.token)
    unregister(client, "doc_viewers")
    assert count(client, "anns")[0] == 3


def test_counter_errors(client: Any) -> None:
    register(client, "doc_viewers")
    code, reason, metadata = refused(lambda: register(client, "doc_viewers", ps.RelationshipFilter(
        resource_type="doc", optional_resource_id_prefix="a",
        optional_subject_filter=ps.SubjectFilter(subject_type="user"))))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_COUNTER_ALREADY_REGISTERED")
    assert metadata == {
        "counter_name": "doc_viewers", "new_filter_resource_type": "doc", "new_filter_resource_id": "",
        "new_filter_resource_id_prefix": "a", "new_filter_relation": "", "new_filter_subject_type": "user",
        "new_filter_subject_id": "", "new_filter_subject_relation": "",
    }
    for call in (lambda: count(client, "nothing_here"), lambda: unregister(client, "nothing_here")):
        assert refused(call) == (
            grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_COUNTER_NOT_REGISTERED", {"counter_name": "nothing_here"}
        )
    for call in (lambda: register(client, ""), lambda: count(client, ""), lambda: unregister(client, "")):
        assert refused(call) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_UNSPECIFIED", {})
    assert refused(lambda: register(client, "Bad-Name"))[0] == grpc.StatusCode.INVALID_ARGUMENT
    assert refused(lambda: register(client, "folders", ps.RelationshipFilter(resource_type="folder")))[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_DEFINITION")
    assert refused(lambda: register(client, "doc_editors", ps.RelationshipFilter(
        resource_type="doc", optional_relation="editor")))[:2] == (
        grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION")
    unregister(client, "doc_viewers")
    register(client, "doc_viewers")  # the name is free again


def test_counters_are_shared_by_every_server_on_the_store(tmp_path: pathlib.Path) -> None:
    """Two Engines on one LMDB directory: this process's, and a ``relengine serve`` process's
    (LMDB opens a directory once per process)."""
    engine = Engine.open(str(tmp_path / "data"))
    here = Serving(engine)
    process = Process(["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--workers", "1"],
                      dict(os.environ, RELENGINE_PRESHARED_KEY=KEY))
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
        there = SyncClient(address, insecure_bearer_token_credentials(KEY))
        here.client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA))
        write(here.client, "doc:1#viewer@user:ann")
        register(here.client, "doc_viewers")
        write(there, "doc:2#viewer@user:ann")
        assert count(there, "doc_viewers")[0] == 2
        assert count(here.client, "doc_viewers")[0] == 2
        assert refused(lambda: register(there, "doc_viewers"))[1] == "ERROR_REASON_COUNTER_ALREADY_REGISTERED"
        unregister(there, "doc_viewers")
        assert refused(lambda: count(here.client, "doc_viewers"))[1] == "ERROR_REASON_COUNTER_NOT_REGISTERED"
        register(there, "anns", ps.RelationshipFilter(
            optional_subject_filter=ps.SubjectFilter(subject_type="user", optional_subject_id="ann")))
    finally:
        assert process.stop() == 0
        here.stop()
        engine.close()
    reopened = Engine.open(str(tmp_path / "data"))  # counters persist in the store
    try:
        assert reopened.count_relationships("anns")[0] == 2
    finally:
        reopened.close()


# -- the deprecated methods, answered by their successors ------------------------------------


def test_bulk_check_permission_answers_as_check_bulk_permissions(client: Any) -> None:
    write(client, "doc:1#viewer@user:ann")
    items = [
        es.BulkCheckPermissionRequestItem(
            resource=core.ObjectReference(object_type="doc", object_id="1"), permission="view",
            subject=core.SubjectReference(object=core.ObjectReference(object_type="user", object_id=user)),
        )
        for user in ("ann", "bob")
    ]
    items.append(es.BulkCheckPermissionRequestItem(
        resource=core.ObjectReference(object_type="folder", object_id="1"), permission="view",
        subject=core.SubjectReference(object=core.ObjectReference(object_type="user", object_id="ann")),
    ))
    old = client.BulkCheckPermission(es.BulkCheckPermissionRequest(
        consistency=ps.Consistency(fully_consistent=True), items=items))
    new = client.CheckBulkPermissions(ps.CheckBulkPermissionsRequest(
        consistency=ps.Consistency(fully_consistent=True),
        items=[ps.CheckBulkPermissionsRequestItem.FromString(i.SerializeToString()) for i in items]))
    assert old.SerializeToString() == new.SerializeToString()
    assert [p.item.permissionship for p in old.pairs[:2]] == [
        ps.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION, ps.CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION]
    assert old.pairs[2].WhichOneof("response") == "error"
    assert old.pairs[2].error.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]


def test_bulk_import_and_export_answer_as_their_successors(client: Any) -> None:
    requests = [es.BulkImportRelationshipsRequest(relationships=[relationship("doc:1#viewer@user:ann"),
                                                                 relationship("doc:2#viewer@user:bob")])]
    assert client.BulkImportRelationships(iter(requests)).num_loaded == 2
    with pytest.raises(grpc.RpcError) as caught:
        client.BulkImportRelationships(iter(requests))
    assert error_info(caught.value)[1] == "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP"
    pages = list(client.BulkExportRelationships(es.BulkExportRelationshipsRequest(optional_limit=1)))
    assert [[text(r) for r in p.relationships] for p in pages] == [["doc:1#viewer@user:ann"], ["doc:2#viewer@user:bob"]]
    resumed = list(client.BulkExportRelationships(es.BulkExportRelationshipsRequest(
        optional_cursor=pages[0].after_result_cursor)))
    assert [text(r) for p in resumed for r in p.relationships] == ["doc:2#viewer@user:bob"]
    # The deprecated export allows pages up to 100,000, as SpiceDB's experimental server.
    assert len(list(client.BulkExportRelationships(es.BulkExportRelationshipsRequest(optional_limit=100_000)))) == 1
    with pytest.raises(grpc.RpcError) as caught:
        list(client.BulkExportRelationships(es.BulkExportRelationshipsRequest(optional_limit=100_001)))
    assert error_info(caught.value)[1] == "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT"


def test_the_experimental_schema_methods_answer_as_the_schema_service(client: Any) -> None:
    reflected = client.ExperimentalReflectSchema(es.ExperimentalReflectSchemaRequest())
    assert {d.name for d in reflected.definitions} >= {"doc", "user"}
    assert reflected.read_at.token
    computable = client.ExperimentalComputablePermissions(
        es.ExperimentalComputablePermissionsRequest(definition_name="doc", relation_name="viewer"))
    assert computable.read_at.token
    diffed = client.ExperimentalDiffSchema(es.ExperimentalDiffSchemaRequest(comparison_schema="definition user {}"))
    assert diffed.diffs