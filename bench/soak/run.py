"""``python -m bench soak``: a real server under steady load for a long time, with abusive
clients, judged on drift. See ``bench/soak/__init__.py`` for the run's steps."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Sequence

from .. import driver, grpc_mode
from .. import report as bench_report
from ..dataset import CACHE_DIR, copy_store, load
from ..framework import Progress
from ..world import BIG_ADMIN, scale_name, scale_of
from . import report
from .abuse import Abuse, Lookup, look_up
from .load import Load, Part, Schedule, WriteCheck
from .rss import memory

if TYPE_CHECKING:
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from relengine.client import Client

    from ..world import World

QUERIES: Final = 500  # account-admin walks, and as many Zipf users on random containers
START_LEAD_S: Final = 0.5  # the schedule starts this long after it is sent to the load processes
REPORT_SLACK_S: Final = 60.0  # how long past its due a load process's report may be before the soak gives up
VERIFY_DEADLINE_S: Final = 120.0  # the huge lookups checked once before the soak run to their end


@dataclass(frozen=True)
class Options:
    scale: int = 1_000_000
    seed: int = 1
    minutes: float = 10.0
    window_s: float = 60.0
    warmup: int = 1
    server_workers: int = 1
    clients: int = 2
    threads: int = 4
    capacity_s: float = 30.0  # one round of the abusive clients at the default --abuse-every
    load: float = 0.8
    write_fraction: float = 0.01
    abuse_every_s: float = 30.0
    # The huge lookups' deadline during the load: each runs until it (a lookup over the biggest
    # account takes far longer) and takes half the server's interpreter meanwhile, so with 10 s
    # two lookups halved capacity for 20 s of every 30, and an open loop at 80% of the average
    # fell seconds behind in each round. 2 s keeps them abusive and the dips short.
    lookup_deadline_s: float = 2.0
    timeout_s: float = 10.0
    stop_wait_s: float = 20.0  # serve's default grace (10 s) and room to spare
    cache_dir: Path | None = None
    out: Path | None = None
    plots: bool = True
    quiet: bool = False

    @property
    def windows(self) -> int:
        return max(1, round(self.minutes * 60 / self.window_s))

    def params(self) -> dict[str, Any]:
        return {
            "scale": scale_name(self.scale), "relationships": self.scale, "seed": self.seed, "minutes": self.minutes,
            "window_s": self.window_s, "windows": self.windows, "warmup_windows": self.warmup,
            "server_workers": self.server_workers, "clients": self.clients, "threads": self.threads,
            "capacity_s": self.capacity_s, "load": self.load,
            "write_fraction": self.write_fraction, "abuse_every_s": self.abuse_every_s,
            "lookup_deadline_s": self.lookup_deadline_s, "timeout_s": self.timeout_s, "stop_wait_s": self.stop_wait_s,
            "p99_drift_limit": report.P99_DRIFT, "rss_growth_limit": report.RSS_GROWTH,
        }


EPILOG: Final = """\
examples:
  python -m bench soak                                        10 minutes at 1m: for a change to the server
  python -m bench soak --minutes 60                           an hour: before a release
  python -m bench soak --scale 100k --minutes 2 --window 20   a short look, in 20-second windows
exit status: 0 pass, 1 fail (the reasons are printed), 2 bad arguments.
"""


def parser() -> argparse.ArgumentParser:
    from . import __doc__ as doc

    p = argparse.ArgumentParser(prog="python -m bench soak", description=doc, epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    d = Options()
    p.add_argument("--minutes", type=float, default=d.minutes, help=f"how long the load runs (default {d.minutes:g})")
    p.add_argument("--scale", default="1m", help="dataset: 10k, 100k, 1m, 10m or a number (default 1m)")
    p.add_argument("--workers", type=int, default=d.server_workers, help=f"relengine serve --workers (default {d.server_workers})")
    p.add_argument("--clients", type=int, default=d.clients, help=f"client processes (default {d.clients})")
    p.add_argument("--threads", type=int, default=d.threads,
                   help=f"threads per client process, in the capacity run and the load (default {d.threads})")
    p.add_argument("--window", type=float, default=d.window_s, metavar="SECONDS",
                   help=f"the reporting window (default {d.window_s:g}: a minute)")
    p.add_argument("--warmup", type=int, default=d.warmup, metavar="WINDOWS", help=f"windows of warm-up (default {d.warmup})")
    p.add_argument("--capacity-seconds", type=float, default=d.capacity_s, metavar="SECONDS", help=f"capacity measurement (default {d.capacity_s:g})")
    p.add_argument("--load", type=float, default=d.load, metavar="FRACTION", help=f"the open loop's rate as a fraction of capacity (default {d.load:g})")
    p.add_argument("--writes", type=float, default=d.write_fraction, metavar="FRACTION", help=f"fraction of requests that write (default {d.write_fraction:g})")
    p.add_argument("--abuse-every", type=float, default=d.abuse_every_s, metavar="SECONDS",
                   help=f"a round of abusive clients this often (default {d.abuse_every_s:g})")
    p.add_argument("--lookup-deadline", type=float, default=d.lookup_deadline_s, metavar="SECONDS",
                   help=f"deadline of the huge lookups (default {d.lookup_deadline_s:g})")
    p.add_argument("--timeout", type=float, default=d.timeout_s, metavar="SECONDS",
                   help=f"deadline of each load call (default {d.timeout_s:g})")
    p.add_argument("--stop-wait", type=float, default=d.stop_wait_s, metavar="SECONDS",
                   help=f"after the load, how long the server has to exit on SIGTERM before it is killed (default {d.stop_wait_s:g})")
    p.add_argument("--seed", type=int, default=d.seed, help="world seed (default 1)")
    p.add_argument("--out", type=Path, help="results directory (default bench/results/<timestamp>)")
    p.add_argument("--cache-dir", type=Path, help="dataset cache (default bench/.cache)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plot")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return p


def options_of(args: argparse.Namespace) -> Options:
    """Options from parsed arguments; ValueError naming the argument that is out of range."""
    o = Options(
        scale=scale_of(args.scale), seed=args.seed, minutes=args.minutes, window_s=args.window, warmup=args.warmup,
        server_workers=args.workers, clients=args.clients, threads=args.threads, capacity_s=args.capacity_seconds,
        load=args.load, write_fraction=args.writes, abuse_every_s=args.abuse_every,
        lookup_deadline_s=args.lookup_deadline, timeout_s=args.timeout, stop_wait_s=args.stop_wait, cache_dir=args.cache_dir, out=args.out,
        plots=not args.no_plots, quiet=args.quiet,
    )
    positive = {"--minutes": o.minutes, "--window": o.window_s, "--capacity-seconds": o.capacity_s, "--load": o.load,
                "--abuse-every": o.abuse_every_s, "--lookup-deadline": o.lookup_deadline_s, "--timeout": o.timeout_s, "--stop-wait": o.stop_wait_s,
                "--workers": o.server_workers, "--clients": o.clients, "--threads": o.threads}
    for name, value in positive.items():
        if not value > 0:
            raise ValueError(f"{name} must be positive, not {value:g}")
    if o.warmup < 0:
        raise ValueError(f"--warmup must be 0 or more, not {o.warmup}")
    if not 0 <= o.write_fraction <= 0.5:
        raise ValueError(f"--writes must be between 0 and 0.5, not {o.write_fraction:g}")
    if o.windows < o.warmup + 2:
        raise ValueError(
            f"--minutes {o.minutes:g} with --window {o.window_s:g} makes {o.windows} window(s): the verdict needs "
            f"the {o.warmup} warm-up window(s) and at least 2 more"
        )
    return o


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(list(argv))
    try:
        options = options_of(args)
    except ValueError as exc:
        print(f"python -m bench soak: {exc}", file=sys.stderr)
        return 2
    return run(options, list(argv))


def run(o: Options, argv: list[str]) -> int:
    """The whole soak; writes the results and returns the exit status (0 pass, 1 fail)."""
    progress = Progress(sys.stderr, enabled=not o.quiet)
    results: report.SoakResults = {
        "soak_format": report.SOAK_FORMAT,
        "command": " ".join(["python", "-m", "bench", "soak", *argv]),
        "argv": argv,
        "machine": bench_report.machine_info(),
        "params": o.params(),
        "windows": [],
        "abuse": {},
    }
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="relengine-soak-"))
    soak = _Soak(o, work, progress, results)
    checks: list[tuple[str, bool, str]] = []
    try:
        checks = soak.run()
    except BaseException as exc:  # KeyboardInterrupt too: what ran so far is still written
        results["error"] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}"
        checks.append(("the soak ran to its end", False, f"{type(exc).__name__}: {exc}"))
    finally:
        soak.close()
        shutil.rmtree(work, ignore_errors=True)
    verdict = report.judge(results["windows"], o.warmup, checks)
    results["verdict"] = verdict
    results["duration_seconds"] = round(time.perf_counter() - started, 1)
    if not verdict["passed"] and soak.log_tail:
        results.setdefault("server", {})["log_tail"] = soak.log_tail
    out_dir = o.out or bench_report.RESULTS_DIR / time.strftime("%Y%m%d-%H%M%S")
    from .. import plots

    if o.plots and not plots.available():
        print("matplotlib is not installed (pip install -e '.[bench]'): no plot", file=sys.stderr)
    report.write(results, out_dir, o.plots and plots.available())
    print(report.markdown(results))
    print(f"results: {out_dir}", file=sys.stderr)
    if verdict["passed"]:
        print("soak: PASS", file=sys.stderr)
        return 0
    print("soak: FAIL\n" + "\n".join(f"  {reason}" for reason in verdict["reasons"]), file=sys.stderr)
    return 1


@dataclass
class _Soak:
    """One soak's parts (the server, the load processes, the abusive clients, the RSS
    sampler), started by ``run`` and all stopped by ``close``, whatever happened."""

    o: Options
    work: Path
    progress: Progress
    results: report.SoakResults
    server: grpc_mode.Server | None = None
    abuse: Abuse | None = None
    log_tail: str = ""
    _procs: list[BaseProcess] = field(default_factory=list)
    _conns: list[Connection[Any, Any]] = field(default_factory=list)
    _sampling: threading.Event = field(default_factory=threading.Event)
    _sampler: threading.Thread | None = None
    _samples: list[tuple[int, tuple[int, int] | None]] = field(default_factory=list)
    _cache: list[tuple[int, float | None]] = field(default_factory=list)  # (when, check cache entries)

    def run(self) -> list[tuple[str, bool, str]]:
        """Set up, verify, measure capacity, run the load; returns the run's own checks."""
        o, progress = self.o, self.progress
        progress(f"dataset {scale_name(o.scale)}: loading")
        ds = load(o.scale, o.seed, cache_dir=o.cache_dir or CACHE_DIR, progress=progress)
        self.results["dataset"] = ds.meta
        store = copy_store(ds, self.work / "store")
        queries, expected, lookups = _questions(ds.world)
        progress(f"starting relengine serve --workers {o.server_workers}")
        self.server = server = grpc_mode.Server(store, o.server_workers, log_dir=self.work, metrics=True)
        self.results["server"] = {"workers": o.server_workers}
        client = _client(server.target, o.timeout_s)
        try:
            progress(f"verifying {len(queries)} Checks and {len(lookups)} lookups (these to their end)")
            wrong = _wrong_answers(client, queries, expected)
            if wrong:
                raise AssertionError(f"the server answered {len(wrong)} of {len(queries)} Checks wrong before the soak: {wrong[:3]}")
            for lookup in lookups:
                outcome = look_up(client, lookup, max(VERIFY_DEADLINE_S, o.lookup_deadline_s))
                if outcome != "OK":
                    raise AssertionError(f"{lookup.what}: {outcome} before the soak")
            plan = Load(server.target, queries, expected, o.threads, o.timeout_s,
                        round(1 / o.write_fraction) if o.write_fraction else 0)
            self._start_load(plan)
            rate = o.load * self._capacity(lookups)
            self.results["rate"] = round(rate, 1)
            writes = self._load(rate, lookups)
            progress("checking answers and health after the load")
            after_wrong = _wrong_answers(client, queries, expected)
            health = _health(server.target)
        finally:
            client.close()
        self.results["after"] = {"answers_checked": len(queries), "wrong": len(after_wrong), "health": health}
        stopped = server.stop(o.stop_wait_s)
        self.log_tail = server.log_tail(4000)
        self.results["server"].update(stop_seconds=stopped.seconds, exit_code=stopped.exit_code, killed=stopped.killed)
        wrong_writes = [w for each in writes for w in each["wrong"]]
        self.results["writes"] = {"sent": sum(w["writes"] for w in writes), "checked": sum(w["checked"] for w in writes),
                                  "wrong": wrong_writes[:20]}
        return [
            ("writes read back", not wrong_writes,
             f"{self.results['writes']['checked']} ring relationships read back, {len(wrong_writes)} wrong"),
            ("answers after the load", not after_wrong, f"{len(after_wrong)} of {len(queries)} Checks wrong"),
            ("health after the load", health == "SERVING", health),
            report.stopped_check(stopped, o.stop_wait_s),
        ]

    # -- load processes ----------------------------------------------------------------------

    def _start_load(self, plan: Load) -> None:
        from .load import main as load_main

        ctx = driver.process_context()
        for index in range(self.o.clients):
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=load_main, args=(plan, index, child), daemon=True, name=f"soak-load-{index}")
            proc.start()
            child.close()
            self._procs.append(proc)
            self._conns.append(parent)

    def _receive(self, timeout: float) -> list[tuple[Any, ...]]:
        """The messages ready within ``timeout`` s; raises if none came or a process failed."""
        ready = [conn for conn in self._conns if conn in wait(self._conns, timeout)]
        if not ready:
            dead = [p.name for p in self._procs if not p.is_alive()]
            raise TimeoutError(f"no report from the load processes in {timeout:.0f} s" + (f" ({', '.join(dead)} exited)" if dead else ""))
        out: list[tuple[Any, ...]] = []
        for conn in ready:
            try:
                msg = conn.recv()
            except EOFError:
                raise RuntimeError("a load process exited without reporting") from None
            if msg[0] == "error":
                raise RuntimeError(f"load process {msg[1]} failed: {msg[2]}")
            out.append(msg)
        return out

    def _abuse(self, lookups: list[Lookup]) -> Abuse:
        assert self.server is not None
        o = self.o
        return Abuse(self.server.target, o.abuse_every_s, min(0.8 * o.abuse_every_s, 20.0), o.lookup_deadline_s,
                     lookups, idle_group="t0")

    def _capacity(self, lookups: list[Lookup]) -> float:
        """The closed loop's rate with the abusive clients running beside it, as they will in the
        load: capacity is that of the soak's own conditions (a huge lookup runs for up to its
        deadline and takes its share of the server's interpreter; measured without them, 80% of
        capacity overloaded a 2-core machine)."""
        o = self.o
        self.progress(f"capacity: closed loop, {o.clients} processes x {o.threads} threads, {o.capacity_s:g} s, "
                      "abusive clients running")
        abuse = self._abuse(lookups)
        for conn in self._conns:
            conn.send(("capacity", o.capacity_s))
        abuse.start()
        got: dict[int, Any] = {}
        deadline = time.monotonic() + o.capacity_s + REPORT_SLACK_S
        try:
            while len(got) < o.clients:
                for msg in self._receive(max(1.0, deadline - time.monotonic())):
                    got[msg[1]] = msg[2]
        finally:
            abuse.stop()
        self.results["capacity_abuse_rounds"] = abuse.rounds
        ops = sum(c["ops"] for c in got.values())
        per_second = float(sum(c["ops"] / c["seconds"] for c in got.values() if c["seconds"] > 0))
        errors: dict[str, int] = {}
        for c in got.values():
            for code, n in c["errors"].items():
                errors[code] = errors.get(code, 0) + n
        wrong = sum(c["wrong"] for c in got.values())
        self.results["capacity"] = {"ops": ops, "seconds": max(c["seconds"] for c in got.values()), "wrong": wrong,
                                    "errors": errors}
        self.results["capacity_per_second"] = round(per_second, 1)
        if errors or wrong:
            raise RuntimeError(f"the capacity run failed: errors {errors}, {wrong} wrong answers")
        if ops == 0:
            raise RuntimeError("the capacity run answered no Check")
        self.progress(f"capacity {bench_report.fmt_rate(per_second)} (Checks, {o.write_fraction:.0%} writes); load at {o.load:.0%} of it")
        return per_second

    def _load(self, rate: float, lookups: list[Lookup]) -> list[WriteCheck]:
        o = self.o
        assert self.server is not None
        window_ns = int(o.window_s * 1e9)
        start = time.monotonic_ns() + int(START_LEAD_S * 1e9)
        give_up = max(window_ns, 10 * 10**9)
        schedule = Schedule(start, window_ns, o.windows, rate, o.clients, give_up)
        for conn in self._conns:
            conn.send(("load", schedule))
        self.abuse = self._abuse(lookups)
        time.sleep(max(0.0, (start - time.monotonic_ns()) / 1e9))
        self._start_sampler(min(1.0, o.window_s / 4))
        self.abuse.start()
        parts: dict[int, list[Part]] = {}
        windows: dict[int, report.Window] = {}
        done: dict[int, WriteCheck] = {}
        completed: dict[int, int] = {}
        while len(done) < o.clients:
            # A window reports once its last request is answered; the last one may be given up on.
            due = (start + (min(len(windows) + 1, o.windows)) * window_ns - time.monotonic_ns()) / 1e9
            for msg in self._receive(max(1.0, due) + give_up / 1e9 + o.timeout_s + REPORT_SLACK_S):
                if msg[0] == "window":
                    part: Part = msg[2]
                    w = part["window"]
                    for ended, n in part["completed"].items():
                        completed[ended] = completed.get(ended, 0) + n
                    parts.setdefault(w, []).append(part)
                    if len(parts[w]) == o.clients:
                        windows[w] = report.summarise(w, parts.pop(w), o.window_s, w < o.warmup)
                        self._window_done(windows[w])
                elif msg[0] == "done":
                    done[msg[1]] = msg[2]
        self.abuse.stop()
        self._sampling.set()
        ordered = [windows[w] for w in sorted(windows)]
        self.results["windows"] = ordered
        self.results["abuse"] = report.attach(ordered, start, window_ns, list(self.abuse.events), list(self._samples),
                                               completed, list(self._cache))
        self.results["abuse_rounds"] = self.abuse.rounds
        return [done[i] for i in sorted(done)]

    def _window_done(self, w: report.Window) -> None:
        sample = self._samples[-1][1] if self._samples else None
        rss = None if sample is None else sample[1]
        failures = sum(w["load_errors"].values()) + w["wrong"] + w["unsent"]
        self.progress(
            f"window {w['index'] + 1}/{self.o.windows}{' (warm-up)' if w['warmup'] else ''}: "
            f"{bench_report.fmt_rate(w['offered'])} offered, p50 {bench_report.fmt_ns(w['p50_ns'])}, "
            f"p99 {bench_report.fmt_ns(w['p99_ns'])}, anonymous RSS {'-' if rss is None else f'{rss / 2**20:.1f} MiB'}, "
            f"load failures {failures}"
        )

    def _start_sampler(self, every: float) -> None:
        assert self.server is not None
        server = self.server
        pid = server.proc.pid

        def sample() -> None:
            while True:
                self._samples.append((time.monotonic_ns(), memory(pid)))
                # The check cache fills for many minutes under this load, and a full cache of
                # 100,000 answers is some 60 MiB: the memory verdict waits for it to be full.
                self._cache.append((time.monotonic_ns(), server.metric("relengine_cache_size")))
                if self._sampling.wait(every):
                    return

        self._sampler = threading.Thread(target=sample, name="soak-rss", daemon=True)
        self._sampler.start()

    def close(self) -> None:
        """Stop everything this soak started, in reverse order; never raises."""
        if self.abuse is not None:
            self.abuse.stop()
        self._sampling.set()
        if self._sampler is not None:
            self._sampler.join(5)
        for conn in self._conns:
            try:
                conn.send(("stop",))
            except (OSError, ValueError):
                pass
        for proc in self._procs:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
        for conn in self._conns:
            conn.close()
        if self.server is not None:
            if not self.log_tail:
                try:
                    self.log_tail = self.server.log_tail(4000)
                except OSError:
                    pass
            self.server.close()


# -- questions and answers -------------------------------------------------------------------


def _questions(world: World) -> tuple[list[tuple[str, str, str, str]], list[bool], list[Lookup]]:
    """The Checks (account-admin walks and Zipf users) with their expected answers, and the
    huge lookups with theirs, from the generator's knowledge and the naive evaluator."""
    from ..naive import LazyObjects, NaiveEvaluator
    from ..scenarios import expected_checks

    queries = world.admin_path_queries(QUERIES) + world.random_queries(QUERIES)
    checked, _ = expected_checks(world, queries)
    oracle = NaiveEvaluator(LazyObjects(world))
    lookups = [
        Lookup(f"LookupResources container#publish@user:{BIG_ADMIN}", "resources", "container", "", "publish",
               f"user:{BIG_ADMIN}", frozenset(world.containers_of_account(0))),
        Lookup("LookupSubjects group:t0#member@user", "subjects", "group", "t0", "member", "user",
               frozenset(oracle.lookup_subjects("group", "t0", "member", "user"))),
    ]
    return queries, [bool(q.expected) for q in checked], lookups


def _client(target: str, timeout: float) -> Client:
    from relengine.client import NO_RETRY, Client

    return Client(target, timeout=timeout, retry=NO_RETRY)


def _wrong_answers(client: Client, queries: list[tuple[str, str, str, str]], expected: list[bool]) -> list[str]:
    wrong = []
    for (cid, perm, st, sid), answer in zip(queries, expected):
        got = client.check(f"container:{cid}", perm, f"{st}:{sid}").allowed
        if got != answer:
            wrong.append(f"container:{cid}#{perm}@{st}:{sid}: expected {answer}, got {got}")
    return wrong


def _health(target: str) -> str:
    """The server's overall health status by name, or the code of the failed health Check."""
    import grpc
    from grpc_health.v1 import health_pb2

    channel = grpc.insecure_channel(target)
    try:
        check: grpc.UnaryUnaryMultiCallable[bytes, Any] = channel.unary_unary(
            "/grpc.health.v1.Health/Check", response_deserializer=health_pb2.HealthCheckResponse.FromString)
        reply = check(b"", timeout=10)
        return str(health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status))
    except grpc.RpcError as exc:
        return str(exc.code().name) if isinstance(exc, grpc.Call) else type(exc).__name__
    finally:
        channel.close()
