"""LmdbStore, the facade (storage/lmdb/store.py): opening again, its settings, several processes
on one directory."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from relengine.errors import Unavailable
from relengine.model import RelationshipFilter, Revision
from relengine.storage.lmdb import LmdbStore

from ..conformance import touch
from .helpers import WRITER, run_python


def test_data_survives_reopening(tmp_path: Path) -> None:
    with LmdbStore(tmp_path / "s", sync=False) as store:
        touch(store, "doc:d1#viewer@user:ann")
        touch(store, "doc:d1#viewer@user:bob")
    with LmdbStore(tmp_path / "s", sync=False) as store:
        assert store.head_revision() == Revision(2)
        reader = store.snapshot(Revision(1))
        assert [str(r) for r in reader.subjects("doc", "d1", "viewer")] == ["doc:d1#viewer@user:ann"]
        assert touch(store, "doc:d1#viewer@user:cid") == Revision(3)


def test_the_store_reports_its_settings_and_closes_at_the_end_of_a_with_block(tmp_path: Path) -> None:
    with LmdbStore(tmp_path, sync=False, gc_window=dt.timedelta(hours=2), max_map_size=1 << 31) as store:
        assert (store.path, store.gc_window, store.max_map_size) == (tmp_path, dt.timedelta(hours=2), 1 << 31)
    with pytest.raises(Unavailable, match="closed"):
        store.head_revision()


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
