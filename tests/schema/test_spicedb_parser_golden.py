"""SpiceDB's own parser golden files (../shared/conformance/spicedb/parser) against our parser.

For each ``NAME.zed`` there, SpiceDB's ``NAME.zed.expected`` holds the tree its parser prints
(``pkg/schemadsl/parser/parser_test.go``). If that tree has no ``NodeTypeError``, our parser must
accept the file, and our AST, converted into SpiceDB's node shapes and printed the way SpiceDB
prints them, must equal it line for line: node types, names, properties, child order, and the
``start-rune``/``end-rune`` positions too.

Position conventions, which our AST follows (the parser was adjusted where needed):

* SpiceDB's "rune" offsets are UTF-8 byte offsets (its lexer advances by bytes), so our
  code-point offsets are converted to bytes; ``end-rune`` is inclusive.
* A binary or arrow expression spans from the first token of its leftmost operand (an opening
  ``(`` included) to the last token consumed (a closing ``)`` included); a relation or permission
  ends at its last token, before any ``;``.
* Our file node spans the whole text; SpiceDB's ends at its last token (a final newline counts),
  which is the same for every file here.

The trees are compared first without offsets (a structural difference fails with that message),
then with them.

Derived here rather than stored in our AST: the ``TypeReference`` wrapper around a relation's
allowed types (first type to last), the ``TraitReference`` of ``with ... expiration`` (the last
word of its type), ``#...`` (we store it as "no relation"; the text tells the two apart), and
one SpiceDB quirk: a caveat expression whose last token is a word, ``)`` or ``}`` ends with the
newline after it (the lexer's synthetic semicolon), which then also ends its text.

If the expected tree has a ``NodeTypeError``, our parser must raise SchemaSyntaxError, on the
line of one of the errors SpiceDB reports, or on the line ``OUR_ERROR_LINE`` gives, with the
reason, where we point elsewhere on purpose. Files using syntax we deliberately do not support
yet are listed, with the reason, in ``UNSUPPORTED`` and skipped.
"""

from __future__ import annotations

import pathlib
import re
from dataclasses import dataclass, field

import pytest

from relengine.errors import SchemaSyntaxError
from relengine.schema import ast
from relengine.schema.parser import parse

from ..spicedb_data import SPICEDB_CONFORMANCE, conformance_files, conformance_params

GOLDEN = SPICEDB_CONFORMANCE / "parser"
FILES = conformance_files("parser", "*.zed")

# The one place that lists what is skipped, and why.
_IMPORT = "`use import` / `import \"...\"` (schema imports) is not supported by relengine yet"
_PARTIAL = "`use partial` / `partial` blocks and `...partial` references are not supported by relengine yet"
_ANNOTATION = "permission type annotations (`permission view: user = ...`) are not supported by relengine yet"
UNSUPPORTED: dict[str, str] = {
    "localimport.zed": _IMPORT,
    "localimport_import_path_with_keyword.zed": _IMPORT,
    "localimport_with_mismatched_quotes.zed": _IMPORT,
    "localimport_with_quotes_in_quotes.zed": _IMPORT,
    "localimport_with_singlequotes.zed": _IMPORT,
    "localimport_with_unterminated_string.zed": _IMPORT,
    "partials.zed": _PARTIAL,
    "partials_with_malformed_partial_block.zed": _PARTIAL,
    "partials_with_malformed_partial_reference.zed": _PARTIAL,
    "partials_with_malformed_reference_splat.zed": _PARTIAL,
    "permission_edge_cases.zed": _ANNOTATION,
    "permission_mixed_annotations.zed": _ANNOTATION,
    "permission_mixed_single_multiple.zed": _ANNOTATION,
    "permission_multiple_types.zed": _ANNOTATION,
    "permission_type_annotation.zed": _ANNOTATION,
    "permission_type_annotation_double_colon.zed": _ANNOTATION,
    "permission_type_annotation_empty_after_colon.zed": _ANNOTATION,
    "permission_type_annotation_just_pipe.zed": _ANNOTATION,
    "permission_type_annotation_newline_after_colon.zed": _ANNOTATION,
    "permission_type_annotation_pipe_no_type_before.zed": _ANNOTATION,
    "permission_type_annotation_trailing_pipe_no_type_after.zed": _ANNOTATION,
    "invalidcaveatexpr.zed": "the parser keeps caveat bodies as text; the compiler's CEL check "
    "rejects this one (test_invalid_caveat_expression_is_rejected_by_the_compiler)",
}

# Where our error's line is not one of SpiceDB's error lines, the line we report, and why.
OUR_ERROR_LINE: dict[str, tuple[int, str]] = {
    "broken.zed": (3, "an unclosed definition: we report the end of the file; SpiceDB reports offset 0"),
    "unclosedcaveat.zed": (3, "an unclosed caveat body: we point at its `{`; SpiceDB at the end of the file"),
}


def _param(path: pathlib.Path) -> object:
    marks = [pytest.mark.skip(reason=UNSUPPORTED[path.name])] if path.name in UNSUPPORTED else []
    return pytest.param(path, id=path.stem, marks=marks)


# -- SpiceDB's tree shape -------------------------------------------------------------------


@dataclass
class Node:
    kind: str
    props: dict[str, object] = field(default_factory=dict)
    children: dict[str, list["Node"]] = field(default_factory=dict)

    def add(self, predicate: str, *nodes: "Node") -> "Node":
        if nodes:
            self.children.setdefault(predicate, []).extend(nodes)
        return self


def render(node: Node, indent: int = 0) -> str:
    """The tree as ``getParseTree`` in SpiceDB's parser_test.go prints it."""
    pad = " " * indent
    out = [f"{pad}{node.kind}\n"]
    for key in sorted(node.props):
        out.append(f"{pad}  {key} = {node.props[key]}\n")
    for predicate in sorted(node.children):
        out.append(f"{pad}  {predicate} =>\n")
        out.extend(render(child, indent + 4) for child in node.children[predicate])
    return "".join(out)


_SYNTHETIC_SEMICOLON_AFTER = re.compile(r"[\w)}*]\Z")


class ToSpiceDB:
    """Our AST -> SpiceDB's parse tree, positions as UTF-8 byte offsets with inclusive ends."""

    def __init__(self, text: str, source_name: str) -> None:
        self.text = text
        self.source_name = source_name
        self.byte = [0]
        for ch in text:
            self.byte.append(self.byte[-1] + len(ch.encode("utf-8")))

    def node(self, kind: str, start: int, end: int, **props: object) -> Node:
        """``end`` is exclusive, in code points, as in our AST."""
        props = {key.replace("_", "-"): value for key, value in props.items()}
        props["input-source"] = self.source_name
        props["start-rune"] = self.byte[start]
        props["end-rune"] = self.byte[end] - 1
        return Node(kind, props)

    @staticmethod
    def comments(comments: list[str]) -> list[Node]:
        return [Node("NodeTypeComment", {"comment-value": c}) for c in comments]

    def file(self, tree: ast.File) -> Node:
        root = self.node("NodeTypeFile", tree.start, tree.end)
        root.add("child-node", *(self.use(u) for u in tree.uses))
        for item in tree.items:
            if isinstance(item, ast.Definition):
                root.add("child-node", self.definition(item))
            else:
                root.add("child-node", self.caveat(item))
        return root

    def use(self, flag: ast.UseFlag) -> Node:
        return self.node("NodeTypeUseFlag", flag.start, flag.end, use_flag_name=flag.name)

    def definition(self, item: ast.Definition) -> Node:
        node = self.node("NodeTypeDefinition", item.start, item.end, definition_name=item.name)
        node.add("child-node", *self.comments(item.comments))
        for member in item.members:
            if isinstance(member, ast.RelationDecl):
                node.add("child-node", self.relation(member))
            else:
                node.add("child-node", self.permission(member))
        return node

    def relation(self, member: ast.RelationDecl) -> Node:
        node = self.node("NodeTypeRelation", member.start, member.end, relation_name=member.name)
        node.add("child-node", *self.comments(member.comments))
        types = self.node("NodeTypeTypeReference", member.types[0].start, member.types[-1].end)
        types.add("type-ref-type", *(self.type_ref(ref) for ref in member.types))
        return node.add("allowed-types", types)

    def type_ref(self, ref: ast.TypeRef) -> Node:
        node = self.node("NodeTypeSpecificTypeReference", ref.start, ref.end, type_name=ref.type_name)
        if ref.relation is not None:
            node.props["relation-name"] = ref.relation
        elif re.match(r"\s*#\s*\.\.\.", self.text[ref.start + len(ref.type_name) : ref.end]):
            node.props["relation-name"] = "..."
        if ref.wildcard:
            node.props["type-wildcard"] = "true"
        if ref.caveat is not None:
            end = ref.caveat_start + len(ref.caveat)
            node.add("caveat", self.node("NodeTypeCaveatReference", ref.caveat_start, end, caveat_name=ref.caveat))
        if ref.expiration:
            assert self.text[ref.end - len("expiration") : ref.end] == "expiration"
            start = ref.end - len("expiration")
            node.add("trait", self.node("NodeTypeTraitReference", start, ref.end, trait_name="expiration"))
        return node

    def permission(self, member: ast.PermissionDecl) -> Node:
        node = self.node("NodeTypePermission", member.start, member.end, relation_name=member.name)
        node.add("child-node", *self.comments(member.comments))
        return node.add("compute-expression", self.expr(member.expr))

    _BINARY = {
        "+": "NodeTypeUnionExpression",
        "&": "NodeTypeIntersectExpression",
        "-": "NodeTypeExclusionExpression",
    }

    def expr(self, expr: ast.Expr) -> Node:
        if isinstance(expr, ast.Identifier):
            return self.node("NodeTypeIdentifier", expr.start, expr.end, identifier_value=expr.name)
        if isinstance(expr, ast.Nil):
            return self.node("NodeTypeNilExpression", expr.start, expr.end)
        if isinstance(expr, ast.SelfRef):
            return self.node("NodeTypeSelfExpression", expr.start, expr.end)
        if isinstance(expr, ast.BinOp):
            node = self.node(self._BINARY[expr.op], expr.start, expr.end)
            return node.add("left-expr", self.expr(expr.left)).add("right-expr", self.expr(expr.right))
        assert isinstance(expr, ast.Arrow)
        node = self.node("NodeTypeArrowExpression", expr.start, expr.end)
        if expr.function is not None:
            node.props["function-name"] = expr.function
        right = self.node(
            "NodeTypeIdentifier", expr.right_start, expr.right_start + len(expr.right), identifier_value=expr.right
        )
        return node.add("left-expr", self.expr(expr.left)).add("right-expr", right)

    def caveat(self, item: ast.CaveatDef) -> Node:
        node = self.node("NodeTypeCaveatDefinition", item.start, item.end, caveat_definition_name=item.name)
        node.add("child-node", *self.comments(item.comments))
        for param in item.params:
            p = self.node("NodeTypeCaveatParameter", param.start, param.end, caveat_parameter_name=param.name)
            node.add("parameters", p.add("caveat-parameter-type", self.caveat_type(param.type)))
        start = item.expression_start
        end = start + len(item.expression)
        rest = self.text[end:]
        newline = len(rest) - len(rest.lstrip(" \t"))
        if _SYNTHETIC_SEMICOLON_AFTER.search(item.expression) and rest[newline : newline + 1] in ("\n", "\r"):
            end += newline + 1
        expression = self.node(
            "NodeTypeCaveatExpression", start, end, caveat_expression_expressionstr=self.text[start:end]
        )
        return node.add("caveat-definition-expression", expression)

    def caveat_type(self, node: ast.TypeExpr) -> Node:
        out = self.node("NodeTypeCaveatTypeReference", node.start, node.end, type_name=node.name)
        return out.add("child-types", *(self.caveat_type(arg) for arg in node.args))


# -- the tests ------------------------------------------------------------------------------


def _error_lines(expected: str, raw: bytes) -> set[int]:
    """1-based lines of the byte offsets at which SpiceDB's error nodes start."""
    lines: set[int] = set()
    rows = expected.splitlines()
    for i, row in enumerate(rows):
        if row.strip() != "NodeTypeError":
            continue
        indent = len(row) - len(row.lstrip())
        for prop in rows[i + 1 :]:
            if prop.strip() and len(prop) - len(prop.lstrip()) <= indent:
                break  # a value may hold a newline (a blank row); the node ends at a shallower row
            if prop.strip().startswith("start-rune = "):
                offset = max(0, int(prop.split("=")[1]))
                lines.add(raw[:offset].count(b"\n") + 1)
    return lines


@pytest.mark.conformance
def test_golden_files_are_present() -> None:
    assert len(FILES) == 65, f"expected SpiceDB's 65 parser golden files in {GOLDEN}"
    names = {p.name for p in FILES}
    assert set(UNSUPPORTED) <= names, "UNSUPPORTED names a file that is not there"
    assert set(OUR_ERROR_LINE) <= names, "OUR_ERROR_LINE names a file that is not there"


@pytest.mark.conformance
@pytest.mark.parametrize("path", conformance_params(FILES, _param))
def test_spicedb_parser_golden(path: pathlib.Path) -> None:
    raw = path.read_bytes()
    text = raw.decode("utf-8")
    expected = path.with_name(path.name + ".expected").read_text(encoding="utf-8")
    source_name = re.search(r"^\s*input-source = (.*)$", expected, re.M).group(1)  # type: ignore[union-attr]
    if "NodeTypeError" in expected:
        with pytest.raises(SchemaSyntaxError) as caught:
            parse(text, path.name)
        lines = _error_lines(expected, raw)
        if path.name in OUR_ERROR_LINE:
            lines = {OUR_ERROR_LINE[path.name][0]}
        assert caught.value.line in lines, (
            f"our error is on line {caught.value.line}, SpiceDB's on {sorted(lines)}:\n{caught.value.render()}"
        )
        return
    tree = parse(text, path.name)
    found = render(ToSpiceDB(text, source_name).file(tree)).strip()
    expected = expected.strip()
    assert _without_offsets(found) == _without_offsets(expected), "the trees differ (offsets aside)"
    assert found == expected, "the trees agree but their start-rune/end-rune offsets differ"


def _without_offsets(tree: str) -> str:
    offsets = ("start-rune =", "end-rune =")
    return "\n".join(row for row in tree.splitlines() if not row.lstrip().startswith(offsets))


def test_render_matches_spicedb_layout() -> None:
    """The printer itself: properties sorted, predicates sorted, children 4 spaces in."""
    leaf = Node("NodeTypeIdentifier", {"identifier-value": "a", "end-rune": 0})
    root = Node("NodeTypeFile", {"start-rune": 0}).add("right-expr", leaf).add("left-expr", leaf)
    assert render(root) == (
        "NodeTypeFile\n  start-rune = 0\n  left-expr =>\n    NodeTypeIdentifier\n      end-rune = 0\n"
        "      identifier-value = a\n  right-expr =>\n    NodeTypeIdentifier\n      end-rune = 0\n"
        "      identifier-value = a\n"
    )


@pytest.mark.conformance
def test_invalid_caveat_expression_is_rejected_by_the_compiler() -> None:
    from relengine.errors import SchemaValidationError
    from relengine.schema import compile_schema

    with pytest.raises(SchemaValidationError) as info:
        compile_schema((GOLDEN / "invalidcaveatexpr.zed").read_text())
    assert (info.value.line, info.value.column) == (4, 23)
