"""schema/types.py: the compiled schema's lookups (``definition``, ``member``, ``require`` and
the errors naming what is missing), a definition's relations and permissions, allowed types as
text, and what takes part in equality."""

from __future__ import annotations

import pytest

from relengine.errors import UnknownDefinition, UnknownRelation
from relengine.schema import compile_schema
from relengine.schema.types import AllowedType, CompiledSchema, ComputedUserset, Definition, Permission, Relation

SCHEMA = compile_schema(
    "definition user {}\n"
    "definition doc {\n    relation viewer: user | user:*\n    relation owner: user\n    permission view = viewer\n}\n"
)


@pytest.mark.parametrize(
    ("allowed", "text"),
    [
        (AllowedType("user"), "user"),
        (AllowedType("user", wildcard=True), "user:*"),
        (AllowedType("group", "member"), "group#member"),
        (AllowedType("user", caveat="on_network"), "user with on_network"),
        (AllowedType("user", expiration=True), "user with expiration"),
        (AllowedType("group", "member", caveat="on_network", expiration=True), "group#member with on_network and expiration"),
        (AllowedType("user", wildcard=True, caveat="on_network"), "user:* with on_network"),
    ],
)
def test_allowed_types_as_text(allowed: AllowedType, text: str) -> None:
    assert str(allowed) == text


def test_has_wildcard() -> None:
    assert Relation("viewer", (AllowedType("user"), AllowedType("user", wildcard=True))).has_wildcard
    assert not Relation("viewer", (AllowedType("user"), AllowedType("group", "member"))).has_wildcard


def test_a_definition_tells_relations_from_permissions() -> None:
    doc = SCHEMA.definitions["doc"]
    assert isinstance(doc.relation("viewer"), Relation) and doc.permission("viewer") is None
    assert isinstance(doc.permission("view"), Permission) and doc.relation("view") is None
    assert doc.relation("nothing") is None and doc.permission("nothing") is None
    assert list(doc.members) == ["viewer", "owner", "view"]  # source order
    assert not Relation.is_permission and Permission.is_permission


@pytest.mark.parametrize(
    ("type_name", "name", "found"),
    [
        ("doc", "viewer", True),
        ("doc", "view", True),
        ("doc", "nothing", False),
        ("nothing", "viewer", False),
    ],
)
def test_member_lookup(type_name: str, name: str, found: bool) -> None:
    member = SCHEMA.member(type_name, name)
    assert (member is not None) is found
    if member is not None:
        assert member is SCHEMA.definitions[type_name].members[name]


def test_definition_lookup() -> None:
    assert SCHEMA.definition("doc") is SCHEMA.definitions["doc"]
    assert SCHEMA.definition("nothing") is None


def test_require_returns_the_definition() -> None:
    assert SCHEMA.require("doc") is SCHEMA.definitions["doc"]
    assert SCHEMA.require("doc", "view") is SCHEMA.definitions["doc"]
    assert SCHEMA.require("user", None) is SCHEMA.definitions["user"]


@pytest.mark.parametrize(
    ("type_name", "name", "error", "message", "fields"),
    [
        pytest.param(
            "nothing", None, UnknownDefinition, "object definition `nothing` not found", {"definition": "nothing"},
            id="definition",
        ),
        pytest.param(
            "nothing", "view", UnknownDefinition, "object definition `nothing` not found", {"definition": "nothing"},
            id="definition-first",
        ),
        pytest.param(
            "doc", "edit", UnknownRelation, "relation/permission `edit` not found under definition `doc`",
            {"definition": "doc", "relation": "edit"}, id="member",
        ),
    ],
)
def test_require_names_what_is_missing(
    type_name: str, name: str | None, error: type[Exception], message: str, fields: dict[str, str]
) -> None:
    with pytest.raises(error) as caught:
        SCHEMA.require(type_name, name)
    assert str(caught.value) == message
    assert caught.value.fields() == fields  # type: ignore[attr-defined]


def test_positions_warnings_source_and_derived_take_no_part_in_equality() -> None:
    view = Permission("view", ComputedUserset("viewer"))
    doc = Definition("doc", {"view": view})
    moved = Definition("doc", {"view": Permission("view", ComputedUserset("viewer"), line=9, column=3)}, line=5, column=12)
    assert doc == moved
    plain = CompiledSchema({"doc": doc}, {})
    busy = CompiledSchema({"doc": moved}, {}, warnings=SCHEMA.warnings, source_text="definition doc {}", derived={"k": 1})
    assert plain == busy
    assert plain != CompiledSchema({"doc": doc}, {}, use_flags=frozenset({"self"}))
    assert Definition("doc", {"view": view}, doc=("// docs",)) != doc  # comments do count
