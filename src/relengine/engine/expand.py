"""Expand: the userset tree of a relation or permission on one object, one revision.

Leaves list the direct subjects of a relation (usersets appear as subjects, not expanded);
permissions expand into union / intersection / exclusion nodes, computed usersets into the
referenced relation's tree, arrows into a union over the arrow's targets.

Both walks here honour the request's depth budget (``max_depth``, one hop per computed userset,
arrow target or expanded userset) and its deadline (a ``time.monotonic()`` instant; the clock
is looked at every few hundred steps), as a check does, and stop when the caller has gone
(``cancelled``, asked as often; see ``dispatch.Deadline``).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Callable

from ..errors import MaxDepthExceeded
from ..model import ObjectRef, SubjectRef
from ..results import ExpandNode
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
from .dispatch import Deadline


def expand(
    schema: CompiledSchema,
    reader: Reader,
    resource: ObjectRef,
    relation: str,
    *,
    max_depth: int = 50,
    now: _dt.datetime | None = None,
    deadline: float | None = None,
    cancelled: Callable[[], bool] | None = None,
    spicedb: bool = False,
) -> ExpandNode:
    """The tree of ``resource#relation``. With ``spicedb``, in the shape of SpiceDB's
    ExpandPermissionTree: every permission is an operator node of its own (one with a single
    operand a union of one child), and an arrow is a union (``.all()``: an intersection) named
    as the permission it appears in, whose children are its targets' whole trees."""
    schema.require(resource.type, relation)
    clock = Deadline(deadline, "expand", cancelled)
    return _Expander(schema, reader, max_depth, now, clock, spicedb).member(resource, relation, max_depth)


class _Expander:
    """One expand over the schema and reader of one revision, within a depth budget and a
    deadline. ``now`` decides which expiring relationships are live."""

    def __init__(
        self, schema: CompiledSchema, reader: Reader, max_depth: int, now: _dt.datetime | None, deadline: Deadline,
        spicedb: bool = False,
    ) -> None:
        self.spicedb = spicedb
        self.schema = schema
        self.reader = reader
        self.max_depth = max_depth
        self.now = now or _dt.datetime.now(_dt.timezone.utc)
        self.deadline = deadline

    def enter(self, depth: int) -> None:
        """Before a step ``depth`` hops from the top: the budget and the clock."""
        if depth < 0:
            raise MaxDepthExceeded(f"expand exceeded the maximum depth of {self.max_depth}")
        self.deadline.step()

    def member(self, resource: ObjectRef, relation: str, depth: int) -> ExpandNode:
        self.enter(depth)
        member = self.schema.definitions[resource.type].members[relation]
        if isinstance(member, Relation):
            subjects = tuple(
                rel.subject
                for rel in self.deadline.rows(self.reader.subjects(resource.type, resource.id, relation))
                if rel.expiration is None or rel.expiration > self.now
            )
            return ExpandNode("leaf", resource, relation, subjects=subjects)
        tree = self.rewrite(resource, relation, member.rewrite, depth)
        if self.spicedb and not isinstance(member.rewrite, Union | Intersection | Exclusion):
            return ExpandNode("union", resource, relation, (tree,))
        return tree

    def rewrite(self, resource: ObjectRef, relation: str, node: Rewrite, depth: int) -> ExpandNode:
        if isinstance(node, ComputedUserset):
            return self.member(resource, node.relation, depth - 1)
        if isinstance(node, Union | Intersection):
            kind = "union" if isinstance(node, Union) else "intersection"
            children = tuple(self.rewrite(resource, relation, c, depth) for c in node.children)
            return ExpandNode(kind, resource, relation, children)
        if isinstance(node, Exclusion):
            children = (
                self.rewrite(resource, relation, node.base, depth),
                self.rewrite(resource, relation, node.subtract, depth),
            )
            return ExpandNode("exclusion", resource, relation, children)
        if isinstance(node, TupleToUserset):
            kids: list[ExpandNode] = []
            for rel in self.deadline.rows(self.reader.subjects(resource.type, resource.id, node.tupleset)):
                if rel.expiration is not None and rel.expiration <= self.now:
                    continue
                target = ObjectRef(rel.subject.type, rel.subject.id)
                if self.schema.member(target.type, node.computed) is not None:
                    kids.append(self.member(target, node.computed, depth - 1))
            kind = "intersection" if node.mode == "all" and kids else "union"
            label = f"{node.tupleset}->{node.computed}" if node.mode == "any" else f"{node.tupleset}.all({node.computed})"
            if self.spicedb:
                label = relation
            return ExpandNode(kind, resource, label, tuple(kids))
        if isinstance(node, This):
            return ExpandNode("leaf", resource, relation, subjects=(SubjectRef(resource.type, resource.id),))
        assert isinstance(node, Nil)
        return ExpandNode("leaf", resource, relation)


# -- the full subject set with provenance (validation files' `validation:` block) ------------------


@dataclass(frozen=True, slots=True)
class FoundSubject:
    """A terminal subject and the ``object#relation`` leaves it was found through.

    For a wildcard (``subject.id == "*"``), ``excluded`` lists the subjects removed from it.
    """

    subject: SubjectRef
    paths: frozenset[str]
    excluded: frozenset[SubjectRef] = frozenset()


def reachable_subjects(
    schema: CompiledSchema,
    reader: Reader,
    resource: ObjectRef,
    relation: str,
    *,
    max_depth: int = 50,
    now: _dt.datetime | None = None,
    deadline: float | None = None,
) -> dict[SubjectRef, FoundSubject]:
    """Every subject (objects, wildcards and usersets) that ``resource#relation`` reaches,
    expanding usersets recursively, with the relationships through which each was found."""
    schema.require(resource.type, relation)
    collector = _Collector(schema, reader, max_depth, now, Deadline(deadline, "expand"))
    return collector.node(collector.member(resource, relation, max_depth), max_depth, set())


class _Collector(_Expander):
    """``reachable_subjects``: an expand that goes on through the usersets it finds."""

    def node(self, node: ExpandNode, depth: int, active: set[tuple[str, str, str]]) -> dict[SubjectRef, FoundSubject]:
        self.enter(depth)
        if node.kind == "leaf":
            out: dict[SubjectRef, FoundSubject] = {}
            path = f"{node.resource}#{node.relation}"
            for subject in node.subjects:
                _merge(out, FoundSubject(subject, frozenset([path])))
                if subject.relation is not None:
                    key = (subject.type, subject.id, subject.relation)
                    if key in active:
                        continue
                    active.add(key)
                    try:
                        self.schema.require(subject.type, subject.relation)
                        sub_tree = self.member(ObjectRef(subject.type, subject.id), subject.relation, depth)
                        for found in self.node(sub_tree, depth - 1, active).values():
                            _merge(out, found)
                    finally:
                        active.discard(key)
            return out
        children = [self.node(child, depth, active) for child in node.children]
        if node.kind == "union" or not children:
            out = {}
            for child in children:
                for found in child.values():
                    _merge(out, found)
            return out
        if node.kind == "intersection":
            result = children[0]
            for other in children[1:]:
                result = _intersect(result, other)
            return result
        base, *rest = children
        result = dict(base)
        for other in rest:
            result = _subtract(result, other)
        return result


def _merge(into: dict[SubjectRef, FoundSubject], found: FoundSubject) -> None:
    existing = into.get(found.subject)
    if existing is None:
        into[found.subject] = found
    else:
        excluded = existing.excluded & found.excluded if existing.subject.is_wildcard else frozenset()
        into[found.subject] = FoundSubject(found.subject, existing.paths | found.paths, excluded)


def _wildcard_of(found: dict[SubjectRef, FoundSubject], subject: SubjectRef) -> FoundSubject | None:
    if subject.relation is not None or subject.is_wildcard:
        return None
    wildcard = found.get(SubjectRef(subject.type, "*"))
    if wildcard is None or subject in wildcard.excluded:
        return None
    return wildcard


def _intersect(a: dict[SubjectRef, FoundSubject], b: dict[SubjectRef, FoundSubject]) -> dict[SubjectRef, FoundSubject]:
    out: dict[SubjectRef, FoundSubject] = {}
    for subject, found in a.items():
        other = b.get(subject) or _wildcard_of(b, subject)
        if other is not None:
            excluded = found.excluded | other.excluded if subject.is_wildcard else frozenset()
            out[subject] = FoundSubject(subject, found.paths | other.paths, excluded)
    for subject, found in b.items():
        if subject not in out and _wildcard_of(a, subject) is not None:
            out[subject] = FoundSubject(subject, found.paths | a[SubjectRef(subject.type, "*")].paths)
    return out


def _subtract(a: dict[SubjectRef, FoundSubject], b: dict[SubjectRef, FoundSubject]) -> dict[SubjectRef, FoundSubject]:
    out: dict[SubjectRef, FoundSubject] = {}
    for subject, found in a.items():
        if subject.is_wildcard:
            if subject in b:
                continue  # everyone minus everyone
            removed = {s for s in b if s.type == subject.type and s.relation is None}
            out[subject] = FoundSubject(subject, found.paths, found.excluded | removed)
        elif subject not in b and _wildcard_of(b, subject) is None:
            out[subject] = found
    return out
