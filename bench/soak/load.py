"""The soak's load: client processes, each with its own ``Client``, that first measure the
server's capacity (a closed loop of Checks) and then send Checks and writes on a fixed
open-loop schedule, reporting each window of it to the parent as the window closes.

Request ``j`` of the whole schedule is due at ``start + j / rate``; process ``p`` of ``P`` sends
the requests with ``j % P == p``, shared round-robin by its sender threads. Latency runs from
the due time, so a stall is charged to every request due during it (``driver.open_loop``'s
rule). Every ``write_every``-th request of a process is a write, in the capacity run too (so
capacity is that of the load's own mix: each write moves the revision the caches are keyed
by, which costs the Checks after it); the writes cycle over a ring
of ``RING`` relationships that only the soak writes (``container:cK#reader@user:x_soakP_K``,
touched on one pass over the ring and deleted on the next), so the store stays the same size
however long the soak runs and the expected answers of the Checks never change.
"""

from __future__ import annotations

import threading
import time
import traceback
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TypedDict

if TYPE_CHECKING:
    from multiprocessing.connection import Connection

    from relengine.client import Client

RING: Final = 32  # relationships each load process writes in turn (the world has >= 50 containers)
LATE_NS: Final = 1_000_000  # a request sent more than 1 ms after its due time counts as late

Question = tuple[str, str, str, str]  # (container id, permission, "user", user id)


@dataclass(frozen=True)
class Load:
    """What every load process is given: the server, the Checks with their expected answers,
    its threads (the same number in both loops: the open loop never drives the server to more
    calls in flight than capacity was measured at), the deadline of each call, and how often
    it writes (in both loops: capacity is measured on the load's own mix)."""

    target: str
    queries: list[Question]
    expected: list[bool]
    threads: int
    timeout: float
    write_every: int  # every Nth request of a process is a write; 0: none


@dataclass(frozen=True)
class Schedule:
    """The open-loop schedule, the same for every process (``index`` aside)."""

    start_ns: int  # CLOCK_MONOTONIC (time.monotonic_ns), one clock for every process
    window_ns: int
    windows: int
    rate: float  # requests per second, all processes together
    processes: int
    give_up_ns: int  # requests not sent by the end of the last window plus this are not sent


class Part(TypedDict):
    """One process's share of one window."""

    window: int
    checks: array[int]  # latencies of the Checks answered, ns from their due times
    writes: array[int]  # latencies of the writes done
    late: int
    unsent: int  # requests given up on: the schedule had fallen too far behind
    wrong: int  # Checks answered, but not with the expected answer
    errors: dict[str, int]  # failed calls by gRPC code
    completed: dict[int, int]  # calls (of this window's) that ended, by the window they ended in


class Capacity(TypedDict):
    ops: int
    seconds: float
    wrong: int
    errors: dict[str, int]


class WriteCheck(TypedDict):
    """After the load: each ring relationship read back (fully consistent) against the last
    write that succeeded on it."""

    writes: int
    checked: int
    wrong: list[str]


def new_part(window: int) -> Part:
    return {"window": window, "checks": array("q"), "writes": array("q"), "late": 0, "unsent": 0, "wrong": 0,
            "errors": {}, "completed": {}}


def merge(into: Part, part: Part) -> None:
    into["checks"].extend(part["checks"])
    into["writes"].extend(part["writes"])
    into["late"] += part["late"]
    into["unsent"] += part["unsent"]
    into["wrong"] += part["wrong"]
    for code, n in part["errors"].items():
        into["errors"][code] = into["errors"].get(code, 0) + n
    for window, n in part["completed"].items():
        into["completed"][window] = into["completed"].get(window, 0) + n


def code_of(exc: BaseException) -> str:
    """The gRPC status name of a failed call (the client keeps the grpc error as the cause),
    else the relengine code, else the exception's type: a fault of the client is counted too."""
    import grpc

    from relengine.errors import RelEngineError

    cause = exc.__cause__
    if isinstance(cause, grpc.Call):
        return str(cause.code().name)
    if isinstance(exc, grpc.Call):
        return str(exc.code().name)
    if isinstance(exc, RelEngineError):
        return exc.code.name
    return type(exc).__name__


def ring_relationship(process: int, slot: int) -> str:
    return f"container:c{slot}#reader@user:x_soak{process}_{slot}"


# -- the process -----------------------------------------------------------------------------


def main(load: Load, index: int, conn: Connection[Any, Any]) -> None:
    """A load process: answers the parent's commands until told to stop (or the pipe closes).
    ``("capacity", seconds)`` -> ``("capacity", index, Capacity)``; ``("load", Schedule)`` ->
    a ``("window", index, Part)`` per window, then ``("done", index, WriteCheck)``; a fault
    of its own -> ``("error", index, text)``."""
    from relengine.client import NO_RETRY, Client

    try:
        # No retries: every failure is counted where it happens. One channel for all threads.
        calls = _Calls(Client(load.target, timeout=load.timeout, retry=NO_RETRY), load, index)
    except BaseException as exc:
        conn.send(("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"))
        return
    try:
        while True:
            try:
                command = conn.recv()
            except EOFError:
                return
            if command[0] == "capacity":
                conn.send(("capacity", index, _capacity(calls, load.threads, float(command[1]))))
            elif command[0] == "load":
                _Sender(calls, command[1], conn).run()
                conn.send(("done", index, calls.check_writes()))
            else:
                return
    except BaseException as exc:
        conn.send(("error", index, f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}"))
    finally:
        calls.client.close()
        conn.close()


class _Calls:
    """One process's calls: request ``i`` of its sequence is a write if ``load.write_every``
    says so, else Check ``i`` (modulo the queries) compared with its expected answer."""

    def __init__(self, client: Client, load: Load, index: int) -> None:
        from relengine import ObjectRef, SubjectRef

        self.client = client
        self.load = load
        self.index = index
        self.refs = [(ObjectRef("container", c), p, SubjectRef(t, s)) for c, p, t, s in load.queries]
        self._lock = threading.Lock()
        self._writes = 0
        self._last_write: dict[int, bool] = {}  # ring slot -> touched by the last write that succeeded

    def is_write(self, i: int) -> bool:
        every = self.load.write_every
        return every > 0 and i % every == every - 1

    def check(self, i: int) -> bool:
        """Check ``i``; whether it got the expected answer."""
        q = i % len(self.refs)
        return self.client.check(*self.refs[q]).allowed == self.load.expected[q]

    def write(self) -> None:
        """The next write of the ring: the n-th write goes to slot n % RING, a touch on even
        passes over the ring and a delete on odd ones (writes of one slot are RING writes apart,
        so they never overlap)."""
        with self._lock:
            number = self._writes
            self._writes += 1
        slot, touch = number % RING, (number // RING) % 2 == 0
        text = ring_relationship(self.index, slot)
        if touch:
            self.client.touch(text)
        else:
            self.client.delete_relationships(text)
        self._last_write[slot] = touch

    def check_writes(self) -> WriteCheck:
        from relengine import Consistency

        wrong = []
        for slot, touched in sorted(self._last_write.items()):
            text = ring_relationship(self.index, slot)
            resource, _, subject = text.partition("#reader@")
            allowed = self.client.check(resource, "read", subject, consistency=Consistency.fully_consistent()).allowed
            if allowed != touched:
                wrong.append(f"{text}: {'missing' if touched else 'still there'} after its last write")
        return {"writes": self._writes, "checked": len(self._last_write), "wrong": wrong}


def _capacity(calls: _Calls, threads: int, seconds: float) -> Capacity:
    """``threads`` threads sending the load's mix back to back for ``seconds`` from one start."""
    go = threading.Event()
    counts = [0] * threads
    wrong = [0] * threads
    errors: Counter[str] = Counter()
    lock = threading.Lock()

    def caller(k: int) -> None:
        deadline = time.monotonic() + seconds
        go.wait()
        i = k
        while time.monotonic() < deadline:
            try:
                if calls.is_write(i):
                    calls.write()
                elif not calls.check(i):
                    wrong[k] += 1
            except Exception as exc:  # counted, never fatal: the caller goes on
                with lock:
                    errors[code_of(exc)] += 1
            counts[k] += 1
            i += threads

    workers = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(threads)]
    for t in workers:
        t.start()
    started = time.monotonic()
    go.set()
    for t in workers:
        t.join()
    return {"ops": sum(counts), "seconds": round(time.monotonic() - started, 6), "wrong": sum(wrong),
            "errors": dict(errors)}


@dataclass
class _Sender:
    """One process's part of the open-loop schedule."""

    calls: _Calls
    schedule: Schedule
    conn: Connection[Any, Any]
    _parts: dict[int, Part] = field(default_factory=dict)
    _flushed: Counter[int] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self) -> None:
        s = self.schedule
        total = int(s.rate * s.windows * s.window_ns / 1e9)
        mine = max(0, (total - self.calls.index + s.processes - 1) // s.processes)
        threads = [threading.Thread(target=self._send, args=(k, mine), daemon=True) for k in range(self.calls.load.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _send(self, k: int, mine: int) -> None:
        s, calls = self.schedule, self.calls
        clock = time.monotonic_ns
        interval = 1e9 / s.rate
        give_up = s.start_ns + s.windows * s.window_ns + s.give_up_ns
        senders = calls.load.threads
        window, part = 0, new_part(0)
        for i in range(k, mine, senders):
            due = s.start_ns + int((i * s.processes + calls.index) * interval)
            w = min((due - s.start_ns) // s.window_ns, s.windows - 1)
            while window < w:
                self._flush(part)
                window += 1
                part = new_part(window)
            now = clock()
            if now > give_up:
                part["unsent"] += 1
                continue
            if now < due:
                time.sleep((due - now) / 1e9)
            elif now - due > LATE_NS:
                part["late"] += 1
            try:
                if calls.is_write(i):
                    calls.write()
                    part["writes"].append(clock() - due)
                else:
                    right = calls.check(i * s.processes + calls.index)
                    part["checks"].append(clock() - due)
                    if not right:
                        part["wrong"] += 1
            except Exception as exc:  # counted, never fatal: the schedule goes on
                code = code_of(exc)
                part["errors"][code] = part["errors"].get(code, 0) + 1
            ended = (clock() - s.start_ns) // s.window_ns
            part["completed"][ended] = part["completed"].get(ended, 0) + 1
        self._flush(part)
        for rest in range(window + 1, s.windows):
            self._flush(new_part(rest))

    def _flush(self, part: Part) -> None:
        """A sender is done with a window: the window goes to the parent once every sender is."""
        w = part["window"]
        with self._lock:
            merged = self._parts.get(w)
            if merged is None:
                self._parts[w] = merged = part
            else:
                merge(merged, part)
            self._flushed[w] += 1
            if self._flushed[w] == self.calls.load.threads:
                self.conn.send(("window", self.calls.index, self._parts.pop(w)))
