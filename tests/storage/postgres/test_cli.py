"""``relengine import --datastore postgresql://...``: the CLI on a real PostgreSQL database."""

from __future__ import annotations

from pathlib import Path

import pytest

from relengine.cli import main
from relengine.model import RelationshipFilter
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
