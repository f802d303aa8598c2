"""Pages of lookups and reads: where a cursor resumes, the page size, and each result's cursor.

A cursor pins the revision its page was computed at, so the pages of one listing are
consistent with each other; it carries the id (for reads, the relationship) the page stopped
after. A cursor that is not one a page gave out, or that a read gave to a lookup or the other
way round, is InvalidArgument; one whose revision the store no longer keeps (older than the
garbage-collection window) or does not have (newer than its head: from another store) is
RevisionUnavailable, as for a revision token. A cursor from another store whose revision this
store has cannot be told from its own.
"""

from __future__ import annotations

from typing import Callable, Iterator, TypeVar

from ..engine.dispatch import NO, Result, to_check_result
from ..engine.lookup import FoundSubjects
from ..errors import InvalidArgument
from ..model import Consistency, Relationship, Revision, SubjectRef, parse_relationship
from ..results import ResourceResult, SubjectResult, decode_cursor, encode_cursor, malformed_cursor
from ..storage.base import Reader, TupleStore

T = TypeVar("T")


def resume(
    cursor: str | None, consistency: Consistency | None, snapshot: Callable[[Consistency | None], Reader],
    store: TupleStore,
) -> tuple[str | None, Reader]:
    """The id a page resumes after (None: from the start) and a Reader at the page's revision:
    the cursor's, else the one ``consistency`` picks. InvalidArgument for a malformed cursor."""
    if cursor is None:
        return None, snapshot(consistency)
    revision, (after,) = decode_cursor(cursor, str)
    return after, store.snapshot(revision)


def resume_read(
    cursor: str | None, consistency: Consistency | None, snapshot: Callable[[Consistency | None], Reader],
    store: TupleStore,
) -> tuple[Relationship | None, Reader]:
    """``resume`` for ReadRelationships, whose cursor names the relationship a page stopped
    after; without a cursor the read is fully consistent unless ``consistency`` says otherwise."""
    if cursor is None:
        return None, snapshot(consistency or Consistency.fully_consistent())
    revision, (text,) = decode_cursor(cursor, str)
    try:
        after = parse_relationship(text)
    except InvalidArgument:
        raise malformed_cursor(cursor) from None
    return after, store.snapshot(revision)


def check_limit(limit: int | None, maximum: int) -> int | None:
    """The page size ``limit`` asks for (None or 0: everything); InvalidArgument if it is
    negative or above ``maximum``."""
    if limit is None or limit == 0:
        return None
    if limit < 0:
        raise InvalidArgument(f"limit must not be negative, got {limit}")
    if limit > maximum:
        raise InvalidArgument(f"limit {limit} is above the maximum page size {maximum}")
    return limit


def resources(
    found: list[tuple[str, Result]], after: str | None, limit: int | None, revision: Revision
) -> Iterator[ResourceResult]:
    """LookupResources' page: the ids after ``after``, at most ``limit`` of them."""
    if after is not None:
        found = [(rid, result) for rid, result in found if rid > after]
    for rid, result in page(found, limit):
        answer = to_check_result(result)
        yield ResourceResult(rid, answer.permissionship, answer.missing_parameters, encode_cursor(revision, rid))


def subjects(
    found: FoundSubjects, subject_type: str, subject_relation: str | None, after: str | None, limit: int | None,
    revision: Revision,
) -> list[SubjectResult]:
    """LookupSubjects' page: the wildcard first (its ``excluded`` listing the subjects an
    exclusion removed; never on a resumed page), then concrete subjects by id after ``after``."""
    entries: list[SubjectResult] = []
    if found.wildcard is not NO:
        answer = to_check_result(found.wildcard)
        excluded = tuple(SubjectRef(subject_type, i, subject_relation) for i in sorted(found.excluded))
        entries.append(
            SubjectResult(
                SubjectRef(subject_type, "*"), answer.permissionship, answer.missing_parameters, excluded,
                encode_cursor(revision, "*"),
            )
        )
    for sid, result in found.subjects:
        answer = to_check_result(result)
        entries.append(
            SubjectResult(
                SubjectRef(subject_type, sid, subject_relation),
                answer.permissionship,
                answer.missing_parameters,
                (),
                encode_cursor(revision, sid),
            )
        )
    if after is not None:
        entries = [e for e in entries if e.subject.id != "*" and e.subject.id > after]
    return page(entries, limit)


def page(items: list[T], limit: int | None) -> list[T]:
    return items if limit is None else items[:limit]
