"""The LMDB store's own tests: ``store`` and ``make_store`` (tests/storage/conftest.py) give
LMDB stores here, not one of each backend."""

from __future__ import annotations

import pytest


@pytest.fixture
def backend() -> str:
    return "lmdb"
