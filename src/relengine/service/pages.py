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

from typing import Callable, Iterator, TypeVar, cast

from ..engine.dispatch import HAS, NO, Result, to_check_result
from ..engine.lookup import FoundSubjects
from ..errors import InvalidArgument
from ..model import Consistency, Relationship, Revision, SubjectRef, new_subject, parse_relationship
from ..results import (
    ResourceResult, SubjectResult, decode_cursor, granted_resources, granted_subjects, malformed_cursor,
)
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
    found: list[tuple[str, Result]] | list[str], after: str | None, limit: int | None, revision: Revision
) -> Iterator[ResourceResult]:
    """LookupResources' page: the ids after ``after``, at most ``limit`` of them. ``found``:
    (id, answer) pairs, or only ids where every answer is HAS (``lookup.lookup_resources``)."""
    if found and isinstance(found[0], str):  # every one granted: built in one loop, not a call each
        ids = found
        if after is not None:
            ids = [rid for rid in ids if rid > after]
        return iter(granted_resources(revision.value, page(ids, limit)))
    pairs = cast("list[tuple[str, Result]]", found)
    if after is not None:
        pairs = [(rid, result) for rid, result in pairs if rid > after]
    return _resources(page(pairs, limit), revision.value)


def _resources(found: list[tuple[str, Result]], at: int) -> Iterator[ResourceResult]:
    make = ResourceResult.at
    for rid, result in found:
        if result is HAS:
            yield make(at, rid, HAS, ())
        else:
            answer = to_check_result(result)
            yield make(at, rid, answer.permissionship, answer.missing_parameters)


def subjects(
    found: FoundSubjects, subject_type: str, subject_relation: str | None, revision: Revision
) -> list[SubjectResult]:
    """LookupSubjects' whole listing: the wildcard first (its ``excluded`` listing the subjects
    an exclusion removed), then concrete subjects by id; ``subject_page`` cuts a page of it."""
    at = revision.value
    if found.wildcard is NO and (found.granted or all(result is HAS for _, result in found.subjects)):  # the usual case
        return granted_subjects(at, subject_type, [sid for sid, _ in found.subjects], subject_relation)
    entries: list[SubjectResult] = []
    make = SubjectResult.at
    if found.wildcard is not NO:
        answer = to_check_result(found.wildcard)
        excluded = tuple(SubjectRef(subject_type, i, subject_relation) for i in sorted(found.excluded))
        entries.append(make(at, SubjectRef(subject_type, "*"), answer.permissionship, answer.missing_parameters, excluded))
    for sid, result in found.subjects:
        answer = to_check_result(result)
        entries.append(
            make(at, new_subject(subject_type, sid, subject_relation), answer.permissionship, answer.missing_parameters)
        )
    return entries


def subject_page(entries: list[SubjectResult], after: str | None, limit: int | None) -> list[SubjectResult]:
    """The page of a LookupSubjects listing after ``after`` (never the wildcard on a resumed
    page), at most ``limit`` of them."""
    if after is not None:
        entries = [e for e in entries if e.subject.id != "*" and e.subject.id > after]
    return page(entries, limit)


def page(items: list[T], limit: int | None) -> list[T]:
    return items if limit is None else items[:limit]
