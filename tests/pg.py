"""The tests' real, throwaway PostgreSQL cluster: ``bench/pgcluster.py``, shared with the
bench's PostgreSQL scenarios (see its docstring)."""

from bench.pgcluster import PgCluster, PgReplica, free_port, pg_bin, unavailable_reason

__all__ = ["PgCluster", "PgReplica", "free_port", "pg_bin", "unavailable_reason"]
