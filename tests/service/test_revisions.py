"""Revisions: which revision each consistency reads, and the reuse of a recent one."""

from __future__ import annotations

import pytest

from relengine.errors import InvalidArgument, RevisionUnavailable
from relengine.model import Consistency, Revision, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.service.revisions import Revisions
from relengine.storage.memory import MemoryStore


def commit(store: MemoryStore, text: str) -> Revision:
    ctx = store.transaction()
    with ctx as tx:
        tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship(text)))
    assert ctx.revision is not None
    return ctx.revision


def at(revisions: Revisions, consistency: Consistency | None = None) -> Revision:
    reader = revisions.snapshot(consistency)
    reader.close()
    return reader.revision


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    commit(s, "doc:a#viewer@user:ann")
    return s


def test_minimize_latency_reuses_the_revision_it_chose_until_told_of_a_write(store: MemoryStore) -> None:
    revisions = Revisions(store, quantization_seconds=3600)
    assert revisions.recent() is None
    first = at(revisions)
    assert revisions.recent() == first
    commit(store, "doc:b#viewer@user:ann")  # written behind its back
    assert at(revisions) == first
    newer = commit(store, "doc:c#viewer@user:ann")
    assert revisions.committed(newer) == newer  # a write through the Engine
    assert revisions.recent() is None and at(revisions) == newer


def test_no_quantization_reads_head_every_time(store: MemoryStore) -> None:
    revisions = Revisions(store, quantization_seconds=0)
    at(revisions)
    head = commit(store, "doc:b#viewer@user:ann")
    assert revisions.recent() is None and at(revisions) == head


def test_forget_ends_the_reuse(store: MemoryStore) -> None:
    revisions = Revisions(store, quantization_seconds=3600)
    at(revisions)
    head = commit(store, "doc:b#viewer@user:ann")
    revisions.forget()
    assert at(revisions) == head


def test_fresh_modes(store: MemoryStore) -> None:
    revisions = Revisions(store, quantization_seconds=3600)
    first = at(revisions)
    head = commit(store, "doc:b#viewer@user:ann")
    assert at(revisions, Consistency.fully_consistent()) == head
    assert at(revisions, Consistency.at_exact_snapshot(first)) == first
    # at_least_as_fresh takes the reused revision when it is fresh enough, else head.
    assert at(revisions, Consistency.at_least_as_fresh(first)) == first
    assert at(revisions, Consistency.at_least_as_fresh(head)) == head
    with pytest.raises(RevisionUnavailable, match="newer"):
        revisions.snapshot(Consistency.at_least_as_fresh(Revision(head.value + 1)))


def test_at_least_as_fresh_chooses_head_for_later_reads_when_none_is_recent(store: MemoryStore) -> None:
    revisions = Revisions(store, quantization_seconds=3600)
    head = store.head_revision()
    assert at(revisions, Consistency.at_least_as_fresh(head)) == head
    assert revisions.recent() == head


def test_unknown_mode_is_refused(store: MemoryStore) -> None:
    with pytest.raises(InvalidArgument):
        Revisions(store, 1.0).snapshot(Consistency("sometimes"))
