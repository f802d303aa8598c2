"""The storage contract: a TupleStore hands out Readers (snapshots) and Transactions.

Two implementations satisfy it, checked by one conformance suite (tests/storage/):
``memory.MemoryStore`` (the reference, simplest correct one) and ``lmdb.LmdbStore`` (the product).

Revisions
    Every committed transaction that changed something gets the next revision (head + 1).
    A Reader at revision R sees exactly the relationships and the schema text live at R,
    whatever is written later, until R falls out of the garbage-collection window.

Threads and processes
    A store may be shared by threads. A Reader is used by one thread at a time and is
    short-lived: take one per request, never hold it across requests. The LMDB store may
    also be shared by processes on one data directory: a commit in one is visible to the
    next ``snapshot()`` in the others.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Iterator, Protocol

from ..model import Relationship, RelationshipFilter, Revision, SubjectRef


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
    kind: PreconditionKind
    filter: RelationshipFilter


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the changelog: at ``revision``, ``relationship`` was touched or deleted.

    A schema change is reported with ``relationship=None`` and ``schema_changed=True``.
    """

    revision: Revision
    operation: Operation
    relationship: Relationship | None
    schema_changed: bool = False


class Reader(Protocol):
    """A consistent snapshot at one revision. Cheap to create; use it for one request."""

    @property
    def revision(self) -> Revision: ...

    def schema_text(self) -> str | None:
        """The schema text live at this revision, or None if none was ever written."""
        ...

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        """Every live relationship ``resource_type:resource_id#relation@*``, ordered by subject
        (type, id, relation). One range scan of the by-resource index."""
        ...

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        """The live relationship with exactly this key, or None. One point read."""
        ...

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        """Every live relationship whose subject is exactly ``subject`` (a relation of None
        means the object itself), optionally narrowed to a resource type and relation.
        One range scan of the by-subject index."""
        ...

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        """Live relationships matching ``filter`` in key order, strictly after ``after`` (the
        cursor: the last relationship of the previous page), at most ``limit`` of them."""
        ...


class Transaction(Protocol):
    """A write transaction; all its changes commit as one new revision, or none do.

    Reads through a transaction see the state it started from plus its own writes.
    Raising out of the ``with`` block aborts it and leaves no trace.
    """

    def reader(self) -> Reader:
        """The state as this transaction sees it (its own writes included)."""
        ...

    def schema_text(self) -> str | None: ...

    def set_schema(self, text: str) -> None: ...

    def apply(self, update: RelationshipUpdate) -> None:
        """Apply one update; CREATE of a live relationship raises AlreadyExists."""
        ...

    def matches(self, filter: RelationshipFilter) -> bool:
        """Whether any live relationship (own writes included) matches ``filter``."""
        ...

    def delete_matching(self, filter: RelationshipFilter, limit: int | None = None) -> tuple[int, bool]:
        """Delete live relationships matching ``filter``, at most ``limit``; returns (count, all
        matching were deleted)."""
        ...


class TupleStore(Protocol):
    """Where relationships and the schema live, at revisions."""

    def head_revision(self) -> Revision:
        """The newest committed revision (0 for an empty store)."""
        ...

    def snapshot(self, revision: Revision | None = None) -> Reader:
        """A Reader at ``revision`` (default: head). Raises RevisionUnavailable for a revision
        newer than head or older than the garbage-collection window."""
        ...

    def transaction(self) -> "TransactionContext":
        """``with store.transaction() as tx: ...``; after the block, ``ctx.revision`` is the
        committed revision (unchanged head if nothing changed)."""
        ...

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        """Every change after ``after``, in revision order, then block for new ones (up to
        ``timeout`` seconds without a change, forever if None)."""
        ...

    def close(self) -> None: ...


class TransactionContext(Protocol):
    revision: Revision | None

    def __enter__(self) -> Transaction: ...

    def __exit__(self, *exc: object) -> bool | None: ...


__all__ = [
    "Change",
    "Operation",
    "Precondition",
    "PreconditionKind",
    "Reader",
    "RelationshipUpdate",
    "Transaction",
    "TransactionContext",
    "TupleStore",
]
