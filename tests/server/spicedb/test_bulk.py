"""ImportBulkRelationships and ExportBulkRelationships through the official authzed client."""

from __future__ import annotations

import pathlib
from typing import Any

import grpc
import pytest
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps

from relengine import Engine
from relengine.storage.lmdb import LmdbStore

from .streams_harness import SCHEMA, Serving, client, error_info, relationship, serving, text, write  # noqa: F401


def stored(client: Any, resource_type: str = "doc") -> list[str]:
    request = ps.ReadRelationshipsRequest(
        consistency=ps.Consistency(fully_consistent=True),
        relationship_filter=ps.RelationshipFilter(resource_type=resource_type),
    )
    return sorted(text(r.relationship) for r in client.ReadRelationships(request))


def batches(*groups: list[str]) -> list[ps.ImportBulkRelationshipsRequest]:
    return [ps.ImportBulkRelationshipsRequest(relationships=[relationship(t) for t in g]) for g in groups]


# -- import ------------------------------------------------------------------------------------


def test_import_loads_every_batch_of_the_stream(client: Any) -> None:
    response = client.ImportBulkRelationships(iter(batches(
        ["doc:1#viewer@user:ann", "doc:2#viewer@group:eng#member"], [], ["doc:3#viewer@user:*"],
    )))
    assert response.num_loaded == 3
    assert stored(client) == ["doc:1#viewer@user:ann", "doc:2#viewer@group:eng#member", "doc:3#viewer@user:*"]


def test_import_of_an_existing_relationship_writes_nothing(client: Any) -> None:
    write(client, "doc:2#viewer@user:ann")
    with pytest.raises(grpc.RpcError) as caught:
        client.ImportBulkRelationships(iter(batches(["doc:1#viewer@user:ann"], ["doc:2#viewer@user:ann"])))
    code, reason, metadata = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "ERROR_REASON_ATTEMPT_TO_RECREATE_RELATIONSHIP")
    assert "doc:2#viewer@user:ann" in metadata["relationship"]
    assert stored(client) == ["doc:2#viewer@user:ann"]


def test_import_of_one_relationship_twice_writes_nothing(client: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.ImportBulkRelationships(iter(batches(["doc:1#viewer@user:ann"], ["doc:1#viewer@user:ann"])))
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert stored(client) == []


def test_import_validates_against_the_schema(client: Any) -> None:
    for bad, code, reason in [
        ("doc:1#editor@user:ann", grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"),
        ("folder:1#viewer@user:ann", grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_DEFINITION"),
        ("doc:1#owner@group:eng#member", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_SUBJECT_TYPE"),
        ("doc:1#view@user:ann", grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_CANNOT_UPDATE_PERMISSION"),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            client.ImportBulkRelationships(iter(batches(["doc:9#viewer@user:ann"], [bad])))
        assert error_info(caught.value)[:2] == (code, reason), bad
    assert stored(client) == []


def test_import_past_the_transaction_limit_is_refused_before_writing(tmp_path: pathlib.Path) -> None:
    # The store's own limit on a transaction (10 here) does not bound an import: it is one
    # transaction of at most max_import_relationships (12 here), held in memory until written.
    engine = Engine(LmdbStore(tmp_path / "data", batch_limit=10))
    s = Serving(engine, max_import_relationships=12)
    try:
        from authzed.api.v1 import schema_service_pb2 as ss

        s.client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA))
        twelve = [f"doc:{i}#viewer@user:ann" for i in range(12)]
        assert s.client.ImportBulkRelationships(iter(batches(twelve[:5], twelve[5:]))).num_loaded == 12
        thirteen = [f"doc:x{i}#viewer@user:ann" for i in range(13)]
        with pytest.raises(grpc.RpcError) as caught:
            s.client.ImportBulkRelationships(iter(batches(thirteen)))
        code, reason, metadata = error_info(caught.value)
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_TOO_MANY_UPDATES_IN_REQUEST")
        assert metadata["maximum_updates_allowed"] == "12"
        assert "at most 12 relationships" in caught.value.details()
        assert len(stored(s.client)) == 12
    finally:
        s.stop()
        engine.close()


def test_import_past_its_deadline_writes_nothing(client: Any) -> None:
    import threading

    gate = threading.Event()

    def slow() -> Any:
        yield from batches(["doc:1#viewer@user:ann"])
        gate.wait(2)  # the client sends nothing more for a while
        yield from batches(["doc:2#viewer@user:ann"])

    with pytest.raises(grpc.RpcError) as caught:
        client.ImportBulkRelationships(slow(), timeout=0.5)
    gate.set()
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert stored(client) == []


# -- export ------------------------------------------------------------------------------------


def export(client: Any, **fields: Any) -> list[ps.ExportBulkRelationshipsResponse]:
    return list(client.ExportBulkRelationships(ps.ExportBulkRelationshipsRequest(**fields)))


def test_export_pages_never_span_definitions_and_resume_from_their_cursor(client: Any) -> None:
    docs = [f"doc:{i:02}#viewer@user:u{i}" for i in range(12)]
    groups = [f"group:g{i}#member@user:u{i}" for i in range(3)]
    write(client, *docs, *groups)
    pages = export(client, optional_limit=5)
    assert [len(p.relationships) for p in pages] == [5, 5, 2, 3]  # doc, then group: names in order
    assert [text(r) for p in pages for r in p.relationships] == sorted(docs) + sorted(groups)
    # Each page's cursor resumes right after it.
    rest = export(client, optional_limit=5, optional_cursor=pages[1].after_result_cursor)
    assert [text(r) for p in rest for r in p.relationships] == (sorted(docs) + sorted(groups))[10:]
    assert export(client, optional_cursor=pages[-1].after_result_cursor) == []


def test_export_pages_stay_at_the_revision_of_the_first(client: Any) -> None:
    write(client, *[f"doc:{i}#viewer@user:ann" for i in range(4)])
    first = export(client, optional_limit=2)[0]
    write(client, "doc:0#viewer@user:ann", "doc:3#viewer@user:ann", operation=core.RelationshipUpdate.OPERATION_DELETE)
    write(client, "doc:9#viewer@user:ann")
    rest = export(client, optional_limit=2, optional_cursor=first.after_result_cursor)
    assert [text(r) for p in rest for r in p.relationships] == ["doc:2#viewer@user:ann", "doc:3#viewer@user:ann"]
    assert len([r for p in export(client) for r in p.relationships]) == 3  # a new export: now


def test_export_filters_and_default_page(client: Any) -> None:
    write(client, "doc:a1#viewer@user:ann", "doc:a2#owner@user:ann", "doc:b1#viewer@user:bob",
          "group:eng#member@user:ann")
    by_type = export(client, optional_relationship_filter=ps.RelationshipFilter(
        resource_type="doc", optional_resource_id_prefix="a"))
    assert [text(r) for p in by_type for r in p.relationships] == ["doc:a1#viewer@user:ann", "doc:a2#owner@user:ann"]
    by_subject = export(client, optional_relationship_filter=ps.RelationshipFilter(
        optional_subject_filter=ps.SubjectFilter(subject_type="user", optional_subject_id="ann")))
    assert [[text(r) for r in p.relationships] for p in by_subject] == [
        ["doc:a1#viewer@user:ann", "doc:a2#owner@user:ann"], ["group:eng#member@user:ann"],
    ]
    everything = export(client)
    assert len(everything) == 2 and all(p.after_result_cursor.token for p in everything)


def test_export_of_nothing_sends_nothing(client: Any) -> None:
    assert export(client) == []


def test_export_limit_over_the_maximum_and_bad_cursors_are_refused(client: Any) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        export(client, optional_limit=10_001)
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_EXCEEDS_MAXIMUM_ALLOWABLE_LIMIT")
    assert len(export(client, optional_limit=10_000)) == 0
    with pytest.raises(grpc.RpcError) as caught:
        export(client, optional_cursor=core.Cursor(token="not-a-cursor"))
    code, reason, _ = error_info(caught.value)
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_INVALID_CURSOR")
