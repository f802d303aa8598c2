"""The ``threads`` scenario: ``Engine.check`` called from 1, 2, 4, 8 and 32 threads of one
process, as an application server calls it, on uniform random questions of which about half
are granted.

Python runs one thread at a time (the GIL), so threads cannot add throughput to a check that
is all Python; what they must not do is take it away (a convoy: every LMDB call lets the GIL
go, and a thread that lets it go may wait a whole switch interval, 5 ms, to get it back) or
leave some callers waiting for milliseconds. The headline is the cost per check at 8 threads
over the cost at one thread in the same run (goal: <= 1.0, p99 <= 200 us at 8 threads).

A run is one pass over 100,000 questions shared out between the threads, with no warm-up: each
question is asked once, so the default engine (a new one each run) answers from its cache only
what an earlier question of the same run left there, as a server that sees each question once.

Each rep runs every thread count and every contender in turn, so that a drift of this shared
machine weighs on all alike; the process's CPU time and context switches per check are kept
beside the wall-clock figures (``params``), as they tell a convoy from a busy machine.
"""

from __future__ import annotations

import resource
import time
from typing import TYPE_CHECKING, Final

from relengine import CheckResponse, Engine, EngineConfig, ObjectRef, SubjectRef

from . import driver
from .framework import Context, Measurement, Timed, Workload, headline, measure, scenario
from .scenarios import Q, Refs, _one, engine_contender, expected_checks, naive_contender
from .world import World

if TYPE_CHECKING:
    from relengine.storage.lmdb import LmdbStore

LEVELS: Final = (1, 2, 4, 8, 32)
QUERIES: Final = 100_000
PERMISSIONS: Final = ("read", "edit", "approve", "publish")
# The container roles that grant each permission (schemas/google_tag_manager.zed: read >
# edit > approve > publish, each also granted by account->administer).
GRANTING: Final = {
    "read": ("reader", "editor", "approver", "publisher"),
    "edit": ("editor", "approver", "publisher"),
    "approve": ("approver", "publisher"),
    "publish": ("publisher",),
}


def uniform_queries(world: World, count: int, purpose: int = 40, granted: float = 0.5) -> list[Q]:
    """(container, permission, "user", user): a uniform container, a uniform permission of
    read/edit/approve/publish and, with probability ``granted``, a user the generator knows
    to hold it (a role that grants it, or an admin of the container's account), else a
    uniform user (nearly always denied: the whole walk). Containers whose grants or account
    admins include a team are skipped: a denial walks the whole team tree there (ms), which
    deep_check and the group goals measure; here it would make the tail measure the tree,
    not the threads (the issue's uniform case has p50 17 us)."""
    rng = world.query_rng(purpose)
    out: list[Q] = []
    while len(out) < count:
        i = rng.randrange(world.shape.containers)
        grants = world.container_grants(i)
        admins = world.objects.get(("account", f"a{world.account_of[i]}"), {}).get("admin", [])
        if any(s[0] == "group" for _, s in grants) or any(s[0] == "group" for s in admins):
            continue
        permission = PERMISSIONS[rng.randrange(len(PERMISSIONS))]
        holders = [s[1] for role, s in grants if role in GRANTING[permission]] + [s[1] for s in admins]
        if holders and rng.random() < granted:
            user = holders[rng.randrange(len(holders))]
        else:
            user = f"u{rng.randrange(world.shape.users)}"
        out.append((f"c{i}", permission, "user", user))
    return out


class _Fresh:
    """An Engine with the default configuration, made anew before each run: the questions are
    mostly distinct, so mostly uncached, as in a server that sees each question once."""

    def __init__(self, store: LmdbStore) -> None:
        self.store = store
        self.engine = Engine(store)

    def renew(self) -> None:
        """A new Engine, ready but for its cache: one check of a question no run asks builds
        what a first check builds once (the group index, the schema's plan), as a server that
        has been up a while has."""
        self.engine = Engine(self.store)
        self.engine.check(ObjectRef("container", "c0"), "read", SubjectRef("user", "x_warm_up"))

    def check(self, args: Refs) -> CheckResponse:
        return self.engine.check(*args)


@scenario(
    "threads", ["check", "concurrency", "threads", "inproc"],
    "Engine.check from 1/2/4/8/32 threads of one process on uniform random questions (half granted, "
    "read/edit/approve/publish, containers without team grants): the default engine (a new cache each "
    "run: mostly misses), cache_size=0, and the naive dict evaluator; headline: cost per check at 8 "
    "threads over 1 thread (goal <= 1.0, p99 <= 200 us)",
    quick=["100k"], full=["1m"],
)
def threads(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    store = ds.open()
    w.cleanups.append(store.close)
    fresh = _Fresh(store)
    uncached = Engine(store, EngineConfig(cache_size=0))
    queries = uniform_queries(ds.world, QUERIES)
    w.queries, naive = expected_checks(ds.world, queries)
    default = engine_contender(uncached, "engine", note="default config, a new Engine (empty cache) each run")
    default.call = fresh.check
    w.contenders = [
        default,
        engine_contender(uncached, "engine_uncached", note="cache_size=0"),
        naive_contender(naive),
    ]
    profile = ctx.profile
    cpu: dict[str, list[float]] = {}
    switches: dict[str, list[float]] = {}

    def drive(ctx: Context, wl: Workload) -> Timed:
        # One pass over the questions at most, and no warm-up: the threads share the questions
        # between them and each is asked once, so that the default engine's cache (new each
        # run) answers none of them from an earlier pass or a warm-up.
        limits = driver.Limits(profile.concurrency_limits.seconds, len(wl.queries), 0.0, 0)
        items = {c.label: c.prepared(wl) for c in wl.contenders}
        runs: dict[tuple[str, int], list[driver.Run]] = {}
        for rep in range(profile.reps):
            for level in LEVELS:
                order = wl.contenders if rep % 2 == 0 else wl.contenders[::-1]
                for c in order:
                    ctx.progress(f"{c.label}: {level} threads (rep {rep + 1}/{profile.reps})")
                    fresh.renew()
                    before, t0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
                    run = driver.closed_loop_threads(c.call, items[c.label], limits, level, spread=True)
                    t1, after = time.process_time(), resource.getrusage(resource.RUSAGE_SELF)
                    runs.setdefault((c.label, level), []).append(run)
                    key = f"{c.label}@{level}"
                    cpu.setdefault(key, []).append(round((t1 - t0) * 1e6 / max(1, run.ops), 2))
                    switches.setdefault(key, []).append(
                        round((after.ru_nvcsw - before.ru_nvcsw + after.ru_nivcsw - before.ru_nivcsw) / max(1, run.ops), 3))
        out: list[Measurement] = []
        for level in LEVELS:
            for c in wl.contenders:
                out.append(measure(runs[(c.label, level)], c.label, baseline=c.baseline))

        def at(label: str, level: int) -> Measurement:
            return next(m for m in out if m["label"] == label and m["concurrency"] == level)

        wl.params["cpu_us_per_check"] = {k: sorted(v)[len(v) // 2] for k, v in cpu.items()}
        wl.params["context_switches_per_check"] = {k: sorted(v)[len(v) // 2] for k, v in switches.items()}
        wl.params["p99_us"] = {
            f"{c.label}@{level}": round(at(c.label, level).get("latency_ns", {}).get("p99", 0) / 1000, 1)
            for level in LEVELS for c in wl.contenders
        }
        others = {
            f"{label}, threads, c={level}": headline(at(label, level), at(label, 1), "ns_per_unit")
            for label in ("engine", "engine_uncached") for level in LEVELS if level > 1
        }
        others["engine vs naive_dict, c=1"] = headline(at("engine", 1), at("naive_dict", 1), "ns_per_unit")
        return out, headline(at("engine", 8), at("engine", 1), "ns_per_unit", at="threads, c=8 vs c=1",
                             throughput=others)

    w.drive = drive
    w.params.update(queries=len(queries), granted=sum(q.expected for q in w.queries), threads=list(LEVELS))
    return w
