"""The PostgreSQL scenarios: the datastore beside LMDB's figures, on the same generated worlds.

Where the databases are: ``$RELENGINE_BENCH_POSTGRES`` (``postgresql://USER@HOST:PORT/DB``, a
role that may create databases; the bench makes its own and drops them), else a throwaway
cluster of the machine's PostgreSQL binaries (``bench/pgcluster.py``, the tests' cluster) with
more memory than PostgreSQL's defaults (``SETTINGS``). Without either, the scenarios are
skipped with the reason. Every database is loaded through ``relengine``'s own import path
(``Engine.import_file``, as ``relengine import --datastore`` runs it).
"""

from __future__ import annotations

import functools
import itertools
import os
import urllib.parse
from typing import TYPE_CHECKING, Any, Callable, Final, Sequence

from relengine import Engine, EngineConfig, SubjectRef

from . import driver, grpc_mode
from .dataset import Dataset, row_text, schema_text
from .framework import Contender, Context, Measurement, Query, Skip, Timed, Workload, headline, measure, scenario
from .pgcluster import PgCluster, unavailable_reason
from .world import BIG_ADMIN, Row, scale_name

if TYPE_CHECKING:
    import psycopg

ENV: Final = "RELENGINE_BENCH_POSTGRES"
SETTINGS: Final = {"shared_buffers": "1GB", "maintenance_work_mem": "1GB", "max_wal_size": "4GB"}
_COPY_COLUMNS: Final = (
    "rkey bytea, skey bytea, resource_type text, resource_id text, relation text, subject_type text, "
    "subject_id text, subject_relation text, caveat_name text, caveat_context bytea, expires_micros bigint, "
    "created bigint"
)
_COPY_TYPES: Final = ["bytea", "bytea", "text", "text", "text", "text", "text", "text", "text", "bytea", "int8", "int8"]


class Databases:
    """Fresh databases on ``$RELENGINE_BENCH_POSTGRES``'s server or on a throwaway cluster;
    ``close`` drops the ones made there, or stops the cluster."""

    def __init__(self) -> None:
        self._cluster: PgCluster | None = None
        self._made: list[str] = []
        self._names = itertools.count()
        given = os.environ.get(ENV)
        if given:
            self.admin = given
            return
        reason = unavailable_reason()
        if reason is not None:
            raise Skip(f"PostgreSQL scenarios skipped: {reason}; or set ${ENV}=postgresql://USER@HOST:PORT/DB")
        self._cluster = PgCluster(SETTINGS).start()
        self.admin = self._cluster.dsn()

    def create(self, migrated: bool = True) -> str:
        import psycopg

        from relengine.storage.postgres import migrate

        name = f"relengine_bench_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        parts = urllib.parse.urlsplit(self.admin)
        uri = urllib.parse.urlunsplit(parts._replace(path="/" + name))
        self._made.append(uri)
        if migrated:
            migrate(uri)
        return uri

    def drop(self, uri: str) -> None:
        import psycopg

        name = urllib.parse.urlsplit(uri).path.lstrip("/")
        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def loaded(self, ds: Dataset, ctx: Context) -> str:
        """A database holding the dataset's world, loaded through relengine's import."""
        uri = self.create()
        ctx.progress(f"PostgreSQL: importing the {scale_name(ds.relationships)} world")
        import_world(uri, ds)
        return uri

    def close(self) -> None:
        if self._cluster is not None:
            self._cluster.stop()
            return
        for uri in self._made:
            try:
                self.drop(uri)
            except Exception:  # noqa: BLE001 - leave what cannot be dropped
                pass


def import_world(uri: str, ds: Dataset) -> int:
    """``relengine import --datastore URI --schema ...`` of the world's text lines, in-process."""
    engine = Engine.open(uri)
    try:
        engine.write_schema(schema_text())
        result = engine.import_file(map(row_text, ds.world.iter_rows()), "text")
        return int(result.relationships)
    finally:
        engine.close()


def _one(scales: list[int]) -> int:
    assert len(scales) == 1
    return scales[0]


def _cleaned(setup: Callable[[Context, list[int], Workload], Workload]) -> Callable[[Context, list[int]], Workload]:
    """A setup given its workload, whose cleanups run if the setup fails (the framework only
    runs those of a workload it got back): no cluster or server outlives a failed setup."""

    @functools.wraps(setup)
    def run(ctx: Context, scales: list[int]) -> Workload:
        w = Workload([], [])
        try:
            return setup(ctx, scales, w)
        except BaseException:
            for cleanup in reversed(w.cleanups):
                try:
                    cleanup()
                except Exception:  # noqa: BLE001 - the setup's own error is the one to report
                    pass
            raise

    return run


def _databases(w: Workload) -> Databases:
    dbs = Databases()
    w.cleanups.append(dbs.close)
    return dbs


class FreshDatabases(Sequence[str]):
    """An endless sequence of new databases (made when an item is read, outside the timed call)."""

    def __init__(self, make: Callable[[], str]) -> None:
        self._make = make

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, index: Any) -> Any:
        return self._make()


# -- import ----------------------------------------------------------------------------------


def raw_copy(uri: str, rows: Sequence[Row]) -> int:
    """COPY (binary) the rows, with the keys the store would compute, into a plain table with no
    index: the floor of getting these rows into PostgreSQL with psycopg."""
    import psycopg

    from relengine.storage import keys

    resource_key, subject_key = keys.resource_key, keys.subject_key
    with psycopg.connect(uri) as conn:
        conn.execute(f"CREATE TABLE raw_rows ({_COPY_COLUMNS})")
        with conn.cursor() as cur, cur.copy("COPY raw_rows FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(_COPY_TYPES)
            write = copy.write_row
            for r in rows:
                rt, rid, rel, st, sid, srel = r[:6]
                write((resource_key(rt, rid, rel, st, sid, srel), subject_key(st, sid, srel, rt, rel, rid),
                       rt, rid, rel, st, sid, srel, None, None, None, 1))
        conn.commit()
        row = conn.execute("SELECT count(*) FROM raw_rows").fetchone()
    return int(row[0]) if row else 0


@scenario(
    "pg_import", ["write", "import", "postgres"],
    "relengine import --datastore postgresql://... of the whole world as text lines (Engine.import_file, "
    "schema-validated) into a new migrated database; a call is the whole import",
    quick=["100k"], full=["1m"],
)
@_cleaned
def pg_import(ctx: Context, scales: list[int], w: Workload) -> Workload:
    n = _one(scales)
    dbs = _databases(w)
    ds = ctx.dataset(n)
    rows = list(ds.world.iter_rows())
    lines = [row_text(r) for r in rows]
    from .scenarios import expected_checks, refs

    expected, _ = expected_checks(ds.world, ds.world.admin_path_queries(20))

    def engine_import(uri: str, verify: bool = False) -> bool:
        engine = Engine.open(uri, EngineConfig(cache_size=0))
        try:
            engine.write_schema(schema_text())
            done = engine.import_file(lines, "text").relationships == n
            if not verify:
                return bool(done)
            return bool(done and engine.store.statistics().relationships == n and all(
                engine.check(*refs(q.args)).allowed == q.expected for q in expected))
        finally:
            engine.close()  # the databases go with the workload (DROP DATABASE checkpoints: not timed)

    def raw(uri: str) -> bool:
        return raw_copy(uri, rows) == n

    once = driver.Limits(3600.0, 1, 0.0, 0)
    w.queries = [Query(None, True)]
    w.contenders = [
        Contender("engine", engine_import, check=lambda _: engine_import(dbs.create(), True), per_op=n, limits=once,
                  items=FreshDatabases(dbs.create),
                  note="Engine.import_file(text lines) into a new migrated database (the CLI's path)"),
        Contender("raw_copy", raw, check=lambda _: raw(dbs.create(migrated=False)), baseline=True, per_op=n,
                  limits=once, items=FreshDatabases(lambda: dbs.create(migrated=False)),
                  note="psycopg binary COPY of the same rows and keys into a plain table, no index"),
    ]
    w.params.update(relationships=n, server="$" + ENV if os.environ.get(ENV) else f"throwaway cluster {SETTINGS}")
    return w


# -- checks ----------------------------------------------------------------------------------


class PgFloor:
    """The reads of an uncached account-admin check, hand-written: a pooled connection, a
    REPEATABLE READ snapshot and head, the container's rows, the account's rows; the same SQL
    the PostgreSQL store issues for them."""

    def __init__(self, uri: str) -> None:
        import psycopg_pool

        from relengine.storage.postgres.reader import COLUMNS

        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = psycopg_pool.ConnectionPool(
            uri, kwargs={"autocommit": True}, min_size=1, max_size=4, open=True)
        self._rows = (
            f"SELECT {COLUMNS} FROM relengine_relationships WHERE rkey >= %s AND rkey < %s "
            "AND created <= %s AND deleted > %s ORDER BY rkey LIMIT %s"
        )

    def close(self) -> None:
        self._pool.close()

    def check(self, q: tuple[str, str, str, str]) -> bool:
        conn = self._pool.getconn()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT head FROM relengine_meta WHERE id = 1").fetchone()
            assert row is not None
            head = row[0]
            prefix = f"container\x00{q[0]}\x00".encode()
            rows = conn.execute(self._rows, (prefix, prefix + b"\xff", head, head, 17)).fetchall()
            account = next((r[4] for r in rows if r[2] == "account"), None)
            if account is None:
                return False
            prefix = f"account\x00{account}\x00".encode()
            admins = conn.execute(self._rows, (prefix, prefix + b"\xff", head, head, 17)).fetchall()
            return any(r[2] == "admin" and r[3] == q[2] and r[4] == q[3] for r in admins)
        finally:
            conn.execute("ROLLBACK")
            self._pool.putconn(conn)


def _pg_engine(w: Workload, uri: str, config: EngineConfig) -> Engine:
    engine = Engine.open(uri, config, gc_interval=None)
    w.cleanups.append(engine.close)
    return engine


def _loaded(ctx: Context, scales: list[int], w: Workload) -> tuple[Dataset, str]:
    """The scenario's dataset and a database loaded with it; without PostgreSQL, skipped
    before a dataset is built."""
    dbs = _databases(w)
    ds = ctx.dataset(_one(scales))
    return ds, dbs.loaded(ds, ctx)


@scenario(
    "pg_check", ["check", "uncached", "postgres"],
    "Engine.check with cache_size=0 on the PostgreSQL store, account admins on containers (the walk "
    "read -> ... -> account->administer -> admin), vs a hand-written floor issuing the same SQL reads",
    quick=["100k"], full=["1m"],
)
@_cleaned
def pg_check(ctx: Context, scales: list[int], w: Workload) -> Workload:
    from .scenarios import engine_contender, expected_checks

    ds, uri = _loaded(ctx, scales, w)
    engine = _pg_engine(w, uri, EngineConfig(cache_size=0))
    floor = PgFloor(uri)
    w.cleanups.append(floor.close)
    queries = ds.world.admin_path_queries(200)
    w.queries, _ = expected_checks(ds.world, queries)
    w.contenders = [
        engine_contender(engine, note="PostgresStore, cache_size=0"),
        Contender("pg_floor", floor.check, baseline=True,
                  note="psycopg pool: RR snapshot + head, container rows, account rows, rollback"),
    ]
    w.params.update(queries=len(queries))
    return w


@scenario(
    "pg_cached_check", ["check", "cached", "postgres"],
    "Engine.check with the default cache on the PostgreSQL store beside the same on the LMDB store, "
    "1,000 queries (half account-admin paths, half Zipf users), warm cache, back-to-back throughput",
    quick=["100k"], full=["1m"],
)
@_cleaned
def pg_cached_check(ctx: Context, scales: list[int], w: Workload) -> Workload:
    from .scenarios import engine_contender, expected_checks, open_engine

    ds, uri = _loaded(ctx, scales, w)
    engine = _pg_engine(w, uri, EngineConfig())
    _, lmdb_engine = open_engine(ctx, ds, w)
    queries = ds.world.admin_path_queries(500) + ds.world.random_queries(500)
    w.queries, _ = expected_checks(ds.world, queries)
    lmdb = engine_contender(lmdb_engine, "lmdb_engine", note="LmdbStore, default cache")
    lmdb.baseline = True
    w.contenders = [engine_contender(engine, note="PostgresStore, default cache"), lmdb]
    w.timing = "throughput"
    w.params.update(queries=len(queries))
    return w


# -- lookups ---------------------------------------------------------------------------------


@scenario(
    "pg_lookup_resources", ["lookup", "postgres"],
    "Engine.lookup_resources(container, publish, user:x_bigadmin) on the PostgreSQL store (1,000 "
    "containers at 100k, 10,000 at 1M), beside the same on the LMDB store",
    quick=["100k"], full=["1m"],
)
@_cleaned
def pg_lookup_resources(ctx: Context, scales: list[int], w: Workload) -> Workload:
    from .scenarios import open_engine

    ds, uri = _loaded(ctx, scales, w)
    engine = _pg_engine(w, uri, EngineConfig())
    _, lmdb_engine = open_engine(ctx, ds, w)
    w.queries = [Query(BIG_ADMIN, set(ds.world.containers_of_account(0)))]

    def call(e: Engine) -> Callable[[str], set[str]]:
        return lambda uid: {r.resource_id for r in e.lookup_resources("container", "publish", SubjectRef("user", uid))}

    w.contenders = [
        Contender("engine", call(engine), note="PostgresStore"),
        Contender("lmdb_engine", call(lmdb_engine), baseline=True, note="LmdbStore, same call"),
    ]
    w.params.update(results=len(w.queries[0].expected))
    return w


# -- many servers ----------------------------------------------------------------------------


@scenario(
    "pg_two_servers", ["check", "grpc", "postgres", "concurrency"],
    "two `relengine serve --datastore` processes on one database vs one, the same client load (8 "
    "threads, split between the servers), Client.check of 200 queries (default cache), interleaved pairs",
    quick=["100k"], full=["1m"], mode="grpc",
)
@_cleaned
def pg_two_servers(ctx: Context, scales: list[int], w: Workload) -> Workload:
    from .scenarios import _alternating, _grpc_ready, _remote_check, expected_checks, refs

    _grpc_ready()
    ds, uri = _loaded(ctx, scales, w)
    servers = [grpc_mode.Server(uri, 1, log_dir=ctx.work_dir) for _ in range(2)]
    for server in servers:
        w.cleanups.append(server.close)
    clients = [grpc_mode.client(s.target) for s in servers]
    for c in clients:
        w.cleanups.append(c.close)
    queries = ds.world.admin_path_queries(100) + ds.world.random_queries(100)
    w.queries, _ = expected_checks(ds.world, queries)
    one, other = (_remote_check(c) for c in clients)
    turn = itertools.count()

    def both(a: Any) -> Any:  # threads alternate between the two servers' clients
        return (one if next(turn) % 2 else other)(a)

    w.contenders = [
        Contender("two_servers", both, prepare=refs, answer=lambda r: r.allowed,
                  note="two serve processes on the database, calls alternated between them"),
        Contender("one_server", one, prepare=refs, answer=lambda r: r.allowed, baseline=True,
                  note="one serve process on the database"),
    ]
    level = 8

    def drive(ctx: Context, wl: Workload) -> Timed:
        limits = ctx.profile.pair_limits
        prepared = {c.label: c.prepared(wl) for c in wl.contenders}
        runs: dict[str, list[driver.Run]] = {c.label: [] for c in wl.contenders}
        for rep, c in _alternating(ctx.profile.pairs, wl.contenders):
            ctx.progress(f"{c.label}: {level} threads (pair {rep + 1}/{ctx.profile.pairs})")
            runs[c.label].append(driver.closed_loop_threads(c.call, prepared[c.label], limits, level))
        out: list[Measurement] = [measure(runs[c.label], c.label, baseline=c.baseline) for c in wl.contenders]
        return out, headline(out[0], out[1], "ns_per_unit", at=f"threads, c={level}")

    w.drive = drive
    w.params.update(threads=level, cores=os.cpu_count())
    return w
