"""Who gains and who loses which permission: between two schemas on the same relationships
(``schema_impact``), or between the relationships before and after a write (``write_impact``).

Each side is a schema and a Reader; a (resource, member) is compared by computing its holders
on both sides with LookupSubjects' machinery (``lookup.SubjectWalker`` and ``lookup.settle``),
for every terminal subject type that can reach the member on either side: concrete subjects
one by one, and the wildcard (everyone else) as one subject ``type:*``. An answer moves up
(NO -> CONDITIONAL -> HAS: gained) or down (lost).

What is compared, so that the work follows the change and not the size of the store:

1. the members whose own evaluation changed (``schema.diff.changed_members``: expression,
   allowed subject types, caveats, added or removed), on every object of their type; for a
   write, the relations it writes, on the objects it writes;
2. then, from each (object, member) whose holders differ, its dependents, reached through the
   relationships and the schema (same-object references and arrows' relations, subject sets
   ``group#member``, arrows' targets), with the edges of both schemas; a dependent whose
   holders do not differ stops the walk there, since whatever rests on it answers the same.

A dependent's answer for a subject is a function of the answers its operands give for that
same subject (and of the relationships, the same on both sides of a schema diff): if no operand
changed for any subject, it did not change. Memory: the walkers' memos and the checker's reads
are dropped every ``REFRESH`` comparisons; what grows is the set of (object, member) pairs
already compared in step 2 and what the caller keeps of the changes.
"""

from __future__ import annotations

import datetime as _dt
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Final

from ..model import WILDCARD, RelationshipFilter, SubjectRef
from ..results import AccessChange, AccessChanges
from ..schema.diff import MemberRef, changed_members, has_self
from ..schema.types import (
    AllowedType,
    CompiledSchema,
    ComputedUserset,
    Permission,
    Relation,
    This,
    TupleToUserset,
    leaves,
)
from ..storage.base import Reader
from .build import build_checker
from .dispatch import HAS, NO, Result
from .lookup import EMPTY, Bounds, FoundSubjects, SubjectSet, SubjectWalker, settle

Node = tuple[str, str, str]  # (type, id, member)

REFRESH: Final = 2_000
"""Comparisons after which both sides drop their walkers' memos and their checkers' reads."""


def level(result: Result) -> int:
    """NO 0, CONDITIONAL 1, HAS 2: a change up is a gain."""
    return 2 if result is HAS else 0 if result is NO else 1


# -- the schema's edges, both sides together ----------------------------------------------------


@dataclass
class Edges:
    """Where a change of (type, member) on an object can show, in any of the schemas given:
    ``same_object``: members of the same object computed from it (or walking an arrow over
    it); ``usersets``: relations that allow it as a subject set; ``arrows``: (type, member,
    tupleset, subject relations) of arrows that reach it."""

    same_object: dict[MemberRef, set[MemberRef]] = field(default_factory=dict)
    usersets: dict[MemberRef, set[MemberRef]] = field(default_factory=dict)
    arrows: dict[MemberRef, set[tuple[str, str, str, str | None]]] = field(default_factory=dict)

    @classmethod
    def of(cls, *schemas: CompiledSchema) -> Edges:
        edges = cls()
        for schema in schemas:
            for t, item in schema.definitions.items():
                for name, member in item.members.items():
                    if isinstance(member, Relation):
                        for a in member.allowed:
                            if a.relation is not None:
                                edges.usersets.setdefault((a.type, a.relation), set()).add((t, name))
                        continue
                    for leaf in leaves(member.rewrite):
                        if isinstance(leaf, ComputedUserset):
                            edges.same_object.setdefault((t, leaf.relation), set()).add((t, name))
                        elif isinstance(leaf, TupleToUserset):
                            edges.same_object.setdefault((t, leaf.tupleset), set()).add((t, name))
                            srels = {None} | {a.relation for s in schemas for a in _allowed(s, t, leaf.tupleset)}
                            for other in schemas:
                                for target, target_def in other.definitions.items():
                                    if leaf.computed in target_def.members:
                                        into = edges.arrows.setdefault((target, leaf.computed), set())
                                        into.update((t, name, leaf.tupleset, r) for r in srels)
        return edges


def _allowed(schema: CompiledSchema, t: str, relation: str) -> tuple[AllowedType, ...]:
    member = schema.member(t, relation)
    return member.allowed if isinstance(member, Relation) else ()


def terminal_types(schema: CompiledSchema, start: MemberRef) -> set[str]:
    """The subject types whose subjects (not subject sets) can hold ``start``: those its
    relations allow directly or as a wildcard, through subject sets and arrows (to any type
    with the arrow's member: a check follows whatever the relationship names), and the type
    itself where ``self`` is named."""
    out: set[str] = set()
    seen = {start}
    stack = [start]
    while stack:
        t, name = stack.pop()
        member = schema.member(t, name)
        nexts: list[MemberRef] = []
        if isinstance(member, Relation):
            for a in member.allowed:
                if a.relation is None:
                    out.add(a.type)
                else:
                    nexts.append((a.type, a.relation))
        elif isinstance(member, Permission):
            for leaf in leaves(member.rewrite):
                if isinstance(leaf, ComputedUserset):
                    nexts.append((t, leaf.relation))
                elif isinstance(leaf, TupleToUserset):
                    nexts += [(d, leaf.computed) for d, item in schema.definitions.items() if leaf.computed in item.members]
                elif isinstance(leaf, This):
                    out.add(t)
        for ref in nexts:
            if ref not in seen:
                seen.add(ref)
                stack.append(ref)
    return out


# -- one side ---------------------------------------------------------------------------------

Memo = dict[tuple[str, str, str], Bounds]


class Side:
    """A schema over a Reader at one ``now``: the holders of a member on an object."""

    def __init__(
        self, schema: CompiledSchema, reader: Reader, *, max_depth: int, now: _dt.datetime, deadline: float | None
    ) -> None:
        self.schema, self.reader, self.now = schema, reader, now
        self.max_depth, self.deadline = max_depth, deadline
        self.stable: frozenset[MemberRef] = frozenset()
        self.shared: dict[str, Memo] | None = None  # by subject type, with the other side
        self.refresh()

    def refresh(self) -> None:
        """Forget what earlier objects read (bounded memory)."""
        self._checker = build_checker(
            self.schema, self.reader, max_depth=self.max_depth, deadline=self.deadline, now=self.now
        )
        self._walkers: dict[str, SubjectWalker] = {}

    def _walker(self, subject_type: str) -> SubjectWalker:
        walker = self._walkers.get(subject_type)
        if walker is None:
            shared = None if self.shared is None else self.shared.setdefault(subject_type, {})
            walker = self._walkers[subject_type] = SubjectWalker(
                self._checker, subject_type, None, shared=shared, stable=self.stable
            )
        return walker

    def bounds(self, t: str, oid: str, name: str, subject_type: str) -> Bounds | None:
        """(certainly, possibly) holders of ``subject_type``; None where there is no such member."""
        if self.schema.member(t, name) is None:
            return None
        return self._walker(subject_type).member(t, oid, name, self.max_depth)

    def holders(self, t: str, oid: str, name: str, subject_type: str) -> FoundSubjects | None:
        """Who of ``subject_type`` has ``t:oid#name``, caveats settled by checks; None where
        the schema has no such member."""
        if self.schema.member(t, name) is None:
            return None
        return settle(self._checker, self._walker(subject_type), t, oid, name)


def _answer(found: FoundSubjects | None, given: dict[str, Result], sid: str) -> Result:
    if found is None:
        return NO
    if sid in given:
        return given[sid]
    if found.wildcard is not NO and sid not in found.excluded:
        return found.wildcard
    return NO


def differences(old: FoundSubjects | None, new: FoundSubjects | None) -> list[tuple[str, Result, Result]]:
    """(subject id, old answer, new answer) for every subject whose answer differs; ``*`` is
    the wildcard, standing for every subject whose answers are the wildcard's on both sides
    (those are not listed one by one)."""
    o = dict(old.subjects) if old else {}
    n = dict(new.subjects) if new else {}
    ids = set(o) | set(n) | (old.excluded if old else frozenset()) | (new.excluded if new else frozenset())
    wa = old.wildcard if old else NO
    wb = new.wildcard if new else NO
    out: list[tuple[str, Result, Result]] = []
    for sid in sorted(ids):
        a, b = _answer(old, o, sid), _answer(new, n, sid)
        if a != b and (a != wa or b != wb):  # one whose change is the wildcard's is reported as `*`
            out.append((sid, a, b))
    if wa != wb:
        out.append((WILDCARD, wa, wb))
    return out




def _set_differences(old: SubjectSet, new: SubjectSet) -> list[tuple[str, Result, Result]]:
    """``differences`` of two sets known exactly (no caveat on either side): only the ids
    where the two differ are looked at."""
    wa, wb = (HAS if old.wildcard else NO), (HAS if new.wildcard else NO)
    ids = (old.ids ^ new.ids) | (old.excluded ^ new.excluded)
    if wa != wb:
        ids |= old.ids | new.ids | old.excluded | new.excluded
    out: list[tuple[str, Result, Result]] = []
    for sid in sorted(ids):
        a, b = (HAS if old.has(sid) else NO), (HAS if new.has(sid) else NO)
        if a != b and (a != wa or b != wb):
            out.append((sid, a, b))
    if wa != wb:
        out.append((WILDCARD, wa, wb))
    return out


def stable_members(old: CompiledSchema, new: CompiledSchema, changed: Iterable[MemberRef], edges: Edges) -> frozenset[MemberRef]:
    """The members of both schemas that neither changed nor depend on a change, in either
    schema: they evaluate alike on both sides, so both sides may share their holders."""
    unstable = set(changed)
    stack = list(unstable)
    while stack:
        node = stack.pop()
        nexts = set(edges.same_object.get(node, ())) | set(edges.usersets.get(node, ()))
        nexts |= {(t, m) for t, m, _, _ in edges.arrows.get(node, ())}
        for n in nexts:
            if n not in unstable:
                unstable.add(n)
                stack.append(n)
    every = {(t, m) for s in (old, new) for t, d in s.definitions.items() for m in d.members}
    return frozenset(every - unstable)


# -- the comparison ---------------------------------------------------------------------------


class Comparison:
    """Compares (object, member) pairs between two sides and walks on from those that differ."""

    def __init__(
        self, old: Side, new: Side, readers: Iterable[Reader], changed: Iterable[MemberRef] | None = None
    ) -> None:
        """``changed``: the members whose definitions differ, when both sides read the same
        relationships (a schema diff); the members that rest on none of them share holders."""
        self.old, self.new = old, new
        self.readers = list(readers)
        self.edges = Edges.of(old.schema, new.schema)
        self._types: dict[MemberRef, list[str]] = {}
        self._uses = 0
        if changed is not None:
            stable = stable_members(old.schema, new.schema, changed, self.edges)
            shared: dict[str, Memo] = {}
            for side in (old, new):
                side.stable, side.shared = stable, shared
                side.refresh()

    def subject_types(self, t: str, name: str) -> list[str]:
        found = self._types.get((t, name))
        if found is None:
            types = terminal_types(self.old.schema, (t, name)) | terminal_types(self.new.schema, (t, name))
            found = self._types[(t, name)] = sorted(types)
        return found

    def is_permission(self, t: str, name: str) -> bool:
        return isinstance(self.old.schema.member(t, name), Permission) or isinstance(
            self.new.schema.member(t, name), Permission
        )

    def _differences(
        self, t: str, oid: str, name: str, stype: str
    ) -> list[tuple[str, Result, Result]] | tuple[frozenset[str], frozenset[str]]:
        """The subjects whose answers differ: ``(gained, lost)`` id sets where both sides are
        plain sets of ids (no caveat, no wildcard: the common case, compared with set
        operations only), else ``differences``' list."""
        a = self.old.bounds(t, oid, name, stype)
        b = self.new.bounds(t, oid, name, stype)
        if (a is None or a[0] == a[1]) and (b is None or b[0] == b[1]):  # no caveat: the sets are the answers
            old_set = EMPTY if a is None else a[0]
            new_set = EMPTY if b is None else b[0]
            if old_set == new_set:
                return []
            if not old_set.wildcard and not new_set.wildcard:
                return new_set.ids - old_set.ids, old_set.ids - new_set.ids
            return _set_differences(old_set, new_set)
        return differences(self.old.holders(t, oid, name, stype), self.new.holders(t, oid, name, stype))

    def compare(self, t: str, oid: str, name: str) -> tuple[bool, list[AccessChange | AccessChanges]]:
        """Whether the holders of ``t:oid#name`` differ, and the changes to report (only
        permissions are reported; relations still carry the walk on): plain ones as one
        AccessChanges per subject type, others one by one."""
        self._uses += 1
        if self._uses >= REFRESH:
            self._uses = 0
            if self.old.shared is not None:
                self.old.shared.clear()
            self.old.refresh()
            self.new.refresh()
        differ = False
        report = self.is_permission(t, name)
        changes: list[AccessChange | AccessChanges] = []
        for stype in self.subject_types(t, name):
            found = self._differences(t, oid, name, stype)
            if not found or found == (frozenset(), frozenset()):
                continue
            differ = True
            if not report:
                break
            if isinstance(found, tuple):
                changes.append(AccessChanges(t, oid, name, stype, *found))
                continue
            for sid, a, b in found:
                la, lb = level(a), level(b)
                if la != lb:
                    changes.append(AccessChange(t, oid, name, stype, sid, lb > la, max(la, lb) == 1))
        return differ, changes

    def dependents(self, node: Node) -> Iterator[Node]:
        """What may change when ``node``'s holders do, through either schema and any reader."""
        t, oid, name = node
        for target_type, target in self.edges.same_object.get((t, name), ()):
            yield target_type, oid, target
        for target_type, relation in self.edges.usersets.get((t, name), ()):
            for reader in self.readers:
                for rel in reader.resources(SubjectRef(t, oid, name), target_type, relation):
                    yield target_type, rel.resource.id, relation
        for target_type, target, tupleset, srel in self.edges.arrows.get((t, name), ()):
            for reader in self.readers:
                for rel in reader.resources(SubjectRef(t, oid, srel), target_type, tupleset):
                    yield target_type, rel.resource.id, target

    def walk(self, seeds: Iterable[Node], settled: Iterable[MemberRef] = ()) -> Iterator[AccessChange | AccessChanges]:
        """Compare each seed, then the dependents of those that differ, transitively; members in
        ``settled`` were compared on every object already and are skipped."""
        skip = set(settled)
        seen: set[Node] = set()
        queue: deque[Node] = deque()
        for seed in seeds:
            if seed not in seen:
                seen.add(seed)
                queue.append(seed)
        while queue:
            node = queue.popleft()
            differ, changes = self.compare(*node)
            yield from changes
            if differ:
                for nxt in self.dependents(node):
                    if nxt not in seen and (nxt[0], nxt[2]) not in skip:
                        seen.add(nxt)
                        queue.append(nxt)


def object_ids(reader: Reader, schemas: Iterable[CompiledSchema], t: str) -> Iterator[str]:
    """Every id of type ``t`` with a relationship, in order; where a schema names ``self`` on
    ``t``, also the ids that appear only as subjects (read from every relationship)."""
    schemas = list(schemas)
    if not any(has_self(s, t) for s in schemas):
        last = None
        for rel in reader.read(RelationshipFilter(resource_type=t)):
            if rel.resource.id != last:
                last = rel.resource.id
                yield last
        return
    ids: set[str] = set()
    for type_name in sorted({d for s in schemas for d in s.definitions}):
        for rel in reader.read(RelationshipFilter(resource_type=type_name)):
            if rel.resource.type == t:
                ids.add(rel.resource.id)
            if rel.subject.type == t and rel.subject.id != WILDCARD:
                ids.add(rel.subject.id)
    yield from sorted(ids)


def flatten(found: Iterable[AccessChange | AccessChanges]) -> Iterator[AccessChange]:
    """Each AccessChange of ``found``, those of an AccessChanges one by one (by subject id)."""
    for item in found:
        if isinstance(item, AccessChanges):
            yield from item
        else:
            yield item


def schema_impact(
    old: CompiledSchema, new: CompiledSchema, reader: Reader, *, max_depth: int, now: _dt.datetime | None = None,
    deadline: float | None = None,
) -> Iterator[AccessChange]:
    """Every change of answer between ``old`` and ``new`` on the relationships ``reader`` sees,
    grouped by member, in the order of the walk (see the module docstring)."""
    return flatten(schema_impact_grouped(old, new, reader, max_depth=max_depth, now=now, deadline=deadline))


def schema_impact_grouped(
    old: CompiledSchema, new: CompiledSchema, reader: Reader, *, max_depth: int, now: _dt.datetime | None = None,
    deadline: float | None = None,
) -> Iterator[AccessChange | AccessChanges]:
    """``schema_impact``, the plain changes of each (resource, permission, subject type) kept
    together (AccessChanges): what a report that counts them, or prints them as text, needs
    without an object per change."""
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    changed = sorted(changed_members(old, new))
    comparison = Comparison(
        Side(old, reader, max_depth=max_depth, now=moment, deadline=deadline),
        Side(new, reader, max_depth=max_depth, now=moment, deadline=deadline),
        [reader], changed,
    )
    seeds: list[Node] = []
    for t, name in changed:
        for oid in object_ids(reader, (old, new), t):
            differ, changes = comparison.compare(t, oid, name)
            yield from changes
            if differ:
                seeds.extend(n for n in comparison.dependents((t, oid, name)) if (n[0], n[2]) not in changed)
    yield from comparison.walk(seeds, changed)


def write_impact(
    schema: CompiledSchema, before: Reader, after: Reader, written: Iterable[Node], *, max_depth: int,
    now: _dt.datetime | None = None, deadline: float | None = None,
) -> Iterator[AccessChange]:
    """Every change of answer a write makes: ``before`` and ``after`` are the relationships
    without and with it, ``written`` the (type, id, relation) it writes."""
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    comparison = Comparison(
        Side(schema, before, max_depth=max_depth, now=moment, deadline=deadline),
        Side(schema, after, max_depth=max_depth, now=moment, deadline=deadline),
        [before, after],
    )
    yield from flatten(comparison.walk(written))


__all__ = ["AccessChange", "AccessChanges", "Comparison", "flatten", "schema_impact_grouped", "Edges", "Side", "differences", "level", "schema_impact", "terminal_types",
           "write_impact"]
