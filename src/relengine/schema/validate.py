"""Semantic checks of a schema: names, references, arrows, duplicates, cycles; lint warnings.

Works on the AST (for positions) with the table of all definitions and caveats. Every problem
becomes a SchemaIssue with line and column; errors stop compilation, warnings do not.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

from ..errors import SchemaIssue
from ..model import is_valid_relation_name, is_valid_type_name
from . import ast
from .source import Source

CAVEAT_TYPES = frozenset(
    {"any", "bool", "string", "int", "uint", "double", "bytes", "duration", "timestamp", "ipaddress"}
)
CAVEAT_GENERIC_TYPES = {"list": 1, "map": 1}

_TYPE_NAME_RULE = (
    "lowercase letters, digits and '_', 3 to 64 characters, starting with a letter and not "
    "ending with '_'; a prefix like `tenant/` is allowed"
)
_RELATION_NAME_RULE = (
    "lowercase letters, digits and '_', 3 to 64 characters, starting with a letter and not "
    "ending with '_'"
)


@dataclass
class Checker:
    source: Source
    file: ast.File
    errors: list[SchemaIssue] = field(default_factory=list)
    warnings: list[SchemaIssue] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.definitions: dict[str, ast.Definition] = {}
        self.caveats: dict[str, ast.CaveatDef] = {}
        self.flags = {u.name for u in self.file.uses}

    def error(self, message: str, offset: int) -> None:
        self.errors.append(self.source.issue(message, offset))

    def warn(self, message: str, offset: int, code: str) -> None:
        self.warnings.append(self.source.issue(message, offset, severity="warning", code=code))

    # -- entry -----------------------------------------------------------------------
    def run(self) -> None:
        self.collect_names()
        for item in self.file.items:
            if isinstance(item, ast.Definition):
                self.check_definition(item)
            else:
                self.check_caveat(item)

    def collect_names(self) -> None:
        for item in self.file.items:
            kind = "definition" if isinstance(item, ast.Definition) else "caveat"
            if not is_valid_type_name(item.name):
                self.error(f"invalid {kind} name `{item.name}`: use {_TYPE_NAME_RULE}", item.name_start)
            if item.name in self.definitions or item.name in self.caveats:
                self.error(
                    f"found name reused between multiple definitions and/or caveats: `{item.name}`",
                    item.name_start,
                )
                continue
            if isinstance(item, ast.Definition):
                self.definitions[item.name] = item
            else:
                self.caveats[item.name] = item

    # -- definitions -----------------------------------------------------------------
    def members_of(self, definition: ast.Definition) -> dict[str, ast.RelationDecl | ast.PermissionDecl]:
        members: dict[str, ast.RelationDecl | ast.PermissionDecl] = {}
        for member in definition.members:
            members.setdefault(member.name, member)
        return members

    def check_definition(self, definition: ast.Definition) -> None:
        seen: set[str] = set()
        for member in definition.members:
            kind = "relation" if isinstance(member, ast.RelationDecl) else "permission"
            if not is_valid_relation_name(member.name):
                self.error(f"invalid {kind} name `{member.name}`: use {_RELATION_NAME_RULE}", member.name_start)
            if member.name in seen:
                self.error(
                    f"found duplicate relation/permission name `{member.name}` under definition "
                    f"`{definition.name}` (relations and permissions share one namespace)",
                    member.name_start,
                )
            seen.add(member.name)
        members = self.members_of(definition)
        for member in definition.members:
            if isinstance(member, ast.RelationDecl):
                self.check_relation(definition, member)
            else:
                self.check_expr(definition, members, member, member.expr)
        self.check_cycles(definition, members)

    def check_relation(self, definition: ast.Definition, relation: ast.RelationDecl) -> None:
        seen: set[tuple[str, str | None, bool, str | None, bool]] = set()
        for ref in relation.types:
            key = (ref.type_name, ref.relation, ref.wildcard, ref.caveat, ref.expiration)
            if key in seen:
                self.error(
                    f"found duplicate allowed subject type `{_type_ref_text(ref)}` on relation "
                    f"`{relation.name}` of definition `{definition.name}`",
                    ref.start,
                )
            seen.add(key)
            target = self.definitions.get(ref.type_name)
            if target is None:
                self.error(
                    f"object definition `{ref.type_name}` not found (allowed type of relation "
                    f"`{relation.name}` in definition `{definition.name}`)",
                    ref.start,
                )
            elif ref.relation is not None and ref.relation not in self.members_of(target):
                self.error(
                    f"relation/permission `{ref.relation}` not found under definition "
                    f"`{ref.type_name}` (allowed type `{ref.type_name}#{ref.relation}` of relation "
                    f"`{relation.name}`)",
                    ref.relation_start,
                )
            if ref.caveat is not None and ref.caveat not in self.caveats:
                hint = ""
                if ref.caveat == "expiration" and "expiration" not in self.flags:
                    hint = "; to allow expiring relationships, add `use expiration` at the top of the schema"
                self.error(f"caveat `{ref.caveat}` not found{hint}", ref.caveat_start)

    def check_expr(
        self,
        definition: ast.Definition,
        members: dict[str, ast.RelationDecl | ast.PermissionDecl],
        permission: ast.PermissionDecl,
        expr: ast.Expr,
    ) -> None:
        if isinstance(expr, ast.BinOp):
            for operand in ast.operands(expr):
                self.check_expr(definition, members, permission, operand)
        elif isinstance(expr, ast.Identifier):
            if expr.name not in members:
                hint = ""
                if expr.name == "self" and "self" not in self.flags:
                    hint = "; to refer to the resource itself, add `use self` at the top of the schema"
                self.error(
                    f"relation/permission `{expr.name}` not found under definition "
                    f"`{definition.name}`{hint}",
                    expr.start,
                )
            elif expr.name == permission.name:
                self.warn(
                    f"permission `{permission.name}` references itself, which can only add "
                    "recursion and no subjects",
                    expr.start,
                    "self-reference",
                )
        elif isinstance(expr, ast.Arrow):
            self.check_arrow(definition, members, permission, expr)

    def check_arrow(
        self,
        definition: ast.Definition,
        members: dict[str, ast.RelationDecl | ast.PermissionDecl],
        permission: ast.PermissionDecl,
        arrow: ast.Arrow,
    ) -> None:
        text = self.source.text[arrow.start : arrow.end]
        if isinstance(arrow.left, ast.Arrow):
            inner = arrow.left
            first = self.source.text[inner.left.start : inner.left.end]
            self.error(
                f"nested arrows are not supported: `{text}` under permission `{permission.name}`. "
                f"Workaround: on each subject type of `{first}`, define a permission such as "
                f"`permission {inner.right}_{arrow.right} = {inner.right}->{arrow.right}`, then "
                f"use `{first}->{inner.right}_{arrow.right}` here",
                arrow.start,
            )
            return
        if not isinstance(arrow.left, ast.Identifier):
            self.error(
                f"the left side of an arrow must be a relation name, in `{text}` under permission "
                f"`{permission.name}`",
                arrow.left.start,
            )
            return
        name = arrow.left.name
        target = members.get(name)
        if target is None:
            self.error(
                f"relation `{name}` not found under definition `{definition.name}` (left side of "
                f"arrow `{text}`)",
                arrow.left.start,
            )
            return
        if isinstance(target, ast.PermissionDecl):
            self.error(
                f"under permission `{permission.name}`: permissions cannot be used on the left "
                f"hand side of an arrow (found `{name}` in `{text}`); use a relation",
                arrow.left.start,
            )
            return
        for ref in target.types:
            if ref.wildcard:
                self.error(
                    f"for arrow `{text}` under permission `{permission.name}`: relation `{name}` "
                    f"includes wildcard type `{ref.type_name}:*`; wildcard relations cannot be "
                    "used on the left side of arrows",
                    arrow.left.start,
                )
                return
        subject_types = [self.definitions[r.type_name] for r in target.types if r.type_name in self.definitions]
        if subject_types and not any(arrow.right in self.members_of(d) for d in subject_types):
            names = ", ".join(sorted({d.name for d in subject_types}))
            self.warn(
                f"arrow `{text}` under permission `{permission.name}`: no subject type of "
                f"relation `{name}` ({names}) has a relation or permission `{arrow.right}`, so "
                "it never grants anything",
                arrow.right_start,
                "arrow-target-missing",
            )

    def check_cycles(
        self, definition: ast.Definition, members: dict[str, ast.RelationDecl | ast.PermissionDecl]
    ) -> None:
        """Permissions that reach each other only through computed references loop forever."""
        graph: dict[str, set[str]] = {}
        for member in definition.members:
            if isinstance(member, ast.PermissionDecl):
                refs: set[str] = set()
                _computed_refs(member.expr, refs)
                graph[member.name] = {r for r in refs if isinstance(members.get(r), ast.PermissionDecl)}
        for component in _strongly_connected(graph):
            if len(component) < 2:
                continue
            ordered = [m.name for m in definition.members if m.name in component]
            first = members[ordered[0]]
            cycle = " -> ".join(ordered + [ordered[0]])
            self.error(
                f"under definition `{definition.name}`, permissions {', '.join(f'`{n}`' for n in ordered)} "
                f"only reach each other in a cycle ({cycle}), so none of them can be computed",
                first.name_start,
            )

    # -- caveats ---------------------------------------------------------------------
    def check_caveat(self, caveat: ast.CaveatDef) -> None:
        errors_before = len(self.errors)
        if not caveat.params:
            self.error(f"caveat `{caveat.name}` must have at least one parameter", caveat.name_start)
        seen: set[str] = set()
        for param in caveat.params:
            if param.name in seen:
                self.error(f"duplicate parameter `{param.name}` in caveat `{caveat.name}`", param.start)
            seen.add(param.name)
            self.check_caveat_type(caveat, param.type)
        if len(self.errors) > errors_before:
            return
        from ..caveats import typecheck_caveat  # the CEL side: expression syntax and types

        params = [(p.name, _type_text(p.type)) for p in caveat.params]
        for message, offset in typecheck_caveat(caveat.name, params, caveat.expression):
            self.error(message, caveat.name_start if offset < 0 else caveat.expression_start + offset)

    def check_caveat_type(self, caveat: ast.CaveatDef, node: ast.TypeExpr) -> None:
        arity = CAVEAT_GENERIC_TYPES.get(node.name)
        if arity is None and node.name not in CAVEAT_TYPES:
            known = ", ".join(sorted(CAVEAT_TYPES | {"list<T>", "map<T>"}))
            self.error(
                f"unknown parameter type `{node.name}` in caveat `{caveat.name}`; known types: {known}",
                node.start,
            )
            return
        expected = arity or 0
        if len(node.args) != expected:
            self.error(
                f"type `{node.name}` in caveat `{caveat.name}` takes {expected} type argument(s), "
                f"found {len(node.args)}",
                node.start,
            )
        for arg in node.args:
            self.check_caveat_type(caveat, arg)


def _type_text(node: ast.TypeExpr) -> str:
    if not node.args:
        return node.name
    return f"{node.name}<{', '.join(_type_text(a) for a in node.args)}>"


def _type_ref_text(ref: ast.TypeRef) -> str:
    if ref.wildcard:
        return f"{ref.type_name}:*"
    if ref.relation is not None:
        return f"{ref.type_name}#{ref.relation}"
    return ref.type_name


def _computed_refs(expr: ast.Expr, out: set[str]) -> None:
    if isinstance(expr, ast.Identifier):
        out.add(expr.name)
    elif isinstance(expr, ast.BinOp):
        for operand in ast.operands(expr):
            _computed_refs(operand, out)


def _strongly_connected(graph: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, with a stack of its own: a chain of thousands of permissions, each
    naming the next, is a valid schema, and a recursion per permission would exhaust Python's."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[set[str]] = []

    def enter(node: str) -> tuple[str, Iterator[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        return node, iter(graph.get(node, ()))

    for root in graph:
        if root in index:
            continue
        path = [enter(root)]  # the nodes being visited, each with its successors left
        while path:
            node, successors = path[-1]
            for succ in successors:
                if succ not in index:
                    path.append(enter(succ))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                path.pop()
                if path:
                    parent = path[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component: set[str] = set()
                    while True:
                        item = stack.pop()
                        on_stack.discard(item)
                        component.add(item)
                        if item == node:
                            break
                    result.append(component)
    return result
