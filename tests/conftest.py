"""Fixtures shared by every test folder, and the rule for SpiceDB's conformance data.

SpiceDB's conformance data (validation files, parser golden files) lies in
``../shared/conformance/spicedb`` beside the clone. Tests that read it carry the
``conformance`` mark; without the data they are skipped with the reason, except where ``CI``
is set, where they fail: CI can never pass without them.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import pytest

from relengine import Engine, EngineConfig, parse_relationship
from relengine.storage.memory import MemoryStore

from .spicedb_data import ABSENT, SPICEDB_CONFORMANCE


@pytest.fixture(autouse=True)
def _conformance_data(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("conformance") is None or SPICEDB_CONFORMANCE.is_dir():
        return
    if os.environ.get("CI"):
        pytest.fail(ABSENT)
    pytest.skip(ABSENT)


@pytest.fixture
def engine_from() -> Callable[..., Engine]:
    """``engine_from(schema, *relationships, store=None, **config)``: an Engine on ``store`` (a
    new memory store if None) with ``schema`` written and ``relationships`` (text form) touched;
    ``config`` goes to ``EngineConfig``."""

    def make(schema: str, *relationships: str, store: MemoryStore | None = None, **config: Any) -> Engine:
        engine = Engine(MemoryStore() if store is None else store, EngineConfig(**config))
        engine.write_schema(schema)
        if relationships:
            engine.touch([parse_relationship(text) for text in relationships])
        return engine

    return make
