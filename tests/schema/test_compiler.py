"""compile_schema: one table of invalid schemas (message and position), lint warnings, and what a
valid schema compiles to.

This is also schema/validate.py's test: its semantic checks run inside compile_schema, and the
INVALID table below holds their cases (names that do not resolve, bad arrows, duplicates,
cycles...) with the message and position each gives, so there is no test_validate.py."""

from __future__ import annotations

import pathlib

import pytest

from relengine.errors import SchemaError, SchemaSyntaxError, SchemaValidationError
from relengine.schema import compile_schema, print_schema
from relengine.schema.types import (
    AllowedType,
    CaveatParameter,
    ComputedUserset,
    Exclusion,
    Intersection,
    Nil,
    Permission,
    Relation,
    This,
    TupleToUserset,
    Union,
)

REPO = pathlib.Path(__file__).resolve().parents[2]
SCHEMA_FILES = sorted((REPO / "schemas").glob("*.zed"))

USER = "definition user {}\n"
LONG = "a" * 65


def case(name: str, schema: str, message: str, position: tuple[int, int]) -> object:
    return pytest.param(schema, message, position, id=name)


# (id, schema, a substring of the message, (line, column) of that issue)
INVALID = [
    # -- names that do not resolve ---------------------------------------------------------
    case(
        "unknown-definition",
        "definition doc {\n    relation viewer: usr\n}\n",
        "object definition `usr` not found", (2, 22),
    ),
    case(
        "unknown-definition-wildcard",
        "definition doc {\n    relation viewer: nope:*\n}\n",
        "object definition `nope` not found", (2, 22),
    ),
    case(
        "unknown-definition-subject-set",
        USER + "definition doc {\n    relation viewer: user | team#member\n}\n",
        "object definition `team` not found", (3, 29),
    ),
    case(
        "unknown-subject-relation",
        USER + "definition group {\n    relation member: user\n}\ndefinition doc {\n"
               "    relation viewer: group#nope\n}\n",
        "relation/permission `nope` not found under definition `group`", (6, 28),
    ),
    case(
        "unknown-name-in-expression",
        USER + "definition doc {\n    relation viewer: user\n    permission view = viewer + nope\n"
               "}\n",
        "relation/permission `nope` not found under definition `doc`", (4, 32),
    ),
    case(
        "unknown-name-deep-in-expression",
        USER + "definition doc {\n    relation viewer: user\n"
               "    permission view = (viewer & viewer) - (viewer + nope)\n}\n",
        "relation/permission `nope` not found", (4, 53),
    ),
    case(
        "unknown-relation-left-of-arrow",
        USER + "definition doc {\n    permission view = nope->view\n}\n",
        "relation `nope` not found under definition `doc` (left side of arrow `nope->view`)", (3, 23),
    ),
    case(
        "unknown-caveat",
        USER + "definition doc {\n    relation viewer: user with nope\n}\n",
        "caveat `nope` not found", (3, 32),
    ),
    # -- arrows ------------------------------------------------------------------------------
    case(
        "permission-left-of-arrow",
        USER + "definition doc {\n    relation viewer: user\n    permission view = viewer\n"
               "    permission other = view->view\n}\n",
        "permissions cannot be used on the left hand side of an arrow", (5, 24),
    ),
    case(
        "wildcard-left-of-arrow",
        USER + "definition doc {\n    relation viewer: user | user:*\n"
               "    permission view = viewer->view\n}\n",
        "wildcard relations cannot be used on the left side of arrows", (4, 23),
    ),
    case(
        "nested-arrows",
        USER + "definition doc {\n    relation parent: doc\n"
               "    permission view = parent->parent->view\n}\n",
        "nested arrows are not supported: `parent->parent->view`", (4, 23),
    ),
    case(
        "nested-arrow-functions",
        USER + "definition doc {\n    relation parent: doc\n"
               "    permission view = parent.any(parent).all(view)\n}\n",
        "nested arrows are not supported", (4, 23),
    ),
    case(
        "expression-left-of-arrow",
        USER + "definition doc {\n    relation one: user\n    permission view = (one + one)->view\n"
               "}\n",
        "the left side of an arrow must be a relation name, in `(one + one)->view`", (4, 24),
    ),
    case(
        "nil-left-of-arrow",
        USER + "definition doc {\n    permission view = nil->view\n}\n",
        "the left side of an arrow must be a relation name", (3, 23),
    ),
    # -- duplicates --------------------------------------------------------------------------
    case(
        "duplicate-relation",
        USER + "definition doc {\n    relation viewer: user\n    relation viewer: user\n}\n",
        "found duplicate relation/permission name `viewer` under definition `doc`", (4, 14),
    ),
    case(
        "duplicate-permission",
        USER + "definition doc {\n    relation one: user\n    permission view = one\n"
               "    permission view = one\n}\n",
        "found duplicate relation/permission name `view`", (5, 16),
    ),
    case(
        "relation-and-permission-same-name",
        USER + "definition doc {\n    relation view: user\n    permission view = view\n}\n",
        "relations and permissions share one namespace", (4, 16),
    ),
    case(
        "duplicate-definition",
        USER + "definition doc {}\ndefinition doc {}\n",
        "found name reused between multiple definitions and/or caveats: `doc`", (3, 12),
    ),
    case(
        "definition-and-caveat-same-name",
        USER + "definition doc {}\ncaveat doc(num int) {\n    num == 1\n}\n",
        "found name reused between multiple definitions and/or caveats: `doc`", (3, 8),
    ),
    case(
        "duplicate-allowed-type",
        USER + "definition doc {\n    relation viewer: user | user\n}\n",
        "found duplicate allowed subject type `user` on relation `viewer`", (3, 29),
    ),
    case(
        "duplicate-allowed-wildcard",
        USER + "definition doc {\n    relation viewer: user:* | user | user:*\n}\n",
        "found duplicate allowed subject type `user:*`", (3, 38),
    ),
    case(
        "duplicate-caveat-parameter",
        "caveat cav(num int, num string) {\n    num == 1\n}\n",
        "duplicate parameter `num` in caveat `cav`", (1, 21),
    ),
    # -- names that break the rules ----------------------------------------------------------
    case(
        "definition-name-too-short",
        "definition ab {}\n",
        "invalid definition name `ab`", (1, 12),
    ),
    case(
        "relation-name-too-short",
        USER + "definition doc {\n    relation ab: user\n}\n",
        "invalid relation name `ab`", (3, 14),
    ),
    case(
        "permission-name-too-short",
        USER + "definition doc {\n    relation one: user\n    permission vw = one\n}\n",
        "invalid permission name `vw`", (4, 16),
    ),
    case(
        "definition-name-uppercase",
        "definition Document {}\n",
        "invalid definition name `Document`", (1, 12),
    ),
    case(
        "relation-name-uppercase",
        USER + "definition doc {\n    relation Viewer: user\n}\n",
        "invalid relation name `Viewer`", (3, 14),
    ),
    case(
        "definition-trailing-underscore",
        "definition doc_ {}\n",
        "invalid definition name `doc_`", (1, 12),
    ),
    case(
        "relation-trailing-underscore",
        USER + "definition doc {\n    relation viewer_: user\n}\n",
        "invalid relation name `viewer_`", (3, 14),
    ),
    case(
        "definition-leading-underscore",
        "definition _doc {}\n",
        "invalid definition name `_doc`", (1, 12),
    ),
    case(
        "definition-name-too-long",
        f"definition {LONG} {{}}\n",
        f"invalid definition name `{LONG}`", (1, 12),
    ),
    case(
        "relation-name-too-long",
        USER + f"definition doc {{\n    relation {LONG}: user\n}}\n",
        "3 to 64 characters", (3, 14),
    ),
    case(
        "bad-prefix",
        "definition Tenant/doc {}\n",
        "invalid definition name `Tenant/doc`", (1, 12),
    ),
    case(
        "caveat-name-uppercase",
        "caveat IsAllowed(num int) {\n    num == 1\n}\n",
        "invalid caveat name `IsAllowed`", (1, 8),
    ),
    # -- cycles ------------------------------------------------------------------------------
    case(
        "cycle-of-two",
        USER + "definition doc {\n    permission one = two\n    permission two = one\n}\n",
        "permissions `one`, `two` only reach each other in a cycle (one -> two -> one)", (3, 16),
    ),
    case(
        "cycle-of-three",
        USER + "definition doc {\n    relation rel: user\n    permission first = rel + second\n"
               "    permission second = third & rel\n    permission third = rel - first\n}\n",
        "permissions `first`, `second`, `third` only reach each other in a cycle", (4, 16),
    ),
    # -- caveats -----------------------------------------------------------------------------
    case(
        "caveat-without-parameters",
        "caveat nothing() {\n    true\n}\n",
        "caveat `nothing` must have at least one parameter", (1, 8),
    ),
    case(
        "unknown-caveat-type",
        "caveat cav(num integer) {\n    num == 1\n}\n",
        "unknown parameter type `integer` in caveat `cav`", (1, 16),
    ),
    case(
        "unknown-caveat-type-argument",
        "caveat cav(num list<integer>) {\n    num == 1\n}\n",
        "unknown parameter type `integer`", (1, 21),
    ),
    case(
        "caveat-generic-too-many-arguments",
        "caveat cav(num list<int, int>) {\n    num == 1\n}\n",
        "type `list` in caveat `cav` takes 1 type argument(s), found 2", (1, 16),
    ),
    case(
        "caveat-generic-without-argument",
        "caveat cav(num list) {\n    num == 1\n}\n",
        "type `list` in caveat `cav` takes 1 type argument(s), found 0", (1, 16),
    ),
    case(
        "caveat-plain-type-with-argument",
        "caveat cav(num int<string>) {\n    num == 1\n}\n",
        "type `int` in caveat `cav` takes 0 type argument(s), found 1", (1, 16),
    ),
    # -- use flags ---------------------------------------------------------------------------
    case(
        "expiration-without-use",
        USER + "definition doc {\n    relation viewer: user with expiration\n}\n",
        "add `use expiration` at the top of the schema", (3, 32),
    ),
    case(
        "self-without-use",
        USER + "definition doc {\n    permission myself = self\n}\n",
        "add `use self` at the top of the schema", (3, 25),
    ),
    case(
        "use-after-definition",
        USER + "use expiration\n",
        "`use` expressions must be declared before any definition", (2, 1),
    ),
    case(
        "unknown-use-flag",
        "use expirations\ndefinition user {}\n",
        "Unknown use flag: `expirations`", (1, 5),
    ),
    case(
        "use-import-unsupported",
        "use import\ndefinition user {}\n",
        "`use import` is not supported by relengine yet", (1, 5),
    ),
    case(
        "use-partial-unsupported",
        "use partial\ndefinition user {}\n",
        "`use partial` is not supported by relengine yet", (1, 5),
    ),
    # -- nesting past the parser's bound (each was a RecursionError; found by tests/fuzz) ----
    case(
        "parentheses-nested-too-deep",
        USER + "definition doc {\n    relation viewer: user\n    permission view = " + "(" * 101 + "viewer" + ")" * 101 + "\n}\n",
        "the expression nests more than 100 levels deep", (4, 123),
    ),
    case(
        "exclusion-chain-too-deep",  # each `-` is a level: (a - b) - c
        USER + "definition doc {\n    relation viewer: user\n    permission view = " + " - ".join(["viewer"] * 102) + "\n}\n",
        "the expression nests more than 100 levels deep", (4, 23),
    ),
    case(
        "parameter-type-nested-too-deep",
        "caveat deep(value " + "list<" * 1000 + "int" + ">" * 1000 + ") {\n  true\n}\n",
        "the parameter type nests more than 100 levels deep", (1, 523),
    ),
]


@pytest.mark.parametrize(("schema", "message", "position"), INVALID)
def test_invalid_schema(schema: str, message: str, position: tuple[int, int]) -> None:
    with pytest.raises(SchemaError) as caught:
        compile_schema(schema, "schema.zed")
    issues = caught.value.issues
    matching = [issue for issue in issues if message in issue.message]
    assert len(issues) == 1 and matching, "\n".join(issue.render() for issue in issues)
    assert (matching[0].line, matching[0].column) == position, matching[0].render()
    assert matching[0].severity == "error" and matching[0].source_name == "schema.zed"


def test_enough_invalid_cases() -> None:
    assert len(INVALID) >= 35


@pytest.mark.parametrize(
    "expression",
    [
        "(" * 100 + "viewer" + ")" * 100,
        " - ".join(["viewer"] * 101),
        # A run of one operator is one level however long (SpiceDB takes long unions too).
        " + ".join(["viewer"] * 5000),
        " & ".join(["viewer"] * 5000),
        " - ".join([" & ".join(["viewer"] * 1000)] * 3),
    ],
    ids=["parentheses", "exclusions", "union", "intersection", "mixed"],
)
def test_an_expression_at_the_nesting_bound_compiles_and_prints(expression: str) -> None:
    schema = compile_schema(USER + f"definition doc {{\n    relation viewer: user\n    permission view = {expression}\n}}\n")
    assert compile_schema(print_schema(schema)) == schema


def test_a_chain_of_thousands_of_permissions_compiles() -> None:
    """Each permission names the next: the cycle check walks the chain without recursing per permission."""
    chain = "".join(f"    permission perm{i} = perm{i + 1}\n" for i in range(3000))
    schema = compile_schema(USER + "definition doc {\n    relation viewer: user\n" + chain + "    permission perm3000 = viewer\n}\n")
    assert len(schema.definitions["doc"].members) == 3002
    looped = chain + "    permission perm3000 = perm2999\n"
    with pytest.raises(SchemaValidationError, match="permissions `perm2999`, `perm3000` only reach each other in a cycle"):
        compile_schema(USER + "definition doc {\n    relation viewer: user\n" + looped + "}\n")


def test_nested_arrow_message_gives_the_workaround() -> None:
    schema = (
        USER + "definition org {\n    relation admin: user\n}\n"
        "definition folder {\n    relation org: org\n}\n"
        "definition doc {\n    relation folder: folder\n    permission admin = folder->org->admin\n}\n"
    )
    with pytest.raises(SchemaValidationError) as caught:
        compile_schema(schema)
    message = caught.value.issues[0].message
    assert "Workaround" in message
    assert "`permission org_admin = org->admin`" in message
    assert "`folder->org_admin`" in message


def test_every_error_is_reported_in_source_order() -> None:
    schema = (
        USER + "definition doc {\n    relation second: nope\n    relation first: user\n"
        "    permission view = zzz + first->yyy\n}\n"
    )
    with pytest.raises(SchemaValidationError) as caught:
        compile_schema(schema)
    positions = [(issue.line, issue.column) for issue in caught.value.issues]
    assert positions == [(3, 22), (5, 23)]  # `nope`, `zzz`; first->yyy on `user` is only a warning
    assert str(caught.value).startswith("3:22: object definition `nope` not found")
    assert "(and 1 more)" in str(caught.value)


def test_syntax_errors_are_syntax_errors() -> None:
    with pytest.raises(SchemaSyntaxError):
        compile_schema("definition doc {")
    with pytest.raises(SchemaValidationError):
        compile_schema("definition doc { relation rel: nope }")


# -- warnings --------------------------------------------------------------------------------


def test_warning_arrow_to_a_relation_no_subject_type_has() -> None:
    schema = (
        USER + "definition folder {\n    relation viewer: user\n}\n"
        "definition doc {\n    relation parent: folder\n    permission view = parent->nope\n}\n"
    )
    compiled = compile_schema(schema, "doc.zed")
    [warning] = compiled.warnings
    assert warning.severity == "warning" and warning.code == "arrow-target-missing"
    assert "no subject type of relation `parent` (folder) has a relation or permission `nope`" in warning.message
    assert (warning.line, warning.column) == (7, 31)
    assert warning.render().splitlines() == [
        f"doc.zed:7:31: warning: {warning.message}",
        "      permission view = parent->nope",
        "                                ^",
    ]


def test_warning_permission_references_itself() -> None:
    schema = USER + "definition doc {\n    relation viewer: user\n    permission view = viewer + view\n}\n"
    compiled = compile_schema(schema)
    [warning] = compiled.warnings
    assert warning.code == "self-reference"
    assert "permission `view` references itself" in warning.message
    assert (warning.line, warning.column) == (4, 32)
    lines = warning.render().splitlines()
    assert lines[0].startswith("4:32: warning: permission `view` references itself")
    assert lines[1] == "      permission view = viewer + view"
    assert lines[2].index("^") == lines[1].index("+ view") + 2


def test_warning_caret_with_tabs() -> None:
    """Tabs are shown as one space, so the caret stays under the column."""
    schema = USER + "definition doc {\n\trelation viewer: user\n\tpermission view = viewer + view\n}\n"
    [warning] = compile_schema(schema).warnings
    source_line, caret = warning.render().splitlines()[1:]
    assert source_line[caret.index("^") :].startswith("view")


def test_no_warnings_when_the_arrow_target_exists_on_some_subject_type() -> None:
    schema = (
        USER + "definition folder {\n    relation viewer: user\n}\n"
        "definition doc {\n    relation parent: folder | user\n    permission view = parent->viewer\n}\n"
    )
    assert compile_schema(schema).warnings == ()


# -- what valid schemas compile to -------------------------------------------------------------


def test_doc_comments_are_kept() -> None:
    schema = (
        "/** a user */\ndefinition user {}\n\n"
        "// documents\n// (two lines)\ndefinition doc {\n"
        "    /**\n     * who may read\n     */\n    relation viewer: user\n"
        "    // read access\n    permission view = viewer\n}\n"
        "// a caveat\ncaveat cav(num int) {\n    num == 1\n}\n"
    )
    compiled = compile_schema(schema)
    assert compiled.definitions["user"].doc == ("/** a user */",)
    doc = compiled.definitions["doc"]
    assert doc.doc == ("// documents", "// (two lines)")
    assert doc.members["viewer"].doc == ("/**\n * who may read\n */",)
    assert doc.members["view"].doc == ("// read access",)
    assert compiled.caveats["cav"].doc == ("// a caveat",)


def _rewrite(expression: str) -> object:
    schema = USER + (
        "definition doc {\n    relation aaa: user\n    relation bbb: user\n    relation ccc: user\n"
        "    relation ddd: user\n    relation parent: doc\n"
        f"    permission xxx = {expression}\n}}\n"
    )
    permission = compile_schema(schema).definitions["doc"].members["xxx"]
    assert isinstance(permission, Permission)
    return permission.rewrite


A, B, C, D = (ComputedUserset(n) for n in ("aaa", "bbb", "ccc", "ddd"))


@pytest.mark.parametrize(
    ("expression", "rewrite"),
    [
        pytest.param("aaa + bbb + ccc", Union((A, B, C)), id="union-chain"),
        pytest.param("aaa + (bbb + ccc)", Union((A, B, C)), id="union-right-group"),
        pytest.param("(aaa + bbb) + (ccc + ddd)", Union((A, B, C, D)), id="union-groups"),
        pytest.param("aaa & bbb & ccc", Intersection((A, B, C)), id="intersection-chain"),
        pytest.param("aaa & (bbb & ccc)", Intersection((A, B, C)), id="intersection-right-group"),
        pytest.param("aaa + bbb & ccc", Intersection((Union((A, B)), C)), id="union-in-intersection"),
        pytest.param("aaa + (bbb & ccc)", Union((A, Intersection((B, C)))), id="intersection-in-union"),
        pytest.param("aaa - bbb - ccc", Exclusion(Exclusion(A, B), C), id="exclusion-not-flattened"),
        pytest.param("aaa - (bbb - ccc)", Exclusion(A, Exclusion(B, C)), id="exclusion-right-group"),
        pytest.param("aaa - bbb + ccc", Exclusion(A, Union((B, C))), id="exclusion-of-union"),
        pytest.param("aaa + nil", Union((A, Nil())), id="nil"),
        pytest.param("parent->aaa", TupleToUserset("parent", "aaa"), id="arrow"),
        pytest.param("parent.any(aaa)", TupleToUserset("parent", "aaa", "any", True), id="arrow-any"),
        pytest.param("parent.all(aaa)", TupleToUserset("parent", "aaa", "all", True), id="arrow-all"),
        pytest.param("(aaa)", A, id="parenthesised-name"),
    ],
)
def test_rewrites(expression: str, rewrite: object) -> None:
    assert _rewrite(expression) == rewrite


def test_self_compiles_to_this() -> None:
    compiled = compile_schema("use self\ndefinition user {\n    permission myself = self\n}\n")
    assert compiled.definitions["user"].members["myself"] == Permission("myself", This())
    assert compiled.use_flags == frozenset({"self"})


def test_allowed_types_and_caveats() -> None:
    schema = (
        "use expiration\nuse expiration\n"
        "definition user {}\ndefinition group {\n    relation member: user\n    permission view = member\n}\n"
        "definition doc {\n    relation viewer: user | user:* with cav | group#member with cav and expiration"
        " | group#view | group#... with expiration\n}\n"
        "caveat cav(num int, lists list<map<string>>) {\n    num == 1 && size(lists) >= 0\n}\n"
    )
    compiled = compile_schema(schema)
    assert compiled.use_flags == frozenset({"expiration"})
    viewer = compiled.definitions["doc"].members["viewer"]
    assert isinstance(viewer, Relation) and viewer.has_wildcard
    assert viewer.allowed == (
        AllowedType("user"),
        AllowedType("user", wildcard=True, caveat="cav"),
        AllowedType("group", "member", caveat="cav", expiration=True),
        AllowedType("group", "view"),
        AllowedType("group", expiration=True),
    )
    parameters = (CaveatParameter("num", "int"), CaveatParameter("lists", "list<map<string>>"))
    assert compiled.caveats["cav"].parameters == parameters
    assert compiled.order == ("definition:user", "definition:group", "definition:doc", "caveat:cav")


def test_positions_are_kept_but_not_compared() -> None:
    first = compile_schema("definition user {}\ndefinition doc {\n    relation rel: user\n}\n")
    second = compile_schema("\n\ndefinition user {}\n\n\ndefinition doc {\n  relation rel: user\n}\n")
    assert first == second
    assert (first.definitions["doc"].line, first.definitions["doc"].column) == (2, 12)
    relation = second.definitions["doc"].members["rel"]
    assert (relation.line, relation.column) == (7, 12)


def test_arrows_through_permissions_break_cycles() -> None:
    schema = USER + (
        "definition folder {\n    relation parent: folder\n    relation viewer: user\n"
        "    permission view = viewer + parent->view\n}\n"
    )
    assert compile_schema(schema).warnings == ()


@pytest.mark.skipif(not SCHEMA_FILES, reason="no schemas/*.zed in the repository yet")
@pytest.mark.parametrize("path", SCHEMA_FILES, ids=[p.name for p in SCHEMA_FILES])
def test_repository_schemas_compile(path: pathlib.Path) -> None:
    compiled = compile_schema(path.read_text(encoding="utf-8"), path.name)
    assert compiled.definitions
