"""Where SpiceDB's conformance data lies (``../shared/conformance/spicedb`` beside the clone),
and how tests that read it are parametrized when it is absent (see ``conftest.py``)."""

from __future__ import annotations

import pathlib
from typing import Any, Callable

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
SPICEDB_CONFORMANCE = ROOT.parent / "shared" / "conformance" / "spicedb"
ABSENT = (
    f"SpiceDB's conformance data is not beside this clone ({SPICEDB_CONFORMANCE}); "
    "CI provides it (and fails without it)"
)


def conformance_files(folder: str, pattern: str) -> list[pathlib.Path]:
    """The conformance files ``folder/pattern`` (empty when the data is absent)."""
    return sorted((SPICEDB_CONFORMANCE / folder).glob(pattern))


def conformance_params(files: list[pathlib.Path], make: Callable[[pathlib.Path], Any] | None = None) -> list[Any]:
    """``pytest.param`` per file (``make`` builds one), or a single placeholder when there are
    none, so that the test is reported skipped (or failed in CI) with the reason rather than
    silently parametrized over nothing."""
    if not files:
        return [pytest.param(None, id="conformance-data-absent")]
    return [make(path) if make else pytest.param(path, id=path.stem) for path in files]
