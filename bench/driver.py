"""Load drivers: closed loop (one caller; threads; processes) and open loop (a fixed arrival
rate), each bounded in time and in count, with warm-up excluded.

Latencies are recorded as raw nanoseconds into arrays inside the loop and turned into
histograms afterwards (``hist``). In open loop each request has an intended send time on a
fixed schedule and its latency is measured from that time, not from when it was actually sent,
so a stall delays (and is charged to) every request scheduled during it: no coordinated omission.
"""

from __future__ import annotations

import importlib
import multiprocessing
import threading
import time
import traceback
from array import array
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Literal, Sequence, TypeVar

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.context import ForkServerContext, SpawnContext
    from multiprocessing.synchronize import Barrier

T = TypeVar("T")

Op = Callable[[T], object]  # what is timed: called with each item in turn, its result dropped


@dataclass(frozen=True)
class Limits:
    """Bounds of one measured run: it stops at ``seconds`` or ``max_ops``, whichever comes
    first; warm-up (not measured) likewise at ``warmup_seconds`` or ``warmup_ops``."""

    seconds: float
    max_ops: int
    warmup_seconds: float
    warmup_ops: int

    def scaled(self, factor: float) -> Limits:
        return Limits(self.seconds * factor, max(1, int(self.max_ops * factor)), self.warmup_seconds * factor, self.warmup_ops)


@dataclass
class Run:
    """What one measured run did: ``ops`` calls in ``seconds``; ``latencies`` in ns (empty for
    throughput-only runs)."""

    ops: int
    seconds: float
    latencies: array[int] = field(default_factory=lambda: array("q"))
    concurrency: int = 1
    driver: str = "closed"
    late: int = 0  # open loop: requests sent after their intended time

    @property
    def ns_per_op(self) -> float:
        return self.seconds * 1e9 / self.ops if self.ops else float("nan")

    @property
    def ops_per_second(self) -> float:
        return self.ops / self.seconds if self.seconds > 0 else float("nan")


def _warm(op: Op[T], items: Sequence[T], limits: Limits) -> None:
    deadline = time.perf_counter() + limits.warmup_seconds
    n = len(items)
    for i in range(limits.warmup_ops):
        op(items[i % n])
        if time.perf_counter() > deadline:
            break


def closed_loop(op: Op[T], items: Sequence[T], limits: Limits, *, record: bool = True, warm: bool = True) -> Run:
    """One caller, back to back, cycling through ``items``. ``record=False`` times batches only
    (for throughput of sub-microsecond calls, where per-call timing would cost as much as the call)."""
    if warm:
        _warm(op, items, limits)
    n = len(items)
    clock = time.perf_counter_ns
    started = clock()
    deadline = started + int(limits.seconds * 1e9)
    max_ops = limits.max_ops
    latencies = array("q")
    ops = 0
    if record:
        append = latencies.append
        while ops < max_ops:
            t0 = clock()
            op(items[ops % n])
            t1 = clock()
            append(t1 - t0)
            ops += 1
            if t1 > deadline:
                break
        end = clock()
    else:
        batch = max(1, min(256, n))
        while ops < max_ops:
            base = ops % n
            for j in range(min(batch, max_ops - ops)):
                op(items[(base + j) % n])
            ops += min(batch, max_ops - ops)
            if clock() > deadline:
                break
        end = clock()
    return Run(ops, (end - started) / 1e9, latencies)


def closed_loop_threads(op: Op[T], items: Sequence[T], limits: Limits, concurrency: int, *, spread: bool = False) -> Run:
    """``concurrency`` threads calling ``op`` back to back from one shared start. Thread k
    starts at item k; with ``spread``, at item k * len(items) / concurrency, so that the
    threads ask different questions (none answers another's from a cache), and it warms up
    on the items before its share, which it reaches last."""
    ready = threading.Barrier(concurrency + 1)
    go = threading.Event()
    results: list[Run | BaseException | None] = [None] * concurrency
    share = Limits(limits.seconds, max(1, limits.max_ops // concurrency), limits.warmup_seconds, limits.warmup_ops)

    def worker(k: int) -> None:
        try:
            start = (k * len(items) // concurrency if spread else k) % len(items)
            rotated = list(items[start:]) + list(items[:start])
            _warm(op, rotated[::-1] if spread else rotated, share)
            ready.wait()
            go.wait()
            results[k] = closed_loop(op, rotated, share, warm=False)
        except BaseException as exc:  # reported after join
            results[k] = exc
            try:
                ready.abort()
            except threading.BrokenBarrierError:
                pass

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    try:
        ready.wait()
    except threading.BrokenBarrierError:
        pass
    started = time.perf_counter_ns()
    go.set()
    for t in threads:
        t.join()
    end = time.perf_counter_ns()
    return _merge(results, (end - started) / 1e9, concurrency, "threads")


def _merge(results: Sequence[Run | BaseException | None], seconds: float, concurrency: int, driver: str) -> Run:
    errors = [r for r in results if isinstance(r, BaseException)]
    if errors:
        # The first worker to fail breaks the barrier for the others: raise its error.
        raise next((e for e in errors if not isinstance(e, threading.BrokenBarrierError)), errors[0])
    latencies = array("q")
    ops = 0
    for r in results:
        assert isinstance(r, Run)
        latencies.extend(r.latencies)
        ops += r.ops
    return Run(ops, seconds, latencies, concurrency, driver)


# -- processes -------------------------------------------------------------------------------

OpSpec = tuple[str, str, tuple[object, ...]]
"""(module, function, args): in a worker process, ``module.function(*args)`` returns
``(op, items)``. Everything in it must pickle; the op is built inside the worker so that each
process opens its own store (an LMDB environment must not cross a fork)."""


def build_op(spec: OpSpec) -> tuple[Op[Any], Sequence[Any]]:
    """The (op, items) the spec names; what they take is known to the named function only."""
    module, function, args = spec
    built: tuple[Op[Any], Sequence[Any]] = getattr(importlib.import_module(module), function)(*args)
    return built


_Report = tuple[Literal["ok"], int, float, bytes, int, int] | tuple[Literal["error"], str, str]
"""A worker's message: ("ok", ops, seconds, latencies as bytes, start ns, end ns), or
("error", "Type: message", traceback)."""


def _process_worker(spec: OpSpec, limits: Limits, k: int, barrier: Barrier, conn: Connection[_Report, Any]) -> None:
    try:
        op, items = build_op(spec)
        rotated = list(items[k % len(items):]) + list(items[: k % len(items)])
        _warm(op, rotated, limits)
        barrier.wait()
        started = time.monotonic_ns()  # CLOCK_MONOTONIC: one clock for every process
        run = closed_loop(op, rotated, limits, warm=False)
        conn.send(("ok", run.ops, run.seconds, run.latencies.tobytes(), started, time.monotonic_ns()))
    except BaseException as exc:
        try:
            barrier.abort()
        except Exception:
            pass
        conn.send(("error", f"{type(exc).__name__}: {exc}", traceback.format_exc(limit=6)))
    finally:
        conn.close()


_CONTEXT: ForkServerContext | SpawnContext | None = None


def process_context() -> ForkServerContext | SpawnContext:
    """A forkserver context: workers fork from a clean server process (no LMDB environment of
    ours in it), with the bench and relengine preloaded so that a worker starts in milliseconds."""
    global _CONTEXT
    if _CONTEXT is None:
        if "forkserver" in multiprocessing.get_all_start_methods():
            forkserver = multiprocessing.get_context("forkserver")
            forkserver.set_forkserver_preload(["bench.scenarios", "relengine", "lmdb"])
            _CONTEXT = forkserver
        else:
            _CONTEXT = multiprocessing.get_context("spawn")
    return _CONTEXT


def closed_loop_processes(spec: OpSpec, limits: Limits, concurrency: int, *, start_timeout: float = 120.0) -> Run:
    """``concurrency`` processes, each building its op from ``spec`` and calling it back to
    back from one shared start (a barrier); throughput counts from the first worker's start to
    the last one's end, as the workers saw them (not the time to collect their results)."""
    ctx = process_context()
    barrier = ctx.Barrier(concurrency + 1)
    share = Limits(limits.seconds, max(1, limits.max_ops // concurrency), limits.warmup_seconds, limits.warmup_ops)
    pipes: list[Connection[Any, _Report]] = []
    procs = []
    for k in range(concurrency):
        parent, child = ctx.Pipe(duplex=False)
        p = ctx.Process(target=_process_worker, args=(spec, share, k, barrier, child), daemon=True)
        p.start()
        child.close()
        pipes.append(parent)
        procs.append(p)
    try:
        try:
            barrier.wait(timeout=start_timeout)
        except threading.BrokenBarrierError:
            pass
        results: list[Run | BaseException] = []
        errors: list[tuple[str, str, str]] = []
        spans: list[tuple[int, int]] = []
        for conn in pipes:
            if not conn.poll(limits.seconds + start_timeout):
                results.append(TimeoutError("a worker process did not report in time"))
                continue
            msg = conn.recv()
            if msg[0] == "ok":
                lat = array("q")
                lat.frombytes(msg[3])
                results.append(Run(msg[1], msg[2], lat))
                spans.append((msg[4], msg[5]))
            else:
                errors.append(msg)
        if errors:
            # The first worker to fail breaks the barrier for the others: report its error.
            first = next((e for e in errors if not e[1].startswith("BrokenBarrierError")), errors[0])
            raise RuntimeError(f"{len(errors)} of {concurrency} worker processes failed: {first[1]}\n{first[2]}")
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    seconds = (max(e for _, e in spans) - min(b for b, _ in spans)) / 1e9 if spans else 0.0
    return _merge(results, seconds, concurrency, "processes")


# -- open loop -------------------------------------------------------------------------------


def open_loop(op: Op[T], items: Sequence[T], limits: Limits, rate: float, workers: int = 8) -> Run:
    """Requests at ``rate`` per second on a fixed schedule (request i due at start + i/rate),
    shared round-robin by ``workers`` threads. A worker sleeps until its next request is due,
    or sends at once if it is late; latency runs from the due time to the end of the call."""
    if rate <= 0:
        raise ValueError("open loop needs a positive rate")
    _warm(op, items, limits)
    total = max(1, min(limits.max_ops, int(rate * limits.seconds)))
    interval = 1e9 / rate
    n = len(items)
    results: list[Run | BaseException | None] = [None] * workers
    clock = time.perf_counter_ns
    start = clock() + 5_000_000  # every worker is sleeping on the schedule before the first send

    def worker(k: int) -> None:
        try:
            latencies = array("q")
            append = latencies.append
            late = 0
            ops = 0
            for i in range(k, total, workers):
                due = start + int(i * interval)
                now = clock()
                if now < due:
                    time.sleep((due - now) / 1e9)
                else:
                    late += 1
                op(items[i % n])
                append(clock() - due)
                ops += 1
            results[k] = Run(ops, 0.0, latencies, late=late)
        except BaseException as exc:
            results[k] = exc

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end = clock()
    run = _merge(results, (end - start) / 1e9, workers, "open")
    run.late = sum(r.late for r in results if isinstance(r, Run))
    return run


# -- asyncio ---------------------------------------------------------------------------------


AsyncOp = Callable[[T], Awaitable[object]]
MadeAsyncOp = AsyncOp[T] | tuple[AsyncOp[T], Callable[[], Awaitable[object]]]  # the op, or it and a close


def closed_loop_asyncio(
    make_op: Callable[[], MadeAsyncOp[T] | Coroutine[Any, Any, MadeAsyncOp[T]]], items: Sequence[T], limits: Limits,
    concurrency: int,
) -> Run:
    """``concurrency`` tasks on one event loop (a new one, in this thread), each awaiting
    ``op(item)`` back to back. ``make_op`` runs inside the loop (async clients bind to it) and
    returns the coroutine function ``op``, or ``(op, close)`` where ``close`` is awaited at the end."""
    import asyncio

    async def main() -> Run:
        made = make_op()
        if asyncio.iscoroutine(made):
            made = await made
        op, close = made if isinstance(made, tuple) else (made, None)
        n = len(items)
        for i in range(min(limits.warmup_ops, n * 2)):
            await op(items[i % n])
        clock = time.perf_counter_ns
        share = max(1, limits.max_ops // concurrency)
        started = clock()
        deadline = started + int(limits.seconds * 1e9)

        async def task(k: int) -> Run:
            latencies = array("q")
            ops = 0
            while ops < share:
                t0 = clock()
                await op(items[(k + ops) % n])
                t1 = clock()
                latencies.append(t1 - t0)
                ops += 1
                if t1 > deadline:
                    break
            return Run(ops, 0.0, latencies)

        runs = await asyncio.gather(*(task(k) for k in range(concurrency)), return_exceptions=True)
        end = clock()
        if close is not None:
            await close()
        return _merge(runs, (end - started) / 1e9, concurrency, "asyncio")

    return asyncio.run(main())
