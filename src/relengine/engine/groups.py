"""The group index (Zanzibar's Leopard): the transitive closure of nested group membership,
kept in memory and moved forward along the store's changelog.

Which relations: a relation ``T#R`` whose allowed subject types are plain types (no wildcard)
and the subject set ``T#R`` itself, and nothing else (``group#member: user | group#member``),
found in the compiled schema (``indexed_relations``). For such a relation, "subject S holds
``T:g#R``" is exactly: a plain relationship ``T:x#R@S`` for some group ``x`` reachable from
``g`` through subject sets ``T:y#R`` (``g`` included). Permissions, arrows, exclusions and
intersections never enter: the walk answers them and asks the index only about ``T:g#R``.

What is kept per relation (the Leopard split, so that a member test does not depend on the size
of a group): ``desc[g]``, the groups reachable from ``g`` (itself included), its inverse
``anc``, and ``groups_of[S]``, the groups with a direct plain relationship to ``S``. A member
test intersects ``groups_of[S]`` with ``desc[g]``, iterating the smaller. Adding a member costs
O(1); adding a subject set ``p -> c`` costs |anc(p)| x |desc(c)|; removing one recomputes the
closure of p's ancestors. ``plain[g]``, ``groups_of`` the other way round for whole subjects
(by type), lets LookupSubjects list a group's members: the union over ``desc[g]`` (``members``).

What stays out: relationships with a caveat or an expiration, and any stored subject the index
does not model (a wildcard, a subject set of another relation): these are *impure*. While a
relation has any, the index still answers "yes" (a path of plain relationships is a yes for the
walk too) but leaves "no" to the walk, which sees caveats, expirations and the rest.

Revisions: an index is exact at one revision (``GroupIndex.revision``). A checker at that
revision asks it (``GroupView``); a checker at an older revision walks; a newer revision first
moves the index forward with the store's changelog (``watch``), or rebuilds it from a Reader if
the changelog no longer reaches back (garbage-collected) or the schema changed. Every query
takes the index's lock and re-checks the revision, so a move forward by another thread never
mixes two revisions into one answer.

Depth: the walk raises MaxDepthExceeded where a chain of subject sets outruns the depth
budget. The index answers a member test only where that cannot happen: where the groups
reachable from the group are no more than the budget left (a walk from it follows simple paths
among them); elsewhere the walk answers, as without the index.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable, Final, Iterator, Sequence

from ..errors import RevisionUnavailable
from ..model import WILDCARD, Relationship, RelationshipFilter, Revision, SubjectRef
from ..results import Change, Operation, RelationshipUpdate
from ..schema.types import CompiledSchema, Relation
from ..storage.base import DEADLINE_STEPS, Reader

Element = tuple[str, str, "str | None"]
"""A subject as the index keys it: (type, id, relation or None)."""

MAX_CATCH_UP: Final = 100_000
"""Changes (of any relation) the index reads to move forward before it rebuilds from a Reader
instead (an import of millions)."""


def indexed_relations(schema: CompiledSchema) -> frozenset[tuple[str, str]]:
    """The relations whose only subject sets are themselves (``T#R: a | b | T#R``, no
    wildcard): the ones the index answers for."""
    out: set[tuple[str, str]] = set()
    for t, definition in schema.definitions.items():
        for name, member in definition.members.items():
            if not isinstance(member, Relation):
                continue
            recursive = False
            eligible = True
            for allowed in member.allowed:
                if allowed.wildcard:
                    eligible = False
                elif allowed.relation is not None:
                    if allowed.type == t and allowed.relation == name:
                        recursive = True
                    else:
                        eligible = False
            if eligible and recursive:
                out.add((t, name))
    return frozenset(out)


class Closure:
    """The closure of one indexed relation ``T#R`` (see the module docstring)."""

    __slots__ = ("type", "relation", "desc", "anc", "children", "groups_of", "plain", "impure", "_longest")

    def __init__(self, rtype: str, relation: str) -> None:
        self.type = rtype
        self.relation = relation
        self.desc: dict[str, set[str]] = {}  # g -> groups reachable from g (g included)
        self.anc: dict[str, set[str]] = {}  # g -> groups that reach g (g included)
        self.children: dict[str, set[str]] = {}  # g -> c for each plain T:g#R@T:c#R
        self.groups_of: dict[Element, set[str]] = {}  # S -> g for each plain T:g#R@S
        # g -> subject type -> ids, for each plain T:g#R@type:id (a whole subject): ``groups_of``
        # the other way round, for LookupSubjects (``members``).
        self.plain: dict[str, dict[str, set[str]]] = {}
        self.impure: set[tuple[str, Element]] = set()  # relationships left to the walk
        # (the index's generation they hold at, g -> ``longest(g)``): worked out on first use
        self._longest: tuple[int, dict[str, int]] = (-1, {})

    # -- queries ---------------------------------------------------------------------
    def holds(self, group: str, subject: Element) -> bool:
        """Whether a path of plain relationships leads from ``T:group#R`` to ``subject``.
        Only C-level set operations: safe beside a concurrent move (``GroupView``)."""
        direct = self.groups_of.get(subject)
        if not direct:
            return False
        reach = self.desc.get(group)
        if reach is None:
            return group in direct
        if len(direct) <= len(reach):
            return not reach.isdisjoint(direct)
        return not direct.isdisjoint(reach)

    def longest(self, group: str, generation: int) -> int:
        """The most nested dispatches a walk from ``group`` can make among the groups it reaches:
        the longest path below ``group`` where those groups hold no cycle; else as many as they
        are (a walk follows a simple path, at most one fewer steps, and may then step once more
        into a group already on its path, where its depth is looked at before the cycle is cut);
        where links the closure leaves to the walk join groups, as many as the relation's groups.
        Worked out once per group and index ``generation`` (a value worked out while the closure
        changed is kept under the old generation, which no later query asks for)."""
        at, known = self._longest
        if at != generation:
            known = {}
            self._longest = (generation, known)
        found = known.get(group)
        if found is None:
            if any(element[2] is not None for _, element in self.impure):
                # Links the walk follows and the closure does not (caveated, expiring): only
                # the number of groups bounds it.
                groups = set(self.desc) | {g for g, _ in self.impure}
                groups |= {element[1] for _, element in self.impure if element[2] is not None}
                found = len(groups)
            else:
                found = self._longest_path(group)
            known[group] = found
        return found

    def _longest_path(self, group: str) -> int:
        children = self.children
        height: dict[str, int] = {}
        on_path: set[str] = set()
        stack: list[tuple[str, bool]] = [(group, False)]
        while stack:
            g, done = stack.pop()
            if done:
                on_path.discard(g)
                height[g] = 1 + max((height[c] for c in children.get(g, ())), default=-1)
                continue
            if g in height:
                continue
            if g in on_path:  # a cycle: bound by the groups reached instead
                return len(self.desc.get(group, ()))
            on_path.add(g)
            stack.append((g, True))
            for c in children.get(g, ()):
                if c in on_path:
                    return len(self.desc.get(group, ()))
                if c not in height:
                    stack.append((c, False))
        return height[group]

    def members(self, group: str, subject_type: str) -> set[str]:
        """The ids of the whole subjects of ``subject_type`` that hold ``T:group#R`` through
        plain relationships: the direct ones of every group ``group`` reaches. C-level set
        operations over a copy of the reach (``GroupView.members`` tells a concurrent move)."""
        reach = self.desc.get(group)
        plain = self.plain
        found: set[str] = set()
        for g in (group,) if reach is None else tuple(reach):
            typed = plain.get(g)
            if typed is not None:
                ids = typed.get(subject_type)
                if ids:
                    found |= ids
        return found

    @property
    def exact(self) -> bool:
        """Whether a "no" is exact (no caveated, expiring or unmodelled relationship)."""
        return not self.impure

    # -- changes ---------------------------------------------------------------------
    def _node(self, g: str) -> None:
        if g not in self.desc:
            self.desc[g] = {g}
            self.anc[g] = {g}

    def _is_plain(self, rel: Relationship) -> bool:
        s = rel.subject
        if rel.caveat is not None or rel.expiration is not None or s.id == WILDCARD:
            return False
        return s.relation is None or (s.type == self.type and s.relation == self.relation)

    def add(self, rel: Relationship) -> None:
        """A relationship of ``T#R`` is live (created, or touched: it may have changed from
        plain to caveated or back)."""
        g, s = rel.resource.id, rel.subject
        element: Element = (s.type, s.id, s.relation)
        if not self._is_plain(rel):
            self._remove_plain(g, element)
            self.impure.add((g, element))
            return
        self.impure.discard((g, element))
        groups = self.groups_of.get(element)
        if groups is None:
            groups = self.groups_of[element] = set()
        if g in groups:
            return
        groups.add(g)
        if s.relation is not None:
            self._link(g, s.id)
        else:
            typed = self.plain.get(g)
            if typed is None:
                typed = self.plain[g] = {}
            ids = typed.get(s.type)
            if ids is None:
                ids = typed[s.type] = set()
            ids.add(s.id)

    def remove(self, rel: Relationship) -> None:
        """A relationship of ``T#R`` was deleted."""
        s = rel.subject
        element: Element = (s.type, s.id, s.relation)
        self.impure.discard((rel.resource.id, element))
        self._remove_plain(rel.resource.id, element)

    def _remove_plain(self, g: str, element: Element) -> None:
        groups = self.groups_of.get(element)
        if groups is None or g not in groups:
            return
        groups.discard(g)
        if not groups:
            del self.groups_of[element]
        if element[2] is not None:
            self._unlink(g, element[1])
        else:
            typed = self.plain[g]
            ids = typed[element[0]]
            ids.discard(element[1])
            if not ids:
                del typed[element[0]]
                if not typed:
                    del self.plain[g]

    def _link(self, p: str, c: str) -> None:
        self._node(p)
        self._node(c)
        self.children.setdefault(p, set()).add(c)
        # The closure was transitive, so each group above p now reaches what c reaches. The loops
        # read one dict's sets and write the other's (a cycle only makes some unions no-ops).
        desc, anc = self.desc, self.anc
        below, above = desc[c], anc[p]
        for a in above:
            desc[a] |= below
        for d in below:
            anc[d] |= above

    def _unlink(self, p: str, c: str) -> None:
        kids = self.children.get(p)
        if kids is not None:
            kids.discard(c)
            if not kids:
                del self.children[p]
        # Only pairs (a, d) with a above p and d below c can be lost. Recompute the side that
        # is smaller: the ancestors of each d (walking parents up), or the reach of each a.
        above, below = self.anc.get(p, set()), self.desc.get(c, set())
        if len(below) <= len(above):
            for d in list(below):
                still = self._reach(d, up=True)
                for a in self.anc[d] - still:
                    self.desc[a].discard(d)
                self.anc[d] = still
        else:
            for a in list(above):
                still = self._reach(a, up=False)
                for d in self.desc[a] - still:
                    self.anc[d].discard(a)
                self.desc[a] = still

    def _reach(self, g: str, *, up: bool) -> set[str]:
        """The groups ``g`` reaches (``up``: the groups that reach ``g``), itself included."""
        seen = {g}
        stack = [g]
        children, parents = self.children, self.groups_of
        t, r = self.type, self.relation
        while stack:
            y = stack.pop()
            for x in (parents.get((t, y, r), ()) if up else children.get(y, ())):
                if x not in seen:
                    seen.add(x)
                    stack.append(x)
        return seen

    def pairs(self) -> int:
        """How many (group, reachable group) pairs the closure holds."""
        return sum(len(d) for d in self.desc.values())


@dataclass(frozen=True, slots=True)
class GroupIndexStatistics:
    revision: Revision | None
    relations: tuple[str, ...]  # "T#R" of each indexed relation
    groups: int
    closure_pairs: int
    direct_members: int
    impure: int
    builds: int
    changes_applied: int
    answers: int  # member tests the index answered (yes, or an exact no)


class GroupIndex:
    """The closures of a schema's indexed relations, exact at ``revision``; thread-safe.

    ``changes(after)`` lists the store's changes after a revision without blocking (the
    store's ``watch`` with a zero timeout); it raises RevisionUnavailable once they are
    garbage-collected, and the index then rebuilds from a Reader.
    """

    def __init__(self, changes: Callable[[Revision], Iterator[Change]]) -> None:
        self._changes = changes
        self._lock = threading.Lock()  # one move at a time; queries take no lock (see GroupView)
        # Bumped before and after every change of the closures (odd while one is under way):
        # a query that sees the same even value before and after read one state.
        self.generation = 0
        self._current: GroupView | None = None
        self.revision: int | None = None
        self._relations: frozenset[tuple[str, str]] = frozenset()
        self._closures: dict[tuple[str, str], Closure] = {}
        self._builds = 0
        self._applied = 0
        self.answers = 0

    def view(self, schema: CompiledSchema, reader: Reader, deadline: float | None = None) -> GroupView | None:
        """What a checker at ``reader``'s revision may ask, or None (walk): no relation of
        ``schema`` is indexed, the index is past that revision, or moving it there ran past
        ``deadline`` (a ``time.monotonic()`` instant; the move is dropped, the next one starts
        over, and the walk, which looks at the clock too, raises DeadlineExceeded)."""
        found = schema.derived.get(indexed_relations)  # indexed_relations_of, inlined (bench: deep_check)
        relations = found if isinstance(found, frozenset) else indexed_relations_of(schema)
        if not relations:
            return None
        wanted = reader.revision.value
        current = self._current  # one read: the view of the newest move, made under the lock
        if (
            current is not None and current.revision == wanted and current.generation == self.generation
            and (current.relations is relations or current.relations == relations)
        ):
            return current
        with self._lock:
            if self.revision != wanted or self._relations != relations:
                self.generation += 1  # odd: moving (queries in flight give up)
                try:
                    moved = self._move(relations, reader, deadline)
                except _OutOfTime:
                    self._drop()
                    moved = False
                except BaseException:
                    self._drop()  # a move cut short leaves no half-moved closure behind
                    raise
                finally:
                    self.generation += 1
                if not moved:
                    return None
            view = self._current = GroupView(self, wanted, self._closures, relations)
            return view

    def advance(self, revision: Revision, updates: Sequence[RelationshipUpdate] | None = None) -> None:
        """Move forward to ``revision`` now (a write through the Engine pays for its own
        maintenance); nothing if the index was never built or is already there. ``updates``:
        what the commit of ``revision`` applied, used where the index is at the revision just
        before it (else the changelog is read)."""
        with self._lock:
            if self.revision is None or self.revision >= revision.value:
                return
            self.generation += 1
            try:
                if updates is not None and self.revision == revision.value - 1:
                    self._apply(updates)
                    self.revision = revision.value
                else:
                    self._catch_up(revision.value)
            except RevisionUnavailable:
                self._drop()
            except BaseException:
                self._drop()
                raise
            finally:
                self.generation += 1

    def invalidate(self) -> None:
        """Forget everything (the next view rebuilds)."""
        with self._lock:
            self.generation += 2
            self._drop()

    def statistics(self) -> GroupIndexStatistics:
        with self._lock:
            closures = list(self._closures.values())
            return GroupIndexStatistics(
                revision=None if self.revision is None else Revision(self.revision),
                relations=tuple(sorted(f"{c.type}#{c.relation}" for c in closures)),
                groups=sum(len(c.desc) for c in closures),
                closure_pairs=sum(c.pairs() for c in closures),
                direct_members=sum(len(g) for c in closures for g in c.groups_of.values()),
                impure=sum(len(c.impure) for c in closures),
                builds=self._builds,
                changes_applied=self._applied,
                answers=self.answers,
            )

    # -- under the lock --------------------------------------------------------------
    def _drop(self) -> None:
        self.revision = None
        self._relations = frozenset()
        self._closures = {}

    def _move(self, relations: frozenset[tuple[str, str]], reader: Reader, deadline: float | None) -> bool:
        wanted = reader.revision.value
        if self.revision is not None and self._relations == relations and self.revision < wanted:
            try:
                if self._catch_up(wanted, deadline):
                    return True
            except RevisionUnavailable:
                pass  # the changes were collected: rebuild
        elif self.revision is not None and self._relations == relations and self.revision > wanted:
            return False  # an older revision: the walk answers it
        self._build(relations, reader, deadline)
        return True

    def _catch_up(self, wanted: int, deadline: float | None = None) -> bool:
        """Apply the changes up to ``wanted``; False (the index dropped) past ``MAX_CATCH_UP``
        changes: the caller rebuilds. A schema change changes nothing here: the closures hold
        stored relationships only, and which relations the index answers for is the schema's
        (``view`` compares them)."""
        assert self.revision is not None
        closures = self._closures
        seen = 0
        for change in self._changes(Revision(self.revision)):
            r = change.revision.value
            if r > wanted:
                break
            if seen % DEADLINE_STEPS == 0:
                _look(deadline)
            seen += 1
            if seen > MAX_CATCH_UP:
                self._drop()
                return False
            rel = change.relationship
            if rel is not None:
                closure = closures.get((rel.resource.type, rel.relation))
                if closure is not None:
                    if change.operation is Operation.DELETE:
                        closure.remove(rel)
                    else:
                        closure.add(rel)
                    self._applied += 1
        self.revision = wanted  # revisions with no change of ours (counters, guards) change nothing
        return True

    def _apply(self, updates: Sequence[RelationshipUpdate]) -> None:
        closures = self._closures
        for update in updates:
            rel = update.relationship
            closure = closures.get((rel.resource.type, rel.relation))
            if closure is not None:
                if update.operation is Operation.DELETE:
                    closure.remove(rel)
                else:  # CREATE, TOUCH: the relationship is live as given
                    closure.add(rel)
                self._applied += 1

    def _build(self, relations: frozenset[tuple[str, str]], reader: Reader, deadline: float | None) -> None:
        closures: dict[tuple[str, str], Closure] = {}
        for rtype, relation in sorted(relations):
            closure = closures[(rtype, relation)] = Closure(rtype, relation)
            for n, rel in enumerate(reader.read(RelationshipFilter(resource_type=rtype, relation=relation))):
                if n % DEADLINE_STEPS == 0:
                    _look(deadline)
                closure.add(rel)
        self._closures = closures
        self._relations = relations
        self.revision = reader.revision.value
        self._builds += 1


class _OutOfTime(Exception):
    """A move of the index ran past the request's deadline (never leaves ``GroupIndex.view``)."""


def _look(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise _OutOfTime


def indexed_relations_of(schema: CompiledSchema) -> frozenset[tuple[str, str]]:
    """``indexed_relations``, kept with the schema (``derived``)."""
    return schema.derive(indexed_relations, indexed_relations)


class GroupView:
    """The index as one checker sees it: answers only while the index is where it was made.

    Queries take no lock: the index's ``generation`` is read before and after (it changes,
    odd, while the closures change), and a query that saw it change says nothing (None: the
    walk answers). The set operations of a query run in C under the GIL, so a concurrent move
    cannot break one; the generation test rejects a mixed answer."""

    __slots__ = ("_index", "revision", "generation", "_closures", "relations")

    def __init__(
        self, index: GroupIndex, revision: int, closures: dict[tuple[str, str], Closure],
        relations: frozenset[tuple[str, str]],
    ) -> None:
        self._index = index
        self.revision = revision
        self.generation = index.generation
        self._closures = closures
        self.relations = relations

    def holds(self, rtype: str, group: str, relation: str, subject: SubjectRef, depth: int) -> bool | None:
        """True: ``subject`` holds ``rtype:group#relation``; False: it does not; None: the
        index cannot say (the walk decides). ``depth``: the walk's depth budget left there;
        where the groups below hold a chain that may be longer, the walk answers (it raises
        MaxDepthExceeded where its walk runs out, and the index must not answer otherwise)."""
        index = self._index
        generation = self.generation
        if index.generation != generation:
            return None
        closure = self._closures.get((rtype, relation))
        if closure is None:
            return None
        # The walk from the group makes at most ``Closure.longest`` nested dispatches, each one
        # level deeper: never more than the groups it reaches, where every link is the closure's
        # (the cheap test first).
        reach = closure.desc.get(group)
        if (closure.impure or (reach is not None and len(reach) > depth)) and closure.longest(group, generation) > depth:
            return None
        # Closure.holds, inlined (bench: deep_check): C-level set operations only.
        direct = closure.groups_of.get((subject.type, subject.id, subject.relation))
        if not direct:
            held = False
        elif reach is None:
            held = group in direct
        elif len(direct) <= len(reach):
            held = not reach.isdisjoint(direct)
        else:
            held = not direct.isdisjoint(reach)
        if not held and closure.impure:
            return None
        if index.generation != generation:
            return None
        index.answers += 1  # a statistic: an increment lost to a race costs nothing
        return held

    def members(self, rtype: str, group: str, relation: str, subject_type: str, depth: int) -> set[str] | None:
        """The ids of the subjects ``subject_type:id`` holding ``rtype:group#relation``, or None
        where the index cannot say (the walk decides): a relation it does not hold, one with a
        caveated, expiring or unmodelled relationship (the walk tells certain from possible),
        a reach longer than the depth budget left (as ``holds``), or a move under way."""
        index = self._index
        generation = self.generation
        if index.generation != generation:
            return None
        closure = self._closures.get((rtype, relation))
        if closure is None or not closure.exact:
            return None
        reach = closure.desc.get(group)
        if reach is not None and len(reach) > depth and closure.longest(group, generation) > depth:
            return None
        try:
            found = closure.members(group, subject_type)
        except RuntimeError:  # a set changed size under a concurrent move
            return None
        if index.generation != generation:
            return None
        index.answers += 1
        return found


__all__ = ["Closure", "GroupIndex", "GroupIndexStatistics", "GroupView", "indexed_relations"]
