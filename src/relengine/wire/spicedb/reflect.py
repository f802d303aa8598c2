"""SpiceDB's schema reflection messages from a compiled schema: ReflectSchema's definitions and
caveats (with its filters), DiffSchema's diffs, and the relation graphs behind
ComputablePermissions and DependentRelations.

Shapes and orders are SpiceDB's: definitions and caveats by name (its datastores list them so),
relations and permissions in declaration order, caveat parameters by name; a comment is the
comment text with each line trimmed, several joined by a newline; a terminal subject type has
``is_terminal_subject`` present and false. Diffs come as SpiceDB lists them: definitions added,
removed, caveats added, removed, then each changed definition (by name), then each changed
caveat (by name); names within one kind of change are sorted (SpiceDB's order there is a Go
map's).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from authzed.api.v1 import schema_service_pb2 as ss
from google.protobuf.message import Message

from ...errors import InvalidArgument
from ...schema.diff import SchemaChange, comment, diff_schemas
from ...schema.types import (
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

ELLIPSIS = "..."

EMPTY = CompiledSchema(definitions={}, caveats={})
"""The schema of a store that has none yet: what Reflect and Diff see there."""


# -- comments and single items --------------------------------------------------------


def type_reference(allowed: AllowedType) -> ss.ReflectionTypeReference:
    ref = ss.ReflectionTypeReference(subject_definition_name=allowed.type, optional_caveat_name=allowed.caveat or "")
    if allowed.wildcard:
        ref.is_public_wildcard = True
    elif allowed.relation is not None and allowed.relation != ELLIPSIS:
        ref.optional_relation_name = allowed.relation
    else:
        ref.is_terminal_subject = False  # present and false, as SpiceDB sends it
    return ref


def relation(member: Relation, parent: str) -> ss.ReflectionRelation:
    return ss.ReflectionRelation(
        name=member.name, comment=comment(member.doc), parent_definition_name=parent,
        subject_types=[type_reference(a) for a in member.allowed],
    )


def permission(member: Permission, parent: str) -> ss.ReflectionPermission:
    return ss.ReflectionPermission(name=member.name, comment=comment(member.doc), parent_definition_name=parent)


def caveat_parameters(item: Caveat) -> list[ss.ReflectionCaveatParameter]:
    return [
        ss.ReflectionCaveatParameter(name=p.name, type=p.type, parent_caveat_name=item.name)
        for p in sorted(item.parameters, key=lambda p: p.name)
    ]


def caveat(item: Caveat) -> ss.ReflectionCaveat:
    return ss.ReflectionCaveat(
        name=item.name, comment=comment(item.doc), parameters=caveat_parameters(item), expression=item.expression
    )


# -- filters ----------------------------------------------------------------------------


class InvalidFilter(InvalidArgument):
    """A ReflectSchema filter SpiceDB refuses (INVALID_ARGUMENT / ERROR_REASON_INVALID_FILTER)."""

    def __init__(self, reason: str, filter_text: str) -> None:
        super().__init__(f"the relationship filter provided is not valid: {reason}", kind="filter", filter=filter_text)


def filter_text(f: ss.ReflectionSchemaFilter) -> str:
    """The filter as Go's prototext prints it (SpiceDB's ``filter`` metadata)."""
    return " ".join(f'{field.name}:"{value}"' for field, value in f.ListFields())


@dataclass(frozen=True, slots=True)
class Filters:
    """ReflectSchema's ``optional_filters``: each a set of name prefixes; OR'ed together, and
    a kind of item no filter speaks of is kept."""

    items: tuple[ss.ReflectionSchemaFilter, ...] = ()

    @classmethod
    def of(cls, filters: Iterable[ss.ReflectionSchemaFilter]) -> Filters:
        items = tuple(filters)
        for f in items:
            d, c = f.optional_definition_name_filter, f.optional_caveat_name_filter
            r, p = f.optional_relation_name_filter, f.optional_permission_name_filter
            if d and c:
                raise InvalidFilter("cannot filter by both definition and caveat name", filter_text(f))
            if r and not d:
                raise InvalidFilter("relation name match requires definition name match", filter_text(f))
            if r and p:
                raise InvalidFilter("cannot filter by both relation and permission name", filter_text(f))
            if p and not d:
                raise InvalidFilter("permission name match requires definition name match", filter_text(f))
        return cls(items)

    def wants_definitions(self) -> bool:
        return not self.items or any(f.optional_definition_name_filter for f in self.items)

    def wants_caveats(self) -> bool:
        return not self.items or any(f.optional_caveat_name_filter for f in self.items)

    def definition(self, name: str) -> bool:
        prefixes = [f.optional_definition_name_filter for f in self.items if f.optional_definition_name_filter]
        return not prefixes or any(name.startswith(p) for p in prefixes)

    def caveat(self, name: str) -> bool:
        prefixes = [f.optional_caveat_name_filter for f in self.items if f.optional_caveat_name_filter]
        return not prefixes or any(name.startswith(p) for p in prefixes)

    def relation(self, definition: str, name: str) -> bool:
        pairs = [(f.optional_definition_name_filter, f.optional_relation_name_filter) for f in self.items
                 if f.optional_relation_name_filter]
        return not pairs or any(name.startswith(r) and definition.startswith(d) for d, r in pairs)

    def permission(self, definition: str, name: str) -> bool:
        pairs = [(f.optional_definition_name_filter, f.optional_permission_name_filter) for f in self.items
                 if f.optional_permission_name_filter]
        return not pairs or any(name.startswith(p) and definition.startswith(d) for d, p in pairs)


def definition(item: Definition, filters: Filters | None = None) -> ss.ReflectionDefinition | None:
    """The definition with its relations and permissions (those the filters keep), or None
    when the filters drop the definition."""
    keep = filters or Filters()
    if not keep.definition(item.name):
        return None
    out = ss.ReflectionDefinition(name=item.name, comment=comment(item.doc))
    for member in item.members.values():
        if isinstance(member, Permission):
            if keep.permission(item.name, member.name):
                out.permissions.append(permission(member, item.name))
        elif keep.relation(item.name, member.name):
            out.relations.append(relation(member, item.name))
    return out


def reflect(
    schema: CompiledSchema, filters: Filters | None = None
) -> tuple[list[ss.ReflectionDefinition], list[ss.ReflectionCaveat]]:
    """ReflectSchema's definitions and caveats of ``schema``."""
    keep = filters or Filters()
    definitions: list[ss.ReflectionDefinition] = []
    if keep.wants_definitions():
        for name in sorted(schema.definitions):
            found = definition(schema.definitions[name], keep)
            if found is not None:
                definitions.append(found)
    caveats: list[ss.ReflectionCaveat] = []
    if keep.wants_caveats():
        caveats = [caveat(schema.caveats[name]) for name in sorted(schema.caveats) if keep.caveat(name)]
    return definitions, caveats


# -- diff -------------------------------------------------------------------------------


def diff(existing: CompiledSchema, comparison: CompiledSchema) -> list[ss.ReflectionSchemaDiff]:
    """DiffSchema's diffs from ``existing`` to ``comparison`` (``schema.diff`` finds them)."""
    return [_diff_message(change, comparison) for change in diff_schemas(existing, comparison)]


def _diff_message(change: SchemaChange, comparison: CompiledSchema) -> ss.ReflectionSchemaDiff:
    kind, owner, item = change.kind, change.owner, change.after if change.after is not None else change.before
    value: Message
    if isinstance(item, Definition):
        found = definition(item)
        assert found is not None
        value = found
    elif isinstance(item, Relation):
        value = relation(item, owner)
    elif isinstance(item, Permission):
        value = permission(item, owner)
    elif isinstance(item, Caveat):
        value = caveat(item)
    elif isinstance(item, AllowedType):
        after_rel = comparison.definitions[owner].members[change.name]
        assert isinstance(after_rel, Relation)
        value = ss.ReflectionRelationSubjectTypeChange(
            relation=relation(after_rel, owner), changed_subject_type=type_reference(item))
    else:
        assert isinstance(item, CaveatParameter)
        value = ss.ReflectionCaveatParameter(name=item.name, type=item.type, parent_caveat_name=owner)
        if kind == "caveat_parameter_type_changed":
            assert isinstance(change.before, CaveatParameter)
            value = ss.ReflectionCaveatParameterTypeChange(parameter=value, previous_type=change.before.type)
    out = ss.ReflectionSchemaDiff()
    getattr(out, kind).CopyFrom(value)
    return out


# -- relation graphs --------------------------------------------------------------------

RelRef = tuple[str, str]  # (definition, relation or permission); relation "..." is the object itself


def _operands(rewrite: Rewrite) -> list[Rewrite]:
    if isinstance(rewrite, (Union, Intersection)):
        return list(rewrite.children)
    if isinstance(rewrite, Exclusion):
        return [rewrite.base, rewrite.subtract]
    return [rewrite]


def _arrow_targets(schema: CompiledSchema, owner: Definition, arrow: TupleToUserset) -> list[RelRef]:
    """``(T, computed)`` for each subject type T of the arrow's relation that has ``computed``."""
    tupleset = owner.members.get(arrow.tupleset)
    if not isinstance(tupleset, Relation):
        return []
    out: list[RelRef] = []
    for allowed in tupleset.allowed:
        target = schema.definitions.get(allowed.type)
        if target is not None and arrow.computed in target.members and (allowed.type, arrow.computed) not in out:
            out.append((allowed.type, arrow.computed))
    return out


@dataclass(frozen=True, slots=True)
class _Entries:
    """Where subjects enter each relation or permission: by subject relation
    (``(type, relation)``, ``...`` for the object itself) and, for wildcards, by subject type."""

    by_relation: dict[RelRef, set[RelRef]]
    by_type: dict[str, set[RelRef]]


def _entries(schema: CompiledSchema) -> _Entries:
    key = ("spicedb.reflect", "entries")
    cached = schema.derived.get(key)
    if isinstance(cached, _Entries):
        return cached
    by_relation: dict[RelRef, set[RelRef]] = {}
    by_type: dict[str, set[RelRef]] = {}
    for def_name, item in schema.definitions.items():
        for member in item.members.values():
            target = (def_name, member.name)
            if isinstance(member, Relation):
                for allowed in member.allowed:
                    if allowed.wildcard:
                        by_type.setdefault(allowed.type, set()).add(target)
                    else:
                        by_relation.setdefault((allowed.type, allowed.relation or ELLIPSIS), set()).add(target)
                continue
            for leaf in leaves(member.rewrite):
                if isinstance(leaf, ComputedUserset):
                    by_relation.setdefault((def_name, leaf.relation), set()).add(target)
                elif isinstance(leaf, This):
                    by_relation.setdefault((def_name, ELLIPSIS), set()).add(target)
                elif isinstance(leaf, TupleToUserset):
                    for entry in _arrow_targets(schema, item, leaf):
                        by_relation.setdefault(entry, set()).add(target)
    found = _Entries(by_relation, by_type)
    schema.derived[key] = found
    return found


def reachable_from_subject(schema: CompiledSchema, start: RelRef) -> set[RelRef]:
    """Every relation and permission a subject ``start`` (``(type, relation)``; relation
    ``...`` for the object itself) can reach, transitively: the relations that allow it, the
    permissions computed from those, through arrows, and so on (SpiceDB's
    ``RelationsEncounteredForSubject``). A wildcard type lets in any subject of its type."""
    entries = _entries(schema)
    found: set[RelRef] = set()
    frontier = [start]
    while frontier:
        subject = frontier.pop()
        for target in entries.by_relation.get(subject, set()) | entries.by_type.get(subject[0], set()):
            if target not in found:
                found.add(target)
                frontier.append(target)
    return found


def dependencies_of(schema: CompiledSchema, start: RelRef) -> set[RelRef]:
    """Every relation and permission ``start`` is computed from, transitively (SpiceDB's
    ``RelationsEncounteredForResource``): its operands, the relations its arrows walk and what
    they reach on the other side, and the subject sets (``group#member``) its relations allow."""
    found: set[RelRef] = {start}  # what is reported
    walked: set[RelRef] = {start}  # what is walked (an arrow's own relation is reported only)
    frontier = [start]
    while frontier:
        def_name, name = frontier.pop()
        item = schema.definitions.get(def_name)
        member = None if item is None else item.members.get(name)
        if item is None or member is None:
            continue
        nexts: list[RelRef] = []
        if isinstance(member, Relation):
            nexts = [(a.type, a.relation) for a in member.allowed
                     if not a.wildcard and a.relation is not None and a.relation != ELLIPSIS]
        else:
            for leaf in leaves(member.rewrite):
                if isinstance(leaf, ComputedUserset):
                    nexts.append((def_name, leaf.relation))
                elif isinstance(leaf, TupleToUserset):
                    targets = _arrow_targets(schema, item, leaf)
                    if targets:  # the arrow's relation counts, but what it allows is not walked
                        found.add((def_name, leaf.tupleset))
                    nexts.extend(targets)
        for ref in nexts:
            found.add(ref)
            if ref not in walked:
                walked.add(ref)
                frontier.append(ref)
    return found


def relation_references(
    schema: CompiledSchema, refs: Iterable[RelRef], exclude: RelRef, prefix: str = ""
) -> list[ss.ReflectionRelationReference]:
    """``refs`` as ReflectionRelationReferences sorted by definition and relation, without
    ``exclude`` and those whose definition does not start with ``prefix``."""
    out: list[ss.ReflectionRelationReference] = []
    for def_name, name in sorted(refs):
        if (def_name, name) == exclude or not def_name.startswith(prefix):
            continue
        member = schema.member(def_name, name)
        out.append(ss.ReflectionRelationReference(
            definition_name=def_name, relation_name=name, is_permission=isinstance(member, Permission)))
    return out


__all__ = [
    "EMPTY", "Filters", "InvalidFilter", "caveat", "comment", "definition", "dependencies_of", "diff",
    "filter_text", "reachable_from_subject", "reflect", "relation_references", "type_reference",
]
