"""A traced check: the same question as ``check.LocalChecker`` answers, walked over the schema's
expressions one member at a time and recorded as a tree of ``results.CheckTrace`` nodes.

It is a second walk, not a mode of the first: the evaluation plan (``plan``) inlines members
into one closure and reads whole objects at once, so it has no place where "which relation
granted this" could be seen without paying for it on every check. This walk pays instead: it
reads by point reads and range scans, never uses or fills the answer cache, and times every
node. The untraced path carries no flag or hook for it.

It answers as the plan does: the same algebra (``dispatch.either``, ``both``, ``but_not``),
unions stopping at the first yes and intersections at the first no, caveats evaluated by the
plan's compiled caveats, expired relationships ignored, a subject set a member of itself, a
data cycle cut with NO, and the depth budget spent per arrow hop and per subject set (a
member named in an expression costs none, as the plan inlines it). Sub-questions come in the
order the schema writes them (the plan may try a union's parts in another order; the answer
is the same). Past the depth budget or the deadline it raises as the checker does; the
error carries the trace walked so far (``partial_trace``).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Mapping

from ..errors import DeadlineExceeded, MaxDepthExceeded, RelEngineError, UnknownDefinition
from ..model import WILDCARD, ObjectRef, Relationship, SubjectRef
from ..results import CaveatTrace, CheckTrace
from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Nil,
    Permission,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)
from ..storage.base import Reader
from .dispatch import HAS, NO, Conditional, Result, both, but_not, either, to_check_result
from .plan import plan_for

_TRACE = "_relengine_trace"


def partial_trace(exc: BaseException) -> CheckTrace | None:
    """The trace a traced check had walked when it raised ``exc`` (its root node, the failed
    nodes with ``result`` None), or None if ``exc`` did not come out of one."""
    found = getattr(exc, _TRACE, None)
    return found if isinstance(found, CheckTrace) else None


class _Node:
    """A node being walked: what becomes its CheckTrace."""

    __slots__ = ("rtype", "rid", "relation", "is_permission", "via", "through", "found", "caveats", "children",
                 "cycle", "started")

    def __init__(self, rtype: str, rid: str, relation: str, is_permission: bool, via: str,
                 through: Relationship | None) -> None:
        self.rtype, self.rid, self.relation = rtype, rid, relation
        self.is_permission = is_permission
        self.via, self.through = via, through
        self.found: list[Relationship] = []
        self.caveats: list[CaveatTrace] = []
        self.children: list[CheckTrace] = []
        self.cycle = False
        self.started = time.perf_counter()

    def freeze(self, subject: SubjectRef, result: Result | None, error: str = "") -> CheckTrace:
        return CheckTrace(
            resource=ObjectRef(self.rtype, self.rid), relation=self.relation, is_permission=self.is_permission,
            subject=subject, result=None if result is None else to_check_result(result), via=self.via,
            through=self.through, found=tuple(self.found), caveats=tuple(self.caveats),
            children=tuple(self.children), duration=time.perf_counter() - self.started, cycle=self.cycle,
            error=error,
        )


class Tracer:
    """Answers one traced check against one Reader (one revision), on one thread."""

    def __init__(
        self,
        schema: CompiledSchema,
        reader: Reader,
        *,
        max_depth: int = 50,
        deadline: float | None = None,
        context: Mapping[str, Any] | None = None,
        now: _dt.datetime | None = None,
    ) -> None:
        self.schema = schema
        self.reader = reader
        self.max_depth = max_depth
        self.deadline = deadline
        self.context: Mapping[str, Any] = context or {}
        self.now = now or _dt.datetime.now(_dt.timezone.utc)
        self._plan = plan_for(schema)
        self._active: set[tuple[str, str, str]] = set()
        self.subject = SubjectRef("", "")

    def check(self, rtype: str, rid: str, relation: str, subject: SubjectRef) -> tuple[Result, CheckTrace]:
        """The answer and its trace; raises as ``LocalChecker.check`` does (an unknown type or
        relation, the depth budget, the deadline), the error carrying the partial trace."""
        self.schema.require(rtype, relation)
        if subject.type not in self.schema.definitions:
            raise UnknownDefinition(
                f"subject type `{subject.type}` is not a definition of the schema", definition=subject.type
            )
        self.subject = subject
        return self._member(rtype, rid, relation, self.max_depth, "", None)

    # -- members ---------------------------------------------------------------------------
    def _member(
        self, rtype: str, rid: str, relation: str, depth: int, via: str, through: Relationship | None
    ) -> tuple[Result, CheckTrace]:
        member = self.schema.member(rtype, relation)
        node = _Node(rtype, rid, relation, isinstance(member, Permission), via, through)
        subject = self.subject
        if subject.id == rid and subject.relation == relation and subject.type == rtype:
            return HAS, node.freeze(subject, HAS)  # a subject set is a member of itself
        try:
            if depth < 0:
                raise MaxDepthExceeded.at("check", self.max_depth, f"{rtype}:{rid}#{relation}", rtype, relation)
            if self.deadline is not None and time.monotonic() > self.deadline:
                raise DeadlineExceeded("the check ran past its deadline")
            if member is None:
                return NO, node.freeze(subject, NO)
            key = (rtype, rid, relation)
            if key in self._active:
                node.cycle = True
                return NO, node.freeze(subject, NO)
            self._active.add(key)
            try:
                if isinstance(member, Relation):
                    result = self._relation(node, member, depth)
                else:
                    result = self._rewrite(node, member.rewrite, depth)
            finally:
                self._active.discard(key)
        except RelEngineError as exc:
            below = partial_trace(exc)  # the child that failed, if it was one
            if below is not None:
                node.children.append(below)
            setattr(exc, _TRACE, node.freeze(subject, None, str(exc)))
            raise
        return result, node.freeze(subject, result)

    def _relation(self, node: _Node, relation: Relation, depth: int) -> Result:
        reader, subject = self.reader, self.subject
        rtype, rid, name = node.rtype, node.rid, node.relation
        found: Result | None = None
        direct = [reader.relationship(rtype, rid, name, subject)]
        wildcard_types = {a.type for a in relation.allowed if a.wildcard}
        if subject.relation is None and subject.type in wildcard_types and subject.id != WILDCARD:
            direct.append(reader.relationship(rtype, rid, name, SubjectRef(subject.type, WILDCARD)))
        for rel in direct:
            if rel is None or self._expired(rel):
                continue
            node.found.append(rel)
            found = either(found, self._gate(node, rel))
            if found is HAS:
                return HAS
        usersets = {(a.type, a.relation) for a in relation.allowed if a.relation is not None}
        resource = ObjectRef(rtype, rid)
        for stype in sorted({t for t, _ in usersets}):
            for s_type, sid, srel, extra in reader.subject_rows(rtype, rid, name, stype):
                if srel is None or (s_type, srel) not in usersets:
                    continue
                caveat, expiration = extra if extra is not None else (None, None)
                rel = Relationship(resource, name, SubjectRef(s_type, sid, srel), caveat, expiration)
                if self._expired(rel):
                    continue
                gate = self._gate(node, rel)
                if gate is NO:
                    continue
                result, child = self._member(s_type, sid, srel, depth - 1, "subject set", rel)
                node.children.append(child)
                found = either(found, both(gate, result))
                if found is HAS:
                    return HAS
        return NO if found is None else found

    # -- expressions -----------------------------------------------------------------------
    def _rewrite(self, node: _Node, rewrite: Rewrite, depth: int) -> Result:
        if isinstance(rewrite, Union):
            found: Result | None = None
            for child in rewrite.children:
                result = self._rewrite(node, child, depth)
                if result is HAS:
                    return HAS
                if result is not NO:
                    found = either(found, result)
            return NO if found is None else found
        if isinstance(rewrite, Intersection):
            every: Result = HAS
            for child in rewrite.children:
                result = self._rewrite(node, child, depth)
                if result is NO:
                    return NO
                every = both(every, result)
            return every
        if isinstance(rewrite, Exclusion):
            kept = self._rewrite(node, rewrite.base, depth)
            if kept is NO:
                return NO
            return but_not(kept, self._rewrite(node, rewrite.subtract, depth))
        if isinstance(rewrite, ComputedUserset):
            result, named = self._member(node.rtype, node.rid, rewrite.relation, depth, "expression", None)
            node.children.append(named)
            return result
        if isinstance(rewrite, TupleToUserset):
            return self._arrow(node, rewrite, depth)
        if isinstance(rewrite, This):
            s = self.subject
            return HAS if s.relation is None and s.type == node.rtype and s.id == node.rid else NO
        assert isinstance(rewrite, Nil)
        return NO

    def _arrow(self, node: _Node, arrow: TupleToUserset, depth: int) -> Result:
        every = arrow.mode == "all"
        via = f"{arrow.tupleset}.{arrow.mode}({arrow.computed})" if arrow.function_syntax or every else (
            f"{arrow.tupleset}->{arrow.computed}")
        found: Result | None = None
        seen: set[tuple[str, str]] = set()
        for rel in self.reader.subjects(node.rtype, node.rid, arrow.tupleset):
            target = rel.subject
            if (target.type, target.id) in seen or self._expired(rel):
                continue
            seen.add((target.type, target.id))
            gate = self._gate(node, rel)
            if gate is NO:
                if not every:
                    continue
                return NO  # `.all()`: a target whose caveat fails is a target without it (SpiceDB)
            if self.schema.member(target.type, arrow.computed) is None:
                result: Result = NO
            else:
                result, below = self._member(target.type, target.id, arrow.computed, depth - 1, via, rel)
                node.children.append(below)
            if gate is not HAS:
                result = both(gate, result)
            if every:
                found = result if found is None else both(found, result)
                if found is NO:
                    return NO
            else:
                found = either(found, result)
                if found is HAS:
                    return HAS
        return NO if found is None else found

    # -- relationships ---------------------------------------------------------------------
    def _expired(self, rel: Relationship) -> bool:
        return rel.expiration is not None and rel.expiration <= self.now

    def _gate(self, node: _Node, rel: Relationship) -> Result:
        """Whether a live relationship counts: HAS without a caveat, else its caveat's outcome
        (recorded on ``node``)."""
        caveat = rel.caveat
        if caveat is None:
            return HAS
        result = self._plan.evaluate_caveat(caveat, self.context)
        context = dict(self.context)
        if caveat.context:
            context.update(caveat.context)
        definition = self.schema.caveats.get(caveat.name)
        node.caveats.append(CaveatTrace(
            name=caveat.name, expression=definition.expression if definition is not None else "",
            context=context, result=result if not isinstance(result, Conditional) else result.permissionship,
            relationship=rel,
            missing_parameters=tuple(sorted(result.missing)) if isinstance(result, Conditional) else (),
        ))
        return result


__all__ = ["Tracer", "partial_trace"]
