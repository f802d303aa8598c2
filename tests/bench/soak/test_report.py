"""The soak's verdict on synthetic windows, windows summarised from parts, outcomes and RSS
samples placed in their windows, and the files written."""

from __future__ import annotations

import json
from array import array
from pathlib import Path
from typing import Any

from bench import report as bench_report
from bench.soak import report
from bench.soak.load import merge, new_part

MS = 1_000_000
MIB = 2**20


def window(index: int, p99_ms: float, rss_mib: float | None, warmup: bool = False, **extra: Any) -> report.Window:
    w: report.Window = {
        "index": index, "start_s": index * 60.0, "warmup": warmup, "checks": 1000, "writes": 10, "offered": 16.8, "throughput": 16.8,
        "p50_ns": MS, "p90_ns": 2 * MS, "p99_ns": int(p99_ms * MS), "max_ns": int(2 * p99_ms * MS),
        "write_p50_ns": MS, "write_p99_ns": 3 * MS, "late": 0, "unsent": 0, "wrong": 0, "load_errors": {},
        "abuse": {}, "rss_bytes": None if rss_mib is None else int(rss_mib * MIB) + 300 * MIB,
        "anon_bytes": None if rss_mib is None else int(rss_mib * MIB), "rss_samples": 60,
    }
    w.update(extra)  # type: ignore[typeddict-item]
    return w


def series(p99s: list[float], rss: list[float | None]) -> list[report.Window]:
    return [window(i, p, r, warmup=i == 0) for i, (p, r) in enumerate(zip(p99s, rss))]


def failed(verdict: report.Verdict) -> set[str]:
    return {c["name"] for c in verdict["criteria"] if not c["ok"]}


def test_a_steady_run_passes() -> None:
    verdict = report.judge(series([9, 5, 5.3, 4.9, 5.5], [200, 210, 212, 211, 215]), warmup=1)
    assert verdict["passed"], verdict["reasons"]
    assert (verdict["reference_window"], verdict["last_window"]) == (1, 4)
    assert verdict["p99_drift"] == 0.1 and verdict["rss_growth"] == round(215 / 210 - 1, 4)


def test_p99_drift_over_the_limit_fails_and_says_why() -> None:
    verdict = report.judge(series([5, 5, 5.5, 6.0, 6.1], [200] * 5), warmup=1)
    assert not verdict["passed"] and failed(verdict) == {"p99 drift"}
    assert verdict["p99_drift"] == 0.22
    assert verdict["reasons"] == ["p99 drift: +22.0% (6.10 ms vs 5.00 ms, window 5 vs 2) (limit < +20%)"]


def test_the_last_window_is_compared_with_the_first_after_warm_up() -> None:
    # A slow warm-up and a bump in the middle do not count; a p99 that falls passes.
    assert report.judge(series([50, 5, 9, 4], [100] * 4), warmup=1)["passed"]
    # Two windows of warm-up: the reference is the third.
    verdict = report.judge(series([50, 5, 8, 8.5], [100] * 4), warmup=2)
    assert verdict["passed"] and verdict["reference_window"] == 2


def test_p99_drift_pools_a_third_of_the_windows_at_each_end() -> None:
    # Ten minutes, one of warm-up: one noisy last minute is not a drift...
    noisy_end = [20, 5, 5.2, 4.8, 5.1, 5, 5.3, 4.9, 5.1, 9.0]
    verdict = report.judge(series(noisy_end, [100] * 10), warmup=1)
    assert verdict["passed"], verdict["reasons"]
    assert verdict["p99_windows"] == 3 and verdict["p99_drift"] == round(5.1 / 5.0 - 1, 4)
    # ...nor does one noisy first minute hide one.
    rising = [20, 2, 5, 5.1, 5.4, 5.6, 5.9, 6.1, 6.3, 6.2]
    verdict = report.judge(series(rising, [100] * 10), warmup=1)
    assert failed(verdict) == {"p99 drift"}
    assert verdict["p99_drift"] == round(6.2 / 5.0 - 1, 4)
    assert "6.20 ms vs 5.00 ms, median of windows 8-10 vs 2-4" in verdict["reasons"][0]


def test_rss_growth_over_the_limit_fails() -> None:
    verdict = report.judge(series([5] * 4, [100, 200, 205, 211]), warmup=1)
    assert failed(verdict) == {"RSS growth"}
    assert verdict["rss_growth"] == 0.055


def test_unmeasured_rss_fails() -> None:
    verdict = report.judge(series([5] * 4, [100, None, 100, 100]), warmup=1)
    assert failed(verdict) == {"RSS growth"}
    assert "not measured" in verdict["reasons"][0]


def test_any_load_failure_fails_even_in_warm_up() -> None:
    steady = series([5] * 4, [100] * 4)
    steady[0]["load_errors"] = {"UNAVAILABLE": 2}
    steady[3]["wrong"] = 1
    verdict = report.judge(steady, warmup=1)
    assert failed(verdict) == {"load errors"}
    assert "2 failed (UNAVAILABLE 2), 1 wrong answers, 0 not sent" in verdict["reasons"][0]
    steady = series([5] * 4, [100] * 4)
    steady[2]["unsent"] = 7
    assert failed(report.judge(steady, warmup=1)) == {"load errors"}


def test_abuse_outcomes_are_not_judged() -> None:
    steady = series([5] * 4, [100] * 4)
    steady[2]["abuse"] = {"raw_body": {"INTERNAL": 24}, "idle_stream": {"held": 3}}
    assert report.judge(steady, warmup=1)["passed"]


def test_too_few_windows_after_warm_up_fail() -> None:
    verdict = report.judge(series([5, 5], [100, 100]), warmup=1)
    assert failed(verdict) == {"p99 drift", "RSS growth"}
    assert "at least 2 after them; the run had 2" in verdict["reasons"][0]


def test_the_runs_own_checks_join_the_verdict() -> None:
    verdict = report.judge(series([5] * 4, [100] * 4), warmup=1,
                           checks=[("health after the load", True, "SERVING"), ("server stops on SIGTERM", False, "killed after 20 s")])
    assert failed(verdict) == {"server stops on SIGTERM"}


def test_a_window_merges_every_process_part() -> None:
    a, b = new_part(3), new_part(3)
    a["checks"] = array("q", range(1, 101))
    b["checks"] = array("q", range(101, 201))
    b["writes"] = array("q", [5, 7])
    a["errors"], b["errors"] = {"UNAVAILABLE": 1}, {"UNAVAILABLE": 2, "DEADLINE_EXCEEDED": 1}
    a["late"], b["late"], b["wrong"], a["unsent"] = 4, 1, 2, 3
    w = report.summarise(3, [a, b], 2.0, warmup=False)
    assert (w["checks"], w["writes"], w["p50_ns"], w["p99_ns"], w["max_ns"]) == (200, 2, 100, 198, 200)
    assert w["load_errors"] == {"DEADLINE_EXCEEDED": 1, "UNAVAILABLE": 3}
    assert (w["late"], w["wrong"], w["unsent"], w["offered"]) == (5, 2, 3, 103.0)  # (200 + 2 + 4) / 2 s
    assert w["start_s"] == 6.0 and w["write_p99_ns"] == 7
    a["completed"], b["completed"] = {3: 100}, {3: 90, 4: 12}
    merge(a, b)
    assert a["completed"] == {3: 190, 4: 12} and a["errors"] == {"UNAVAILABLE": 3, "DEADLINE_EXCEEDED": 1}
    empty = report.summarise(0, [new_part(0)], 1.0, warmup=True)
    assert empty["checks"] == 0 and empty["p99_ns"] is None


def test_outcomes_and_rss_samples_land_in_their_windows() -> None:
    windows = [window(i, 5, None, rss_samples=0) for i in range(3)]
    start, width = 1_000, 100
    events = [(1_050, "raw_body", "Check", "INTERNAL"), (1_150, "raw_body", "Check", "INVALID_ARGUMENT"),
              (1_160, "idle_stream", "Watch, unread", "held"), (1_400, "raw_body", "Check", "INTERNAL")]
    rss = [(1_010, (100, 10)), (1_090, (120, 8)), (1_110, None), (1_250, (90, 9)), (900, (500, 50))]
    cache = [(1_020, 5.0), (1_080, 7.0), (1_120, None), (1_260, 9.0)]
    totals = report.attach(windows, start, width, events, rss, completed={0: 30, 2: 45, 3: 7}, cache=cache)
    assert totals == {"idle_stream: Watch, unread": {"held": 1}, "raw_body: Check": {"INTERNAL": 2, "INVALID_ARGUMENT": 1}}
    assert windows[0]["abuse"] == {"raw_body": {"INTERNAL": 1}}
    assert windows[1]["abuse"] == {"raw_body": {"INVALID_ARGUMENT": 1}, "idle_stream": {"held": 1}}
    assert [(w["rss_bytes"], w.get("anon_bytes"), w["rss_samples"]) for w in windows] == [(120, 10, 2), (None, None, 0), (90, 9, 1)]
    assert [w["throughput"] for w in windows] == [3e8, 0.0, 4.5e8]  # calls per second of 100 ns windows
    assert [w.get("cache_entries") for w in windows] == [7, None, 9]


def test_files_are_written_and_compare_refuses_them(tmp_path: Path) -> None:
    results: report.SoakResults = {
        "soak_format": report.SOAK_FORMAT, "command": "python -m bench soak", "argv": [],
        "machine": bench_report.machine_info(),
        "params": {"scale": "10k", "server_workers": 1, "clients": 2, "threads": 4, "windows": 4, "window_s": 1.0,
                   "warmup_windows": 1, "load": 0.8, "write_fraction": 0.01, "abuse_every_s": 1.0},
        "windows": series([5, 5, 5, 5], [100, 100, 100, 100]), "abuse": {"raw_body: Check": {"INVALID_ARGUMENT": 4}},
        "duration_seconds": 9.0,
    }
    results["verdict"] = report.judge(results["windows"], 1)
    out = report.write(results, tmp_path / "run", plot=False)
    assert json.loads((out / "soak.json").read_text())["verdict"]["passed"] is True
    md = (out / "soak.md").read_text()
    assert md.startswith("# relengine soak: PASS") and "| 4 | 16.8/s | 16.8/s | 1,000 |" in md
    assert "| raw_body: Check | INVALID_ARGUMENT 4 |" in md
    try:
        bench_report.load(out / "soak.json")
    except ValueError as exc:
        assert "not a bench results file" in str(exc)
    else:
        raise AssertionError("bench compare read a soak's results")


def test_rss_growing_with_the_stores_mapped_pages_alone_passes() -> None:
    """VmRSS counts the pages of the store's file that LMDB maps, which grow as the load
    touches more of the data: the anonymous part is judged, and both are reported."""
    windows = series([5] * 4, [100] * 4)
    for w, extra in zip(windows, (0, 0, 60, 120)):
        w["rss_bytes"] = (w["rss_bytes"] or 0) + extra * MIB
    verdict = report.judge(windows, warmup=1)
    assert verdict["passed"], verdict["reasons"]
    measured = next(c["measured"] for c in verdict["criteria"] if c["name"] == "RSS growth")
    assert "anonymous 100.0 MiB vs 100.0 MiB" in measured and "520.0 MiB vs 400.0 MiB" in measured


def test_rss_is_judged_by_the_medians_of_the_first_and_last_thirds() -> None:
    # One abusive round's spike in the last window is not growth; memory that grows in every
    # window of the last third is.
    spike = report.judge(series([5] * 10, [100, 85.8, 84.6, 86.1, 84.5, 87.4, 97.0, 87.1, 84.6, 95.8]), warmup=1)
    assert spike["passed"] and spike["rss_growth"] == round(87.1 / 85.8 - 1, 4)
    leak = report.judge(series([5] * 10, [100, 85, 85, 86, 87, 88, 89, 90, 91, 92]), warmup=1)
    assert "RSS growth" in failed(leak) and leak["rss_growth"] == round(91 / 85 - 1, 4)
    assert "median of windows 8-10 vs 2-4" in leak["reasons"][0]


def cached(rss: list[float], entries: list[int | None]) -> list[report.Window]:
    return [window(i, 5, r, warmup=i == 0, cache_entries=n) for i, (r, n) in enumerate(zip(rss, entries))]


def test_memory_is_judged_once_the_check_cache_is_full() -> None:
    # The cache filling to its bound raises memory for some windows; from the window it is full
    # in, memory that stays flat passes, and memory that still grows fails.
    rss = [60, 70, 80, 90, 100, 100, 101, 100, 100, 101]
    entries = [10_000, 30_000, 50_000, 70_000, 96_000, 100_000, 100_000, 99_000, 100_000, 100_000]
    full = report.judge(cached(rss, entries), warmup=1)
    assert full["passed"] and full["rss_growth"] == round(100.5 / 100 - 1, 4)
    growth = next(c for c in full["criteria"] if c["name"] == "RSS growth")["measured"]
    assert "from window 5, when the check cache was full: 100,000 entries" in growth
    assert "median of windows 9-10 vs 5-6" in growth
    leak = report.judge(cached([60, 70, 80, 90, 100, 104, 108, 112, 116, 120], entries), warmup=1)
    assert "RSS growth" in failed(leak)


def test_a_cache_filling_to_the_end_is_judged_with_its_growth() -> None:
    entries = [10_000 * (i + 1) for i in range(10)]
    verdict = report.judge(cached([60 + 4 * i for i in range(10)], entries), warmup=1)
    assert "RSS growth" in failed(verdict)
    assert "the check cache filled until window 10, to 100,000 entries: its growth is included; run longer" in verdict["reasons"][0]
    # Without cache samples (an older server, a failed scrape), every window after warm-up counts.
    unsampled = report.judge(cached([60, 70, 80, 90, 100, 100, 101, 100, 100, 101], [None] * 10), warmup=1)
    assert "RSS growth" in failed(unsampled)
