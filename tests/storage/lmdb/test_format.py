"""The on-disk format (storage/lmdb/format.py): which directories are stores, the records a new
store starts with, format versions, and the format 1 upgrade."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import lmdb
import pytest

from relengine.errors import FailedPrecondition, InvalidArgument
from relengine.storage import keys, objects
from relengine.storage.base import micros
from relengine.storage.lmdb import FORMAT_VERSION, LmdbStore
from relengine.storage.lmdb import format as layout

from ..conformance import delete, touch
from .helpers import object_entries

# -- which directories are stores ---------------------------------------------------------------


def test_a_directory_with_other_files_is_not_a_store(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InvalidArgument, match="not a relengine store"):
        LmdbStore(tmp_path)


def test_a_file_is_not_a_store(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(InvalidArgument, match="not a directory"):
        LmdbStore(path)


def test_create_false_needs_an_existing_store(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="no relengine store"):
        LmdbStore(tmp_path / "missing", create=False)


def test_an_empty_directory_or_a_lone_lock_file_may_become_a_store(tmp_path: Path) -> None:
    layout.check_directory(tmp_path, create=False)
    (tmp_path / "lock.mdb").write_bytes(b"")  # what a process that died before its first commit leaves
    layout.check_directory(tmp_path, create=False)
    nested = tmp_path / "a" / "b"
    layout.check_directory(nested, create=True)
    assert nested.is_dir()


def test_a_foreign_lmdb_environment_is_not_a_store(tmp_path: Path) -> None:
    env = lmdb.open(str(tmp_path), max_dbs=2)
    with env.begin(write=True) as txn:
        txn.put(b"some", b"data")
    env.close()
    with pytest.raises(InvalidArgument, match="not a relengine store"):
        LmdbStore(tmp_path)


# -- a new store ----------------------------------------------------------------------------------


def test_a_new_store_records_its_format_its_state_and_when_revision_0_was_made(
    tmp_path: Path, clock: Callable[[], float]
) -> None:
    env = lmdb.open(str(tmp_path), max_dbs=len(layout.DB_NAMES))
    try:
        dbs, since, unique = layout.open_databases(env, tmp_path, clock)
        assert since == 0 and len(unique) == 32
        meta, revs = dbs[0], dbs[layout.DB_NAMES.index(b"revs")]
        with env.begin() as txn:
            assert txn.get(layout.ID_KEY, db=meta) == unique.encode()
            assert txn.get(layout.FORMAT_KEY, db=meta) == str(FORMAT_VERSION).encode()
            assert layout.read_state(txn, meta) == (0, 0, 0)
            assert keys.decode_revision(txn.get(keys.encode_revision(0), db=revs)) == micros(clock())
            assert set(txn.cursor().iternext(values=False)) == set(layout.DB_NAMES)
        with env.begin(write=True) as txn:
            layout.write_state(txn, meta, (7, 3, 5))
        with env.begin() as txn:
            assert layout.read_state(txn, meta) == (7, 3, 5)
    finally:
        env.close()


# -- format versions ------------------------------------------------------------------------------


def _edit_meta(path: Path, key: bytes, value: bytes | None) -> None:
    """Set (or, with None, delete) one record of the meta database of the closed store at ``path``."""
    env = lmdb.open(str(path), max_dbs=len(layout.DB_NAMES))
    meta = env.open_db(b"meta")
    with env.begin(write=True) as txn:
        if value is None:
            txn.delete(key, db=meta)
        else:
            txn.put(key, value, db=meta)
    env.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    LmdbStore(tmp_path, sync=False).close()
    _edit_meta(tmp_path, layout.FORMAT_KEY, b"99")
    with pytest.raises(FailedPrecondition, match="format version 99.*newer relengine"):
        LmdbStore(tmp_path)


@pytest.mark.parametrize("raw", [None, b"two", b""], ids=["absent", "not-a-number", "empty"])
def test_a_store_without_a_readable_format_version_is_refused(tmp_path: Path, raw: bytes | None) -> None:
    LmdbStore(tmp_path, sync=False).close()
    _edit_meta(tmp_path, layout.FORMAT_KEY, raw)
    with pytest.raises(InvalidArgument, match="not a relengine store: no format version"):
        LmdbStore(tmp_path)


def test_a_store_missing_one_of_its_databases_is_refused(tmp_path: Path) -> None:
    LmdbStore(tmp_path, sync=False).close()
    env = lmdb.open(str(tmp_path), max_dbs=len(layout.DB_NAMES))
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"log", txn=txn), delete=True)
    env.close()
    with pytest.raises(InvalidArgument, match="not a complete relengine store: missing log"):
        LmdbStore(tmp_path)


# -- the format 1 upgrade ----------------------------------------------------------------------


def _make_format_1(path: Path) -> None:
    """Make the closed store at ``path`` what relengine 1 wrote: no objects index."""
    env = lmdb.open(str(path), max_dbs=16)
    with env.begin(write=True) as txn:
        txn.drop(env.open_db(b"objects", txn=txn), delete=True)
        meta = env.open_db(b"meta", txn=txn)
        txn.put(b"format", b"1", db=meta)
        txn.delete(b"objects_since", db=meta)
    env.close()


def test_a_format_1_store_gains_the_objects_index_when_opened(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    first = touch(store, "doc:d1#viewer@user:ann", "doc:d2#viewer@user:ann")
    touch(store, "doc:d1#viewer@user:bob", "doc:" + "x" * 100 + "#viewer@user:ann")
    delete(store, "doc:d2#viewer@user:ann")
    head = store.head_revision()
    store.close()
    _make_format_1(tmp_path)

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


def test_the_upgrade_leaves_a_store_another_process_already_upgraded_alone(tmp_path: Path) -> None:
    with LmdbStore(tmp_path, sync=False) as store:
        touch(store, "doc:d1#viewer@user:ann")
        touch(store, "doc:d2#viewer@user:ann")
        before = object_entries(store)
    env = lmdb.open(str(tmp_path), max_dbs=len(layout.DB_NAMES))
    try:
        layout._add_objects_index(env)  # it read format 1 before the other process committed format 2
        meta = env.open_db(b"meta", create=False)
        with env.begin() as txn:
            # A second pass would restart the index at head (2): readers of revision 1 would
            # then scan instead of using entries that hold for them.
            assert keys.decode_revision(txn.get(layout.OBJECTS_SINCE_KEY, db=meta)) == 0
            assert txn.get(layout.FORMAT_KEY, db=meta) == b"2"
    finally:
        env.close()
    with LmdbStore(tmp_path, sync=False) as store:
        assert object_entries(store) == before


def test_processes_creating_the_same_new_directory_at_once_all_succeed(tmp_path: Path) -> None:
    """Two workers of ``serve --workers 2`` open a new data directory together: the second to
    reach ``mkdir`` failed with "File exists" and the server did not start."""
    import threading

    for attempt in range(20):
        path = tmp_path / f"new{attempt}" / "data"
        start = threading.Barrier(8)
        failures: list[BaseException] = []

        def create() -> None:
            start.wait()
            try:
                layout.check_directory(path, create=True)
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion
                failures.append(exc)

        threads = [threading.Thread(target=create) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures == [] and path.is_dir()


def test_a_store_keeps_its_id_and_one_made_before_ids_gets_one_on_open(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path)
    first = store.unique_id()
    store.close()
    store = LmdbStore(tmp_path)
    assert store.unique_id() == first
    store.close()
    env = lmdb.open(str(tmp_path), max_dbs=len(layout.DB_NAMES))
    with env.begin(write=True) as txn:  # as a store written before ids existed
        txn.delete(layout.ID_KEY, db=env.open_db(b"meta", txn=txn, create=False))
    env.close()
    store = LmdbStore(tmp_path)
    renamed = store.unique_id()
    store.close()
    assert len(renamed) == 32 and renamed != first
    assert LmdbStore(tmp_path).unique_id() == renamed
    assert LmdbStore(tmp_path / "other").unique_id() != renamed
