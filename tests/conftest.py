"""Fixtures shared by every test folder, and the rule for SpiceDB's conformance data.

SpiceDB's conformance data (validation files, parser golden files) lies in
``../shared/conformance/spicedb`` beside the clone. Tests that read it carry the
``conformance`` mark; without the data they are skipped with the reason, except where ``CI``
is set, where they fail: CI can never pass without them.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterator

import pytest

from relengine import Engine, EngineConfig, parse_relationship
from relengine.storage.memory import MemoryStore

from . import pg
from .spicedb_data import ABSENT, SPICEDB_CONFORMANCE


@pytest.fixture(autouse=True)
def _conformance_data(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("conformance") is None or SPICEDB_CONFORMANCE.is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail(ABSENT)
    pytest.skip(ABSENT)


@pytest.fixture
def engine_from() -> Callable[..., Engine]:
    """``engine_from(schema, *relationships, store=None, **config)``: an Engine on ``store`` (a
    new memory store if None) with ``schema`` written and ``relationships`` (text form) touched;
    ``config`` goes to ``EngineConfig``."""

    def make(schema: str, *relationships: str, store: MemoryStore | None = None, **config: Any) -> Engine:
        engine = Engine(MemoryStore() if store is None else store, EngineConfig(**config))
        engine.write_schema(schema)
        if relationships:
            engine.touch([parse_relationship(text) for text in relationships])
        return engine

    return make


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[pg.PgCluster]:
    """One real PostgreSQL cluster for the whole session (``tests/pg.py``); skipped with the
    reason where the binaries are missing, failed where ``CI`` is set."""
    with pg.started() as cluster:
        yield cluster


@pytest.fixture(scope="session")
def pg_replication() -> Iterator[tuple[pg.PgCluster, pg.PgReplica]]:
    """A PostgreSQL primary of its own and a streaming replica of it (``pg_basebackup -R``), for
    the whole session: the tests of read replicas. A test that pauses the replica's replay or
    stops it puts it back as it was."""
    pg.require()
    primary = pg.PgCluster().start()
    try:
        replica = primary.make_replica()
        try:
            yield primary, replica
        finally:
            replica.stop()
    finally:
        primary.stop()


@pytest.fixture
def pg_uri(pg_cluster: pg.PgCluster) -> str:
    """A fresh, empty database of the session's cluster: its URI (left to the cluster's end:
    see ``tests/pg.py``)."""
    return pg_cluster.create_database()
