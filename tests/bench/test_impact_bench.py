"""bench/impact_bench.py runs end to end on a small world (each change is checked inside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import impact_bench


@pytest.mark.slow
@pytest.mark.parametrize("change", ["none", "narrow", "broad"])
def test_impact_bench_runs_and_reports(tmp_path: Path, change: str) -> None:
    out = tmp_path / "figures.json"
    args = ["--scale", "10k", "--cache-dir", str(tmp_path / "cache"), "--change", change, "--json", str(out)]
    assert impact_bench.main(args) == 0
    figures = json.loads(out.read_text())
    assert (figures["changes"] > 0) == (change != "none") and figures["seconds"] > 0 and figures["change"] == change
