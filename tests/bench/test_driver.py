"""The drivers' bounds, warm-up and (open loop) latency from the intended send time."""

from __future__ import annotations

import time

import pytest

from bench import driver
from bench.driver import Limits
from bench.hist import Latencies


def test_closed_loop_stops_at_max_ops_and_excludes_warm_up() -> None:
    calls = []
    run = driver.closed_loop(calls.append, [1, 2, 3], Limits(10.0, 40, 10.0, 7))
    assert run.ops == 40 and len(run.latencies) == 40
    assert len(calls) == 47


def test_closed_loop_stops_at_its_time_bound() -> None:
    run = driver.closed_loop(lambda _: time.sleep(0.002), [0], Limits(0.02, 10_000, 0.0, 0))
    assert 1 <= run.ops < 10_000


def test_throughput_mode_records_no_latencies() -> None:
    run = driver.closed_loop(lambda _: None, [0], Limits(10.0, 1000, 0.0, 0), record=False)
    assert run.ops == 1000 and len(run.latencies) == 0


def test_threads_share_the_count_bound() -> None:
    run = driver.closed_loop_threads(lambda _: None, [0, 1], Limits(10.0, 400, 0.0, 0), 4)
    assert run.ops == 400 and run.concurrency == 4 and run.driver == "threads"


def test_open_loop_charges_a_stall_to_every_request_due_during_it() -> None:
    stalled = []

    def op(_: object) -> None:
        if not stalled:
            stalled.append(True)
            time.sleep(0.05)

    # 1,000/s for 40 requests, one worker: the first call blocks 50 ms, so the ~50 requests
    # due meanwhile wait; a closed loop would record one slow call and 39 fast ones.
    run = driver.open_loop(op, [0], Limits(0.04, 40, 0.0, 0), rate=1000, workers=1)
    assert run.ops == 40
    slow = [v for v in run.latencies if v >= 10_000_000]
    assert len(slow) >= 20
    assert run.late >= 20


@pytest.mark.slow
def test_process_workers_report_back() -> None:
    run = driver.closed_loop_processes(("tests.bench.ops", "noop", ()), Limits(5.0, 200, 0.0, 0), 2)
    assert run.ops == 200 and run.driver == "processes" and len(run.latencies) == 200


def test_histogram_backends_agree() -> None:
    values = list(range(1, 10_001))
    exact = Latencies(use_hdr=False)
    exact.add(values)
    s = exact.summary()
    assert (s["p50"], s["p99"], s["max"], s["count"]) == (5000, 9900, 10_000, 10_000)
    hdr = Latencies()
    hdr.add(values)
    h = hdr.summary()
    for key in ("p50", "p90", "p99", "p999"):
        assert abs(h[key] - s[key]) <= s[key] * 0.002
