"""The evaluation plan: a compiled schema turned into one closure per relation and permission.

Built once per schema, it does no parsing or name lookups per check: each closure knows its
relation's allowed subject types, its rewrite's children and its arrows' targets. It also
knows which relations and permissions can reach themselves through the schema (groups in
groups, folders in folders): only those need the cycle guard.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import Unimplemented
from ..model import WILDCARD, CaveatRef, SubjectRef
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
from .dispatch import HAS, NO, Conditional, Result, both, but_not, either

if TYPE_CHECKING:
    from .check import LocalChecker

# A node answers: does `subject` have this relation/permission on object `rid`?
Node = Callable[["LocalChecker", str, SubjectRef, int], Result]


class Plan:
    """``nodes[(type, name)]`` evaluates that member; ``recursive`` holds members on a cycle."""

    def __init__(self, schema: CompiledSchema) -> None:
        self.schema = schema
        self.nodes: dict[tuple[str, str], Node] = {}
        self.recursive: frozenset[tuple[str, str]] = _recursive_members(schema)
        self._caveats: dict[str, Any] = {}
        for t, definition in schema.definitions.items():
            for name, member in definition.members.items():
                if isinstance(member, Relation):
                    self.nodes[(t, name)] = _relation_node(t, member)
                else:
                    self.nodes[(t, name)] = _rewrite_node(schema, t, member.rewrite)
        # What the dispatcher looks up per sub-question: the node and whether it needs the guard.
        self.entries: dict[tuple[str, str], tuple[Node, bool]] = {
            key: (node, key in self.recursive) for key, node in self.nodes.items()
        }


    def evaluate_caveat(self, caveat: CaveatRef, request_context: Mapping[str, Any]) -> Result:
        """HAS, NO or Conditional for a relationship's caveat; the relationship's own context
        wins over the request's for the same parameter (as in SpiceDB)."""
        compiled = self._caveats.get(caveat.name)
        if compiled is None:
            compiled = self._compile_caveat(caveat.name)
        context = dict(request_context)
        if caveat.context:
            context.update(caveat.context)
        outcome = compiled.evaluate(context)
        if outcome is True:
            return HAS
        if outcome is False:
            return NO
        return Conditional(frozenset(outcome.params))

    def check_caveat_context(self, caveat: CaveatRef) -> None:
        """Raise InvalidArgument if a relationship's stored context names a parameter the
        caveat does not have, or gives one a value of the wrong type (checked at write time)."""
        if caveat.context:
            compiled = self._caveats.get(caveat.name) or self._compile_caveat(caveat.name)
            compiled.convert_context(caveat.context, allow_unknown=False)

    def _compile_caveat(self, name: str) -> Any:
        definition = self.schema.caveats.get(name)
        if definition is None:
            raise Unimplemented(f"caveat `{name}` is not defined in the schema of this revision", caveat=name)
        try:
            from ..caveats import compile_caveat
        except ImportError:  # pragma: no cover - the package ships with relengine
            raise Unimplemented(
                f"caveat `{name}` cannot be evaluated: caveat evaluation is not available", caveat=name
            ) from None
        compiled = self._caveats[name] = compile_caveat(definition)
        return compiled


_PLANS: dict[int, Plan] = {}


def plan_for(schema: CompiledSchema) -> Plan:
    plan = _PLANS.get(id(schema))
    if plan is None or plan.schema is not schema:
        if len(_PLANS) > 32:
            _PLANS.clear()
        plan = _PLANS[id(schema)] = Plan(schema)
    return plan


def _relation_node(t: str, relation: Relation) -> Node:
    name = relation.name
    wildcard_types = frozenset(a.type for a in relation.allowed if a.wildcard)
    userset_types = frozenset((a.type, a.relation) for a in relation.allowed if a.relation is not None)

    def node(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
        rows = ctx.rows(t, rid, name)
        if rows is None:  # a large object: point reads and typed scans instead of one scan
            return ctx.relation_by_index(t, rid, name, subject, depth, wildcard_types, userset_types)
        if not rows:
            return NO
        stype, sid, srel = subject.type, subject.id, subject.relation
        usersets = None
        found: Result | None = None
        for rtype_, rid_, rrel, extra in rows:
            if rtype_ == stype and (
                (rid_ == sid and rrel == srel) or (rid_ == WILDCARD and srel is None and stype in wildcard_types)
            ):
                if extra is None:
                    return HAS
                found = either(found, ctx.gate(extra))
                if found is HAS:
                    return HAS
            elif rrel is not None and (rtype_, rrel) in userset_types:
                if usersets is None:
                    usersets = []
                usersets.append((rtype_, rid_, rrel, extra))
        if usersets is not None:
            dispatch = ctx.dispatcher.dispatch
            for rtype_, rid_, rrel, extra in usersets:
                gate = HAS if extra is None else ctx.gate(extra)
                if gate is NO:
                    continue
                found = either(found, both(gate, dispatch(rtype_, rid_, rrel, subject, depth - 1)))
                if found is HAS:
                    return HAS
        return NO if found is None else found

    return node


def _rewrite_node(schema: CompiledSchema, t: str, rewrite: Rewrite) -> Node:
    if isinstance(rewrite, ComputedUserset):
        target = rewrite.relation

        def computed(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
            return ctx.dispatcher.dispatch(t, rid, target, subject, depth - 1)

        return computed
    if isinstance(rewrite, Union):
        children = tuple(_rewrite_node(schema, t, c) for c in rewrite.children)

        def union(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
            found: Result = NO
            for child in children:
                result = child(ctx, rid, subject, depth)
                if result is HAS:
                    return HAS
                if result is not NO:
                    found = either(found, result)
            return found

        return union
    if isinstance(rewrite, Intersection):
        parts = tuple(_rewrite_node(schema, t, c) for c in rewrite.children)

        def intersection(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
            found: Result = HAS
            for child in parts:
                result = child(ctx, rid, subject, depth)
                if result is NO:
                    return NO
                if result is not HAS:
                    found = both(found, result)
            return found

        return intersection
    if isinstance(rewrite, Exclusion):
        base = _rewrite_node(schema, t, rewrite.base)
        subtract = _rewrite_node(schema, t, rewrite.subtract)

        def exclusion(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
            kept = base(ctx, rid, subject, depth)
            if kept is NO:
                return NO
            return but_not(kept, subtract(ctx, rid, subject, depth))

        return exclusion
    if isinstance(rewrite, TupleToUserset):
        return _arrow_node(schema, t, rewrite)
    if isinstance(rewrite, This):

        def this(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
            return HAS if subject.relation is None and subject.type == t and subject.id == rid else NO

        return this
    assert isinstance(rewrite, Nil)

    def nil(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
        return NO

    return nil


def _arrow_node(schema: CompiledSchema, t: str, rewrite: TupleToUserset) -> Node:
    tupleset = rewrite.tupleset
    computed = rewrite.computed
    # Target types that have the computed member; others contribute NO.
    has_member = frozenset(name for name, d in schema.definitions.items() if computed in d.members)
    every = rewrite.mode == "all"

    def arrow(ctx: LocalChecker, rid: str, subject: SubjectRef, depth: int) -> Result:
        rows = ctx.rows(t, rid, tupleset)
        if rows is None:
            rows = ctx.scan(t, rid, tupleset)
        if not rows:
            return NO
        dispatch = ctx.dispatcher.dispatch
        seen: set[tuple[str, str]] | None = set() if len(rows) > 1 else None
        found: Result | None = None
        for ttype, tid, _, extra in rows:
            if seen is not None:
                if (ttype, tid) in seen:
                    continue
                seen.add((ttype, tid))
            gate = HAS if extra is None else ctx.gate(extra)
            if gate is NO:
                if not every or ctx.expired(extra):
                    continue
                return NO  # `.all()`: a target whose caveat fails is a target without it (SpiceDB)
            result = dispatch(ttype, tid, computed, subject, depth - 1) if ttype in has_member else NO
            result = both(gate, result) if gate is not HAS else result
            if every:
                found = result if found is None else both(found, result)
                if found is NO:
                    return NO
            else:
                found = either(found, result)
                if found is HAS:
                    return HAS
        return NO if found is None else found

    return arrow


def _recursive_members(schema: CompiledSchema) -> frozenset[tuple[str, str]]:
    """Members that can reach themselves: through subject sets, computed references or arrows."""
    graph: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for t, definition in schema.definitions.items():
        for name, member in definition.members.items():
            succ: set[tuple[str, str]] = set()
            if isinstance(member, Relation):
                succ.update((a.type, a.relation) for a in member.allowed if a.relation is not None)
            else:
                _rewrite_succ(schema, t, member.rewrite, succ)
            graph[(t, name)] = succ
    recursive: set[tuple[str, str]] = set()
    for start in graph:
        stack = list(graph[start])
        seen: set[tuple[str, str]] = set()
        while stack:
            node = stack.pop()
            if node == start:
                recursive.add(start)
                break
            if node in seen:
                continue
            seen.add(node)
            stack.extend(graph.get(node, ()))
    return frozenset(recursive)


def _rewrite_succ(schema: CompiledSchema, t: str, rewrite: Rewrite, out: set[tuple[str, str]]) -> None:
    if isinstance(rewrite, ComputedUserset):
        out.add((t, rewrite.relation))
    elif isinstance(rewrite, Union | Intersection):
        for child in rewrite.children:
            _rewrite_succ(schema, t, child, out)
    elif isinstance(rewrite, Exclusion):
        _rewrite_succ(schema, t, rewrite.base, out)
        _rewrite_succ(schema, t, rewrite.subtract, out)
    elif isinstance(rewrite, TupleToUserset):
        out.add((t, rewrite.tupleset))
        relation = schema.definitions[t].relation(rewrite.tupleset)
        for allowed in relation.allowed if relation else ():
            if schema.member(allowed.type, rewrite.computed) is not None:
                out.add((allowed.type, rewrite.computed))
