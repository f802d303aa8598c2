"""LookupResources (walk the subject index backwards) and LookupSubjects (walk forward).

LookupResources never enumerates all resources of a type. It starts from the subject: the
relationships naming it (and its type's wildcard) are the first facts ``(type, relation, id)``.
Each fact flows along the schema's reverse edges, one set at a time: a relation that allows
``group#member`` subjects, a permission that names a relation, an arrow whose targets have the
fact's relation. Where the path from a fact up to a permission passes only through unions, the
permission follows at once; where it passes an intersection, an exclusion's base or an
``.all()`` arrow, the resource is only a candidate, and a forward check decides.

LookupSubjects evaluates the rewrite tree forward as set algebra over subject ids of one type,
where a wildcard is a set "everyone but these excluded ids". A permission that is a union of
relations, computed references and ``any`` arrows all the way down (no intersection, exclusion
or ``.all()``: most of them) is gathered instead in one walk that visits each (object, member)
once and adds every subject it meets to one set (``SubjectWalker.gather``), as the naive set
union does. Both read a small object whole, once (``Reader.object_rows``), a large one by typed
scans, and ask the group index (``groups.GroupView.members``) for the members of a nested group.

Both honour the checker's depth budget and deadline as a check does (``dispatch`` has the
contract): LookupResources counts one hop per round of facts read through relationships
(same-object references are free, as the check plan inlines them), LookupSubjects one per
sub-question; both look at the clock, and ask whether the caller has gone (``cancelled``),
every few hundred store reads and forward checks.

LookupSubjects takes time linear in the relationships it reads: each node's subjects are
gathered in mutable sets and frozen once (``_Gathered``), never rebuilt per relationship.
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

from ..errors import MaxDepthExceeded, UnknownDefinition
from ..model import WILDCARD, Relationship, SubjectRef, new_subject
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
from ..storage import objects
from ..storage.base import Row
from .cache import RevisionMemo
from .check import LocalChecker
from .dispatch import HAS, NO, Conditional, Deadline, Result

Node = tuple[str, str]  # (definition, relation or permission)


def _live(rel: Relationship, now: _dt.datetime) -> bool:
    return rel.expiration is None or rel.expiration > now


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
    routes: dict[Node, tuple[frozenset[Node], dict[Node, list[_Edge]]]] = field(default_factory=dict)  # ``towards``

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

    def towards(self, target: Node) -> tuple[frozenset[Node], dict[Node, list[_Edge]]]:
        """Every node from which facts can flow to ``target`` (including it), and the edges
        between such nodes (those a lookup for ``target`` follows), by source; kept per target."""
        found = self.routes.get(target)
        if found is None:
            relevant = frozenset(self._reaching(target))
            edges = {
                source: [edge for edge in out if edge.target in relevant]
                for source, out in self.edges.items() if source in relevant
            }
            found = self.routes[target] = (relevant, {source: out for source, out in edges.items() if out})
        return found

    def _reaching(self, target: Node) -> set[Node]:
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


def reverse_graph(schema: CompiledSchema) -> ReverseGraph:
    """The reverse graph of ``schema``, built on first use and kept with the schema."""
    return schema.derive(ReverseGraph, ReverseGraph.build)


def lookup_resources(
    checker: LocalChecker, resource_type: str, permission: str, subject: SubjectRef,
    cancelled: Callable[[], bool] | None = None,
) -> list[tuple[str, Result]] | list[str]:
    """(id, answer) for every ``resource_type`` object on which ``subject`` has ``permission``
    (HAS or Conditional), sorted by id; where every answer is HAS (no candidate needed a
    check: the usual case), only the ids. ``cancelled``: see ``dispatch.Deadline``.

    Facts are (node, id) pairs known either exactly or only maybe: a fact is exact when every
    step that derived it was a plain relationship along an edge with only unions on the way.
    Caveated relationships, intersections, exclusions and ``.all()`` arrows make facts maybe;
    each maybe fact for the target is settled by a forward check at the end.
    """
    schema, reader, now = checker.schema, checker.reader, checker.now
    schema.require(resource_type, permission)
    graph = reverse_graph(schema)
    target: Node = (resource_type, permission)
    relevant, routes = graph.towards(target)
    deadline = Deadline(checker.deadline, "lookup", cancelled)
    known: dict[Node, dict[str, bool]] = defaultdict(dict)
    delta: dict[Node, dict[str, bool]] = defaultdict(dict)  # new facts of the current round

    def add(node: Node, ids: dict[str, bool], into: dict[Node, dict[str, bool]]) -> None:
        if not ids or node not in relevant:
            return
        have = known[node]
        pending = into[node]
        if not have:  # the usual case: a node's facts all come at once
            have.update(ids)
            pending.update(ids)
            ids = {}
        for oid, exact in ids.items():
            before = have.get(oid)
            if before is None or (exact and not before):
                have[oid] = exact
                pending[oid] = exact
        if not pending:
            del into[node]

    # Seeds: the subject itself as a userset, the relationships naming it, and its wildcard.
    if subject.relation is not None:
        add((subject.type, subject.relation), {subject.id: True}, delta)
    seeds: dict[Node, dict[str, bool]] = defaultdict(dict)
    sources = [subject]
    if subject.relation is None and subject.id != WILDCARD:
        sources.append(SubjectRef(subject.type, WILDCARD))
        for node, exact in graph.self_nodes.get(subject.type, ()):
            add(node, {subject.id: exact}, delta)
    for source in sources:
        for rel in deadline.rows(reader.resources(source)):
            if _live(rel, now):
                ids = seeds[(rel.resource.type, rel.relation)]
                exact = rel.caveat is None
                ids[rel.resource.id] = ids.get(rel.resource.id, False) or exact
    for node, ids in seeds.items():
        add(node, ids, delta)

    # Rounds: the facts of round n are n relationships away from the subject, as a check's
    # sub-questions are n dispatches below it; a fact past ``max_depth`` raises as check does.
    depth = checker.max_depth
    while delta:
        if depth < 0:
            node = next(iter(delta))
            raise MaxDepthExceeded.at("lookup", checker.max_depth, f"{node[0]}#{node[1]}", node[0], node[1])
        depth -= 1
        current, delta = delta, defaultdict(dict)
        while current:
            node, ids = current.popitem()
            for edge in routes.get(node, ()):
                if edge.kind == "computed":  # same object: the same round
                    add(edge.target, ids if edge.exact else dict.fromkeys(ids, False), current)
                    continue
                found: dict[str, bool] = {}
                relation = edge.target[1] if edge.kind == "userset" else edge.tupleset
                ttype, srel = edge.target[0], edge.subject_relation
                for oid, exact in ids.items():
                    plain, others = reader.resource_ids(new_subject(node[0], oid, srel), ttype, relation)
                    deadline.steps(1 + len(plain) + len(others))
                    if plain:
                        if exact and edge.exact:
                            if found:
                                found.update(dict.fromkeys(plain, True))
                            else:
                                found = dict.fromkeys(plain, True)
                        else:
                            for rid in plain:
                                found.setdefault(rid, False)
                    for rid, (caveat, expiration) in others:
                        if expiration is None or expiration > now:
                            found[rid] = found.get(rid, False) or (exact and edge.exact and caveat is None)
                add(edge.target, found, delta)

    facts = known.get(target, {})
    if all(facts.values()):  # no candidate to check: the ids alone (no pair built per result)
        return sorted(facts)
    out: list[tuple[str, Result]] = []
    for rid, exact in sorted(facts.items()):
        if not exact:
            deadline.step()
        result: Result = HAS if exact else checker.check(resource_type, rid, permission, subject)
        if result is not NO:
            out.append((rid, result))
    return out


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
        if not self.wildcard and not other.wildcard:  # the usual case, as one set operation
            return SubjectSet(self.ids & other.ids)
        ids = frozenset(i for i in self.ids | other.ids if self.has(i) and other.has(i))
        if self.wildcard and other.wildcard:
            return SubjectSet(ids, True, self.excluded | other.excluded)
        return SubjectSet(ids)

    def subtract(self, other: SubjectSet) -> SubjectSet:
        if self.wildcard and other.wildcard:
            return SubjectSet(frozenset(i for i in other.excluded if self.has(i)))
        if self.wildcard:
            return SubjectSet(self.ids - other.ids, True, self.excluded | other.ids)
        if not other.wildcard:  # the usual case, as one set operation
            return SubjectSet(self.ids - other.ids)
        return SubjectSet(frozenset(i for i in self.ids if not other.has(i)))


EMPTY = SubjectSet()
EVERYONE = SubjectSet(wildcard=True)


class _Gathered:
    """A union of SubjectSets built in place: adding sets (or single ids) one after another and
    freezing once gives exactly what the chain ``a.union(b).union(c)...`` gives, in time linear
    in what was added. The chain copies everything gathered so far at each step, which over the
    members of one group is quadratic (1k members 0.02 s, 8k 0.6 s, 100k minutes)."""

    __slots__ = ("ids", "wildcard", "excluded", "only")

    def __init__(self) -> None:
        self.ids: set[str] = set()
        self.wildcard = False
        self.excluded: set[str] = set()
        # The one set added so far, not copied yet: a union with a single non-empty operand (a
        # permission over one role, a relation holding one group) is that operand, as it is.
        self.only: SubjectSet | None = None

    def _settle(self) -> None:
        if self.only is not None:
            only, self.only = self.only, None
            self._merge(only)

    def add_id(self, sid: str) -> None:
        """``union(SubjectSet(frozenset([sid])))``."""
        self._settle()
        self.ids.add(sid)
        if self.wildcard:
            self.excluded.discard(sid)

    def add_ids(self, ids: list[str]) -> None:
        """``add_id`` of each of ``ids``."""
        self._settle()
        self.ids.update(ids)
        if self.wildcard:
            self.excluded.difference_update(ids)

    def add(self, other: SubjectSet) -> None:
        """``union(other)``, case by case as ``SubjectSet.union``, each costing the size of
        ``other`` (or less), never the size of what was gathered."""
        if not other.wildcard and not other.ids:
            return  # the empty set: the union is what it was
        if self.only is None and not self.ids and not self.wildcard:
            self.only = other
            return
        self._settle()
        self._merge(other)

    def _merge(self, other: SubjectSet) -> None:
        if other.wildcard:
            if self.wildcard:
                self.excluded &= other.excluded
            else:
                self.wildcard = True
                self.excluded = {i for i in other.excluded if i not in self.ids}
        elif self.wildcard:
            self.excluded -= other.ids
        self.ids |= other.ids

    def freeze(self) -> SubjectSet:
        if self.only is not None:
            return self.only
        if not self.ids and not self.wildcard:
            return EMPTY
        return SubjectSet(frozenset(self.ids), self.wildcard, frozenset(self.excluded))


Bounds = tuple[SubjectSet, SubjectSet]  # (certainly has it, possibly has it)
NOTHING: Bounds = (EMPTY, EMPTY)

_Decoded = dict[str, tuple[list[str], Sequence[Row]]]
"""One small object's relationships by relation: its plain whole subjects as ``type\\x01id``
strings (as stored: ``storage.objects``), and the others as Rows (subject sets, caveats,
expirations)."""
_NO_ROWS: tuple[list[str], Sequence[Row]] = ([], ())
_UNREAD: _Decoded = {}


def _decode(value: bytes) -> _Decoded:
    """``value`` (``Reader.object_rows``, a small object) by relation (see ``_Decoded``)."""
    out: _Decoded = {}
    kind = value[objects.KIND_OFFSET]
    start = objects.HEAD if kind == objects.PLAIN else objects.direct_start(value)
    if len(value) > start:  # ``\x02`` relation ``\x00`` type ``\x01`` id ``\x00`` (``\x00`` type ...) ... ``\x02``
        for chunk in value[start + 1:-1].decode().split("\x02"):
            relation, _, entries = chunk.partition("\x00")
            out[relation] = (entries[:-1].split("\x00\x00"), ())
    if kind == objects.OTHERS:
        for relation, rows in objects.others(value).items():
            direct = out.get(relation)
            out[relation] = (direct[0] if direct is not None else [], rows)
    return out


class _GatheredBounds:
    """Lower and upper bounds gathered side by side, as one set while they agree (no caveat
    met yet: the usual case), so that neither is built, copied nor compared twice."""

    __slots__ = ("lower", "upper")

    def __init__(self) -> None:
        self.lower = _Gathered()
        self.upper: _Gathered | None = None  # None: the same as ``lower``

    def _split(self) -> _Gathered:
        if self.upper is None:
            self.upper = _Gathered()
            self.upper.add(self.lower.freeze())
        return self.upper

    def add(self, lower: SubjectSet, upper: SubjectSet) -> None:
        """Certainly ``lower``, possibly ``upper``."""
        if self.upper is None and lower is upper:
            self.lower.add(lower)
            return
        self._split().add(upper)
        self.lower.add(lower)

    def add_possible(self, upper: SubjectSet) -> None:
        self._split().add(upper)

    def add_id(self, sid: str, certain: bool) -> None:
        if certain:
            self.lower.add_id(sid)
            if self.upper is not None:
                self.upper.add_id(sid)
        else:
            self._split().add_id(sid)

    def add_ids(self, ids: list[str]) -> None:
        """``add_id(sid, True)`` of each of ``ids``."""
        self.lower.add_ids(ids)
        if self.upper is not None:
            self.upper.add_ids(ids)

    def freeze(self) -> Bounds:
        lower = self.lower.freeze()
        return (lower, lower) if self.upper is None else (lower, self.upper.freeze())


class SubjectWalker:
    """Computes, for (type, id, relation), the subjects ``subject_type[#subject_relation]`` that
    certainly have it and those that possibly do (through caveated relationships): a lower and
    an upper bound. Exclusion subtracts the other side's opposite bound."""

    def __init__(
        self, checker: LocalChecker, subject_type: str, subject_relation: str | None,
        cancelled: Callable[[], bool] | None = None, *, shared: dict[tuple[str, str, str], Bounds] | None = None,
        stable: frozenset[tuple[str, str]] = frozenset(), lasting: RevisionMemo | None = None,
    ) -> None:
        """``shared``: bounds of the members in ``stable`` (type, member), kept with another
        walker's; only for walkers over the same relationships whose schemas evaluate those
        members alike (``engine.impact``). ``lasting``: bounds shared with later requests at
        the reader's revision (the Engine's cache), kept with the depth they were found at:
        a request uses them only at that depth or more, where the walk would have found them
        without running out of depth; nothing a data cycle cut short (``cuts``) or that leaned
        on a relationship that will expire (``time_bound``) is kept there."""
        self.shared = shared
        self.stable = stable
        self.lasting = lasting
        self.revision = checker.reader.revision.value if lasting is not None else 0
        self.time_bound = 0
        self.timed: set[tuple[str, str, str]] = set()  # memo entries that leaned on an expiring relationship
        self.schema = checker.schema
        self.reader = checker.reader
        self.now = checker.now
        self.max_depth = checker.max_depth
        self.deadline = Deadline(checker.deadline, "lookup", cancelled)
        self.subject_type = subject_type
        self.subject_relation = subject_relation
        self.prefix = subject_type + "\x01"  # how a plain subject of the type starts (``_decode``)
        self.memo: dict[tuple[str, str, str], Bounds] = {}
        self.allowed = _plan_of(checker.schema).allowed
        self.types: dict[tuple[str, str], frozenset[str]] = {}
        # The group index at the reader's revision, for whole subjects (``GroupView.members``).
        self.groups = checker.groups if subject_relation is None else None
        self.grouped = self.groups.relations if self.groups is not None else frozenset()
        self.active: set[tuple[str, str, str]] = set()
        self.cuts = 0
        # What the walk has read: per small object its relations (``_decode``), None for a large one.
        self.objects: dict[tuple[str, str], _Decoded | None] = {}

    def member(self, t: str, oid: str, name: str, depth: int) -> Bounds:
        key = (t, oid, name)
        cached = self.memo.get(key)
        if cached is not None:
            if key in self.timed:
                self.time_bound += 1
            return cached
        shared = self.shared if self.shared is not None and (t, name) in self.stable else None
        if shared is not None:
            cached = shared.get(key)
            if cached is not None:
                return cached
        lasting = self.lasting
        if lasting is not None:
            kept = lasting.get(self.revision, (self.subject_type, self.subject_relation, t, oid, name))
            if kept is not None and depth >= kept[2]:
                self.memo[key] = cached = (kept[0], kept[1])
                return cached
        if key in self.active:
            self.cuts += 1
            return NOTHING
        if depth < 0:
            raise MaxDepthExceeded(f"lookup exceeded the maximum depth of {self.max_depth} at {t}:{oid}#{name}")
        if self.grouped and (t, name) in self.grouped:
            assert self.groups is not None
            ids = self.groups.members(t, oid, name, self.subject_type, depth)
            if ids is not None:  # the group index: every member, however deep the nesting
                found = SubjectSet(frozenset(ids)) if ids else EMPTY
                self.memo[key] = (found, found)
                return found, found
        cuts_before, bound_before = self.cuts, self.time_bound
        self.active.add(key)
        try:
            member = self.schema.definitions[t].members[name]
            if isinstance(member, Relation):
                lower, upper = self._relation(t, oid, name, depth)
            else:
                lower, upper = self._rewrite(t, oid, member.rewrite, depth)
        finally:
            self.active.discard(key)
        if t == self.subject_type and name == self.subject_relation:
            itself = SubjectSet(frozenset([oid]))  # a userset is a member of itself
            lower, upper = lower.union(itself), upper.union(itself)
        if self.cuts == cuts_before:  # results cut short by a cycle are not reusable
            if upper is not lower and upper == lower:
                upper = lower  # the usual case (no caveat): one set kept, not two equal ones
            self.memo[key] = (lower, upper)
            if shared is not None:
                shared[key] = (lower, upper)
            if self.time_bound != bound_before:
                self.timed.add(key)
            elif lasting is not None:
                weight = len(lower.ids) + len(lower.excluded)
                if upper is not lower:
                    weight += len(upper.ids) + len(upper.excluded)
                lasting.put(self.revision, (self.subject_type, self.subject_relation, t, oid, name), (lower, upper, depth), weight)
        return lower, upper

    def _allowed(self, t: str, name: str) -> tuple[frozenset[str], frozenset[tuple[str, str]]]:
        """The wildcard types and the subject sets relation ``t#name`` allows: as in a check,
        a stored wildcard or subject set counts only where the schema allows it (relationships
        written under another schema may hold others: ``engine.impact`` reads them so)."""
        return self.allowed[(t, name)]

    def _read(self, t: str, oid: str, name: str, typed: bool = False) -> tuple[list[str], Sequence[Row]]:
        """Relation ``name`` of ``t:oid``: its plain whole subjects (``type\\x01id``), and its other
        relationships as Rows. A small object is read once, whole (``Reader.object_rows``), and
        every relation of it is answered from that read; a large one is scanned per relation,
        ``typed``: for the subject types the walk uses only (``_types``: typed scans, as Rows,
        so that a group's thousands of members build no Relationship each)."""
        key = (t, oid)
        found = self.objects.get(key, _UNREAD)
        if found is _UNREAD:  # (an empty dict of its own: a small object is never it)
            self.deadline.step()
            value = self.reader.object_rows(t, oid)
            found = self.objects[key] = None if value is None else _decode(value)
        if found is not None:
            return found.get(name, _NO_ROWS)
        rows: list[Row] = []
        if typed:
            for stype in sorted(self._types(t, name)):
                self.deadline.step()
                part = self.reader.subject_rows(t, oid, name, stype)
                self.deadline.steps(len(part))
                rows += part
            return [], rows
        for rel in self.deadline.rows(self.reader.subjects(t, oid, name)):
            s = rel.subject
            extra = None if rel.caveat is None and rel.expiration is None else (rel.caveat, rel.expiration)
            rows.append((s.type, s.id, s.relation, extra))
        return [], rows

    def _types(self, t: str, name: str) -> frozenset[str]:
        """The subject types whose relationships of ``t#name`` a walk for this subject type
        uses: its own, and those of the subject sets the relation allows."""
        key = (t, name)
        found = self.types.get(key)
        if found is None:
            found = self.types[key] = frozenset([self.subject_type, *(st for st, _ in self.allowed[key][1])])
        return found

    def _direct_ids(self, direct: list[str]) -> tuple[list[str], bool]:
        """The ids of the subject type's whole subjects among a relation's direct entries, the
        wildcard left out, and whether it was among them."""
        prefix = self.prefix
        size = len(prefix)
        ids = [entry[size:] for entry in direct if entry.startswith(prefix)]
        if WILDCARD in ids:
            ids.remove(WILDCARD)
            return ids, True
        return ids, False

    def _relation(self, t: str, oid: str, name: str, depth: int) -> Bounds:
        gathered = _GatheredBounds()
        wildcards, usersets = self._allowed(t, name)
        stype, srel = self.subject_type, self.subject_relation
        direct, others = self._read(t, oid, name, True)
        if direct and srel is None:
            ids, wild = self._direct_ids(direct)
            if wild and stype in wildcards:
                gathered.add(EVERYONE, EVERYONE)
            if ids or wild:
                gathered.add_ids(ids)
        for st, sid, rrel, extra in others:
            certain = True
            if extra is not None:
                caveat, expiration = extra
                if expiration is not None:
                    if expiration <= self.now:
                        continue
                    self.time_bound += 1
                certain = caveat is None
            if st == stype and rrel == srel:
                if sid == WILDCARD:
                    if st not in wildcards:
                        continue
                    if certain:
                        gathered.add(EVERYONE, EVERYONE)
                    else:
                        gathered.add_possible(EVERYONE)
                else:
                    gathered.add_id(sid, certain)
            if rrel is not None and (st, rrel) in usersets:
                sub_lower, sub_upper = self.member(st, sid, rrel, depth - 1)
                if certain:
                    gathered.add(sub_lower, sub_upper)
                else:
                    gathered.add_possible(sub_upper)
        return gathered.freeze()

    def _arrow_targets(self, t: str, oid: str, tupleset: str) -> dict[tuple[str, str], bool]:
        """The live targets of ``t:oid#tupleset``, each with whether a relationship without a
        caveat names it (certain) or only caveated ones do."""
        direct, others = self._read(t, oid, tupleset)
        seen: dict[tuple[str, str], bool] = {(e[0], e[1]): True for e in [d.split("\x01") for d in direct]}
        for st, sid, _, extra in others:
            certain = True
            if extra is not None:
                caveat, expiration = extra
                if expiration is not None:
                    if expiration <= self.now:
                        continue
                    self.time_bound += 1
                certain = caveat is None
            target = (st, sid)
            seen[target] = seen.get(target, False) or certain
        return seen

    def _rewrite(self, t: str, oid: str, node: Rewrite, depth: int) -> Bounds:
        if isinstance(node, ComputedUserset):
            return self.member(t, oid, node.relation, depth - 1)
        if isinstance(node, Union):
            gathered = _GatheredBounds()
            for child in node.children:
                gathered.add(*self._rewrite(t, oid, child, depth))
            return gathered.freeze()
        if isinstance(node, Intersection):
            lower, upper = self._rewrite(t, oid, node.children[0], depth)
            for child in node.children[1:]:
                cl, cu = self._rewrite(t, oid, child, depth)
                lower, upper = lower.intersect(cl), upper.intersect(cu)
            return lower, upper
        if isinstance(node, Exclusion):
            bl, bu = self._rewrite(t, oid, node.base, depth)
            sl, su = self._rewrite(t, oid, node.subtract, depth)
            return bl.subtract(su), bu.subtract(sl)
        if isinstance(node, TupleToUserset):
            seen = self._arrow_targets(t, oid, node.tupleset)
            if node.mode == "all":
                return self._all(node.computed, seen, depth)
            gathered = _GatheredBounds()
            for (ttype, tid), certain in seen.items():
                if self.schema.member(ttype, node.computed) is not None:
                    tl, tu = self.member(ttype, tid, node.computed, depth - 1)
                    if certain:
                        gathered.add(tl, tu)
                    else:
                        gathered.add_possible(tu)
            return gathered.freeze()
        if isinstance(node, This):
            if t == self.subject_type and self.subject_relation is None:
                itself = SubjectSet(frozenset([oid]))
                return itself, itself
            return NOTHING
        assert isinstance(node, Nil)
        return NOTHING

    # -- the union walk --------------------------------------------------------------
    def gather(self, t: str, oid: str, name: str, depth: int) -> Bounds:
        """``member(t, oid, name, depth)`` for a member of ``unions`` (``_SubjectsPlan``):
        there the subjects are those of every relationship reachable from it, so the walk
        visits each (object, member) once, as the naive set union does, and gathers every
        subject into one lower and one upper set instead of building and merging one set per
        member; a member's same-object references are followed inline (``_Flat``). A member
        reached only through caveated relationships counts as possible; one reached again
        certainly is walked again (from the depth it was first walked at, so that the depth
        budget is spent no differently). Exact through data cycles (a cycle adds nothing to a
        union): nothing is cut short."""
        self._seen: dict[tuple[str, str], list[tuple[dict[str, int], bool, int]]] = {}
        self._lower: set[str] = set()
        self._upper: set[str] = set()
        self._wild = [False, False]  # certainly, possibly
        self._flat = _plan_of(self.schema).flat
        self._visit(t, oid, name, depth, True)
        lower_ids, upper_ids = self._lower, self._upper
        certain_wild, possible_wild = self._wild
        lower = SubjectSet(frozenset(lower_ids), certain_wild) if lower_ids or certain_wild else EMPTY
        if not possible_wild and upper_ids <= lower_ids:
            return lower, lower
        return lower, SubjectSet(frozenset(lower_ids | upper_ids), certain_wild or possible_wild)

    def _visit(self, t: str, oid: str, name: str, depth: int, certain: bool) -> None:
        # What was walked of this object: per walk, the members it covered (name -> hops from
        # the member walked), whether certainly, and the depth it was walked at.
        entries = self._seen.get((t, oid))
        if entries is not None:
            before: tuple[bool, int] | None = None
            for covered, was_certain, was_depth in entries:
                hops = covered.get(name)
                if hops is not None:
                    before = (was_certain, was_depth - hops)
                    if was_certain:
                        break
            if before is not None:
                if before[0] or not certain:
                    return
                depth = max(depth, before[1])  # now certain: walked again
            elif depth < 0:
                raise MaxDepthExceeded(f"lookup exceeded the maximum depth of {self.max_depth} at {t}:{oid}#{name}")
        else:
            if depth < 0:
                raise MaxDepthExceeded(f"lookup exceeded the maximum depth of {self.max_depth} at {t}:{oid}#{name}")
            entries = self._seen[(t, oid)] = []
        if self.grouped and (t, name) in self.grouped:
            assert self.groups is not None
            ids = self.groups.members(t, oid, name, self.subject_type, depth)
            if ids is not None:  # the group index: every member, however deep the nesting
                entries.append(({name: 0}, certain, depth))
                (self._lower if certain else self._upper).update(ids)
                return
        flat = self._flat.get((t, name))
        if flat is None:
            flat = self._flat[(t, name)] = _Flat.build(self.schema, t, name)
        if depth < flat.hops:  # an inlined member would be past the budget: one member at a time
            entries.append(({name: 0}, certain, depth))
            self._visit_one(t, oid, name, depth, certain)
            return
        entries.append((flat.members, certain, depth))  # each walked here whole, at its own depth
        if t == self.subject_type and (self.subject_relation in flat.members or (flat.this and self.subject_relation is None)):
            (self._lower if certain else self._upper).add(oid)  # a userset is a member of itself
        for relation, arrow, hops in flat.steps:
            if arrow is None:
                self._visit_relation(t, oid, relation, depth - hops, certain)
            else:
                self._visit_arrow(t, oid, relation, arrow, depth - hops, certain)

    def _visit_one(self, t: str, oid: str, name: str, depth: int, certain: bool) -> None:
        if t == self.subject_type and name == self.subject_relation:
            (self._lower if certain else self._upper).add(oid)  # a userset is a member of itself
        member = self.schema.definitions[t].members[name]
        if isinstance(member, Relation):
            self._visit_relation(t, oid, name, depth, certain)
        else:
            self._visit_rewrite(t, oid, member.rewrite, depth, certain)

    def _visit_relation(self, t: str, oid: str, name: str, depth: int, certain: bool) -> None:
        wildcards, usersets = self.allowed[(t, name)]
        stype, srel = self.subject_type, self.subject_relation
        direct, others = self._read(t, oid, name, True)
        if direct and srel is None:
            ids, wild = self._direct_ids(direct)
            if wild and stype in wildcards:
                self._wild[0 if certain else 1] = True
            (self._lower if certain else self._upper).update(ids)
        for st, sid, rrel, extra in others:
            sure = certain
            if extra is not None:
                caveat, expiration = extra
                if expiration is not None:
                    if expiration <= self.now:
                        continue
                    self.time_bound += 1
                sure = certain and caveat is None
            if st == stype and rrel == srel:
                if sid == WILDCARD:
                    if st in wildcards:
                        self._wild[0 if sure else 1] = True
                else:
                    (self._lower if sure else self._upper).add(sid)
            if rrel is not None and (st, rrel) in usersets:
                self._visit(st, sid, rrel, depth - 1, sure)

    def _visit_arrow(self, t: str, oid: str, tupleset: str, computed: str, depth: int, certain: bool) -> None:
        seen = self._arrow_targets(t, oid, tupleset)
        member = self.schema.member
        for (ttype, tid), sure in seen.items():
            if member(ttype, computed) is not None:
                self._visit(ttype, tid, computed, depth - 1, certain and sure)

    def _visit_rewrite(self, t: str, oid: str, node: Rewrite, depth: int, certain: bool) -> None:
        if isinstance(node, ComputedUserset):
            self._visit(t, oid, node.relation, depth - 1, certain)
        elif isinstance(node, Union):
            for child in node.children:
                self._visit_rewrite(t, oid, child, depth, certain)
        elif isinstance(node, TupleToUserset):
            self._visit_arrow(t, oid, node.tupleset, node.computed, depth, certain)
        elif isinstance(node, This):
            if t == self.subject_type and self.subject_relation is None:
                (self._lower if certain else self._upper).add(oid)
        else:  # Nil; intersections, exclusions and `.all()` never reach here (``unions``)
            assert isinstance(node, Nil)

    def _all(self, computed: str, targets: dict[tuple[str, str], bool], depth: int) -> Bounds:
        """``tupleset.all(computed)`` over ``targets`` (each: whether its relationship is
        certain): the subjects every target grants."""
        parts: list[Bounds] = []
        for (ttype, tid), certain in targets.items():
            if self.schema.member(ttype, computed) is None:
                parts.append(NOTHING)
                continue
            tl, tu = self.member(ttype, tid, computed, depth - 1)
            parts.append((tl if certain else EMPTY, tu))
        if not parts:
            return NOTHING
        lower, upper = parts[0]
        for pl, pu in parts[1:]:
            lower, upper = lower.intersect(pl), upper.intersect(pu)
        if not all(targets.values()):
            lower = EMPTY  # a caveated target may or may not count among "all"
        return lower, upper


# -- what LookupSubjects knows of a schema -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _SubjectsPlan:
    """Per schema: each relation's allowed wildcard types and subject sets, and the members
    whose every reachable member is a union of relations, computed references and ``any``
    arrows (no intersection, exclusion or ``.all()``): ``unions``."""

    allowed: dict[tuple[str, str], tuple[frozenset[str], frozenset[tuple[str, str]]]]
    unions: frozenset[tuple[str, str]]
    flat: dict[tuple[str, str], _Flat] = field(default_factory=dict)  # built on first use (``_Flat``)

    @classmethod
    def build(cls, schema: CompiledSchema) -> _SubjectsPlan:
        allowed: dict[tuple[str, str], tuple[frozenset[str], frozenset[tuple[str, str]]]] = {}
        succ: dict[tuple[str, str], set[tuple[str, str]]] = {}
        impure: set[tuple[str, str]] = set()
        for t, definition in schema.definitions.items():
            for name, member in definition.members.items():
                out: set[tuple[str, str]] = set()
                if isinstance(member, Relation):
                    allowed[(t, name)] = (
                        frozenset(a.type for a in member.allowed if a.wildcard),
                        frozenset((a.type, a.relation) for a in member.allowed if a.relation is not None),
                    )
                    out.update((a.type, a.relation) for a in member.allowed if a.relation is not None)
                elif not _unions_only(schema, t, member.rewrite, out):
                    impure.add((t, name))
                succ[(t, name)] = out
        # A member is a union only if nothing it reaches is impure: walk the edges backwards.
        back: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        for source, targets in succ.items():
            for target in targets:
                back[target].append(source)
        stack = list(impure)
        while stack:
            for source in back.get(stack.pop(), ()):
                if source not in impure:
                    impure.add(source)
                    stack.append(source)
        return cls(allowed, frozenset(succ) - impure)


@dataclass(frozen=True, slots=True)
class _Flat:
    """A union member with its same-object references inlined, as the check plan inlines
    them (``read = reader + edit``, ``edit = editor + approve``: one pass over the object).

    ``steps``: in the order the member-by-member walk meets them, each relation to read
    (``(relation, None, hops)``) and each arrow (``(tupleset, computed, hops)``), ``hops`` the
    computed references on the way (each one level of depth); ``members``: every member
    inlined, with its hops (``hops``: the most; read only); ``this``: a ``_this`` among them."""

    steps: tuple[tuple[str, str | None, int], ...]
    members: dict[str, int]
    hops: int
    this: bool

    @classmethod
    def build(cls, schema: CompiledSchema, t: str, name: str) -> _Flat:
        steps: list[tuple[str, str | None, int]] = []
        members: dict[str, int] = {}
        this = False

        def member(relation: str, hops: int) -> None:
            if relation in members:
                return
            members[relation] = hops
            found = schema.definitions[t].members[relation]
            if isinstance(found, Relation):
                steps.append((relation, None, hops))
            else:
                rewrite(found.rewrite, hops)

        def rewrite(node: Rewrite, hops: int) -> None:
            nonlocal this
            if isinstance(node, ComputedUserset):
                member(node.relation, hops + 1)
            elif isinstance(node, Union):
                for child in node.children:
                    rewrite(child, hops)
            elif isinstance(node, TupleToUserset):
                steps.append((node.tupleset, node.computed, hops))
            elif isinstance(node, This):
                this = True

        member(name, 0)
        return cls(tuple(steps), members, max(members.values()), this)


def _unions_only(schema: CompiledSchema, t: str, rewrite: Rewrite, out: set[tuple[str, str]]) -> bool:
    """Whether ``rewrite`` is a union of computed references, ``any`` arrows, ``_this`` and
    nil; ``out`` gains the members it refers to."""
    if isinstance(rewrite, ComputedUserset):
        out.add((t, rewrite.relation))
        return True
    if isinstance(rewrite, Union):
        pure = True
        for child in rewrite.children:  # every child, so that ``out`` gains all it refers to
            pure = _unions_only(schema, t, child, out) and pure
        return pure
    if isinstance(rewrite, TupleToUserset):
        out.add((t, rewrite.tupleset))
        relation = schema.definitions[t].relation(rewrite.tupleset)
        for allowed in relation.allowed if relation else ():
            if schema.member(allowed.type, rewrite.computed) is not None:
                out.add((allowed.type, rewrite.computed))
        return rewrite.mode == "any"
    return isinstance(rewrite, This | Nil)


def _plan_of(schema: CompiledSchema) -> _SubjectsPlan:
    return schema.derive(_SubjectsPlan, _SubjectsPlan.build)


@dataclass(frozen=True, slots=True)
class FoundSubjects:
    """LookupSubjects' answer: concrete subject ids with their answers, and the wildcard."""

    subjects: list[tuple[str, Result]]
    wildcard: Result  # NO when no wildcard grant
    excluded: frozenset[str]
    lasting: bool = False  # the same for every request at this revision: no caveat, expiration or cycle in the walk
    granted: bool = False  # every answer in ``subjects`` is HAS (``wildcard`` aside)


def lookup_subjects(
    checker: LocalChecker, rtype: str, rid: str, permission: str, subject_type: str, subject_relation: str | None,
    cancelled: Callable[[], bool] | None = None, lasting: RevisionMemo | None = None,
) -> FoundSubjects:
    """The subjects ``subject_type[#subject_relation]`` with ``permission`` on ``rtype:rid``:
    those certainly granted, and the others the walk found possibly granted, settled by a
    forward check each. ``cancelled``: see ``dispatch.Deadline``; ``lasting``: see
    ``SubjectWalker``."""
    checker.schema.require(rtype, permission)
    if subject_type not in checker.schema.definitions:
        raise UnknownDefinition(f"subject type `{subject_type}` not found", definition=subject_type)
    if subject_relation is not None:
        checker.schema.require(subject_type, subject_relation)
    walker = SubjectWalker(checker, subject_type, subject_relation, cancelled, lasting=lasting)
    return settle(checker, walker, rtype, rid, permission)


def settle(checker: LocalChecker, walker: SubjectWalker, rtype: str, rid: str, permission: str) -> FoundSubjects:
    """LookupSubjects' answer from ``walker``'s bounds: the subjects certainly granted, and
    the others possibly granted settled by a forward check each (``checker`` reads what the
    walker reads). A walker may serve many resources: its memo holds for its one revision."""
    subject_type, subject_relation = walker.subject_type, walker.subject_relation
    if walker.shared is None and (rtype, permission) in _plan_of(checker.schema).unions:
        lower, upper = walker.gather(rtype, rid, permission, checker.max_depth)
    else:
        lower, upper = walker.member(rtype, rid, permission, checker.max_depth)
    results: list[tuple[str, Result]] = []
    if upper is lower and not lower.wildcard:  # no caveat, no wildcard: every id certain (the usual case)
        lasting = walker.time_bound == 0 and walker.cuts == 0
        return FoundSubjects([(sid, HAS) for sid in sorted(lower.ids)], NO, frozenset(), lasting, True)
    for sid in sorted(upper.ids | lower.ids):
        if lower.has(sid) and sid in lower.ids:
            results.append((sid, HAS))
        elif upper.has(sid):
            walker.deadline.step()
            answer = checker.check(rtype, rid, permission, SubjectRef(subject_type, sid, subject_relation))
            if answer is not NO:
                results.append((sid, answer))
    wildcard: Result = NO
    excluded: frozenset[str] = frozenset()
    if lower.wildcard:
        wildcard, excluded = HAS, lower.excluded
    elif upper.wildcard:
        wildcard = checker.check(rtype, rid, permission, SubjectRef(subject_type, WILDCARD))
        if wildcard is NO:  # the exact wildcard relationship is caveated below an arrow: undecided
            wildcard = Conditional(frozenset())
        excluded = upper.excluded
    return FoundSubjects(results, wildcard, excluded)
