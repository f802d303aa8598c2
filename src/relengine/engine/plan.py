"""The evaluation plan: a compiled schema turned into one closure per relation and permission.

Built once per schema, it does no parsing or name lookups per check: each closure knows its
relation's allowed subject types, its rewrite's children and its arrows' targets. It also
knows which relations and permissions can reach themselves through the schema (groups in
groups, folders in folders): only those need the cycle guard.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Final, Mapping, Protocol

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
from ..storage import objects
from ..storage.base import Row
from .dispatch import HAS, NO, Conditional, Dispatcher, Result, both, but_not, either


class Walk(Protocol):
    """What the plan's closures use of the request they answer for (``check.LocalChecker``):
    where sub-questions go, the objects the request has read, and how a relationship's caveat
    and expiration count. One request, one revision, one thread."""

    dispatcher: Dispatcher  # where sub-questions go (the checker, or a cache wrapping it)
    direct: bool  # whether that is the checker itself (no cache in front of it)
    subject: SubjectRef | None  # the subject of the current check ...
    needle: bytes  # ... and how it looks among an object's direct entries (``objects.needle``)

    def object(self, rtype: str, rid: str) -> bytes | None:
        """All relationships of a small object as one value (``storage.objects``); None: large."""

    def others(self, rtype: str, rid: str, obj: bytes) -> dict[str, tuple[Row, ...]]:
        """A small object's relationships that are not plain direct entries, by relation."""

    def scan(self, rtype: str, rid: str, relation: str) -> list[Row]:
        """The subjects of one relation of a large object."""

    def relation_by_index(
        self, rtype: str, rid: str, name: str, subject: SubjectRef, depth: int,
        wildcard_types: frozenset[str], userset_types: frozenset[tuple[str, str | None]],
    ) -> Result:
        """Whether ``subject`` is in relation ``name`` of a large object (point reads)."""

    def leaf(self, rtype: str, rid: str, relation: str, header: bytes) -> bool | None:
        """Whether the current subject (a whole one) holds ``relation`` (one of
        ``leaf_headers``, ``header`` its entries' header) of ``rtype:rid``, as a dispatch would
        answer it; None where a point read or one search cannot tell (caveats, expirations)."""

    def gate(self, extra: tuple[CaveatRef | None, _dt.datetime | None]) -> Result:
        """Whether a relationship with a caveat and/or an expiration counts."""

    def expired(self, extra: tuple[CaveatRef | None, _dt.datetime | None]) -> bool:
        """Whether a relationship's expiration has passed."""


# A node answers: does `subject` have this relation/permission on object `rid`?
Node = Callable[[Walk, str, SubjectRef, int], Result]
# An arrow given its object's value as well (a union that read the object passes it on).
ArrowOn = Callable[[Walk, str, "bytes | None", SubjectRef, int], Result]


class Plan:
    """``nodes[(type, name)]`` evaluates that member; ``recursive`` holds members on a cycle."""

    def __init__(self, schema: CompiledSchema) -> None:
        self.schema = schema
        self.nodes: dict[tuple[str, str], Node] = {}
        self.recursive: frozenset[tuple[str, str]] = _recursive_members(schema)
        self._caveats: dict[str, Any] = {}
        for t, definition in schema.definitions.items():
            for name in definition.members:
                self.nodes[(t, name)] = _member_node(schema, t, name)
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
        compiled = self._caveats[name] = compile_caveat(
            name, [(p.name, p.type) for p in definition.parameters], definition.expression,
            line=definition.line, column=definition.column,
        )
        return compiled


def plan_for(schema: CompiledSchema) -> Plan:
    """The plan of ``schema``, built on first use and kept with the schema (``derived``): it
    lives exactly as long as the schema does. Two threads may both build it; either is right."""
    return schema.derive(Plan, Plan)


def leaf_headers(schema: CompiledSchema) -> dict[tuple[str, str], bytes]:
    """The relations of whole subjects only (no subject sets, no wildcards: ``member: user``),
    by (type, relation), with the header of their direct entries (``objects.header``): a
    subject set that names one ends the walk, so whether a whole subject is in it is one
    search of a small object's value (``LocalChecker.leaf``). Kept with the schema."""
    return schema.derive(_leaf_headers, _leaf_headers)


def _leaf_headers(schema: CompiledSchema) -> dict[tuple[str, str], bytes]:
    return {
        (t, name): objects.header(name)
        for t, definition in schema.definitions.items()
        for name, member in definition.members.items()
        if isinstance(member, Relation) and all(a.relation is None and not a.wildcard for a in member.allowed)
    }


def _member_node(schema: CompiledSchema, t: str, name: str) -> Node:
    member = schema.definitions[t].members[name]
    if isinstance(member, Relation):
        node = _union_node(t, frozenset({name}), [member], [], [], leaf_headers(schema))
        if all(a.relation is None and not a.wildcard for a in member.allowed):
            return _leaf_node(t, name, node)
        return node
    return _rewrite_node(schema, t, member.rewrite, (name,))


def _leaf_node(t: str, name: str, general: Node) -> Node:
    """A relation of whole subjects only (no subject sets, no wildcards: ``member: user``),
    the usual end of a walk: for a whole subject and a small object with direct entries only
    (no caveats, no expirations), one search of the object's value; else ``general`` (the
    union node of the relation)."""
    header = objects.header(name)
    head = objects.HEAD
    kind_at = objects.KIND_OFFSET
    plain = objects.PLAIN

    def leaf(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
        if subject.relation is None:
            obj = ctx.object(t, rid)
            if obj is not None and obj[kind_at] == plain:
                begin = obj.find(header, head)  # the relation's entries: from its header to the next
                if begin < 0:
                    return NO
                needle = ctx.needle if subject is ctx.subject else objects.needle(subject.type, subject.id)
                return HAS if obj.find(needle, begin, obj.index(b"\x02", begin + 1)) >= 0 else NO
        return general(ctx, rid, subject, depth)

    return leaf


# Members inlined one within another in one node: building a node recurses once or more per
# member inlined, and a schema may chain a thousand permissions (a = b, b = c, ...). Past it, a
# member becomes a sub-question, which counts against the depth budget.
_INLINE_DEPTH: Final = 32


class _Flat:
    """A union of a member's same-object parts, read off one object: the relations it reaches
    through ``+`` and references to other members of the object (inlined: ``read = reader +
    edit``, ``edit = editor + approve`` ... is one pass over the object's rows), its arrows,
    and whatever else it unites (intersections, exclusions, ...)."""

    def __init__(self, schema: CompiledSchema, t: str, stack: tuple[str, ...]) -> None:
        self.schema, self.t = schema, t
        self.names: set[str] = set(stack)  # every member inlined here: a userset is a member of itself
        self.relations: list[Relation] = []
        self.arrows: dict[tuple[str, str, str], ArrowOn] = {}
        self.rest: list[Node] = []

    def add(self, rewrite: Rewrite, stack: tuple[str, ...]) -> None:
        if isinstance(rewrite, Union):
            for child in rewrite.children:
                self.add(child, stack)
        elif isinstance(rewrite, ComputedUserset):
            name = rewrite.relation
            member = self.schema.definitions[self.t].members[name]
            if name in stack:  # a same-object loop (a = b, b = a): left to the dispatcher's guard
                self.rest.append(_computed_node(self.t, name))
            elif len(stack) >= _INLINE_DEPTH:  # a long chain (a = b, b = c, ...): a sub-question
                self.rest.append(_computed_node(self.t, name))
            elif isinstance(member, Relation):
                if all(r.name != name for r in self.relations):
                    self.relations.append(member)
                self.names.add(name)
            else:
                self.names.add(name)
                self.add(member.rewrite, stack + (name,))
        elif isinstance(rewrite, TupleToUserset):
            key = (rewrite.tupleset, rewrite.computed, rewrite.mode)
            if key not in self.arrows:
                self.arrows[key] = _arrow_on(self.schema, self.t, rewrite)
        else:
            self.rest.append(_rewrite_node(self.schema, self.t, rewrite, stack))


def _rewrite_node(schema: CompiledSchema, t: str, rewrite: Rewrite, stack: tuple[str, ...]) -> Node:
    if isinstance(rewrite, Union | ComputedUserset):
        flat = _Flat(schema, t, stack)
        flat.add(rewrite, stack)
        if not flat.relations and not flat.arrows and len(flat.rest) == 1 and flat.names == set(stack):
            return flat.rest[0]
        return _union_node(
            t, frozenset(flat.names), flat.relations, list(flat.arrows.values()), flat.rest, leaf_headers(schema)
        )
    if isinstance(rewrite, Intersection):
        parts = tuple(_rewrite_node(schema, t, c, stack) for c in rewrite.children)

        def intersection(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
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
        base = _rewrite_node(schema, t, rewrite.base, stack)
        subtract = _rewrite_node(schema, t, rewrite.subtract, stack)

        def exclusion(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
            kept = base(ctx, rid, subject, depth)
            if kept is NO:
                return NO
            return but_not(kept, subtract(ctx, rid, subject, depth))

        return exclusion
    if isinstance(rewrite, TupleToUserset):
        return _arrow_node(schema, t, rewrite)
    if isinstance(rewrite, This):

        def this(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
            return HAS if subject.relation is None and subject.type == t and subject.id == rid else NO

        return this
    assert isinstance(rewrite, Nil)

    def nil(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
        return NO

    return nil


def _computed_node(t: str, target: str) -> Node:
    def computed(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
        return ctx.dispatcher.dispatch(t, rid, target, subject, depth - 1)

    return computed


def _union_node(
    t: str, names: frozenset[str], relations: list[Relation], arrows: list[ArrowOn], rest: list[Node],
    leaves: dict[tuple[str, str], bytes],
) -> Node:
    """Whether the subject is in any of ``relations`` of the object (one read of its rows), or
    has any of ``arrows`` or ``rest``. ``names``: the members this node stands for; ``leaves``:
    ``leaf_headers`` of the schema (subject sets naming one are answered by ``Walk.leaf``)."""
    # (name, wildcard types, subject-set types) per relation, and per subject type the
    # relations that allow its wildcard.
    specs = tuple(
        (
            r.name,
            frozenset(a.type for a in r.allowed if a.wildcard),
            frozenset((a.type, a.relation) for a in r.allowed if a.relation is not None),
        )
        for r in relations
    )
    direct_names = frozenset(spec[0].encode() for spec in specs)
    wild: dict[str, tuple[bytes, frozenset[bytes]]] = {}  # subject type -> its wildcard's needle, relations
    for name, wildcard_types, _ in specs:
        for wt in wildcard_types:
            found = wild.get(wt, (objects.needle(wt, WILDCARD), frozenset()))
            wild[wt] = (found[0], found[1] | {name.encode()})
    arrows_on = tuple(arrows)
    rest_nodes = tuple(rest)
    head = objects.HEAD
    kind_at = objects.KIND_OFFSET
    plain = objects.PLAIN

    def union(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
        srel = subject.relation
        if srel is not None and srel in names and subject.id == rid and subject.type == t:
            return HAS  # a userset is a member of itself
        found: Result | None = None
        obj = ctx.object(t, rid) if specs or arrows_on else None
        if specs:
            if obj is None:  # a large object: point reads and typed scans instead of one read
                for name, wildcard_types, userset_types in specs:
                    result = ctx.relation_by_index(t, rid, name, subject, depth, wildcard_types, userset_types)
                    if result is HAS:
                        return HAS
                    if result is not NO:
                        found = either(found, result)
            elif len(obj) > head:  # not empty
                stype = subject.type
                kind = obj[kind_at]
                start = head if kind == plain else objects.direct_start(obj)
                if srel is None:
                    needle = ctx.needle if subject is ctx.subject else objects.needle(stype, subject.id)
                    position = obj.find(needle, start)
                    while position >= 0:
                        begin = obj.rfind(b"\x02", start, position) + 1  # objects.relation_at, inlined
                        if obj[begin:obj.index(b"\x00", begin)] in direct_names:
                            return HAS
                        position = obj.find(needle, position + 1)
                    wildcard = wild.get(stype)
                    if wildcard is not None and objects.contains(obj, *wildcard):
                        return HAS
                if kind != plain:
                    by_relation = ctx.others(t, rid, obj)
                    usersets: list[Any] | None = None  # rows of subject sets: (type, id, relation, extra)
                    sid = subject.id
                    for name, wildcard_types, userset_types in specs:
                        rows = by_relation.get(name)
                        if rows is None:
                            continue
                        for row in rows:
                            rtype_, rid_, rrel, extra = row
                            if rtype_ == stype and (
                                (rid_ == sid and rrel == srel)
                                or (rid_ == WILDCARD and srel is None and stype in wildcard_types)
                            ):
                                if extra is None:
                                    return HAS
                                found = either(found, ctx.gate(extra))
                                if found is HAS:
                                    return HAS
                            elif rrel is not None and (rtype_, rrel) in userset_types:
                                if usersets is None:
                                    usersets = [row]
                                else:
                                    usersets.append(row)
                    if usersets is not None:
                        dispatch = ctx.dispatcher.dispatch
                        below = depth - 1
                        # A whole subject in a subject set of a relation of whole subjects: one
                        # search of that object (where ``leaf`` can answer), no sub-question.
                        leaf = ctx.leaf if (
                            srel is None and subject is ctx.subject and below >= 0 and ctx.direct
                        ) else None
                        for rtype_, rid_, rrel, extra in usersets:
                            if extra is None:  # the usual case: no caveat, no expiration
                                if leaf is not None:
                                    header = leaves.get((rtype_, rrel))
                                    if header is not None:
                                        held = leaf(rtype_, rid_, rrel, header)
                                        if held is not None:
                                            if held:
                                                return HAS
                                            continue
                                result = dispatch(rtype_, rid_, rrel, subject, below)
                                if result is HAS:
                                    return HAS
                                if result is not NO:
                                    found = either(found, result)
                                continue
                            gate = ctx.gate(extra)
                            if gate is NO:
                                continue
                            found = either(found, both(gate, dispatch(rtype_, rid_, rrel, subject, below)))
                            if found is HAS:
                                return HAS
        for on_object in arrows_on:
            result = on_object(ctx, rid, obj, subject, depth)
            if result is HAS:
                return HAS
            if result is not NO:
                found = either(found, result)
        for node in rest_nodes:
            result = node(ctx, rid, subject, depth)
            if result is HAS:
                return HAS
            if result is not NO:
                found = either(found, result)
        return NO if found is None else found

    return union


def _arrow_node(schema: CompiledSchema, t: str, rewrite: TupleToUserset) -> Node:
    on_object = _arrow_on(schema, t, rewrite)

    def arrow(ctx: Walk, rid: str, subject: SubjectRef, depth: int) -> Result:
        return on_object(ctx, rid, ctx.object(t, rid), subject, depth)

    return arrow


def _arrow_on(schema: CompiledSchema, t: str, rewrite: TupleToUserset) -> ArrowOn:
    """An arrow evaluated on its object's value (``ctx.object(t, rid)``, read by the caller)."""
    tupleset = rewrite.tupleset
    computed = rewrite.computed
    # Target types that have the computed member; others contribute NO.
    has_member = frozenset(name for name, d in schema.definitions.items() if computed in d.members)
    every = rewrite.mode == "all"
    header = objects.header(tupleset)
    header_size = len(header)
    head = objects.HEAD
    kind_at = objects.KIND_OFFSET
    plain = objects.PLAIN

    def arrow(ctx: Walk, rid: str, obj: bytes | None, subject: SubjectRef, depth: int) -> Result:
        rows: list[Row] | tuple[Row, ...]
        if obj is None:
            rows = ctx.scan(t, rid, tupleset)
        elif len(obj) <= head:
            return NO
        else:
            if obj[kind_at] == plain:
                begin = obj.find(header, head)
                if begin < 0:
                    return NO
                begin += header_size
                targets = obj[begin:obj.index(b"\x02", begin) - 1].decode()  # objects.targets, inlined
                if "\x00" not in targets and not every:  # one target: the usual case
                    ttype, tid = targets.split("\x01")
                    if ttype not in has_member:
                        return NO
                    return ctx.dispatcher.dispatch(ttype, tid, computed, subject, depth - 1)
                rows = [(ttype, tid, None, None) for ttype, tid in objects.entries(targets)]
            else:
                direct = objects.targets(obj, header)
                rows = [(ttype, tid, None, None) for ttype, tid in direct]
                rows += ctx.others(t, rid, obj).get(tupleset, ())
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
