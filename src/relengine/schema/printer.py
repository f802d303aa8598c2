"""Compiled schema -> canonical schema text (``relengine schema fmt``).

Definitions and caveats keep their source order, members theirs; comments kept on the schema
are printed before what they belong to, with a blank line where the source had blank lines
between them or after them. One blank line between members, tabs never.
"""

from __future__ import annotations

from .types import (
    CompiledSchema,
    ComputedUserset,
    Definition,
    Exclusion,
    Intersection,
    Nil,
    Permission,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)

_INDENT = "    "

# Binding strength: higher binds tighter. Arrows and names are atoms.
_LEVEL = {Exclusion: 1, Intersection: 2, Union: 3}


def print_schema(schema: CompiledSchema) -> str:
    blocks: list[str] = []
    if schema.use_flags:
        docs: dict[str, tuple[str, ...]] = {}
        for flag, doc in schema.use_docs:  # a flag used twice: the comments of both
            docs[flag] = docs.get(flag, ()) + doc
        blocks.append("\n".join(_comments(docs.get(flag, ()), "") + f"use {flag}" for flag in sorted(schema.use_flags)))
    for entry in schema.order:
        kind, _, name = entry.partition(":")
        if kind == "definition":
            blocks.append(_definition(schema.definitions[name]))
        else:
            caveat = schema.caveats[name]
            params = ", ".join(f"{p.name} {p.type}" for p in caveat.parameters)
            # Continuation lines keep their indentation relative to each other (see the compiler).
            body = "\n".join(_INDENT + line if line.strip() else "" for line in caveat.expression.split("\n"))
            blocks.append(_comments(caveat.doc, "") + f"caveat {name}({params}) {{\n{body}\n}}")
    if schema.trailing_comments:
        blocks.append("\n".join(schema.trailing_comments))
    return "\n\n".join(blocks) + "\n"


def _comments(doc: tuple[str, ...], indent: str) -> str:
    """The comments, one a line; an empty one is a blank line (blank lines in the source)."""
    if not doc:
        return ""
    lines: list[str] = []
    for comment in doc:
        lines.extend(indent + line if line else "" for line in comment.splitlines() or [""])
    return "\n".join(lines) + "\n"


def _definition(definition: Definition) -> str:
    head = _comments(definition.doc, "") + f"definition {definition.name} {{"
    if not definition.members and not definition.trailing_comments:
        return head + "}"
    lines: list[str] = []
    previous: bool | None = None
    for member in definition.members.values():
        if isinstance(member, Permission):
            text = f"permission {member.name} = {print_rewrite(member.rewrite)}"
        else:
            text = f"relation {member.name}: " + " | ".join(str(a) for a in member.allowed)
        # A blank line between relations and permissions, and before a commented member.
        if previous is not None and (previous != member.is_permission or member.doc):
            lines.append("")
        lines.append(_comments(member.doc, _INDENT) + _INDENT + text)
        previous = member.is_permission
    if definition.trailing_comments:
        lines.append(_comments(definition.trailing_comments, _INDENT).rstrip("\n"))
    return head + "\n" + "\n".join(lines) + "\n}"


def print_rewrite(rewrite: Rewrite) -> str:
    """A rewrite as expression text, parenthesised only where precedence requires it."""
    if isinstance(rewrite, ComputedUserset):
        return rewrite.relation
    if isinstance(rewrite, Nil):
        return "nil"
    if isinstance(rewrite, This):
        return "self"
    if isinstance(rewrite, TupleToUserset):
        if rewrite.function_syntax or rewrite.mode == "all":
            return f"{rewrite.tupleset}.{rewrite.mode}({rewrite.computed})"
        return f"{rewrite.tupleset}->{rewrite.computed}"
    if isinstance(rewrite, Exclusion):
        # Left-associative: the left side needs parentheses only if it binds looser (never),
        # the right side whenever it is itself an exclusion.
        left = _child(rewrite.base, 1, right=False)
        right = _child(rewrite.subtract, 1, right=True)
        return f"{left} - {right}"
    level = _LEVEL[type(rewrite)]
    op = " + " if isinstance(rewrite, Union) else " & "
    return op.join(_child(child, level, right=i > 0) for i, child in enumerate(rewrite.children))


def _child(rewrite: Rewrite, parent_level: int, *, right: bool) -> str:
    """Nested operators are always parenthesised (``(a + b) - c``), though precedence would
    allow less, so that nobody has to remember that ``+`` binds tighter than ``-``. Only a
    chain of exclusions on the left stays bare: ``a - b - c``."""
    text = print_rewrite(rewrite)
    level = _LEVEL.get(type(rewrite))
    if level is None or (level == parent_level == 1 and not right):
        return text
    return f"({text})"
