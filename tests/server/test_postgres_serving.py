"""Serving from PostgreSQL when the database misbehaves (real gRPC on loopback, a real PostgreSQL):
request deadlines cut statements blocked in the database (DEADLINE_EXCEEDED, and the statement is
gone from the database too); the database going down answers UNAVAILABLE fast, naming it, and
the same server serves again once it is back; the pool flags reach the pool."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any, Callable, Iterator

import psycopg
import pytest

from relengine import Engine
from relengine.client import NO_RETRY, Client
from relengine.errors import Code, DeadlineExceeded, RelEngineError
from relengine.model import Consistency
from relengine.server.app import ServerConfig
from relengine.storage.deadline import reset_request_deadline, set_request_deadline
from relengine.storage.postgres import migrate

from .. import pg
from .harness import SCHEMA, Running

FULL = Consistency.fully_consistent()


def _code(call: Callable[[], Any]) -> tuple[Code | None, str, float]:
    """The error code a call ends with (None: it worked), its message and how long it took."""
    start = time.monotonic()
    try:
        call()
    except RelEngineError as exc:
        return exc.code, str(exc), time.monotonic() - start
    return None, "", time.monotonic() - start


def _blocked_backends(uri: str) -> int:
    """How many sessions of the database wait for a lock (the server's statements stuck behind ours)."""
    return pg.count(uri, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'")


@pytest.fixture
def served(pg_uri: str) -> Iterator[tuple[Running, str]]:
    migrate(pg_uri)
    engine = Engine.open(pg_uri, gc_interval=None)
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=8))
    try:
        with running.client(retry=NO_RETRY) as client:
            client.write_schema(SCHEMA)
            client.touch("doc:1#viewer@user:ann")
        yield running, pg_uri
    finally:
        running.stop()
        engine.close()


def test_a_write_blocked_by_a_lock_ends_at_its_deadline_and_its_statement_is_cancelled(
    served: tuple[Running, str],
) -> None:
    running, uri = served
    with psycopg.connect(uri) as holder, running.client(retry=NO_RETRY) as client:
        holder.execute("SELECT head FROM relengine_meta WHERE id = 1 FOR UPDATE")  # every writer waits for it
        code, _, took = _code(lambda: client.touch("doc:2#viewer@user:bob", timeout=1.0))
        assert code is Code.DEADLINE_EXCEEDED and took < 3
        # Not only the client gave up: the database cancelled the server's statement.
        end = time.monotonic() + 2
        while _blocked_backends(uri) and time.monotonic() < end:
            time.sleep(0.05)
        assert _blocked_backends(uri) == 0, "the server's statement still waits for the lock past its deadline"
        holder.rollback()
        assert client.check_text("doc:1#view@user:ann", consistency=FULL).allowed  # serving as before
        client.touch("doc:2#viewer@user:bob")
        assert client.check_text("doc:2#view@user:bob", consistency=FULL).allowed


def test_a_check_blocked_by_a_table_lock_ends_at_its_deadline(served: tuple[Running, str]) -> None:
    running, uri = served
    with psycopg.connect(uri) as holder, running.client(retry=NO_RETRY) as client:
        holder.execute("LOCK TABLE relengine_relationships IN ACCESS EXCLUSIVE MODE")  # readers wait too
        code, _, took = _code(lambda: client.check_text("doc:1#view@user:ann", consistency=FULL, timeout=1.0))
        assert code is Code.DEADLINE_EXCEEDED and took < 3
        end = time.monotonic() + 2
        while _blocked_backends(uri) and time.monotonic() < end:
            time.sleep(0.05)
        assert _blocked_backends(uri) == 0
        holder.rollback()
        assert client.check_text("doc:1#view@user:ann", consistency=FULL).allowed


def test_the_store_raises_deadline_exceeded_for_a_statement_past_the_request_deadline(pg_uri: str) -> None:
    """What the server answers itself (the client above sees its own deadline first): the
    cancelled statement is DeadlineExceeded, within the deadline's reach."""
    migrate(pg_uri)
    engine = Engine.open(pg_uri, gc_interval=None, statement_timeout=5)  # without the deadline: cut at 5 s
    try:
        engine.write_schema(SCHEMA)
        with psycopg.connect(pg_uri) as holder:
            holder.execute("SELECT head FROM relengine_meta WHERE id = 1 FOR UPDATE")
            deadline = time.monotonic() + 0.3
            token = set_request_deadline(lambda: deadline)
            try:
                from relengine.model import parse_relationship

                with pytest.raises(DeadlineExceeded, match="past its deadline"):
                    engine.touch([parse_relationship("doc:2#viewer@user:bob")])
            finally:
                reset_request_deadline(token)
            assert time.monotonic() - deadline < 1.0
    finally:
        engine.close()


@pytest.fixture
def own_cluster() -> Iterator[pg.PgCluster]:
    """A cluster of the test's own, to take down and bring back."""
    with pg.started() as cluster:
        yield cluster


@pytest.mark.slow
def test_the_database_down_answers_unavailable_and_the_same_server_recovers_by_itself(
    own_cluster: pg.PgCluster,
) -> None:
    cluster = own_cluster
    plain = cluster.create_database()
    name = plain.rsplit("/", 1)[1]
    # With a password in the URI (trust authentication ignores it): no message may show it.
    uri = f"postgresql://{cluster.user}:s3cret-pw@127.0.0.1:{cluster.port}/{name}"
    migrate(uri)
    engine = Engine.open(uri, gc_interval=None)
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=8))
    try:
        with running.client(retry=NO_RETRY) as client:
            client.write_schema(SCHEMA)
            token = client.touch("doc:1#viewer@user:ann")
            assert client.check_text("doc:1#view@user:ann", consistency=FULL).allowed
            watch = client.watch(token, timeout=60)
            ended: list[Code | None] = []

            def follow() -> None:
                try:
                    for _ in watch:
                        pass
                    ended.append(None)
                except RelEngineError as exc:
                    ended.append(exc.code)

            follower = threading.Thread(target=follow, daemon=True)
            follower.start()
            time.sleep(0.3)

            cluster.stop_server()
            where = f"127.0.0.1:{cluster.port}/{name}"
            for what, call in (
                ("check", lambda: client.check_text("doc:1#view@user:ann", consistency=FULL, timeout=5)),
                ("write", lambda: client.touch("doc:2#viewer@user:bob", timeout=5)),
                ("read schema", lambda: client.read_schema(timeout=5)),
            ):
                code, message, took = _code(call)
                assert code is Code.UNAVAILABLE, (what, code, message)
                assert took < 3, f"{what} took {took:.1f} s to answer UNAVAILABLE"
                assert where in message and "s3cret" not in message, message
            follower.join(timeout=10)
            assert ended == [Code.UNAVAILABLE], "the open Watch did not end with UNAVAILABLE"

            cluster.start_server()
            back = time.monotonic()
            while True:
                code, message, _ = _code(lambda: client.check_text("doc:1#view@user:ann", consistency=FULL, timeout=5))
                if code is None:
                    break
                assert code is Code.UNAVAILABLE, message
                assert time.monotonic() - back < 10, "the server did not recover within 10 s of the database"
                time.sleep(0.1)
            recovery = time.monotonic() - back
            print(f"\nrecovered {recovery:.2f} s after the database came back")
            client.touch("doc:2#viewer@user:bob")
            assert client.check_text("doc:2#view@user:bob", consistency=FULL).allowed
            stream = client.watch(token, timeout=10)  # a new Watch from before the outage's write
            change = next(iter(stream))
            stream.cancel()
            assert str(change.relationship) == "doc:2#viewer@user:bob"
    finally:
        running.stop()
        engine.close()


def test_serve_refuses_to_start_while_the_database_is_down() -> None:
    port = pg.free_port()
    uri = f"postgresql://relengine:s3cret-pw@127.0.0.1:{port}/authz"
    done = subprocess.run(
        [sys.executable, "-m", "relengine", "serve", "--datastore", uri, "--listen", "127.0.0.1:0", "--workers", "1"],
        capture_output=True, text=True, timeout=60,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 4  # the CLI's exit status for UNAVAILABLE
    assert f"the PostgreSQL database 127.0.0.1:{port}/authz is unavailable" in output
    assert "s3cret" not in output


def test_the_pool_flags_bound_the_connections_of_a_server(pg_uri: str, tmp_path: Any) -> None:
    migrate(pg_uri)
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    from .test_app import Process, _wait_serving

    process = Process(["serve", "--datastore", pg_uri, "--schema", str(schema), "--listen", "127.0.0.1:0",
                       "--workers", "1", "--threads", "16", "--grace", "1", "--datastore-pool-min", "2",
                       "--datastore-pool-max", "3", "--datastore-pool-timeout", "20"])
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)

        def sessions() -> int:
            return pg.count(pg_uri, pg.RELENGINE_SESSIONS)

        # --datastore-pool-min opened at start; the server's own first requests may have grown
        # the pool, never past --datastore-pool-max.
        assert 2 <= sessions() <= 3
        errors: list[BaseException] = []
        with Client(address, timeout=30) as client:
            client.touch(*(f"doc:{i}#viewer@user:ann" for i in range(50)))

            def ask(i: int) -> None:
                try:
                    for j in range(10):
                        client.check_text(f"doc:{(i + j) % 50}#view@user:ann", consistency=FULL)
                except BaseException as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)

            threads = [threading.Thread(target=ask, args=(i,)) for i in range(12)]
            for t in threads:
                t.start()
            peak = 0
            while any(t.is_alive() for t in threads):
                peak = max(peak, sessions())
            for t in threads:
                t.join()
        assert errors == []
        assert 2 <= peak <= 3  # --datastore-pool-max, though 12 requests at once wanted more
    finally:
        process.stop()


def test_the_pool_flags_are_refused_for_lmdb(tmp_path: Any) -> None:
    from relengine.cli import main

    assert main(["serve", "--data-dir", str(tmp_path / "d"), "--datastore-pool-max", "4", "--workers", "1"]) == 2
