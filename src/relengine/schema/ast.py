"""Schema syntax tree: node dataclasses with code-point positions (start, end exclusive), and
the one walk the passes share (``operands``)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Node:
    start: int
    end: int


@dataclass(slots=True)
class UseFlag(Node):
    name: str
    comments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TypeRef(Node):
    """One allowed subject type: ``user``, ``user:*``, ``group#member``, ``user with c and expiration``."""

    type_name: str
    relation: str | None = None  # "..." is kept as None (the object itself)
    relation_start: int = -1
    wildcard: bool = False
    caveat: str | None = None
    caveat_start: int = -1
    expiration: bool = False


@dataclass(slots=True)
class Identifier(Node):
    name: str


@dataclass(slots=True)
class Nil(Node):
    pass


@dataclass(slots=True)
class SelfRef(Node):
    pass


@dataclass(slots=True)
class BinOp(Node):
    op: str  # "+", "&" or "-"
    left: "Expr"
    right: "Expr"


@dataclass(slots=True)
class Arrow(Node):
    """``left->right``, ``left.any(right)`` (function "any") or ``left.all(right)``."""

    left: "Expr"
    right: str
    right_start: int
    function: str | None = None


Expr = Identifier | Nil | SelfRef | BinOp | Arrow


def operands(expr: BinOp) -> list[Expr]:
    """The operands of the chain of ``expr.op`` that ``expr`` ends, left to right: ``a + b + c``,
    parsed as ``(a + b) + c``, gives ``[a, b, c]``. Found in a loop, not by recursion: a chain
    may be thousands long (see the parser)."""
    out: list[Expr] = []
    node: Expr = expr
    while isinstance(node, BinOp) and node.op == expr.op:
        out.append(node.right)
        node = node.left
    out.append(node)
    out.reverse()
    return out


@dataclass(slots=True)
class RelationDecl(Node):
    name: str
    name_start: int
    types: list[TypeRef]
    comments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PermissionDecl(Node):
    name: str
    name_start: int
    expr: Expr
    comments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class Definition(Node):
    name: str
    name_start: int
    members: list[RelationDecl | PermissionDecl]
    comments: list[str] = field(default_factory=list)
    trailing_comments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class TypeExpr(Node):
    """A caveat parameter type: ``int``, ``list<string>``, ``map<any>``."""

    name: str
    args: list["TypeExpr"] = field(default_factory=list)


@dataclass(slots=True)
class CaveatParam(Node):
    name: str
    type: TypeExpr


@dataclass(slots=True)
class CaveatDef(Node):
    name: str
    name_start: int
    params: list[CaveatParam]
    expression: str
    expression_start: int
    comments: list[str] = field(default_factory=list)


@dataclass(slots=True)
class File(Node):
    uses: list[UseFlag]
    items: list[Definition | CaveatDef]
    trailing_comments: list[str] = field(default_factory=list)
