"""PostgresStore: the TupleStore on a PostgreSQL database, shared by any number of servers.

See the package docstring for the design (revisions, visibility, watch, errors).
"""

from __future__ import annotations

import datetime as _dt
import itertools
import threading
import time
from typing import Any, Callable, Final, Iterable, Iterator, Mapping, Sequence

import msgpack
import psycopg
from psycopg.adapt import PyFormat

from ...errors import AlreadyExists, DeadlineExceeded, Unavailable
from ...model import RelationshipFilter, Revision
from ...results import Change, Operation, RelationshipUpdate
from .. import keys
from ..base import (
    UNSET,
    DEADLINE_STEPS,
    BulkLoader,
    Reader,
    Transaction,
    DEFAULT_BATCH_LIMIT,
    DEFAULT_GC_INTERVAL,
    DEFAULT_GC_WINDOW,
    BulkRow,
    GcResult,
    StoreStatistics,
    Unset,
    batch_too_large,
    check_deadline,
    check_readable,
    check_watchable,
    gc_cutoff,
    has_match,
    is_gc_due,
    micros,
    to_delete,
)
from .connections import Bound, Connections
from .errors import describe, retrying, translate, translating
from .listener import Listener
from .migrations import LIVE, check_version
from .reader import COLUMNS, Conn, PostgresReader, pack_context, payload_of, relationship_of

CHANNEL: Final = "relengine_changes"
APPLICATION_NAME: Final = "relengine"  # the sessions' application_name, unless the URI names one
"""The NOTIFY channel a commit wakes watchers on, its revision as the payload (only a wake-up:
watchers read the changelog)."""
WATCH_POLL: Final = 1.0  # seconds between reads of head by the store's listener, besides NOTIFY
_SCHEMA_KEY: Final = b""  # the changelog's row for a schema change sorts before every key

_CHANGES_AT: Final = f"""
SELECT rkey, 'T' AS op, {COLUMNS} FROM relengine_relationships WHERE created = %(rev)s
UNION ALL
SELECT d.rkey, 'D', {', '.join('d.' + c.strip() for c in COLUMNS.split(','))}
  FROM relengine_relationships d
 WHERE d.deleted = %(rev)s
   AND NOT EXISTS (SELECT 1 FROM relengine_relationships n WHERE n.rkey = d.rkey AND n.created = %(rev)s)
"""
# The changes of a revision, from its versions: a TOUCH for each version it created, a DELETE
# for each it ended without a new one. A transaction copies them into the changelog; a bulk
# revision, which may hold millions, writes one 'B' row there instead and a watcher reads them
# from the versions, which the collector keeps as long as that row (both go at the horizon).
_INSERT_CHANGES: Final = (
    f"INSERT INTO relengine_changelog (revision, rkey, op, {COLUMNS}) SELECT %(rev)s, c.* FROM ({_CHANGES_AT}) c"
)
_BULK_CHANGES: Final = f"SELECT op, {COLUMNS} FROM ({_CHANGES_AT}) c ORDER BY rkey"
_COPY_COLUMNS: Final = f"rkey, skey, {COLUMNS}, created"
_COPY_TYPES: Final = ["bytea", "bytea", "text", "text", "text", "text", "text", "text", "text", "bytea", "int8", "int8"]
LOAD_MAINTENANCE_WORK_MEM: Final = "256MB"
"""The least ``maintenance_work_mem`` a first import builds its indexes with (``SET LOCAL``: that
transaction only); PostgreSQL's default, 64MB, sorts a million keys on disk."""
_UNITS: Final = {"kB": 1, "MB": 1024, "GB": 1024 ** 2, "TB": 1024 ** 3}


def _size_kb(setting: str) -> int:
    """A memory setting as PostgreSQL shows it ("64MB", "1GB", "512kB") in kB."""
    number = setting.rstrip("kMGTB")
    try:
        return int(number) * _UNITS.get(setting[len(number):], 1)
    except ValueError:  # not a size as expected: leave the setting as it is
        return 1 << 62


def _load_row(row: BulkRow, rev: int) -> tuple[Any, ...]:
    """A row of a first import's COPY (``_load_empty``), its keys and payload computed."""
    rt, rid, relation, st, sid, srel = row[:6]
    caveat = expiration = None
    if len(row) == 8:
        caveat, expiration = row[6], row[7]
    return (
        keys.resource_key(rt, rid, relation, st, sid, srel), keys.subject_key(st, sid, srel, rt, relation, rid),
        rt, rid, relation, st, sid, srel, None if caveat is None else caveat.name, pack_context(caveat),
        None if expiration is None else keys.expiration_micros(expiration), rev,
    )


class PostgresStore:
    """A TupleStore in the PostgreSQL database at ``uri`` (migrated: ``migrations.migrate``).

    ``clock`` (epoch seconds) stamps revisions, for the GC window; ``gc_interval``: seconds
    between automatic collections after commits (None: only ``gc()``). ``pool_min`` and
    ``pool_max`` size the connection pool (a Reader holds one connection while open, a
    transaction one; all the store's watches share one more, outside the pool: ``listener``);
    ``pool_timeout`` is how long a request waits for one before Unavailable (less while the
    database is down, and no longer than the request's deadline: ``connections``).
    ``statement_timeout`` (seconds, None: none) bounds every statement, and a request's
    deadline (``storage.deadline``) the statements of its transactions; one cut off raises
    DeadlineExceeded.
    """

    def __init__(
        self,
        uri: str,
        *,
        batch_limit: int = DEFAULT_BATCH_LIMIT,
        gc_window: _dt.timedelta = DEFAULT_GC_WINDOW,
        gc_interval: float | None = DEFAULT_GC_INTERVAL,
        clock: Callable[[], float] = time.time,
        pool_min: int = 1,
        pool_max: int = 16,
        pool_timeout: float = 10.0,
        connect_timeout: float = 5.0,
        statement_timeout: float | None = None,
    ) -> None:
        self.uri = uri
        self.where = describe(uri)
        self.batch_limit = batch_limit
        self.gc_window = gc_window
        self._gc_interval = gc_interval
        self._clock = clock
        self._connect_timeout = connect_timeout
        self._last_gc = clock()
        self._closed = False
        self._lock = threading.Lock()
        options = "" if statement_timeout is None else f"-c statement_timeout={max(1, int(statement_timeout * 1000))}"
        self._kwargs: dict[str, Any] = {"autocommit": True, "connect_timeout": max(1, int(connect_timeout))}
        if options:
            self._kwargs["options"] = options
        if "application_name" not in psycopg.conninfo.conninfo_to_dict(uri):
            self._kwargs["application_name"] = APPLICATION_NAME  # pg_stat_activity shows whose sessions
        with translating(self.where):
            with psycopg.connect(uri, **self._kwargs) as conn:
                check_version(conn, uri)
                row = conn.execute("SELECT unique_id FROM relengine_meta WHERE id = 1").fetchone()
                assert row is not None
                self._unique_id = str(row[0])
        self._connections = Connections(
            uri, self.where, self._kwargs, min_size=pool_min, max_size=pool_max, timeout=pool_timeout
        )
        self._listener: Listener | None = None

    # -- connections -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise Unavailable("the store is closed")

    def _getconn(self) -> Conn:
        self._check_open()
        return self._connections.get()[0]

    def _begin(self, begin: str) -> tuple[Conn, Bound]:
        """A pooled connection in a transaction begun by ``begin``, its statements bounded by
        the request's deadline."""
        self._check_open()
        return self._connections.get(begin)

    def _putconn(self, conn: Conn) -> None:
        self._connections.put(conn)

    def pool_statistics(self) -> dict[str, int]:
        """The connection pool's counters (psycopg_pool's ``get_stats``)."""
        return self._connections.statistics()

    # -- TupleStore --------------------------------------------------------------------------

    def unique_id(self) -> str:
        return self._unique_id

    def head_revision(self) -> Revision:
        conn = self._getconn()
        try:
            with translating(self.where):
                row = conn.execute("SELECT head FROM relengine_meta WHERE id = 1").fetchone()
            assert row is not None
            return Revision(int(row[0]))
        finally:
            self._putconn(conn)

    def snapshot(self, revision: Revision | None = None) -> PostgresReader:
        self._check_open()
        wanted = None if revision is None else int(revision.value)
        conn, bound, row = self._connections.begin(  # one round trip: the revision is a literal
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
            "SELECT head, horizon, (SELECT committed_micros FROM relengine_revisions WHERE revision = "
            f"{'NULL' if wanted is None else wanted + 1}) FROM relengine_meta WHERE id = 1",
        )
        try:
            assert row is not None
            head, horizon, stamp = int(row[0]), int(row[1]), row[2]
            if wanted is None:
                wanted = head
            else:
                check_readable(
                    wanted, head, horizon, self.gc_window, self._clock,
                    lambda _: None if stamp is None else int(stamp),
                )
            return PostgresReader(conn, wanted, self.where, release=self._putconn, bound=bound)
        except BaseException:
            self._putconn(conn)
            raise

    def transaction(self, *, batch_limit: int | None | Unset = UNSET) -> PostgresTransactionContext:
        return PostgresTransactionContext(self, self.batch_limit if isinstance(batch_limit, Unset) else batch_limit)

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        return retrying(lambda: self._bulk_touch(rows), self.where)

    def bulk_load(self, batches: Iterable[Sequence[BulkRow]]) -> tuple[Revision, int]:
        """TOUCH the rows of every batch (see ``storage.base.BatchLoader``). Into a store with no
        relationship versions at all (a first import), in one transaction and one revision,
        with the indexes built after the rows are in (much faster than growing them row by
        row), in a transaction that other servers' reads and writes wait for; into any other
        store, one ``bulk_touch`` per batch."""
        batches = iter(batches)
        first = next(batches, None)
        if first is None:
            return self.head_revision(), 0
        with translating(self.where):
            conn, _, head = self.begin_write()
            try:
                row = conn.execute("SELECT NOT EXISTS (SELECT 1 FROM relengine_relationships)").fetchone()
                if row is not None and row[0]:
                    loaded, changed = self._load_empty(conn, head, itertools.chain([first], batches))
                    return Revision(loaded), changed
                conn.execute("ROLLBACK")
            finally:
                self._putconn(conn)
        revision, changed = self.bulk_touch(first)
        for batch in batches:
            revision, count = self.bulk_touch(batch)
            changed += count
        return revision, changed

    def _load_empty(self, conn: Conn, head: int, batches: Iterable[Sequence[BulkRow]]) -> tuple[int, int]:
        """The first import (``bulk_load``), in the write transaction begun on ``conn``: the
        table is emptied of its pages (TRUNCATE: it holds no rows), its indexes are dropped,
        the rows COPYed straight in (FREEZE: no later rewrite of their hint bits; a reader of
        an older revision ignores them by their ``created`` mark all the same), then the
        indexes are built again from their own definitions (with at least
        ``LOAD_MAINTENANCE_WORK_MEM`` to sort in), the unique one first: where it finds the
        same relationship twice, the earlier copies (lower ctid: the rows went into the emptied
        table in input order) are deleted, as later rows win."""
        rev = head + 1
        table = "relengine_relationships"
        indexes = conn.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid), c.conname, x.indisunique "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "LEFT JOIN pg_constraint c ON c.conindid = x.indexrelid AND c.conrelid = x.indrelid "
            "WHERE x.indrelid = %s::regclass ORDER BY NOT x.indisunique, i.relname",
            (table,),
        ).fetchall()
        assert indexes and indexes[0][3] and not any(unique for *_, unique in indexes[1:]), indexes
        conn.execute(f"TRUNCATE {table}")
        for name, _, constraint, _ in indexes:
            if constraint:
                conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{constraint}"')
            else:
                conn.execute(f'DROP INDEX "{name}"')
        count = 0
        with conn.cursor() as cur:
            # psycopg's C dumper of bytes: ``set_types`` would pick the Python one for bytea.
            cur.adapters.register_dumper(bytes, cur.adapters.get_dumper(bytes, PyFormat.BINARY))
            with cur.copy(f"COPY {table} ({_COPY_COLUMNS}) FROM STDIN (FORMAT BINARY, FREEZE)") as copy:
                copy.set_types(_COPY_TYPES)
                write = copy.write_row
                for batch in batches:
                    plain = keys.index_keys_many(batch)
                    if plain is not None:  # six strings each, plain keys: most imports
                        for row, rkey, skey in zip(batch, *plain):
                            write((rkey, skey, *row, None, None, None, rev))
                    else:
                        for row in batch:
                            write(_load_row(row, rev))
                    count += len(batch)
        found = conn.execute("SELECT current_setting('maintenance_work_mem')::text").fetchone()
        if found is not None and _size_kb(str(found[0])) < _size_kb(LOAD_MAINTENANCE_WORK_MEM):
            conn.execute(f"SET LOCAL maintenance_work_mem = '{LOAD_MAINTENANCE_WORK_MEM}'")
        conn.execute("SAVEPOINT relengine_unique")
        try:
            conn.execute(indexes[0][1])
            conn.execute("RELEASE SAVEPOINT relengine_unique")
        except psycopg.errors.UniqueViolation:
            conn.execute("ROLLBACK TO SAVEPOINT relengine_unique")
            count -= conn.execute(
                f"DELETE FROM {table} a USING {table} b WHERE a.rkey = b.rkey AND a.ctid < b.ctid"
            ).rowcount
            conn.execute(indexes[0][1])
        for name, definition, constraint, _ in indexes[1:]:
            conn.execute(definition)
        for name, _, constraint, _ in indexes:
            if constraint:
                conn.execute(f'ALTER TABLE {table} ADD CONSTRAINT "{constraint}" PRIMARY KEY USING INDEX "{name}"')
        conn.execute(f"ANALYZE {table}")  # the planner's figures for the checks that follow
        return self.finish_write(conn, head, bulk=count)

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        known = self._watch_listener().known()
        head, horizon = known[:2] if known is not None else self._head_and_horizon()
        check_watchable(after.value, head, horizon, self.gc_window)
        return self._watch(after.value, timeout)

    def gc(self, *, now: float | None = None) -> GcResult:
        self._check_open()
        moment = self._clock() if now is None else now
        return retrying(lambda: self._collect(moment), self.where)

    def statistics(self) -> StoreStatistics:
        conn = self._getconn()
        try:
            with translating(self.where):
                row = conn.execute(
                    f"""SELECT m.head, m.horizon,
                        (SELECT count(*) FROM relengine_relationships WHERE deleted = {LIVE}),
                        (SELECT count(*) FROM relengine_relationships WHERE deleted <> {LIVE}),
                        (SELECT count(DISTINCT revision) FROM relengine_changelog),
                        pg_database_size(current_database())
                       FROM relengine_meta m WHERE m.id = 1"""
                ).fetchone()
            assert row is not None
            return StoreStatistics(
                head_revision=Revision(int(row[0])), gc_horizon=Revision(int(row[1])),
                relationships=int(row[2]), dead_versions=int(row[3]), changelog_revisions=int(row[4]),
                bytes_used=int(row[5]),
            )
        finally:
            self._putconn(conn)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        self._connections.close()

    # -- internals ---------------------------------------------------------------------------

    def _head_and_horizon(self) -> tuple[int, int]:
        conn = self._getconn()
        try:
            with translating(self.where):
                row = conn.execute("SELECT head, horizon FROM relengine_meta WHERE id = 1").fetchone()
            assert row is not None
            return int(row[0]), int(row[1])
        finally:
            self._putconn(conn)

    def begin_write(self) -> tuple[Conn, Bound, int]:
        """Begin a write transaction on a pooled connection: lock the meta row (every writer
        and the collector take it, so they run one at a time, in the order they got it) and
        return the connection, its statements' bound and the head revision. psycopg's errors
        of the lock are left to the caller (``retrying`` them, or translating)."""
        conn, bound = self._begin("BEGIN ISOLATION LEVEL READ COMMITTED")
        try:
            return conn, bound, self._lock_head(conn)
        except BaseException:
            self._putconn(conn)
            raise

    def _lock_head(self, conn: Conn) -> int:
        row = conn.execute("SELECT head FROM relengine_meta WHERE id = 1 FOR UPDATE").fetchone()
        assert row is not None
        return int(row[0])

    def finish_write(
        self, conn: Conn, head: int, *, schema: str | None = None, counters: Mapping[str, bytes] | None = None,
        guards: str | None = None, bulk: int | None = None,
    ) -> tuple[int, int]:
        """Commit the write begun by ``begin_write`` on ``conn`` as revision ``head + 1`` if it
        changed anything (relationships marked with that revision, or ``schema``/``counters``/
        ``guards`` other than head's), else roll it back. Returns (revision, relationships changed).
        ``bulk``: the number of relationships a bulk write changed (its changelog is one 'B' row)."""
        rev = head + 1
        if bulk is None:
            row = conn.execute(
                "SELECT count(DISTINCT rkey) FROM relengine_relationships WHERE created = %s OR deleted = %s",
                (rev, rev),
            ).fetchone()
            changed = int(row[0]) if row else 0
        else:
            changed = bulk
        schema_changed = schema is not None and schema != _schema_at(conn, head)
        counters_changed = counters is not None and dict(counters) != _counters_at(conn, head)
        guards_changed = guards is not None and guards != _guards_at(conn, head)
        if not changed and not schema_changed and not counters_changed and not guards_changed:
            conn.execute("ROLLBACK")
            return head, 0
        if schema_changed:
            conn.execute("INSERT INTO relengine_schema (revision, text) VALUES (%s, %s)", (rev, schema))
            conn.execute(
                "INSERT INTO relengine_changelog (revision, rkey, op) VALUES (%s, %s, 'S')", (rev, _SCHEMA_KEY)
            )
        if guards_changed:
            conn.execute("INSERT INTO relengine_guards (revision, text) VALUES (%s, %s)", (rev, guards))
        if counters_changed:
            assert counters is not None
            conn.execute(
                "INSERT INTO relengine_counters (revision, counters) VALUES (%s, %s)",
                (rev, msgpack.packb(dict(sorted(counters.items())), use_bin_type=True)),
            )
        if changed and bulk is not None:
            conn.execute("INSERT INTO relengine_changelog (revision, rkey, op) VALUES (%s, %s, 'B')", (rev, _SCHEMA_KEY))
        elif changed:
            conn.execute(_INSERT_CHANGES, {"rev": rev})
        now = self._clock()
        conn.execute(
            "INSERT INTO relengine_revisions (revision, committed_micros) "
            "SELECT %s, greatest(%s, committed_micros) FROM relengine_revisions WHERE revision = %s",
            (rev, micros(now), head),
        )
        conn.execute("UPDATE relengine_meta SET head = %s WHERE id = 1", (rev,))
        conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, str(rev)))
        conn.execute("COMMIT")
        if is_gc_due(self._gc_interval, self._last_gc, now):
            self._last_gc = now
            try:
                self.gc(now=now)
            except Exception:  # noqa: BLE001 - the commit stands; the next one collects
                pass
        return rev, changed

    def _bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        conn, _, head = self.begin_write()
        try:
            rev = head + 1
            conn.execute(
                "CREATE TEMP TABLE relengine_import (seq integer, rkey bytea, skey bytea, "
                "resource_type text, resource_id text, relation text, subject_type text, subject_id text, "
                "subject_relation text, caveat_name text, caveat_context bytea, expires_micros bigint) "
                "ON COMMIT DROP"
            )
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY relengine_import FROM STDIN (FORMAT BINARY)"
                ) as copy:
                    copy.set_types(["int4", "bytea", "bytea", "text", "text", "text", "text", "text", "text",
                                    "text", "bytea", "int8"])
                    for seq, row in enumerate(rows):
                        rt, rid, relation, st, sid, srel = row[:6]
                        caveat, expiration = (row[6], row[7]) if len(row) == 8 else (None, None)
                        copy.write_row((
                            seq, keys.resource_key(rt, rid, relation, st, sid, srel),
                            keys.subject_key(st, sid, srel, rt, relation, rid), rt, rid, relation, st, sid, srel,
                            None if caveat is None else caveat.name, pack_context(caveat),
                            None if expiration is None else keys.expiration_micros(expiration),
                        ))
            conn.execute(
                "CREATE TEMP TABLE relengine_incoming ON COMMIT DROP AS "
                "SELECT DISTINCT ON (rkey) * FROM relengine_import ORDER BY rkey, seq DESC"
            )
            conn.execute(
                f"""UPDATE relengine_relationships r SET deleted = %s FROM relengine_incoming i
                     WHERE r.rkey = i.rkey AND r.deleted = {LIVE}
                       AND (r.caveat_name, r.caveat_context, r.expires_micros)
                           IS DISTINCT FROM (i.caveat_name, i.caveat_context, i.expires_micros)""",
                (rev,),
            )
            inserted = conn.execute(
                f"""INSERT INTO relengine_relationships (rkey, skey, {COLUMNS}, created)
                    SELECT i.rkey, i.skey, {', '.join('i.' + c.strip() for c in COLUMNS.split(','))}, %s
                      FROM relengine_incoming i
                     WHERE NOT EXISTS (SELECT 1 FROM relengine_relationships r
                                        WHERE r.rkey = i.rkey AND r.deleted = {LIVE})""",
                (rev,),
            ).rowcount
            # Every version the UPDATE ended has its successor inserted: the inserts are the changes.
            revision, changed = self.finish_write(conn, head, bulk=max(inserted, 0))
            return Revision(revision), changed
        finally:
            self._putconn(conn)

    def _collect(self, now: float) -> GcResult:
        """One collection in one transaction; see TupleStore.gc."""
        conn = self._getconn()
        try:
            conn.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
            row = conn.execute("SELECT head, horizon FROM relengine_meta WHERE id = 1 FOR UPDATE").fetchone()
            assert row is not None
            head, horizon = int(row[0]), int(row[1])
            self._last_gc = now
            first_kept = conn.execute(
                "SELECT min(revision) FROM relengine_revisions WHERE revision > %s AND committed_micros > %s",
                (horizon, gc_cutoff(now, self.gc_window)),
            ).fetchone()
            new = head if first_kept is None or first_kept[0] is None else int(first_kept[0]) - 1
            if new <= horizon:
                conn.execute("ROLLBACK")
                return GcResult(Revision(horizon), 0, 0, 0)
            versions = conn.execute(
                "DELETE FROM relengine_relationships WHERE deleted <= %s", (new,)
            ).rowcount
            changes = conn.execute("DELETE FROM relengine_changelog WHERE revision <= %s", (new,)).rowcount
            revisions = conn.execute("DELETE FROM relengine_revisions WHERE revision < %s", (new,)).rowcount
            for table in ("relengine_schema", "relengine_counters", "relengine_guards"):
                conn.execute(
                    f"DELETE FROM {table} WHERE revision < (SELECT max(revision) FROM {table} WHERE revision <= %s)",
                    (new,),
                )
            conn.execute("UPDATE relengine_meta SET horizon = %s WHERE id = 1", (new,))
            conn.execute("COMMIT")
            return GcResult(Revision(new), versions, changes, revisions)
        finally:
            self._putconn(conn)

    def _watch_listener(self) -> Listener:
        """The store's one listening connection for all its watches, started by the first."""
        with self._lock:
            self._check_open()
            if self._listener is None:
                self._listener = Listener(lambda: psycopg.connect(self.uri, **self._kwargs), CHANNEL, WATCH_POLL)
            return self._listener

    def _watch(self, position: int, timeout: float | None) -> Iterator[Change]:
        """Read the changelog after ``position`` in revision order whenever the store's
        listener knows of a revision past it (or is not listening: then every ``WATCH_POLL``
        seconds, and a database that is down raises Unavailable)."""
        listener = self._watch_listener()
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._check_open()
            seen = listener.events
            known = listener.known()
            batch = None if known is not None and known[0] <= position else self._changes_after(position)
            if batch is not None:
                position, changes = batch
                yield from changes
                if timeout is not None:
                    deadline = time.monotonic() + timeout
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                return
            listener.wait(position, WATCH_POLL if remaining is None else min(WATCH_POLL, remaining), seen)

    def _changes_after(self, position: int) -> tuple[int, list[Change]] | None:
        """(head, the changes in (position, head]) or None when head is ``position``."""
        conn = self._getconn()
        try:
            with translating(self.where):
                conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                row = conn.execute("SELECT head, horizon FROM relengine_meta WHERE id = 1").fetchone()
                assert row is not None
                head, horizon = int(row[0]), int(row[1])
                if head <= position:
                    return None
                check_watchable(position, head, horizon, self.gc_window)
                rows = conn.execute(
                    f"SELECT revision, op, {COLUMNS} FROM relengine_changelog "
                    "WHERE revision > %s AND revision <= %s ORDER BY revision, rkey",
                    (position, head),
                ).fetchall()
                changes = []
                for r in rows:
                    revision = Revision(int(r[0]))
                    if r[1] == "S":
                        changes.append(Change(revision, Operation.TOUCH, None, True))
                    elif r[1] == "B":
                        for e in conn.execute(_BULK_CHANGES, {"rev": revision.value}):
                            op = Operation.TOUCH if e[0] == "T" else Operation.DELETE
                            changes.append(Change(revision, op, relationship_of(e[1:])))
                    else:
                        op = Operation.TOUCH if r[1] == "T" else Operation.DELETE
                        changes.append(Change(revision, op, relationship_of(r[2:])))
            return head, changes
        finally:
            self._putconn(conn)


def _schema_at(conn: Conn, revision: int) -> str | None:
    row = conn.execute(
        "SELECT text FROM relengine_schema WHERE revision <= %s ORDER BY revision DESC LIMIT 1", (revision,)
    ).fetchone()
    return None if row is None else str(row[0])


def _guards_at(conn: Conn, revision: int) -> str | None:
    row = conn.execute(
        "SELECT text FROM relengine_guards WHERE revision <= %s ORDER BY revision DESC LIMIT 1", (revision,)
    ).fetchone()
    return None if row is None else str(row[0])


def _counters_at(conn: Conn, revision: int) -> dict[str, bytes]:
    row = conn.execute(
        "SELECT counters FROM relengine_counters WHERE revision <= %s ORDER BY revision DESC LIMIT 1", (revision,)
    ).fetchone()
    if row is None:
        return {}
    found: dict[str, bytes] = msgpack.unpackb(bytes(row[0]), raw=False)
    return found


class PostgresTransaction:
    """A write transaction on its own connection, holding the meta row's lock from its start:
    its reads see head plus its own writes, which it makes in place with the revision it will
    commit as (``head + 1``) as their marker."""

    def __init__(
        self, store: PostgresStore, conn: Conn, head: int, batch_limit: int | None, bound: Bound | None = None,
    ) -> None:
        self._store = store
        self._conn = conn
        self._bound = bound
        self.head = head
        self.rev = head + 1
        self._batch_limit = batch_limit
        self._updates = 0
        self.pending_schema: str | None = None
        self.pending_counters: dict[str, bytes] | None = None
        self.pending_guards: str | None = None
        self.spoilt: DeadlineExceeded | None = None

    def reader(self) -> PostgresReader:
        return PostgresReader(
            self._conn, self.head, self._store.where, visible_revision=self.rev, bound=self._bound,
            schema=self.schema_text, counters=self.counters, guards=self.guards_text,
        )

    def schema_text(self) -> str | None:
        if self.pending_schema is not None:
            return self.pending_schema
        with translating(self._store.where):
            return _schema_at(self._conn, self.head)

    def set_schema(self, text: str) -> None:
        self.pending_schema = text

    def guards_text(self) -> str | None:
        if self.pending_guards is not None:
            return self.pending_guards
        with translating(self._store.where):
            return _guards_at(self._conn, self.head)

    def set_guards(self, text: str) -> None:
        self.pending_guards = text

    def counters(self) -> dict[str, bytes]:
        if self.pending_counters is not None:
            return dict(self.pending_counters)
        with translating(self._store.where):
            return _counters_at(self._conn, self.head)

    def set_counters(self, counters: Mapping[str, bytes]) -> None:
        self.pending_counters = dict(counters)

    def apply(self, update: RelationshipUpdate) -> None:
        self._updates += 1
        if self._batch_limit is not None and self._updates > self._batch_limit:
            raise batch_too_large(self._batch_limit)
        rel = update.relationship
        payload = payload_of(rel)  # raises InvalidArgument for a naive expiration
        rt, rid, relation, st, sid, srel = rel.key
        srel = srel or ""
        rkey = keys.resource_key(rt, rid, relation, st, sid, srel)
        conn, rev = self._conn, self.rev
        with translating(self._store.where):
            if self._bound is not None:
                self._bound.before(conn)
            found = conn.execute(
                "SELECT created, deleted, caveat_name, caveat_context, expires_micros "
                "FROM relengine_relationships WHERE rkey = %s AND deleted >= %s",
                (rkey, rev),
            ).fetchall()
            old = next((r for r in found if r[0] < rev), None)  # the version at head
            own = next((r for r in found if r[0] == rev), None)  # written by this transaction
            live = own is not None or (old is not None and old[1] == LIVE)
            if update.operation is Operation.CREATE and live:
                raise AlreadyExists(f"relationship {rel} already exists", relationship=str(rel), **rel.identity())
            wanted = None if update.operation is Operation.DELETE else payload
            if old is not None and wanted == (old[2], None if old[3] is None else bytes(old[3]), old[4]):
                if own is not None:  # first: old becomes the live version again
                    conn.execute("DELETE FROM relengine_relationships WHERE rkey = %s AND created = %s", (rkey, rev))
                if old[1] != LIVE:
                    conn.execute(
                        f"UPDATE relengine_relationships SET deleted = {LIVE} WHERE rkey = %s AND created = %s",
                        (rkey, old[0]),
                    )
                return
            if old is not None and old[1] == LIVE:
                conn.execute(
                    "UPDATE relengine_relationships SET deleted = %s WHERE rkey = %s AND created = %s",
                    (rev, rkey, old[0]),
                )
            if wanted is None:
                if own is not None:
                    conn.execute("DELETE FROM relengine_relationships WHERE rkey = %s AND created = %s", (rkey, rev))
            elif own is not None:
                conn.execute(
                    "UPDATE relengine_relationships SET caveat_name = %s, caveat_context = %s, expires_micros = %s "
                    "WHERE rkey = %s AND created = %s",
                    (*wanted, rkey, rev),
                )
            else:
                conn.execute(
                    f"INSERT INTO relengine_relationships (rkey, skey, {COLUMNS}, created) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (rkey, keys.subject_key(st, sid, srel, rt, relation, rid), rt, rid, relation, st, sid, srel,
                     *wanted, rev),
                )

    def matches(self, filter: RelationshipFilter) -> bool:
        return has_match(self.reader(), filter)

    def delete_matching(
        self, filter: RelationshipFilter, limit: int | None = None, *, deadline: float | None = None
    ) -> tuple[int, bool]:
        try:
            doomed, complete = to_delete(self.reader(), filter, limit, deadline)
            rkeys = [keys.resource_key(*rel.key) for rel in doomed]
            conn, rev = self._conn, self.rev
            for start in range(0, len(rkeys), DEADLINE_STEPS):
                check_deadline(deadline)
                chunk = rkeys[start:start + DEADLINE_STEPS]
                with translating(self._store.where):
                    conn.execute(
                        "DELETE FROM relengine_relationships WHERE rkey = ANY(%s) AND created = %s", (chunk, rev)
                    )
                    conn.execute(
                        f"UPDATE relengine_relationships SET deleted = %s WHERE rkey = ANY(%s) AND deleted = {LIVE}",
                        (rev, chunk),
                    )
        except DeadlineExceeded as exc:
            self.spoilt = exc
            raise
        return len(doomed), complete


class PostgresTransactionContext:
    """``with store.transaction() as tx``: commits on a clean exit (``revision`` is then the
    committed revision, or head if nothing changed), rolls back otherwise."""

    def __init__(self, store: PostgresStore, batch_limit: int | None) -> None:
        self._store = store
        self._limit = batch_limit
        self._conn: Conn | None = None
        self._tx: PostgresTransaction | None = None
        self.revision: Revision | None = None
        self.changed = 0

    def __enter__(self) -> PostgresTransaction:
        store = self._store
        with translating(store.where):
            conn, bound, head = store.begin_write()
        self._conn = conn
        self._tx = PostgresTransaction(store, conn, head, self._limit, bound)
        return self._tx

    def __exit__(self, *exc: object) -> None:
        store, conn, tx = self._store, self._conn, self._tx
        assert conn is not None and tx is not None
        self._conn = self._tx = None
        try:
            if exc[0] is None:
                if tx.spoilt is not None:
                    raise tx.spoilt
                store._check_open()
                try:
                    revision, self.changed = store.finish_write(
                        conn, tx.head, schema=tx.pending_schema, counters=tx.pending_counters,
                        guards=tx.pending_guards,
                    )
                except psycopg.Error as error:
                    raise translate(error, store.where) from error
                self.revision = Revision(revision)
        finally:
            store._putconn(conn)


__all__ = ["CHANNEL", "PostgresStore", "PostgresTransaction", "PostgresTransactionContext"]


def _satisfies_the_protocols(store: PostgresStore, tx: PostgresTransaction) -> tuple[BulkLoader, Transaction, Reader]:
    """Never called: mypy checks here that the store satisfies ``storage.base``'s Protocols."""
    return store, tx, tx.reader()
