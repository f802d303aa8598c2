"""The PostgreSQL store's tables, as numbered migrations; ``migrate`` applies the missing ones.

Each migration is a list of statements applied in one transaction with its row in
``relengine_migrations``, so a database is always at a whole version. ``migrate`` takes an
exclusive lock on that table first: two servers migrating at once apply each migration once.
Running it again changes nothing; a database at a version newer than this relengine knows is
refused (an older relengine must not write tables it does not understand). ``check_version``
is what a store runs when it opens: it refuses an unmigrated or outdated database and says
which command to run.

The SQL stays within what PostgreSQL-compatible distributed databases accept where that costs
nothing (no extensions, no advisory locks, no triggers); see the package docstring.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Final

import psycopg
from psycopg import errors as pg_errors

from ...errors import FailedPrecondition
from .errors import describe, migrate_hint, retrying

LIVE: Final = 9_223_372_036_854_775_807
"""The ``deleted`` marker of a live version: the largest bigint, so that "live at R" is the
one range test ``created <= R AND deleted > R`` for every R."""

MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    # 1: the first layout.
    (
        """CREATE TABLE relengine_meta (
            id integer PRIMARY KEY CHECK (id = 1),
            unique_id text NOT NULL,
            head bigint NOT NULL,
            horizon bigint NOT NULL
        )""",
        """CREATE TABLE relengine_revisions (
            revision bigint PRIMARY KEY,
            committed_micros bigint NOT NULL
        )""",
        f"""CREATE TABLE relengine_relationships (
            rkey bytea NOT NULL,
            skey bytea NOT NULL,
            resource_type text NOT NULL,
            resource_id text NOT NULL,
            relation text NOT NULL,
            subject_type text NOT NULL,
            subject_id text NOT NULL,
            subject_relation text NOT NULL,
            caveat_name text,
            caveat_context bytea,
            expires_micros bigint,
            created bigint NOT NULL,
            deleted bigint NOT NULL DEFAULT {LIVE},
            PRIMARY KEY (rkey, created)
        )""",
        f"CREATE UNIQUE INDEX relengine_relationships_live ON relengine_relationships (rkey) "
        f"WHERE deleted = {LIVE}",
        "CREATE INDEX relengine_relationships_by_subject ON relengine_relationships (skey, created)",
        f"CREATE INDEX relengine_relationships_dead ON relengine_relationships (deleted) "
        f"WHERE deleted <> {LIVE}",
        "CREATE INDEX relengine_relationships_created ON relengine_relationships (created)",
        """CREATE TABLE relengine_changelog (
            revision bigint NOT NULL,
            rkey bytea NOT NULL,
            op text NOT NULL,
            resource_type text,
            resource_id text,
            relation text,
            subject_type text,
            subject_id text,
            subject_relation text,
            caveat_name text,
            caveat_context bytea,
            expires_micros bigint,
            PRIMARY KEY (revision, rkey)
        )""",
        """CREATE TABLE relengine_schema (
            revision bigint PRIMARY KEY,
            text text NOT NULL
        )""",
        """CREATE TABLE relengine_counters (
            revision bigint PRIMARY KEY,
            counters bytea NOT NULL
        )""",
        "INSERT INTO relengine_meta (id, unique_id, head, horizon) VALUES (1, %(unique_id)s, 0, 0)",
        # Revision 0's stamp is 0: stamps only grow (each is at least its predecessor's), and
        # 0 leaves a store's clock free to start anywhere.
        "INSERT INTO relengine_revisions (revision, committed_micros) VALUES (0, 0)",
    ),
    # 2: guard files, versioned beside the schema.
    (
        """CREATE TABLE relengine_guards (
            revision bigint PRIMARY KEY,
            text text NOT NULL
        )""",
    ),
    # 3: a bulk revision's changes are one changelog row, op 'B', read from its versions
    # (a relengine without this migration would read 'B' as a deletion: it must refuse).
    (
        "COMMENT ON COLUMN relengine_changelog.op IS "
        "'T touch, D delete, S schema, B bulk (the changes are the versions created or deleted at the revision)'",
    ),
    # 4: fewer, narrower indexes on the versions (each is rebuilt by a first import, and
    # maintained by every write). The primary key (rkey, deleted) replaces both the key
    # (rkey, created) and the partial unique index on the live rkey: it holds at most one live
    # version per relationship (deleted = LIVE), orders every version by rkey for the range
    # scans, and finds a relationship's versions by rkey (no revision ends two versions of one
    # relationship, so it is unique). The by-subject index loses ``created``, which no scan
    # needs in it (the version's row is read for ``deleted`` anyway).
    (
        "ALTER TABLE relengine_relationships DROP CONSTRAINT relengine_relationships_pkey",
        "DROP INDEX relengine_relationships_live",
        "ALTER TABLE relengine_relationships ADD CONSTRAINT relengine_relationships_pkey PRIMARY KEY (rkey, deleted)",
        "DROP INDEX relengine_relationships_by_subject",
        "CREATE INDEX relengine_relationships_by_subject ON relengine_relationships (skey)",
    ),
)

LATEST: Final = len(MIGRATIONS)
"""The version of the tables this relengine reads and writes."""


@dataclass(frozen=True, slots=True)
class MigrationResult:
    """What ``migrate`` did: the version found and the version left (equal: nothing to do)."""

    before: int
    after: int

    @property
    def changed(self) -> bool:
        return self.before != self.after


def _version(conn: psycopg.Connection[tuple[object, ...]]) -> int | None:
    """The database's version, None if it has no migrations table."""
    found = conn.execute("SELECT to_regclass('relengine_migrations') IS NOT NULL").fetchone()
    if not found or not found[0]:
        return None
    row = conn.execute("SELECT coalesce(max(version), 0) FROM relengine_migrations").fetchone()
    return int(row[0]) if row else 0  # type: ignore[call-overload]


def _too_new(version: int, where: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"the database {where} has relengine tables at version {version}, newer than this "
        f"relengine's {LATEST}: it was migrated by a newer relengine; upgrade relengine",
        version=version, latest=LATEST,
    )


def migrate(uri: str, *, connect_timeout: float = 10.0) -> MigrationResult:
    """Create or upgrade relengine's tables in the database at ``uri`` (see the module)."""
    where = describe(uri)

    def run() -> MigrationResult:
        with psycopg.connect(uri, connect_timeout=max(1, int(connect_timeout))) as conn:
            with conn.transaction():
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS relengine_migrations ("
                    "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
                )
            with conn.transaction():
                conn.execute("LOCK TABLE relengine_migrations IN EXCLUSIVE MODE")
                before = _version(conn) or 0
                if before > LATEST:
                    raise _too_new(before, where)
                for version in range(before + 1, LATEST + 1):
                    params = {"unique_id": uuid.uuid4().hex}
                    for statement in MIGRATIONS[version - 1]:
                        conn.execute(statement, params if "%(" in statement else None)
                    conn.execute("INSERT INTO relengine_migrations (version) VALUES (%s)", (version,))
            return MigrationResult(before, LATEST)

    def attempt() -> MigrationResult:
        try:
            return run()
        except (pg_errors.UniqueViolation, pg_errors.DuplicateTable) as exc:
            # Two first migrations racing to create the migrations table: the loser retries.
            raise pg_errors.SerializationFailure(str(exc)) from exc

    return retrying(attempt, where)


def check_version(conn: psycopg.Connection[tuple[object, ...]], uri: str) -> None:
    """Raise FailedPrecondition unless the database is at exactly ``LATEST``."""
    where = describe(uri)
    version = _version(conn)
    if not version:
        raise FailedPrecondition(
            f"the database {where} has no relengine tables: {migrate_hint(uri)}", latest=LATEST
        )
    if version < LATEST:
        raise FailedPrecondition(
            f"the database {where} has relengine tables at version {version}, older than this "
            f"relengine's {LATEST}: {migrate_hint(uri)}",
            version=version, latest=LATEST,
        )
    if version > LATEST:
        raise _too_new(version, where)


__all__ = ["LATEST", "LIVE", "MIGRATIONS", "MigrationResult", "check_version", "migrate"]
