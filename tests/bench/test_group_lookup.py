"""bench/group_lookup.py runs end to end on small groups (each answer is checked inside)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import group_lookup


def test_group_lookup_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "figures.json"
    assert group_lookup.main(["--sizes", "10,40", "--reps", "1", "--dir", str(tmp_path), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert set(figures) == {"n10_s", "n10_us_per_member", "n40_s", "n40_us_per_member"}
    assert all(value > 0 for value in figures.values())
