"""Migrations of the PostgreSQL store on a real database: idempotent, a newer database refused,
an unmigrated one refused by the store with the command to run; the CLI command."""

from __future__ import annotations

import time

import psycopg
import pytest

from relengine.cli import main
from relengine.errors import FailedPrecondition
from relengine.storage.postgres import LATEST, PostgresStore, migrate


def _layout(uri: str) -> list[tuple[object, ...]]:
    with psycopg.connect(uri) as conn:
        columns = conn.execute(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_name LIKE 'relengine%%' ORDER BY 1, 2"
        ).fetchall()
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename LIKE 'relengine%%' ORDER BY 1"
        ).fetchall()
        rows = conn.execute("SELECT * FROM relengine_meta").fetchall()
        versions = conn.execute("SELECT version FROM relengine_migrations ORDER BY 1").fetchall()
    return [*columns, *indexes, *rows, *versions]


def test_a_second_migration_changes_nothing(pg_uri: str) -> None:
    first = migrate(pg_uri)
    assert (first.before, first.after, first.changed) == (0, LATEST, True)
    layout = _layout(pg_uri)
    assert layout and ("relengine_relationships", "rkey", "bytea") in layout
    again = migrate(pg_uri)
    assert (again.before, again.after, again.changed) == (LATEST, LATEST, False)
    assert _layout(pg_uri) == layout


def test_a_store_refuses_an_unmigrated_database_and_names_the_command(pg_uri: str) -> None:
    with pytest.raises(FailedPrecondition, match=f"relengine datastore migrate {pg_uri}"):
        PostgresStore(pg_uri)


def test_a_database_of_a_newer_relengine_is_refused(pg_uri: str) -> None:
    migrate(pg_uri)
    with psycopg.connect(pg_uri) as conn:
        conn.execute("INSERT INTO relengine_migrations (version) VALUES (%s)", (LATEST + 1,))
    with pytest.raises(FailedPrecondition, match="newer than this relengine's"):
        migrate(pg_uri)
    with pytest.raises(FailedPrecondition, match="newer than this relengine's"):
        PostgresStore(pg_uri)


def test_the_cli_migrates_once(pg_uri: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datastore", "migrate", pg_uri]) == 0
    assert f"from version 0 to {LATEST}" in capsys.readouterr().out
    assert main(["datastore", "migrate", pg_uri]) == 0
    assert "nothing to do" in capsys.readouterr().out
    store = PostgresStore(pg_uri)
    assert store.head_revision().value == 0
    store.close()


def test_the_cli_refuses_what_is_not_a_postgresql_uri(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["datastore", "migrate", "/tmp/somewhere"]) == 2
    assert "not a PostgreSQL URI" in capsys.readouterr().err


def test_a_version_3_database_with_history_is_migrated_to_the_new_keys(
    pg_uri: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from relengine.model import Revision, SubjectRef
    from relengine.storage import keys
    from relengine.storage.postgres import migrations

    monkeypatch.setattr(migrations, "LATEST", 3)
    assert migrate(pg_uri).after == 3
    monkeypatch.undo()
    rkey = keys.resource_key("doc", "1", "viewer", "user", "ann", "")
    skey = keys.subject_key("user", "ann", "", "doc", "viewer", "1")
    with psycopg.connect(pg_uri) as conn:  # a relationship touched at 1 and again, caveated, at 2
        for created, deleted, caveat in ((1, 2, None), (2, migrations.LIVE, "cav")):
            conn.execute(
                "INSERT INTO relengine_relationships (rkey, skey, resource_type, resource_id, relation, subject_type, "
                "subject_id, subject_relation, caveat_name, created, deleted) "
                "VALUES (%s, %s, 'doc', '1', 'viewer', 'user', 'ann', '', %s, %s, %s)",
                (rkey, skey, caveat, created, deleted),
            )
        now = int(time.time() * 1_000_000)
        conn.execute(
            "INSERT INTO relengine_revisions (revision, committed_micros) VALUES (1, %s), (2, %s)", (now, now + 1)
        )
        conn.execute("UPDATE relengine_meta SET head = 2")
    result = migrate(pg_uri)
    assert (result.before, result.after) == (3, LATEST) and LATEST >= 4
    with psycopg.connect(pg_uri) as conn:
        indexes = dict(conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'relengine_relationships'"
        ).fetchall())
    assert "(rkey, deleted)" in indexes["relengine_relationships_pkey"]
    assert "relengine_relationships_live" not in indexes
    assert indexes["relengine_relationships_by_subject"].endswith("(skey)")
    store = PostgresStore(pg_uri, gc_interval=None)
    try:
        ann = SubjectRef("user", "ann")
        assert str(store.snapshot(Revision(1)).relationship("doc", "1", "viewer", ann)) == "doc:1#viewer@user:ann"
        assert str(store.snapshot().relationship("doc", "1", "viewer", ann)) == "doc:1#viewer@user:ann[cav]"
        with psycopg.connect(pg_uri) as conn, pytest.raises(psycopg.errors.UniqueViolation):
            conn.execute(  # still one live version per relationship
                "INSERT INTO relengine_relationships (rkey, skey, resource_type, resource_id, relation, subject_type, "
                "subject_id, subject_relation, created) VALUES (%s, %s, 'doc', '1', 'viewer', 'user', 'ann', '', 3)",
                (rkey, skey),
            )
    finally:
        store.close()
