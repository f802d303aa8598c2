"""Both stores satisfy the Protocols of storage/base.py (checked by mypy; run for coverage)."""

from __future__ import annotations

from pathlib import Path

from relengine.storage.base import BulkLoader, Reader, Transaction, TupleStore
from relengine.storage.lmdb import LmdbStore
from relengine.storage.memory import MemoryStore


def test_both_stores_satisfy_the_protocols(tmp_path: Path) -> None:
    memory: BulkLoader = MemoryStore()
    lmdb: BulkLoader = LmdbStore(tmp_path, sync=False)
    stores: list[TupleStore] = [memory, lmdb]
    for store in stores:
        reader: Reader = store.snapshot()
        assert reader.revision.value == 0
        with store.transaction() as tx:
            view: Transaction = tx
            assert view.reader().schema_text() is None
        store.close()
