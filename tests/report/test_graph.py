"""The schema graph (report/graph.py): dot and mermaid renderings of a schema; the `relengine
schema graph` command is tests/test_cli.py's."""

from __future__ import annotations

import os
import pathlib

import pytest

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
