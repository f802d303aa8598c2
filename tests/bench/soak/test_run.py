"""``python -m bench soak`` end to end: a real ``relengine serve`` at 10k for four windows of
1.5 s; the report's shape and what the run must show whatever the machine's speed (no load
failure, every abusive call answered and counted, the writes read back). The verdict's
drift criteria are left to the synthetic series of ``test_report``: 1.5-second windows on a
shared machine are noise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import cli, plots
from bench.soak import abuse, run


@pytest.mark.slow
def test_a_short_soak_reports_every_window(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results"
    status = cli.main([
        "soak", "--scale", "10k", "--minutes", "0.1", "--window", "1.5", "--capacity-seconds", "0.5",
        "--threads", "2", "--load", "0.2", "--abuse-every", "1", "--stop-wait", "3", "--quiet",
        "--out", str(out), "--cache-dir", str(tmp_path / "cache"),
    ])
    r = json.loads((out / "soak.json").read_text())
    assert "error" not in r, r["error"]
    assert status == (0 if r["verdict"]["passed"] else 1)
    assert r["soak_format"] == 1 and r["params"]["windows"] == 4 and r["dataset"]["relationships"] == 10_000
    assert r["capacity_per_second"] > 0 and r["rate"] == pytest.approx(0.2 * r["capacity_per_second"], rel=0.01)

    windows = r["windows"]
    assert [w["index"] for w in windows] == [0, 1, 2, 3]
    assert [w["warmup"] for w in windows] == [True, False, False, False]
    for w in windows:
        assert w["checks"] > 0 and 0 < w["p50_ns"] <= w["p99_ns"] <= w["max_ns"]
        assert w["load_errors"] == {} and w["wrong"] == 0 and w["unsent"] == 0
        assert w["rss_bytes"] > (w.get("anon_bytes") or 0) > 0 and w["rss_samples"] >= 1
        assert w["offered"] > 0 and w["throughput"] > 0
        assert w["cache_entries"] > 0  # scraped from the server's metrics
    assert 0 < sum(w["writes"] for w in windows) <= r["writes"]["sent"]  # sent: the capacity run's too
    assert r["writes"]["checked"] > 0 and r["writes"]["wrong"] == []
    assert r["after"] == {"answers_checked": 1000, "wrong": 0, "health": "SERVING"}

    # Every method got raw bodies, refused (never taken); idle streams and lookups were counted.
    raw = {what.removeprefix("raw_body: "): outcomes for what, outcomes in r["abuse"].items() if what.startswith("raw_body: ")}
    assert set(raw) == {m.path.rpartition("/")[2] for m in abuse.methods()}
    assert all("OK" not in outcomes for outcomes in raw.values())
    assert sum(n for what, o in r["abuse"].items() if what.startswith("idle_stream: ") for n in o.values()) >= 3
    lookups = [o for what, o in r["abuse"].items() if what.startswith("huge_lookup: ")]
    assert len(lookups) == 2 and all(abuse.WRONG not in o for o in lookups)

    verdict = r["verdict"]
    assert verdict["reference_window"] == 1 and verdict["last_window"] == 3
    assert [c["name"] for c in verdict["criteria"]] == [
        "p99 drift", "RSS growth", "load errors", "writes read back", "answers after the load",
        "health after the load", "server stops on SIGTERM",
    ]
    assert verdict["passed"] == all(c["ok"] for c in verdict["criteria"])
    md = (out / "soak.md").read_text()
    assert md.startswith(f"# relengine soak: {'PASS' if verdict['passed'] else 'FAIL'}")
    assert "| 1 (warm-up) |" in md and "| 4 |" in md
    assert (out / "soak.png").exists() == plots.available()
    assert "## Verdict" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--minutes", "2"], "makes 2 window(s): the verdict needs the 1 warm-up window(s) and at least 2 more"),
    (["--minutes", "1", "--window", "10", "--warmup", "5"], "makes 6 window(s)"),
    (["--load", "0"], "--load must be positive"),
    (["--writes", "0.9"], "--writes must be between 0 and 0.5"),
    (["--scale", "tiny"], "unknown scale 'tiny'"),
])
def test_bad_arguments_exit_2_naming_them(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert run.main(argv) == 2
    assert message in capsys.readouterr().err
