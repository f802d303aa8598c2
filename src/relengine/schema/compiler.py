"""AST -> compiled schema, after the semantic checks; the schema package's entry point."""

from __future__ import annotations

import textwrap

from ..errors import SchemaValidationError
from . import ast
from .parser import parse_source
from .source import Source
from .types import (
    AllowedType,
    Caveat,
    CaveatParameter,
    CompiledSchema,
    ComputedUserset,
    Definition,
    Exclusion,
    Intersection,
    Member,
    Nil,
    Permission,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)
from .validate import Checker


def compile_schema(text: str, source_name: str = "") -> CompiledSchema:
    """Compile schema text into a validated CompiledSchema.

    Raises SchemaSyntaxError or SchemaValidationError; each lists every issue found with its
    line and column. Lint warnings are kept on ``CompiledSchema.warnings``.
    """
    source = Source(text, source_name)
    tree = parse_source(source)
    checker = Checker(source, tree)
    checker.run()
    if checker.errors:
        checker.errors.sort(key=lambda issue: (issue.line, issue.column))
        raise SchemaValidationError(checker.errors)
    return _build(source, tree, tuple(checker.warnings))


def _build(source: Source, tree: ast.File, warnings: tuple) -> CompiledSchema:  # type: ignore[type-arg]
    definitions: dict[str, Definition] = {}
    caveats: dict[str, Caveat] = {}
    order: list[str] = []
    for item in tree.items:
        line, column = source.position(item.name_start)
        if isinstance(item, ast.Definition):
            members: dict[str, Member] = {}
            for member in item.members:
                mline, mcol = source.position(member.name_start)
                if isinstance(member, ast.RelationDecl):
                    members[member.name] = Relation(
                        member.name,
                        tuple(_allowed(ref) for ref in member.types),
                        _doc(member.comments, source.text, member.start),
                        mline,
                        mcol,
                    )
                else:
                    members[member.name] = Permission(
                        member.name, _rewrite(member.expr), _doc(member.comments, source.text, member.start), mline, mcol
                    )
            definitions[item.name] = Definition(
                item.name, members, _doc(item.comments, source.text, item.start),
                _doc(item.trailing_comments, source.text, item.end, after_last=False), line, column,
            )
            order.append(f"definition:{item.name}")
        else:
            caveats[item.name] = Caveat(
                item.name,
                tuple(CaveatParameter(p.name, _type_text(p.type)) for p in item.params),
                _caveat_expression(item.expression),
                _doc(item.comments, source.text, item.start),
                line,
                column,
            )
            order.append(f"caveat:{item.name}")
    return CompiledSchema(
        definitions=definitions,
        caveats=caveats,
        use_flags=frozenset(u.name for u in tree.uses),
        use_docs=tuple((u.name, _doc(u.comments, source.text, u.start)) for u in tree.uses if u.comments),
        order=tuple(order),
        trailing_comments=_doc(tree.trailing_comments, source.text, len(source.text), after_last=False),
        warnings=warnings,
        source_text=source.text,
    )


def _caveat_expression(text: str) -> str:
    """The expression (already stripped) with its continuation lines dedented together, so that
    printing it at any indentation and compiling it again gives the same text."""
    first, newline, rest = text.replace("\r\n", "\n").partition("\n")
    return first + newline + textwrap.dedent(rest)


def _doc(comments: list[str], text: str, before: int, *, after_last: bool = True) -> tuple[str, ...]:
    """The comments that end before offset ``before`` of ``text``, normalised, with an empty
    string wherever the source has blank lines between two of them (or, with ``after_last``,
    between the last and what they belong to): a file's header comment then stays apart from
    the first definition's own in ``schema fmt``. Only whitespace lies between the comments,
    so each is the nearest occurrence of its text before the next."""
    out: list[str] = []
    end = before
    for position, comment in enumerate(reversed(comments)):
        start = text.rfind(comment, 0, end)
        if (position or after_last) and text.count("\n", start + len(comment), end) >= 2:
            out.append("")
        out.append(_normalise_comment(comment))
        end = start
    return tuple(reversed(out))


def _normalise_comment(comment: str) -> str:
    if comment.startswith("//"):
        return comment.rstrip()
    lines = [line.rstrip() for line in comment.splitlines()]
    if len(lines) == 1:
        return lines[0]
    # Re-indent continuation lines of block comments to " * " style alignment.
    out = [lines[0]]
    for line in lines[1:]:
        stripped = line.strip()
        out.append(" " + stripped if stripped.startswith("*") else "   " + stripped if stripped else "")
    return "\n".join(out)


def _allowed(ref: ast.TypeRef) -> AllowedType:
    return AllowedType(ref.type_name, ref.relation, ref.wildcard, ref.caveat, ref.expiration)


def _type_text(node: ast.TypeExpr) -> str:
    if not node.args:
        return node.name
    return f"{node.name}<{', '.join(_type_text(a) for a in node.args)}>"


def _rewrite(expr: ast.Expr) -> Rewrite:
    if isinstance(expr, ast.Identifier):
        return ComputedUserset(expr.name)
    if isinstance(expr, ast.Nil):
        return Nil()
    if isinstance(expr, ast.SelfRef):
        return This()
    if isinstance(expr, ast.Arrow):
        assert isinstance(expr.left, ast.Identifier), "validated: arrow left side is a relation"
        return TupleToUserset(
            expr.left.name, expr.right, expr.function or "any", expr.function is not None
        )
    assert isinstance(expr, ast.BinOp)
    rewrites = [_rewrite(operand) for operand in ast.operands(expr)]
    if expr.op == "-":
        out = rewrites[0]
        for subtract in rewrites[1:]:
            out = Exclusion(out, subtract)
        return out
    cls = Union if expr.op == "+" else Intersection
    children: list[Rewrite] = []
    for rewrite in rewrites:
        # a + b + c is one union of three; a parenthesised (b + c) is the same set.
        children.extend(rewrite.children if isinstance(rewrite, cls) else (rewrite,))
    return cls(tuple(children))
