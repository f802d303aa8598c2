"""The LMDB environment (storage/lmdb/env.py): a map that fills or grows, reader slots, commit
stamps, closing, and LMDB's errors translated into relengine's."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import lmdb
import pytest

from relengine.errors import BatchTooLarge, StorageError, StoreFull, Unavailable
from relengine.model import RelationshipFilter, Revision, SubjectRef
from relengine.storage.base import micros
from relengine.storage.lmdb import LmdbStore

from ..conformance import touch
from .helpers import WRITER, run_python

# -- the map --------------------------------------------------------------------------------


def _batch(number: int) -> list[str]:
    return [f"doc:d{number}_{i}#viewer@user:someone_with_a_long_name_{i}" for i in range(50)]


def _fill(store: LmdbStore) -> int:
    """Write batches until the store is full; returns the number of the batch that failed."""
    for number in range(10_000):
        try:
            touch(store, *_batch(number))
        except StoreFull:
            return number
    raise AssertionError("the store never filled")


def test_a_full_store_says_how_to_grow_and_keeps_reading(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=256 * 1024, sync=False)
    failed = _fill(store)
    head = store.head_revision()
    assert head == Revision(failed)
    with pytest.raises(StoreFull, match=r"map_size.*\(e\.g\. map_size=\d+\)") as info:
        touch(store, *_batch(failed))
    assert isinstance(info.value.__cause__, lmdb.MapFullError)
    # The failed batch left no trace; everything committed reads as before.
    reader = store.snapshot()
    assert reader.revision == head
    assert list(reader.read(RelationshipFilter("doc", resource_id_prefix=f"d{failed}_"))) == []
    assert len(list(reader.read(RelationshipFilter("doc", "d0_0")))) == 1
    assert store.snapshot(Revision(1)).relationship(
        "doc", "d0_0", "viewer", SubjectRef("user", "someone_with_a_long_name_0")
    ) is not None
    store.close()
    with LmdbStore(tmp_path, map_size=4 * 1024 * 1024, sync=False) as bigger:
        assert bigger.head_revision() == head
        assert touch(bigger, f"doc:d{failed}_0#viewer@user:x") == Revision(head.value + 1)


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
    fixed = make_store(map_size=256 * 1024)._environment
    assert not fixed.grow(force=True)  # no max_map_size: never by itself
    env = make_store(map_size=256 * 1024, max_map_size=1024 * 1024)._environment
    epoch = env.epoch
    assert not env.grow()  # a new store uses far less than half its map
    assert (env.lmdb_env.info()["map_size"], env.epoch) == (256 * 1024, epoch)
    assert env.grow(force=True)
    assert (env.lmdb_env.info()["map_size"], env.epoch) == (512 * 1024, epoch + 1)
    assert env.grow(force=True)
    assert env.lmdb_env.info()["map_size"] == 1024 * 1024
    assert not env.grow(force=True)
    assert (env.lmdb_env.info()["map_size"], env.epoch) == (1024 * 1024, epoch + 2)
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
    assert "grows by itself" in str(full) and full.fields() == {"map_size": 256 * 1024}
    readers = env.translate(lmdb.ReadersFullError("mdb_txn_begin", 0))
    assert isinstance(readers, Unavailable)
    assert "all 7 LMDB reader slots" in str(readers) and "max_readers" in str(readers)
    assert isinstance(env.translate(lmdb.TxnFullError("mdb_put", 0)), BatchTooLarge)
    at_most = make_store(map_size=256 * 1024, max_map_size=256 * 1024)._environment
    assert "map_size=524288" in str(at_most.translate(lmdb.MapFullError("mdb_put", 0)))
