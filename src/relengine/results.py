"""The values of the public API besides the model: what a request carries and what comes back.

Everything a public signature of ``Engine`` or ``Client`` mentions lives either in ``model``
(objects, subjects, relationships, filters, revisions, consistency) or here (checks and their
answers, writes and their preconditions, pages of lookups and reads, changes, expand trees),
and is exported from the package root. Plain frozen values; no I/O, no engine.
"""

from __future__ import annotations

import base64
import enum
from dataclasses import dataclass, field
from typing import Any, Generic, Iterator, Mapping, TypeVar

import msgpack

from .errors import InvalidArgument, RelEngineError, quote, shorten
from .model import ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef

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


@dataclass(frozen=True, slots=True)
class ResourceResult:
    resource_id: str
    permissionship: Permissionship
    missing_parameters: tuple[str, ...]
    cursor: str  # pass back to resume after this result


@dataclass(frozen=True, slots=True)
class SubjectResult:
    """A subject with the permission; for a wildcard (``id == "*"``), ``excluded`` lists the
    subjects of that type that the wildcard does not cover (removed by an exclusion)."""

    subject: SubjectRef
    permissionship: Permissionship
    missing_parameters: tuple[str, ...]
    excluded: tuple[SubjectRef, ...]
    cursor: str


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


__all__ = [
    "BulkCheckResponse",
    "Change",
    "CheckRequest",
    "CheckResponse",
    "CheckResult",
    "DeleteResult",
    "EngineStatistics",
    "ExpandNode",
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
