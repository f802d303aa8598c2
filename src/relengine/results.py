"""The values of the public API besides the model: what a request carries and what comes back.

Everything a public signature of ``Engine`` or ``Client`` mentions lives either in ``model``
(objects, subjects, relationships, filters, revisions, consistency) or here (checks and their
answers, writes and their preconditions, pages of lookups and reads, changes, expand trees),
and is exported from the package root. Plain frozen values; no I/O, no engine.
"""

from __future__ import annotations

import base64
import datetime as _dt
import enum
from dataclasses import dataclass, field
from typing import Any, Callable, Final, Generic, Iterable, Iterator, Mapping, TypeVar

import msgpack

from .errors import InvalidArgument, RelEngineError, quote, shorten
from .model import ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef, new_subject, plain_constructor

T = TypeVar("T")


# -- checks ---------------------------------------------------------------------------------------


class Permissionship(enum.IntEnum):
    """The answer to a check. CONDITIONAL means a caveat lacks parameters to decide."""

    NO_PERMISSION = 0
    HAS_PERMISSION = 1
    CONDITIONAL_PERMISSION = 2


@dataclass(frozen=True, slots=True)
class CheckRequest:
    """One question of a bulk check: may ``subject`` do ``permission`` on ``resource``?"""

    resource: ObjectRef
    permission: str  # a permission or a relation of the resource's definition
    subject: SubjectRef
    context: Mapping[str, object] | None = None  # caveat parameters for this item (bulk check)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """An answer: the permissionship and, when conditional, the caveat parameters it lacks."""

    permissionship: Permissionship
    missing_parameters: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.permissionship is Permissionship.HAS_PERMISSION


@dataclass(frozen=True, slots=True)
class CheckResponse:
    """An answer and the revision it was computed at."""

    result: CheckResult
    revision: Revision

    @property
    def allowed(self) -> bool:
        return self.result.allowed

    @property
    def permissionship(self) -> Permissionship:
        return self.result.permissionship


@dataclass(frozen=True, slots=True)
class BulkCheckResponse:
    """One entry per request item, in order: its CheckResult, or the error it raised."""

    results: list[CheckResult | RelEngineError]
    revision: Revision


# -- traced checks --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CaveatTrace:
    """A caveat evaluated during a traced check: the relationship carrying it, the expression,
    the parameters it was evaluated with (the request's context, overridden by the
    relationship's own) and the outcome: HAS (true), NO (false) or CONDITIONAL (parameters in
    ``missing_parameters`` were absent)."""

    name: str
    expression: str
    context: Mapping[str, Any]
    result: Permissionship
    relationship: Relationship
    missing_parameters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CheckTrace:
    """One node of a traced check: does ``subject`` have ``relation`` on ``resource``?

    ``via`` says how the parent reached this node: ``""`` for the check itself, ``"expression"``
    when the parent's permission names it, the arrow as written (``"parent->view"``,
    ``"parent.all(view)"``) when an arrow led here from the relationship ``through``, and
    ``"subject set"`` when a relation's relationship ``through`` names a subject set
    (``doc:1#viewer@group:eng#member``). ``found``: the relationships of a relation that name
    the subject (or its wildcard) directly; the caveats evaluated here are in ``caveats``.
    ``children`` are the sub-questions in the order they were asked; a union stops at the
    first yes and an intersection at the first no, so what was not needed is not there.
    ``result`` is None when the walk below this node ended in an error (``error``); ``cycle``
    is True when the node re-entered a question already being answered (a data cycle) and so
    answered no. ``duration`` is in seconds.
    """

    resource: ObjectRef
    relation: str
    is_permission: bool
    subject: SubjectRef
    result: CheckResult | None
    via: str = ""
    through: Relationship | None = None
    found: tuple[Relationship, ...] = ()
    caveats: tuple[CaveatTrace, ...] = ()
    children: tuple["CheckTrace", ...] = ()
    duration: float = 0.0
    cycle: bool = False
    error: str = ""

    @property
    def is_subject(self) -> bool:
        """The node asks whether a subject set is a member of itself (it is)."""
        s = self.subject
        return s.relation == self.relation and s.id == self.resource.id and s.type == self.resource.type

    def granted_by(self) -> tuple[Relationship, ...]:
        """The relationships that granted a yes at this node, from the resource down to the
        subject (each relationship followed and each that named the subject); () unless the
        result is HAS."""
        if self.result is None or self.result.permissionship is not Permissionship.HAS_PERMISSION:
            return ()
        out: list[Relationship] = []
        failed = [c.relationship for c in self.caveats if c.result is not Permissionship.HAS_PERMISSION]
        out.extend(r for r in self.found if r not in failed)
        for child in self.children:
            if child.result is not None and child.result.permissionship is Permissionship.HAS_PERMISSION:
                if child.through is not None:
                    out.append(child.through)
                out.extend(child.granted_by())
        return tuple(out)

    def render(self, *, durations: bool = True, indent: str = "") -> str:
        """The tree as indented text, one line per node (``relengine check --explain``):
        ``✓`` yes, ``⨉`` no, ``?`` conditional, ``!`` an error below; under a node, the
        relationships that named the subject and the caveats evaluated."""
        icon = _ICONS.get(None if self.result is None else self.result.permissionship, "!")
        kind = "permission" if self.is_permission else "relation"
        line = f"{indent}{icon} {self.resource}#{self.relation} ({kind}"
        if self.via:
            line += f", via {self.via}"
        line += ")"
        if self.cycle:
            line += " (cycle)"
        if durations:
            line += f" {_duration(self.duration)}"
        if self.error:
            line += f": {self.error}"
        lines = [line]
        inner = indent + "  "
        if self.is_subject:
            lines.append(f"{inner}= {self.subject} (the subject set itself)")
        for rel in self.found:
            lines.append(f"{inner}@ {rel}")
        for c in self.caveats:
            outcome = {Permissionship.HAS_PERMISSION: "true", Permissionship.NO_PERMISSION: "false"}.get(
                c.result, "missing " + ", ".join(c.missing_parameters))
            lines.append(f"{inner}{_ICONS[c.result]} caveat {c.name} on {c.relationship}: {c.expression} -> {outcome}")
        lines.extend(child.render(durations=durations, indent=inner) for child in self.children)
        return "\n".join(lines)


_ICONS: dict[Permissionship | None, str] = {
    Permissionship.HAS_PERMISSION: "✓",
    Permissionship.NO_PERMISSION: "⨉",
    Permissionship.CONDITIONAL_PERMISSION: "?",
}


def _duration(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f}s"
    if seconds >= 0.001:
        return f"{seconds * 1e3:.2f}ms"
    return f"{seconds * 1e6:.0f}µs"


@dataclass(frozen=True, slots=True)
class CheckExplanation:
    """A check answered with its trace (``Engine.explain``): the answer, the revision, the
    walk that found it, and the text of the schema it was answered with."""

    result: CheckResult
    revision: Revision
    trace: CheckTrace
    schema_text: str = ""

    @property
    def allowed(self) -> bool:
        return self.result.allowed

    @property
    def permissionship(self) -> Permissionship:
        return self.result.permissionship

    def granted_by(self) -> tuple[Relationship, ...]:
        """The relationships that granted the answer (``CheckTrace.granted_by``)."""
        return self.trace.granted_by()


# -- writes ---------------------------------------------------------------------------------------


class Operation(enum.Enum):
    CREATE = "CREATE"  # fails with AlreadyExists if the relationship is live
    TOUCH = "TOUCH"  # upsert: creates, or replaces caveat/expiration
    DELETE = "DELETE"  # no error if absent


@dataclass(frozen=True, slots=True)
class RelationshipUpdate:
    operation: Operation
    relationship: Relationship


class PreconditionKind(enum.Enum):
    MUST_MATCH = "MUST_MATCH"
    MUST_NOT_MATCH = "MUST_NOT_MATCH"


@dataclass(frozen=True, slots=True)
class Precondition:
    """A write goes ahead only if some live relationship matches ``filter`` (MUST_MATCH), or
    none does (MUST_NOT_MATCH), in the transaction that writes."""

    kind: PreconditionKind
    filter: RelationshipFilter


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: Revision
    deleted: int
    complete: bool  # False when ``limit`` stopped the delete before everything matching went


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the changelog: at ``revision``, ``relationship`` was touched or deleted.

    ``operation`` is TOUCH (created, or its caveat/expiration replaced; a CREATE is reported
    as TOUCH) or DELETE (``relationship`` is then the version that was removed). Changes are
    net per transaction: a relationship created and deleted in one transaction is not reported.
    A schema change is reported with ``relationship=None`` and ``schema_changed=True``, before
    the relationship changes of the same revision; those come in key order, except that a bulk
    import's come in no particular order.
    """

    revision: Revision
    operation: Operation
    relationship: Relationship | None
    schema_changed: bool = False


# -- pages of results -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, init=False)
class ResourceResult:
    """A resource with the permission. ``cursor`` (pass it back to resume after this result)
    is encoded when first read: a listing of many results reads only the last one's, and the
    encoding costs more than the rest of a result. Results compare by their other fields."""

    resource_id: str
    permissionship: Permissionship
    missing_parameters: tuple[str, ...]
    _cursor: str | None = field(repr=False, compare=False)
    _revision: int = field(repr=False, compare=False)

    def __init__(
        self, resource_id: str, permissionship: Permissionship, missing_parameters: tuple[str, ...], cursor: str
    ) -> None:
        _set_resource(self, resource_id, permissionship, missing_parameters, cursor, 0)

    @classmethod
    def at(
        cls, revision: int, resource_id: str, permissionship: Permissionship, missing_parameters: tuple[str, ...]
    ) -> ResourceResult:
        """The result of a page computed at ``revision``; its cursor is encoded on first use."""
        obj = object.__new__(cls)
        _set_resource(obj, resource_id, permissionship, missing_parameters, None, revision)
        return obj

    @property
    def cursor(self) -> str:
        cursor = self._cursor
        if cursor is None:
            cursor = encode_cursor(Revision(self._revision), self.resource_id)
            object.__setattr__(self, "_cursor", cursor)
        return cursor


@dataclass(frozen=True, slots=True, init=False)
class SubjectResult:
    """A subject with the permission; for a wildcard (``id == "*"``), ``excluded`` lists the
    subjects of that type that the wildcard does not cover (removed by an exclusion).
    ``cursor`` is encoded when first read, as ``ResourceResult``'s."""

    subject: SubjectRef
    permissionship: Permissionship
    missing_parameters: tuple[str, ...]
    excluded: tuple[SubjectRef, ...]
    _cursor: str | None = field(repr=False, compare=False)
    _revision: int = field(repr=False, compare=False)

    def __init__(
        self, subject: SubjectRef, permissionship: Permissionship, missing_parameters: tuple[str, ...],
        excluded: tuple[SubjectRef, ...], cursor: str,
    ) -> None:
        _set_subject(self, subject, permissionship, missing_parameters, excluded, cursor, 0)

    @classmethod
    def at(
        cls, revision: int, subject: SubjectRef, permissionship: Permissionship, missing_parameters: tuple[str, ...],
        excluded: tuple[SubjectRef, ...] = (),
    ) -> SubjectResult:
        """The result of a page computed at ``revision``; its cursor is encoded on first use."""
        obj = object.__new__(cls)
        _set_subject(obj, subject, permissionship, missing_parameters, excluded, None, revision)
        return obj

    @property
    def cursor(self) -> str:
        cursor = self._cursor
        if cursor is None:
            cursor = encode_cursor(Revision(self._revision), self.subject.id)
            object.__setattr__(self, "_cursor", cursor)
        return cursor


def granted_resources(revision: int, ids: Iterable[str]) -> list[ResourceResult]:
    """``ResourceResult.at(revision, id, HAS_PERMISSION, ())`` of each of ``ids``, built
    without a call per result (LookupResources lists thousands)."""
    new, cls, set_all = object.__new__, ResourceResult, _set_resource
    has = Permissionship.HAS_PERMISSION
    out = []
    for rid in ids:
        obj = new(cls)
        set_all(obj, rid, has, (), None, revision)
        out.append(obj)
    return out


def granted_subjects(revision: int, subject_type: str, ids: Iterable[str], relation: str | None) -> list[SubjectResult]:
    """``SubjectResult.at(revision, SubjectRef(subject_type, id, relation), HAS_PERMISSION, ())``
    of each of ``ids``, built without a call per result (lookup pages list thousands)."""
    new, cls, set_all, make = object.__new__, SubjectResult, _set_subject, new_subject
    has = Permissionship.HAS_PERMISSION
    out = []
    for sid in ids:
        obj = new(cls)
        set_all(obj, make(subject_type, sid, relation), has, (), (), None, revision)
        out.append(obj)
    return out


def _setter(cls: type, names: tuple[str, ...]) -> Callable[..., None]:
    """Sets the slots ``names`` (five or six) of a frozen slotted dataclass in one call,
    without its frozen ``__setattr__``: lookup pages build thousands of results."""
    setters = [cls.__dict__[n].__set__ for n in names]
    if len(names) == 5:
        a, b, c, d, e = setters

        def set5(obj: object, va: Any, vb: Any, vc: Any, vd: Any, ve: Any) -> None:
            a(obj, va)
            b(obj, vb)
            c(obj, vc)
            d(obj, vd)
            e(obj, ve)

        return set5
    a, b, c, d, e, f = setters

    def set6(obj: object, va: Any, vb: Any, vc: Any, vd: Any, ve: Any, vf: Any) -> None:
        a(obj, va)
        b(obj, vb)
        c(obj, vc)
        d(obj, vd)
        e(obj, ve)
        f(obj, vf)

    return set6


_set_resource = _setter(ResourceResult, ("resource_id", "permissionship", "missing_parameters", "_cursor", "_revision"))
_set_subject = _setter(
    SubjectResult, ("subject", "permissionship", "missing_parameters", "excluded", "_cursor", "_revision")
)


@dataclass(frozen=True, slots=True)
class ReadResult:
    relationship: Relationship
    cursor: str


class Stream(Generic[T]):
    """Results computed at one revision, produced lazily: iterate it; ``revision`` is known up front."""

    def __init__(self, revision: Revision, items: Iterator[T]) -> None:
        self.revision = revision
        self._items = items

    def __iter__(self) -> Iterator[T]:
        return self._items


def encode_cursor(revision: Revision, *parts: Any) -> str:
    """An opaque cursor: the revision a page was computed at and where it stopped."""
    raw = msgpack.packb([revision.value, *parts], use_bin_type=True)
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str, *kinds: type) -> tuple[Revision, list[Any]]:
    """``encode_cursor``'s revision and parts, one part of each type of ``kinds``; InvalidArgument
    (field ``cursor``) for anything ``encode_cursor`` did not write so, whatever else it decodes
    to. Whether the store still has the revision is for the store to say."""
    try:
        value = msgpack.unpackb(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)), raw=False)
    except (ValueError, TypeError) as exc:  # not base64, not msgpack, not UTF-8, unhashable keys
        raise malformed_cursor(cursor) from exc
    if (
        not isinstance(value, list)
        or len(value) != 1 + len(kinds)
        or type(value[0]) is not int
        or not 0 <= value[0] < 2**64
        or any(type(part) is not kind for part, kind in zip(value[1:], kinds))
    ):
        raise malformed_cursor(cursor)
    revision, parts = Revision(value[0]), value[1:]
    if encode_cursor(revision, *parts) != cursor:  # the same values spelled otherwise: not ours
        raise malformed_cursor(cursor)
    return revision, parts


def malformed_cursor(cursor: str) -> InvalidArgument:
    """The error for a cursor that is not one this API handed out."""
    return InvalidArgument(
        f"malformed cursor {quote(cursor)}: pass back a cursor exactly as a page gave it", cursor=shorten(cursor)
    )


# -- expand ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ExpandNode:
    """The userset tree of a permission: ``kind`` is "leaf", "union", "intersection" or
    "exclusion" (first child minus the rest); leaves list direct subjects."""

    kind: str
    resource: ObjectRef
    relation: str
    children: tuple["ExpandNode", ...] = ()
    subjects: tuple[SubjectRef, ...] = field(default=())

    def render(self, indent: str = "") -> str:
        """The tree as indented text (``relengine expand``)."""
        head = f"{indent}{self.resource}#{self.relation}"
        if self.kind == "leaf":
            listed = ", ".join(str(s) for s in self.subjects) or "(no subjects)"
            return f"{head} -> {listed}"
        lines = [f"{head} [{self.kind}]"]
        lines.extend(child.render(indent + "  ") for child in self.children)
        return "\n".join(lines)


# -- statistics -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EngineStatistics:
    cache_hits: int
    cache_misses: int
    cache_evictions: int
    cache_size: int
    cache_capacity: int
    head_revision: Revision
    datastore_reads: tuple[tuple[str, int], ...] = ()  # (target, Readers opened): with read replicas


@dataclass(frozen=True, slots=True)
class GuardViolation:
    """An object below a guard: ``count`` holders where the guard asks for ``at_least``.
    ``within`` is None for a violation now, else the look-ahead it was found with (the count
    is then the one at the end of it)."""

    guard: str
    object: ObjectRef
    count: int
    at_least: int
    within: _dt.timedelta | None = None

    def __str__(self) -> str:
        when = "" if self.within is None else f" within {self.within}"
        return f"{self.guard}: {self.object} has {self.count} (at least {self.at_least}){when}"


@dataclass(frozen=True, slots=True, order=True)
class AccessChange:
    """``subject`` gained or lost ``permission`` on ``resource``; ``subject_id`` ``*`` is every
    subject of the type not named elsewhere (a wildcard)."""

    resource_type: str
    resource_id: str
    permission: str
    subject_type: str
    subject_id: str
    gained: bool
    conditional: bool = False  # the answer on the better side is only CONDITIONAL (a caveat)

    def __str__(self) -> str:
        return f"{self.resource_type}:{self.resource_id}#{self.permission}@{self.subject_type}:{self.subject_id}"


def _fast_change() -> Callable[[str, str, str, str, str, bool, bool], AccessChange]:
    """``AccessChange`` from values known to be valid, without the frozen dataclass's per-field
    ``object.__setattr__`` (a third of the cost; a diff that moves a role to large groups makes
    millions). ``model.plain_constructor``'s fallback stands if the class changes shape."""
    names = ("resource_type", "resource_id", "permission", "subject_type", "subject_id", "gained", "conditional")
    if plain_constructor(AccessChange, names) is AccessChange:
        return AccessChange
    new = object.__new__
    s0, s1, s2, s3, s4, s5, s6 = (AccessChange.__dict__[n].__set__ for n in names)

    def change(t: str, oid: str, name: str, stype: str, sid: str, gained: bool, conditional: bool) -> AccessChange:
        obj: AccessChange = new(AccessChange)
        s0(obj, t)
        s1(obj, oid)
        s2(obj, name)
        s3(obj, stype)
        s4(obj, sid)
        s5(obj, gained)
        s6(obj, conditional)
        return obj

    return change


new_access_change: Final = _fast_change()
"""``AccessChange(...)`` for values known to be valid, at a third of the cost."""


@dataclass(frozen=True, slots=True)
class AccessChanges:
    """The plain changes (HAS and NO, no caveat on either side) of one resource's permission
    for one subject type: the ids that ``gained`` it and those that ``lost`` it. Iterating
    gives them as AccessChange, by subject id; ``texts`` as relationship text, unsorted. A diff
    that moves a role to large groups makes millions: kept as two sets, they cost no object
    each until asked."""

    resource_type: str
    resource_id: str
    permission: str
    subject_type: str
    gained: frozenset[str]
    lost: frozenset[str]

    def __len__(self) -> int:
        return len(self.gained) + len(self.lost)

    def __iter__(self) -> Iterator[AccessChange]:
        t, oid, name, stype, gained = self.resource_type, self.resource_id, self.permission, self.subject_type, self.gained
        for sid in sorted(gained | self.lost):
            yield new_access_change(t, oid, name, stype, sid, sid in gained, False)

    def texts(self, gained: bool) -> Iterator[str]:
        """``resource_type:id#permission@subject_type:id`` of each id gained (or lost)."""
        prefix = f"{self.resource_type}:{self.resource_id}#{self.permission}@{self.subject_type}:"
        return (prefix + sid for sid in (self.gained if gained else self.lost))


__all__ = [
    "AccessChange",
    "AccessChanges",
    "BulkCheckResponse",
    "CaveatTrace",
    "Change",
    "CheckExplanation",
    "CheckRequest",
    "CheckResponse",
    "CheckResult",
    "CheckTrace",
    "DeleteResult",
    "EngineStatistics",
    "ExpandNode",
    "GuardViolation",
    "Operation",
    "Permissionship",
    "Precondition",
    "PreconditionKind",
    "ReadResult",
    "RelationshipUpdate",
    "ResourceResult",
    "Stream",
    "SubjectResult",
    "decode_cursor",
    "encode_cursor",
    "malformed_cursor",
]
