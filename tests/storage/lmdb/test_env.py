"""The LMDB environment (storage/lmdb/env.py): a map that fills or grows, reader slots, commit
stamps, closing, and LMDB's errors translated into relengine's."""

from __future__ import annotations

import datetime as dt
import errno
from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest

from relengine.errors import BatchTooLarge, StorageError, StoreFull, Unavailable
from relengine.model import RelationshipFilter, Revision, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage.base import micros
from relengine.storage.lmdb import LmdbStore
from relengine.storage.lmdb.env import disk_trouble

from ..conformance import touch
from .helpers import WRITER, run_python

# -- the map --------------------------------------------------------------------------------


def _batch(number: int) -> list[str]:
    return [f"doc:d{number}_{i}#viewer@user:someone_with_a_long_name_{i}" for i in range(50)]


MAP = 2 * 1024 * 1024  # a small size limit, its last 256 KiB kept for deletes


def _fill(store: LmdbStore) -> int:
    """Write batches until the store is full; returns the number of the batch that failed."""
    for number in range(10_000):
        try:
            touch(store, *_batch(number))
        except StoreFull:
            return number
    raise AssertionError("the store never filled")


def test_a_full_store_refuses_what_adds_data_says_what_to_do_and_keeps_reading(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=MAP, max_map_size=MAP, sync=False)
    failed = _fill(store)
    head = store.head_revision()
    assert head == Revision(failed)
    with pytest.raises(StoreFull) as info:
        touch(store, *_batch(failed))
    message = str(info.value)
    assert f"the store at {tmp_path} is full: it uses " in message
    assert "of its 2 MiB size limit (--max-store-size; max_map_size in Python)" in message
    assert "whose last 256 KiB are kept for deletes" in message and "deletes still work" in message
    # The batch that failed met the limit itself: the map now reaches a reserve past it, for deletes.
    assert info.value.fields() == {"map_size": MAP + MAP // 8, "limit": MAP, "reason": "size_limit"}
    # The failed batch left no trace; everything committed reads as before.
    reader = store.snapshot()
    assert reader.revision == head
    assert list(reader.read(RelationshipFilter("doc", resource_id_prefix=f"d{failed}_"))) == []
    assert len(list(reader.read(RelationshipFilter("doc", "d0_0")))) == 1
    assert store.snapshot(Revision(1)).relationship(
        "doc", "d0_0", "viewer", SubjectRef("user", "someone_with_a_long_name_0")
    ) is not None
    store.close()
    with LmdbStore(tmp_path, max_map_size=4 * MAP, sync=False) as bigger:  # a larger limit
        assert bigger.head_revision() == head
        assert touch(bigger, f"doc:d{failed}_0#viewer@user:x") == Revision(head.value + 1)


@pytest.mark.slow
def test_deletes_work_on_a_full_store_and_writes_resume_once_collected(
    tmp_path: Path, clock: Any
) -> None:
    store = LmdbStore(tmp_path, map_size=256 * 1024, max_map_size=2 * MAP, sync=False, clock=clock,
                      gc_window=dt.timedelta(hours=1), gc_interval=None)
    failed = _fill(store)
    for extra in range(1000):  # a batch may no longer fit where single writes still do
        try:
            touch(store, f"doc:extra{extra}#viewer@user:ann")
        except StoreFull as exc:
            assert "deletes still work" in str(exc)
            break
    else:
        raise AssertionError("single writes never filled the store")
    head = store.head_revision().value
    with pytest.raises(StoreFull):
        with store.transaction() as tx:
            tx.set_schema("// a new schema adds data too")
    reader = store.snapshot()  # reads are answered throughout
    assert len(list(reader.read(RelationshipFilter("doc")))) == failed * 50 + extra
    reader.close()
    # DELETE updates, deletes by filter, and a garbage collection all go through.
    with store.transaction() as tx:
        for text in _batch(0)[:10]:
            tx.apply(RelationshipUpdate(Operation.DELETE, parse_relationship(text)))
    for number in range(1, 6):
        with store.transaction() as tx:
            assert tx.delete_matching(RelationshipFilter("doc", resource_id_prefix=f"d{number}_")) == (50, True)
    ctx = store.transaction()
    with ctx as tx:
        assert tx.delete_matching(RelationshipFilter("doc", resource_id_prefix="d6_"), limit=30) == (30, False)
    assert ctx.revision == Revision(head + 7)
    reader = store.snapshot()
    assert len(list(reader.read(RelationshipFilter("doc")))) == (failed - 5) * 50 + extra - 40
    reader.close()
    with pytest.raises(StoreFull):  # the history of the deletes still takes the room...
        touch(store, "doc:new#viewer@user:ann")
    clock.advance(2 * 3600)
    assert store.gc().versions_removed == 290  # ...until it leaves the GC window
    assert touch(store, "doc:new#viewer@user:ann") == Revision(head + 8)
    store.close()


def test_after_a_write_met_the_limit_itself_deletes_go_on_a_reserve_past_it(tmp_path: Path, clock: Any) -> None:
    """Batches that leave more free pages in the file than the reserve (LMDB reuses them only
    a few commits later) never cross the line where writes are refused: one meets the limit."""
    store = LmdbStore(tmp_path, map_size=MAP, max_map_size=MAP, sync=False, clock=clock,
                      gc_window=dt.timedelta(hours=1), gc_interval=None)
    for number in range(10_000):
        try:
            touch(store, *_batch(number))
        except StoreFull as exc:
            assert isinstance(exc.__cause__, lmdb.MapFullError)
            break
    head = store.head_revision().value
    for number in range(1, 6):  # deletes still go through, in the room past the limit
        with store.transaction() as tx:
            assert tx.delete_matching(RelationshipFilter("doc", resource_id_prefix=f"d{number}_")) == (50, True)
    with pytest.raises(StoreFull, match="deletes still work"):  # ...while writes that add wait
        touch(store, "doc:new#viewer@user:ann")
    assert MAP < store.statistics().map_size <= MAP + MAP // 8
    assert (tmp_path / "data.mdb").stat().st_size <= MAP + MAP // 8
    clock.advance(2 * 3600)
    store.gc()
    assert touch(store, "doc:new#viewer@user:ann") == Revision(head + 6)
    assert store.statistics().map_size < MAP + MAP // 8  # back to the limit, or the file if larger
    store.close()


def test_a_delete_too_large_for_the_reserve_says_to_delete_less(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=MAP, max_map_size=MAP, sync=False)
    _fill(store)
    with pytest.raises(StoreFull, match="full even for deletes.*Delete fewer relationships at a time"):
        with store.transaction() as tx:
            tx.delete_matching(RelationshipFilter("doc"))
    assert len(list(store.snapshot().read(RelationshipFilter("doc", "d0_0")))) == 1
    store.close()


def test_the_map_grows_by_itself_up_to_max_map_size(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=256 * 1024, max_map_size=64 * 1024 * 1024, sync=False)
    reader = store.snapshot()
    for number in range(60):
        touch(store, *_batch(number))
    stats = store.statistics()
    assert stats.map_size is not None and stats.map_size > 256 * 1024
    assert stats.relationships == 3000
    # A reader opened before the map grew still answers at its revision.
    assert reader.revision == Revision(0)
    assert list(reader.read(RelationshipFilter("doc"))) == []
    store.close()


def test_grow_doubles_the_map_when_half_used_or_forced_and_stops_at_max_map_size(
    make_store: Callable[..., Any]
) -> None:
    fixed = make_store(map_size=256 * 1024, max_map_size=None)._environment
    assert not fixed.grow(force=True)  # no max_map_size: never by itself
    assert make_store(map_size=1 << 30)._environment.max_map_size == 64 << 30  # by default
    env = make_store(map_size=256 * 1024, max_map_size=1024 * 1024)._environment
    epoch = env.epoch
    assert not env.grow()  # a new store uses far less than half its map
    assert (env.lmdb_env.info()["map_size"], env.epoch) == (256 * 1024, epoch)
    assert env.grow(force=True)  # the epoch moves as the remap starts and as it ends
    assert (env.lmdb_env.info()["map_size"], env.epoch) == (512 * 1024, epoch + 2)
    assert env.grow(force=True)
    assert env.lmdb_env.info()["map_size"] == 1024 * 1024
    assert not env.grow(force=True)
    assert (env.lmdb_env.info()["map_size"], env.epoch) == (1024 * 1024, epoch + 4)
    stats = env.statistics()
    assert stats.map_size == 1024 * 1024
    assert stats.bytes_used is not None and 0 < stats.bytes_used < stats.map_size


@pytest.mark.slow
def test_a_map_grown_by_another_process_is_adopted(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=1024 * 1024, sync=False)
    touch(store, "doc:d1#viewer@user:ann")
    held = store.snapshot()
    out = run_python(WRITER, str(tmp_path), "9999", str(16 * 1024 * 1024))
    assert int(out.stdout.split()[1]) == 16 * 1024 * 1024
    # This process's map is now smaller than the data: LMDB says MapResized, the store adopts.
    reader = store.snapshot()
    assert reader.revision == Revision(2)
    assert len(list(reader.read(RelationshipFilter("doc", resource_id_prefix="p")))) == 9999
    assert [str(r) for r in held.subjects("doc", "d1", "viewer")] == ["doc:d1#viewer@user:ann"]
    assert touch(store, "doc:d2#viewer@user:ann") == Revision(3)
    assert store.statistics().map_size == 16 * 1024 * 1024
    store.close()


IMPORTER = """
import sys
from relengine.errors import StoreFull
from relengine.storage.importer import import_relationships
from relengine.storage.lmdb import LmdbStore
from relengine.storage.lmdb.env import disk_trouble
store = LmdbStore(sys.argv[1], map_size=256 * 1024, max_map_size=int(sys.argv[2]), sync=False)
sizes = set()
lines = (f"doc:p{i}#viewer@user:someone_with_a_long_name_{i}" for i in range(1_000_000))
try:
    import_relationships(store, lines, batch_size=2000,
                         progress=lambda p: sizes.add(store.statistics().map_size))
except StoreFull as exc:
    print(exc)
print(store.statistics().relationships, *sorted(sizes))
"""
"""``DIR LIMIT``: imports relationships into the store at DIR, its map starting at 256 KiB and
growing up to LIMIT, until it is full; prints the error, then the relationships stored and
the map sizes seen after each batch."""


@pytest.mark.slow
def test_an_import_grows_the_map_in_steps_to_its_limit_and_another_process_adopts_it(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=256 * 1024, max_map_size=8 * MAP, sync=False)
    assert store.statistics().map_size == 256 * 1024
    message, counts = run_python(IMPORTER, str(tmp_path), str(2 * MAP)).stdout.splitlines()
    assert message.startswith(f"the store at {tmp_path} is full: it uses ")
    assert "of its 4 MiB size limit (--max-store-size; max_map_size in Python)" in message
    stored, *sizes = map(int, counts.split())
    assert sizes[-3:] == [MAP // 2, MAP, 2 * MAP]  # doubling, from 256 KiB, up to the limit
    # This process's map is smaller than the data now: it adopts the size the importer set.
    assert len(list(store.snapshot().read(RelationshipFilter("doc")))) == stored > 5_000
    assert store.statistics().map_size == 2 * MAP
    store.close()


def test_a_write_the_disk_refused_is_put_down_to_the_disk_only_when_it_is_full() -> None:
    mib = 1 << 20
    assert disk_trouble(errno.ENOSPC, 0, 5 * mib, None) == "the disk is full (0 bytes free)"
    # LMDB reports a short write as EIO: the disk's doing only if it is nearly full.
    assert disk_trouble(errno.EIO, 12 * 1024, 5 * mib, None) == "the disk is full (12 KiB free)"
    assert disk_trouble(errno.EIO, 10 << 30, 5 * mib, None) is None
    assert disk_trouble(errno.EIO, 10 << 30, 2 * mib, 2 * mib) == (
        "the data file reached this process's file size limit (ulimit -f: 2 MiB)"
    )
    assert disk_trouble(errno.EDQUOT, 10 << 30, 5 * mib, None) == "the disk quota of this user is used up"
    assert disk_trouble(errno.EACCES, 0, 5 * mib, None) is None


def test_a_full_disk_is_a_store_full_that_says_to_free_disk_space(make_store: Callable[..., Any]) -> None:
    env = make_store()._environment
    error = env.translate(lmdb.DiskError("mdb_txn_commit", errno.ENOSPC))
    assert isinstance(error, StoreFull) and error.fields()["reason"] == "disk"
    assert "cannot grow: the disk is full" in str(error) and "Free disk space" in str(error)
    assert isinstance(env.translate(lmdb.Error("mdb_txn_commit", errno.EIO)), StorageError)  # disk not full


# -- reader slots ---------------------------------------------------------------------------


def test_too_many_readers_is_unavailable_with_a_hint(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, max_readers=4, sync=False)
    readers = []
    with pytest.raises(Unavailable, match="max_readers"):
        for _ in range(20):
            readers.append(store.snapshot())
    for reader in readers:
        reader.close()
    assert store.snapshot().revision == Revision(0)
    store.close()


# -- commit stamps and closing --------------------------------------------------------------------


def test_commit_micros_is_the_stamp_of_a_committed_revision_only(make_store: Callable[..., Any], clock: Any) -> None:
    store = make_store(clock=clock)
    clock.advance(10.5)
    touch(store, "doc:d1#viewer@user:ann")
    env = store._environment
    txn = env.begin_read()
    try:
        assert env.commit_micros(txn, 1) == micros(clock())
        assert env.commit_micros(txn, 2) is None
    finally:
        txn.abort()


def test_a_closed_environment_begins_nothing(make_store: Callable[..., Any]) -> None:
    env = make_store()._environment
    env.close()
    env.close()  # idempotent
    for begin in (env.begin_read, env.begin_write, env.check_open):
        with pytest.raises(Unavailable, match="is closed"):
            begin()


# -- errors -----------------------------------------------------------------------------------


def test_unexpected_lmdb_errors_become_storage_errors(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    error = store._environment.translate(lmdb.CorruptedError("mdb_get", 0))
    assert isinstance(error, StorageError)
    assert str(tmp_path) in str(error)
    store.close()


def test_lmdb_errors_a_caller_can_act_on_say_what_to_do(make_store: Callable[..., Any]) -> None:
    env = make_store(map_size=256 * 1024, max_map_size=1024 * 1024, max_readers=7)._environment
    full = env.translate(lmdb.MapFullError("mdb_put", 0))
    assert isinstance(full, StoreFull)
    assert "grows by itself" in str(full)
    assert full.fields() == {"map_size": 256 * 1024, "limit": 1024 * 1024, "reason": "map"}
    readers = env.translate(lmdb.ReadersFullError("mdb_txn_begin", 0))
    assert isinstance(readers, Unavailable)
    assert "all 7 LMDB reader slots" in str(readers) and "max_readers" in str(readers)
    assert isinstance(env.translate(lmdb.TxnFullError("mdb_put", 0)), BatchTooLarge)
    at_most = make_store(map_size=256 * 1024, max_map_size=256 * 1024)._environment
    assert "256 KiB size limit (--max-store-size" in str(at_most.translate(lmdb.MapFullError("mdb_put", 0)))
    fixed = make_store(map_size=256 * 1024, max_map_size=None)._environment
    assert "(map_size; max_map_size lets it grow)" in str(fixed.translate(lmdb.MapFullError("mdb_put", 0)))
