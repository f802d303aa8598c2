"""The server's thread pool: results and errors through futures, the thread bound, the most
recently idle thread first, shutdown."""

from __future__ import annotations

import threading
import time

import pytest

from relengine.server.executor import LifoThreadPool


def test_results_and_errors_come_back_through_futures() -> None:
    with LifoThreadPool(2) as pool:
        assert pool.submit(pow, 2, 10).result(timeout=5) == 1024
        failed = pool.submit(int, "not a number")
        with pytest.raises(ValueError):
            failed.result(timeout=5)
        done: list[int] = []
        pool.submit(lambda: 1).add_done_callback(lambda f: done.append(f.result()))
        deadline = time.monotonic() + 5
        while not done and time.monotonic() < deadline:
            time.sleep(0.001)
        assert done == [1]


def test_at_most_max_workers_threads() -> None:
    pool = LifoThreadPool(2)
    release = threading.Event()
    calls = [pool.submit(release.wait, 5) for _ in range(5)]
    time.sleep(0.05)
    assert pool.threads == 2 and sum(f.running() for f in calls) == 2  # the rest wait
    release.set()
    assert all(f.result(timeout=5) for f in calls) and pool.threads == 2
    pool.shutdown()


def test_calls_wait_in_order_while_every_thread_is_busy() -> None:
    pool = LifoThreadPool(1)
    release = threading.Event()
    busy = pool.submit(release.wait, 5)
    order: list[int] = []
    queued = [pool.submit(order.append, i) for i in (10, 11, 12)]
    release.set()
    for f in (busy, *queued):
        f.result(timeout=5)
    assert order == [10, 11, 12]
    pool.shutdown()


def test_the_most_recently_idle_thread_takes_the_next_call() -> None:
    pool = LifoThreadPool(8)
    gate = threading.Barrier(4)
    names = [pool.submit(lambda: (gate.wait(5), threading.current_thread().name)[1]) for _ in range(4)]
    started = {f.result(timeout=5) for f in names}
    assert pool.threads == 4 and len(started) == 4
    # One call at a time from now on: always the same (last idle) thread, the others stay parked.
    after = {pool.submit(lambda: threading.current_thread().name).result(timeout=5) for _ in range(20)}
    assert len(after) == 1 and pool.threads == 4
    pool.shutdown()


def test_shutdown_runs_what_waits_stops_the_threads_and_refuses_new_calls() -> None:
    pool = LifoThreadPool(1, thread_name_prefix="stopping")
    release = threading.Event()
    busy = pool.submit(release.wait, 5)
    waiting = pool.submit(lambda: "ran")
    stopper = threading.Thread(target=pool.shutdown)
    stopper.start()
    time.sleep(0.02)
    with pytest.raises(RuntimeError):
        pool.submit(lambda: None)
    release.set()
    stopper.join(5)
    assert not stopper.is_alive()
    assert busy.result(timeout=1) is True and waiting.result(timeout=1) == "ran"
    assert not any(t.name.startswith("stopping_") for t in threading.enumerate())


def test_shutdown_can_cancel_what_waits() -> None:
    pool = LifoThreadPool(1)
    release = threading.Event()
    busy = pool.submit(release.wait, 5)
    waiting = pool.submit(lambda: "ran")
    threading.Timer(0.05, release.set).start()
    pool.shutdown(cancel_futures=True)
    assert busy.result(timeout=1) is True and waiting.cancelled()


def test_max_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        LifoThreadPool(0)
