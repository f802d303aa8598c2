"""compare flags a ratio that got worse beyond the threshold and the old run's spread, and
leaves noise alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench import compare, report


def run(ratio: float, reps: list[float], status: str = "ok", name: str = "uncached_check") -> dict[str, Any]:
    s: dict[str, Any] = {"name": name, "scale": "100k", "mode": "inproc", "status": status}
    if status == "ok":
        s["headline"] = {"metric": "p50_ns", "subject": "engine", "baseline": "lmdb_floor",
                         "value": ratio * 10_000, "baseline_value": 10_000.0, "ratio": ratio, "ratio_reps": reps}
    else:
        s["reason"] = "verification: engine answered 1 of 10 queries wrong"
    return {"format": report.RESULTS_FORMAT, "scenarios": [s]}


def verdict(old: dict[str, Any], new: dict[str, Any], threshold: float = 0.15) -> str:
    return compare.compare(old, new, threshold)[0]["verdict"]


def test_a_real_regression_is_flagged() -> None:
    assert verdict(run(2.0, [1.9, 2.0, 2.1]), run(2.6, [2.5, 2.6, 2.7])) == "regression"


def test_noise_within_the_threshold_is_not() -> None:
    assert verdict(run(2.0, [1.9, 2.0, 2.1]), run(2.2, [2.1, 2.2, 2.3])) == "ok"


def test_a_change_inside_the_old_runs_spread_is_not() -> None:
    assert verdict(run(2.0, [1.5, 2.0, 2.8]), run(2.5, [2.4, 2.5, 2.6])) == "ok"


def test_the_threshold_is_configurable() -> None:
    assert verdict(run(2.0, [2.0]), run(2.2, [2.2]), threshold=0.05) == "regression"


def test_improvements_breakage_and_membership() -> None:
    assert verdict(run(2.0, [1.9, 2.1]), run(1.0, [1.0])) == "improvement"
    assert verdict(run(2.0, [2.0]), run(0, [], status="failed")) == "broken"
    rows = compare.compare(run(2.0, [2.0], name="a"), run(2.0, [2.0], name="b"))
    assert {r["name"]: r["verdict"] for r in rows} == {"a": "gone", "b": "new"}


def test_main_exits_1_on_regression(tmp_path: Path, capsys: Any) -> None:
    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(run(2.0, [2.0])))
    new.write_text(json.dumps(run(3.0, [3.0])))
    assert compare.main([str(old), str(new)]) == 1
    assert "**regression**" in capsys.readouterr().out
    assert compare.main([str(old), str(old)]) == 0
