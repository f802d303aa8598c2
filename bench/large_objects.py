"""Scenario ``check_by_object_size``: uncached checks and bulk checks on objects of 1 to 10,000
relationships, granted and denied, each bucket of object size beside a closure floor over
py-lmdb on the same store.

The bench's worlds hold few objects above 16 relationships (where the LMDB reader stops reading
an object whole and turns to point reads and typed scans), so this scenario builds its own small
store: for each bucket (1-4, 5-16, 17-64, 65-1,000, 1,000-10,000 relationships) a few documents
whose viewers are that many users, two groups among them (each with a few members) and one
editor. A granted question asks for a user who is a member of the document's last group (the
walk reads the document's groups, then the group); a denied one for a user who is nowhere, so
the walk reads everything ``view`` names. Expected answers come from how the store was built.
"""

from __future__ import annotations

import shutil
from functools import partial
from typing import Any, Final

import lmdb

from relengine import BulkCheckResponse, CheckRequest, Engine, EngineConfig, ObjectRef, SubjectRef
from relengine.storage import keys

from . import baselines
from .dataset import open_store
from .framework import Contender, Context, Query, Timed, Workload, scenario, time_default, worst_of_buckets

SCHEMA: Final = """
definition user {}

definition group {
    relation member: user
}

definition doc {
    relation viewer: user | group#member
    relation editor: user
    permission edit = editor
    permission view = viewer + edit
}
"""

BUCKETS: Final = ((1, 4, 3), (5, 16, 12), (17, 64, 40), (65, 1000, 400), (1001, 10000, 5000))
"""(smallest, largest, the size built): relationships per document."""
DOCS_PER_BUCKET: Final = 8
GROUP_MEMBERS: Final = 4
ITEMS: Final = 200  # questions per (bucket, outcome)

Question = tuple[str, str]  # (document id, user id)


def _rows(size: int, doc: str) -> list[tuple[str, str, str, str, str, str]]:
    """``size`` relationships on ``doc``: an editor, up to two groups, and direct viewers;
    the groups' members (not counted in the document's size)."""
    rows = [("doc", doc, "editor", "user", f"{doc}-ed", "")]
    groups = [f"{doc}-g{i}" for i in range(min(2, size - 1))]
    rows += [("doc", doc, "viewer", "group", g, "member") for g in groups]
    rows += [("doc", doc, "viewer", "user", f"{doc}-v{i}", "") for i in range(size - len(rows))]
    rows += [("group", g, "member", "user", f"{g}-m{i}", "") for g in groups for i in range(GROUP_MEMBERS)]
    return rows


def _questions(bucket: int, granted: bool) -> list[Question]:
    out = []
    size = BUCKETS[bucket][2]
    for i in range(ITEMS):
        doc = f"b{bucket}d{i % DOCS_PER_BUCKET}"
        if not granted:
            out.append((doc, f"nobody{i}"))
        elif size >= 3:
            out.append((doc, f"{doc}-g1-m{i % GROUP_MEMBERS}"))  # through the last group
        else:
            out.append((doc, f"{doc}-ed"))  # too small for groups: the editor
    return out


class Floor:
    """The closures of ``view`` over py-lmdb, a read transaction per check (per bulk check in
    ``bulk``): the viewer key, the editor key, then the document's group subjects (a prefix
    scan) and each group's member key."""

    def __init__(self, env: lmdb.Environment, rel: Any) -> None:
        self._env = env
        self._rel = rel

    def check(self, q: Question) -> bool:
        txn = self._env.begin(db=self._rel)
        try:
            return self._view(txn, q)
        finally:
            txn.abort()

    def bulk(self, qs: list[Question]) -> list[bool]:
        """Every question in one read transaction, as a bulk check reads one revision."""
        txn = self._env.begin(db=self._rel)
        try:
            return [self._view(txn, q) for q in qs]
        finally:
            txn.abort()

    @staticmethod
    def _view(txn: Any, q: Question) -> bool:
        doc, user = q
        get = txn.get
        if get(keys.resource_key("doc", doc, "viewer", "user", user, "")) is not None:
            return True
        if get(keys.resource_key("doc", doc, "editor", "user", user, "")) is not None:
            return True
        prefix = keys.encode(("doc", doc, "viewer", "group"))
        cur = txn.cursor()
        if cur.set_range(prefix):
            for key in cur.iternext(values=False):
                if not key.startswith(prefix):
                    break
                group = key[len(prefix):].split(b"\x00")[0].decode()
                if get(keys.resource_key("group", group, "member", "user", user, "")) is not None:
                    return True
        return False


def _bulk(engine: Engine, items: list[CheckRequest], _query: object) -> BulkCheckResponse:
    return engine.bulk_check(items)


@scenario(
    "check_by_object_size", ["check", "bulk", "uncached", "size", "inproc"],
    "uncached Engine.check and bulk_check (cache_size=0) on documents of 1-4, 5-16, 17-64, 65-1,000 "
    "and 1,000-10,000 relationships, granted (through a group) and denied (the whole walk), each "
    "beside a closure floor over py-lmdb on the same store; a store built for it",
    quick=["10k"], full=["10k"],
)
def check_by_object_size(ctx: Context, scales: list[int]) -> Workload:
    w = Workload([], [])
    path = ctx.work_dir / "object-sizes"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    rows = [r for b, (_, _, size) in enumerate(BUCKETS) for d in range(DOCS_PER_BUCKET) for r in _rows(size, f"b{b}d{d}")]
    store = open_store(path, len(rows))
    w.cleanups += [store.close, lambda: shutil.rmtree(path, ignore_errors=True)]
    engine = Engine(store, EngineConfig(cache_size=0))
    engine.write_schema(SCHEMA)
    store.bulk_touch(rows)
    env, rel, _ = baselines._handles(store)
    floor = Floor(env, rel)
    check = engine.check
    for b, (low, high, size) in enumerate(BUCKETS):
        for granted in (True, False):
            tag = f"{low}-{high}/{'granted' if granted else 'denied'}"
            qs = _questions(b, granted)
            singles = [Query(q, granted) for q in qs]
            bulk = [Query(tuple(qs), [granted] * len(qs))]
            items = [CheckRequest(ObjectRef("doc", d), "view", SubjectRef("user", u)) for d, u in qs]
            w.contenders += [
                Contender(f"engine@{tag}", lambda q: check(ObjectRef("doc", q[0]), "view", SubjectRef("user", q[1])),
                          answer=lambda r: r.allowed, queries=singles),
                Contender(f"floor@{tag}", floor.check, baseline=True, queries=singles),
                Contender(f"engine_bulk@{tag}", partial(_bulk, engine, items), per_op=len(items),
                          answer=lambda r: [getattr(i, "allowed", i) for i in r.results], queries=bulk),
                Contender(f"floor_bulk@{tag}", lambda q: floor.bulk(list(q)), baseline=True, per_op=len(qs),
                          queries=bulk),
            ]
            w.queries += singles + bulk

    def drive(ctx: Context, wl: Workload) -> Timed:
        measurements, _ = time_default(ctx, wl)
        head = worst_of_buckets(
            measurements,
            lambda label: label.replace("engine", "floor", 1) if label.startswith("engine") else None,
            lambda label: label.startswith("engine"),
        )
        return measurements, head

    w.drive = drive
    w.params.update(buckets=[f"{lo}-{hi} (built: {size})" for lo, hi, size in BUCKETS], items=ITEMS)
    return w
