"""The tests' real, throwaway PostgreSQL cluster: ``bench/pgcluster.py``, shared with the
bench's PostgreSQL scenarios (see its docstring)."""

import contextlib
from typing import Iterator

from bench.pgcluster import PgCluster, PgReplica, free_port, pg_bin, unavailable_reason

__all__ = ["PgCluster", "PgReplica", "RELENGINE_SESSIONS", "count", "free_port", "pg_bin", "require", "started", "unavailable_reason"]


def require() -> None:
    """Skip the calling fixture or test with the reason where the PostgreSQL binaries are
    missing; fail it where ``CI`` is set (CI installs them)."""
    import os

    import pytest

    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def count(uri: str, query: str) -> int:
    """The one number ``query`` (a ``SELECT count(*) ...``) gives on the database at ``uri``."""
    import psycopg

    with psycopg.connect(uri, autocommit=True) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return int(row[0])


RELENGINE_SESSIONS = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'relengine'"
"""relengine's sessions open on a database (not the one asking, nor one that asked before and
whose backend has not yet left pg_stat_activity)."""


@contextlib.contextmanager
def started() -> Iterator[PgCluster]:
    """A started cluster of its own (``require()`` first), stopped and removed afterwards."""
    require()
    cluster = PgCluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()
