"""Guards: stored rules that an object keeps at least N subjects with a permission, read from
YAML against the schema and enforced inside every write transaction.

A guard file::

    guards:
      - name: two-admins
        description: an account keeps at least two administrators
        resource: account          # a definition
        permission: administer     # a permission or relation of it, evaluated as a check is
        subject_type: user
        at_least: 2

The store keeps the text beside the schema, versioned with it (``Transaction.set_guards``);
every Engine on the store reads it inside each write transaction, so a guard written through
one server binds the writes of all of them.

Enforcement (``Enforcer``): before a write's updates are applied, the objects of a guarded
type whose permission can depend on a written relationship are found by walking the schema's
dependency edges backwards from the written relationships' resources (the reverse walk of
``engine.lookup``, but along every edge, the subtracted side of an exclusion included), and
each one's holders are counted with ``engine.lookup.lookup_subjects`` (groups, arrows,
caveats, expiration, as a check would). After the updates, those that satisfied a guard are
counted again, through the same transaction's reader; one that fell below refuses the write
(GuardViolated) and the transaction aborts. Objects that violated a guard before are not
watched: a write may move them towards it. Only definite holders count (a caveated grant
without its context does not); a wildcard grant satisfies any guard.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import itertools
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Final, Iterable, Iterator, Sequence

import yaml

from ..engine import lookup
from ..engine.build import build_checker
from ..engine.check import LocalChecker
from ..engine.dispatch import HAS, Deadline
from ..errors import FailedPrecondition, GuardFileError, GuardViolated
from ..model import WILDCARD, ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef, SubjectFilter
from ..results import GuardViolation, Operation, RelationshipUpdate
from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Leaf,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
    leaves,
)
from ..storage.base import BulkRow, Reader, Transaction, TupleStore
from ..storage.importer import bulk_session

FIELDS: Final = ("name", "description", "resource", "permission", "subject_type", "at_least")
REQUIRED: Final = ("name", "resource", "permission", "subject_type", "at_least")
_INT: Final = re.compile(r"[+]?[0-9]+")


@dataclass(frozen=True, slots=True)
class Guard:
    """One rule: every ``resource`` object keeps at least ``at_least`` subjects of
    ``subject_type`` with ``permission``. ``line`` and ``column``: where its entry starts."""

    name: str
    resource: str
    permission: str
    subject_type: str
    at_least: int
    description: str = ""
    line: int = 0
    column: int = 0


# -- the file -----------------------------------------------------------------------------------


def _fail(node: Any, message: str, source: str) -> GuardFileError:
    mark = node.start_mark
    where = f"{source}:" if source else ""
    line, column = mark.line + 1, mark.column + 1
    return GuardFileError(f"{where}{line}:{column}: {message}", line=line, column=column, source=source or None)


def parse_guards(text: str, schema: CompiledSchema, source: str = "") -> tuple[Guard, ...]:
    """The guards of ``text`` (empty text: none), checked against ``schema``.

    Raises GuardFileError, with the line and column of the offending node, for YAML that does
    not parse, a shape other than ``guards: [ {name, resource, permission, subject_type,
    at_least[, description]} ... ]``, a name given twice, an ``at_least`` that is not a
    positive integer, and a definition, permission or subject type the schema lacks."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        where = f"{source}:" if source else ""
        raise GuardFileError(
            f"{where}{line}:{column}: not YAML: {exc.problem or exc}", line=line, column=column, source=source or None
        ) from None
    except yaml.YAMLError as exc:
        raise GuardFileError(f"not YAML: {exc}", line=1, column=1, source=source or None) from None
    if root is None:
        return ()
    if not isinstance(root, yaml.MappingNode):
        raise _fail(root, "a guard file is a mapping with one key, `guards`", source)
    entries: Any = None
    for key, value in root.value:
        if not isinstance(key, yaml.ScalarNode) or key.value != "guards":
            raise _fail(key, f"unknown key {key.value!r}: a guard file has only `guards`", source)
        entries = value
    if entries is None or (isinstance(entries, yaml.ScalarNode) and entries.value in ("", "~", "null")):
        return ()
    if not isinstance(entries, yaml.SequenceNode):
        raise _fail(entries, "`guards` is a list of guards", source)
    guards: list[Guard] = []
    seen: dict[str, int] = {}
    for entry in entries.value:
        guard = _guard(entry, source)
        if guard.name in seen:
            raise _fail(_value_node(entry, "name"), f"guard {guard.name!r} is defined twice (first on line {seen[guard.name]})", source)
        seen[guard.name] = guard.line
        problem = reference_problem(guard, schema)
        if problem is not None:
            field_name, message = problem
            raise _fail(_value_node(entry, field_name), f"guard {guard.name!r}: {message}", source)
        guards.append(guard)
    return tuple(guards)


def _value_node(entry: Any, name: str) -> Any:
    for key, value in entry.value:
        if key.value == name:
            return value
    return entry


def _guard(entry: Any, source: str) -> Guard:
    if not isinstance(entry, yaml.MappingNode):
        raise _fail(entry, "a guard is a mapping of name, resource, permission, subject_type, at_least", source)
    values: dict[str, str] = {}
    at_least = 0
    for key, value in entry.value:
        if not isinstance(key, yaml.ScalarNode) or key.value not in FIELDS:
            raise _fail(key, f"unknown key {getattr(key, 'value', key)!r}; a guard has {', '.join(FIELDS)}", source)
        if key.value in values:
            raise _fail(key, f"`{key.value}` is given twice", source)
        if not isinstance(value, yaml.ScalarNode):
            raise _fail(value, f"`{key.value}` takes a single value", source)
        if key.value == "at_least":
            if value.style is not None or not _INT.fullmatch(value.value) or int(value.value) < 1:
                raise _fail(value, f"`at_least` is a positive integer, not {value.value!r}", source)
            at_least = int(value.value)
        elif key.value != "description" and not value.value:
            raise _fail(value, f"`{key.value}` is empty", source)
        values[key.value] = value.value
    missing = [f for f in REQUIRED if f not in values]
    if missing:
        raise _fail(entry, f"a guard needs {', '.join(missing)}", source)
    return Guard(
        values["name"], values["resource"], values["permission"], values["subject_type"], at_least,
        values.get("description", ""), entry.start_mark.line + 1, entry.start_mark.column + 1,
    )


def reference_problem(guard: Guard, schema: CompiledSchema) -> tuple[str, str] | None:
    """(field, message) for the first name of ``guard`` that ``schema`` lacks, or None."""
    if schema.definition(guard.resource) is None:
        return "resource", f"definition `{guard.resource}` not found"
    if schema.member(guard.resource, guard.permission) is None:
        return "permission", f"`{guard.resource}` has no permission or relation `{guard.permission}`"
    if schema.definition(guard.subject_type) is None:
        return "subject_type", f"subject type `{guard.subject_type}` not found"
    return None


def refuse_broken(tx: Transaction, new: CompiledSchema) -> None:
    """Raise FailedPrecondition, naming the guard, if ``new`` (a schema about to be written in
    ``tx``) lacks a name that a stored guard uses."""
    text = tx.guards_text()
    if not text:
        return
    for guard in _stored(text):
        problem = reference_problem(guard, new)
        if problem is not None:
            raise FailedPrecondition(
                f"the new schema would break guard {guard.name!r}: {problem[1]}; change the guards "
                "first (relengine guards write) or keep what the guard names",
                guard=guard.name, kind="guard_reference", field=problem[0],
            )


def _stored(text: str) -> tuple[Guard, ...]:
    """The guards of stored text, read without a schema (it was checked when written)."""
    return parse_guards(text, _ANY)


class _AnySchema:
    """Stands in for a schema that knows every name: stored guards were checked when written."""

    def definition(self, name: str) -> object:
        return self

    def member(self, type_name: str, name: str) -> object:
        return self


_ANY: Any = _AnySchema()


def guards_of(text: str | None, schema: CompiledSchema) -> tuple[Guard, ...]:
    """The guards of the stored ``text`` under ``schema``, parsed once per schema and text
    (kept in ``schema.derived``: the check runs in every write transaction)."""
    if not text:
        return ()
    kept = schema.derived.get(Guard)
    if isinstance(kept, tuple) and kept[0] == text:
        guards: tuple[Guard, ...] = kept[1]
        return guards
    guards = parse_guards(text, schema)
    schema.derived[Guard] = (text, guards)
    return guards


# -- which objects a write can affect -------------------------------------------------------------

Node = tuple[str, str]  # (definition, relation or permission)


@dataclass(frozen=True, slots=True)
class _Dependent:
    """``target`` may change when facts of the source node change. kind "same": the same
    object; "userset": objects with ``target[0]:x#relation@source_type:id#subject_relation``;
    "arrow": objects with ``target[0]:x#relation@source_type:id[#subject_relation]`` (the
    arrow's tupleset)."""

    kind: str
    target: Node
    relation: str = ""
    subject_relation: str | None = None
    anti: bool = False  # more facts at the source can mean fewer at the target


def _dependents(schema: CompiledSchema) -> dict[Node, list[_Dependent]]:
    graph = schema.derived.get(_Dependent)
    if isinstance(graph, dict):
        return graph
    edges: dict[Node, list[_Dependent]] = defaultdict(list)

    def walk(t: str, node: Node, rewrite: Rewrite, anti: bool = False) -> None:
        if isinstance(rewrite, ComputedUserset):
            edges[(t, rewrite.relation)].append(_Dependent("same", node, anti=anti))
        elif isinstance(rewrite, (Union, Intersection)):
            for child in rewrite.children:
                walk(t, node, child, anti)
        elif isinstance(rewrite, Exclusion):
            walk(t, node, rewrite.base, anti)
            walk(t, node, rewrite.subtract, True)  # conservative: a double negation counts as one
        elif isinstance(rewrite, TupleToUserset):
            # A new target of an ``.all()`` arrow may lack the permission: fewer holders.
            edges[(t, rewrite.tupleset)].append(_Dependent("same", node, anti=anti or rewrite.mode == "all"))
            tupleset = schema.definitions[t].relation(rewrite.tupleset)
            for allowed in tupleset.allowed if tupleset is not None else ():
                if schema.member(allowed.type, rewrite.computed) is not None:
                    edges[(allowed.type, rewrite.computed)].append(
                        _Dependent("arrow", node, rewrite.tupleset, allowed.relation, anti)
                    )

    for t, definition in schema.definitions.items():
        for name, member in definition.members.items():
            if isinstance(member, Relation):
                for allowed in member.allowed:
                    if allowed.relation is not None:
                        edges[(allowed.type, allowed.relation)].append(
                            _Dependent("userset", (t, name), name, allowed.relation)
                        )
            else:
                walk(t, (t, name), member.rewrite)
    graph = dict(edges)
    schema.derived[_Dependent] = graph
    return graph


def _reaching(schema: CompiledSchema, target: Node) -> frozenset[Node]:
    """Every node whose facts can change ``target``'s (itself included)."""
    key = (_reaching, target)
    kept = schema.derived.get(key)
    if isinstance(kept, frozenset):
        return kept
    back: dict[Node, set[Node]] = defaultdict(set)
    for source, deps in _dependents(schema).items():
        for dep in deps:
            back[dep.target].add(source)
    seen = {target}
    stack = [target]
    while stack:
        for source in back.get(stack.pop(), ()):
            if source not in seen:
                seen.add(source)
                stack.append(source)
    found = frozenset(seen)
    schema.derived[key] = found
    return found


def _narrowable(schema: CompiledSchema, target: Node) -> frozenset[Node]:
    """The nodes from which some path to ``target`` crosses an ``anti`` edge: there, adding a
    relationship can take holders away. Elsewhere additions only add (unions, intersections,
    arrows and usersets are monotone), so a write that only adds need not be evaluated."""
    key = (_narrowable, target)
    kept = schema.derived.get(key)
    if isinstance(kept, frozenset):
        return kept
    relevant = _reaching(schema, target)
    back: dict[Node, set[Node]] = defaultdict(set)
    starts: set[Node] = set()
    for source, deps in _dependents(schema).items():
        for dep in deps:
            back[dep.target].add(source)
            if dep.anti and dep.target in relevant:
                starts.add(source)
    seen = set(starts)
    stack = list(starts)
    while stack:
        for source in back.get(stack.pop(), ()):
            if source not in seen:
                seen.add(source)
                stack.append(source)
    found = frozenset(seen)
    schema.derived[key] = found
    return found


def affected(
    schema: CompiledSchema, reader: Reader, target: Node, written: Iterable[tuple[str, str, str] | WrittenRow],
    clock: Deadline | None = None,
) -> set[str]:
    """Ids of the ``target`` objects whose answer can depend on a relationship of the
    ``written`` (resource type, resource id, relation[, subject]) rows, found through ``reader``.

    Call it on the state before the write: a path that the write creates ends in a written
    relationship, whose resource the walk starts from, so the objects it reaches are found
    either way."""
    relevant = _reaching(schema, target)
    graph = _dependents(schema)
    known: dict[Node, set[str]] = defaultdict(set)
    frontier: dict[Node, set[str]] = defaultdict(set)
    for w in written:
        rtype, rid, relation = w[0], w[1], w[2]
        node = (rtype, relation)
        if node in relevant and rid not in known[node]:
            known[node].add(rid)
            frontier[node].add(rid)
    while frontier:
        node, ids = frontier.popitem()
        for dep in graph.get(node, ()):
            if dep.target not in relevant:
                continue
            if dep.kind == "same":
                found = ids
            else:
                found = set()
                for oid in ids:
                    source = SubjectRef(node[0], oid, dep.subject_relation)
                    rows = reader.resources(source, dep.target[0], dep.relation)
                    for rel in clock.rows(rows) if clock is not None else rows:
                        found.add(rel.resource.id)
            new = found - known[dep.target]
            if new:
                known[dep.target] |= new
                frontier[dep.target] |= new
    return known.get(target, set())


def holders(
    schema: CompiledSchema, reader: Reader, guard: Guard, oid: str, max_depth: int, *,
    now: _dt.datetime | None = None, deadline: float | None = None,
) -> tuple[int, bool]:
    """(definite holders of ``guard``'s permission on ``guard.resource:oid``, whether a
    wildcard grants it to everyone), read through ``reader`` at ``now`` (default: the clock).
    No answer cache: ``reader`` may be a transaction's, whose state is not a revision yet."""
    checker = build_checker(schema, reader, max_depth=max_depth, deadline=deadline, now=now)
    found = lookup.lookup_subjects(checker, guard.resource, oid, guard.permission, guard.subject_type, None)
    return sum(1 for _, answer in found.subjects if answer is HAS), found.wildcard is HAS


@dataclass(frozen=True, slots=True)
class Tally:
    """What ``Tallier.tally`` found of one object's holders: ``count`` is exact when
    ``satisfied`` is False (every candidate was settled); when True it may stop at
    ``at_least``. ``confirmed``: the holders found."""

    count: int
    everyone: bool
    satisfied: bool
    confirmed: tuple[str, ...] = ()


class Tallier:
    """Counts the holders of guarded objects through one reader, stopping as soon as a guard's
    ``at_least`` holders are confirmed.

    A full count (``holders``: a lookup of every subject) costs the size of the object's holder
    set, which through a group is every member of it; a guard needs only to know that
    ``at_least`` of them remain. Candidates come lazily from the positive side of the rewrite
    (union branches, an intersection's first operand, an exclusion's base, arrows, usersets:
    every holder is reached that way, so when the candidates run out the count is exact). One
    reached only through unions, ``->`` arrows and usersets the schema allows, by live
    relationships without a caveat, holds for certain; any other is settled by a check through
    one request's checker (``engine.check``: intersections, exclusions, caveats as a check
    would). A wildcard among the candidates falls back to the full count, which knows what
    the wildcard grants. First of all, where the permission reaches relations of the object
    itself through unions only (``_direct_relations``), their plain rows are counted as raw
    rows (``_direct``: one short scan, no Relationship objects); only when they fall short
    does the walk over the candidates run. No answer cache: the reader may be a transaction's, whose state is
    not a revision yet."""

    def __init__(
        self, schema: CompiledSchema, reader: Reader, max_depth: int, *,
        now: _dt.datetime | None = None, deadline: float | None = None,
    ) -> None:
        self._schema = schema
        self._reader = reader
        self._max_depth = max_depth
        self._now = now or _dt.datetime.now(_dt.timezone.utc)
        self._deadline = deadline
        self._checker: LocalChecker | None = None  # built at the first candidate that needs a check
        self._plans: dict[Guard, tuple[str, ...]] = {}  # each guard's ``_direct_relations``

    def _check(self, guard: Guard, oid: str, sid: str) -> bool:
        if self._checker is None:
            self._checker = build_checker(
                self._schema, self._reader, max_depth=self._max_depth, deadline=self._deadline, now=self._now,
            )
        return self._checker.check(guard.resource, oid, guard.permission, SubjectRef(guard.subject_type, sid)) is HAS

    def tally(self, guard: Guard, oid: str, first: Iterable[str] = (), later: frozenset[str] = frozenset()) -> Tally:
        """The holders of ``guard`` on ``guard.resource:oid``. ``first``: ids checked before
        any other (holders an earlier tally confirmed, likely holders still). ``later``: ids
        settled only if ``at_least`` holders outside them cannot be found (those a write may
        take away: ``Enforcer`` then needs no read after the write); they are counted then."""
        direct = self._plans.get(guard)
        if direct is None:
            direct = self._plans[guard] = _direct_relations(self._schema, guard, self._max_depth)
        if direct:
            quick = self._direct(guard, oid, direct, later)
            if quick is not None:
                return quick
        seen: set[str] = set()
        confirmed: list[str] = []
        deferred: list[tuple[str, bool]] = []
        candidates = _candidates(self._schema, self._reader, guard, oid, self._max_depth, self._now)
        for sid, certain in itertools.chain(((sid, False) for sid in first), candidates):
            if sid == WILDCARD:
                count, everyone = holders(
                    self._schema, self._reader, guard, oid, self._max_depth, now=self._now, deadline=self._deadline,
                )
                return Tally(count, everyone, _satisfies(count, everyone, guard))
            if sid in seen:
                continue
            seen.add(sid)
            if sid in later:
                deferred.append((sid, certain))
                continue
            if certain or self._check(guard, oid, sid):
                confirmed.append(sid)
                if len(confirmed) >= guard.at_least:
                    return Tally(len(confirmed), False, True, tuple(confirmed))
        for sid, certain in deferred:
            if certain or self._check(guard, oid, sid):
                confirmed.append(sid)
        return Tally(len(confirmed), False, len(confirmed) >= guard.at_least, tuple(confirmed))


    def _direct(self, guard: Guard, oid: str, relations: tuple[str, ...], later: frozenset[str]) -> Tally | None:
        """``at_least`` certain holders of ``guard`` on ``oid`` outside ``later``, read as plain
        rows of the ``relations`` that grant alone (``_direct_relations``), or None when they do
        not hold that many (the full tally then settles the object). One short scan per
        relation in the common case: it reads as many rows as it needs and one more, and more
        (eight times as many each time) only when caveats, expirations, usersets, wildcards or
        ``later`` ids take some of them."""
        need, now, reader = guard.at_least, self._now, self._reader
        found: list[str] = []
        for relation in relations:
            limit = need - len(found) + 1  # one to spare: the id a removal takes is often among them
            skip = 0  # rows of this relation already looked at (a rescan reads them again)
            while True:
                rows = reader.subject_rows(guard.resource, oid, relation, guard.subject_type, limit)
                for _, sid, srel, extra in itertools.islice(rows, skip, None):
                    if srel is not None or sid == WILDCARD or sid in later or sid in found:
                        continue
                    if extra is not None and (extra[0] is not None or (extra[1] is not None and extra[1] <= now)):
                        continue  # caveated (a check settles it) or expired
                    found.append(sid)
                    if len(found) >= need:
                        return Tally(len(found), False, True, tuple(found))
                if len(rows) < limit:
                    break  # every row of the relation was read
                skip, limit = len(rows), limit * 8
        return None


def _direct_relations(schema: CompiledSchema, guard: Guard, max_depth: int) -> tuple[str, ...]:
    """The relations of ``guard.resource`` whose plain, live, uncaveated subjects hold the
    guard's permission for certain: reached from it through unions and computed usersets on
    the same object only (``_positive``'s leaves that grant alone), within ``max_depth`` hops
    (as ``_candidates`` walks them). For ``permission administer = admin``: ``("admin",)``."""
    key = (_direct_relations, guard.resource, guard.permission, max_depth)
    kept = schema.derived.get(key)
    if isinstance(kept, tuple):
        return kept
    out: list[str] = []
    definition = schema.definitions.get(guard.resource)
    seen: set[str] = set()
    stack: list[tuple[str, int]] = [(guard.permission, 0)]
    while stack and definition is not None:
        name, hops = stack.pop()
        member = definition.members.get(name)
        if name in seen or member is None or hops > max_depth:
            continue
        seen.add(name)
        if isinstance(member, Relation):
            out.append(name)
            continue
        for leaf, alone in reversed(_positive(member.rewrite)):
            if alone and isinstance(leaf, ComputedUserset):
                stack.append((leaf.relation, hops + 1))
    found = tuple(out)
    schema.derived[key] = found
    return found


def _candidates(
    schema: CompiledSchema, reader: Reader, guard: Guard, oid: str, max_depth: int, now: _dt.datetime,
) -> Iterator[tuple[str, bool]]:
    """(id, certain) for the ids of ``guard.subject_type`` that may hold ``guard.permission`` on
    ``guard.resource:oid`` (``*`` for a wildcard), lazily, each (object, member) expanded once:
    a superset of the holders, read from the positive side of every rewrite (see ``Tallier``).
    ``certain``: reached along a path that grants for sure."""
    stype = guard.subject_type
    expanded: set[tuple[str, str, str]] = set()

    def live(rel: Relationship) -> bool:
        return rel.expiration is None or rel.expiration > now

    def member(t: str, mid: str, name: str, depth: int, certain: bool) -> Iterator[tuple[str, bool]]:
        key = (t, mid, name)
        if key in expanded or depth < 0:
            return  # past the depth budget a check raises MaxDepthExceeded anyway
        expanded.add(key)
        definition = schema.definitions.get(t)
        found = definition.members.get(name) if definition is not None else None
        if found is None:
            return
        if isinstance(found, Relation):
            # Direct subjects first, then the usersets: a group's members cost a read each, and
            # subjects sort by type, so `group:...#member` rows come before `user:...` ones.
            later: list[Relationship] = []
            for rel in reader.subjects(t, mid, name):
                if not live(rel):
                    continue
                s = rel.subject
                if s.relation is not None:
                    later.append(rel)
                elif s.type == stype:
                    yield s.id, certain and rel.caveat is None
            if later:
                usersets = {(a.type, a.relation) for a in found.allowed if a.relation is not None}
                for rel in later:
                    s = rel.subject
                    sure = certain and rel.caveat is None and (s.type, s.relation) in usersets
                    yield from member(s.type, s.id, s.relation or "", depth - 1, sure)
        else:
            yield from rewrite(t, mid, name, found.rewrite, depth, certain)

    def rewrite(t: str, mid: str, name: str, node: Rewrite, depth: int, certain: bool) -> Iterator[tuple[str, bool]]:
        key = (_positive, t, name)
        flat: list[tuple[Leaf, bool]] | None = schema.derived.get(key)  # type: ignore[assignment]
        if flat is None:
            flat = schema.derived[key] = _positive(node)
        for leaf, sure in flat:
            sure = sure and certain
            if isinstance(leaf, ComputedUserset):
                yield from member(t, mid, leaf.relation, depth - 1, sure)
            elif isinstance(leaf, TupleToUserset):
                sure = sure and leaf.mode == "any"
                for rel in reader.subjects(t, mid, leaf.tupleset):
                    if live(rel) and schema.member(rel.subject.type, leaf.computed) is not None:
                        yield from member(
                            rel.subject.type, rel.subject.id, leaf.computed, depth - 1,
                            sure and rel.caveat is None and rel.subject.relation is None,
                        )
            elif isinstance(leaf, This) and t == stype:
                yield mid, sure

    return member(guard.resource, oid, guard.permission, max_depth, True)


def _takeable(schema: CompiledSchema, guard: Guard, seeds: Iterable[WrittenRow]) -> frozenset[str] | None:
    """The ids of ``guard.subject_type`` whose answer on any object the ``seeds`` (written
    relationships) can change, or None when that is not a short list.

    A check for subject S reads a written relationship only on a path that ends in S: a plain
    subject ends the path there unless its relation is an arrow's tupleset (the path goes on
    through the subject's members); a userset or a wildcard goes on to others. So where every
    seed has a plain subject and no seed's relation is a tupleset, only those subjects' answers
    can change, and a holder outside them stays one whatever else the write did."""
    tuplesets = _tuplesets(schema)
    out: set[str] = set()
    for rtype, _, relation, subject in seeds:
        if subject.relation is not None or subject.id == WILDCARD or (rtype, relation) in tuplesets:
            return None
        if subject.type == guard.subject_type:
            out.add(subject.id)
    return frozenset(out)


def _tuplesets(schema: CompiledSchema) -> frozenset[Node]:
    kept = schema.derived.get(_tuplesets)
    if isinstance(kept, frozenset):
        return kept
    found: set[Node] = set()
    for t, definition in schema.definitions.items():
        for member in definition.members.values():
            if not isinstance(member, Relation):
                found.update((t, leaf.tupleset) for leaf in leaves(member.rewrite) if isinstance(leaf, TupleToUserset))
    out = frozenset(found)
    schema.derived[_tuplesets] = out
    return out


def _positive(rewrite: Rewrite) -> list[tuple[Leaf, bool]]:
    """The leaves on the positive side of a rewrite (union branches, an intersection's first
    operand, an exclusion's base), each with whether it grants alone (reached through unions
    only); walked with a stack, as ``types.leaves`` is."""
    out: list[tuple[Leaf, bool]] = []
    stack: list[tuple[Rewrite, bool]] = [(rewrite, True)]
    while stack:
        node, alone = stack.pop()
        if isinstance(node, Union):
            stack.extend((child, alone) for child in reversed(node.children))
        elif isinstance(node, Intersection):
            stack.append((node.children[0], False))
        elif isinstance(node, Exclusion):
            stack.append((node.base, False))
        else:
            out.append((node, alone))
    return out


def _satisfies(count: int, everyone: bool, guard: Guard) -> bool:
    return everyone or count >= guard.at_least


# -- enforcement ------------------------------------------------------------------------------


class Enforcer:
    """The guards of one write transaction: ``before`` (on the state before the updates, with
    the written relationships' resources), then the updates, then ``after``."""

    def __init__(self, tx: Transaction, schema: CompiledSchema, guards: tuple[Guard, ...], max_depth: int) -> None:
        self._tx = tx
        self._schema = schema
        self._guards = guards
        self._max_depth = max_depth
        self._watched: list[tuple[Guard, str, tuple[str, ...], frozenset[str] | None]] = []

    @classmethod
    def of(cls, tx: Transaction, schema_of: Callable[[Transaction], CompiledSchema], max_depth: int) -> Enforcer | None:
        """The enforcer of ``tx``, or None when the store holds no guards (read inside ``tx``,
        so a guard written by another Engine binds this write). ``schema_of(tx)``: the schema
        the transaction writes under, asked only when there are guards."""
        text = tx.guards_text()
        if not text:
            return None
        schema = schema_of(tx)
        guards = guards_of(text, schema)
        return cls(tx, schema, guards, max_depth) if guards else None

    def before(self, written: Written, adding: Written = ()) -> None:
        """Find the guarded objects the write can affect and remember those satisfying their
        guard now. Call before applying any update. ``adding``: what the write only adds
        (``narrowing``), which matters only where an addition can take holders away.

        Each object's tally looks first for holders whose answer the write cannot change
        (``_takeable``): when ``at_least`` of them are found, ``after`` has nothing to read."""
        written, adding = list(written), list(adding)
        reader = self._tx.reader()
        tallier: Tallier | None = None
        for guard in self._guards:
            target = (guard.resource, guard.permission)
            if adding:
                anti = _narrowable(self._schema, target)
                seeds = written + [w for w in adding if (w[0], w[2]) in anti]
            else:
                seeds = written
            if not seeds:
                continue
            takeable = _takeable(self._schema, guard, seeds)
            for oid in sorted(affected(self._schema, reader, target, seeds)):
                tallier = tallier or Tallier(self._schema, reader, self._max_depth)
                found = tallier.tally(guard, oid, later=takeable or frozenset())
                if found.satisfied:
                    self._watched.append((guard, oid, found.confirmed, takeable))

    def after(self) -> None:
        """Raise GuardViolated for the first watched object the applied updates took below
        its guard (the caller's transaction then aborts: nothing of the write is applied).
        An object whose ``at_least`` holders ``before`` found outside what the write can take
        needs no read; any other is tallied again, from the holders ``before`` confirmed."""
        tallier: Tallier | None = None
        for guard, oid, confirmed, takeable in self._watched:
            if takeable is not None and sum(1 for sid in confirmed if sid not in takeable) >= guard.at_least:
                continue
            tallier = tallier or Tallier(self._schema, self._tx.reader(), self._max_depth)
            found = tallier.tally(guard, oid, confirmed)
            if not found.satisfied:
                count = found.count
                obj = f"{guard.resource}:{oid}"
                raise GuardViolated(
                    f"guard {guard.name!r} refuses the write: {obj} would keep {count} "
                    f"{guard.subject_type} with {guard.permission} (at least {guard.at_least}); "
                    "nothing was written",
                    guard=guard.name, object=obj, count=count, at_least=guard.at_least,
                )


WrittenRow = tuple[str, str, str, SubjectRef]
Written = Iterable[WrittenRow]
"""What a write touches, for ``Enforcer.before``: (resource type, resource id, relation, subject)."""


def written_by(updates: Iterable[RelationshipUpdate]) -> Written:
    """The (resource type, id, relation, subject) of each update."""
    return (_row(u.relationship) for u in updates)


def _row(r: Relationship) -> WrittenRow:
    return (r.resource.type, r.resource.id, r.relation, r.subject)


def narrowing(tx: Transaction, updates: Iterable[RelationshipUpdate]) -> tuple[Written, Written]:
    """``updates`` split for ``Enforcer.before``: (those that may take access away, those that
    only add). A TOUCH or CREATE only adds when it has no caveat and no expiration (the widest a
    relationship can be) or when no such relationship is live yet; a DELETE, or a TOUCH that
    puts a caveat or an expiration on a live relationship, may take away. Read before the
    updates are applied."""
    narrows: list[WrittenRow] = []
    adds: list[WrittenRow] = []
    reader: Reader | None = None
    for u in updates:
        r = u.relationship
        triple = _row(r)
        if u.operation is Operation.DELETE:
            narrows.append(triple)
            continue
        if r.caveat is not None or r.expiration is not None:
            reader = reader or tx.reader()
            if reader.relationship(r.resource.type, r.resource.id, r.relation, r.subject) is not None:
                narrows.append(triple)
                continue
        adds.append(triple)
    return narrows, adds


def deleted_by(tx: Transaction, filter: RelationshipFilter, limit: int | None) -> Written:
    """The (resource type, id, relation, subject) of the relationships a delete by ``filter``
    (at most ``limit``) removes, read before it."""
    return [_row(r) for r in tx.reader().read(filter, limit=limit)]


class GuardedLoader:
    """A BulkLoader over ``store`` whose ``bulk_touch`` enforces the stored guards: with none it
    is the store's own lean path; with some, the rows are written in one ordinary transaction
    that reads the guards and runs an Enforcer.

    Why a bulk write that saw no guards may still take the lean path: it reads the guards just
    before its own transaction, and a guard written in between is no loss. The rows are blind
    TOUCHes, so their result is the same in either order, and the history "import, then write
    the guards" is a legal one: guards never refuse what stood before them."""

    def __init__(
        self, store: TupleStore, schema_of: Callable[[Transaction], CompiledSchema], max_depth: int,
        lean: Any = None,
    ) -> None:
        self._store = store
        self._schema_of = schema_of
        self._max_depth = max_depth
        self._lean: Any = store if lean is None else lean  # whose bulk_touch the unguarded path calls

    @contextlib.contextmanager
    def bulk_import(self) -> Iterator[GuardedLoader]:
        """This loader for an import of many batches: the unguarded path goes through the
        store's session (``storage.importer.bulk_session``)."""
        with bulk_session(self._store) as session:  # type: ignore[arg-type]
            yield GuardedLoader(self._store, self._schema_of, self._max_depth, session)

    def head_revision(self) -> Revision:
        return self._store.head_revision()

    def bulk_load(self, batches: Iterable[Sequence[BulkRow]]) -> tuple[Revision, int]:
        """The store's ``bulk_load`` (a BatchLoader's) where no guard is stored, as ``bulk_touch``
        takes the lean path; else ``bulk_touch`` batch by batch."""
        load = getattr(self._store, "bulk_load", None)
        if load is not None and not self._guards_text():
            return load(batches)  # type: ignore[no-any-return]
        revision, changed = self.head_revision(), 0
        for batch in batches:
            revision, count = self.bulk_touch(batch)
            changed += count
        return revision, changed

    def _guards_text(self) -> str | None:
        reader = self._store.snapshot()
        try:
            return reader.guards_text()
        finally:
            reader.close()

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        reader = self._store.snapshot()
        try:
            text = reader.guards_text()
        finally:
            reader.close()
        if not text:
            return self._lean.bulk_touch(rows)  # type: ignore[no-any-return]
        updates = [RelationshipUpdate(Operation.TOUCH, _relationship(row)) for row in rows]
        ctx = self._store.transaction(batch_limit=None)  # a bulk import bounds its own batches
        with ctx as tx:
            enforcer = Enforcer.of(tx, self._schema_of, self._max_depth)
            view = tx.reader()
            changed = 0
            for update in updates:
                rel = update.relationship
                old = view.relationship(rel.resource.type, rel.resource.id, rel.relation, rel.subject)
                changed += old is None or old.caveat != rel.caveat or old.expiration != rel.expiration
            if enforcer is not None:
                enforcer.before(*narrowing(tx, updates))
            for update in updates:
                tx.apply(update)
            if enforcer is not None:
                enforcer.after()
        assert ctx.revision is not None
        return ctx.revision, changed


def _relationship(row: BulkRow) -> Relationship:
    caveat, expiration = (row[6], row[7]) if len(row) > 6 else (None, None)
    return Relationship(
        ObjectRef(row[0], row[1]), row[2], SubjectRef(row[3], row[4], row[5] or None), caveat, expiration
    )


# -- reports ------------------------------------------------------------------------------------


def violations(
    schema: CompiledSchema, reader: Reader, guards: Sequence[Guard], max_depth: int, *,
    within: _dt.timedelta | None = None, now: _dt.datetime | None = None, clock: Deadline | None = None,
) -> list[GuardViolation]:
    """Every object of a guarded type that the store knows (the resource or the subject of a
    relationship) below its guard now; with ``within``, also those whose count falls below it
    by ``now + within`` (as expiring relationships expire), reported with that later count.
    Each guard's objects in id order; each object's holders counted until ``at_least`` are
    found (``Tallier``), so a reported count is exact."""
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    clock = clock or Deadline(None, "guards check")
    tallier = Tallier(schema, reader, max_depth, now=moment, deadline=clock.at)
    later = Tallier(schema, reader, max_depth, now=moment + within, deadline=clock.at) if within is not None else None
    out: list[GuardViolation] = []
    for guard in guards:
        for oid in known_objects(schema, reader, guard.resource, clock):
            clock.step()
            obj = ObjectRef(guard.resource, oid)
            found = tallier.tally(guard, oid)
            if not found.satisfied:
                out.append(GuardViolation(guard.name, obj, found.count, guard.at_least))
            elif later is not None:
                found = later.tally(guard, oid, found.confirmed)
                if not found.satisfied:
                    out.append(GuardViolation(guard.name, obj, found.count, guard.at_least, within))
    return out


def known_objects(schema: CompiledSchema, reader: Reader, type_name: str, clock: Deadline) -> list[str]:
    """The ids of the ``type_name`` objects the store knows, sorted: the resources of its
    relationships, and the subjects (not wildcards) of every relation the schema lets hold
    one. An object known only as a subject (an account that containers point to, with no
    relationships of its own) holds nothing, so it violates any guard on its type."""
    ids: set[str] = set()
    for rel in clock.rows(reader.read(RelationshipFilter(type_name))):
        ids.add(rel.resource.id)
    for t, definition in schema.definitions.items():
        for name, member in definition.members.items():
            if not isinstance(member, Relation) or not any(a.type == type_name and not a.wildcard for a in member.allowed):
                continue
            for rel in clock.rows(reader.read(RelationshipFilter(t, relation=name, subject=SubjectFilter(type_name)))):
                if rel.subject.id != WILDCARD:
                    ids.add(rel.subject.id)
    return sorted(ids)


__all__ = [
    "Enforcer",
    "Guard",
    "GuardViolation",
    "GuardedLoader",
    "affected",
    "deleted_by",
    "guards_of",
    "holders",
    "known_objects",
    "Tallier",
    "parse_guards",
    "reference_problem",
    "refuse_broken",
    "violations",
    "narrowing",
    "written_by",
]
