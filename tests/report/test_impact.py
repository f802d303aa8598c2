"""report/impact.py and the commands that print it: ``schema diff`` (with and without data),
``write --dry-run --impact``, and ``matrix --diff``; the JSON shape is pinned by a golden file
(``REGEN=1`` rewrites it)."""

from __future__ import annotations

import json
import os
import pathlib

import pytest

from relengine import Engine
from relengine.cli import EXIT_OK, EXIT_USAGE, main
from relengine.results import AccessChange
from relengine.model import parse_relationship
from relengine.report.impact import Summary, render

ROOT = pathlib.Path(__file__).resolve().parents[2]
GTM = ROOT / "schemas" / "google_tag_manager.zed"
GOLDEN = pathlib.Path(__file__).parent / "golden"
RELS = [
    "account:acme#admin@user:ann", "account:acme#admin@group:ops#member", "group:ops#member@user:olga",
    "account:acme#member@user:mo", "container:web#account@account:acme", "container:web#approver@user:pat",
    "container:web#reader@user:rex", "container:app#account@account:acme", "container:app#approver@user:ed",
    "container:app#approver@group:qa#member", "group:qa#member@user:quinn",
]


@pytest.fixture
def store(tmp_path: pathlib.Path) -> str:
    data = tmp_path / "data"
    engine = Engine.open(str(data))
    engine.write_schema(GTM.read_text())
    engine.touch([parse_relationship(r) for r in RELS])
    engine.close()
    return str(data)


def _new_schema(tmp_path: pathlib.Path) -> str:
    text = GTM.read_text()
    text = text.replace("permission create_version = approve", "permission create_version = publish")
    text = text.replace("permission read = reader + edit", "permission read = reader + edit + account->view")
    path = tmp_path / "new.zed"
    path.write_text(text)
    return str(path)


def test_schema_diff_json_is_sorted_gained_and_lost(tmp_path: pathlib.Path, store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "diff", str(GTM), _new_schema(tmp_path), "--data-dir", store, "--format", "json"]) == EXIT_OK
    out = capsys.readouterr().out
    golden = GOLDEN / "impact.google_tag_manager.json"
    if os.environ.get("REGEN"):
        golden.write_text(out)
    assert out == golden.read_text()
    found = json.loads(out)
    assert set(found) == {"gained", "lost"} and found["gained"] == sorted(found["gained"])
    assert "container:web#read@user:mo" in found["gained"]
    assert "container:app#create_version@user:quinn" in found["lost"]


def test_schema_diff_text_counts_and_cuts_examples(tmp_path: pathlib.Path, store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "diff", str(GTM), _new_schema(tmp_path), "--data-dir", store, "--examples", "1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "permission expr changed: container#create_version: approve -> publish" in out
    assert "  container#create_version: 3 lost\n    - container:app#create_version@user:ed\n    ... and 2 more\n" in out
    assert "  container#read: 2 gained\n" in out


def test_schema_diff_without_data_lists_the_structure_only(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "diff", str(GTM), _new_schema(tmp_path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("schema changes: 2\n") and "access changes" not in out
    assert main(["schema", "diff", str(GTM), str(GTM)]) == EXIT_OK
    assert capsys.readouterr().out == "schema changes: none\n"


def test_schema_diff_refuses_a_bad_schema_with_its_position(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.zed"
    bad.write_text("definition user {}\ndefinition doc {\n    permission view = nobody\n}\n")
    assert main(["schema", "diff", str(GTM), str(bad)]) == EXIT_USAGE
    assert f"{bad}:3:" in capsys.readouterr().err
    assert main(["schema", "diff", str(GTM), str(GTM), "--data-dir", str(tmp_path / "missing")]) == EXIT_USAGE
    assert not (tmp_path / "missing").exists()


def test_write_dry_run_impact_writes_nothing(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    engine = Engine.open(store)
    head = engine.head_revision()
    engine.close()
    args = ["write", "--dry-run", "--impact", "--data-dir", store, "--operation", "delete",
            "account:acme#admin@group:ops#member", "--format", "json"]
    assert main(args) == EXIT_OK
    found = json.loads(capsys.readouterr().out)
    assert found["gained"] == [] and "container:web#publish@user:olga" in found["lost"]
    assert all(entry.endswith("@user:olga") for entry in found["lost"])
    engine = Engine.open(store)
    assert engine.head_revision() == head
    engine.close()
    assert main(["write", "--dry-run", "--impact", "container:web#reader@user:new", "--data-dir", store]) == EXIT_OK
    assert "container#read: 1 gained\n    + container:web#read@user:new\n" in capsys.readouterr().out


@pytest.fixture(params=["lmdb", "postgres"])
def datastore(request: pytest.FixtureRequest, tmp_path: pathlib.Path) -> str:
    """The store of ``store``'s relationships, named by a --datastore URI: ``lmdb:///PATH`` or
    a PostgreSQL database of the session's cluster (``tests/pg.py``)."""
    uri = f"lmdb://{tmp_path / 'data'}" if request.param == "lmdb" else request.getfixturevalue("pg_uri")
    if request.param == "postgres":
        from relengine.storage.postgres import migrate

        migrate(uri)
    engine = Engine.open(uri)
    engine.write_schema(GTM.read_text())
    engine.touch([parse_relationship(r) for r in RELS])
    engine.close()
    return uri


def test_schema_diff_and_write_impact_read_a_datastore_uri(
    tmp_path: pathlib.Path, datastore: str, capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema", "diff", str(GTM), _new_schema(tmp_path), "--datastore", datastore, "--format", "json"]) == EXIT_OK
    assert capsys.readouterr().out == (GOLDEN / "impact.google_tag_manager.json").read_text()  # as with --data-dir
    assert main(["schema", "diff", str(GTM), _new_schema(tmp_path), "--datastore", datastore]) == EXIT_OK
    out = capsys.readouterr().out
    assert "container#create_version: 3 lost" in out
    where = next(line for line in out.splitlines() if line.startswith("access changes on "))
    assert "@" not in where and "relengine:" not in where  # no user or password shown
    engine = Engine.open(datastore)
    head = engine.head_revision()
    engine.close()
    args = ["write", "--dry-run", "--impact", "--datastore", datastore, "--operation", "delete",
            "account:acme#admin@group:ops#member", "--format", "json"]
    assert main(args) == EXIT_OK
    found = json.loads(capsys.readouterr().out)
    assert found["gained"] == [] and "container:web#publish@user:olga" in found["lost"]
    engine = Engine.open(datastore)
    assert engine.head_revision() == head
    engine.close()


def test_a_datastore_uri_must_name_an_existing_store(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = f"lmdb://{tmp_path / 'missing'}"
    assert main(["schema", "diff", str(GTM), str(GTM), "--datastore", missing]) == EXIT_USAGE
    assert "no data directory" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
    assert main(["write", "--dry-run", "--impact", "--datastore", "redis://x", "container:web#reader@user:new"]) == EXIT_USAGE
    assert "postgresql://" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # one or the other, as argparse says
        main(["schema", "diff", str(GTM), str(GTM), "--data-dir", "d", "--datastore", missing])


def test_write_dry_run_needs_impact_and_a_data_dir(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["write", "--dry-run", "container:web#reader@user:new"]) == EXIT_USAGE
    assert main(["write", "--dry-run", "--impact", "container:web#reader@user:new"]) == EXIT_USAGE
    assert "--data-dir" in capsys.readouterr().err
    assert main(["write", "--dry-run", "--impact", "--data-dir", store, "container:web#nope@user:new"]) == EXIT_USAGE


def test_matrix_diff_marks_the_cells_that_change(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", str(GTM), "--diff", _new_schema(tmp_path), "--resource", "container"]) == EXIT_OK
    out = capsys.readouterr().out
    approver = next(line for line in out.splitlines() if line.startswith("approver "))
    member = next(line for line in out.splitlines() if line.startswith("account->member "))
    assert "-yes" in approver and "+yes" not in approver
    assert "+yes" in member  # read through account->view
    assert out.endswith("2 cells change (+yes: gained with the new schema; -yes: lost with it)\n")
    assert main(["matrix", str(GTM), "--diff", str(GTM), "--resource", "container", "--format", "markdown"]) == EXIT_OK
    assert "**" not in capsys.readouterr().out


def test_summary_keeps_counts_and_a_bounded_number_of_examples() -> None:
    changes = [AccessChange("doc", str(i), "view", "user", "ann", i % 2 == 0) for i in range(100)]
    summary = Summary.of(changes, examples=3)
    group = summary.groups[("doc", "view")]
    assert (group.gained, group.lost, len(group.examples), summary.total) == (50, 50, 3, 100)
    assert render(changes, "json").count("doc:") == 100


@pytest.mark.parametrize("run", [1, 3, 1000])
def test_json_is_streamed_sorted_through_spilled_runs_exactly_as_json_dumps(run: int) -> None:
    """``write_json`` with runs smaller than the input (spilled to temporary files and merged)
    prints what ``json.dumps(indent=2)`` of the sorted lists prints; also with empty lists."""
    import io
    import random

    from relengine.report.impact import write_json

    rng = random.Random(run)
    ids = ["a", "b", "a1", "a10", "a|b", "a-b", "x" * 90, "Z", "0", "e_1"]
    changes = [AccessChange(rng.choice(["doc", "folder"]), rng.choice(ids), rng.choice(["view", "edit"]), "user",
                            rng.choice(ids + ["*"]), rng.random() < 0.5) for _ in range(40)]
    changes = list(dict.fromkeys(changes))
    for given in (changes, [c for c in changes if c.gained], []):
        out = io.StringIO()
        write_json(out, given, run=run)
        expected = {"gained": sorted(str(c) for c in given if c.gained), "lost": sorted(str(c) for c in given if not c.gained)}
        assert out.getvalue() == json.dumps(expected, indent=2) + "\n"


def test_grouped_changes_count_and_print_as_the_changes_one_by_one(store: str, tmp_path: pathlib.Path) -> None:
    """``Engine.schema_impact_grouped`` (plain changes as one AccessChanges per resource,
    permission and subject type) flattens to ``schema_impact``, and the report reads both alike."""
    from relengine.engine.impact import flatten
    from relengine.results import AccessChanges

    engine = Engine.open(store)
    try:
        old, new = GTM.read_text(), pathlib.Path(_new_schema(tmp_path)).read_text()
        grouped = list(engine.schema_impact_grouped(old, new))
        one_by_one = list(engine.schema_impact(old, new))
    finally:
        engine.close()
    assert any(isinstance(g, AccessChanges) for g in grouped)
    assert list(flatten(grouped)) == one_by_one
    for fmt in ("text", "json"):
        assert render(grouped, fmt, examples=2) == render(one_by_one, fmt, examples=2)
