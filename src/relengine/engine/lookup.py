"""LookupResources (walk the subject index backwards) and LookupSubjects (walk forward).

LookupResources never enumerates all resources of a type. It starts from the subject: the
relationships naming it (and its type's wildcard) are the first facts ``(type, relation, id)``.
Each fact flows along the schema's reverse edges, one set at a time: a relation that allows
``group#member`` subjects, a permission that names a relation, an arrow whose targets have the
fact's relation. Where the path from a fact up to a permission passes only through unions, the
permission follows at once; where it passes an intersection, an exclusion's base or an
``.all()`` arrow, the resource is only a candidate, and a forward check decides.

LookupSubjects evaluates the rewrite tree forward as set algebra over subject ids of one type,
where a wildcard is a set "everyone but these excluded ids".
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from dataclasses import dataclass, field

from ..errors import MaxDepthExceeded, Unimplemented, UnknownDefinition, UnknownRelation
from ..model import WILDCARD, Relationship, SubjectRef
from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Nil,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)
from ..storage.base import Reader
from .check import HAS, LocalChecker

Node = tuple[str, str]  # (definition, relation or permission)


def _usable(rel: Relationship, now: _dt.datetime) -> bool:
    if rel.expiration is not None and rel.expiration <= now:
        return False
    if rel.caveat is not None:
        raise Unimplemented(
            f"relationship {rel} carries caveat `{rel.caveat.name}`; caveat evaluation is not "
            "implemented yet, so this lookup cannot be answered",
            caveat=rel.caveat.name,
        )
    return True


def _require(schema: CompiledSchema, rtype: str, name: str) -> None:
    definition = schema.definitions.get(rtype)
    if definition is None:
        raise UnknownDefinition(f"object definition `{rtype}` not found", definition=rtype)
    if name not in definition.members:
        raise UnknownRelation(
            f"relation/permission `{name}` not found under definition `{rtype}`", definition=rtype, relation=name
        )


# -- the reverse graph of a schema ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Edge:
    """From facts of ``source`` to facts of ``target``.

    kind "computed": same object id. kind "userset": relationships ``target:x#target_rel@source_type:id#source_rel``.
    kind "arrow": relationships ``target:x#tupleset@source_type:id[#subject_relation]``.
    ``exact``: the target follows for sure (only unions on the way); otherwise it is a candidate.
    """

    kind: str
    target: Node
    exact: bool
    tupleset: str = ""
    subject_relation: str | None = None


@dataclass
class ReverseGraph:
    edges: dict[Node, list[_Edge]] = field(default_factory=lambda: defaultdict(list))
    self_nodes: dict[str, list[tuple[Node, bool]]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def build(cls, schema: CompiledSchema) -> ReverseGraph:
        graph = cls()
        for t, definition in schema.definitions.items():
            for name, member in definition.members.items():
                node = (t, name)
                if isinstance(member, Relation):
                    for allowed in member.allowed:
                        if allowed.relation is not None:
                            graph.edges[(allowed.type, allowed.relation)].append(
                                _Edge("userset", node, True, subject_relation=allowed.relation)
                            )
                else:
                    graph._walk(schema, t, node, member.rewrite, True)
        return graph

    def _walk(self, schema: CompiledSchema, t: str, node: Node, rewrite: Rewrite, exact: bool) -> None:
        if isinstance(rewrite, ComputedUserset):
            self.edges[(t, rewrite.relation)].append(_Edge("computed", node, exact))
        elif isinstance(rewrite, Union):
            for child in rewrite.children:
                self._walk(schema, t, node, child, exact)
        elif isinstance(rewrite, Intersection):
            for child in rewrite.children:
                self._walk(schema, t, node, child, False)
        elif isinstance(rewrite, Exclusion):
            self._walk(schema, t, node, rewrite.base, False)  # the subtracted side grants nothing
        elif isinstance(rewrite, TupleToUserset):
            tupleset = schema.definitions[t].relation(rewrite.tupleset)
            if tupleset is None:
                return
            for allowed in tupleset.allowed:
                if schema.member(allowed.type, rewrite.computed) is not None:
                    self.edges[(allowed.type, rewrite.computed)].append(
                        _Edge(
                            "arrow",
                            node,
                            exact and rewrite.mode == "any",
                            tupleset=rewrite.tupleset,
                            subject_relation=allowed.relation,
                        )
                    )
        elif isinstance(rewrite, This):
            self.self_nodes[t].append((node, exact))

    def reaching(self, target: Node) -> set[Node]:
        """Every node from which facts can flow to ``target`` (including it)."""
        back: dict[Node, set[Node]] = defaultdict(set)
        for source, edges in self.edges.items():
            for edge in edges:
                back[edge.target].add(source)
        seen = {target}
        stack = [target]
        while stack:
            for source in back.get(stack.pop(), ()):
                if source not in seen:
                    seen.add(source)
                    stack.append(source)
        return seen


_GRAPHS: dict[int, tuple[CompiledSchema, ReverseGraph]] = {}


def reverse_graph(schema: CompiledSchema) -> ReverseGraph:
    cached = _GRAPHS.get(id(schema))
    if cached is not None and cached[0] is schema:
        return cached[1]
    graph = ReverseGraph.build(schema)
    if len(_GRAPHS) > 32:
        _GRAPHS.clear()
    _GRAPHS[id(schema)] = (schema, graph)
    return graph


def lookup_resources(
    checker: LocalChecker, resource_type: str, permission: str, subject: SubjectRef
) -> list[str]:
    """Ids of every ``resource_type`` object on which ``subject`` has ``permission``, sorted."""
    schema, reader, now = checker.schema, checker.reader, checker.now
    _require(schema, resource_type, permission)
    graph = reverse_graph(schema)
    target: Node = (resource_type, permission)
    relevant = graph.reaching(target)
    known: dict[Node, set[str]] = defaultdict(set)
    delta: dict[Node, set[str]] = defaultdict(set)

    def add(node: Node, ids: set[str] | list[str]) -> None:
        if node not in relevant:
            return
        have = known[node]
        fresh = [i for i in ids if i not in have]
        if fresh:
            have.update(fresh)
            delta[node].update(fresh)

    def candidates(node: Node, ids: set[str]) -> None:
        t, name = node
        if node not in relevant:
            return
        have = known[node]
        confirmed = [
            i for i in ids if i not in have and checker.check(t, i, name, subject) is HAS
        ]
        add(node, confirmed)

    # Seeds: the subject itself as a userset, the relationships naming it, and its wildcard.
    if subject.relation is not None:
        add((subject.type, subject.relation), [subject.id])
    seeds: dict[Node, set[str]] = defaultdict(set)
    for rel in reader.resources(subject):
        if _usable(rel, now):
            seeds[(rel.resource.type, rel.relation)].add(rel.resource.id)
    if subject.relation is None and subject.id != WILDCARD:
        for rel in reader.resources(SubjectRef(subject.type, WILDCARD)):
            if _usable(rel, now):
                seeds[(rel.resource.type, rel.relation)].add(rel.resource.id)
        for node, exact in graph.self_nodes.get(subject.type, ()):
            (add if exact else candidates)(node, {subject.id})
    for node, ids in seeds.items():
        add(node, ids)

    steps = 0
    while delta:
        steps += 1
        if steps > 1_000_000:
            raise MaxDepthExceeded("lookup did not converge")
        node, ids = delta.popitem()
        for edge in graph.edges.get(node, ()):
            if edge.target not in relevant:
                continue
            if edge.kind == "computed":
                found: set[str] = ids
            else:
                found = set()
                relation = edge.target[1] if edge.kind == "userset" else edge.tupleset
                for oid in ids:
                    source = SubjectRef(node[0], oid, edge.subject_relation)
                    for rel in reader.resources(source, edge.target[0], relation):
                        if _usable(rel, now):
                            found.add(rel.resource.id)
            if edge.exact:
                add(edge.target, found)
            else:
                candidates(edge.target, found)
    return sorted(known.get(target, ()))


# -- forward: subjects ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SubjectSet:
    """Ids of one subject type: ``ids``, plus everyone but ``excluded`` when ``wildcard``."""

    ids: frozenset[str] = frozenset()
    wildcard: bool = False
    excluded: frozenset[str] = frozenset()

    def has(self, sid: str) -> bool:
        return sid in self.ids or (self.wildcard and sid not in self.excluded)

    def union(self, other: SubjectSet) -> SubjectSet:
        if self.wildcard and other.wildcard:
            excluded = self.excluded & other.excluded
        elif self.wildcard:
            excluded = self.excluded - other.ids
        elif other.wildcard:
            excluded = other.excluded - self.ids
        else:
            excluded = frozenset()
        return SubjectSet(self.ids | other.ids, self.wildcard or other.wildcard, excluded)

    def intersect(self, other: SubjectSet) -> SubjectSet:
        ids = frozenset(i for i in self.ids | other.ids if self.has(i) and other.has(i))
        if self.wildcard and other.wildcard:
            return SubjectSet(ids, True, self.excluded | other.excluded)
        return SubjectSet(ids)

    def subtract(self, other: SubjectSet) -> SubjectSet:
        if self.wildcard and other.wildcard:
            return SubjectSet(frozenset(i for i in other.excluded if self.has(i)))
        if self.wildcard:
            return SubjectSet(self.ids - other.ids, True, self.excluded | other.ids)
        return SubjectSet(frozenset(i for i in self.ids if not other.has(i)))


EMPTY = SubjectSet()


class SubjectWalker:
    """Computes the SubjectSet of (type, id, relation) for subjects ``subject_type[#subject_relation]``."""

    def __init__(self, checker: LocalChecker, subject_type: str, subject_relation: str | None) -> None:
        self.schema = checker.schema
        self.reader = checker.reader
        self.now = checker.now
        self.max_depth = checker.max_depth
        self.subject_type = subject_type
        self.subject_relation = subject_relation
        self.memo: dict[tuple[str, str, str], SubjectSet] = {}
        self.active: set[tuple[str, str, str]] = set()
        self.cuts = 0

    def member(self, t: str, oid: str, name: str, depth: int) -> SubjectSet:
        key = (t, oid, name)
        cached = self.memo.get(key)
        if cached is not None:
            return cached
        if key in self.active:
            self.cuts += 1
            return EMPTY
        if depth < 0:
            raise MaxDepthExceeded(f"lookup exceeded the maximum depth of {self.max_depth} at {t}:{oid}#{name}")
        cuts_before = self.cuts
        self.active.add(key)
        try:
            member = self.schema.definitions[t].members[name]
            if isinstance(member, Relation):
                result = self._relation(t, oid, name, depth)
            else:
                result = self._rewrite(t, oid, member.rewrite, depth)
        finally:
            self.active.discard(key)
        if t == self.subject_type and name == self.subject_relation:
            result = result.union(SubjectSet(frozenset([oid])))  # a userset is a member of itself
        if self.cuts == cuts_before:  # results cut short by a cycle are not reusable
            self.memo[key] = result
        return result

    def _relation(self, t: str, oid: str, name: str, depth: int) -> SubjectSet:
        result = EMPTY
        direct: set[str] = set()
        for rel in self.reader.subjects(t, oid, name):
            if not _usable(rel, self.now):
                continue
            s = rel.subject
            if s.type == self.subject_type and s.relation == self.subject_relation:
                if s.id == WILDCARD:
                    result = result.union(SubjectSet(wildcard=True))
                else:
                    direct.add(s.id)
            if s.relation is not None:
                result = result.union(self.member(s.type, s.id, s.relation, depth - 1))
        return result.union(SubjectSet(frozenset(direct)))

    def _rewrite(self, t: str, oid: str, node: Rewrite, depth: int) -> SubjectSet:
        if isinstance(node, ComputedUserset):
            return self.member(t, oid, node.relation, depth - 1)
        if isinstance(node, Union):
            result = EMPTY
            for child in node.children:
                result = result.union(self._rewrite(t, oid, child, depth))
            return result
        if isinstance(node, Intersection):
            result = self._rewrite(t, oid, node.children[0], depth)
            for child in node.children[1:]:
                result = result.intersect(self._rewrite(t, oid, child, depth))
            return result
        if isinstance(node, Exclusion):
            return self._rewrite(t, oid, node.base, depth).subtract(self._rewrite(t, oid, node.subtract, depth))
        if isinstance(node, TupleToUserset):
            sets: list[SubjectSet] = []
            seen: set[tuple[str, str]] = set()
            for rel in self.reader.subjects(t, oid, node.tupleset):
                target = (rel.subject.type, rel.subject.id)
                if target in seen or not _usable(rel, self.now):
                    continue
                seen.add(target)
                if self.schema.member(target[0], node.computed) is None:
                    sets.append(EMPTY)
                else:
                    sets.append(self.member(target[0], target[1], node.computed, depth - 1))
            if not sets:
                return EMPTY
            result = sets[0]
            for other in sets[1:]:
                result = result.intersect(other) if node.mode == "all" else result.union(other)
            return result
        if isinstance(node, This):
            if t == self.subject_type and self.subject_relation is None:
                return SubjectSet(frozenset([oid]))
            return EMPTY
        assert isinstance(node, Nil)
        return EMPTY


def lookup_subjects(
    checker: LocalChecker, rtype: str, rid: str, permission: str, subject_type: str, subject_relation: str | None
) -> SubjectSet:
    _require(checker.schema, rtype, permission)
    if subject_type not in checker.schema.definitions:
        raise UnknownDefinition(f"subject type `{subject_type}` not found", definition=subject_type)
    if subject_relation is not None:
        _require(checker.schema, subject_type, subject_relation)
    walker = SubjectWalker(checker, subject_type, subject_relation)
    return walker.member(rtype, rid, permission, checker.max_depth)
