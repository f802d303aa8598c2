"""Parser golden files: ``golden/NAME.zed`` beside ``golden/NAME.expected``.

``NAME.expected`` holds a readable dump of the AST (``dump`` below), or, for text that does not
parse, the SchemaSyntaxError as ``render()`` prints it (``NAME.zed:line:column: error: ...``, the
source line and a caret). ``REGEN=1 pytest tests/schema/test_parser.py`` rewrites the
``.expected`` files; review the diff before keeping it.

Dump format: one node per line, indented two spaces per level, ``@line:column`` where the node
starts (1-based); an expression ends with ``..line:column``, the column one past its last
character.
"""

from __future__ import annotations

import os
import pathlib

import pytest

from relengine.errors import SchemaSyntaxError
from relengine.schema import ast
from relengine.schema.parser import parse
from relengine.schema.source import Source

GOLDEN = pathlib.Path(__file__).with_name("golden")
CASES = sorted(GOLDEN.glob("*.zed"))
REGEN = os.environ.get("REGEN") == "1"


# -- the dumper -----------------------------------------------------------------------------


class Dumper:
    def __init__(self, text: str) -> None:
        self.source = Source(text)
        self.lines: list[str] = []

    def at(self, offset: int) -> str:
        line, column = self.source.position(offset)
        return f"@{line}:{column}"

    def span(self, node: ast.Node) -> str:
        line, column = self.source.position(node.end)
        return f"{self.at(node.start)}..{line}:{column}"

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("  " * depth + text)

    def comments(self, depth: int, comments: list[str], label: str = "comment") -> None:
        for comment in comments:
            self.emit(depth, f"{label} {comment!r}")

    def file(self, tree: ast.File) -> str:
        self.emit(0, "file")
        for flag in tree.uses:
            self.emit(1, f"use {flag.name} {self.at(flag.start)}")
        for item in tree.items:
            if isinstance(item, ast.Definition):
                self.definition(item)
            else:
                self.caveat(item)
        self.comments(1, tree.trailing_comments, "trailing comment")
        return "\n".join(self.lines) + "\n"

    def definition(self, item: ast.Definition) -> None:
        self.emit(1, f"definition {item.name} {self.at(item.name_start)}")
        self.comments(2, item.comments)
        for member in item.members:
            if isinstance(member, ast.RelationDecl):
                self.emit(2, f"relation {member.name} {self.at(member.name_start)}")
                self.comments(3, member.comments)
                for ref in member.types:
                    self.emit(3, f"type {self.type_ref(ref)} {self.at(ref.start)}")
            else:
                self.emit(2, f"permission {member.name} {self.at(member.name_start)}")
                self.comments(3, member.comments)
                self.expr(3, member.expr)
        self.comments(2, item.trailing_comments, "trailing comment")

    @staticmethod
    def type_ref(ref: ast.TypeRef) -> str:
        text = ref.type_name
        if ref.wildcard:
            text += ":*"
        elif ref.relation is not None:
            text += f"#{ref.relation}"
        if ref.caveat is not None:
            text += f" with caveat {ref.caveat}"
        if ref.expiration:
            text += " with expiration"
        return text

    _OPS = {"+": "union", "&": "intersection", "-": "exclusion"}

    def expr(self, depth: int, expr: ast.Expr) -> None:
        if isinstance(expr, ast.Identifier):
            self.emit(depth, f"name {expr.name} {self.span(expr)}")
        elif isinstance(expr, ast.Nil):
            self.emit(depth, f"nil {self.span(expr)}")
        elif isinstance(expr, ast.SelfRef):
            self.emit(depth, f"self {self.span(expr)}")
        elif isinstance(expr, ast.BinOp):
            self.emit(depth, f"{self._OPS[expr.op]} ({expr.op}) {self.span(expr)}")
            self.expr(depth + 1, expr.left)
            self.expr(depth + 1, expr.right)
        else:
            how = "->" if expr.function is None else f".{expr.function}()"
            self.emit(depth, f"arrow {how} {expr.right} {self.span(expr)}")
            self.expr(depth + 1, expr.left)

    def caveat(self, item: ast.CaveatDef) -> None:
        self.emit(1, f"caveat {item.name} {self.at(item.name_start)}")
        self.comments(2, item.comments)
        for param in item.params:
            self.emit(2, f"param {param.name} {self.type_expr(param.type)} {self.at(param.start)}")
        self.emit(2, f"expression {item.expression!r} {self.at(item.expression_start)}")

    def type_expr(self, node: ast.TypeExpr) -> str:
        if not node.args:
            return node.name
        return f"{node.name}<{', '.join(self.type_expr(a) for a in node.args)}>"


def dump(text: str, name: str) -> str:
    """The AST as text, or the syntax error as the CLI would print it."""
    try:
        tree = parse(text, name)
    except SchemaSyntaxError as exc:
        return exc.render() + "\n"
    return Dumper(text).file(tree)


# -- golden files ---------------------------------------------------------------------------


def test_enough_golden_cases() -> None:
    errors = [p for p in CASES if p.name.startswith("error_")]
    assert len(CASES) >= 20 and len(errors) >= 5, (len(CASES), len(errors))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_golden(path: pathlib.Path) -> None:
    found = dump(path.read_text(encoding="utf-8"), path.name)
    expected_path = path.with_suffix(".expected")
    if REGEN:
        expected_path.write_text(found, encoding="utf-8")
    assert expected_path.exists(), f"{expected_path.name} is missing; run with REGEN=1"
    assert found == expected_path.read_text(encoding="utf-8")
    # Files named error_* must fail to parse, and only they.
    assert found.startswith(f"{path.name}:") == path.name.startswith("error_")


def test_every_expected_file_has_an_input() -> None:
    inputs = {p.stem for p in CASES}
    orphans = [p.name for p in GOLDEN.glob("*.expected") if p.stem not in inputs]
    assert not orphans


# -- properties the golden files show, stated directly --------------------------------------


def shape(expr: ast.Expr) -> object:
    """An expression without positions, to compare trees."""
    if isinstance(expr, ast.Identifier):
        return expr.name
    if isinstance(expr, ast.Nil):
        return "nil"
    if isinstance(expr, ast.SelfRef):
        return "self"
    if isinstance(expr, ast.BinOp):
        return (expr.op, shape(expr.left), shape(expr.right))
    return (expr.function or "->", shape(expr.left), expr.right)


def expr_of(expression: str) -> ast.Expr:
    tree = parse(f"definition doc {{\n    permission p = {expression}\n}}\n")
    definition = tree.items[0]
    assert isinstance(definition, ast.Definition)
    permission = definition.members[0]
    assert isinstance(permission, ast.PermissionDecl)
    return permission.expr


@pytest.mark.parametrize(
    ("written", "meaning"),
    [
        pytest.param("a - b + c", "a - (b + c)", id="plus-binds-tighter-than-minus"),
        pytest.param("a + b & c", "(a + b) & c", id="plus-binds-tighter-than-and"),
        pytest.param("a - b & c", "a - (b & c)", id="and-binds-tighter-than-minus"),
        pytest.param("a + b + c", "(a + b) + c", id="union-left-assoc"),
        pytest.param("a & b & c", "(a & b) & c", id="intersection-left-assoc"),
        pytest.param("a - b - c", "(a - b) - c", id="exclusion-left-assoc"),
        pytest.param("a->b + c", "(a->b) + c", id="arrow-binds-tightest"),
        pytest.param("a.any(b) - c.all(d)", "(a.any(b)) - (c.all(d))", id="arrow-functions-bind-tightest"),
        pytest.param("((a))", "a", id="redundant-parens"),
    ],
)
def test_precedence(written: str, meaning: str) -> None:
    assert shape(expr_of(written)) == shape(expr_of(meaning))


def test_parenthesised_exclusion_on_the_right_differs() -> None:
    assert shape(expr_of("a - (b - c)")) != shape(expr_of("a - b - c"))


def test_nested_arrows_parse_and_are_left_for_the_compiler() -> None:
    assert shape(expr_of("a->b->c")) == ("->", ("->", "a", "b"), "c")


def test_binary_spans_include_parentheses_of_the_leftmost_operand() -> None:
    text = "(a + b) - c"
    expr = expr_of(text)
    assert isinstance(expr, ast.BinOp) and isinstance(expr.left, ast.BinOp)
    offset = len("definition doc {\n    permission p = ")
    assert (expr.start - offset, expr.end - offset) == (0, len(text))
    assert (expr.left.start - offset, expr.left.end - offset) == (1, 6)  # inside the parens


def test_syntax_error_has_position_and_source_name() -> None:
    with pytest.raises(SchemaSyntaxError) as caught:
        parse("definition doc {\n    relation r user\n}\n", "schema.zed")
    error = caught.value
    assert (error.line, error.column) == (2, 16)
    assert error.issues[0].source_name == "schema.zed"
    assert error.render().splitlines() == [
        "schema.zed:2:16: error: expected ':' after the relation name, found identifier `user`",
        "      relation r user",
        "                 ^",
    ]


def test_positions_count_code_points() -> None:
    with pytest.raises(SchemaSyntaxError) as caught:
        parse("caveat c(a string) {\n    a == '一级'\n}\ndefinition doc { relation r: user @ }\n")
    assert (caught.value.line, caught.value.column) == (4, 35)
