"""The scenarios: each a name, tags, a data setup, and queries with expected answers (from the
generator's knowledge of the world and the naive evaluator, never from the engine), answered
by the engine and by the baselines of ``baselines``. Registered in ``framework.REGISTRY``.
"""

from __future__ import annotations

import gc
import itertools
import os
import shutil
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Final, Iterator, Literal, Sequence, TypeVar, Unpack, overload

from relengine import (
    BulkCheckResponse,
    CheckRequest,
    CheckResponse,
    CheckResult,
    Consistency,
    Engine,
    EngineConfig,
    ObjectRef,
    Operation,
    Relationship,
    RelationshipUpdate,
    Revision,
    SubjectRef,
)
from relengine.errors import RelEngineError

from . import baselines, driver, grpc_mode, spicedb_api
from .dataset import (
    Dataset,
    copy_store,
    import_lines,
    map_size_for,
    open_store,
    row_text,
    schema_text,
)
from .framework import (
    Contender,
    Context,
    Measurement,
    MeasurementExtra,
    Query,
    Skip,
    Timed,
    Workload,
    headline,
    measure,
    scenario,
    time_default,
)
from .naive import LazyObjects, NaiveEvaluator
from .world import BIG_ADMIN, Row, World, scale_name

if TYPE_CHECKING:
    from relengine.client import Client
    from relengine.storage.lmdb import LmdbStore

E = TypeVar("E")
T = TypeVar("T")
R = TypeVar("R")
W = TypeVar("W")

Q = tuple[str, str, str, str]  # (container id, permission, "user", user id)
Refs = tuple[ObjectRef, str, SubjectRef]  # a check's arguments: Engine.check(*refs)


# -- helpers ---------------------------------------------------------------------------------


def refs(q: Q) -> Refs:
    return ObjectRef("container", q[0]), q[1], SubjectRef(q[2], q[3])


def expected_checks(world: World, queries: Sequence[Q]) -> tuple[list[Query], NaiveEvaluator]:
    """Expected answers by the naive evaluator over the world's own relationships (built lazily:
    only what the queries reach), and a naive evaluator over a plain dict of exactly that."""
    lazy = LazyObjects(world)
    oracle = NaiveEvaluator(lazy)
    out = [Query(q, oracle.check("container", q[0], q[1], q[2], q[3])) for q in queries]
    return out, NaiveEvaluator(dict(lazy))


def engine_contender(engine: Engine, label: str = "engine", note: str = "") -> Contender:
    check = engine.check
    return Contender(label, lambda a: check(*a), prepare=refs, answer=lambda r: r.allowed, note=note)


def naive_contender(naive: NaiveEvaluator, label: str = "naive_dict") -> Contender:
    check = naive.check
    return Contender(label, lambda q: check("container", q[0], q[1], q[2], q[3]), baseline=True,
                     note="Python dicts, recursive evaluation, no cache")


def floor_contender(floor: baselines.LmdbFloor) -> Contender:
    return Contender("lmdb_floor", floor.check, baseline=True,
                     note="closures over py-lmdb in one read txn: read->edit->approve->publish->account->admin")


def raw_get_contender(store: LmdbStore, world: World) -> Contender:
    def final_key(q: Q) -> bytes:
        account = f"a{world.account_of[int(q[0][1:])]}"
        return baselines.resource_key("account", account, "admin", q[2], q[3])

    return Contender("raw_get", baselines.raw_get(store), baseline=True, prepare=final_key,
                     note="read txn + get of account:A#admin@user:U, the check's final read")


def open_engine(
    ctx: Context, ds: Dataset, workload: Workload, config: EngineConfig = EngineConfig()
) -> tuple[LmdbStore, Engine]:
    store = ds.open()
    workload.cleanups.append(store.close)
    return store, Engine(store, config)


def _one(scales: list[int]) -> int:
    assert len(scales) == 1
    return scales[0]


# -- checks ----------------------------------------------------------------------------------


@scenario(
    "cached_check", ["check", "cached", "inproc"],
    "Engine.check with the default cache, 1,000 queries (half account-admin paths, half Zipf users), "
    "warm cache; throughput of back-to-back calls vs the naive dict evaluator",
    quick=["100k"], full=["1m"],
)
def cached_check(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    _, engine = open_engine(ctx, ds, w)
    queries = ds.world.admin_path_queries(500) + ds.world.random_queries(500)
    w.queries, naive = expected_checks(ds.world, queries)
    w.contenders = [engine_contender(engine), naive_contender(naive)]
    w.timing = "throughput"

    def drive(ctx: Context, wl: Workload) -> Timed:
        before = engine.statistics()
        timed = time_default(ctx, wl)
        after = engine.statistics()
        hits, misses = after.cache_hits - before.cache_hits, after.cache_misses - before.cache_misses
        wl.params["cache_hit_ratio"] = round(hits / max(1, hits + misses), 4)
        return timed

    w.drive = drive
    w.params.update(queries=len(queries), allowed=sum(q.expected for q in w.queries))
    return w


CAVEAT_SCHEMA: Final = """
definition user {}

caveat within_hours(hour int, opens int, closes int) {
    hour >= opens && hour < closes
}

definition account {
    relation admin: user | user with within_hours
}

definition container {
    relation account: account
    relation reader: user
    permission read = reader + account->admin
}
"""


@scenario(
    "caveated_check", ["check", "uncached", "caveat", "inproc"],
    "Engine.check (cache_size=0) of account admins on containers where the admin grant carries a "
    "caveat (business hours, context from the request and the relationship), beside the same walk "
    "on the same data without the caveat, in one store",
    quick=["10k"], full=["10k"],
)
def caveated_check(ctx: Context, scales: list[int]) -> Workload:
    import tempfile

    from relengine.model import CaveatRef
    from relengine.storage.lmdb import LmdbStore

    w = Workload([], [])
    directory = tempfile.mkdtemp(prefix="relengine-bench-caveat-")
    store = LmdbStore(directory)
    w.cleanups += [store.close, partial(shutil.rmtree, directory, True)]
    engine = Engine(store, EngineConfig(cache_size=0))
    engine.write_schema(CAVEAT_SCHEMA)
    hours = CaveatRef("within_hours", {"opens": 9, "closes": 17})
    rels: list[Relationship] = []
    for i in range(200):
        rels.append(Relationship(ObjectRef("container", f"plain{i}"), "account", SubjectRef("account", f"p{i}")))
        rels.append(Relationship(ObjectRef("account", f"p{i}"), "admin", SubjectRef("user", f"u{i}")))
        rels.append(Relationship(ObjectRef("container", f"cav{i}"), "account", SubjectRef("account", f"c{i}")))
        rels.append(Relationship(ObjectRef("account", f"c{i}"), "admin", SubjectRef("user", f"u{i}"), hours))
    engine.import_relationships(rels)
    check = engine.check
    closed = {"hour": 20}
    assert not check(ObjectRef("container", "cav0"), "read", SubjectRef("user", "u0"), context=closed).allowed

    def call(q: tuple[ObjectRef, SubjectRef, dict[str, int] | None]) -> CheckResponse:
        return check(q[0], "read", q[1], context=q[2])

    # Query i asks whether user u{i} may read container i; both contenders must say yes: the
    # plain admin always, the caveated one because hour 10 is within 9..17 (hour 20 is not, as
    # the assertion above shows).
    w.queries = [Query(i, True) for i in range(200)]
    w.contenders = [
        Contender("engine_caveated", call, answer=lambda r: r.allowed,
                  prepare=lambda i: (ObjectRef("container", f"cav{i}"), SubjectRef("user", f"u{i}"), {"hour": 10}),
                  note="the admin relationship carries within_hours; context merged per check"),
        Contender("engine_plain", call, answer=lambda r: r.allowed, baseline=True,
                  prepare=lambda i: (ObjectRef("container", f"plain{i}"), SubjectRef("user", f"u{i}"), None),
                  note="the same walk with a plain admin relationship"),
    ]
    w.params.update(queries=200)
    return w


@scenario(
    "uncached_check", ["check", "uncached", "inproc"],
    "Engine.check with cache_size=0 for account admins on containers with no direct grant: "
    "the walk read -> edit -> approve -> publish -> account->administer -> admin",
    quick=["100k"], full=["1m"],
)
def uncached_check(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    store, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
    queries = ds.world.admin_path_queries(200)
    w.queries, naive = expected_checks(ds.world, queries)
    w.contenders = [
        engine_contender(engine),
        floor_contender(baselines.LmdbFloor(store)),
        raw_get_contender(store, ds.world),
        naive_contender(naive),
    ]
    w.params.update(queries=len(queries))
    return w


@scenario(
    "deep_check", ["check", "uncached", "deep", "inproc"],
    "Engine.check (cache_size=0) of users reaching a container only through 5-10 nested groups "
    "(as account admins, or as readers)",
    quick=["100k"], full=["1m"],
)
def deep_check(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    store, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
    walk = Engine(store, EngineConfig(cache_size=0, group_index=False))
    queries = ds.world.deep_queries()
    w.queries, naive = expected_checks(ds.world, queries)
    w.contenders = [
        engine_contender(engine), naive_contender(naive), floor_contender(baselines.LmdbFloor(store)),
        engine_contender(walk, "engine_no_group_index", note="EngineConfig(group_index=False): the plain walk"),
    ]
    w.params.update(queries=len(queries), depths=list(ds.world.shape.deep_depths))
    return w


def bulk_requests(batch: Sequence[Q]) -> list[CheckRequest]:
    return [CheckRequest(*refs(q)) for q in batch]


def bulk_answers(response: BulkCheckResponse) -> list[bool | RelEngineError]:
    """Each item's answer, or the error it raised."""
    return [r.allowed if isinstance(r, CheckResult) else r for r in response.results]


def _bulk_workload(ctx: Context, scales: list[int], items: list[Q]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    store, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
    singles, naive = expected_checks(ds.world, items)
    batch = tuple(items)
    w.queries = [Query(batch, [q.expected for q in singles])]
    floor = baselines.LmdbFloor(store)
    w.contenders = [
        Contender("engine", engine.bulk_check, per_op=len(batch), prepare=bulk_requests, answer=bulk_answers),
        Contender("lmdb_floor", floor.bulk_check, baseline=True, per_op=len(batch),
                  note="the floor's closures over every item in one read txn"),
        Contender("naive_dict", lambda b: [naive.check("container", *q) for q in b], baseline=True,
                  per_op=len(batch), note="Python dicts, recursive evaluation, no cache"),
    ]
    w.params.update(items=len(batch), allowed=sum(q.expected for q in singles))
    return w


@scenario(
    "bulk_check", ["check", "bulk", "uncached", "inproc"],
    "Engine.bulk_check of 1,000 items, cache_size=0, each an account-admin walk (as uncached_check)",
    quick=["100k"], full=["1m"],
)
def bulk_check(ctx: Context, scales: list[int]) -> Workload:
    return _bulk_workload(ctx, scales, ctx.dataset(_one(scales)).world.admin_path_queries(1000, purpose=10))


@scenario(
    "bulk_check_mixed", ["check", "bulk", "uncached", "inproc"],
    "Engine.bulk_check of 1,000 items, cache_size=0: 500 account-admin walks and 500 Zipf users on "
    "uniform containers (mostly denied: every grant, group and team tree is explored)",
    quick=["100k"], full=["1m"],
)
def bulk_check_mixed(ctx: Context, scales: list[int]) -> Workload:
    world = ctx.dataset(_one(scales)).world
    return _bulk_workload(ctx, scales, world.admin_path_queries(500, purpose=10) + world.random_queries(500, purpose=11))


# -- lookups ---------------------------------------------------------------------------------


@scenario(
    "lookup_resources", ["lookup", "inproc"],
    "Engine.lookup_resources(container, publish, user:x_bigadmin): the admin of the big account, "
    "which owns every 10th container (1,000 at 100k, 10,000 at 1M)",
    quick=["100k"], full=["1m"],
)
def lookup_resources(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    store, engine = open_engine(ctx, ds, w)
    floor = baselines.LmdbFloor(store)
    # From the generator's knowledge: x_bigadmin administers a0 and nothing else.
    w.queries = [Query(BIG_ADMIN, set(ds.world.containers_of_account(0)))]

    def engine_call(uid: str) -> set[str]:
        return {r.resource_id for r in engine.lookup_resources("container", "publish", SubjectRef("user", uid))}

    w.contenders = [
        Contender("engine", engine_call),
        Contender("lmdb_floor", lambda uid: floor_lookup_publish(floor, uid), baseline=True,
                  note="by-subject index scans: user -> groups -> admin of accounts -> their containers"),
    ]
    w.params.update(results=len(w.queries[0].expected))
    return w


def floor_lookup_publish(floor: baselines.LmdbFloor, uid: str) -> set[str]:
    """Containers where ``user:uid`` has publish, by scans of the by-subject index alone."""
    return _floor_lookup(floor, uid, ("publisher",))


def _floor_lookup(floor: baselines.LmdbFloor, uid: str, roles: tuple[str, ...]) -> set[str]:
    """Containers where ``user:uid`` holds one of ``roles`` or administers the account, by
    scans of the by-subject index alone (the groups holding the user, then each role and
    account admin of the user and of each group)."""
    txn = floor._env.begin(db=floor._sub)
    try:
        cur = txn.cursor()

        def scan(prefix: str) -> list[str]:
            raw = prefix.encode()
            out = []
            if cur.set_range(raw):
                for key in cur.iternext(values=False):
                    if not key.startswith(raw):
                        break
                    out.append(key[len(raw):-1].decode())
            return out

        subjects = [f"user\x00{uid}\x00\x00"]
        seen: set[str] = set()
        while subjects:
            s = subjects.pop()
            if s in seen:
                continue
            seen.add(s)
            subjects.extend(f"group\x00{g}\x00member\x00" for g in scan(s + "group\x00member\x00"))
        found: set[str] = set()
        for s in seen:
            for role in roles:
                found.update(scan(f"{s}container\x00{role}\x00"))
            for account in scan(s + "account\x00admin\x00"):
                found.update(scan(f"account\x00{account}\x00\x00container\x00account\x00"))
        return found
    finally:
        txn.abort()


@scenario(
    "lookup_resources_groups", ["lookup", "deep", "inproc"],
    "Engine.lookup_resources(container, read, user:x_deepK), cache_size=0, for each deep chain: the "
    "user reaches containers only through 5-10 nested groups (as an account's admin: its containers; "
    "or as one container's reader)",
    quick=["100k"], full=["1m"],
)
def lookup_resources_groups(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    world = ds.world
    w = Workload([], [])
    store, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
    floor = baselines.LmdbFloor(store)
    # From the generator's knowledge: chain K's top group administers account a(K+1) (K even)
    # or reads container c(10K+3) (K odd), and x_deepK is in nothing else.
    w.queries = [
        Query(f"x_deep{k}", set(world.containers_of_account(int(world.deep_account(k)[1:]))) if k % 2 == 0
              else {f"c{world.deep_container(k)}"})
        for k in range(len(world.shape.deep_depths))
    ]

    def engine_call(uid: str) -> set[str]:
        return {r.resource_id for r in engine.lookup_resources("container", "read", SubjectRef("user", uid))}

    w.contenders = [
        Contender("engine", engine_call),
        Contender("lmdb_floor", lambda uid: floor_lookup_read(floor, uid), baseline=True,
                  note="by-subject index scans: user -> groups -> roles, and admin of accounts -> their containers"),
    ]
    w.params.update(results=[len(q.expected) for q in w.queries], depths=list(world.shape.deep_depths))
    return w


def floor_lookup_read(floor: baselines.LmdbFloor, uid: str) -> set[str]:
    """Containers where ``user:uid`` has read, by scans of the by-subject index alone."""
    return _floor_lookup(floor, uid, ("reader", "editor", "approver", "publisher"))


@scenario(
    "lookup_subjects", ["lookup", "inproc"],
    "Engine.lookup_subjects(container, read, user) on containers of the big account, random "
    "containers and one granted through a group chain",
    quick=["100k"], full=["1m"],
)
def lookup_subjects(ctx: Context, scales: list[int]) -> Workload:
    return _lookup_subjects_workload(ctx, scales, EngineConfig())


@scenario(
    "lookup_subjects_uncached", ["lookup", "uncached", "inproc"],
    "lookup_subjects with cache_size=0: every call walks afresh (no per-revision memo of listings or "
    "sub-results), on the same containers",
    quick=["100k"], full=["1m"],
)
def lookup_subjects_uncached(ctx: Context, scales: list[int]) -> Workload:
    return _lookup_subjects_workload(ctx, scales, EngineConfig(cache_size=0))


def _lookup_subjects_workload(ctx: Context, scales: list[int], config: EngineConfig) -> Workload:
    ds = ctx.dataset(_one(scales))
    world = ds.world
    w = Workload([], [])
    _, engine = open_engine(ctx, ds, w, config)
    rng = world.query_rng(20)
    containers = ["c0", "c10", f"c{world.deep_container(1)}"] + [
        f"c{rng.randrange(world.shape.containers)}" for _ in range(5)
    ]
    lazy = LazyObjects(world)
    oracle = NaiveEvaluator(lazy)
    w.queries = [Query(c, oracle.lookup_subjects("container", c, "read", "user")) for c in containers]
    naive = NaiveEvaluator(dict(lazy))

    def engine_call(cid: str) -> set[str]:
        return {r.subject.id for r in engine.lookup_subjects(ObjectRef("container", cid), "read", "user")}

    w.contenders = [
        Contender("engine", engine_call),
        Contender("naive_dict", lambda cid: naive.lookup_subjects("container", cid, "read", "user"), baseline=True,
                  note="Python dicts, recursive set union, no cache"),
    ]
    w.params.update(results=[len(q.expected) for q in w.queries], cache_size=config.cache_size)
    return w


@scenario(
    "lookup_subjects_groups", ["lookup", "uncached", "deep", "inproc"],
    "lookup_subjects(container, read, user) with cache_size=0 on the containers the deep chains reach "
    "(5-10 nested groups: read by a chain's top group, or owned by an account a chain's top group "
    "administers)",
    quick=["100k"], full=["1m"],
)
def lookup_subjects_groups(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    world = ds.world
    w = Workload([], [])
    _, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
    containers = sorted({q[0] for q in world.deep_queries()})
    lazy = LazyObjects(world)
    oracle = NaiveEvaluator(lazy)
    w.queries = [Query(c, oracle.lookup_subjects("container", c, "read", "user")) for c in containers]
    naive = NaiveEvaluator(dict(lazy))

    def engine_call(cid: str) -> set[str]:
        return {r.subject.id for r in engine.lookup_subjects(ObjectRef("container", cid), "read", "user")}

    w.contenders = [
        Contender("engine", engine_call),
        Contender("naive_dict", lambda cid: naive.lookup_subjects("container", cid, "read", "user"), baseline=True,
                  note="Python dicts, recursive set union, no cache"),
    ]
    w.params.update(results=[len(q.expected) for q in w.queries])
    return w


# -- writes ----------------------------------------------------------------------------------


class Fresh(Sequence[T]):
    """An endless sequence whose every item is new (a relationship never written before):
    ``items[i]`` ignores ``i``. Writes must not repeat, or a TOUCH would commit nothing."""

    def __init__(self, make: Callable[[int], T]) -> None:
        self._make = make
        self._counter = itertools.count()

    def __len__(self) -> int:
        return 1 << 62

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[T]: ...
    def __getitem__(self, index: int | slice) -> T | Sequence[T]:
        if isinstance(index, slice):
            raise TypeError("a Fresh sequence has no slices: every item is made when it is read")
        return self._make(next(self._counter))


Mixed = tuple[Literal["r"], R] | tuple[Literal["w"], W]  # a read (its arguments) or a write (what it writes)


def _writer_row(world: World, prefix: str, n: int) -> Row:
    """A new reader grant for a dedicated writer user (never queried, so no answer changes)."""
    return ("container", f"c{n % world.shape.containers}", "reader", "user", f"x_{prefix}{n}", "", None, None)


def _relationship(row: Row) -> Relationship:
    return Relationship(ObjectRef(row[0], row[1]), row[2], SubjectRef(row[3], row[4]))


def _write_workload(ctx: Context, scales: list[int], batch: int) -> Workload:
    ds = ctx.dataset(_one(scales))
    world = ds.world
    w = Workload([], [])
    copy = copy_store(ds, ctx.work_dir / f"write-{batch}-{scale_name(ds.relationships)}")
    store = open_store(copy, ds.relationships)
    w.cleanups += [store.close, lambda: shutil.rmtree(copy, ignore_errors=True)]
    engine = Engine(store)
    raw_dir = copy_store(ds, ctx.work_dir / f"rawwrite-{batch}-{scale_name(ds.relationships)}")
    raw = baselines.RawWriter(raw_dir, sync=True, map_size=2 * map_size_for(ds.relationships))
    w.cleanups += [raw.close, lambda: shutil.rmtree(raw_dir, ignore_errors=True)]

    def rows(prefix: str, n: int) -> list[Row]:
        return [_writer_row(world, prefix, n * batch + k) for k in range(batch)]

    def engine_write(rels: list[Relationship]) -> Revision:
        return engine.write([RelationshipUpdate(Operation.TOUCH, r) for r in rels])

    def engine_verify(rels: list[Relationship]) -> bool:
        engine_write(rels)
        return all(
            engine.check(r.resource, r.relation, r.subject, consistency=Consistency.fully_consistent()).allowed
            for r in rels
        )

    def raw_verify(rs: list[Row]) -> bool:
        raw.write(rs)
        return all(raw.has(r) for r in rs)

    w.queries = [Query(n, True) for n in range(3)]
    w.contenders = [
        Contender("engine", engine_write, check=engine_verify, per_op=batch,
                  prepare=lambda n: [_relationship(r) for r in rows("verify", n)],
                  items=Fresh(lambda n: [_relationship(r) for r in rows("writer", n)]),
                  note=f"Engine.write of {batch} TOUCH updates (schema-validated), sync=True"),
        Contender("raw_lmdb", raw.write, check=raw_verify, baseline=True, per_op=batch,
                  prepare=lambda n: rows("rawverify", n), items=Fresh(lambda n: rows("raw", n)),
                  note="py-lmdb write txn on a copy of the store: both index keys, objects entries (read, "
                       "rewritten), changelog, commit time, state; commit, sync=True"),
    ]
    limits = ctx.profile.limits
    ops = max(10, ctx.profile.write_ops // (1 if batch == 1 else 10))
    for c in w.contenders:
        c.limits = driver.Limits(limits.seconds * 2, ops, limits.warmup_seconds, 5)
    w.params.update(batch=batch, sync=True, writes_per_rep=ops)
    return w


@scenario(
    "write_single", ["write", "inproc"],
    "Engine.write of one relationship per call (one revision each), on a copy of the dataset",
    quick=["100k"], full=["100k"],
)
def write_single(ctx: Context, scales: list[int]) -> Workload:
    return _write_workload(ctx, scales, 1)


@scenario(
    "write_batch", ["write", "inproc"],
    "Engine.write of 100 relationships per call, on a copy of the dataset",
    quick=["100k"], full=["100k"],
)
def write_batch(ctx: Context, scales: list[int]) -> Workload:
    return _write_workload(ctx, scales, 100)


GUARD_FILE = """\
guards:
  - name: two-admins
    resource: account
    permission: administer
    subject_type: user
    at_least: 2
"""


def _guarded_workload(ctx: Context, scales: list[int], batch: int, remove: bool = False) -> Workload:
    """The same writes on two copies of the dataset, one with GTM's two-administrator guard and
    one without: new account administrators (every one reaches the guarded permission), or
    with ``remove`` deletions of administrators (what can take an account below the guard, so
    the guard is evaluated before and after each). Removals delete from a pool of extra
    administrators written to both copies before anything is timed (every account keeps the
    dataset's own admins, so no write is refused), as many as the runs can use."""
    ds = ctx.dataset(_one(scales))
    world = ds.world
    w = Workload([], [])
    engines: dict[str, Engine] = {}
    for label in ("engine", "unguarded"):
        copy = copy_store(ds, ctx.work_dir / f"{label}-{batch}-{'rm-' if remove else ''}{scale_name(ds.relationships)}")
        store = open_store(copy, ds.relationships)
        w.cleanups += [store.close, partial(shutil.rmtree, copy, ignore_errors=True)]
        engines[label] = Engine(store)
    limits = ctx.profile.limits
    ops = max(10, ctx.profile.write_ops // (1 if batch == 1 else 10))
    warmup_ops = 5

    def admin(prefix: str, k: int) -> Relationship:
        return Relationship(ObjectRef("account", f"a{k % world.shape.accounts}"), "admin", SubjectRef("user", f"g_{prefix}{k}"))

    # Removals: each contender takes the next rows of its own pool (verification, warm-up, reps).
    pool = (ctx.profile.reps + 1) * (ops + warmup_ops) * batch + len(range(3)) * batch
    taken = {label: itertools.count() for label in engines}
    if remove:
        for label, engine in engines.items():
            for start in range(0, pool, 1000):
                engine.write([RelationshipUpdate(Operation.TOUCH, admin(f"pool_{label}", k))
                              for k in range(start, min(pool, start + 1000))])
    engines["engine"].write_guards(GUARD_FILE)

    def rows(label: str, prefix: str, n: int) -> list[Relationship]:
        if not remove:
            return [admin(prefix, n * batch + k) for k in range(batch)]
        first = next(taken[label]) * batch
        if first + batch > pool:
            raise RuntimeError(f"the removal pool of {pool} administrators is used up; make it larger")
        return [admin(f"pool_{label}", first + k) for k in range(batch)]

    operation = Operation.DELETE if remove else Operation.TOUCH

    def contender(label: str, baseline: bool) -> Contender:
        engine = engines[label]

        def write(rels: list[Relationship]) -> Revision:
            return engine.write([RelationshipUpdate(operation, r) for r in rels])

        def verify(rels: list[Relationship]) -> bool:
            write(rels)
            return all(engine.check(r.resource, "administer", r.subject,
                                    consistency=Consistency.fully_consistent()).allowed is not remove for r in rels)

        guard = "with the two-admins guard (evaluated before and after, in the transaction)" if not baseline else "no guard"
        what = "removals of account admins" if remove else "new account admins"
        return Contender(label, write, check=verify, baseline=baseline, per_op=batch,
                         prepare=lambda n: rows(label, f"{label}v", n), items=Fresh(lambda n: rows(label, label, n)),
                         note=f"Engine.write of {batch} {what}, {guard}, sync=True")

    w.queries = [Query(n, True) for n in range(3)]
    w.contenders = [contender("engine", False), contender("unguarded", True)]  # the first is the headline's subject
    for c in w.contenders:
        c.limits = driver.Limits(limits.seconds * 2, ops, limits.warmup_seconds, warmup_ops)
    w.params.update(batch=batch, sync=True, writes_per_rep=ops, guard="two-admins (account administer >= 2 users)",
                    operation="DELETE" if remove else "TOUCH")
    if remove:
        w.params.update(removal_pool=pool)
    return w


@scenario(
    "guarded_write_single", ["write", "guards", "inproc"],
    "Engine.write of one new account admin per call, with GTM's two-admin guard vs none (target <= 1.5x)",
    quick=["100k"], full=["100k"],
)
def guarded_write_single(ctx: Context, scales: list[int]) -> Workload:
    return _guarded_workload(ctx, scales, 1)


@scenario(
    "guarded_write_batch", ["write", "guards", "inproc"],
    "Engine.write of 100 new account admins per call, with GTM's two-admin guard vs none (target <= 1.5x)",
    quick=["100k"], full=["100k"],
)
def guarded_write_batch(ctx: Context, scales: list[int]) -> Workload:
    return _guarded_workload(ctx, scales, 100)


@scenario(
    "guarded_remove_single", ["write", "guards", "inproc"],
    "Engine.write deleting one account admin per call, with GTM's two-admin guard vs none (target <= 1.5x)",
    quick=["100k"], full=["100k"],
)
def guarded_remove_single(ctx: Context, scales: list[int]) -> Workload:
    return _guarded_workload(ctx, scales, 1, remove=True)


@scenario(
    "guarded_remove_batch", ["write", "guards", "inproc"],
    "Engine.write deleting 100 account admins (100 accounts) per call, with GTM's two-admin guard vs none "
    "(target <= 1.5x)",
    quick=["100k"], full=["100k"],
)
def guarded_remove_batch(ctx: Context, scales: list[int]) -> Workload:
    return _guarded_workload(ctx, scales, 100, remove=True)


@scenario(
    "import", ["write", "import", "inproc"],
    "bulk import of the whole world as text lines (relengine.storage.importer, schema-validated) "
    "into a new store; a call is the whole import",
    quick=["100k"], full=["1m"],
)
def import_throughput(ctx: Context, scales: list[int]) -> Workload:
    n = _one(scales)
    ds = ctx.dataset(n)  # for the world only: the import goes to fresh stores
    world = ds.world
    w = Workload([], [])
    rows = list(world.iter_rows())
    lines = [row_text(r) for r in rows]
    schema = schema_text()
    sample = world.admin_path_queries(20)
    expected, _ = expected_checks(world, sample)
    counter = itertools.count()

    def engine_import(_: object, verify: bool = False) -> bool:
        target = ctx.work_dir / f"import-{next(counter)}"
        store = open_store(target, n, sync=False)
        try:
            import_lines(store, lines, schema)
            if not verify:
                return True
            engine = Engine(store, EngineConfig(cache_size=0))
            return store.statistics().relationships == n and all(
                engine.check(*refs(q.args)).allowed == q.expected for q in expected
            )
        finally:
            store.close()
            shutil.rmtree(target, ignore_errors=True)

    def raw(_: object, verify: bool = False) -> bool:
        target = baselines.temp_dir(ctx.work_dir, "rawimport-")
        try:
            return baselines.raw_import(rows, target, map_size=max(1 << 30, n * 600)) == n
        finally:
            shutil.rmtree(target, ignore_errors=True)

    once = driver.Limits(3600.0, 1, 0.0, 0)
    w.queries = [Query(None, True)]
    w.contenders = [
        Contender("engine", engine_import, check=lambda a: engine_import(a, True), per_op=n, limits=once,
                  note="import_relationships(text lines) into a new LmdbStore(sync=False)"),
        Contender("raw_lmdb", raw, baseline=True, per_op=n, limits=once,
                  note="py-lmdb putmulti of both indexes' keys from tuples, 50k per txn, sync=False"),
    ]
    w.params.update(relationships=n)
    return w


@scenario(
    "import_1m", ["write", "import", "inproc"],
    "`relengine import` (a subprocess, durable at the end) and Engine.import_relationships of the "
    "world's lines in random order into a new store; a call is the whole import",
    quick=["100k"], full=["1m"],
)
def import_random(ctx: Context, scales: list[int]) -> Workload:
    import random
    import subprocess
    import sys

    from relengine import parse_relationship

    n = _one(scales)
    world = World(n)
    w = Workload([], [])
    rows = list(world.iter_rows())
    random.Random(7).shuffle(rows)
    lines_path = ctx.work_dir / f"random-{scale_name(n)}.txt"
    lines_path.write_text("".join(map(row_text, rows)), encoding="utf-8")
    schema_path = ctx.work_dir / "import-schema.zed"
    schema_path.write_text(schema_text(), encoding="utf-8")
    del rows
    w.cleanups.append(partial(lines_path.unlink, missing_ok=True))
    counter = itertools.count()
    src = str(Path(__file__).resolve().parents[1] / "src")

    def cli(_: object) -> bool:
        target = ctx.work_dir / f"cli-import-{next(counter)}"
        try:
            done = subprocess.run(
                [sys.executable, "-m", "relengine", "import", "--data-dir", str(target), "--schema",
                 str(schema_path), "-q", str(lines_path)],
                capture_output=True, text=True, env={**os.environ, "PYTHONPATH": src},
            )
            if done.returncode != 0:
                raise RuntimeError(done.stderr[-2000:])
            return f"imported {n:,} relationships" in done.stdout
        finally:
            shutil.rmtree(target, ignore_errors=True)

    def api(_: object) -> bool:
        target = ctx.work_dir / f"api-import-{next(counter)}"
        store = open_store(target, n, sync=False)
        try:
            engine = Engine(store, EngineConfig(cache_size=0))
            engine.write_schema(schema_text())
            with lines_path.open(encoding="utf-8") as lines:
                count, _ = engine.import_relationships(map(parse_relationship, lines))
            return count == n and store.statistics().relationships == n
        finally:
            store.close()
            shutil.rmtree(target, ignore_errors=True)

    def raw(_: object) -> bool:
        target = baselines.temp_dir(ctx.work_dir, "rawimport-")
        try:
            return baselines.raw_import_lines(lines_path, target, map_size=max(1 << 30, n * 600)) == n
        finally:
            shutil.rmtree(target, ignore_errors=True)

    once = driver.Limits(3600.0, 1, 0.0, 0)
    w.queries = [Query(None, True)]
    w.contenders = [
        Contender("engine", cli, per_op=n, limits=once,
                  note="`relengine import` of the lines in random order (schema-validated, batches of 10,000, synced at the end)"),
        Contender("engine_api", api, per_op=n, limits=once,
                  note="Engine.import_relationships(map(parse_relationship, lines)), batches of 50,000, synced at the end"),
        Contender("raw_lmdb", raw, baseline=True, per_op=n, limits=once,
                  note="the least work storing the same keys from the same lines: 50,000 lines per transaction split by one "
                       "regular expression, both indexes' keys (the store's plain encoding) sorted and put with py-lmdb "
                       "putmulti, synced at the end; no validation, objects index, changelog or revisions"),
    ]
    w.params.update(relationships=n, order="random (seed 7)")
    return w


# -- size, mixed, concurrency -----------------------------------------------------------------


@scenario(
    "check_vs_size", ["check", "uncached", "size", "inproc"],
    "uncached Engine.check p50 (the account-admin walk) at every selected dataset size, and the "
    "raw LMDB get at the same sizes; headline: p50 at the largest size over p50 at the smallest",
    quick=["10k", "100k"], full=["10k", "100k", "1m", "10m"], all_scales=True,
)
def check_vs_size(ctx: Context, scales: list[int]) -> Workload:
    w = Workload([], [])
    for n in scales:
        ds = ctx.dataset(n)
        store, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
        queries, _ = expected_checks(ds.world, ds.world.admin_path_queries(200))
        w.queries += queries
        name = scale_name(n)
        for c in (engine_contender(engine, f"engine@{name}"), _relabel(raw_get_contender(store, ds.world), f"raw_get@{name}")):
            c.queries = queries
            w.contenders.append(c)

    def drive(ctx: Context, wl: Workload) -> Timed:
        measurements, _ = time_default(ctx, wl)
        by = {m["label"]: m for m in measurements}
        small, large = scale_name(scales[0]), scale_name(scales[-1])
        head = headline(by[f"engine@{large}"], by[f"engine@{small}"], "p50_ns",
                        raw_get_ratio=round(by[f"raw_get@{large}"]["p50_ns"] / by[f"raw_get@{small}"]["p50_ns"], 4))
        for m in measurements:
            m["relationships"] = next(n for n in scales if m["label"].endswith("@" + scale_name(n)))
        return measurements, head

    w.drive = drive
    w.params.update(scales=[scale_name(n) for n in scales])
    return w


def _relabel(c: Contender, label: str) -> Contender:
    c.label = label
    return c


@scenario(
    "mixed_read_write", ["check", "cached", "write", "inproc"],
    "99% Engine.check (default cache) and 1% single writes, one caller, on a copy of the dataset: "
    "each write moves head; the answers it cannot change stay cached (engine.depends)",
    quick=["100k"], full=["1m"],
)
def mixed_read_write(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    world = ds.world
    w = Workload([], [])
    copy = copy_store(ds, ctx.work_dir / f"mixed-{scale_name(ds.relationships)}")
    store = open_store(copy, ds.relationships)
    w.cleanups += [store.close, lambda: shutil.rmtree(copy, ignore_errors=True)]
    engine = Engine(store)
    queries = world.admin_path_queries(250, purpose=30) + world.random_queries(250, purpose=31)
    w.queries, naive = expected_checks(world, queries)
    naive_objects = naive.objects
    check = engine.check
    write = engine.touch

    def engine_op(item: Mixed[Refs, Relationship]) -> CheckResponse | Revision:
        return check(*item[1]) if item[0] == "r" else write([item[1]])

    def naive_op(item: Mixed[Q, Row]) -> bool | None:
        if item[0] == "r":
            q = item[1]
            return naive.check("container", q[0], q[1], q[2], q[3])
        row = item[1]
        naive_objects.setdefault((row[0], row[1]), {}).setdefault(row[2], []).append((row[3], row[4], row[5]))
        return None

    reads_engine = [refs(q.args) for q in w.queries]
    reads_naive: list[Q] = [q.args for q in w.queries]

    def mixed(reads: list[R], make_write: Callable[[int], W]) -> Fresh[Mixed[R, W]]:
        def make(i: int) -> Mixed[R, W]:
            if i % 100 == 99:
                return ("w", make_write(i))
            return ("r", reads[i % len(reads)])
        return Fresh(make)

    w.contenders = [
        Contender("engine", engine_op, prepare=lambda q: ("r", refs(q)), answer=lambda r: r.allowed,
                  items=mixed(reads_engine, lambda i: _relationship(_writer_row(world, "mixed", i)))),
        Contender("naive_dict", naive_op, baseline=True, prepare=lambda q: ("r", q),
                  items=mixed(reads_naive, lambda i: _writer_row(world, "naivemixed", i)),
                  note="dict reads and dict appends, no cache"),
    ]
    limits = ctx.profile.limits
    for c in w.contenders:
        c.limits = driver.Limits(limits.seconds * 2, max(500, ctx.profile.write_ops * 100), limits.warmup_seconds, 200)
    before = engine.statistics()

    def drive(ctx: Context, wl: Workload) -> Timed:
        measurements, head = time_default(ctx, wl)
        after = engine.statistics()
        hits, misses = after.cache_hits - before.cache_hits, after.cache_misses - before.cache_misses
        wl.params["cache_hit_ratio"] = round(hits / max(1, hits + misses), 4)
        wl.params["revisions_written"] = after.head_revision.value - before.head_revision.value
        return measurements, head

    w.drive = drive
    w.params.update(write_fraction=0.01, sync=True)
    return w


def process_op(kind: str, path: str, relationships: int, queries: list[Q]) -> tuple[driver.Op[Refs], list[Refs]] | tuple[driver.Op[Q], list[Q]]:
    """A worker process's (op, items): its own store on the dataset, uncached engine or floor."""
    store = open_store(Path(path), relationships)
    if kind == "engine":
        engine = Engine(store, EngineConfig(cache_size=0))
        check = engine.check
        return (lambda a: check(*a)), [refs(q) for q in queries]
    floor = baselines.LmdbFloor(store)
    return floor.check, list(queries)


@scenario(
    "concurrency", ["check", "uncached", "concurrency", "inproc"],
    "uncached Engine.check (admin walk) and the LMDB floor, closed loop at 1/8/64 threads and "
    "in processes, then open loop at a fixed rate (a quarter of the 1-thread throughput, 4 sender threads)",
    quick=["100k"], full=["1m"],
)
def concurrency(ctx: Context, scales: list[int]) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    store, engine = open_engine(ctx, ds, w, EngineConfig(cache_size=0))
    queries = ds.world.admin_path_queries(200)
    w.queries, _ = expected_checks(ds.world, queries)
    floor = baselines.LmdbFloor(store)
    w.contenders = [engine_contender(engine), floor_contender(floor)]
    profile = ctx.profile

    def drive(ctx: Context, wl: Workload) -> Timed:
        limits = profile.concurrency_limits
        out: list[Measurement] = []
        items = {c.label: c.prepared(wl) for c in wl.contenders}

        def attempt(c: Contender, what: str, run: Callable[[], driver.Run]) -> driver.Run | None:
            """One configuration; its failure is recorded and does not void the others."""
            ctx.progress(f"{c.label}: {what}")
            gc.collect()  # what the last configuration left for the cyclic GC (open readers) goes now
            baselines.clear_stale_readers(store)  # and the reader slots of its dead worker processes
            try:
                return run()
            except Exception as exc:
                message = f"{type(exc).__name__}: {exc}".split("\n")[0]
                wl.params.setdefault("failures", []).append(f"{c.label}, {what}: {message}")
                return None

        def once(c: Contender, what: str, run: Callable[[], driver.Run], **extra: Unpack[MeasurementExtra]) -> None:
            result = attempt(c, what, run)
            if result is not None:
                out.append(measure([result], c.label, baseline=c.baseline, **extra))

        # Threads carry the headline: reps, engine and floor in turn, so that it has a spread.
        for level in profile.thread_levels:
            reps: dict[str, list[driver.Run] | None] = {c.label: [] for c in wl.contenders}
            for rep in range(profile.reps):
                for c in wl.contenders:
                    done = reps[c.label]
                    if done is None:
                        continue
                    run = attempt(c, f"{level} threads (rep {rep + 1}/{profile.reps})",
                                  partial(driver.closed_loop_threads, c.call, items[c.label], limits, level))
                    if run is None:
                        reps[c.label] = None
                    else:
                        done.append(run)
            for c in wl.contenders:
                runs = reps[c.label]
                if runs:
                    out.append(measure(runs, c.label, baseline=c.baseline))
        for level in profile.process_levels:
            for c in wl.contenders:
                kind = "engine" if c.label == "engine" else "floor"
                spec: driver.OpSpec = ("bench.scenarios", "process_op", (kind, str(ds.path), ds.relationships, queries))
                once(c, f"{level} processes", partial(driver.closed_loop_processes, spec, limits, level))
        one = next(m for m in out if m["label"] == "engine" and m["driver"] == "threads" and m["concurrency"] == 1)
        rate = ctx.rate or round(one["units_per_second"] * profile.open_rate_fraction)
        wl.params["open_loop_rate"] = rate
        for c in [*wl.contenders, Contender("driver_floor", lambda _: None, baseline=True, note="a no-op call")]:
            once(c, f"open loop at {rate}/s",
                 partial(driver.open_loop, c.call, items.get(c.label, [None]), limits, rate, workers=4), rate=rate)
        # Headline: engine vs floor at 8 threads (or the most threads up to 8 where both ran).
        both = [lvl for lvl in profile.thread_levels if lvl <= 8 and all(
            any(m["label"] == c.label and m["driver"] == "threads" and m["concurrency"] == lvl for m in out)
            for c in wl.contenders)]
        at = {m["label"]: m for m in out if m["driver"] == "threads" and m["concurrency"] == max(both)}
        head = headline(at["engine"], at["lmdb_floor"], "ns_per_unit", at=f"threads, c={max(both)}")
        return out, head

    w.drive = drive
    w.params.update(threads=list(profile.thread_levels), processes=list(profile.process_levels))
    return w


# -- gRPC ------------------------------------------------------------------------------------


def _grpc_ready() -> None:
    reason = grpc_mode.unavailable()
    if reason is not None:
        raise Skip(reason)


@scenario(
    "grpc_check", ["check", "cached", "grpc"],
    "Client.check against `relengine serve` (1 worker) on loopback, closed loop at 1/8/64 threads "
    "(and asyncio when the client has AsyncClient), vs a gRPC echo of the same size",
    quick=["100k"], full=["1m"], mode="grpc",
)
def grpc_check(ctx: Context, scales: list[int]) -> Workload:
    _grpc_ready()
    return _grpc_workload(ctx, scales, workers=(1,))


@scenario(
    "grpc_workers", ["check", "grpc", "concurrency"],
    "multi-worker scaling: `relengine serve --workers 1` vs `--workers 2`, 8 client processes",
    quick=["100k"], full=["1m"], mode="grpc",
)
def grpc_workers(ctx: Context, scales: list[int]) -> Workload:
    _grpc_ready()
    return _grpc_workload(ctx, scales, workers=(1, 2))


@scenario(
    "grpc_bulk_check", ["check", "bulk", "cached", "grpc"],
    "Client.bulk_check of 1,000 items (half account-admin paths, half Zipf users) against "
    "`relengine serve` (1 worker), warm cache, vs Engine.bulk_check of the same items in-process",
    quick=["100k"], full=["1m"], mode="grpc",
)
def grpc_bulk_check(ctx: Context, scales: list[int]) -> Workload:
    _grpc_ready()
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    server = grpc_mode.Server(ds.path, 1, log_dir=ctx.work_dir)
    w.cleanups.append(server.close)
    client = grpc_mode.client(server.target)
    w.cleanups.append(client.close)
    _, engine = open_engine(ctx, ds, w)
    items = ds.world.admin_path_queries(500, purpose=12) + ds.world.random_queries(500, purpose=13)
    singles, _ = expected_checks(ds.world, items)
    batch = tuple(items)
    w.queries = [Query(batch, [q.expected for q in singles])]

    w.contenders = [
        Contender("grpc_bulk", client.bulk_check, per_op=len(batch), prepare=bulk_requests, answer=bulk_answers,
                  note="one BulkCheck RPC of 1,000 items"),
        Contender("engine_bulk", engine.bulk_check, per_op=len(batch), prepare=bulk_requests, answer=bulk_answers,
                  baseline=True, note="Engine.bulk_check in-process, default cache"),
    ]
    w.params.update(items=len(batch))
    return w


def _spicedb_served(ctx: Context, scales: list[int]) -> tuple[Dataset, Workload, grpc_mode.Server, Client, object]:
    """The dataset, a workload, ``relengine serve`` (1 worker) on it, relengine's Client and
    authzed's stub of it (all closed by the workload's cleanups)."""
    _grpc_ready()
    spicedb_api.ready()
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    server = grpc_mode.Server(ds.path, 1, log_dir=ctx.work_dir)
    w.cleanups.append(server.close)
    client = grpc_mode.client(server.target)
    w.cleanups.append(client.close)
    stub, close_stub = spicedb_api.stub(server.target)
    w.cleanups.append(close_stub)
    return ds, w, server, client, stub


@scenario(
    "spicedb_check", ["check", "cached", "grpc", "spicedb"],
    "CheckPermission of SpiceDB's API through the official authzed client (SyncClient with "
    "bearer-token credentials, and its stub on a plain channel) vs relengine.v1 Check through "
    "relengine's Client, on the same `relengine serve` (1 worker), same questions, warm cache; "
    "interleaved pairs at 1 and 8 threads",
    quick=["100k"], full=["1m"], mode="grpc",
)
def spicedb_check(ctx: Context, scales: list[int]) -> Workload:
    ds, w, server, client, stub = _spicedb_served(ctx, scales)  # stub: authzed's PermissionsServiceStub
    official = spicedb_api.client(server.target)
    queries = ds.world.admin_path_queries(100) + ds.world.random_queries(100)
    w.queries, _ = expected_checks(ds.world, queries)
    w.contenders = [
        Contender("spicedb_stub", spicedb_api.check_call(stub), prepare=spicedb_api.check_request,
                  answer=spicedb_api.allowed, note="authzed's generated stub, plain channel: CheckPermission"),
        Contender("spicedb_client", spicedb_api.check_call(official), prepare=spicedb_api.check_request,
                  answer=spicedb_api.allowed, note="authzed SyncClient with bearer-token credentials"),
        Contender("relengine_check", _remote_check(client), prepare=refs, answer=lambda r: r.allowed, baseline=True,
                  note="relengine.client.Client.check: relengine.v1 Check on the same server"),
    ]
    other = spicedb_api.peer()
    if other is not None:  # SpiceDB (or any server of its API), loaded with the same world, same client
        address, key = other
        peer = spicedb_api.peer_client(address, key)
        ctx.progress(f"peer {address}: loading the {scale_name(ds.relationships)} world through WriteRelationships")
        spicedb_api.load(peer, schema_text(), ds.world.iter_rows(), ctx.progress)
        w.contenders.insert(2, Contender(
            "peer_client", spicedb_api.check_call(peer), prepare=spicedb_api.check_request, answer=spicedb_api.allowed,
            note=f"the same authzed SyncClient against ${spicedb_api.PEER_ENV} ({address})"))
    else:
        w.params["peer"] = f"none: set ${spicedb_api.PEER_ENV}=host:port (and ${spicedb_api.PEER_KEY_ENV}) to drive a SpiceDB with the same client"
    levels = (1, 8)

    def drive(ctx: Context, wl: Workload) -> Timed:
        limits = ctx.profile.pair_limits
        out: list[Measurement] = []
        prepared = {c.label: c.prepared(wl) for c in wl.contenders}
        for level in levels:
            runs: dict[str, list[driver.Run]] = {c.label: [] for c in wl.contenders}
            for rep, c in _alternating(ctx.profile.pairs, wl.contenders):
                ctx.progress(f"{c.label}: {level} threads (pair {rep + 1}/{ctx.profile.pairs})")
                runs[c.label].append(driver.closed_loop_threads(c.call, prepared[c.label], limits, level))
            for c in wl.contenders:
                out.append(measure(runs[c.label], c.label, baseline=c.baseline))

        def pick(label: str, conc: int) -> Measurement:
            return next(m for m in out if m["label"] == label and m["concurrency"] == conc)

        others = {
            "stub, threads, c=8": headline(pick("spicedb_stub", 8), pick("relengine_check", 8), "ns_per_unit"),
            "client, threads, c=1": headline(pick("spicedb_client", 1), pick("relengine_check", 1), "p50_ns"),
            "client, threads, c=8": headline(pick("spicedb_client", 8), pick("relengine_check", 8), "ns_per_unit"),
        }
        if any(c.label == "peer_client" for c in wl.contenders):  # the peer against relengine, one client
            others["peer vs relengine, client, threads, c=1"] = headline(pick("peer_client", 1), pick("spicedb_client", 1), "p50_ns")
            others["peer vs relengine, client, threads, c=8"] = headline(pick("peer_client", 8), pick("spicedb_client", 8), "ns_per_unit")
        head = headline(pick("spicedb_stub", 1), pick("relengine_check", 1), "p50_ns", at="threads, c=1", throughput=others)
        return out, head

    w.drive = drive
    w.params.update(threads=list(levels))
    return w


@scenario(
    "spicedb_bulk_check", ["check", "bulk", "cached", "grpc", "spicedb"],
    "CheckBulkPermissions of 1,000 items (half account-admin paths, half Zipf users) through the "
    "official authzed stub against `relengine serve` (1 worker), warm cache, vs relengine.v1 "
    "BulkCheck of the same items through relengine's Client",
    quick=["100k"], full=["1m"], mode="grpc",
)
def spicedb_bulk_check(ctx: Context, scales: list[int]) -> Workload:
    ds, w, _, client, stub = _spicedb_served(ctx, scales)
    items = ds.world.admin_path_queries(500, purpose=12) + ds.world.random_queries(500, purpose=13)
    singles, _ = expected_checks(ds.world, items)
    batch = tuple(items)
    w.queries = [Query(batch, [q.expected for q in singles])]
    w.contenders = [
        Contender("spicedb_bulk", spicedb_api.bulk_call(stub), per_op=len(batch), prepare=spicedb_api.bulk_request,
                  answer=spicedb_api.bulk_answers, note="one CheckBulkPermissions RPC of 1,000 items"),
        Contender("relengine_bulk", client.bulk_check, per_op=len(batch), prepare=bulk_requests, answer=bulk_answers,
                  baseline=True, note="one relengine.v1 BulkCheck RPC of the same 1,000 items"),
    ]
    w.params.update(items=len(batch))
    return w


def _remote_check(client: Client) -> Callable[[Refs], CheckResponse]:
    check = client.check
    return lambda a: check(*a)


def _alternating(pairs: int, entries: Sequence[E]) -> Iterator[tuple[int, E]]:
    """(pair, entry) for ``pairs`` rounds over ``entries``, the order reversed every other round
    (a, b, b, a, ...), so that a drift of the machine weighs on each entry alike."""
    for rep in range(pairs):
        for entry in entries if rep % 2 == 0 else entries[::-1]:
            yield rep, entry


def _check_request_size(queries: Sequence[tuple[str, str, str, str]]) -> int:
    """The median size of the queries' serialized CheckRequests."""
    from relengine.client._common import check_request_bytes

    sizes = sorted(len(check_request_bytes(ObjectRef("container", cid), perm, SubjectRef(st, sid), None, None))
                   for cid, perm, st, sid in queries)
    return sizes[len(sizes) // 2]


def _grpc_workload(ctx: Context, scales: list[int], workers: tuple[int, ...]) -> Workload:
    from .grpc_echo import EchoProcess

    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    servers = {}
    for n in workers:
        servers[n] = grpc_mode.Server(ds.path, n, log_dir=ctx.work_dir)
        w.cleanups.append(servers[n].close)
    echo = EchoProcess()
    w.cleanups.append(echo.close)
    queries = ds.world.admin_path_queries(100) + ds.world.random_queries(100)
    w.queries, _ = expected_checks(ds.world, queries)
    for n, server in servers.items():
        client = grpc_mode.client(server.target)
        if hasattr(client, "close"):
            w.cleanups.append(client.close)
        w.contenders.append(Contender(f"grpc@{n}w", _remote_check(client), prepare=refs, answer=lambda r: r.allowed))
    payload = b"\x00" * _check_request_size(queries)  # as many bytes as a serialized CheckRequest here
    echo_call = echo.client()
    w.contenders.append(Contender(
        "grpc_echo", echo_call, baseline=True, queries=[Query(payload, payload)],
        note=f"generic handler echoing {len(payload)} bytes, same grpc client stack and deadline",
    ))
    profile = ctx.profile

    def drive(ctx: Context, wl: Workload) -> Timed:
        # Many short pairs, each contender in turn and the order reversed every other pair
        # (server, echo, echo, server...): this machine's speed drifts by more than the
        # difference being measured, within seconds, so each rep is compared with its neighbour.
        limits = profile.pair_limits
        out: list[Measurement] = []
        levels = profile.thread_levels if len(workers) == 1 else (8,)
        prepared = {c.label: c.prepared(wl) for c in wl.contenders}
        for level in levels:
            runs: dict[str, list[driver.Run]] = {c.label: [] for c in wl.contenders}
            for rep, c in _alternating(profile.pairs, wl.contenders):
                ctx.progress(f"{c.label}: {level} threads (pair {rep + 1}/{profile.pairs})")
                runs[c.label].append(driver.closed_loop_threads(c.call, prepared[c.label], limits, level))
            for c in wl.contenders:
                out.append(measure(runs[c.label], c.label, baseline=c.baseline))
        specs: list[tuple[str, driver.OpSpec, bool]] = [
            *((f"grpc@{n}w", ("bench.grpc_mode", "check_op", (server.target, queries)), False) for n, server in servers.items()),
            ("grpc_echo", ("bench.grpc_mode", "echo_op", (echo.target, payload)), True),
        ]
        proc_runs: dict[str, list[driver.Run]] = {label: [] for label, _, _ in specs}
        proc_pairs = max(1, profile.pairs // 2)  # each run starts 8 processes: fewer, longer pairs
        for rep, (label, spec, _) in _alternating(proc_pairs, specs):
            ctx.progress(f"{label}: 8 client processes (pair {rep + 1}/{proc_pairs})")
            proc_runs[label].append(driver.closed_loop_processes(spec, profile.concurrency_limits, 8))
        for label, _, is_base in specs:
            out.append(measure(proc_runs[label], label, baseline=is_base))
        async_ops = grpc_mode.async_check_factory(servers[workers[0]].target, queries)
        if async_ops is not None:
            for level in levels:
                ctx.progress(f"grpc@{workers[0]}w: asyncio, {level} tasks")
                run = driver.closed_loop_asyncio(async_ops[0], async_ops[1], profile.concurrency_limits, level)
                out.append(measure([run], f"grpc@{workers[0]}w", baseline=False))

        def pick(label: str, drv: str, conc: int) -> Measurement:
            return next(m for m in out if m["label"] == label and m["driver"] == drv and m["concurrency"] == conc)

        if len(workers) > 1:
            head = headline(pick(f"grpc@{workers[-1]}w", "processes", 8), pick(f"grpc@{workers[0]}w", "processes", 8),
                            "ns_per_unit", at="8 client processes")
        else:
            # The p50 at one thread, and the throughput (cost per call) at each concurrency.
            throughput = {
                f"{drv}, c={conc}": headline(pick("grpc@1w", drv, conc), pick("grpc_echo", drv, conc), "ns_per_unit")
                for drv, conc in [("threads", level) for level in levels if level > 1] + [("processes", 8)]
            }
            head = headline(pick("grpc@1w", "threads", 1), pick("grpc_echo", "threads", 1), "p50_ns",
                            throughput=throughput)
        return out, head

    w.drive = drive
    w.params.update(workers=list(workers))
    return w


from . import group_bench, large_objects, thread_bench, zipf_groups  # noqa: E402, F401  (register ``group_write_*``, ``check_by_object_size``, ``threads``, ``zipf_groups``)
