"""`relengine schema graph`: dot and mermaid renderings of a schema."""

from __future__ import annotations

import os
import pathlib

import pytest

from relengine.cli import main
from relengine.report.graph import edges, render
from relengine.schema import compile_schema

ROOT = pathlib.Path(__file__).resolve().parents[2]
GOLDEN = pathlib.Path(__file__).parent / "golden"


def test_edges_show_allowed_types_computed_and_arrows() -> None:
    schema = compile_schema((ROOT / "schemas" / "google_tag_manager.zed").read_text())
    found = {(e.source, e.target, e.style, e.label) for e in edges(schema)}
    assert ("container.reader", "group.member", "allows", "") in found
    assert ("container.read", "container.edit", "computed", "") in found
    assert ("container.publish", "account.administer", "arrow", "account->administer") in found


def test_exclusion_and_intersection_are_labelled() -> None:
    schema = compile_schema(
        "definition user {}\ndefinition doc {\n relation aaa: user\n relation bbb: user\n relation ccc: user:*\n"
        " permission ppp = (aaa & bbb) - ccc\n}"
    )
    found = {(e.target, e.label) for e in edges(schema) if e.source == "doc.ppp"}
    assert found == {("doc.aaa", "&"), ("doc.bbb", "&"), ("doc.ccc", "minus")}


@pytest.mark.parametrize("fmt", ["dot", "mermaid"])
def test_golden(fmt: str) -> None:
    schema = compile_schema((ROOT / "schemas" / "taggrs.zed").read_text())
    text = render(schema, fmt)
    golden = GOLDEN / f"taggrs.{fmt}"
    if os.environ.get("REGEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_cli(capsys: pytest.CaptureFixture[str], tmp_path: pathlib.Path) -> None:
    assert main(["schema", "graph", str(ROOT / "schemas" / "dxtra.zed"), "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph schema {")
    bad = tmp_path / "bad.zed"
    bad.write_text("definition doc {\n relation a: nothing\n}\n")
    assert main(["schema", "graph", str(bad)]) == 1
    assert "2:14" in capsys.readouterr().err
