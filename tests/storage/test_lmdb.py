"""What only the LMDB store has: files, format versions, a map that fills or grows, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lmdb
import pytest

from relengine.errors import (
    FailedPrecondition,
    InvalidArgument,
    RevisionUnavailable,
    StorageError,
    StoreFull,
    Unavailable,
)
from relengine.model import RelationshipFilter, Revision, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage import objects
from relengine.storage.lmdb import LmdbStore

SRC = str(Path(__file__).resolve().parents[2] / "src")


def apply(store: LmdbStore, operation: Operation, *texts: str) -> Revision:
    ctx = store.transaction()
    with ctx as tx:
        for text in texts:
            tx.apply(RelationshipUpdate(operation, parse_relationship(text)))
    assert ctx.revision is not None
    return ctx.revision


def touch(store: LmdbStore, *texts: str) -> Revision:
    return apply(store, Operation.TOUCH, *texts)


def run_python(code: str, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=SRC)
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        env=env, capture_output=True, text=True, timeout=timeout, check=True,
    )


# -- opening ------------------------------------------------------------------------------


def test_data_survives_reopening(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "s", sync=False) as store:
        touch(store, "doc:d1#viewer@user:ann")
        touch(store, "doc:d1#viewer@user:bob")
    with LmdbStore(tmp_path / "s", sync=False) as store:
        assert store.head_revision() == Revision(2)
        reader = store.snapshot(Revision(1))
        assert [str(r) for r in reader.subjects("doc", "d1", "viewer")] == ["doc:d1#viewer@user:ann"]
        assert touch(store, "doc:d1#viewer@user:cid") == Revision(3)


def test_a_directory_with_other_files_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidArgument, match="not a relengine store"):
        LmdbStore(tmp_path)


def test_a_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        LmdbStore(path)


def test_a_foreign_lmdb_environment_is_not_a_store(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"some", b"data")
    env.close()
    with pytest.raises(InvalidArgument, match="not a relengine store"):
        LmdbStore(tmp_path)


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    LmdbStore(tmp_path, sync=False).close()
    env = lmdb.open(str(tmp_path), max_dbs=10)
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        txn.put(b"format", b"99", db=meta)
    env.close()
    with pytest.raises(FailedPrecondition, match="format version 99.*newer relengine"):
        LmdbStore(tmp_path)


def test_create_false_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no relengine store"):
        LmdbStore(tmp_path / "missing", create=False)


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


def test_bulk_touch_grows_the_map_and_retries(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=256 * 1024, max_map_size=64 * 1024 * 1024, sync=False)
    rows = [("doc", f"d{i}", "viewer", "user", f"someone_with_a_long_name_{i}", "") for i in range(20_000)]
    revision, changed = store.bulk_touch(rows)
    assert (revision, changed) == (Revision(1), 20_000)
    assert store.statistics().relationships == 20_000
    store.close()


def test_readers_reopen_their_transaction_when_the_map_is_resized(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=1024 * 1024, max_map_size=64 * 1024 * 1024, sync=False)
    touch(store, "doc:d1#viewer@user:ann", "doc:d1#viewer@user:bob")
    touch(store, "doc:d2#viewer@user:ann")
    reader = store.snapshot(Revision(1))
    scan = reader.subjects("doc", "d1", "viewer")
    assert str(next(scan)) == "doc:d1#viewer@user:ann"
    assert store._environment.grow(force=True)  # invalidates every open LMDB transaction of this process
    assert [str(r) for r in scan] == ["doc:d1#viewer@user:bob"]
    assert reader.relationship("doc", "d2", "viewer", SubjectRef("user", "ann")) is None
    assert reader.schema_text() is None
    store.close()


def test_a_closed_reader_or_store_is_unavailable(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    touch(store, "doc:d1#viewer@user:ann")
    with store.snapshot() as reader:
        pass
    with pytest.raises(Unavailable, match="Reader is closed"):
        reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann"))
    other = store.snapshot()
    store.close()
    with pytest.raises(Unavailable, match="closed"):
        list(other.subjects("doc", "d1", "viewer"))


def test_unexpected_lmdb_errors_become_storage_errors(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    error = store._environment.translate(lmdb.CorruptedError("mdb_get", 0))
    assert isinstance(error, StorageError)
    assert str(tmp_path) in str(error)
    store.close()


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


# -- several processes ------------------------------------------------------------------------

WRITER = """
import sys
from relengine.model import parse_relationship
from relengine.storage import objects
from relengine.storage.base import Operation, RelationshipUpdate
from relengine.storage.lmdb import LmdbStore
store = LmdbStore(sys.argv[1], map_size=int(sys.argv[3]), sync=False, batch_limit=100_000)
with store.transaction() as tx:
    for i in range(int(sys.argv[2])):
        tx.apply(RelationshipUpdate(
            Operation.TOUCH, parse_relationship(f"doc:p{i}#viewer@user:" + "u" * 60 + str(i))))
print(store.head_revision().value, store.statistics().map_size)
store.close()
"""


@pytest.mark.slow
def test_a_write_in_another_process_is_seen_by_the_next_snapshot(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    touch(store, "doc:d1#viewer@user:ann")
    before = store.snapshot()
    out = run_python(WRITER, str(tmp_path), "10", str(64 * 1024 * 1024))
    assert out.stdout.split()[0] == "2"
    assert before.revision == Revision(1)
    assert list(before.read(RelationshipFilter("doc", "p0"))) == []
    after = store.snapshot()
    assert after.revision == Revision(2)
    assert len(list(after.read(RelationshipFilter("doc", resource_id_prefix="p")))) == 10
    changes = list(store.watch(Revision(1), timeout=0))
    assert {c.revision for c in changes} == {Revision(2)} and len(changes) == 10
    store.close()


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


@pytest.mark.slow
def test_watch_sees_commits_of_another_process(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False, poll_interval=0.01)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(tmp_path), "3", str(64 * 1024 * 1024)],
        env=dict(os.environ, PYTHONPATH=SRC), stdout=subprocess.DEVNULL,
    )
    try:
        started = time.monotonic()
        changes = []
        for change in store.watch(Revision(0), timeout=20):
            changes.append(change)
            if len(changes) == 3:
                break
        assert time.monotonic() - started < 20
        assert [c.revision for c in changes] == [Revision(1)] * 3
    finally:
        writer.wait(timeout=20)
        store.close()


def test_watch_of_a_collected_revision_is_refused(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    store = LmdbStore(tmp_path, sync=False, gc_interval=None, clock=lambda: now[0])
    touch(store, "doc:d1#viewer@user:ann")
    touch(store, "doc:d2#viewer@user:ann")
    now[0] += 3 * 86_400
    store.gc()
    with pytest.raises(RevisionUnavailable, match="too old"):
        store.watch(Revision(0))
    store.close()


def test_closing_a_reader_frees_its_slot_even_after_small_object_reads(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, max_readers=2, sync=False)
    touch(store, "doc:d1#viewer@user:ann")
    kept = []
    for _ in range(10):
        reader = store.snapshot()
        assert objects.decode(reader.object_rows("doc", "d1")) == {"viewer": [("user", "ann", None, None)]}
        reader.close()
        kept.append(reader)  # the closed Reader objects stay alive
    store.close()


# -- the objects index ----------------------------------------------------------------------


def delete(store: LmdbStore, *texts: str) -> Revision:
    return apply(store, Operation.DELETE, *texts)


def object_entries(store: LmdbStore) -> dict[bytes, bytes]:
    env = store._environment
    with env.lmdb_env.begin(db=env.objects) as txn:
        return dict(txn.cursor().iternext())


def test_gc_drops_the_entries_of_emptied_objects_only(tmp_path: Path) -> None:
    now = [1_700_000_000.0]
    store = LmdbStore(tmp_path, sync=False, gc_interval=None, clock=lambda: now[0])
    touch(store, "doc:d1#viewer@user:ann", "doc:d1#viewer@user:bob", "doc:d2#viewer@user:ann")
    delete(store, "doc:d1#viewer@user:ann", "doc:d2#viewer@user:ann")
    assert set(object_entries(store)) == {b"doc\x00d1\x00", b"doc\x00d2\x00"}  # d2: an empty entry
    now[0] += 3 * 86_400
    store.gc()
    assert set(object_entries(store)) == {b"doc\x00d1\x00"}
    reader = store.snapshot()
    assert objects.decode(reader.object_rows("doc", "d1")) == {"viewer": [("user", "bob", None, None)]}
    assert objects.decode(reader.object_rows("doc", "d2")) == {}
    store.close()


def test_a_format_1_store_gains_the_objects_index_when_opened(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    first = touch(store, "doc:d1#viewer@user:ann", "doc:d2#viewer@user:ann")
    touch(store, "doc:d1#viewer@user:bob", "doc:" + "x" * 100 + "#viewer@user:ann")
    delete(store, "doc:d2#viewer@user:ann")
    head = store.head_revision()
    store.close()
    env = lmdb.open(str(tmp_path), max_dbs=16)  # make it what relengine 1 wrote
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"objects", txn=txn), delete=True)
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"format", b"1", db=meta)
        txn.delete(b"objects_since", db=meta)
    env.close()

    store = LmdbStore(tmp_path, sync=False)
    assert store._environment.objects_since == head.value
    assert len(object_entries(store)) == 2  # d1 and the long one; d2 has no relationships
    reader = store.snapshot()
    ann = ("user", "ann", None, None)
    assert objects.decode(reader.object_rows("doc", "d1")) == {"viewer": [ann, ("user", "bob", None, None)]}
    assert objects.decode(reader.object_rows("doc", "x" * 100)) == {"viewer": [ann]}
    assert objects.decode(reader.object_rows("doc", "d2")) == {}
    # Older revisions are read by range scans: the index only knows them from its start.
    assert objects.decode(store.snapshot(first).object_rows("doc", "d2")) == {"viewer": [ann]}
    store.close()
    with LmdbStore(tmp_path, sync=False) as again:  # upgraded once
        assert again._environment.objects_since == head.value
