"""The evaluation plan: kept with its schema, recursive members found, and no import of check."""

from __future__ import annotations

import ast
import pathlib

import pytest

import relengine.engine.plan as plan_module
from relengine.engine.plan import Plan, plan_for
from relengine.errors import InvalidArgument, Unimplemented
from relengine.model import CaveatRef
from relengine.schema import compile_schema

SCHEMA = """
definition user {}

caveat on_network(ip string) {
    ip == "10.0.0.1"
}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user | user with on_network
    permission view = viewer + parent->view
}

definition doc {
    relation folder: folder
    relation viewer: user | group#member
    permission view = viewer + folder->view
}
"""


def test_the_plan_is_kept_with_its_schema() -> None:
    schema = compile_schema(SCHEMA)
    plan = plan_for(schema)
    assert isinstance(plan, Plan) and plan.schema is schema
    assert plan_for(schema) is plan
    twin = compile_schema(SCHEMA)
    assert twin == schema and plan_for(twin) is not plan  # equal, but its own plan
    assert "derived" not in repr(schema) and "Plan" not in repr(schema)


def test_only_members_that_reach_themselves_are_recursive() -> None:
    plan = plan_for(compile_schema(SCHEMA))
    assert plan.recursive == {("group", "member"), ("folder", "view")}
    assert set(plan.entries) == set(plan.nodes)
    assert plan.entries[("folder", "view")][1] and not plan.entries[("doc", "view")][1]


def test_stored_caveat_contexts_are_checked_at_write_time() -> None:
    plan = plan_for(compile_schema(SCHEMA))
    plan.check_caveat_context(CaveatRef("on_network", {"ip": "10.0.0.1"}))
    with pytest.raises(InvalidArgument):
        plan.check_caveat_context(CaveatRef("on_network", {"port": 1}))
    with pytest.raises(Unimplemented):
        plan.check_caveat_context(CaveatRef("nowhere", {"x": 1}))


def test_the_plan_does_not_import_the_checker() -> None:
    """Plans see the checker only through the ``Walk`` Protocol: no import circle."""
    tree = ast.parse(pathlib.Path(plan_module.__file__).read_text())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not any(name and name.rpartition(".")[2] == "check" for name in imported), imported
