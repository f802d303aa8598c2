"""One real server per test module (the world loaded, a preshared key), shared by its examples."""

from __future__ import annotations

from typing import Iterator

import pytest

from .rpc import Served, served_world


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    yield from served_world(tmp_path_factory.mktemp("fuzz"))
