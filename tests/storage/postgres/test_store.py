"""What only the PostgreSQL store has to prove, on a real database: several stores (servers) on
one database with concurrent writers, watch across them, and psycopg's errors translated
(unreachable -> Unavailable, statement timeout -> DeadlineExceeded, serialization failures
retried then Aborted)."""

from __future__ import annotations

import threading
import time
from typing import Any, Callable

import psycopg
import pytest

from relengine import Engine
from relengine.errors import Aborted, DeadlineExceeded, Unavailable
from relengine.model import ObjectRef, RelationshipFilter, Revision, SubjectRef, parse_relationship
from relengine.storage.postgres import DEFAULT_RETRIES, PostgresStore, migrate
from relengine.storage.postgres.errors import retrying

from ... import pg
from ...pg import free_port
from ..conformance import touch


@pytest.fixture
def open_store(pg_uri: str) -> Any:
    """``open_store(**options)``: another store (another server) on the same migrated database."""
    migrate(pg_uri)
    stores: list[PostgresStore] = []

    def make(**options: Any) -> PostgresStore:
        store = PostgresStore(pg_uri, gc_interval=None, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


def test_concurrent_writers_on_two_stores_get_consecutive_revisions_and_lose_nothing(
    open_store: Callable[..., PostgresStore],
) -> None:
    stores = [open_store(), open_store()]
    writers, each = 4, 15
    committed: list[tuple[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def write(index: int) -> None:
        store = stores[index % 2]
        try:
            for i in range(each):
                text = f"doc:w{index}_{i}#viewer@user:u{index}"
                revision = touch(store, text)
                with lock:
                    committed.append((revision.value, text))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    total = writers * each
    assert sorted(r for r, _ in committed) == list(range(1, total + 1))  # no gap, no duplicate
    for store in stores:
        assert store.head_revision() == Revision(total)
        reader = store.snapshot()
        assert len(list(reader.read(RelationshipFilter("doc")))) == total
        reader.close()
    # Each revision holds exactly the write acknowledged with it, seen from either store.
    by_revision = {r: text for r, text in committed}
    changes = list(stores[1].watch(Revision(0), timeout=0))
    assert [(c.revision.value, str(c.relationship)) for c in changes] == sorted(by_revision.items())
    # A snapshot at each revision sees exactly the writes up to it.
    for revision in (1, total // 2, total):
        reader = stores[0].snapshot(Revision(revision))
        assert len(list(reader.read(RelationshipFilter("doc")))) == revision
        reader.close()


def test_a_watch_on_one_store_is_woken_by_a_write_through_another(
    open_store: Callable[..., PostgresStore], monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The watcher's own poll is made longer than the watch's timeout: the change can only
    # arrive through NOTIFY (else the stream ends at its timeout, empty).
    from relengine.storage.postgres import store as store_module

    monkeypatch.setattr(store_module, "WATCH_POLL", 120.0)
    writer, watcher = open_store(), open_store()
    touch(writer, "doc:d1#viewer@user:ann")
    stream = watcher.watch(Revision(1), timeout=30)
    threading.Timer(0.2, lambda: touch(writer, "doc:d2#viewer@user:bob")).start()
    change = next(stream, None)
    assert change is not None, "the watch ended at its timeout: no NOTIFY woke it"
    assert (change.revision, str(change.relationship)) == (Revision(2), "doc:d2#viewer@user:bob")
    stream.close()


def test_an_old_reader_on_one_store_keeps_its_view_through_a_collection_by_another(
    open_store: Callable[..., PostgresStore],
) -> None:
    import datetime as dt

    now = [1_700_000_000.0]
    options = {"clock": lambda: now[0], "gc_window": dt.timedelta(hours=1)}
    a, b = open_store(**options), open_store(**options)
    touch(a, "doc:d1#viewer@user:ann")
    from ..conformance import delete

    delete(a, "doc:d1#viewer@user:ann")
    reader = a.snapshot(Revision(1))
    now[0] += 7200
    touch(b, "doc:d2#viewer@user:bob")
    assert b.gc().versions_removed == 1
    assert reader.relationship("doc", "d1", "viewer", SubjectRef("user", "ann")) is not None
    reader.close()


def test_an_unreachable_database_is_unavailable_with_a_clear_message() -> None:
    port = free_port()
    with pytest.raises(Unavailable, match=f"127.0.0.1:{port}/nothing is unavailable"):
        PostgresStore(f"postgresql://postgres@127.0.0.1:{port}/nothing", connect_timeout=1)


def test_a_statement_past_its_timeout_is_deadline_exceeded(open_store: Callable[..., PostgresStore]) -> None:
    store = open_store(statement_timeout=0.05)
    reader = store.snapshot()
    with pytest.raises(DeadlineExceeded, match="ran past its deadline"):
        reader._fetch("SELECT pg_sleep(1)", ())
    reader.close()
    assert store.head_revision() == Revision(0)  # the store keeps serving


def test_serialization_failures_are_retried_then_aborted(pg_uri: str) -> None:
    """Real serialization failures (two REPEATABLE READ transactions updating one row)."""
    with psycopg.connect(pg_uri, autocommit=True) as setup:
        setup.execute("CREATE TABLE counter (n integer)")
        setup.execute("INSERT INTO counter VALUES (0)")
    attempts = []

    def conflicting() -> None:
        attempts.append(1)
        with psycopg.connect(pg_uri) as mine, psycopg.connect(pg_uri, autocommit=True) as other:
            mine.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            mine.execute("SELECT n FROM counter").fetchone()
            other.execute("UPDATE counter SET n = n + 1")
            mine.execute("UPDATE counter SET n = n + 1")

    with pytest.raises(Aborted, match="conflicted with concurrent writers"):
        retrying(conflicting, "the test database")
    assert len(attempts) == DEFAULT_RETRIES + 1

    def fails_once() -> str:
        if len(attempts) == DEFAULT_RETRIES + 1:
            conflicting()
        return "done"

    assert retrying(fails_once, "the test database") == "done"


def test_an_engine_opens_a_postgresql_uri(pg_uri: str) -> None:
    migrate(pg_uri)
    engine = Engine.open(pg_uri, max_map_size=1 << 30)  # LMDB's option is ignored there
    try:
        engine.write_schema("definition user {}\ndefinition doc {\nrelation viewer: user\npermission view = viewer\n}")
        revision = engine.touch([parse_relationship("doc:d1#viewer@user:ann")])
        granted = engine.check(ObjectRef("doc", "d1"), "view", SubjectRef("user", "ann"), at=revision)
        denied = engine.check(ObjectRef("doc", "d1"), "view", SubjectRef("user", "bob"), at=revision)
        assert (granted.allowed, denied.allowed) == (True, False)
    finally:
        engine.close()


def _sessions(uri: str) -> int:
    return pg.count(uri, pg.RELENGINE_SESSIONS)


def test_fifty_watchers_share_one_listening_connection(pg_uri: str, open_store: Callable[..., PostgresStore]) -> None:
    store = open_store(pool_min=1, pool_max=4)
    writer = open_store(pool_min=1, pool_max=1)
    touch(writer, "doc:d0#viewer@user:ann")
    got: dict[int, list[str]] = {}
    errors: list[BaseException] = []
    waiting = threading.Barrier(51)

    def watch(index: int) -> None:
        try:
            stream = store.watch(Revision(1), timeout=30)
            waiting.wait(timeout=30)
            got[index] = [str(next(stream).relationship)]
            stream.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=watch, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    waiting.wait(timeout=30)
    time.sleep(0.5)  # every watcher waits now
    during = _sessions(pg_uri)
    # The watching store's pool (at most 4) and its one listener, and the writer's one: not 50.
    assert during <= 4 + 1 + 1, f"{during} sessions for 50 watchers"
    touch(writer, "doc:d1#viewer@user:bob")
    for t in threads:
        t.join(timeout=30)
    assert errors == []
    assert got == {i: ["doc:d1#viewer@user:bob"] for i in range(50)}
    assert _sessions(pg_uri) <= 4 + 1 + 1


def _terminate_sessions(uri: str) -> int:
    """Terminate relengine's sessions on the database (as a restart of the server would)."""
    with psycopg.connect(uri, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'relengine'"
        ).fetchall()
    return len(rows)


def test_pooled_connections_that_died_are_replaced_without_failing_a_request(
    open_store: Callable[..., PostgresStore],
) -> None:
    # The pool does not check a connection before handing it out: the request's first
    # statement does, and runs again on a new connection where the pooled one is broken.
    store = open_store(pool_min=2, pool_max=4)
    touch(store, "doc:1#viewer@user:ann")
    readers = [store.snapshot(), store.snapshot(), store.snapshot()]  # three pooled connections
    for reader in readers:
        reader.close()
    assert _terminate_sessions(store.uri) >= 3
    with store.snapshot() as reader:  # BEGIN and its first query: one round trip
        assert [str(r) for r in reader.subjects("doc", "1", "viewer")] == ["doc:1#viewer@user:ann"]
    _terminate_sessions(store.uri)
    assert store.head_revision() == Revision(1)  # no BEGIN: an empty query checks the connection
    _terminate_sessions(store.uri)
    assert touch(store, "doc:2#viewer@user:ann") == Revision(2)  # a write's BEGIN


def test_a_first_import_rebuilds_every_index_and_constraint(pg_uri: str) -> None:
    from relengine.storage.importer import import_relationships
    from relengine.storage.postgres.store import LOAD_MAINTENANCE_WORK_MEM, _size_kb

    assert (_size_kb("64MB"), _size_kb("1GB"), _size_kb("512kB")) == (65536, 1 << 20, 512)
    assert _size_kb(LOAD_MAINTENANCE_WORK_MEM) > _size_kb("64MB")
    migrate(pg_uri)
    layout = "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'relengine_relationships' ORDER BY 1"
    with psycopg.connect(pg_uri, autocommit=True) as conn:
        before = conn.execute(layout).fetchall()
        # A server whose maintenance_work_mem is small: the import raises it for its own transaction.
        conn.execute(f"ALTER DATABASE \"{pg_uri.rsplit('/', 1)[1]}\" SET maintenance_work_mem = '1MB'")
    store = PostgresStore(pg_uri, gc_interval=None)
    try:
        long_id = "x" * 100  # a shortened key component, on the batch path
        lines = [f"doc:d{i}#viewer@user:u{i % 7}" for i in range(3000)] + [f"doc:{long_id}#viewer@user:ann"]
        assert import_relationships(store, lines).relationships == 3001
        with psycopg.connect(pg_uri, autocommit=True) as conn:
            assert conn.execute(layout).fetchall() == before
            constraint = conn.execute(
                "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'relengine_relationships_pkey'"
            ).fetchone()
            assert constraint == ("PRIMARY KEY (rkey, deleted)",)
            assert conn.execute("SHOW maintenance_work_mem").fetchone() == ("1MB",)
        with store.snapshot() as reader:
            assert [str(r) for r in reader.subjects("doc", long_id, "viewer")] == [f"doc:{long_id}#viewer@user:ann"]
            assert len(list(reader.resources(SubjectRef("user", "u3"), "doc", "viewer"))) == 429
    finally:
        store.close()
