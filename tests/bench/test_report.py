"""The results document: its schema, the Markdown report, targets, files and plots."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from bench import framework, report
from bench.framework import Scenario

from .test_framework import ctx, squares


def results_with(tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    s = Scenario("uncached_check", ("check",), "squares", lambda c, scales: squares(), ("10k",), ("10k",))
    results = report.new_results("quick", ["--quick"])
    results["scenarios"].append(framework.run_scenario(ctx(tmp_path), s, [10_000]))
    failed = Scenario("broken", (), "", lambda c, scales: 1 / 0, ("10k",), ("10k",))  # type: ignore[arg-type,return-value]
    results["scenarios"].append(framework.run_scenario(ctx(tmp_path), failed, [10_000]))
    results["duration_seconds"] = 1.0
    results["targets"] = report.targets(results)
    results.update(overrides)
    return results


def test_results_json_schema(tmp_path: Path) -> None:
    results = results_with(tmp_path)
    out = report.write(results, tmp_path / "results" / "run1", plot=None)
    data = json.loads((out / "results.json").read_text())
    assert data["format"] == report.RESULTS_FORMAT
    for key in ("cpu_model", "cores", "python", "relengine", "lmdb", "date"):
        assert key in data["machine"], key
    ok, broken = data["scenarios"]
    assert {"name", "tags", "scale", "mode", "status", "verified", "measurements", "headline", "params"} <= set(ok)
    for m in ok["measurements"]:
        assert {"label", "baseline", "driver", "concurrency", "ops", "seconds", "ns_per_op", "units_per_second",
                "reps", "latency_ns", "p50_ns"} <= set(m)
        lat = m["latency_ns"]
        assert {"count", "min", "mean", "p50", "p90", "p99", "p999", "max", "distribution"} <= set(lat)
        assert lat["min"] <= lat["p50"] <= lat["p99"] <= lat["max"]
    assert {"metric", "subject", "baseline", "value", "baseline_value", "ratio", "ratio_reps"} <= set(ok["headline"])
    assert broken["status"] == "failed" and "ZeroDivisionError" in broken["reason"]
    assert report.load(out)["scenarios"][0]["name"] == "uncached_check"
    assert (tmp_path / "results" / "latest").resolve() == out.resolve()
    report.write(results, tmp_path / "elsewhere" / "run", plot=None, link_latest=False)
    assert not (tmp_path / "elsewhere" / "latest").exists()


def test_markdown_lists_every_scenario_and_the_targets(tmp_path: Path) -> None:
    md = report.markdown(results_with(tmp_path))
    assert "| uncached_check | 10k | p50 per call |" in md
    assert "| broken | 10k | failed |" in md
    assert "## Targets" in md and "uncached check p50 (admin walk)" in md


def test_targets_judge_what_ran(tmp_path: Path) -> None:
    results = results_with(tmp_path)
    by_name = {t["name"]: t for t in results["targets"]}
    uncached = by_name["uncached check p50 (admin walk)"]
    assert uncached["met"] is True  # squaring an int takes far less than 12 us
    assert by_name["cached check throughput"]["met"] is None  # did not run


def test_grpc_targets_read_the_paired_figures() -> None:
    def grpc(name: str, headline: dict[str, Any], measurements: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        return {"name": name, "status": "ok", "scale": "1m", "relationships": 1_000_000, "headline": headline,
                "measurements": list(measurements)}

    results = report.new_results("full", ["--full"])
    results["scenarios"] += [
        grpc("grpc_check", {"value": 700_000, "baseline_value": 690_000, "diff_paired": 12_500.0,
                            "ratio_reps": [1.0, 1.02], "throughput": {
                                "threads, c=8": {"ratio_paired": 1.05}, "processes, c=8": {"ratio_paired": 0.95}}}),
        grpc("grpc_bulk_check", {}, [{"label": "grpc_bulk", "units_per_second": 120_000.0}]),
        grpc("grpc_workers", {"ratio_paired": 0.8}),
    ]
    by_name = {t["name"]: t for t in report.targets(results)}
    p50 = by_name["gRPC Check p50 over a gRPC echo"]
    assert (p50["measured"], p50["met"]) == (12.5, True)
    throughput = by_name["gRPC Check throughput vs the echo"]
    assert (throughput["measured"], throughput["met"]) == (0.952, True)
    assert "processes, c=8: 1.05x" in throughput["note"]
    assert by_name["gRPC BulkCheck of 1,000"]["met"] is True
    assert by_name["--workers 2 vs 1"]["measured"] == 1.25
    results["scenarios"][0]["headline"]["diff_paired"] = 45_000.0
    assert next(t for t in report.targets(results) if t["name"] == p50["name"])["met"] is False


def test_spicedb_targets_read_the_stub_pairs_and_the_bulk_rate() -> None:
    def ran(name: str, headline: dict[str, Any], measurements: list[dict[str, Any]] = ()) -> dict[str, Any]:  # type: ignore[assignment]
        return {"name": name, "status": "ok", "scale": "1m", "relationships": 1_000_000, "headline": headline,
                "measurements": list(measurements)}

    results = report.new_results("full", ["--full"])
    results["scenarios"] += [
        ran("spicedb_check", {"value": 110_000, "baseline_value": 100_000, "ratio_paired": 1.08, "ratio_reps": [1.08, 1.07],
                              "throughput": {"client, threads, c=1": {"ratio_paired": 1.3}}}),
        ran("spicedb_bulk_check", {}, [{"label": "spicedb_bulk", "units_per_second": 90_000.0}]),
    ]
    by_name = {t["name"]: t for t in report.targets(results)}
    p50 = by_name["SpiceDB API CheckPermission p50 vs relengine.v1 Check"]
    assert (p50["measured"], p50["met"]) == (1.08, True) and "SyncClient 1.30x" in p50["note"]
    bulk = by_name["SpiceDB API CheckBulkPermissions of 1,000"]
    assert (bulk["measured"], bulk["met"]) == (90_000, False)
    results["scenarios"][0]["headline"]["ratio_paired"] = 1.2
    assert next(t for t in report.targets(results) if t["name"] == p50["name"])["met"] is False


@pytest.mark.slow
def test_plots_are_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from bench import plots

    results = results_with(tmp_path)
    out = report.write(results, tmp_path / "r", plot=plots.plot_all)
    assert results["plots"] == ["latency_uncached_check_10k.png"]
    assert (out / "latency_uncached_check_10k.png").read_bytes()[:4] == b"\x89PNG"


def test_progress_goes_to_its_stream() -> None:
    stream = io.StringIO()
    progress = framework.Progress(stream)
    progress.prefix = "[1/2] x: "
    progress("timing")
    progress.done("finished")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("[1/2] x: timing") and lines[1].endswith("finished")


def test_guard_targets_read_the_paired_ratio_of_each_scenario() -> None:
    def ran(name: str, ratio: float) -> dict[str, Any]:
        return {"name": name, "status": "ok", "scale": "100k", "relationships": 100_000,
                "headline": {"ratio": ratio, "ratio_paired": ratio, "ratio_reps": [ratio]}, "measurements": []}

    results = report.new_results("quick", ["--quick"])
    results["scenarios"] += [ran("guarded_write_single", 1.1), ran("guarded_remove_batch", 1.7)]
    by_name = {t["name"]: t for t in report.targets(results)}
    assert (by_name["guarded single write (add) vs none"]["measured"], by_name["guarded single write (add) vs none"]["met"]) == (1.1, True)
    assert by_name["guarded 100-update batch (removal) vs none"]["met"] is False
    assert by_name["guarded single write (removal) vs none"]["met"] is None  # did not run
