"""The policy both stores share (storage/base.py): revision stamps, the GC window, which revisions
can be read or watched, the batch limit's error, and what a limited delete picks."""

from __future__ import annotations

import datetime as dt

import pytest

from relengine.errors import BatchTooLarge, RevisionUnavailable
from relengine.model import RelationshipFilter, Revision, SubjectFilter, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage.base import (
    batch_too_large,
    check_readable,
    check_watchable,
    gc_cutoff,
    has_match,
    is_gc_due,
    micros,
    to_delete,
    too_old,
)
from relengine.storage.memory import MemoryStore

HOUR = dt.timedelta(hours=1)
NOW = 1_700_000_000.0


def test_micros_and_the_gc_cutoff() -> None:
    assert micros(1.5) == 1_500_000
    assert micros(NOW) == 1_700_000_000_000_000
    assert gc_cutoff(NOW, HOUR) == micros(NOW) - 3_600_000_000
    assert gc_cutoff(NOW, dt.timedelta(microseconds=1)) == micros(NOW) - 1


def test_gc_is_due_once_its_interval_has_passed() -> None:
    assert not is_gc_due(None, 0.0, NOW)
    assert not is_gc_due(60.0, NOW, NOW + 59.9)
    assert is_gc_due(60.0, NOW, NOW + 60.0)
    assert is_gc_due(0.0, NOW, NOW)


def test_too_old_names_the_window_and_the_revision() -> None:
    error = too_old(5, HOUR)
    assert isinstance(error, RevisionUnavailable)
    assert "too old" in str(error) and "1:00:00" in str(error)
    assert error.fields() == {"revision": Revision(5).token()}


class Stamps:
    """Commit stamps by revision (epoch micros), remembering which revisions were asked for."""

    def __init__(self, stamps: dict[int, int] | None = None) -> None:
        self.stamps = stamps or {}
        self.asked: list[int] = []

    def __call__(self, revision: int) -> int | None:
        self.asked.append(revision)
        return self.stamps.get(revision)


def _readable(revision: int, stamps: Stamps, *, head: int = 5, horizon: int = 2) -> None:
    check_readable(revision, head, horizon, HOUR, lambda: NOW, stamps)


def test_check_readable_at_head_asks_for_no_stamp() -> None:
    stamps = Stamps()
    _readable(5, stamps)
    assert stamps.asked == []


def test_check_readable_below_head_needs_the_next_commit_inside_the_window() -> None:
    cutoff = gc_cutoff(NOW, HOUR)
    inside = Stamps({4: cutoff + 1})
    _readable(3, inside)
    assert inside.asked == [4]
    for stamps in (Stamps({4: cutoff}), Stamps()):  # on the cutoff, or not recorded (collected)
        with pytest.raises(RevisionUnavailable, match="too old"):
            _readable(3, stamps)


def test_check_readable_refuses_revisions_past_head_or_below_the_horizon() -> None:
    with pytest.raises(RevisionUnavailable, match="newer than the newest revision") as newer:
        _readable(6, Stamps())
    assert newer.value.fields() == {"revision": Revision(6).token()}
    with pytest.raises(RevisionUnavailable, match="too old"):
        _readable(1, Stamps({2: micros(NOW)}))
    _readable(2, Stamps({3: micros(NOW)}))  # the horizon itself is readable


def test_check_watchable_from_the_horizon_to_head() -> None:
    check_watchable(2, 5, 2, HOUR)
    check_watchable(5, 5, 2, HOUR)
    with pytest.raises(RevisionUnavailable, match="cannot watch after revision .* newer"):
        check_watchable(6, 5, 2, HOUR)
    with pytest.raises(RevisionUnavailable, match="too old"):
        check_watchable(1, 5, 2, HOUR)


def test_batch_too_large_says_the_limit_and_how_to_split() -> None:
    error = batch_too_large(3)
    assert isinstance(error, BatchTooLarge)
    assert "at most 3 updates" in str(error) and "split" in str(error)
    assert error.fields() == {"limit": 3}


def _store(*texts: str) -> MemoryStore:
    store = MemoryStore()
    with store.transaction() as tx:
        for text in texts:
            tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship(text)))
    return store


def test_to_delete_takes_the_first_matches_in_key_order_and_says_if_that_is_all() -> None:
    reader = _store("doc:d3#viewer@user:ann", "doc:d1#viewer@user:ann", "doc:d2#viewer@user:ann").snapshot()
    every = RelationshipFilter("doc")
    found, complete = to_delete(reader, every, None)
    assert ([r.resource.id for r in found], complete) == (["d1", "d2", "d3"], True)
    found, complete = to_delete(reader, every, 2)
    assert ([r.resource.id for r in found], complete) == (["d1", "d2"], False)
    assert to_delete(reader, every, 3)[1] is True
    assert to_delete(reader, every, 0) == ([], False)
    assert to_delete(reader, RelationshipFilter("folder"), 0) == ([], True)


def test_has_match() -> None:
    reader = _store("doc:d1#viewer@user:ann").snapshot()
    assert has_match(reader, RelationshipFilter("doc", subject=SubjectFilter("user", "ann")))
    assert not has_match(reader, RelationshipFilter("doc", subject=SubjectFilter("user", "bob")))
