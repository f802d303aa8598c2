"""wire.spicedb.reflect: the reflection messages, filters, diffs and relation graphs built from a
compiled schema (SpiceDB's examples where it has them)."""

from __future__ import annotations

import pytest
from authzed.api.v1 import schema_service_pb2 as ss

from relengine.schema.compiler import compile_schema
from relengine.schema.types import AllowedType
from relengine.wire.spicedb import reflect
from relengine.wire.spicedb.status import reason_of

F = ss.ReflectionSchemaFilter


def names(refs: list[ss.ReflectionRelationReference]) -> list[str]:
    return [f"{r.definition_name}#{r.relation_name}" + ("(P)" if r.is_permission else "") for r in refs]


def test_comment_trims_each_line_and_joins_comments() -> None:
    assert reflect.comment(("/**\n   * doc\n   */", "", "// more  ")) == "/**\n* doc\n*/\n// more"
    assert reflect.comment(()) == ""


def test_type_references() -> None:
    terminal = reflect.type_reference(AllowedType("user"))
    assert terminal.WhichOneof("typeref") == "is_terminal_subject" and terminal.is_terminal_subject is False
    wildcard = reflect.type_reference(AllowedType("user", wildcard=True, caveat="c1"))
    assert wildcard.WhichOneof("typeref") == "is_public_wildcard" and wildcard.optional_caveat_name == "c1"
    subject_set = reflect.type_reference(AllowedType("group", "member"))
    assert subject_set.WhichOneof("typeref") == "optional_relation_name"
    assert subject_set.optional_relation_name == "member"


def test_filters_validate_and_match() -> None:
    with pytest.raises(reflect.InvalidFilter) as caught:
        reflect.Filters.of([F(optional_definition_name_filter="a1", optional_caveat_name_filter="b1")])
    assert caught.value.details["filter"] == 'optional_definition_name_filter:"a1" optional_caveat_name_filter:"b1"'
    assert reason_of(caught.value) is not None and reason_of(caught.value)[1] == "ERROR_REASON_INVALID_FILTER"  # type: ignore[index]
    none = reflect.Filters()
    assert none.wants_definitions() and none.wants_caveats() and none.definition("x") and none.relation("d", "r")
    by_def = reflect.Filters.of([F(optional_definition_name_filter="doc", optional_relation_name_filter="vi")])
    assert by_def.wants_definitions() and not by_def.wants_caveats()
    assert by_def.definition("document") and not by_def.definition("folder")
    assert by_def.relation("document", "viewer") and not by_def.relation("document", "owner")
    assert by_def.permission("document", "anything")  # no permission filter: all kept


def test_reflect_orders_by_name_and_keeps_member_order() -> None:
    schema = compile_schema("caveat zcav(a int, b1 string) {\n a == 1 && b1 == \"x\"\n}\n"
                            "definition zed {\n relation rel_b: zed\n relation rel_a: zed\n permission per_a = rel_b\n}\n"
                            "definition abcd {}\ncaveat acav(x int) {\n x == 2\n}\n")
    definitions, caveats = reflect.reflect(schema)
    assert [d.name for d in definitions] == ["abcd", "zed"]
    assert [r.name for r in definitions[1].relations] == ["rel_b", "rel_a"]
    assert [c.name for c in caveats] == ["acav", "zcav"]
    assert [(p.name, p.type) for p in caveats[1].parameters] == [("a", "int"), ("b1", "string")]


def test_reflect_of_empty_schema() -> None:
    assert reflect.reflect(reflect.EMPTY) == ([], [])


def test_computable_permissions_example_of_the_notes() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition document {\n relation editor: user\n relation viewer: user\n"
        " relation unused: user\n permission view = viewer + editor\n permission another = unused\n}\n"
    )
    found = reflect.reachable_from_subject(schema, ("user", "..."))
    assert names(reflect.relation_references(schema, found, ("user", "..."))) == [
        "document#another(P)", "document#editor", "document#unused", "document#view(P)", "document#viewer"]


def test_computable_permissions_through_arrows_subject_sets_and_wildcards() -> None:
    schema = compile_schema(
        "definition user {}\n"
        "definition group {\n relation member: user | group#member\n permission everyone = member\n}\n"
        "definition folder {\n relation reader: user:*\n permission read = reader\n}\n"
        "definition doc {\n relation parent: folder\n relation viewer: group#member\n"
        " permission view = viewer + parent->read\n}\n"
    )
    members = reflect.reachable_from_subject(schema, ("group", "member"))
    assert names(reflect.relation_references(schema, members, ("group", "member"))) == [
        "doc#view(P)", "doc#viewer", "group#everyone(P)"]
    users = reflect.reachable_from_subject(schema, ("user", "..."))
    assert names(reflect.relation_references(schema, users, ("user", "..."), "fol")) == [
        "folder#read(P)", "folder#reader"]
    assert ("doc", "view") in users  # user:* -> folder#reader -> folder#read -> doc#view (arrow)


def test_dependent_relations_examples() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition folder {\n relation viewer: user\n permission view = viewer\n}\n"
        "definition document {\n relation parent: folder\n relation viewer: user\n"
        " permission view = viewer + parent->view\n}\n"
    )
    found = reflect.dependencies_of(schema, ("document", "view"))
    assert names(reflect.relation_references(schema, found, ("document", "view"))) == [
        "document#parent", "document#viewer", "folder#view(P)", "folder#viewer"]
    subrelation = compile_schema(
        "definition user {}\ndefinition group {\n relation direct_member: user\n relation admin: user\n"
        " permission member = direct_member + admin\n}\n"
        "definition document {\n relation viewer: user | group#member\n permission view = viewer\n}\n"
    )
    found = reflect.dependencies_of(subrelation, ("document", "view"))
    assert names(reflect.relation_references(subrelation, found, ("document", "view"))) == [
        "document#viewer", "group#admin", "group#direct_member", "group#member(P)"]


def test_arrow_without_target_reports_nothing_of_it() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition org {\n relation admin: user\n}\n"
        "definition doc {\n relation org: org\n relation owner: user\n permission view = owner + org->nope\n}\n"
    )
    found = reflect.dependencies_of(schema, ("doc", "view"))
    assert names(reflect.relation_references(schema, found, ("doc", "view"))) == ["doc#owner"]


def test_diff_orders_and_kinds() -> None:
    old = compile_schema(
        "definition user {}\ndefinition gone {}\n"
        "caveat cav(a int) {\n a == 1\n}\n"
        "definition doc {\n relation rel_a: user\n relation rel_b: user | gone\n permission per = rel_a\n}\n"
    )
    new = compile_schema(
        "definition user {}\ndefinition added {}\n"
        "// documented\ncaveat cav(a int, b1 int) {\n a == b1\n}\ncaveat new_cav(x int) {\n x == 1\n}\n"
        "definition doc {\n relation rel_a: user\n relation rel_b: user | user:*\n permission per = rel_a.any(rel_a)\n"
        " permission per2 = rel_b\n}\n"
    )
    got = [(d.WhichOneof("diff"), getattr(getattr(d, d.WhichOneof("diff") or ""), "name", "")) for d in
           reflect.diff(old, new)]
    assert got == [
        ("definition_added", "added"), ("definition_removed", "gone"), ("caveat_added", "new_cav"),
        ("permission_added", "per2"), ("permission_expr_changed", "per"),
        ("relation_subject_type_removed", ""), ("relation_subject_type_added", ""),
        ("caveat_doc_comment_changed", "cav"), ("caveat_parameter_added", "b1"), ("caveat_expr_changed", "cav"),
    ]
    assert reflect.diff(old, old) == []
