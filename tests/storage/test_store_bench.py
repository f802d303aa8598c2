"""bench/store_bench.py runs end to end on a tiny dataset (its answers are checked inside)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import store_bench


@pytest.mark.slow
def test_store_bench_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "figures.json"
    args = ["--count", "3000", "--reads", "500", "--writes", "3", "--batches", "2", "--reps", "1",
            "--dir", str(tmp_path), "--json", str(out)]
    assert store_bench.main(args) == 0
    figures = json.loads(out.read_text())
    assert figures["relationships"] == 3000
    for name in ("import_rels_per_s", "read_hit_ratio", "write_1_p99_us", "write_100_p99_us"):
        assert figures[name] > 0
    assert "read_hit_ratio" in capsys.readouterr().out
