"""The tests' real, throwaway PostgreSQL cluster: ``bench/pgcluster.py``, shared with the
bench's PostgreSQL scenarios (see its docstring)."""

from bench.pgcluster import PgCluster, free_port, pg_bin, unavailable_reason

__all__ = ["PgCluster", "free_port", "pg_bin", "unavailable_reason"]
