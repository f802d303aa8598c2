"""Which stored relationships an answer can depend on: what lets cached answers outlive a write.

For each (definition, relation or permission) of a schema, the relationship sets its answers
can read: ``(type, relation)`` pairs, each marked *local* (read on the object asked about
itself: its own relations, through ``+ - &`` and computed usersets) or *hopped* (read on other
objects, reached through an arrow or a subject set). A write of ``C:c#rel@...`` can change an
answer about ``T:t#p`` only if ``(C, rel)`` is among ``T#p``'s hopped sets (any ``t``), or among
its local ones and ``T:t`` is ``C:c``. ``Changes`` keeps that test for a run of writes,
over-approximated at the type level for hops (no walk of the data), so an answer it keeps is
one the writes cannot have changed; ``cache.CheckCache`` files such answers under the revision
since which nothing kept has changed them, so they are found at the writes' revisions too.
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
    return schema.derive(Dependencies, Dependencies.build)


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


class Changes:
    """What the writes after revision ``anchor`` may have changed, each member of any object
    and each member of single objects with the newest revision whose write may have changed
    it: so the answer to a question at revision R (no older than the newest write kept here)
    is the answer at ``settled(...)``, the oldest revision from which no kept write may have
    changed it. ``cache.CheckCache`` files answers under that revision, so an answer stays
    found across any number of writes that cannot change it, one lookup each.

    Only one writer marks (``Engine.write``, under its lock), after its revision is committed
    and before the carry names that revision; readers read meanwhile without a lock: a mark
    newer than the revision they ask about makes ``settled`` answer that revision itself
    (always right, since nothing is known of the marks it replaced)."""

    __slots__ = ("anchor", "members", "objects")

    def __init__(self, anchor: int) -> None:
        self.anchor = anchor
        self.members: dict[Member, int] = {}
        self.objects: dict[tuple[str, str], dict[str, int]] = {}

    def mark(self, deps: Dependencies, revision: int, written: Iterable[tuple[str, str, str]]) -> None:
        """The write that made ``revision`` wrote these (type, id, relation): created, changed or
        deleted relationships. Revisions are marked in increasing order."""
        hopped, local_of = deps.hopped_readers, deps.local_readers
        members, objects = self.members, self.objects
        seen: set[tuple[str, str]] = set()
        for rtype, rid, relation in written:
            key = (rtype, relation)
            if key not in seen:
                seen.add(key)
                for member in hopped.get(key, ()):
                    members[member] = revision
            local = local_of.get(key)
            if local:
                dirty = objects.get((rtype, rid))
                if dirty is None:
                    objects[(rtype, rid)] = dict.fromkeys(local, revision)
                else:
                    for name in local:
                        dirty[name] = revision

    def settled(self, rtype: str, rid: str, member: str, at: int) -> int:
        """The oldest revision (``anchor`` at the earliest) whose answer to ``rtype:rid#member``
        is its answer at ``at`` (``at`` itself when a newer write was marked meanwhile)."""
        found = self.members.get((rtype, member), self.anchor)
        dirty = self.objects.get((rtype, rid))
        if dirty is not None:
            changed = dirty.get(member)
            if changed is not None and changed > found:
                found = changed
        return found if found <= at else at

    def size(self) -> int:
        return len(self.members) + len(self.objects)
