"""The change log (storage/lmdb/changelog.py): watch across processes and batches, and garbage
collection: its batches and what it removes from the objects index."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any, Callable

import pytest

from relengine.errors import RevisionUnavailable
from relengine.model import Revision
from relengine.storage import objects
from relengine.storage.base import gc_cutoff, micros
from relengine.storage.lmdb import LmdbStore
from relengine.storage.lmdb.changelog import collect_batch

from ..conformance import delete, touch
from .helpers import WRITER, object_entries, python_env

# -- watch ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_watch_sees_commits_of_another_process(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False, poll_interval=0.01)
    writer = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(WRITER), str(tmp_path), "3", str(64 * 1024 * 1024)],
        env=python_env(), stdout=subprocess.DEVNULL,
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


def test_watch_lists_more_revisions_than_one_read_takes_in_order(store: LmdbStore) -> None:
    for number in range(1, 251):  # a watch reads 100 revisions per read transaction
        touch(store, f"doc:d{number}#viewer@user:ann")
    changes = list(store.watch(Revision(0), timeout=0))
    assert [c.revision.value for c in changes] == list(range(1, 251))
    assert [c.relationship and c.relationship.resource.id for c in changes] == [f"d{n}" for n in range(1, 251)]
    assert [c.revision.value for c in store.watch(Revision(240), timeout=0)] == list(range(241, 251))


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


def test_a_watch_overtaken_by_a_collection_stops_with_an_error(make_store: Callable[..., Any], clock: Any) -> None:
    """Changes it has not listed yet were collected: it says so rather than skip them."""
    store = make_store(clock=clock, gc_interval=None)
    touch(store, "doc:d1#viewer@user:ann")
    touch(store, "doc:d2#viewer@user:ann")
    stream = store.watch(Revision(0), timeout=0)
    clock.advance(3 * 86_400)
    store.gc()
    with pytest.raises(RevisionUnavailable, match="too old"):
        next(stream)


# -- garbage collection ---------------------------------------------------------------------


def _history(make_store: Callable[..., Any], clock: Any) -> LmdbStore:
    """A store whose revisions 1 to 4 all superseded something, all out of the GC window."""
    store: LmdbStore = make_store(clock=clock, gc_interval=None, gc_window=dt.timedelta(hours=1))
    touch(store, "doc:d1#viewer@user:ann", "doc:d2#viewer@user:ann")
    touch(store, "doc:d1#viewer@user:ann[cav]")
    delete(store, "doc:d2#viewer@user:ann")
    touch(store, "doc:d1#viewer@user:ann")
    clock.advance(2 * 3600)
    return store


def test_a_collection_in_small_batches_moves_the_horizon_one_revision_at_a_time(
    make_store: Callable[..., Any], clock: Any
) -> None:
    store = _history(make_store, clock)
    env = store._environment
    cutoff = gc_cutoff(clock(), env.gc_window)
    totals = [0, 0, 0]
    steps: list[tuple[bool, int]] = []
    with env.write_lock:
        while not steps or not steps[-1][0]:
            txn, state = env.begin_write()
            steps.append(collect_batch(env, txn, state, cutoff, 1, totals))
            env.commit(txn)
            assert store.statistics().gc_horizon == Revision(steps[-1][1])
    assert steps == [(False, 1), (False, 2), (False, 3), (True, 4)]
    at_once = _history(make_store, clock).gc()
    assert at_once.horizon == Revision(4)
    assert totals == [at_once.versions_removed, at_once.changes_removed, at_once.revisions_removed] == [3, 5, 4]
    assert store.statistics().dead_versions == 0
    assert [str(r) for r in store.snapshot().subjects("doc", "d1", "viewer")] == ["doc:d1#viewer@user:ann"]


def test_a_collection_with_nothing_out_of_the_window_writes_nothing(make_store: Callable[..., Any], clock: Any) -> None:
    store = make_store(clock=clock, gc_interval=None)
    touch(store, "doc:d1#viewer@user:ann")
    delete(store, "doc:d1#viewer@user:ann")
    env = store._environment
    txn, state = env.begin_write()
    try:
        totals = [0, 0, 0]
        assert collect_batch(env, txn, state, micros(clock()) - 1, 10, totals) == (True, 0)
        assert totals == [0, 0, 0]
    finally:
        txn.abort()
    assert store.gc().horizon == Revision(0)
    assert store.statistics().dead_versions == 1


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
