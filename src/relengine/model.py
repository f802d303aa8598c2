"""Objects, subjects, relationships, filters and revisions, and their text forms.

The text form of a relationship is SpiceDB's::

    resource_type:resource_id#relation@subject_type:subject_id[#subject_relation]
        [caveat_name[:{json context}]] [expiration:RFC3339]

e.g. ``container:web#editor@user:ann`` or ``doc:1#viewer@group:eng#member``.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import functools
import json
import re
from dataclasses import dataclass
from typing import Any, Callable, Final, Mapping, TypeVar

from .errors import QUOTE_LIMIT, InvalidArgument, InvalidRelationship, quote, shorten

T = TypeVar("T")

WILDCARD: Final = "*"
ELLIPSIS: Final = "..."

_SEGMENT = r"[a-z][a-z0-9_]{1,62}[a-z0-9]"
TYPE_NAME_RE: Final = re.compile(rf"(?:[a-z][a-z0-9_]{{1,61}}[a-z0-9]/)*{_SEGMENT}")
RELATION_NAME_RE: Final = re.compile(_SEGMENT)
OBJECT_ID_RE: Final = re.compile(r"[a-zA-Z0-9/_|\-=+]{1,1024}")
MAX_ID_LENGTH: Final = 1024

_REL_RE = re.compile(
    r"""^\s*
    (?P<rtype>[^:\s]+):(?P<rid>[^#\s]+)\#(?P<rel>[^@\s]+)
    @(?P<stype>[^:\s]+):(?P<sid>[^#\[\s]+)(?:\#(?P<srel>[^\[\s]+))?
    (?P<rest>.*?)\s*$""",
    re.VERBOSE,
)

# The plain form (no caveat, no expiration), its names and ids as the checks below want them.
_PLAIN_REL_RE = re.compile(
    rf"\s*({TYPE_NAME_RE.pattern}):({OBJECT_ID_RE.pattern})#({_SEGMENT})"
    rf"@({TYPE_NAME_RE.pattern}):({OBJECT_ID_RE.pattern}|\*)(?:#(?:\.\.\.|({_SEGMENT})))?\s*"
)


def is_valid_type_name(name: str) -> bool:
    return TYPE_NAME_RE.fullmatch(name) is not None


def is_valid_relation_name(name: str) -> bool:
    return RELATION_NAME_RE.fullmatch(name) is not None


def is_valid_object_id(oid: str) -> bool:
    return OBJECT_ID_RE.fullmatch(oid) is not None


@dataclass(frozen=True, slots=True, order=True)
class ObjectRef:
    """An object: a type from the schema and an id."""

    type: str
    id: str

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"


@functools.total_ordering
@dataclass(frozen=True, slots=True)
class SubjectRef:
    """A subject: an object, or a set of subjects (``group:eng#member``); id ``*`` is a wildcard.

    ``relation`` is ``None`` for the object itself (SpiceDB's ``...``). Subjects sort by type,
    id and relation, the object itself before its subject sets (as the stores order them).
    """

    type: str
    id: str
    relation: str | None = None

    @property
    def is_wildcard(self) -> bool:
        return self.id == WILDCARD

    def __str__(self) -> str:
        if self.relation is None:
            return f"{self.type}:{self.id}"
        return f"{self.type}:{self.id}#{self.relation}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, SubjectRef):
            return NotImplemented
        return (self.type, self.id, self.relation or "") < (other.type, other.id, other.relation or "")


@dataclass(frozen=True, slots=True)
class CaveatRef:
    """A caveat on a relationship: its name and the context stored with it (JSON object)."""

    name: str
    context: Mapping[str, Any] | None = None

    def __hash__(self) -> int:
        return hash((self.name, _canonical_json(self.context)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CaveatRef):
            return NotImplemented
        return self.name == other.name and _canonical_json(self.context) == _canonical_json(
            other.context
        )

    def __str__(self) -> str:
        if not self.context:
            return f"[{self.name}]"
        return f"[{self.name}:{_canonical_json(self.context)}]"


def _canonical_json(value: Mapping[str, Any] | None) -> str:
    if not value:
        return ""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class Relationship:
    """``resource#relation@subject``, optionally with a caveat and an expiration time (UTC).

    Two relationships with the same resource, relation and subject are the same relationship
    (``key``); the caveat and expiration are attributes of it.
    """

    resource: ObjectRef
    relation: str
    subject: SubjectRef
    caveat: CaveatRef | None = None
    expiration: _dt.datetime | None = None

    @property
    def key(self) -> tuple[str, str, str, str, str, str]:
        s = self.subject
        return (
            self.resource.type,
            self.resource.id,
            self.relation,
            s.type,
            s.id,
            s.relation or "",
        )

    def identity(self) -> dict[str, str]:
        """The fields of ``key`` by name (``subject_relation`` ``""``: the object itself): what
        an error about this relationship carries."""
        return dict(zip(("resource_type", "resource_id", "relation", "subject_type", "subject_id",
                         "subject_relation"), self.key))

    def __str__(self) -> str:
        text = f"{self.resource}#{self.relation}@{self.subject}"
        if self.caveat is not None:
            text += str(self.caveat)
        if self.expiration is not None:
            text += f"[expiration:{format_timestamp(self.expiration)}]"
        return text


def format_timestamp(value: _dt.datetime) -> str:
    value = value.astimezone(_dt.timezone.utc)
    text = value.isoformat().replace("+00:00", "Z")
    return text


def parse_timestamp(text: str) -> _dt.datetime:
    """Parse an RFC 3339 timestamp (``2026-12-31T00:00:00Z``) into an aware UTC datetime."""
    raw = text.strip()
    if raw.endswith(("Z", "z")):
        raw = raw[:-1] + "+00:00"
    # Python < 3.11 rejected fractional seconds with other than 3 or 6 digits; trim to 6.
    m = re.match(r"^(.*T\d\d:\d\d:\d\d)\.(\d+)(.*)$", raw)
    if m:
        raw = f"{m.group(1)}.{m.group(2)[:6].ljust(6, '0')}{m.group(3)}"
    try:
        value = _dt.datetime.fromisoformat(raw)
    except ValueError as exc:
        raise InvalidArgument(f"invalid RFC 3339 timestamp {quote(text)}") from exc
    if value.tzinfo is None:
        raise InvalidArgument(f"timestamp {quote(text)} has no time zone")
    try:
        return value.astimezone(_dt.timezone.utc)
    except OverflowError:  # in UTC before year 1 or after 9999
        raise InvalidArgument(f"timestamp {quote(text)} is out of range: in UTC, years 1 to 9999") from None


def parse_object(text: str) -> ObjectRef:
    """Parse ``type:id``; raises InvalidRelationship naming what is wrong."""
    otype, sep, oid = text.partition(":")
    if not sep:
        raise InvalidRelationship(f"object {quote(text)} is not of the form type:id")
    _check_type(otype, text)
    _check_id(oid, text, allow_wildcard=False)
    return ObjectRef(otype, oid)


def parse_subject(text: str) -> SubjectRef:
    """Parse ``type:id`` or ``type:id#relation`` (``#...`` means the object itself)."""
    head, _, srel = text.partition("#")
    stype, sep, sid = head.partition(":")
    if not sep:
        raise InvalidRelationship(f"subject {quote(text)} is not of the form type:id[#relation]")
    _check_type(stype, text)
    _check_id(sid, text, allow_wildcard=True)
    relation: str | None = None
    if srel and srel != ELLIPSIS:
        _check_relation(srel, text)
        relation = srel
    if sid == WILDCARD and relation is not None:
        raise InvalidRelationship(f"wildcard subject {quote(text)} cannot carry a relation")
    return SubjectRef(stype, sid, relation)


def parse_relationship(text: str) -> Relationship:
    """Parse the text form of a relationship; raises InvalidRelationship naming what is wrong."""
    plain = _PLAIN_REL_RE.fullmatch(text)  # the common form, every name checked by one match
    if plain is not None:
        rtype, rid, rel, stype, sid, srel = plain.groups()
        if sid != WILDCARD or srel is None:
            return new_relationship(new_object(rtype, rid), rel, new_subject(stype, sid, srel), None, None)
    m = _REL_RE.match(text)
    if m is None:
        raise InvalidRelationship(
            f"relationship {_whole(text)} is not of the form "
            "resource_type:id#relation@subject_type:id[#relation]"
        )
    rtype, rid, rel = m.group("rtype"), m.group("rid"), m.group("rel")
    stype, sid, srel = m.group("stype"), m.group("sid"), m.group("srel")
    _check_type(rtype, text)
    _check_id(rid, text, allow_wildcard=False)
    _check_relation(rel, text)
    _check_type(stype, text)
    _check_id(sid, text, allow_wildcard=True)
    subject_relation: str | None = None
    if srel is not None and srel != ELLIPSIS:
        _check_relation(srel, text)
        subject_relation = srel
    if sid == WILDCARD and subject_relation is not None:
        raise InvalidRelationship(f"in {_whole(text)}: a wildcard subject cannot carry a relation")
    caveat, expiration = _parse_suffix(m.group("rest"), text)
    return Relationship(
        ObjectRef(rtype, rid), rel, SubjectRef(stype, sid, subject_relation), caveat, expiration
    )


def _parse_suffix(rest: str, text: str) -> tuple[CaveatRef | None, _dt.datetime | None]:
    caveat: CaveatRef | None = None
    expiration: _dt.datetime | None = None
    rest = rest.strip()
    while rest:
        if not rest.startswith("["):
            raise InvalidRelationship(f"unexpected text {quote(rest)} after relationship in {_whole(text)}")
        body, end = _bracket_body(rest, text)
        rest = rest[end:].strip()
        name, sep, payload = body.partition(":")
        name = name.strip()
        if name == "expiration" and sep:
            if expiration is not None:
                raise InvalidRelationship(f"two expirations in {_whole(text)}")
            try:
                expiration = parse_timestamp(payload)
            except InvalidArgument as exc:
                raise InvalidRelationship(f"in {_whole(text)}: {exc}") from None
            continue
        if caveat is not None or expiration is not None:
            raise InvalidRelationship(
                f"in {_whole(text)}: the caveat must come first and only once"
            )
        if not is_valid_type_name(name):
            raise InvalidRelationship(f"invalid caveat name {quote(name)} in {_whole(text)}")
        context: dict[str, Any] | None = None
        if sep:
            try:
                context = parse_context(payload, f"caveat context in {_whole(text)}")
            except InvalidArgument as exc:
                raise InvalidRelationship(exc.message) from None
        caveat = CaveatRef(name, context)
    return caveat, expiration


def parse_context(text: str, what: str = "caveat context") -> dict[str, Any]:
    """A caveat context written as JSON: an object, in strict JSON (Python's json module also
    reads ``NaN`` and ``Infinity``, which no caveat parameter takes). InvalidArgument naming
    ``what`` for anything else."""
    try:
        value = json.loads(text, parse_constant=_not_json)
    except ValueError as exc:  # JSONDecodeError, _not_json's, an integer of too many digits
        raise InvalidArgument(f"{what} is not valid JSON: {getattr(exc, 'msg', exc)}") from None
    except RecursionError:  # json's own limit on nesting: Python's stack
        raise InvalidArgument(f"{what} is not valid JSON: nested too deeply") from None
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    return value


def _not_json(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number (a caveat takes finite numbers only)")


def _bracket_body(rest: str, text: str) -> tuple[str, int]:
    """Return the inside of the leading ``[...]`` (brackets in JSON strings allowed) and its end."""
    depth = 0
    in_string = False
    escaped = False
    for i, ch in enumerate(rest):
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
            if depth == 0:
                return rest[1:i], i + 1
    raise InvalidRelationship(f"unclosed '[' in {_whole(text)}")


def _whole(text: str) -> str:
    """A relationship's text, quoted (shortened) as the context of a message about one part."""
    return quote(text.strip(), 2 * QUOTE_LIMIT)


def _check_type(name: str, text: str) -> None:
    if not is_valid_type_name(name):
        raise InvalidRelationship(
            f"invalid object type {quote(name)} in {_whole(text)}: a type name is lowercase letters, "
            "digits and '_', 3 to 64 characters, starting with a letter, optionally prefixed "
            "with 'prefix/'"
        )


def _check_relation(name: str, text: str) -> None:
    if not is_valid_relation_name(name):
        raise InvalidRelationship(
            f"invalid relation {quote(name)} in {_whole(text)}: a relation name is lowercase "
            "letters, digits and '_', 3 to 64 characters, starting with a letter"
        )


def _check_id(oid: str, text: str, *, allow_wildcard: bool) -> None:
    if oid == WILDCARD:
        if allow_wildcard:
            return
        raise InvalidRelationship(f"a resource id cannot be the wildcard '*' in {_whole(text)}")
    if len(oid) > MAX_ID_LENGTH:
        raise InvalidRelationship(
            f"object id in {_whole(text)} is too long: {len(oid)} characters, at most {MAX_ID_LENGTH}"
        )
    if not is_valid_object_id(oid):
        raise InvalidRelationship(
            f"invalid object id {quote(oid)} in {_whole(text)}: ids use letters, digits and / _ | - = +"
        )


@dataclass(frozen=True, slots=True)
class SubjectFilter:
    """Matches subjects by type and optionally id and relation (``""`` = the object itself)."""

    type: str
    id: str | None = None
    relation: str | None = None

    def matches(self, subject: SubjectRef) -> bool:
        if subject.type != self.type:
            return False
        if self.id is not None and subject.id != self.id:
            return False
        if self.relation is not None and (subject.relation or "") != self.relation:
            return False
        return True


@dataclass(frozen=True, slots=True)
class RelationshipFilter:
    """Matches relationships: resource type, optionally id (or id prefix), relation, subject."""

    resource_type: str
    resource_id: str | None = None
    resource_id_prefix: str | None = None
    relation: str | None = None
    subject: SubjectFilter | None = None

    def matches(self, rel: Relationship) -> bool:
        if rel.resource.type != self.resource_type:
            return False
        if self.resource_id is not None and rel.resource.id != self.resource_id:
            return False
        if self.resource_id_prefix is not None and not rel.resource.id.startswith(
            self.resource_id_prefix
        ):
            return False
        if self.relation is not None and rel.relation != self.relation:
            return False
        if self.subject is not None and not self.subject.matches(rel.subject):
            return False
        return True

    def fields(self) -> dict[str, str]:
        """The fields this filter sets, by name (``subject_relation`` ``""``: the object
        itself): what an error about the filter carries."""
        out = {"resource_type": self.resource_type}
        for key, value in (("resource_id", self.resource_id), ("resource_id_prefix", self.resource_id_prefix),
                           ("relation", self.relation)):
            if value is not None:
                out[key] = value
        if self.subject is not None:
            out["subject_type"] = self.subject.type
            if self.subject.id is not None:
                out["subject_id"] = self.subject.id
            if self.subject.relation is not None:
                out["subject_relation"] = self.subject.relation
        return out


_TOKEN: Final = re.compile(r"r(?:0|[1-9a-f][0-9a-f]{0,15})")  # a revision is 64 bits


@dataclass(frozen=True, slots=True, order=True)
class Revision:
    """A committed state of the store; revisions increase by one per write.

    ``token()`` gives the opaque string handed to clients; ``Revision.from_token`` reads it back.
    """

    value: int

    def token(self) -> str:
        return f"r{self.value:x}"

    @classmethod
    def from_token(cls, token: str) -> Revision:
        """The revision ``token()`` wrote as ``token``: ``r`` and the revision in lowercase
        hexadecimal without leading zeros (``r0``, ``r1f``), nothing else. InvalidArgument (field
        ``token``) for any other text; whether the store still has the revision is for the store
        to say (RevisionUnavailable)."""
        if _TOKEN.fullmatch(token) is None:
            raise InvalidArgument(
                f"malformed revision token {quote(token)}: a token is 'r' and a revision in lowercase "
                "hexadecimal, as every answer carries it (such as 'r1f')",
                token=shorten(token),
            )
        return cls(int(token[1:], 16))

    def __str__(self) -> str:
        return self.token()


@dataclass(frozen=True, slots=True)
class Consistency:
    """Which revision a request is answered at.

    - ``minimize_latency()``: a recent revision (at most the configured window old) chosen to
      maximise cache hits; the default.
    - ``at_least_as_fresh(token)``: that revision or newer (read-your-writes).
    - ``at_exact_snapshot(token)``: exactly that revision (RevisionUnavailable if collected).

    A token that is not one (``Revision.from_token``) is InvalidArgument.
    - ``fully_consistent()``: the newest committed revision.
    """

    mode: str
    revision: Revision | None = None

    @classmethod
    def minimize_latency(cls) -> Consistency:
        return cls("minimize_latency")

    @classmethod
    def at_least_as_fresh(cls, revision: Revision | str) -> Consistency:
        return cls("at_least_as_fresh", _as_revision(revision))

    @classmethod
    def at_exact_snapshot(cls, revision: Revision | str) -> Consistency:
        return cls("at_exact_snapshot", _as_revision(revision))

    @classmethod
    def fully_consistent(cls) -> Consistency:
        return cls("fully_consistent")


def _as_revision(value: Revision | str) -> Revision:
    return value if isinstance(value, Revision) else Revision.from_token(value)


def plain_constructor(cls: type[T], names: tuple[str, ...]) -> Callable[..., T]:
    """A constructor for the frozen slotted dataclass ``cls`` (fields ``names``, in order) that
    skips the frozen __init__, which costs more than many of the reads and requests these are
    built from; for values already checked. Falls back to ``cls`` itself if it stops being a
    plain slotted dataclass with these fields."""
    plain = (
        tuple(f.name for f in dataclasses.fields(cls)) == names  # type: ignore[arg-type]
        and not hasattr(cls, "__post_init__")
        and all(type(cls.__dict__.get(n)).__name__ == "member_descriptor" for n in names)
    )
    if not plain:
        return cls
    new = object.__new__
    setters = tuple(cls.__dict__[n].__set__ for n in names)
    if len(names) == 2:
        first, second = setters

        def make2(a: Any, b: Any) -> T:
            obj: T = new(cls)
            first(obj, a)
            second(obj, b)
            return obj

        return make2
    if len(names) == 3:
        first, second, third = setters

        def make3(a: Any, b: Any, c: Any) -> T:
            obj: T = new(cls)
            first(obj, a)
            second(obj, b)
            third(obj, c)
            return obj

        return make3
    if len(names) == 5:  # Relationship: built for every row a read returns
        s0, s1, s2, s3, s4 = setters

        def make5(a: Any, b: Any, c: Any, d: Any, e: Any) -> T:
            obj: T = new(cls)
            s0(obj, a)
            s1(obj, b)
            s2(obj, c)
            s3(obj, d)
            s4(obj, e)
            return obj

        return make5

    def make(*values: Any) -> T:
        obj: T = new(cls)
        for setter, value in zip(setters, values, strict=True):
            setter(obj, value)
        return obj

    return make


new_object: Callable[[str, str], ObjectRef] = plain_constructor(ObjectRef, ("type", "id"))
new_subject: Callable[[str, str, "str | None"], SubjectRef] = plain_constructor(SubjectRef, ("type", "id", "relation"))
new_relationship: Callable[
    [ObjectRef, str, SubjectRef, "CaveatRef | None", "_dt.datetime | None"], Relationship
] = plain_constructor(Relationship, ("resource", "relation", "subject", "caveat", "expiration"))
"""``ObjectRef``, ``SubjectRef`` and ``Relationship`` from values known to be valid (no checks)."""
