"""Fixtures for the storage tests: one ``make_store`` factory per backend, and a fake clock.

The ``postgres`` backend runs on the session's real PostgreSQL cluster (``tests/pg.py``), a
fresh migrated database per store; it is skipped with the reason where PostgreSQL is missing.
The ``replicated`` backend is the PostgreSQL store with a read replica (``postgres.replicas``)
on the session's primary and streaming replica: reads go to the replica whenever it has the
revision they ask for, so the suite shows the routing never changes an answer (marked slow: it
is the PostgreSQL run again, a database per store).

``conformance.py`` holds the suite both stores must pass; it is collected here because its name
does not start with ``test_``.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from relengine.storage.lmdb import LmdbStore
from relengine.storage.memory import MemoryStore

BACKENDS = [
    "memory", "lmdb", "postgres",
    pytest.param("replicated", marks=pytest.mark.slow),  # the suite again on PostgreSQL: minutes
]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Module | None:
    if file_path.name == "conformance.py":
        return pytest.Module.from_parent(parent, path=file_path)
    return None


class FakeClock:
    """Epoch seconds that only move when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def make_store(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """``make_store(**options)``: a new store of the backend under test (LMDB without fsync:
    durability has its own test). ``path=`` reopens an LMDB directory (or a PostgreSQL URI)."""
    stores: list[Any] = []
    counter = itertools.count()

    def make(**options: Any) -> Any:
        if backend == "memory":
            options.pop("path", None)
            store: Any = MemoryStore(**options)
        elif backend == "postgres":
            from relengine.storage.postgres import PostgresStore, migrate

            uri = options.pop("path", None)
            if uri is None:
                uri = request.getfixturevalue("pg_cluster").create_database()
                migrate(uri)
            store = PostgresStore(uri, **options)
        elif backend == "replicated":
            from relengine.storage.postgres import migrate
            from relengine.storage.postgres.replicas import open_store

            primary, replica = request.getfixturevalue("pg_replication")
            uri = options.pop("path", None)
            if uri is None:
                uri = primary.create_database()
                migrate(uri)
                replica.wait_replayed()
            store = open_store(uri, [replica.dsn(uri.rsplit("/", 1)[1])], **options)
        else:
            path = options.pop("path", None) or tmp_path / f"store{next(counter)}"
            options.setdefault("sync", False)
            store = LmdbStore(path, **options)
        stores.append(store)
        return store

    yield make
    for store in stores:
        store.close()


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    return make_store()
