"""Which stored relationships an answer can depend on: what lets cached answers outlive a write.

For each (definition, relation or permission) of a schema, the relationship sets its answers
can read: ``(type, relation)`` pairs, each marked *local* (read on the object asked about
itself: its own relations, through ``+ - &`` and computed usersets) or *hopped* (read on other
objects, reached through an arrow or a subject set). A write of ``C:c#rel@...`` can change an
answer about ``T:t#p`` only if ``(C, rel)`` is among ``T#p``'s hopped sets (any ``t``), or among
its local ones and ``T:t`` is ``C:c``. ``Invalidation`` is that test, over-approximated at the
type level for hops (no walk of the data), so an answer it keeps is one the write cannot have
changed; ``cache.CheckCache`` carries the answers it keeps to the write's revision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Permission,
    Relation,
    Rewrite,
    TupleToUserset,
    leaves,
)

Member = tuple[str, str]  # (definition, relation or permission)
Dependency = tuple[str, str, bool]  # (type, relation read, hopped)


def dependencies(schema: CompiledSchema) -> Dependencies:
    """Every member's dependencies, kept with the schema (``derived``): a fixpoint over the
    schema's graph, which may be recursive (``parent->view``)."""
    found = schema.derived.get(Dependencies)
    if found is None:
        found = schema.derived[Dependencies] = Dependencies.build(schema)
    assert isinstance(found, Dependencies)
    return found


@dataclass(frozen=True)
class Dependencies:
    of: dict[Member, frozenset[Dependency]]
    # The inverse: (type, relation) written -> members that read it on other objects, and
    # the members of that type that read it on the object itself.
    hopped_readers: dict[Member, frozenset[Member]] = field(default_factory=dict)
    local_readers: dict[Member, frozenset[str]] = field(default_factory=dict)

    @classmethod
    def build(cls, schema: CompiledSchema) -> Dependencies:
        # Direct edges: member -> (member it consults, hop?) and the relationship sets it reads.
        edges: dict[Member, set[tuple[Member, bool]]] = {}
        reads: dict[Member, set[Dependency]] = {}
        for tname, definition in schema.definitions.items():
            for name, member in definition.members.items():
                key = (tname, name)
                edges[key], reads[key] = set(), set()
                if isinstance(member, Relation):
                    reads[key].add((tname, name, False))
                    for allowed in member.allowed:
                        if allowed.relation is not None and schema.member(allowed.type, allowed.relation) is not None:
                            edges[key].add(((allowed.type, allowed.relation), True))  # a subject set
                elif isinstance(member, Permission):
                    _walk(schema, tname, member.rewrite, edges[key], reads[key])
        # Fixpoint: a member's dependencies are what it reads and what the members it consults
        # depend on, hopped once any step on the way hops.
        deps: dict[Member, set[Dependency]] = {key: set(value) for key, value in reads.items()}
        changed = True
        while changed:
            changed = False
            for key, out in edges.items():
                mine = deps[key]
                before = len(mine)
                for target, hop in out:
                    for t, r, far in list(deps.get(target, ())):
                        mine.add((t, r, far or hop))
                if len(mine) != before:
                    changed = True
        of = {key: frozenset(value) for key, value in deps.items()}
        hopped: dict[Member, set[Member]] = {}
        local: dict[Member, set[str]] = {}
        for key, value in of.items():
            for t, r, was_hopped in value:
                if was_hopped:
                    hopped.setdefault((t, r), set()).add(key)
                else:
                    assert t == key[0]
                    local.setdefault((t, r), set()).add(key[1])
        return cls(of, {k: frozenset(v) for k, v in hopped.items()}, {k: frozenset(v) for k, v in local.items()})


def _walk(schema: CompiledSchema, tname: str, rewrite: Rewrite, edges: set[tuple[Member, bool]], reads: set[Dependency]) -> None:
    for leaf in leaves(rewrite):  # Nil and This (``self``) read nothing stored
        if isinstance(leaf, ComputedUserset):
            if schema.member(tname, leaf.relation) is not None:
                edges.add(((tname, leaf.relation), False))
        elif isinstance(leaf, TupleToUserset):
            tupleset = schema.member(tname, leaf.tupleset)
            reads.add((tname, leaf.tupleset, False))
            if isinstance(tupleset, Relation):
                for allowed in tupleset.allowed:
                    if schema.member(allowed.type, leaf.computed) is not None:
                        edges.add(((allowed.type, leaf.computed), True))


@dataclass
class Invalidation:
    """What writes since a revision may have changed: members of any object (``members``)
    and members of single objects (``objects``). ``stale(type, id, member)`` says whether an
    answer from before those writes may be wrong now."""

    members: set[Member] = field(default_factory=set)
    objects: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def add(self, deps: Dependencies, rtype: str, rid: str, relation: str) -> None:
        """A relationship ``rtype:rid#relation@...`` was written (created, changed or deleted)."""
        self.members |= deps.hopped_readers.get((rtype, relation), frozenset())
        local = deps.local_readers.get((rtype, relation))
        if local:
            self.objects.setdefault((rtype, rid), set()).update(local)

    def add_all(self, deps: Dependencies, written: Iterable[tuple[str, str, str]]) -> None:
        """``add`` of each (type, id, relation) written, each relation's readers looked up once."""
        hopped, local_of = deps.hopped_readers, deps.local_readers
        members = self.members
        locals_: dict[tuple[str, str], frozenset[str] | None] = {}
        objects = self.objects
        for rtype, rid, relation in written:
            key = (rtype, relation)
            if key not in locals_:
                members |= hopped.get(key, frozenset())
                locals_[key] = local_of.get(key)
            local = locals_[key]
            if local:
                dirty = objects.get((rtype, rid))
                if dirty is None:
                    objects[(rtype, rid)] = set(local)
                else:
                    dirty |= local

    def stale(self, rtype: str, rid: str, member: str) -> bool:
        if (rtype, member) in self.members:
            return True
        dirty = self.objects.get((rtype, rid))
        return dirty is not None and member in dirty

    def size(self) -> int:
        return len(self.members) + len(self.objects)
