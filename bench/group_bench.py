"""What the group index (``relengine.engine.groups``) costs a write: ``group_write_member`` and
``group_write_subgroup`` time ``Engine.write`` of one relationship into a group nested under
many others, with the index (built before timing) and without it (``group_index=False``), each
on its own copy of the dataset.

The hub: ``group:x_hub`` is a member of ``FAN_IN`` groups ``x_up*``, each a member of
``x_top``, itself at the bottom of a chain of ``CHAIN`` groups ``x_c*``: about 1,000 groups
reach the hub. A new member of the hub costs the index one set insertion; a new subgroup of
the hub adds it to the reach of every one of those groups.
"""

from __future__ import annotations

import shutil
from functools import partial
from typing import Final

from relengine import Engine, EngineConfig
from relengine.model import Consistency, ObjectRef, Relationship, Revision, SubjectRef
from relengine.results import Operation, RelationshipUpdate

from . import driver
from .dataset import copy_store, open_store
from .framework import Context, Contender, Query, Workload, scenario
from .scenarios import Fresh, _one
from .world import scale_name

FAN_IN: Final = 1000
CHAIN: Final = 10


def _member(group: str, subject: SubjectRef) -> Relationship:
    return Relationship(ObjectRef("group", group), "member", subject)


def hub_rows() -> list[Relationship]:
    """The hub's ancestry (see the module docstring)."""
    rows = [_member(f"x_up{i}", SubjectRef("group", "x_hub", "member")) for i in range(FAN_IN)]
    rows += [_member("x_top", SubjectRef("group", f"x_up{i}", "member")) for i in range(FAN_IN)]
    rows.append(_member(f"x_c{CHAIN - 1}", SubjectRef("group", "x_top", "member")))
    rows += [_member(f"x_c{j}", SubjectRef("group", f"x_c{j + 1}", "member")) for j in range(CHAIN - 1)]
    return rows


def _workload(ctx: Context, scales: list[int], kind: str) -> Workload:
    ds = ctx.dataset(_one(scales))
    w = Workload([], [])
    engines: dict[str, Engine] = {}
    for label, indexed in (("engine", True), ("engine_no_group_index", False)):
        copy = copy_store(ds, ctx.work_dir / f"group-{kind}-{label}-{scale_name(ds.relationships)}")
        store = open_store(copy, ds.relationships, sync=False)  # no fsync: the index's own cost shows
        w.cleanups += [store.close, partial(shutil.rmtree, copy, ignore_errors=True)]
        engine = engines[label] = Engine(store, EngineConfig(group_index=indexed))
        engine.import_relationships(hub_rows())
        # Build the index before anything is timed (the first check at a revision does).
        engine.check(ObjectRef("group", "x_c0"), "member", SubjectRef("user", "x_nobody"))

    def row(prefix: str, n: int) -> Relationship:
        if kind == "member":
            return _member("x_hub", SubjectRef("user", f"x_{prefix}{n}"))
        return _member("x_hub", SubjectRef("group", f"x_{prefix}{n}", "member"))

    def contender(label: str, baseline: bool) -> Contender:
        engine = engines[label]

        def write(rel: Relationship) -> Revision:
            return engine.write([RelationshipUpdate(Operation.TOUCH, rel)])

        def verify(rel: Relationship) -> bool:
            write(rel)
            return engine.check(ObjectRef("group", "x_c0"), "member", rel.subject,
                                consistency=Consistency.fully_consistent()).allowed

        index = "with the group index (maintained in the write)" if not baseline else "group_index=False"
        return Contender(label, write, check=verify, baseline=baseline,
                         prepare=lambda n: row(f"{label}v", n), items=Fresh(lambda n: row(label, n)),
                         note=f"Engine.write of one new {kind} of a group {FAN_IN + CHAIN + 1} groups reach, {index}, sync=False")

    w.queries = [Query(n, True) for n in range(3)]
    w.contenders = [contender("engine", False), contender("engine_no_group_index", True)]
    limits = ctx.profile.limits
    ops = max(10, ctx.profile.write_ops)
    for c in w.contenders:
        c.limits = driver.Limits(limits.seconds * 2, ops, limits.warmup_seconds, 5)
    w.params.update(fan_in=FAN_IN, chain=CHAIN, sync=False, writes_per_rep=ops)
    return w


@scenario(
    "group_write_member", ["write", "groups", "inproc"],
    "Engine.write of one new user into a group 1,011 groups reach, with the group index vs without",
    quick=["100k"], full=["100k"],
)
def group_write_member(ctx: Context, scales: list[int]) -> Workload:
    return _workload(ctx, scales, "member")


@scenario(
    "group_write_subgroup", ["write", "groups", "inproc"],
    "Engine.write of one new subgroup into a group 1,011 groups reach, with the group index vs without",
    quick=["100k"], full=["100k"],
)
def group_write_subgroup(ctx: Context, scales: list[int]) -> Workload:
    return _workload(ctx, scales, "subgroup")
