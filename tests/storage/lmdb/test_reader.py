"""The LMDB Reader (storage/lmdb/reader.py): its transaction reopened after map growth, closing,
reader slots, and where its objects rows come from."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Callable

import pytest

from relengine.errors import RevisionUnavailable, Unavailable
from relengine.model import Revision, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage import objects
from relengine.storage.lmdb import LmdbStore

from ..conformance import delete, touch


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


def test_a_reader_whose_revision_was_collected_cannot_reopen_after_map_growth(
    make_store: Callable[..., Any], clock: Any
) -> None:
    """Its old LMDB snapshot is gone with the growth; the new one no longer holds its revision."""
    store = make_store(map_size=1024 * 1024, max_map_size=64 * 1024 * 1024, clock=clock,
                       gc_window=dt.timedelta(hours=1), gc_interval=None)
    touch(store, "doc:d1#viewer@user:ann")
    delete(store, "doc:d1#viewer@user:ann")
    reader = store.snapshot(Revision(1))
    clock.advance(2 * 3600)
    assert store.gc().horizon == Revision(2)
    assert [str(r) for r in reader.subjects("doc", "d1", "viewer")] == ["doc:d1#viewer@user:ann"]
    assert store._environment.grow(force=True)
    with pytest.raises(RevisionUnavailable, match="too old"):
        reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann"))


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


def test_a_transactions_reader_finds_object_rows_the_index_does_not_have_yet(store: LmdbStore) -> None:
    """The objects index is written at commit: inside the transaction, rows come from a scan."""
    touch(store, "doc:d1#viewer@user:ann")
    with store.transaction() as tx:
        tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:d1#viewer@user:bob")))
        tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:d2#viewer@user:cid")))
        reader = tx.reader()
        assert objects.decode(reader.object_rows("doc", "d1")) == {
            "viewer": [("user", "ann", None, None), ("user", "bob", None, None)]
        }
        assert objects.decode(reader.object_rows("doc", "d2")) == {"viewer": [("user", "cid", None, None)]}
    assert objects.decode(store.snapshot(Revision(1)).object_rows("doc", "d1")) == {
        "viewer": [("user", "ann", None, None)]
    }
