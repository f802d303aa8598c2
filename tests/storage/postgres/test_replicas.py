"""Read replicas against a real PostgreSQL streaming replica (``pg_basebackup -R``, started by
``tests/pg.py``): reads go to the replica when it has reached the revision they need and to
the primary otherwise, never older than asked; a replica that lags (replay paused), stops or
dies in the middle of a read is skipped and the primary answers; ``read_counts`` (the metric
``relengine_datastore_reads_total``) proves which side answered."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterator

import pytest

from relengine import Engine, EngineConfig
from relengine.errors import FailedPrecondition
from relengine.model import Consistency, ObjectRef, RelationshipFilter, Revision, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.storage.base import ReplicaReads
from relengine.storage.postgres import migrate
from relengine.storage.postgres.replicas import FailoverReader, ReplicatedStore

from ...pg import PgCluster, PgReplica

SCHEMA = """
definition user {}
definition doc {
    relation viewer: user
    relation banned: user
    permission view = viewer - banned
}
"""
DOC = ObjectRef("doc", "d1")
ANN = SubjectRef("user", "ann")
RETRY = 0.2  # seconds before a skipped replica is probed again (short: the tests wait for it)


@pytest.fixture
def databases(pg_replication: tuple[PgCluster, PgReplica]) -> tuple[str, str, PgReplica]:
    """(primary URI, the same database's URI on the replica, the replica): a fresh migrated
    database the replica has replayed."""
    primary, replica = pg_replication
    uri = primary.create_database()
    migrate(uri)
    replica.wait_replayed()
    return uri, replica.dsn(uri.rsplit("/", 1)[1]), replica


@pytest.fixture
def open_engine(databases: tuple[str, str, PgReplica]) -> Iterator[Callable[..., Engine]]:
    """``open_engine(replicas=True, **config)``: an Engine (a server) on the database, with the
    replica as its read replica unless ``replicas`` is False."""
    uri, replica_uri, _ = databases
    engines: list[Engine] = []

    def make(replicas: bool = True, **config: Any) -> Engine:
        engine = Engine.open(
            uri, EngineConfig(**config), read_replicas=[replica_uri] if replicas else [], gc_interval=None,
            replica_retry_seconds=RETRY,
        )
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.close()


def counts(engine: Engine) -> dict[str, int]:
    assert isinstance(engine.store, ReplicaReads)
    return engine.store.read_counts()


def delta(before: dict[str, int], engine: Engine) -> dict[str, int]:
    after = counts(engine)
    return {k: after[k] - before.get(k, 0) for k in after}


def allowed(engine: Engine, consistency: Consistency) -> bool:
    return engine.check(DOC, "view", ANN, consistency=consistency).allowed


def wait_until(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_caught_up_replica_answers_reads_and_the_primary_the_rest(
    open_engine: Callable[..., Engine], databases: tuple[str, str, PgReplica],
) -> None:
    _, _, replica = databases
    engine = open_engine()
    assert isinstance(engine.store, ReplicatedStore) and len(engine.store.replicas_up()) == 1
    engine.write_schema(SCHEMA)
    token = engine.touch([parse_relationship("doc:d1#viewer@user:ann")])
    replica.wait_replayed()
    before = counts(engine)
    assert allowed(engine, Consistency.at_least_as_fresh(token))
    assert allowed(engine, Consistency.at_exact_snapshot(token))
    assert not allowed(engine, Consistency.at_exact_snapshot(Revision(token.value - 1)))  # before the write
    resources = list(engine.lookup_resources("doc", "view", ANN, consistency=Consistency.at_least_as_fresh(token)))
    assert [r.resource_id for r in resources] == ["d1"]
    assert delta(before, engine) == {"primary": 0, "replica": 4}
    # fully_consistent reads the primary's head, always.
    before = counts(engine)
    assert allowed(engine, Consistency.fully_consistent())
    assert delta(before, engine) == {"primary": 1, "replica": 0}


def test_a_lagging_replica_never_answers_older_than_the_token_the_primary_does(
    open_engine: Callable[..., Engine], databases: tuple[str, str, PgReplica],
) -> None:
    _, _, replica = databases
    engine = open_engine()
    engine.write_schema(SCHEMA)
    first = engine.touch([parse_relationship("doc:d1#viewer@user:ann")])
    replica.wait_replayed()
    replica.pause_replay()
    try:
        expected = True
        for i in range(6):  # each write flips the answer; the replica has none of them
            relationship = parse_relationship("doc:d1#banned@user:ann")
            if expected:
                token = engine.touch([relationship])
            else:
                token = engine.write([RelationshipUpdate(Operation.DELETE, relationship)])
            expected = not expected
            before = counts(engine)
            assert allowed(engine, Consistency.at_least_as_fresh(token)) is expected, i
            assert allowed(engine, Consistency.at_exact_snapshot(token)) is expected, i
            # minimize_latency after a write through this engine sees the write (not cached:
            # a cached answer would open no snapshot).
            response = engine.check(DOC, "view", ANN, consistency=Consistency.minimize_latency(), cache_missed=True)
            assert response.allowed is expected and response.revision == token, i
            assert delta(before, engine) == {"primary": 3, "replica": 0}, i
        # What the replica has reached, it still answers.
        before = counts(engine)
        assert allowed(engine, Consistency.at_exact_snapshot(first))
        assert delta(before, engine) == {"primary": 0, "replica": 1}
    finally:
        replica.resume_replay()
    replica.wait_replayed()
    before = counts(engine)
    assert allowed(engine, Consistency.at_least_as_fresh(token)) is expected
    assert delta(before, engine) == {"primary": 0, "replica": 1}


def test_minimize_latency_takes_a_replica_only_within_the_quantization_window(
    open_engine: Callable[..., Engine], databases: tuple[str, str, PgReplica],
) -> None:
    _, _, replica = databases
    other = open_engine(replicas=False)  # another server, writing
    other.write_schema(SCHEMA)
    other.touch([parse_relationship("doc:d1#viewer@user:ann")])
    replica.wait_replayed()
    window = 1.0
    engine = open_engine(quantization_seconds=window)
    # Caught up: the replica answers minimize_latency (its newest revision is the primary's).
    before = counts(engine)
    assert allowed(engine, Consistency.minimize_latency())
    assert delta(before, engine) == {"primary": 0, "replica": 1}
    replica.pause_replay()
    try:
        written = other.touch([parse_relationship("doc:d1#banned@user:ann")])
        time.sleep(window * 1.2)  # the reused revision expires; the replica is now `window` stale
        before = counts(engine)
        response = engine.check(DOC, "view", ANN, consistency=Consistency.minimize_latency(), cache_missed=True)
        # Staler than the window: the primary answers, with the write the replica lacks.
        assert response.revision == written and not response.allowed
        assert delta(before, engine)["primary"] >= 1
        assert delta(before, engine)["replica"] == 0
    finally:
        replica.resume_replay()


def test_minimize_latency_accepts_a_replica_that_is_behind_by_less_than_the_window(
    open_engine: Callable[..., Engine], databases: tuple[str, str, PgReplica],
) -> None:
    _, _, replica = databases
    other = open_engine(replicas=False)
    other.write_schema(SCHEMA)
    seen = other.touch([parse_relationship("doc:d1#viewer@user:ann")])
    replica.wait_replayed()
    engine = open_engine(quantization_seconds=60.0)
    replica.pause_replay()
    try:
        other.touch([parse_relationship("doc:d1#banned@user:ann")])  # another server's write, not replayed
        before = counts(engine)
        response = engine.check(DOC, "view", ANN, consistency=Consistency.minimize_latency(), cache_missed=True)
        # One revision behind, superseded a moment ago: minimize_latency may answer at it.
        assert response.revision == seen and response.allowed
        assert delta(before, engine) == {"primary": 0, "replica": 1}
        # at_least_as_fresh of the newer write goes to the primary.
        head = other.head_revision()
        assert not allowed(engine, Consistency.at_least_as_fresh(head))
    finally:
        replica.resume_replay()


def test_a_stopped_replica_is_skipped_and_taken_back_when_it_returns(
    open_engine: Callable[..., Engine], databases: tuple[str, str, PgReplica],
) -> None:
    _, _, replica = databases
    engine = open_engine()
    store = engine.store
    assert isinstance(store, ReplicatedStore)
    engine.write_schema(SCHEMA)
    token = engine.touch([parse_relationship("doc:d1#viewer@user:ann")])
    replica.wait_replayed()
    assert allowed(engine, Consistency.at_exact_snapshot(token))  # the replica's pool holds a connection now
    replica.halt()
    try:
        before = counts(engine)
        started = time.monotonic()
        for _ in range(5):
            assert allowed(engine, Consistency.at_least_as_fresh(token))
            assert allowed(engine, Consistency.at_exact_snapshot(token))
        assert time.monotonic() - started < 5  # no request waits on the dead replica's pool
        assert store.replicas_up() == []
        assert delta(before, engine) == {"primary": 10, "replica": 0}
    finally:
        replica.restart()
    wait_until(lambda: store.replicas_up() != [])
    replica.wait_replayed()
    before = counts(engine)
    assert allowed(engine, Consistency.at_least_as_fresh(token))
    assert delta(before, engine) == {"primary": 0, "replica": 1}


def test_a_replica_dying_in_the_middle_of_a_read_fails_over_to_the_primary_at_the_same_revision(
    open_engine: Callable[..., Engine], databases: tuple[str, str, PgReplica],
) -> None:
    _, _, replica = databases
    engine = open_engine()
    engine.write_schema(SCHEMA)
    token = engine.import_relationships(parse_relationship(f"doc:d{i:04}#viewer@user:ann") for i in range(1200))[1]
    later = engine.touch([parse_relationship("doc:zzz#viewer@user:ann")])
    replica.wait_replayed()
    reader = engine.store.snapshot(token)
    assert isinstance(reader, FailoverReader) and reader.on_replica
    rows = reader.read(RelationshipFilter("doc"))
    got = [next(rows) for _ in range(10)]  # the first page (500) is read
    replica.halt()
    try:
        got.extend(rows)  # the second page's query fails on the replica; the primary gives the rest
        assert not reader.on_replica
        reader.close()
        assert [r.resource.id for r in got] == [f"d{i:04}" for i in range(1200)]  # at `token`, not `later`
        assert later > token
    finally:
        replica.restart()
        replica.wait_replayed()


def test_a_replica_of_another_database_is_refused(pg_cluster: PgCluster) -> None:
    uri, elsewhere = pg_cluster.create_database(), pg_cluster.create_database()
    migrate(uri)
    migrate(elsewhere)
    with pytest.raises(FailedPrecondition, match="holds another database"):
        Engine.open(uri, read_replicas=[elsewhere], gc_interval=None)


def test_an_unreachable_replica_at_startup_is_skipped_and_the_primary_answers(pg_uri: str) -> None:
    from ...pg import free_port

    migrate(pg_uri)
    engine = Engine.open(
        pg_uri, read_replicas=[f"postgresql://nobody@127.0.0.1:{free_port()}/none"], gc_interval=None,
        connect_timeout=1,
    )
    try:
        assert isinstance(engine.store, ReplicatedStore) and engine.store.replicas_up() == []
        engine.write_schema(SCHEMA)
        token = engine.touch([parse_relationship("doc:d1#viewer@user:ann")])
        assert allowed(engine, Consistency.at_least_as_fresh(token))
        assert counts(engine)["replica"] == 0
    finally:
        engine.close()
