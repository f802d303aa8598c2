"""SpiceDB's SchemaService through the official authzed client against a real server:
ReflectSchema, DiffSchema, ComputablePermissions, DependentRelations (shapes, filters, errors,
tokens), WriteSchema's errors as SpiceDB gives them, and the ReadSchema -> WriteSchema round
trip. The Experimental* copies are asked of the servicer's mixin directly (ExperimentalService
itself is registered elsewhere)."""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from authzed.api.v1 import (
    Consistency,
    ObjectReference,
    Relationship,
    RelationshipUpdate,
    SubjectReference,
    SyncClient,
    WriteRelationshipsRequest,
    ZedToken,
)
from authzed.api.v1 import experimental_service_pb2 as ex
from authzed.api.v1 import schema_service_pb2 as ss
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from grpcutil import insecure_bearer_token_credentials

from relengine import errors
from relengine.schema.compiler import compile_schema
from relengine.server.app import ServerConfig
from relengine.server.spicedb.common import spicedb_status
from relengine.server.spicedb.schema import SchemaServicer
from relengine.validationfile import load_validation_file

from ...spicedb_data import ABSENT, conformance_files
from ..harness import KEY, ROOT, Running, make_engine

SCHEMA = """\
/** a user */
definition user {}

// groups of users
definition group {
    relation member: user | group#member
}

caveat only_on(day int) {
    day == 3
}

/**
 * a folder
 */
definition folder {
    relation viewer: user
    permission view = viewer
}

definition document {
    // the parent folder
    relation parent: folder

    /** who views */
    relation viewer: user | user:* | group#member | user with only_on
    relation banned: user
    relation unused: user

    // can view
    permission view = (viewer + parent->view) - banned
    permission another = unused
}
"""


@pytest.fixture
def server(tmp_path: pathlib.Path) -> Iterator[Running]:
    engine = make_engine(tmp_path / "store")
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=8, preshared_key=KEY))
    try:
        yield running
    finally:
        running.server.stop()
        engine.close()


@pytest.fixture
def client(server: Running) -> SyncClient:
    return SyncClient(server.address, insecure_bearer_token_credentials(KEY))


@pytest.fixture
def written(client: SyncClient) -> ZedToken:
    return client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA)).written_at


def error_of(call: Any) -> tuple[grpc.StatusCode, str, str, dict[str, str]]:
    """(code, message, ErrorInfo reason, metadata) of a call that must fail."""
    with pytest.raises(grpc.RpcError) as caught:
        call()
    err: Any = caught.value
    status = rpc_status.from_call(err)
    reason, metadata = "", {}
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                assert info.domain == "authzed.com"
                reason, metadata = info.reason, dict(info.metadata)
    return err.code(), err.details(), reason, metadata


def refs(items: Any) -> list[tuple[str, str, bool]]:
    return [(r.definition_name, r.relation_name, r.is_permission) for r in items]


# -- ReflectSchema ----------------------------------------------------------------------


def test_reflect_schema_shape(client: SyncClient, written: ZedToken) -> None:
    response = client.ReflectSchema(ss.ReflectSchemaRequest())
    assert [d.name for d in response.definitions] == ["document", "folder", "group", "user"]
    document, folder, group, user = response.definitions
    assert user.comment == "/** a user */"
    assert group.comment == "// groups of users"
    assert folder.comment == "/**\n* a folder\n*/"
    assert document.comment == ""
    assert [r.name for r in document.relations] == ["parent", "viewer", "banned", "unused"]
    assert [p.name for p in document.permissions] == ["view", "another"]
    assert document.relations[0].comment == "// the parent folder"
    viewer = document.relations[1]
    assert viewer.comment == "/** who views */" and viewer.parent_definition_name == "document"
    types = [(t.subject_definition_name, t.WhichOneof("typeref"), t.optional_caveat_name) for t in viewer.subject_types]
    assert types == [
        ("user", "is_terminal_subject", ""), ("user", "is_public_wildcard", ""),
        ("group", "optional_relation_name", ""), ("user", "is_terminal_subject", "only_on"),
    ]
    assert viewer.subject_types[0].is_terminal_subject is False  # present and false, as SpiceDB sends it
    assert viewer.subject_types[1].is_public_wildcard is True
    assert viewer.subject_types[2].optional_relation_name == "member"
    assert document.permissions[0].comment == "// can view"
    assert document.permissions[0].parent_definition_name == "document"
    [caveat] = response.caveats
    assert (caveat.name, caveat.expression) == ("only_on", "day == 3")
    assert [(p.name, p.type, p.parent_caveat_name) for p in caveat.parameters] == [("day", "int", "only_on")]
    assert response.read_at.token


def test_reflect_filters(client: SyncClient, written: ZedToken) -> None:
    F = ss.ReflectionSchemaFilter

    def reflect(*filters: ss.ReflectionSchemaFilter) -> ss.ReflectSchemaResponse:
        return client.ReflectSchema(ss.ReflectSchemaRequest(optional_filters=filters))

    only_docs = reflect(F(optional_definition_name_filter="doc"))
    assert [d.name for d in only_docs.definitions] == ["document"] and not only_docs.caveats
    either = reflect(F(optional_definition_name_filter="u"), F(optional_definition_name_filter="g"))
    assert [d.name for d in either.definitions] == ["group", "user"]
    caveats = reflect(F(optional_caveat_name_filter="only"))
    assert not caveats.definitions and [c.name for c in caveats.caveats] == ["only_on"]
    assert not reflect(F(optional_caveat_name_filter="nope")).caveats
    relations = reflect(F(optional_definition_name_filter="document", optional_relation_name_filter="vi"))
    [document] = relations.definitions
    assert [r.name for r in document.relations] == ["viewer"]
    assert [p.name for p in document.permissions] == ["view", "another"]  # no permission filter
    permissions = reflect(F(optional_definition_name_filter="doc", optional_permission_name_filter="an"))
    assert [p.name for p in permissions.definitions[0].permissions] == ["another"]
    assert len(permissions.definitions[0].relations) == 4


@pytest.mark.parametrize("fields, reason", [
    ({"optional_definition_name_filter": "a", "optional_caveat_name_filter": "b"},
     "cannot filter by both definition and caveat name"),
    ({"optional_relation_name_filter": "a"}, "relation name match requires definition name match"),
    ({"optional_definition_name_filter": "d", "optional_relation_name_filter": "a",
      "optional_permission_name_filter": "b"}, "cannot filter by both relation and permission name"),
    ({"optional_permission_name_filter": "b"}, "permission name match requires definition name match"),
])
def test_reflect_invalid_filters(client: SyncClient, written: ZedToken, fields: dict[str, str], reason: str) -> None:
    request = ss.ReflectSchemaRequest(optional_filters=[ss.ReflectionSchemaFilter(**fields)])
    code, message, why, metadata = error_of(lambda: client.ReflectSchema(request))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and why == "ERROR_REASON_INVALID_FILTER"
    assert message == f"the relationship filter provided is not valid: {reason}"
    assert all(f'{k}:"{v}"' in metadata["filter"] for k, v in fields.items())


def test_reflect_without_schema_is_empty(client: SyncClient) -> None:
    response = client.ReflectSchema(ss.ReflectSchemaRequest())
    assert not response.definitions and not response.caveats and response.read_at.token


def test_reflect_at_exact_snapshot_sees_that_revision(client: SyncClient, written: ZedToken) -> None:
    later = client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA + "\ndefinition team {}\n")).written_at
    before = client.ReflectSchema(ss.ReflectSchemaRequest(consistency=Consistency(at_exact_snapshot=written)))
    now = client.ReflectSchema(ss.ReflectSchemaRequest(consistency=Consistency(at_least_as_fresh=later)))
    assert "team" not in [d.name for d in before.definitions]
    assert "team" in [d.name for d in now.definitions]
    assert before.read_at.token == written.token  # the token names the revision read
    bad = ss.ReflectSchemaRequest(consistency=Consistency(at_exact_snapshot=ZedToken(token="nope")))
    assert error_of(lambda: client.ReflectSchema(bad))[0] == grpc.StatusCode.INVALID_ARGUMENT


# -- DiffSchema ---------------------------------------------------------------------------

COMPARISON = """\
definition user {}

caveat only_on(day string, place string) {
    day == "3" && place == "here"
}

definition folder {
    relation viewer: user
    permission view = viewer
}

definition team {}

definition document {
    // the parent folder
    relation parent: folder

    /** who may view */
    relation viewer: user | user:* | user with only_on
    relation banned: user
    relation owner: user

    // who can view
    permission view = viewer + parent->view
    permission edit = owner
}
"""


def test_diff_schema(client: SyncClient, written: ZedToken) -> None:
    response = client.DiffSchema(ss.DiffSchemaRequest(comparison_schema=COMPARISON))
    got = []
    for d in response.diffs:
        kind = d.WhichOneof("diff")
        value = getattr(d, kind)
        got.append((kind, getattr(value, "name", "")))
    assert got == [
        ("definition_added", "team"),
        ("definition_removed", "group"),
        ("relation_removed", "unused"),
        ("relation_added", "owner"),
        ("permission_removed", "another"),
        ("permission_added", "edit"),
        ("permission_expr_changed", "view"),
        ("permission_doc_comment_changed", "view"),
        ("relation_doc_comment_changed", "viewer"),
        ("relation_subject_type_removed", ""),
        ("definition_doc_comment_changed", "folder"),
        ("definition_doc_comment_changed", "user"),
        ("caveat_parameter_added", "place"),
        ("caveat_parameter_type_changed", ""),
        ("caveat_expr_changed", "only_on"),
    ]
    removed = response.diffs[9].relation_subject_type_removed
    assert removed.relation.name == "viewer" and removed.relation.comment == "/** who may view */"
    assert removed.changed_subject_type.subject_definition_name == "group"
    assert removed.changed_subject_type.optional_relation_name == "member"
    assert response.diffs[11].definition_doc_comment_changed.comment == ""
    changed = response.diffs[13].caveat_parameter_type_changed
    assert (changed.parameter.name, changed.parameter.type, changed.previous_type) == ("day", "string", "int")
    assert response.diffs[0].definition_added.name == "team"
    assert response.read_at.token
    assert not client.DiffSchema(ss.DiffSchemaRequest(comparison_schema=SCHEMA)).diffs


def test_diff_schema_without_stored_schema(client: SyncClient) -> None:
    response = client.DiffSchema(ss.DiffSchemaRequest(comparison_schema="definition user {}"))
    assert [d.definition_added.name for d in response.diffs] == ["user"]


def test_diff_schema_errors(client: SyncClient, written: ZedToken) -> None:
    code, message, reason, metadata = error_of(
        lambda: client.DiffSchema(ss.DiffSchemaRequest(comparison_schema="definition user {\n  relation x: \n}"))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_SCHEMA_PARSE_ERROR")
    assert message.startswith("parse error in `schema`, line 3, column 1:")
    assert metadata["start_line_number"] == "2" and metadata["start_column_position"] == "0"
    code, message, reason, metadata = error_of(
        lambda: client.DiffSchema(ss.DiffSchemaRequest(comparison_schema="definition user {\n relation xyz: hiya\n}"))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR")
    assert message.startswith("object definition `hiya` not found")
    assert metadata == {"definition_name": "hiya"}


# -- ComputablePermissions / DependentRelations ---------------------------------------------


def test_computable_permissions(client: SyncClient, written: ZedToken) -> None:
    response = client.ComputablePermissions(ss.ComputablePermissionsRequest(definition_name="user"))
    assert refs(response.permissions) == [
        ("document", "another", True), ("document", "banned", False), ("document", "unused", False),
        ("document", "view", True), ("document", "viewer", False), ("folder", "view", True),
        ("folder", "viewer", False), ("group", "member", False),
    ]
    assert response.read_at.token
    filtered = client.ComputablePermissions(
        ss.ComputablePermissionsRequest(definition_name="user", optional_definition_name_filter="fol")
    )
    assert refs(filtered.permissions) == [("folder", "view", True), ("folder", "viewer", False)]
    members = client.ComputablePermissions(
        ss.ComputablePermissionsRequest(definition_name="group", relation_name="member")
    )
    assert refs(members.permissions) == [("document", "view", True), ("document", "viewer", False)]
    folders = client.ComputablePermissions(
        ss.ComputablePermissionsRequest(definition_name="folder", relation_name="view")
    )
    assert refs(folders.permissions) == [("document", "view", True)]  # through the arrow


def test_dependent_relations(client: SyncClient, written: ZedToken) -> None:
    response = client.DependentRelations(ss.DependentRelationsRequest(definition_name="document", permission_name="view"))
    assert refs(response.relations) == [
        ("document", "banned", False), ("document", "parent", False), ("document", "viewer", False),
        ("folder", "view", True), ("folder", "viewer", False), ("group", "member", False),
    ]
    assert response.read_at.token
    another = client.DependentRelations(
        ss.DependentRelationsRequest(definition_name="document", permission_name="another")
    )
    assert refs(another.relations) == [("document", "unused", False)]


def test_reflection_lookup_errors(client: SyncClient, written: ZedToken) -> None:
    code, message, reason, metadata = error_of(lambda: client.DependentRelations(
        ss.DependentRelationsRequest(definition_name="document", permission_name="viewer")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION")
    assert message == "the relation `viewer` is not a permission" and metadata == {"relationName": "viewer"}

    code, message, reason, metadata = error_of(lambda: client.DependentRelations(
        ss.DependentRelationsRequest(definition_name="document", permission_name="nope")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION")
    assert metadata == {"definition_name": "document", "relation_or_permission_name": "nope"}

    for call in (
        lambda: client.DependentRelations(ss.DependentRelationsRequest(definition_name="nope", permission_name="x1")),
        lambda: client.ComputablePermissions(ss.ComputablePermissionsRequest(definition_name="nope")),
    ):
        code, message, reason, metadata = error_of(call)
        assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR")
        assert message == "object definition `nope` not found" and metadata == {"definition_name": "nope"}

    code, _, reason, metadata = error_of(lambda: client.ComputablePermissions(
        ss.ComputablePermissionsRequest(definition_name="document", relation_name="nope")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION")


def test_reflection_without_schema(client: SyncClient) -> None:
    code, _, reason, _ = error_of(lambda: client.ComputablePermissions(
        ss.ComputablePermissionsRequest(definition_name="user")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR")


# -- WriteSchema's errors ----------------------------------------------------------------------


def test_write_schema_parse_error(client: SyncClient) -> None:
    code, message, reason, metadata = error_of(
        lambda: client.WriteSchema(ss.WriteSchemaRequest(schema="definition user {}\ndefinition doc {\n  relation\n}"))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_SCHEMA_PARSE_ERROR")
    assert message.startswith("parse error in `schema`, line 4, column 1: ")
    assert metadata["start_line_number"] == "3" and metadata["start_column_position"] == "0"
    assert metadata["source_code"] == "}"
    assert set(metadata) == {"start_line_number", "start_column_position", "end_line_number",
                             "end_column_position", "source_code"}
    # a name used twice is a parse error in SpiceDB too
    code, message, reason, metadata = error_of(
        lambda: client.WriteSchema(ss.WriteSchemaRequest(schema="definition user {}\ndefinition user {}"))
    )
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_SCHEMA_PARSE_ERROR")
    assert message.startswith("parse error in `schema`, line 2, column 12: found name reused")
    assert (metadata["start_line_number"], metadata["start_column_position"], metadata["source_code"]) == (
        "1", "11", "user")


def test_write_schema_type_errors(client: SyncClient) -> None:
    code, message, reason, metadata = error_of(
        lambda: client.WriteSchema(ss.WriteSchemaRequest(schema="definition user {\n  relation xyz: hiya\n}"))
    )
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR")
    assert message.startswith("object definition `hiya` not found")
    assert metadata == {"definition_name": "hiya"}
    code, message, reason, metadata = error_of(lambda: client.WriteSchema(ss.WriteSchemaRequest(
        schema="definition user {}\ndefinition doc {\n  relation vie: user\n  permission per = vie + nope\n}")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "ERROR_REASON_SCHEMA_TYPE_ERROR")
    assert metadata == {"definition_name": "doc", "relation_or_permission_name": "nope"}


def _write(client: SyncClient, *rels: tuple[str, str, str, str, str]) -> None:
    client.WriteRelationships(WriteRelationshipsRequest(updates=[
        RelationshipUpdate(operation=RelationshipUpdate.OPERATION_TOUCH, relationship=Relationship(
            resource=ObjectReference(object_type=rt, object_id=ri), relation=rel,
            subject=SubjectReference(object=ObjectReference(object_type=st, object_id=si))))
        for rt, ri, rel, st, si in rels
    ]))


def test_write_schema_refuses_orphans(client: SyncClient, written: ZedToken) -> None:
    _write(client, ("document", "d1", "viewer", "user", "*"), ("folder", "f1", "viewer", "user", "ann"))

    def refused(schema: str) -> tuple[str, dict[str, str]]:
        code, message, reason, metadata = error_of(lambda: client.WriteSchema(ss.WriteSchemaRequest(schema=schema)))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_SCHEMA_TYPE_ERROR")
        return message, metadata

    without_folder = SCHEMA.replace("relation parent: folder", "").replace(" + parent->view", "")
    start, end = without_folder.index("/**\n * a folder"), without_folder.index("definition document")
    message, metadata = refused(without_folder[:start] + without_folder[end:])
    assert message == ("cannot delete object definition `folder`, as at least one relationship exists under it: "
                       "folder:f1#viewer@user:ann")
    assert metadata == {"resource_type": "folder", "operation": "delete_object_definition",
                        "relationship": "folder:f1#viewer@user:ann"}

    message, metadata = refused(SCHEMA.replace("relation viewer: user\n    permission view = viewer",
                                               "relation other: user\n    permission view = other"))
    assert message == ("cannot delete relation `viewer` in object definition `folder`, as at least one "
                       "relationship exists under it: folder:f1#viewer@user:ann")
    assert metadata == {"resource_type": "folder", "relation": "viewer", "operation": "delete_relation",
                        "relationship": "folder:f1#viewer@user:ann"}

    message, metadata = refused(SCHEMA.replace("user | user:* | group#member", "user | group#member"))
    assert message == ("cannot remove allowed type `user:*` from relation `viewer` in object definition "
                       "`document`, as a relationship exists with it: document:d1#viewer@user:*")
    assert metadata == {"resource_type": "document", "relation": "viewer", "allowed_type": "user:*",
                        "operation": "remove_allowed_type", "relationship": "document:d1#viewer@user:*"}


def test_write_schema_refuses_caveat_parameter_changes(client: SyncClient, written: ZedToken) -> None:
    renamed = SCHEMA.replace("only_on(day int) {\n    day == 3", "only_on(when int) {\n    when == 3")
    code, message, reason, metadata = error_of(lambda: client.WriteSchema(ss.WriteSchemaRequest(schema=renamed)))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "ERROR_REASON_SCHEMA_TYPE_ERROR")
    assert message == "cannot remove parameter `day` on caveat `only_on`"
    assert metadata == {"caveat_name": "only_on", "parameter_name": "day", "operation": "remove_parameter"}
    retyped = SCHEMA.replace("only_on(day int) {\n    day == 3", "only_on(day string) {\n    day == \"3\"")
    code, message, reason, metadata = error_of(lambda: client.WriteSchema(ss.WriteSchemaRequest(schema=retyped)))
    assert message == "cannot change the type of parameter `day` on caveat `only_on`"
    assert metadata["operation"] == "change_parameter_type"


# -- ReadSchema round trip ---------------------------------------------------------------------

REPO_SCHEMAS = sorted((ROOT / "schemas").glob("*.zed"))
CONFORMANCE = [p for p in conformance_files("testconfigs", "*.yaml")][:12]


def _round_trip(client: SyncClient, text: str) -> None:
    client.WriteSchema(ss.WriteSchemaRequest(schema=text))
    read = client.ReadSchema(ss.ReadSchemaRequest())
    again = client.WriteSchema(ss.WriteSchemaRequest(schema=read.schema_text))
    assert again.written_at.token
    assert compile_schema(client.ReadSchema(ss.ReadSchemaRequest()).schema_text) == compile_schema(text)
    assert not client.DiffSchema(ss.DiffSchemaRequest(comparison_schema=text)).diffs


@pytest.mark.parametrize("path", REPO_SCHEMAS, ids=[p.stem for p in REPO_SCHEMAS])
def test_read_schema_round_trip_repo_schemas(client: SyncClient, path: pathlib.Path) -> None:
    _round_trip(client, path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", CONFORMANCE or [None], ids=[p.stem for p in CONFORMANCE] or ["absent"])
def test_read_schema_round_trip_conformance(client: SyncClient, path: pathlib.Path | None) -> None:
    if path is None:
        pytest.skip(ABSENT)
    _round_trip(client, load_validation_file(str(path)).schema_text)


# -- Experimental* copies ----------------------------------------------------------------------


def test_experimental_copies(tmp_path: pathlib.Path) -> None:
    engine = make_engine(tmp_path / "store")
    try:
        engine.write_schema(SCHEMA)
        servicer = SchemaServicer(engine)
        context: Any = None
        reflected = servicer.ExperimentalReflectSchema(
            ex.ExperimentalReflectSchemaRequest(optional_filters=[ex.ExpSchemaFilter(optional_caveat_name_filter="o")]),
            context)
        assert isinstance(reflected, ex.ExperimentalReflectSchemaResponse)
        assert [c.name for c in reflected.caveats] == ["only_on"] and not reflected.definitions
        computable = servicer.ExperimentalComputablePermissions(
            ex.ExperimentalComputablePermissionsRequest(definition_name="group", relation_name="member"), context)
        assert refs(computable.permissions) == [("document", "view", True), ("document", "viewer", False)]
        dependent = servicer.ExperimentalDependentRelations(
            ex.ExperimentalDependentRelationsRequest(definition_name="document", permission_name="another"), context)
        assert refs(dependent.relations) == [("document", "unused", False)]
        diffed = servicer.ExperimentalDiffSchema(
            ex.ExperimentalDiffSchemaRequest(comparison_schema=SCHEMA + "definition team {}\n"), context)
        assert [d.definition_added.name for d in diffed.diffs] == ["team"]
        assert diffed.read_at.token
        with pytest.raises(errors.RelEngineError) as caught:
            servicer.ExperimentalDependentRelations(
                ex.ExperimentalDependentRelationsRequest(definition_name="document", permission_name="viewer"), context)
        status = spicedb_status(caught.value)
        assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
        with pytest.raises(errors.InvalidArgument):  # the experimental request's own field rules
            servicer.ExperimentalReflectSchema(ex.ExperimentalReflectSchemaRequest(
                consistency=Consistency(minimize_latency=False)), context)
    finally:
        engine.close()
