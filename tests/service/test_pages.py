"""Pages of lookups and reads: limits, cursors and where they resume."""

from __future__ import annotations

import pytest

from relengine.engine.dispatch import HAS, NO, Conditional
from relengine.engine.lookup import FoundSubjects
from relengine.errors import InvalidArgument, RevisionUnavailable
from relengine.model import Consistency, Revision, SubjectRef
from relengine.results import Permissionship, decode_cursor, encode_cursor
from relengine.service import pages
from relengine.storage.base import Reader
from relengine.storage.memory import MemoryStore


def test_limits() -> None:
    assert pages.check_limit(None, 10) is None and pages.check_limit(0, 10) is None
    assert pages.check_limit(10, 10) == 10
    with pytest.raises(InvalidArgument, match="negative"):
        pages.check_limit(-1, 10)
    with pytest.raises(InvalidArgument, match="maximum page size 10"):
        pages.check_limit(11, 10)


class Snapshots:
    """Stands in for ``Revisions.snapshot``, recording the consistency each call asked for."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.chosen: list[Consistency | None] = []

    def __call__(self, consistency: Consistency | None) -> Reader:
        self.chosen.append(consistency)
        return self.store.snapshot()


def test_a_cursor_resumes_at_its_revision() -> None:
    snapshot = Snapshots()
    after, reader = pages.resume(None, None, snapshot, snapshot.store)
    assert after is None and snapshot.chosen == [None]
    after, reader = pages.resume(encode_cursor(Revision(0), "d7"), None, snapshot, snapshot.store)
    assert after == "d7" and reader.revision == Revision(0) and snapshot.chosen == [None]
    with pytest.raises(InvalidArgument, match="malformed"):
        pages.resume(encode_cursor(Revision(0)), None, snapshot, snapshot.store)


def test_a_read_without_a_cursor_is_fully_consistent_unless_asked_otherwise() -> None:
    snapshot = Snapshots()
    pages.resume_read(None, None, snapshot, snapshot.store)
    assert snapshot.chosen == [Consistency.fully_consistent()]
    after, _ = pages.resume_read(encode_cursor(Revision(0), "doc:a#viewer@user:ann"), None, snapshot, snapshot.store)
    assert str(after) == "doc:a#viewer@user:ann" and len(snapshot.chosen) == 1


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("kQE", id="revision-only"),  # [1]: what `relengine read --cursor kQE` sent
        pytest.param(encode_cursor(Revision(0), 5), id="a-number-for-the-id"),
        pytest.param(encode_cursor(Revision(0), "a", "b"), id="two-parts"),
        pytest.param(encode_cursor(Revision(0), ["a"]), id="a-list-for-the-id"),
    ],
)
def test_a_cursor_of_the_wrong_shape_is_malformed(cursor: str) -> None:
    snapshot = Snapshots()
    for resume in (pages.resume, pages.resume_read):
        with pytest.raises(InvalidArgument, match="malformed cursor"):
            resume(cursor, None, snapshot, snapshot.store)


def test_a_lookup_cursor_is_no_read_cursor() -> None:
    snapshot = Snapshots()
    with pytest.raises(InvalidArgument, match="malformed cursor") as info:
        pages.resume_read(encode_cursor(Revision(0), "d7"), None, snapshot, snapshot.store)
    assert "cursor" in info.value.fields()


def test_a_cursor_the_store_has_no_revision_for_is_revision_unavailable() -> None:
    snapshot = Snapshots()
    for resume, part in ((pages.resume, "d7"), (pages.resume_read, "doc:a#viewer@user:ann")):
        with pytest.raises(RevisionUnavailable):
            resume(encode_cursor(Revision(5), part), None, snapshot, snapshot.store)


def test_a_resources_page_resumes_after_its_cursor() -> None:
    found = [("a", HAS), ("b", Conditional(frozenset({"ip"}))), ("c", HAS)]
    page = list(pages.resources(found, None, 2, Revision(4)))
    assert [(r.resource_id, r.permissionship) for r in page] == [("a", Permissionship.HAS_PERMISSION), ("b", Permissionship.CONDITIONAL_PERMISSION)]
    assert page[1].missing_parameters == ("ip",)
    assert decode_cursor(page[1].cursor, str) == (Revision(4), ["b"])
    assert [r.resource_id for r in pages.resources(found, "b", None, Revision(4))] == ["c"]


def test_a_subjects_page_puts_the_wildcard_first_and_never_resumes_to_it() -> None:
    found = FoundSubjects([("ann", HAS), ("bob", HAS)], HAS, frozenset({"eve"}))
    listing = pages.subjects(found, "user", None, Revision(4))
    page = pages.subject_page(listing, None, None)
    assert [r.subject for r in page] == [SubjectRef("user", "*"), SubjectRef("user", "ann"), SubjectRef("user", "bob")]
    assert page[0].excluded == (SubjectRef("user", "eve"),)
    assert decode_cursor(page[2].cursor, str) == (Revision(4), ["bob"])
    assert [r.subject.id for r in pages.subject_page(listing, "*", None)] == ["ann", "bob"]
    assert [r.subject.id for r in pages.subject_page(listing, "ann", 1)] == ["bob"]
    none = FoundSubjects([], NO, frozenset())
    assert pages.subject_page(pages.subjects(none, "user", None, Revision(4)), None, None) == []
    plain = pages.subjects(FoundSubjects([("ann", HAS), ("bob", HAS)], NO, frozenset()), "user", "member", Revision(4))
    assert [(r.subject, r.permissionship, r.missing_parameters, r.excluded) for r in plain] == [
        (SubjectRef("user", "ann", "member"), HAS, (), ()), (SubjectRef("user", "bob", "member"), HAS, (), ())
    ]
    assert decode_cursor(plain[0].cursor, str) == (Revision(4), ["ann"])
