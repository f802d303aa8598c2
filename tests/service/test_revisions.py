"""Revisions: which revision each consistency reads, and the reuse of a recent one."""

from __future__ import annotations

from pathlib import Path

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


def _open_read_transactions(store: object) -> int:
    """Read transactions open in the LMDB environment now (reset spare ones show ``-``)."""
    table = store._env.readers().splitlines()[1:]  # type: ignore[attr-defined]
    return sum(1 for line in table if line.split()[-1] != "-")


def test_checks_pass_their_read_transaction_on_within_a_period_and_writes_close_it(tmp_path: Path) -> None:
    import threading
    import time

    from relengine.model import ObjectRef, SubjectRef
    from relengine.service import Engine
    from relengine.config import EngineConfig
    from relengine.storage.lmdb import LmdbStore

    threads_before = threading.active_count()
    store = LmdbStore(tmp_path / "store")
    engine = Engine(store, EngineConfig(quantization_seconds=3600, cache_size=0))
    engine.write_schema("definition user {}\ndefinition doc {\n relation viewer: user\n}")
    engine.touch([parse_relationship(f"doc:d{i}#viewer@user:u{i}") for i in range(20)])
    doc, user = ObjectRef, SubjectRef
    for i in range(20):
        assert engine.check(doc("doc", f"d{i}"), "viewer", user("user", f"u{i}")).allowed
    assert _open_read_transactions(store) == 1  # one, passed from check to check

    wrong: list[int] = []

    def asker(k: int) -> None:
        for n in range(200):
            i = (k + n) % 20
            if engine.check(doc("doc", f"d{i}"), "viewer", user("user", f"u{(i + k % 2) % 20}")).allowed != (k % 2 == 0):
                wrong.append(i)

    threads = [threading.Thread(target=asker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not wrong
    assert 1 <= _open_read_transactions(store) <= 8  # one per thread that checked at once, at most

    # A write through the Engine closes them, and the next check sees it.
    engine.touch([parse_relationship("doc:d0#viewer@user:zed")])
    assert _open_read_transactions(store) == 0
    assert engine.check(doc("doc", "d0"), "viewer", user("user", "zed")).allowed
    assert _open_read_transactions(store) == 1
    # Other consistencies keep nothing; housekeeping closes what was kept.
    assert engine.check(doc("doc", "d1"), "viewer", user("user", "u1"), consistency=Consistency.fully_consistent()).allowed
    assert _open_read_transactions(store) == 1
    engine.gc()
    assert _open_read_transactions(store) == 0
    engine.check(doc("doc", "d1"), "viewer", user("user", "u1"))
    engine.close()  # and the timer waiting for the period's end is gone with them
    deadline = time.monotonic() + 10
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == threads_before


def test_a_reader_is_kept_only_within_its_period(tmp_path: Path) -> None:
    from relengine.storage.lmdb import LmdbStore

    store = LmdbStore(tmp_path / "store")
    commit_lmdb = store.transaction()
    with commit_lmdb as tx:
        tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:a#viewer@user:ann")))
    revisions = Revisions(store, quantization_seconds=3600)
    reader, period = revisions.lease()
    revisions.give_back(reader, period)
    again, same = revisions.lease()
    assert again is reader and same is period
    revisions.give_back(again, same)
    revisions.forget()  # a new period: the kept Reader is closed, a new one opened
    assert _open_read_transactions(store) == 0
    fresh, other = revisions.lease()
    assert fresh is not reader and other is not period
    revisions.give_back(fresh, period)  # from a period that has ended: closed, not kept
    assert _open_read_transactions(store) == 0
    store.close()


def test_readers_of_stores_that_do_not_allow_it_are_never_kept(store: MemoryStore) -> None:
    revisions = Revisions(store, quantization_seconds=3600)
    reader, period = revisions.lease()
    revisions.give_back(reader, period)
    assert revisions.lease()[0] is not reader


def test_kept_readers_are_closed_when_their_period_ends_without_another_request(tmp_path: Path) -> None:
    import time

    from relengine.storage.lmdb import LmdbStore

    store = LmdbStore(tmp_path / "store")
    with store.transaction() as tx:
        tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:a#viewer@user:ann")))
    revisions = Revisions(store, quantization_seconds=0.2)
    readers = [revisions.lease() for _ in range(3)]
    for reader, period in readers:
        revisions.give_back(reader, period)
    assert _open_read_transactions(store) == 3
    deadline = time.monotonic() + 10
    while _open_read_transactions(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_read_transactions(store) == 0
    store.close()


def test_writes_start_no_timer_and_the_reader_kept_after_them_is_still_closed_when_its_period_ends(tmp_path: Path) -> None:
    """A write starts a new period; the timer already waiting (for an earlier period's end)
    serves it, asking for the next end as it fires, instead of a thread per write."""
    import threading
    import time

    from relengine.config import EngineConfig
    from relengine.model import ObjectRef, SubjectRef
    from relengine.service import Engine
    from relengine.storage.lmdb import LmdbStore

    store = LmdbStore(tmp_path / "store")
    engine = Engine(store, EngineConfig(quantization_seconds=0.5))
    engine.write_schema("definition user {}\ndefinition doc {\n relation viewer: user\n}")
    question = (ObjectRef("doc", "d0"), "viewer", SubjectRef("user", "u0"))
    engine.check(*question)
    threads = threading.active_count()
    timers = set()
    for i in range(30):
        engine.touch([parse_relationship(f"doc:d{i}#viewer@user:u{i}")])
        assert engine.check(*question).allowed  # a new period, a Reader kept for it
        timers.add(engine._revisions._timer)
        assert threading.active_count() <= threads
    assert len(timers - {None}) <= 2  # the first period's, and one more if it fired meanwhile
    assert _open_read_transactions(store) == 1
    deadline = time.monotonic() + 10
    while _open_read_transactions(store) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _open_read_transactions(store) == 0  # closed at its period's end, by the timer's successor
    engine.close()
