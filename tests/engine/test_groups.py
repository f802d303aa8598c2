"""The group index (engine.groups, Leopard): which relations it answers for, that the Engine
uses it, and that its answers equal the walk's on random nested groups, through writes, deletes
and imports, at every revision."""

from __future__ import annotations

import datetime as _dt
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine.config import EngineConfig
from relengine.engine.groups import Closure, GroupIndex, indexed_relations
from relengine.errors import DeadlineExceeded, MaxDepthExceeded
from relengine.model import (
    CaveatRef, Consistency, ObjectRef, Relationship, RelationshipFilter, Revision, SubjectRef,
)
from relengine.results import Operation, RelationshipUpdate
from relengine.schema import compile_schema
from relengine.service import Engine
from relengine.storage.base import TupleStore
from relengine.storage.lmdb import LmdbStore
from relengine.storage.memory import MemoryStore

SCHEMA = """
use expiration
caveat flagged(flag bool) { flag }
definition user {}
definition group {
    relation member: user | user with expiration | group#member | group#member with flagged
}
definition doc {
    relation viewer: user | group#member
    relation banned: user | group#member
    permission view = viewer - banned
}
"""

PURE_SCHEMA = """
definition user {}
definition group {
    relation member: user | group#member
}
definition doc {
    relation viewer: user | group#member
    relation banned: user | group#member
    permission view = viewer - banned
}
"""


def _groups(engine: Engine) -> GroupIndex:
    index = engine._groups
    assert index is not None
    return index


def test_indexed_relations_are_the_self_recursive_plain_ones() -> None:
    schema = compile_schema("""
definition user {}
definition team { relation member: user }
definition group {
    relation member: user | group#member
    relation owner: user
    relation wild: user:* | group#wild
    relation mixed: user | group#member | group#mixed
    relation other: user | team#member | group#other
    permission all = member + owner
}
definition folder {
    relation parent: folder
    relation viewer: user | folder#viewer
}
""")
    assert indexed_relations(schema) == {("group", "member"), ("folder", "viewer")}


def test_engine_answers_deep_groups_from_the_index(engine_from: Callable[..., Engine]) -> None:
    chain = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(9)]
    e = engine_from(PURE_SCHEMA, *chain, "group:g9#member@user:ann", "doc:d#viewer@group:g0#member", cache_size=0)
    assert e.check(ObjectRef("doc", "d"), "view", SubjectRef("user", "ann")).allowed
    assert not e.check(ObjectRef("doc", "d"), "view", SubjectRef("user", "bob")).allowed
    assert e.check(ObjectRef("group", "g0"), "member", SubjectRef("group", "g7", "member")).allowed
    assert not e.check(ObjectRef("group", "g7"), "member", SubjectRef("group", "g0", "member")).allowed
    stats = _groups(e).statistics()
    assert stats.builds == 1 and stats.relations == ("group#member",)
    assert stats.answers >= 4  # every member test above came from the index
    assert stats.closure_pairs == sum(range(1, 11))  # g_i reaches g_i..g9


def test_a_write_moves_the_index_forward(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(PURE_SCHEMA, "group:a#member@group:b#member", "group:b#member@user:ann", cache_size=0)
    ann = SubjectRef("user", "ann")
    assert e.check(ObjectRef("group", "a"), "member", ann).allowed
    first = _groups(e).statistics().revision
    revision = e.write([RelationshipUpdate(Operation.DELETE, Relationship(ObjectRef("group", "a"), "member", SubjectRef("group", "b", "member")))])
    stats = _groups(e).statistics()
    assert stats.revision == revision and first is not None and first < revision and stats.builds == 1
    assert not e.check(ObjectRef("group", "a"), "member", ann).allowed
    # The older revision is still answered as it was (by the walk: the index is past it).
    assert first is not None and e.check(ObjectRef("group", "a"), "member", ann, at=first).allowed


def test_index_never_answers_past_the_depth_budget(engine_from: Callable[..., Engine]) -> None:
    chain = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(10)]
    e = engine_from(PURE_SCHEMA, *chain, "group:g10#member@user:deep", max_depth=5)
    with pytest.raises(MaxDepthExceeded):
        e.check(ObjectRef("group", "g0"), "member", SubjectRef("user", "deep"))
    # Near the bottom the chain fits the budget: the index answers.
    assert e.check(ObjectRef("group", "g7"), "member", SubjectRef("user", "deep")).allowed
    assert _groups(e).statistics().answers >= 1


def test_caveats_and_expirations_leave_no_to_the_walk(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, cache_size=0)
    past = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)
    e.touch([
        Relationship(ObjectRef("group", "a"), "member", SubjectRef("group", "b", "member"), caveat=CaveatRef("flagged")),
        Relationship(ObjectRef("group", "b"), "member", SubjectRef("user", "ann")),
        Relationship(ObjectRef("group", "a"), "member", SubjectRef("user", "old"), expiration=past),
    ])
    a = ObjectRef("group", "a")
    assert e.check(a, "member", SubjectRef("user", "ann"), context={"flag": True}).allowed
    assert not e.check(a, "member", SubjectRef("user", "ann"), context={"flag": False}).allowed
    assert e.check(a, "member", SubjectRef("user", "ann")).permissionship.name == "CONDITIONAL_PERMISSION"
    assert not e.check(a, "member", SubjectRef("user", "old")).allowed
    assert _groups(e).statistics().impure == 2


def test_the_index_can_be_turned_off(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(PURE_SCHEMA, "group:a#member@user:ann", group_index=False)
    assert e.check(ObjectRef("group", "a"), "member", SubjectRef("user", "ann")).allowed
    assert e._groups is None


def test_checks_beside_writes_in_other_threads() -> None:
    """Readers at head while a writer links and unlinks a subgroup: every answer is the one of
    the revision it carries (a move of the index under a query never mixes two states)."""
    store = MemoryStore()
    e = Engine(store, EngineConfig(cache_size=0))
    e.write_schema(PURE_SCHEMA)
    chain = [_relationship(f"g{i}", SubjectRef("group", f"g{i + 1}", "member"), "plain") for i in range(4)]
    e.touch(chain + [_relationship("g4", SubjectRef("user", "ann"), "plain")])
    link = chain[2]
    present: dict[int, bool] = {store.head_revision().value: True}
    seen: list[tuple[int, bool]] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            r = e.check(ObjectRef("group", "g0"), "member", SubjectRef("user", "ann"), consistency=Consistency.fully_consistent())
            seen.append((r.revision.value, r.allowed))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        for n in range(200):
            op = Operation.DELETE if n % 2 == 0 else Operation.TOUCH
            present[e.write([RelationshipUpdate(op, link)]).value] = op is Operation.TOUCH
    finally:
        done.set()
        for t in readers:
            t.join()
    assert seen and all(allowed == present[revision] for revision, allowed in seen)
    assert _groups(e).statistics().answers > 0


# -- property: the index against the walk ------------------------------------------------------

GROUPS = [f"g{i}" for i in range(6)]
USERS = ["u0", "u1", "u2"]
FUTURE = _dt.datetime(2300, 1, 1, tzinfo=_dt.timezone.utc)
PAST = _dt.datetime(2020, 1, 1, tzinfo=_dt.timezone.utc)

edges = st.one_of(
    st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS).map(lambda g: SubjectRef("group", g, "member"))),
    st.tuples(st.sampled_from(GROUPS), st.sampled_from(USERS).map(lambda u: SubjectRef("user", u))),
)
kinds = st.sampled_from(["plain", "plain", "plain", "caveat", "expired", "expiring"])


def _relationship(group: str, subject: SubjectRef, kind: str) -> Relationship:
    caveat = CaveatRef("flagged", {"flag": True}) if kind == "caveat" and subject.relation is not None else None
    expiration = None
    if subject.relation is None and kind in ("expired", "expiring"):
        expiration = PAST if kind == "expired" else FUTURE
    return Relationship(ObjectRef("group", group), "member", subject, caveat=caveat, expiration=expiration)


steps = st.lists(
    st.one_of(
        st.tuples(st.just("touch"), st.lists(st.tuples(edges, kinds), min_size=1, max_size=6)),
        st.tuples(st.just("delete"), st.lists(st.tuples(edges, kinds), min_size=1, max_size=3)),
        st.tuples(st.just("delete_group"), st.sampled_from(GROUPS)),
        st.tuples(st.just("import"), st.lists(st.tuples(edges, kinds), min_size=1, max_size=6)),
    ),
    min_size=1, max_size=8,
)


def _questions() -> Iterator[tuple[ObjectRef, str, SubjectRef]]:
    for g in GROUPS:
        for u in USERS:
            yield ObjectRef("group", g), "member", SubjectRef("user", u)
        for h in GROUPS:
            yield ObjectRef("group", g), "member", SubjectRef("group", h, "member")
    for u in USERS:
        yield ObjectRef("doc", "d"), "view", SubjectRef("user", u)


def _answers(engine: Engine, revision: Revision) -> list[str]:
    """Every check of ``_questions``, then LookupSubjects of each group's users and the doc's
    (the index gathers a group's members: ``GroupView.members``)."""
    at = Consistency.at_exact_snapshot(revision)
    return [
        engine.check(resource, perm, subject, at=revision).permissionship.name
        for resource, perm, subject in _questions()
    ] + [
        " ".join(f"{r.subject.id}:{r.permissionship.name}" for r in engine.lookup_subjects(resource, perm, "user", consistency=at))
        for resource, perm in [(ObjectRef("group", g), "member") for g in GROUPS] + [(ObjectRef("doc", "d"), "view")]
    ]


def _play(store: TupleStore, schema: str, plan: list[tuple[str, object]]) -> None:
    indexed = Engine(store, EngineConfig(cache_size=0))
    walked = Engine(store, EngineConfig(cache_size=0, group_index=False))
    revisions = [indexed.write_schema(schema)]
    indexed.touch([
        Relationship(ObjectRef("doc", "d"), "viewer", SubjectRef("group", "g0", "member")),
        Relationship(ObjectRef("doc", "d"), "banned", SubjectRef("group", "g3", "member")),
    ])
    for op, arg in plan:
        if op == "touch":
            revision = indexed.touch([_relationship(g, s, k) for (g, s), k in arg])  # type: ignore[attr-defined]
        elif op == "delete":
            updates = [RelationshipUpdate(Operation.DELETE, _relationship(g, s, k)) for (g, s), k in arg]  # type: ignore[attr-defined]
            revision = indexed.write(updates)
        elif op == "delete_group":
            revision = indexed.delete(RelationshipFilter(resource_type="group", resource_id=str(arg))).revision
        else:  # an import goes around the Engine's write path: the index follows the changelog
            rows = {(g, s.type, s.id, s.relation or ""): _relationship(g, s, k) for (g, s), k in arg}  # type: ignore[attr-defined]
            indexed.import_relationships(list(rows.values()))
            revision = store.head_revision()
        revisions.append(revision)
        # At head after each step: the index moves forward one step at a time.
        assert _answers(indexed, revision) == _answers(walked, revision)
    # Every earlier revision again, newest first (the index is past them: the walk answers),
    # then a fresh index built at an older revision and moved forward to head.
    for revision in reversed(revisions):
        assert _answers(indexed, revision) == _answers(walked, revision)
    fresh = Engine(store, EngineConfig(cache_size=0))
    for revision in revisions:
        assert _answers(fresh, revision) == _answers(walked, revision)
    assert _groups(fresh).statistics().builds >= 1


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps, pure=st.booleans())
def test_index_agrees_with_the_walk_memory(plan: list[tuple[str, object]], pure: bool) -> None:
    if pure:
        plan = [(op, [(e, "plain") for e, _ in arg] if isinstance(arg, list) else arg) for op, arg in plan]
    _play(MemoryStore(), PURE_SCHEMA if pure else SCHEMA, plan)


@pytest.mark.slow
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps)
def test_index_agrees_with_the_walk_lmdb(plan: list[tuple[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = LmdbStore(Path(tmp) / "data", sync=False)
        try:
            _play(store, SCHEMA, plan)
        finally:
            store.close()


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.sampled_from(GROUPS), st.sampled_from(GROUPS)), max_size=40))
def test_closure_equals_reachability_after_every_change(ops: list[tuple[bool, str, str]]) -> None:
    """Closure.desc / anc against a breadth-first search of the edges live at each step (both
    ways of recomputing after a removal: from above and from below)."""
    closure = Closure("group", "member")
    edges: set[tuple[str, str]] = set()
    for add, p, c in ops:
        rel = Relationship(ObjectRef("group", p), "member", SubjectRef("group", c, "member"))
        if add:
            closure.add(rel)
            edges.add((p, c))
        else:
            closure.remove(rel)
            edges.discard((p, c))
        for g in {x for e in edges for x in e}:
            seen, stack = {g}, [g]
            while stack:
                y = stack.pop()
                for a, b in edges:
                    if a == y and b not in seen:
                        seen.add(b)
                        stack.append(b)
            assert closure.desc.get(g, {g}) == seen
            for d in seen:
                assert g in closure.anc.get(d, {d})


def _in_another_process(path: Path, code: str) -> None:
    """Run ``code`` with ``engine`` (an Engine on the LMDB store at ``path``) in a subprocess."""
    script = (
        "import sys\nfrom relengine import Engine\nfrom relengine.model import *\n"
        "from relengine.storage.lmdb import LmdbStore\n"
        f"store = LmdbStore({str(path)!r}, sync=False)\nengine = Engine(store)\n{code}\nstore.close()\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


def test_writes_of_another_process_reach_the_index(tmp_path: Path) -> None:
    """Another process's writes come in through the changelog when a check asks for their
    revision (a touch, then a delete by filter)."""
    store = LmdbStore(tmp_path, sync=False)
    try:
        e = Engine(store, EngineConfig(cache_size=0))
        e.write_schema(PURE_SCHEMA)
        e.touch([_relationship("a", SubjectRef("group", "b", "member"), "plain")])
        ann, full = SubjectRef("user", "ann"), Consistency.fully_consistent()
        assert not e.check(ObjectRef("group", "a"), "member", ann, consistency=full).allowed
        _in_another_process(tmp_path, "engine.touch([Relationship(ObjectRef('group', 'b'), 'member', SubjectRef('user', 'ann'))])")
        assert e.check(ObjectRef("group", "a"), "member", ann, consistency=full).allowed
        _in_another_process(tmp_path, "engine.delete(RelationshipFilter(resource_type='group', resource_id='a'))")
        assert not e.check(ObjectRef("group", "a"), "member", ann, consistency=full).allowed
        stats = _groups(e).statistics()
        assert stats.builds == 1 and stats.changes_applied >= 2 and stats.answers >= 3
    finally:
        store.close()


def test_a_collected_changelog_rebuilds_the_index() -> None:
    now = [1_000_000.0]
    store = MemoryStore(clock=lambda: now[0], gc_interval=None)
    e = Engine(store, EngineConfig(cache_size=0))
    e.write_schema(PURE_SCHEMA)
    writer = Engine(store, EngineConfig(cache_size=0, group_index=False))  # writes around the index
    writer.touch([_relationship("a", SubjectRef("group", "b", "member"), "plain")])
    ann, full = SubjectRef("user", "ann"), Consistency.fully_consistent()
    assert not e.check(ObjectRef("group", "a"), "member", ann, consistency=full).allowed
    writer.touch([_relationship("b", ann, "plain")])
    writer.touch([_relationship("c", ann, "plain")])
    now[0] += 3 * 24 * 3600
    assert store.gc().changes_removed > 0
    assert e.check(ObjectRef("group", "a"), "member", ann, consistency=full).allowed
    assert _groups(e).statistics().builds == 2


def test_a_move_past_the_deadline_is_dropped_and_the_walk_raises(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(PURE_SCHEMA, "group:a#member@user:ann", cache_size=0)
    with pytest.raises(DeadlineExceeded):
        e.check(ObjectRef("group", "a"), "member", SubjectRef("user", "ann"), deadline=time.monotonic() - 1)
    assert _groups(e).statistics().builds == 0 and _groups(e).statistics().revision is None
    assert e.check(ObjectRef("group", "a"), "member", SubjectRef("user", "ann")).allowed
    assert _groups(e).statistics().builds == 1


def test_a_wide_shallow_tree_of_groups_is_answered_by_the_index(engine_from: Callable[..., Engine]) -> None:
    """A group reaching more groups than the depth budget, all within a few levels: the index
    answers (the walk could not go deeper than the tree), and a chain deeper than the budget
    under another group still leaves that one to the walk, which raises."""
    tree = [f"group:t{k // 2}#member@group:t{k}#member" for k in range(2, 64)]
    chain = [f"group:c{i}#member@group:c{i + 1}#member" for i in range(8)]
    e = engine_from(PURE_SCHEMA, *tree, *chain, "group:t63#member@user:leaf", "group:c8#member@user:deep",
                    "group:t1#member@group:c0#member", max_depth=6, cache_size=0)
    before = _groups(e).statistics().answers
    assert e.check(ObjectRef("group", "t2"), "member", SubjectRef("user", "leaf")).allowed is False
    assert e.check(ObjectRef("group", "t3"), "member", SubjectRef("user", "leaf")).allowed  # t3 > t7 > t15 > t31 > t63
    assert _groups(e).statistics().answers == before + 2
    with pytest.raises(MaxDepthExceeded):  # t1 reaches the chain: 10 levels under a budget of 6
        e.check(ObjectRef("group", "t1"), "member", SubjectRef("user", "deep"))


def _longest_simple_path(edges: set[tuple[str, str]], start: str) -> int:
    best = 0

    def walk(g: str, seen: set[str], length: int) -> None:
        nonlocal best
        best = max(best, length)
        for a, b in edges:
            if a == g and b not in seen:
                walk(b, seen | {b}, length + 1)

    walk(start, {start}, 0)
    return best


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS)), max_size=14))
def test_the_longest_walk_below_a_group_is_never_underestimated(edges: list[tuple[str, str]]) -> None:
    """``Closure.longest`` against every simple path: never less (the index would answer where
    the walk runs out of depth), one more where the groups hold a cycle (the walk steps into a
    group on its path once before the cycle is cut), and exact where they hold none."""
    closure = Closure("group", "member")
    live = set(edges)
    for p, c in live:
        closure.add(Relationship(ObjectRef("group", p), "member", SubjectRef("group", c, "member")))
    for g in {x for e in live for x in e}:
        true = _longest_simple_path(live, g)
        bound = closure.longest(g, 0)
        reach = closure.desc[g]
        cyclic = any(a in reach and b in reach and a in closure.desc.get(b, ()) for a, b in live)
        if cyclic:
            assert bound >= true + 1
        else:
            assert bound == true


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edges=st.lists(st.tuples(st.sampled_from(GROUPS), st.sampled_from(GROUPS), st.booleans()), max_size=12),
    depth=st.integers(1, 4),
)
def test_index_agrees_with_the_walk_under_a_small_depth_budget(edges: list[tuple[str, str, bool]], depth: int) -> None:
    """Where the budget runs out matters: each member test and each group's LookupSubjects
    answers, or raises MaxDepthExceeded, alike with and without the index (some links
    caveated: the walk's)."""
    rels = [
        f"group:{p}#member@group:{c}#member" + ("[flagged]" if caveated else "") for p, c, caveated in set(edges)
    ] + [f"group:{g}#member@user:u{g}" for g in GROUPS]
    store = MemoryStore()
    indexed = Engine(store, EngineConfig(cache_size=0, max_depth=depth))
    walked = Engine(store, EngineConfig(cache_size=0, max_depth=depth, group_index=False))
    indexed.write_schema(SCHEMA)
    from relengine.model import parse_relationship
    indexed.touch([parse_relationship(r) for r in rels])

    def outcome(engine: Engine, g: str, u: str) -> str:
        try:
            return engine.check(ObjectRef("group", g), "member", SubjectRef("user", u)).permissionship.name
        except MaxDepthExceeded:
            return "max depth"

    def listing(engine: Engine, g: str) -> str:
        try:
            found = engine.lookup_subjects(ObjectRef("group", g), "member", "user")
            return " ".join(sorted(f"{r.subject.id}:{r.permissionship.name}" for r in found))
        except MaxDepthExceeded:
            return "max depth"

    for g in GROUPS:
        for h in GROUPS:
            assert outcome(indexed, g, f"u{h}") == outcome(walked, g, f"u{h}"), (g, h)
        assert listing(indexed, g) == listing(walked, g), g
