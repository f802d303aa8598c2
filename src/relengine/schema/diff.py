"""What changed between two compiled schemas: the structural changes, and the members whose
answers may change because of them.

``diff_schemas`` lists the changes in SpiceDB's DiffSchema order (definitions added, removed,
caveats added, removed, then each changed definition by name, then each changed caveat by
name; names within one kind of change sorted); ``wire.spicedb.reflect`` turns them into
DiffSchema's messages and ``relengine schema diff`` prints them. ``changed_members`` is what the
impact analysis (``engine.impact``) starts from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .types import (
    AllowedType,
    Caveat,
    CaveatParameter,
    CompiledSchema,
    ComputedUserset,
    Definition,
    Exclusion,
    Intersection,
    Permission,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
    leaves,
)

Item = Definition | Relation | Permission | Caveat | AllowedType | CaveatParameter
MemberRef = tuple[str, str]  # (definition, relation or permission)


@dataclass(frozen=True, slots=True)
class SchemaChange:
    """One structural change. ``kind`` is the name of SpiceDB's ``ReflectionSchemaDiff`` field
    (``permission_expr_changed``...); ``owner`` the definition or caveat it is in (or that was
    added or removed); ``name`` the member, caveat parameter or subject type (``""`` for a
    change of the owner itself); ``before`` / ``after`` the items on each side (None where
    there is none)."""

    kind: str
    owner: str
    name: str = ""
    before: Item | None = None
    after: Item | None = None

    def describe(self) -> str:
        """One line for people: ``permission container#read changed: reader + edit -> reader``."""
        what = self.kind.replace("_", " ")
        where = f"{self.owner}#{self.name}" if self.name else self.owner
        if self.kind in ("relation_subject_type_added", "relation_subject_type_removed"):
            return f"{what}: {where}: {self.after if self.after is not None else self.before}"
        if self.kind == "permission_expr_changed":
            assert isinstance(self.before, Permission) and isinstance(self.after, Permission)
            return f"{what}: {where}: {rewrite_text(self.before.rewrite)} -> {rewrite_text(self.after.rewrite)}"
        if self.kind == "caveat_parameter_type_changed":
            assert isinstance(self.before, CaveatParameter) and isinstance(self.after, CaveatParameter)
            return f"{what}: {where}: {self.before.type} -> {self.after.type}"
        return f"{what}: {where}"


def comment(doc: Sequence[str]) -> str:
    """The comments kept on a schema item as SpiceDB reports them: each line trimmed, the
    comments joined by newlines (relengine's blank-line markers dropped)."""
    return "\n".join("\n".join(line.strip() for line in c.splitlines()) for c in doc if c)


def rewrite_text(node: Rewrite) -> str:
    """A rewrite tree as schema text, every nested operator in parentheses."""
    if isinstance(node, ComputedUserset):
        return node.relation
    if isinstance(node, TupleToUserset):
        return f"{node.tupleset}.all({node.computed})" if node.mode == "all" else f"{node.tupleset}->{node.computed}"
    if isinstance(node, This):
        return "self"
    if isinstance(node, (Union, Intersection)):
        op = " + " if isinstance(node, Union) else " & "
        return op.join(_nested(c) for c in node.children)
    if isinstance(node, Exclusion):
        return f"{_nested(node.base)} - {_nested(node.subtract)}"
    return "nil"


def _nested(node: Rewrite) -> str:
    text = rewrite_text(node)
    return f"({text})" if isinstance(node, (Union, Intersection, Exclusion)) else text


def diff_schemas(old: CompiledSchema, new: CompiledSchema) -> list[SchemaChange]:
    """The changes from ``old`` to ``new``, in SpiceDB's DiffSchema order."""
    C = SchemaChange
    old_defs, new_defs = old.definitions, new.definitions
    old_cavs, new_cavs = old.caveats, new.caveats
    out: list[SchemaChange] = []
    out += [C("definition_added", n, after=new_defs[n]) for n in sorted(set(new_defs) - set(old_defs))]
    out += [C("definition_removed", n, before=old_defs[n]) for n in sorted(set(old_defs) - set(new_defs))]
    out += [C("caveat_added", n, after=new_cavs[n]) for n in sorted(set(new_cavs) - set(old_cavs))]
    out += [C("caveat_removed", n, before=old_cavs[n]) for n in sorted(set(old_cavs) - set(new_cavs))]
    for name in sorted(set(old_defs) & set(new_defs)):
        out += _definition_diff(old_defs[name], new_defs[name])
    for name in sorted(set(old_cavs) & set(new_cavs)):
        out += _caveat_diff(old_cavs[name], new_cavs[name])
    return out


def _split(item: Definition) -> tuple[dict[str, Relation], dict[str, Permission]]:
    relations = {n: m for n, m in item.members.items() if isinstance(m, Relation)}
    permissions = {n: m for n, m in item.members.items() if isinstance(m, Permission)}
    return relations, permissions


def _definition_diff(old: Definition, new: Definition) -> list[SchemaChange]:
    C = SchemaChange
    d = new.name
    out: list[SchemaChange] = []
    if comment(old.doc) != comment(new.doc):
        out.append(C("definition_doc_comment_changed", d, before=old, after=new))
    old_rels, old_perms = _split(old)
    new_rels, new_perms = _split(new)
    out += [C("relation_removed", d, r, before=old_rels[r]) for r in sorted(set(old_rels) - set(new_rels))]
    out += [C("relation_added", d, r, after=new_rels[r]) for r in sorted(set(new_rels) - set(old_rels))]
    out += [C("permission_removed", d, p, before=old_perms[p]) for p in sorted(set(old_perms) - set(new_perms))]
    out += [C("permission_added", d, p, after=new_perms[p]) for p in sorted(set(new_perms) - set(old_perms))]
    for p in sorted(set(old_perms) & set(new_perms)):
        before, after = old_perms[p], new_perms[p]
        if before.rewrite != after.rewrite:
            out.append(C("permission_expr_changed", d, p, before=before, after=after))
        if comment(before.doc) != comment(after.doc):
            out.append(C("permission_doc_comment_changed", d, p, before=before, after=after))
    for r in sorted(set(old_rels) & set(new_rels)):
        before_rel, after_rel = old_rels[r], new_rels[r]
        if comment(before_rel.doc) != comment(after_rel.doc):
            out.append(C("relation_doc_comment_changed", d, r, before=before_rel, after=after_rel))
        old_types = {str(a): a for a in before_rel.allowed}
        new_types = {str(a): a for a in after_rel.allowed}
        for t in sorted(set(old_types) - set(new_types)):
            out.append(C("relation_subject_type_removed", d, r, before=old_types[t]))
        for t in sorted(set(new_types) - set(old_types)):
            out.append(C("relation_subject_type_added", d, r, after=new_types[t]))
    return out


def _caveat_diff(old: Caveat, new: Caveat) -> list[SchemaChange]:
    C = SchemaChange
    c = new.name
    out: list[SchemaChange] = []
    if comment(old.doc) != comment(new.doc):
        out.append(C("caveat_doc_comment_changed", c, before=old, after=new))
    old_params = {p.name: p for p in old.parameters}
    new_params = {p.name: p for p in new.parameters}
    out += [C("caveat_parameter_removed", c, p, before=old_params[p]) for p in sorted(set(old_params) - set(new_params))]
    out += [C("caveat_parameter_added", c, p, after=new_params[p]) for p in sorted(set(new_params) - set(old_params))]
    for p in sorted(set(old_params) & set(new_params)):
        if old_params[p].type != new_params[p].type:
            out.append(C("caveat_parameter_type_changed", c, p, before=old_params[p], after=new_params[p]))
    if old.expression != new.expression:
        out.append(C("caveat_expr_changed", c, before=old, after=new))
    return out


def changed_members(old: CompiledSchema, new: CompiledSchema) -> set[MemberRef]:
    """The members (of either schema) whose own evaluation may differ between ``old`` and
    ``new`` on the same relationships: added or removed, a permission whose expression
    changed, a relation whose allowed subject types changed (they decide which wildcards and
    subject sets count), a relation allowing a caveat that changed. Members that only depend
    on these are not listed: ``engine.impact`` reaches them through the relationships."""
    out: set[MemberRef] = set()
    changed_caveats = {n for n in set(old.caveats) | set(new.caveats) if old.caveats.get(n) != new.caveats.get(n)}
    for name in set(old.definitions) | set(new.definitions):
        before, after = old.definitions.get(name), new.definitions.get(name)
        members = set(before.members if before else ()) | set(after.members if after else ())
        for m in members:
            a = before.members.get(m) if before else None
            b = after.members.get(m) if after else None
            if a is None or b is None or type(a) is not type(b):
                out.add((name, m))
            elif isinstance(a, Permission) and isinstance(b, Permission):
                if a.rewrite != b.rewrite:
                    out.add((name, m))
            elif isinstance(a, Relation) and isinstance(b, Relation):
                if set(a.allowed) != set(b.allowed):
                    out.add((name, m))
                elif any(t.caveat in changed_caveats for t in a.allowed):
                    out.add((name, m))
    return out


def has_self(schema: CompiledSchema, definition: str) -> bool:
    """Whether any permission of ``definition`` names ``self``."""
    item = schema.definitions.get(definition)
    if item is None:
        return False
    return any(isinstance(leaf, This) for m in item.members.values() if isinstance(m, Permission)
               for leaf in leaves(m.rewrite))


__all__ = ["SchemaChange", "changed_members", "comment", "diff_schemas", "has_self", "rewrite_text"]
