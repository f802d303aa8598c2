"""PostgreSQL-backed TupleStore: one database shared by any number of relengine servers.

The only package that imports ``psycopg`` (and ``psycopg_pool``); its errors become relengine's
in ``errors``. Its modules:

    errors      psycopg errors -> relengine errors; the bounded retry of the store's own work
    connections the pool, aware of outages (fast Unavailable, quick reconnection); statements
                bounded by the request's deadline (``storage.deadline``)
    listener    one LISTEN connection per store, shared by all its watches
    migrations  the tables as numbered, idempotent migrations; ``migrate``; the version check
    reader      PostgresReader: a snapshot at one revision, as SQL range scans
    store       PostgresStore (pool, snapshot, GC, watch) and its write transaction
    replicas    ReplicatedStore: reads a streaming replica has caught up with go to it

Design
    **Versions.** ``relengine_relationships`` holds every version of every relationship with
    the revision that created it and the one that deleted it (``migrations.LIVE`` while live),
    as SpiceDB's PostgreSQL datastore keeps ``created_xid``/``deleted_xid``. A Reader at R
    sees exactly the versions with ``created <= R AND deleted > R``. Relationships are keyed
    and ordered by the byte keys of ``storage.keys`` (``rkey`` by resource, ``skey`` by
    subject), so every store lists them in the same order and prefixes are index ranges.

    **Revisions under concurrent writers.** SpiceDB orders writers by PostgreSQL transaction
    ids and snapshots (``xid8``); relengine's revisions are instead plain consecutive numbers,
    which keeps revision tokens, the GC window and the Reader contract identical across stores.
    To make them correct with many writers on many servers, every write transaction begins by
    locking the single row of ``relengine_meta`` (``SELECT ... FOR UPDATE``) and reads ``head``
    there; it writes its versions marked ``head + 1``, adds the ``relengine_revisions`` row
    (with its commit stamp), its changelog rows and ``head = head + 1``, and commits, which
    releases the lock. So:

    - revisions are handed out in commit order, with no gaps: the lock is held from the moment
      a writer learns ``head`` until its commit is visible, so the next writer (on any server)
      sees the new head and takes the next number;
    - a snapshot at R sees exactly the commits <= R: it reads ``head`` in a REPEATABLE READ
      transaction, every version marked <= R belongs to a committed transaction (the writer of
      R + 1 could only start after R's commit), and the marks a later writer makes (R + 1 and
      up, committed or not) fail the visibility test at R;
    - preconditions, CREATE and DELETE-by-filter read the state they change: a writer sees
      head and its own writes, and no other writer commits meanwhile, so no write is lost or
      half-applied, and there are no write skews to detect.

    The price is that writes are serialised across all servers, as they are in one LMDB
    environment; a write transaction holds the lock for a few milliseconds. The garbage
    collector takes the same lock. Serialization failures and deadlocks therefore do not occur
    in normal operation; where PostgreSQL raises one anyway, the store's own whole operations
    (bulk import, GC, migration) are retried a bounded number of times, and a caller's
    transaction, which the store cannot replay, is answered Aborted (gRPC ABORTED) with nothing
    applied.

    **Readers** hold one pooled connection in a REPEATABLE READ, READ ONLY transaction, which
    also keeps the versions they see from a concurrent collection (as the LMDB read
    transaction does). Take one per request and close it.

    **Watch** reads ``relengine_changelog`` in (revision, key) order, the source of truth;
    ``NOTIFY relengine_changes`` at each commit (its revision as payload) only tells the
    store's one listener, which wakes the watchers (it also reads head every
    ``store.WATCH_POLL`` seconds, so a lost notification only delays), so a change written through any server reaches watchers on
    every server, in revision order, none lost or duplicated, resumable from any revision still
    in the changelog.

    **GC**: as the other stores (``storage.base``): revisions superseded longer than the window
    ago (24 h by default) become unreadable, then their dead versions, changelog rows, schema
    texts and counters are deleted. Expired relationships are deleted by the engine
    (``Engine.delete_expired``) as on every store.

    **Bulk import** (``bulk_touch``) COPYs the rows into a temporary table and applies them with
    two set-based statements. The first import into an empty store (``bulk_load``) COPYs them
    straight into the emptied table and builds its indexes afterwards, in one transaction.

    **Round trips.** The pool hands out connections unchecked (the first statement is the
    check: ``connections``), and a snapshot's ``BEGIN`` travels with its first query, so an
    uncached check costs its reads, one more round trip and the final ``ROLLBACK``.

    **Portability.** The SQL avoids extensions, advisory locks and triggers; ``LISTEN/NOTIFY``
    is optional for correctness (watchers poll). Untested on anything but PostgreSQL 15.
"""

from .errors import DEFAULT_RETRIES
from .migrations import LATEST, MigrationResult, migrate
from .reader import PostgresReader
from .store import PostgresStore

__all__ = ["DEFAULT_RETRIES", "LATEST", "MigrationResult", "PostgresReader", "PostgresStore", "migrate"]
