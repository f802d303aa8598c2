"""Verification runs before timing and stops a scenario whose answers are wrong."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bench import driver, framework
from bench.framework import (
    Contender,
    Context,
    Query,
    Scenario,
    VerificationError,
    Workload,
)

TINY = framework.Profile(
    "quick", reps=2,
    limits=driver.Limits(seconds=0.01, max_ops=50, warmup_seconds=0.0, warmup_ops=5),
    concurrency_limits=driver.Limits(seconds=0.01, max_ops=50, warmup_seconds=0.0, warmup_ops=5),
    thread_levels=(1, 2), process_levels=(), open_rate_fraction=0.5, write_ops=5,
    pairs=2, pair_limits=driver.Limits(seconds=0.01, max_ops=50, warmup_seconds=0.0, warmup_ops=5),
)


def ctx(tmp_path: Path) -> Context:
    return Context(TINY, 1, tmp_path, framework.Progress(io.StringIO(), enabled=False))


def squares(wrong_at: int | None = None) -> Workload:
    queries = [Query(i, i * i) for i in range(10)]
    if wrong_at is not None:
        queries[wrong_at] = Query(wrong_at, -1)
    return Workload(
        queries,
        [Contender("engine", lambda x: x * x), Contender("baseline", lambda x: x ** 2, baseline=True)],
    )


def test_verify_passes_right_answers() -> None:
    assert framework.verify("squares", squares()) == {"queries": 10, "answers": 20, "contenders": ["engine", "baseline"]}


def test_verify_raises_on_a_wrong_expected_answer() -> None:
    with pytest.raises(VerificationError) as info:
        framework.verify("squares", squares(wrong_at=3))
    assert info.value.contender == "engine"
    assert info.value.mismatches == [(3, -1, 9)]
    assert "1 of 10" in str(info.value)


def test_a_wrong_baseline_is_caught_too() -> None:
    w = squares()
    w.contenders[1] = Contender("baseline", lambda x: x * x + (x == 7), baseline=True)
    with pytest.raises(VerificationError) as info:
        framework.verify("squares", w)
    assert info.value.contender == "baseline"


def test_nothing_is_timed_when_verification_fails(tmp_path: Path) -> None:
    calls = []

    def setup(c: Context, scales: list[int]) -> Workload:
        w = squares(wrong_at=0)
        w.contenders[0].call = lambda x: calls.append(x) or x * x
        w.cleanups.append(lambda: calls.append("cleanup"))
        return w

    s = Scenario("wrong", ("t",), "", setup, ("10k",), ("10k",))
    result = framework.run_scenario(ctx(tmp_path), s, [10_000])
    assert result["status"] == "failed"
    assert result["reason"].startswith("verification:")
    assert calls == [*range(10), "cleanup"]  # each query verified once, nothing timed; cleanups ran
    assert "measurements" not in result


def test_a_good_scenario_is_timed_with_its_baseline(tmp_path: Path) -> None:
    s = Scenario("good", ("t",), "", lambda c, scales: squares(), ("10k",), ("10k",))
    result = framework.run_scenario(ctx(tmp_path), s, [10_000])
    assert result["status"] == "ok", result.get("reason")
    labels = [m["label"] for m in result["measurements"]]
    assert labels == ["engine", "baseline"]
    assert all(len(m["reps"]) == 2 and m["ops"] > 0 for m in result["measurements"])
    h = result["headline"]
    assert (h["subject"], h["baseline"], h["metric"]) == ("engine", "baseline", "p50_ns")
    assert h["ratio"] == pytest.approx(h["value"] / h["baseline_value"], rel=1e-3)


def test_headline_pairs_the_interleaved_reps() -> None:
    def entry(label: str, p50s: list[int], per_op: int = 1) -> dict[str, object]:
        return {"label": label, "per_op": per_op, "p50_ns": sorted(p50s)[len(p50s) // 2], "ns_per_unit": 1.0,
                "reps": [{"p50": v, "ns_per_op": 2.0 * v} for v in p50s]}

    # The machine's speed drifts: each pair runs at its own speed, the subject 10 above its partner.
    subject, base = entry("s", [110, 510, 210, 0]), entry("b", [100, 500, 200, 300])
    h = framework.headline(subject, base, "p50_ns")
    assert h["ratio_reps"] == [1.1, 1.02, 1.05]  # the rep without a p50 is left out
    assert h["diff_paired"] == 10.0
    assert h["ratio_paired"] == 1.05
    t = framework.headline(entry("s", [100, 200], per_op=2), entry("b", [100, 400]), "ns_per_unit")
    assert t["ratio_reps"] == [0.5, 0.25]  # costs per unit: the subject's calls carry two units


def test_skip_is_reported_with_its_reason(tmp_path: Path) -> None:
    def setup(c: Context, scales: list[int]) -> Workload:
        raise framework.Skip("no server here")

    result = framework.run_scenario(ctx(tmp_path), Scenario("s", (), "", setup, (), ()), [10_000])
    assert (result["status"], result["reason"]) == ("skipped", "no server here")


def test_select_and_plan() -> None:
    from bench import scenarios  # noqa: F401

    assert {s.name for s in framework.select(["uncached_c*", "deep_check"])} == {"uncached_check", "deep_check"}
    assert "bulk_check" in {s.name for s in framework.select(["uncached"])}  # a tag
    by_tag = {s.name for s in framework.select(["grpc"])}
    assert by_tag == {"grpc_check", "grpc_bulk_check", "grpc_workers", "spicedb_check", "spicedb_bulk_check"}
    assert {s.name for s in framework.select(["spicedb"])} == {"spicedb_check", "spicedb_bulk_check"}
    assert {s.name for s in framework.select(None, ["grpc"])} == by_tag
    size = framework.REGISTRY["check_vs_size"]
    assert framework.plan(size, framework.QUICK, None) == [[10_000, 100_000]]
    assert framework.plan(framework.REGISTRY["cached_check"], framework.FULL, ["10k", "1m"]) == [[10_000], [1_000_000]]


def test_a_bulk_answer_counts_each_item() -> None:
    w = Workload([Query((1, 2, 3), [1, 4, 9])], [Contender("engine", lambda xs: [x * x for x in xs])])
    assert framework.verify("bulk", w)["answers"] == 3
