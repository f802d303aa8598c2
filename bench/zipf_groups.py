"""Scenario ``zipf_groups``: checks through nested groups whose sizes follow Zipf's law, up to
100,000 direct members (full; 10,000 quick), granted and denied, by the number of users the
document's group holds through its subgroups.

The bench's world has small teams (4-40 members) and one chain of nested groups per deep
question; this scenario builds its own store. ``GROUPS`` groups ``z1..z64``: ``z_k`` has
``largest // k`` direct members (its own users) and is itself a member of ``z_{k//2}`` (a
binary tree: ``z1`` holds everything, about 4.7 times the largest group). Each document names
one group, drawn by Zipf (the big groups are named most), plus two users of its own. A granted
question asks for a user of the deepest group under the document's group (the walk goes down
the tree); a denied one for a user who is nowhere (the whole subtree, unless an index knows).

Contenders: the engine with the group index (the default), without it, and the naive dict
evaluator; all uncached. Expected answers come from how the store was built. Headline: the
worst engine / naive ratio over the buckets (issue goal: within 1.5x, and a member test
independent of the group's size).
"""

from __future__ import annotations

import random
import shutil
from functools import partial
from typing import Final

from relengine import CheckResponse, Engine, EngineConfig, ObjectRef, SubjectRef

from .dataset import open_store
from .framework import Contender, Context, Query, Timed, Workload, scenario, time_default, worst_of_buckets
from .naive import NaiveEvaluator, Objects

SCHEMA: Final = """
definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | group#member
    permission view = viewer
}
"""
PERMISSIONS: Final[dict[str, dict[str, tuple[tuple[str, ...], ...]]]] = {
    "user": {}, "group": {}, "doc": {"view": (("rel", "viewer"),)},
}

GROUPS: Final = 64
DOCS: Final = 400
ITEMS: Final = 100  # questions per (bucket, outcome)
BUCKETS: Final = (100, 1_000, 10_000, 100_000, 1_000_000)
"""Upper bounds of the users a document's group holds through its subgroups."""


def _children(k: int) -> list[int]:
    return [c for c in (2 * k, 2 * k + 1) if c <= GROUPS]


def _subtree(k: int) -> list[int]:
    out, stack = [], [k]
    while stack:
        g = stack.pop()
        out.append(g)
        stack.extend(_children(g))
    return out


def _deepest(k: int) -> int:
    g = k
    while _children(g):
        g = _children(g)[-1]
    return g


def build(largest: int) -> tuple[list[tuple[str, str, str, str, str, str]], dict[int, int], list[int]]:
    """The rows, the users each group holds through its subgroups, and each document's group."""
    rows: list[tuple[str, str, str, str, str, str]] = []
    size = {k: max(1, largest // k) for k in range(1, GROUPS + 1)}
    for k in range(2, GROUPS + 1):
        rows.append(("group", f"z{k // 2}", "member", "group", f"z{k}", "member"))
    for k in range(1, GROUPS + 1):
        rows += [("group", f"z{k}", "member", "user", f"z{k}u{i}", "") for i in range(size[k])]
    held = {k: sum(size[g] for g in _subtree(k)) for k in range(1, GROUPS + 1)}
    rng = random.Random(11)
    weights = [1.0 / k for k in range(1, GROUPS + 1)]
    doc_group = rng.choices(range(1, GROUPS + 1), weights, k=DOCS)
    for d, k in enumerate(doc_group):
        rows.append(("doc", f"d{d}", "viewer", "group", f"z{k}", "member"))
        rows += [("doc", f"d{d}", "viewer", "user", f"d{d}u{i}", "") for i in range(2)]
    return rows, held, doc_group


def _check(engine: Engine, q: tuple[str, str]) -> CheckResponse:
    return engine.check(ObjectRef("doc", q[0]), "view", SubjectRef("user", q[1]))


def naive_objects(rows: list[tuple[str, str, str, str, str, str]]) -> Objects:
    objects: Objects = {}
    for rtype, rid, relation, stype, sid, srel in rows:
        objects.setdefault((rtype, rid), {}).setdefault(relation, []).append((stype, sid, srel))
    return objects


@scenario(
    "zipf_groups", ["check", "groups", "uncached", "inproc"],
    "uncached Engine.check through nested groups of Zipf-skewed sizes (up to 100,000 direct "
    "members, 64 groups in a tree), granted (a user of the deepest group under the document's) "
    "and denied, by the users the document's group holds; with and without the group index, "
    "beside the naive dict evaluator; a store built for it",
    quick=["10k"], full=["100k"],
)
def zipf_groups(ctx: Context, scales: list[int]) -> Workload:
    largest = max(scales)
    w = Workload([], [])
    rows, held, doc_group = build(largest)
    path = ctx.work_dir / "zipf-groups"
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    store = open_store(path, len(rows))
    w.cleanups += [store.close, lambda: shutil.rmtree(path, ignore_errors=True)]
    indexed = Engine(store, EngineConfig(cache_size=0))
    plain = Engine(store, EngineConfig(cache_size=0, group_index=False))
    indexed.write_schema(SCHEMA)
    for start in range(0, len(rows), 100_000):
        store.bulk_touch(rows[start:start + 100_000])
    naive = NaiveEvaluator(naive_objects(rows), PERMISSIONS)
    buckets: dict[int, list[int]] = {}
    for d, k in enumerate(doc_group):
        bound = next(b for b in BUCKETS if held[k] <= b)
        buckets.setdefault(bound, []).append(d)
    low = 0
    for bound in BUCKETS:
        docs = buckets.get(bound)
        if docs is None:
            low = bound + 1
            continue
        for granted in (True, False):
            tag = f"{low}-{bound}/{'granted' if granted else 'denied'}"
            qs: list[tuple[str, str]] = []
            for i in range(ITEMS):
                d = docs[i % len(docs)]
                deep = _deepest(doc_group[d])
                qs.append((f"d{d}", f"z{deep}u{i % max(1, largest // deep)}" if granted else f"nobody{i}"))
            queries = [Query(q, granted) for q in qs]
            for label, engine in (("engine", indexed), ("engine_no_group_index", plain)):
                w.contenders.append(Contender(
                    f"{label}@{tag}", partial(_check, engine), answer=lambda r: r.allowed, queries=queries,
                ))
            w.contenders.append(Contender(
                f"naive_dict@{tag}", lambda q: naive.check("doc", q[0], "view", "user", q[1]), baseline=True,
                queries=queries,
            ))
            w.queries += queries
        low = bound + 1

    def drive(ctx: Context, wl: Workload) -> Timed:
        measurements, _ = time_default(ctx, wl)
        head = worst_of_buckets(
            measurements,
            lambda label: None if label.startswith("naive") else "naive_dict@" + label.split("@", 1)[1],
            lambda label: label.startswith("engine@"),
        )
        return measurements, head

    w.drive = drive
    w.params.update(
        largest_group=largest, groups=GROUPS, documents=DOCS, relationships=len(rows), items=ITEMS,
        buckets={f"<= {b:,}": len(buckets.get(b, [])) for b in BUCKETS},
    )
    return w
