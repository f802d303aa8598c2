"""The LMDB write transaction (storage/lmdb/writer.py): the bulk path, the objects index kept at
commit, commit stamps."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine.model import CaveatRef, Relationship, RelationshipFilter, Revision, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage import keys, objects
from relengine.storage.base import SMALL_OBJECT
from relengine.storage.lmdb import LmdbStore

from ..conformance import delete, touch
from .helpers import object_entries, run_python

BIG = b"doc\x00big\x00"  # the objects index key of doc:big
BATCHES = 40


@pytest.mark.slow
def test_bulk_touch_grows_the_map_and_retries(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, map_size=256 * 1024, max_map_size=64 * 1024 * 1024, sync=False)
    rows = [("doc", f"d{i}", "viewer", "user", f"someone_with_a_long_name_{i}", "") for i in range(20_000)]
    revision, changed = store.bulk_touch(rows)
    assert (revision, changed) == (Revision(1), 20_000)
    assert store.statistics().relationships == 20_000
    store.close()


@pytest.mark.slow
def test_each_bulk_commit_releases_its_pages_while_readers_of_other_threads_carry_on(tmp_path: Path) -> None:
    store = LmdbStore(tmp_path, sync=False)
    touch(store, "doc:kept#viewer@user:ann")
    epoch = store._environment.epoch
    errors: list[BaseException] = []
    reads = [0] * 4
    importing = threading.Event()
    importing.set()

    def read(index: int) -> None:
        # Each bulk commit remaps the file under these readers; they must never notice.
        while importing.is_set():
            try:
                with store.snapshot() as reader:
                    assert reader.relationship("doc", "kept", "viewer", SubjectRef("user", "ann")) is not None
                    assert len(list(reader.read(RelationshipFilter("doc"), limit=20))) == 20
                    assert reader.object_rows("doc", "kept") is not None
                reads[index] += 1
            except BaseException as exc:  # noqa: BLE001  (reported by the main thread)
                errors.append(exc)
                return

    touch(store, *(f"doc:d{i}#viewer@user:ann" for i in range(20)))
    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(reads))]
    for thread in threads:
        thread.start()
    try:
        for batch in range(BATCHES):
            store.bulk_touch([("doc", f"b{batch}_{i}", "viewer", "user", f"u{i}", "") for i in range(300)])
    finally:
        importing.clear()
        for thread in threads:
            thread.join()
    assert errors == []
    assert min(reads) > 0
    assert store._environment.epoch == epoch + 2 * BATCHES  # one remap per bulk commit
    assert store.statistics().relationships == 21 + BATCHES * 300
    store.close()


def test_a_second_bulk_call_in_one_transaction_logs_each_relationship_once(store: LmdbStore) -> None:
    """The first call inserts fresh keys wholesale; the second rewrites one of them and adds
    another one by one. The revision logs every relationship once, as it ends."""
    with store.transaction() as tx:
        tx.bulk_touch([("doc", "d1", "viewer", "user", "ann", ""), ("doc", "d2", "viewer", "user", "ann", "")])
        tx.bulk_touch([
            ("doc", "d1", "viewer", "user", "ann", "", CaveatRef("cav"), None),
            ("doc", "d3", "viewer", "user", "ann", ""),
        ])
    changes = sorted((c.operation.value, str(c.relationship)) for c in store.watch(Revision(0), timeout=0))
    assert changes == [
        ("TOUCH", "doc:d1#viewer@user:ann[cav]"),
        ("TOUCH", "doc:d2#viewer@user:ann"),
        ("TOUCH", "doc:d3#viewer@user:ann"),
    ]
    assert store.statistics().dead_versions == 0


def test_the_objects_index_follows_each_commit_and_a_large_object_stays_large_until_it_shrinks(
    store: LmdbStore,
) -> None:
    names = [f"u{i:02}" for i in range(SMALL_OBJECT + 1)]
    first = touch(store, *[f"doc:big#viewer@user:{n}" for n in names])
    entry = object_entries(store)[BIG]
    assert entry == keys.encode_revision(first.value) + bytes((objects.LARGE,))
    grown = touch(store, "doc:big#owner@user:x")  # only the stamp moves
    assert object_entries(store)[BIG] == keys.encode_revision(grown.value) + bytes((objects.LARGE,))
    shrunk = delete(store, *[f"doc:big#viewer@user:{n}" for n in names[1:]])
    entry = object_entries(store)[BIG]
    assert entry[: keys.REVISION_SIZE] == keys.encode_revision(shrunk.value)
    assert objects.decode(entry) == {"owner": [("user", "x", None, None)], "viewer": [("user", "u00", None, None)]}
    untouched = object_entries(store)
    touch(store, "doc:other#viewer@user:x")
    assert {k: v for k, v in object_entries(store).items() if k != b"doc\x00other\x00"} == untouched


def test_commit_stamps_never_go_back_when_the_clock_does(make_store: Callable[..., Any], clock: Any) -> None:
    """The GC window counts from these stamps: a later revision stamped earlier would make
    revisions collectable, or readable, out of order."""
    store = make_store(clock=clock)
    touch(store, "doc:d1#viewer@user:ann")
    clock.advance(-3600)
    touch(store, "doc:d2#viewer@user:ann")
    env = store._environment
    txn = env.begin_read()
    try:
        first, second = env.commit_micros(txn, 1), env.commit_micros(txn, 2)
    finally:
        txn.abort()
    assert first is not None and second == first


def _rebuilt_entries(store: LmdbStore) -> dict[bytes, bytes]:
    """The objects index as a commit would write it for every object at head (stamps left out)."""
    from relengine.storage.lmdb.items import object_value, scan

    env = store._environment
    with env.lmdb_env.begin() as txn:
        prefixes = {keys.object_prefix(k) for k in txn.cursor(env.rel).iternext(values=False)}
        cur = txn.cursor(env.rel)
        rb = bytes(keys.REVISION_SIZE)
        return {p: object_value(rb, scan(cur, p, SMALL_OBJECT), len(p))[keys.REVISION_SIZE:] for p in prefixes}


def test_a_bulk_import_marks_the_objects_it_adds_to_and_rebuilds_each_once_at_its_end(store: LmdbStore) -> None:
    """Random order over many batches: in between, every object a batch added to reads as large
    (stamped with that batch) and answers come from the by-resource index; at the end, the
    index holds what a commit would have written, relationships with caveats and subject
    sets included, and checks at every revision read the same as before the rebuild."""
    import random

    rows: list[tuple[Any, ...]] = [
        ("doc", f"d{i % 7}", "viewer", "user", f"u{i}", "") for i in range(40)
    ] + [("doc", "d1", "editor", "group", "eng", "member"), ("doc", "d2", "viewer", "user", "cav", "", CaveatRef("c"), None)]
    random.Random(3).shuffle(rows)
    touch(store, "doc:d0#viewer@user:before", "doc:big#viewer@user:x")
    with store.bulk_import() as session:
        for start in range(0, len(rows), 6):
            revision, changed = session.bulk_touch(rows[start:start + 6])
            assert changed == len(rows[start:start + 6])
            entries = object_entries(store)
            for row in rows[start:start + 6]:
                prefix = f"{row[0]}\x00{row[1]}\x00".encode()
                assert entries[prefix] == keys.encode_revision(revision.value) + bytes((objects.LARGE,))
        during = store.snapshot()
        seen = {p: during.object_rows("doc", p) for p in ("d0", "d1", "d2", "d3", "big")}
        assert objects.decode(seen["big"]) == {"viewer": [("user", "x", None, None)]}  # not imported to: not marked
        assert all(seen[p] is None for p in ("d0", "d1", "d2", "d3"))  # marked: read the index instead
        during.close()
    head = store.head_revision()
    assert head == revision  # the rebuild records no revision
    entries = object_entries(store)
    expected = _rebuilt_entries(store)
    assert {p: v[keys.REVISION_SIZE:] for p, v in entries.items()} == expected
    assert all(v[: keys.REVISION_SIZE] == keys.encode_revision(head.value) for p, v in entries.items() if p != BIG)  # doc:big: not imported to
    reader = store.snapshot()
    assert objects.decode(reader.object_rows("doc", "d1"))["editor"] == [("group", "eng", "member", None)]
    assert len(objects.decode(reader.object_rows("doc", "d0"))["viewer"]) == 7  # 6 imported and the one before
    reader.close()


def test_a_bulk_import_that_fails_keeps_what_it_committed_and_its_index_right(store: LmdbStore) -> None:
    with pytest.raises(RuntimeError):
        with store.bulk_import() as session:
            session.bulk_touch([("doc", "d1", "viewer", "user", "ann", "")])
            raise RuntimeError("the source broke")
    reader = store.snapshot()
    assert objects.decode(reader.object_rows("doc", "d1")) == {"viewer": [("user", "ann", None, None)]}
    reader.close()


def test_a_bulk_import_past_its_limit_walks_the_index_for_its_marks_at_its_end(
    store: LmdbStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past ``limit`` marked objects the session keeps no keys: its end walks the objects index
    for the entries marked since its first batch, rebuilds each once (in transactions of
    ``chunk`` entries) with what a commit would write, an object a write in between added to
    included, and leaves alone a large object marked before."""
    from relengine.storage.lmdb import writer
    from relengine.storage.lmdb.writer import BulkImport

    touch(store, *[f"doc:old#viewer@user:u{i}" for i in range(SMALL_OBJECT + 1)])  # large before
    old = object_entries(store)[b"doc\x00old\x00"]
    calls: list[int] = []
    real = writer._rebuild
    monkeypatch.setattr(writer, "_rebuild", lambda env, batch: (calls.append(len(batch)), real(env, batch))[1])
    with BulkImport(store._environment, lambda: None, limit=3, chunk=2) as session:
        session.bulk_touch([("doc", f"d{i}", "viewer", "user", "ann", "") for i in range(4)])
        assert session._pending is None  # past the limit: no keys kept
        session.bulk_touch([("doc", "d9", "viewer", "user", "ann", ""), ("doc", "d1", "viewer", "user", "bob", "")])
        touch(store, "doc:d2#viewer@user:cy")  # a write in between: the entry stays marked, newly stamped
        assert object_entries(store)[b"doc\x00d2\x00"][keys.REVISION_SIZE] == objects.LARGE
        assert calls == []
    assert calls == [2, 2, 1]  # d0 d1 | d2 d3 | d9, each once; doc:old (marked before) left alone
    entries = object_entries(store)
    assert entries[b"doc\x00old\x00"][keys.REVISION_SIZE] == objects.LARGE
    assert entries[b"doc\x00old\x00"] == old
    assert {p: v[keys.REVISION_SIZE:] for p, v in entries.items()} == _rebuilt_entries(store)
    reader = store.snapshot()
    assert objects.decode(reader.object_rows("doc", "d1")) == {"viewer": [("user", "ann", None, None), ("user", "bob", None, None)]}
    reader.close()


_SUBJECTS = [f"user:u{i:02}" for i in range(SMALL_OBJECT + 2)] + ["user:*", "group:eng#member", "user:a\x01b"]
_CHANGE = st.tuples(
    st.sampled_from(["TOUCH", "DELETE"]),
    st.sampled_from(["d0", "d1"]),
    st.sampled_from(["viewer", "editor", "edi"]),
    st.sampled_from(_SUBJECTS),
    st.sampled_from([None, None, None, "cav"]),
)


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(writes=st.lists(st.lists(_CHANGE, min_size=1, max_size=12), min_size=1, max_size=12))
def test_commit_edits_the_entries_of_small_objects_as_a_rebuild_would_write_them(
    make_store: Callable[..., Any], writes: list[list[tuple[str, str, str, str, str | None]]]
) -> None:
    """Whole-subject relationships added to and deleted from small objects are edited into
    their entries, others rebuilt from a scan; across the line to large and back, with subject
    sets, wildcards, escaped ids and caveats mixed in, every entry after every commit is the
    one a rebuild at head makes, stamped with the commit that last changed the object."""
    store = make_store()
    try:
        stamps: dict[bytes, int] = {}
        for batch in writes:
            updates = []
            for op, oid, relation, subject, caveat in batch:
                rel = parse_relationship(f"doc:{oid}#{relation}@{subject.replace(chr(1), '_')}")
                if "\x01" in subject:
                    rel = Relationship(rel.resource, rel.relation, SubjectRef("user", "a\x01b"))
                if caveat is not None:
                    rel = Relationship(rel.resource, rel.relation, rel.subject, CaveatRef(caveat))
                updates.append(RelationshipUpdate(Operation[op], rel))
            before = store.head_revision()
            with store.transaction() as tx:
                for u in updates:
                    tx.apply(u)
            head = store.head_revision()
            if head != before:
                changed = {e.relationship.resource.id for e in store.watch(before, timeout=0)}
                stamps.update({f"doc\x00{oid}\x00".encode(): head.value for oid in changed})
            entries = object_entries(store)
            rebuilt = _rebuilt_entries(store)
            for prefix, entry in entries.items():
                assert entry[keys.REVISION_SIZE:] == rebuilt.get(prefix, objects.EMPTY), prefix
                assert entry[: keys.REVISION_SIZE] == keys.encode_revision(stamps[prefix])
    finally:
        store.close()


_TEXTS_WRITER = """
import sys
from relengine.storage.lmdb import LmdbStore
with LmdbStore(sys.argv[1], sync=False) as store:
    with store.transaction() as tx:
        tx.set_schema("schema from another process")
        tx.set_guards("guards from another process")
"""


def test_a_write_reads_the_schema_and_guards_once_per_head_and_sees_another_process_write_new_ones(
    tmp_path: Path,
) -> None:
    store = LmdbStore(tmp_path, sync=False)
    try:
        with store.transaction() as tx:
            tx.set_schema("first")
        with store.transaction() as tx:
            assert (tx.schema_text(), tx.guards_text()) == ("first", None)
            tx.set_guards("g1")
            assert tx.guards_text() == "g1"
        with store.transaction() as tx:
            assert (tx.schema_text(), tx.guards_text()) == ("first", "g1")
        run_python(_TEXTS_WRITER, str(tmp_path))
        with store.transaction() as tx:
            assert tx.schema_text() == "schema from another process"
            assert tx.guards_text() == "guards from another process"
    finally:
        store.close()
