"""``relengine import --datastore postgresql://...``: the CLI on a real PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from relengine import Engine
from relengine.cli import main
from relengine.model import RelationshipFilter, parse_relationship
from relengine.storage.postgres import PostgresStore, migrate

SCHEMA = "definition user {}\ndefinition doc {\n  relation viewer: user\n}\n"


def _files(tmp_path: Path) -> tuple[str, str]:
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    rels = tmp_path / "rels.txt"
    rels.write_text("".join(f"doc:d{i}#viewer@user:u{i % 7}\n" for i in range(250)))
    return str(schema), str(rels)


def test_import_into_a_postgresql_datastore(pg_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    migrate(pg_uri)
    schema, rels = _files(tmp_path)
    args = ["import", "--datastore", pg_uri, rels, "--schema", schema, "--batch-size", "100", "-q"]
    assert main(args) == 0
    assert "imported 250 relationships" in capsys.readouterr().out
    assert main(args) == 0  # restartable: nothing changes
    store = PostgresStore(pg_uri)
    try:
        reader = store.snapshot()
        assert len(list(reader.read(RelationshipFilter("doc")))) == 250
        assert reader.schema_text() == SCHEMA
        reader.close()
    finally:
        store.close()


def test_import_refuses_an_unmigrated_database_naming_the_command(
    pg_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    schema, rels = _files(tmp_path)
    assert main(["import", "--datastore", pg_uri, rels, "--schema", schema, "-q"]) == 2
    assert f"run `relengine datastore migrate {pg_uri}` first" in capsys.readouterr().err


def test_a_datastore_that_is_no_known_uri_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema, rels = _files(tmp_path)
    assert main(["import", "--datastore", "mysql://x/y", rels, "-q"]) == 2
    assert "give postgresql://USER@HOST:PORT/DB or lmdb:///PATH" in capsys.readouterr().err


def test_lmdb_by_uri(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema, rels = _files(tmp_path)
    assert main(["import", "--datastore", f"lmdb://{tmp_path / 'store'}", rels, "--schema", schema, "-q"]) == 0
    assert (tmp_path / "store").is_dir()


def test_validate_runs_a_files_assertions_on_the_stored_data(
    pg_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    migrate(pg_uri)
    engine = Engine.open(pg_uri, gc_interval=None)
    try:
        engine.write_schema(SCHEMA)
        engine.touch([parse_relationship("doc:d1#viewer@user:ann")])
        head = engine.head_revision()
    finally:
        engine.close()
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "schema: >-\n  definition user {}\n"  # the file's own schema and relationships are not loaded
        "relationships: >-\n  doc:d9#viewer@user:zed\n"
        "assertions:\n  assertTrue:\n    - doc:d1#viewer@user:ann\n    - doc:d9#viewer@user:zed\n"
        "  assertFalse:\n    - doc:d1#viewer@user:bob\n"
    )
    assert main(["validate", str(checks), "--datastore", pg_uri]) == 1
    captured = capsys.readouterr()
    assert "2 passed, 1 failed" in captured.out
    assert "doc:d9#viewer@user:zed" in captured.out  # the one failure: not stored
    assert "relationships are not loaded" in captured.err
    store = PostgresStore(pg_uri)
    try:
        assert store.head_revision() == head  # nothing written
    finally:
        store.close()


def test_validate_on_a_store_without_a_schema_says_so(pg_uri: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    migrate(pg_uri)
    checks = tmp_path / "checks.yaml"
    checks.write_text("schema: >-\n  definition user {}\nassertions:\n  assertTrue:\n    - user:a#member@user:b\n")
    assert main(["validate", str(checks), "--datastore", pg_uri]) == 1
    assert "the store has no schema" in capsys.readouterr().out
