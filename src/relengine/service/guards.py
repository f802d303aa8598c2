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
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Callable, Final, Iterable, Iterator, Sequence

import yaml

from ..engine import lookup
from ..engine.build import build_checker
from ..engine.dispatch import HAS, Deadline
from ..errors import FailedPrecondition, GuardFileError, GuardViolated
from ..model import ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef
from ..results import GuardViolation, Operation, RelationshipUpdate
from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Relation,
    Rewrite,
    TupleToUserset,
    Union,
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
    schema: CompiledSchema, reader: Reader, target: Node, written: Iterable[tuple[str, str, str]],
    clock: Deadline | None = None,
) -> set[str]:
    """Ids of the ``target`` objects whose answer can depend on a relationship of the
    ``written`` (resource type, resource id, relation) triples, found through ``reader``.

    Call it on the state before the write: a path that the write creates ends in a written
    relationship, whose resource the walk starts from, so the objects it reaches are found
    either way."""
    relevant = _reaching(schema, target)
    graph = _dependents(schema)
    known: dict[Node, set[str]] = defaultdict(set)
    frontier: dict[Node, set[str]] = defaultdict(set)
    for rtype, rid, relation in written:
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
        self._watched: list[tuple[Guard, str]] = []

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
        (``narrowing``), which matters only where an addition can take holders away."""
        written, adding = list(written), list(adding)
        reader = self._tx.reader()
        for guard in self._guards:
            target = (guard.resource, guard.permission)
            if adding:
                anti = _narrowable(self._schema, target)
                seeds = written + [w for w in adding if (w[0], w[2]) in anti]
            else:
                seeds = written
            if not seeds:
                continue
            for oid in sorted(affected(self._schema, reader, target, seeds)):
                count, everyone = holders(self._schema, reader, guard, oid, self._max_depth)
                if _satisfies(count, everyone, guard):
                    self._watched.append((guard, oid))

    def after(self) -> None:
        """Raise GuardViolated for the first watched object the applied updates took below
        its guard (the caller's transaction then aborts: nothing of the write is applied)."""
        reader = self._tx.reader()
        for guard, oid in self._watched:
            count, everyone = holders(self._schema, reader, guard, oid, self._max_depth)
            if not _satisfies(count, everyone, guard):
                obj = f"{guard.resource}:{oid}"
                raise GuardViolated(
                    f"guard {guard.name!r} refuses the write: {obj} would keep {count} "
                    f"{guard.subject_type} with {guard.permission} (at least {guard.at_least}); "
                    "nothing was written",
                    guard=guard.name, object=obj, count=count, at_least=guard.at_least,
                )


Written = Iterable[tuple[str, str, str]]
"""What a write touches, for ``Enforcer.before``: (resource type, resource id, relation)."""


def written_by(updates: Iterable[RelationshipUpdate]) -> Written:
    """The (resource type, id, relation) of each update."""
    return ((u.relationship.resource.type, u.relationship.resource.id, u.relationship.relation) for u in updates)


def narrowing(tx: Transaction, updates: Iterable[RelationshipUpdate]) -> tuple[Written, Written]:
    """``updates`` split for ``Enforcer.before``: (those that may take access away, those that
    only add). A TOUCH or CREATE only adds when it has no caveat and no expiration (the widest a
    relationship can be) or when no such relationship is live yet; a DELETE, or a TOUCH that
    puts a caveat or an expiration on a live relationship, may take away. Read before the
    updates are applied."""
    narrows: list[tuple[str, str, str]] = []
    adds: list[tuple[str, str, str]] = []
    reader: Reader | None = None
    for u in updates:
        r = u.relationship
        triple = (r.resource.type, r.resource.id, r.relation)
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
    """The (resource type, id, relation) of the relationships a delete by ``filter`` (at most
    ``limit``) removes, read before it."""
    return [(r.resource.type, r.resource.id, r.relation) for r in tx.reader().read(filter, limit=limit)]


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
    """Every object of a guarded type (one that is the resource of a relationship) below its
    guard now; with ``within``, also those whose count falls below it by ``now + within`` (as
    expiring relationships expire), reported with that later count."""
    moment = now or _dt.datetime.now(_dt.timezone.utc)
    clock = clock or Deadline(None, "guards check")
    out: list[GuardViolation] = []
    for guard in guards:
        ids: dict[str, None] = {}
        for rel in clock.rows(reader.read(RelationshipFilter(guard.resource))):
            ids[rel.resource.id] = None
        for oid in ids:
            clock.step()
            obj = ObjectRef(guard.resource, oid)
            count, everyone = holders(schema, reader, guard, oid, max_depth, now=moment, deadline=clock.at)
            if not _satisfies(count, everyone, guard):
                out.append(GuardViolation(guard.name, obj, count, guard.at_least))
                continue
            if within is not None:
                later, everyone = holders(schema, reader, guard, oid, max_depth, now=moment + within, deadline=clock.at)
                if not _satisfies(later, everyone, guard):
                    out.append(GuardViolation(guard.name, obj, later, guard.at_least, within))
    return out


__all__ = [
    "Enforcer",
    "Guard",
    "GuardViolation",
    "GuardedLoader",
    "affected",
    "deleted_by",
    "guards_of",
    "holders",
    "parse_guards",
    "reference_problem",
    "refuse_broken",
    "violations",
    "narrowing",
    "written_by",
]
