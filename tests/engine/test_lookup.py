"""LookupResources and LookupSubjects: the depth budget and the deadline they share with check,
stopping once the caller has gone, LookupSubjects' linear time in a group's size, and the
reverse graph kept with its schema."""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from relengine import Consistency, Engine, ObjectRef, SubjectRef
from relengine.engine import lookup
from relengine.engine.dispatch import STEPS_PER_CLOCK
from relengine.errors import Cancelled, DeadlineExceeded, MaxDepthExceeded
from relengine.model import parse_relationship
from relengine.schema import compile_schema
from relengine.storage.memory import MemoryStore
from relengine.engine.lookup import reverse_graph

from . import graphs

SCHEMA = """
definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | group#member
    permission view = viewer
}
"""

ANN = SubjectRef("user", "ann")


Nested = Callable[..., Engine]


@pytest.fixture
def nested(engine_from: Callable[..., Engine]) -> Nested:
    """``nested(depth, max_depth, store=None)``: ann in group n0, n0 in n1, ..., n{depth-1} a
    viewer of doc:d (``depth`` hops from doc:d to n0)."""

    def make(depth: int, max_depth: int, store: MemoryStore | None = None) -> Engine:
        texts = ["group:n0#member@user:ann", f"doc:d#viewer@group:n{depth - 1}#member"]
        texts += [f"group:n{i + 1}#member@group:n{i}#member" for i in range(depth - 1)]
        return engine_from(SCHEMA, *texts, store=store, max_depth=max_depth)

    return make


def test_lookup_resources_keeps_the_depth_budget_of_check(nested: Nested) -> None:
    within = nested(5, max_depth=5)
    assert within.check(ObjectRef("doc", "d"), "view", ANN).allowed
    assert [r.resource_id for r in within.lookup_resources("doc", "view", ANN)] == ["d"]
    beyond = nested(6, max_depth=5)
    with pytest.raises(MaxDepthExceeded):
        beyond.check(ObjectRef("doc", "d"), "view", ANN)
    with pytest.raises(MaxDepthExceeded):
        list(beyond.lookup_resources("doc", "view", ANN))


def test_lookup_subjects_keeps_the_depth_budget(nested: Nested) -> None:
    # Its walk spends a hop on the permission's reference to the relation, where check's plan
    # inlines it: the same budget runs out one level sooner.
    assert [r.subject.id for r in nested(4, max_depth=5).lookup_subjects(ObjectRef("doc", "d"), "view", "user")] == ["ann"]
    with pytest.raises(MaxDepthExceeded):
        list(nested(7, max_depth=5).lookup_subjects(ObjectRef("doc", "d"), "view", "user"))


def test_lookup_resources_through_cycles_ends_within_the_budget(nested: Nested) -> None:
    engine = nested(3, max_depth=5)
    engine.touch([parse_relationship("group:n0#member@group:n2#member")])  # a data cycle
    assert [r.resource_id for r in engine.lookup_resources("doc", "view", ANN)] == ["d"]


def test_lookups_with_a_deadline_they_meet_answer_as_without(nested: Nested) -> None:
    engine = nested(3, max_depth=5)
    later = time.monotonic() + 60
    assert [r.resource_id for r in engine.lookup_resources("doc", "view", ANN, deadline=later)] == ["d"]
    found = engine.lookup_subjects(ObjectRef("doc", "d"), "view", "user", deadline=later)
    assert [r.subject.id for r in found] == ["ann"]


def test_a_lookup_already_late_reads_nothing(nested: Nested) -> None:
    store = graphs.CountingStore()
    engine = nested(3, max_depth=5, store=store)
    store.scans = 0
    with pytest.raises(DeadlineExceeded):
        list(engine.lookup_resources("doc", "view", ANN, deadline=time.monotonic() - 1))
    with pytest.raises(DeadlineExceeded):
        list(engine.lookup_subjects(ObjectRef("doc", "d"), "view", "user", deadline=time.monotonic() - 1))
    assert store.scans <= 2  # at most the first scan of each, begun and not read


def test_lookup_resources_stops_at_the_deadline() -> None:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    question = graphs.wide_schema(store)
    store.scans = 0
    with pytest.raises(DeadlineExceeded):
        list(engine.lookup_resources(*question, deadline=time.monotonic() + 0.05))
    assert store.scans < graphs.FULL_WALK_SCANS  # it stopped early, not after the walk


def test_lookup_subjects_stops_at_the_deadline() -> None:
    store = graphs.CountingStore()
    engine = graphs.engine_on(store)
    resource, permission, subject_type = graphs.dense_groups(store)
    store.scans = 0
    with pytest.raises(DeadlineExceeded):
        list(engine.lookup_subjects(resource, permission, subject_type, deadline=time.monotonic() + 0.05))
    assert store.scans < graphs.FULL_WALK_SCANS


def test_lookups_stop_once_their_caller_has_gone_even_without_a_deadline() -> None:
    for build, call in [
        (graphs.wide_schema, "lookup_resources"),
        (graphs.dense_groups, "lookup_subjects"),
        (graphs.group_fan, "lookup_subjects"),
    ]:
        store = graphs.CountingStore()
        engine = graphs.engine_on(store)
        question = build(store)
        store.scans = 0
        with pytest.raises(Cancelled, match="the lookup was cancelled"):
            list(getattr(engine, call)(*question, cancelled=lambda: store.scans >= 1000))
        # Asked at most STEPS_PER_CLOCK steps (scans or rows) after it went.
        assert 1000 <= store.scans <= 1000 + STEPS_PER_CLOCK, call


GROUPED = """
definition user {}

definition group {
    relation member: user | user:* | group#member
}

definition doc {
    relation viewer: user | user:* | group#member
    relation banned: user
    permission view = viewer - banned
}
"""


def _group_of(members: int) -> Engine:
    """doc:d's viewers: group:g's members (``members`` users, some in a subgroup), less one
    banned user; user:* in a third group, the subgroup's viewers excluded."""
    engine = Engine(MemoryStore())
    engine.write_schema(GROUPED)
    texts = ["doc:d#viewer@group:g#member", "group:g#member@group:sub#member", "doc:d#banned@user:u0"]
    texts += [f"group:{'sub' if i % 10 == 0 else 'g'}#member@user:u{i}" for i in range(members)]
    texts += ["doc:e#viewer@group:all#member", "group:all#member@user:*", "doc:e#banned@user:u1"]
    engine.import_relationships(parse_relationship(t) for t in texts)
    return engine


def test_lookup_subjects_gathers_a_groups_members_in_linear_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's subject sets are built once: the ids put into SubjectSets over the walk
    grow with the number of members, not with its square (each relationship copying the
    members gathered so far was 0.6 s for 8,000 members and minutes for 100,000)."""
    built = [0]

    class Counted(lookup.SubjectSet):
        __slots__ = ()

        def __init__(self, ids: frozenset[str] = frozenset(), wildcard: bool = False, excluded: frozenset[str] = frozenset()) -> None:
            built[0] += len(ids) + len(excluded)
            super().__init__(ids, wildcard, excluded)

    monkeypatch.setattr(lookup, "SubjectSet", Counted)
    for members in (500, 4000):
        engine = _group_of(members)
        built[0] = 0
        found = list(engine.lookup_subjects(ObjectRef("doc", "d"), "view", "user"))
        assert [r.subject.id for r in found] == sorted(f"u{i}" for i in range(1, members))
        assert 0 < built[0] <= 10 * members, (members, built[0])
        (everyone,) = engine.lookup_subjects(ObjectRef("doc", "e"), "view", "user")
        assert everyone.subject == SubjectRef("user", "*") and [s.id for s in everyone.excluded] == ["u1"]


def test_the_reverse_graph_is_kept_with_its_schema() -> None:
    schema = compile_schema(SCHEMA)
    graph = reverse_graph(schema)
    assert reverse_graph(schema) is graph
    twin = compile_schema(SCHEMA)  # equal, but another object: its own graph
    assert twin == schema and reverse_graph(twin) is not graph
    assert reverse_graph(twin).edges == graph.edges


_IDS = st.frozensets(st.sampled_from(["a", "b", "c", "d"]))
_SETS = st.one_of(
    st.builds(lookup.SubjectSet, _IDS),
    st.builds(lambda ids, excluded: lookup.SubjectSet(ids - excluded, True, excluded), _IDS, _IDS),
)


@given(_SETS, _SETS)
def test_subject_set_operations_answer_as_their_members_do(a: lookup.SubjectSet, b: lookup.SubjectSet) -> None:
    """union, intersect and subtract (set operations where neither side is a wildcard) agree,
    id by id and for an id neither names, with ``has`` of each operand."""
    for sid in ["a", "b", "c", "d", "never-named"]:
        assert a.union(b).has(sid) == (a.has(sid) or b.has(sid))
        assert a.intersect(b).has(sid) == (a.has(sid) and b.has(sid))
        assert a.subtract(b).has(sid) == (a.has(sid) and not b.has(sid))


@given(st.lists(st.one_of(_SETS, st.sampled_from(["a", "b", "e"])), max_size=6))
def test_gathering_is_the_chain_of_unions(parts: list[lookup.SubjectSet | str]) -> None:
    """``_Gathered`` (which keeps a lone operand uncopied) gives what ``a.union(b)...`` gives."""
    gathered = lookup._Gathered()
    chained = lookup.EMPTY
    for part in parts:
        if isinstance(part, str):
            gathered.add_id(part)
            chained = chained.union(lookup.SubjectSet(frozenset([part])))
        else:
            gathered.add(part)
            chained = chained.union(part)
    assert gathered.freeze() == chained


def test_lookup_subjects_kept_results_keep_the_depth_budget(nested: Nested) -> None:
    """Sub-results kept for later requests (the cache's memo) are used only as deep in the
    budget as they were found: a walk that runs out of depth still does after a shallower
    lookup kept what it would reach."""
    engine = nested(7, max_depth=5)
    assert [r.subject.id for r in engine.lookup_subjects(ObjectRef("group", "n3"), "member", "user")] == ["ann"]
    assert len(engine.cache.subjects) > 0  # kept: n3 and the groups below it
    with pytest.raises(MaxDepthExceeded):
        list(engine.lookup_subjects(ObjectRef("doc", "d"), "view", "user"))
    within = nested(4, max_depth=5)
    list(within.lookup_subjects(ObjectRef("group", "n2"), "member", "user"))
    assert [r.subject.id for r in within.lookup_subjects(ObjectRef("doc", "d"), "view", "user")] == ["ann"]


def test_lookup_subjects_kept_results_hold_only_at_their_revision(engine_from: Callable[..., Engine]) -> None:
    engine = engine_from(SCHEMA, "group:g#member@user:ann", "doc:d#viewer@group:g#member")
    uncached = Engine(engine.store, engine.config.__class__(cache_size=0))
    doc = ObjectRef("doc", "d")
    first = engine.lookup_subjects(doc, "view", "user")
    assert [r.subject.id for r in first] == ["ann"]
    assert [r.subject.id for r in engine.lookup_subjects(doc, "view", "user")] == ["ann"]  # from the memo
    engine.touch([parse_relationship("group:g#member@user:bob")])
    again = engine.lookup_subjects(doc, "view", "user")
    assert again.revision != first.revision
    assert [r.subject.id for r in again] == ["ann", "bob"]
    assert [r.subject.id for r in uncached.lookup_subjects(doc, "view", "user")] == ["ann", "bob"]
    old = Consistency.at_exact_snapshot(first.revision)
    assert [r.subject.id for r in engine.lookup_subjects(doc, "view", "user", consistency=old)] == ["ann"]


def test_lookup_subjects_keeps_nothing_that_leaned_on_an_expiring_relationship(
    engine_from: Callable[..., Engine],
) -> None:
    """A listing through a relationship that will expire is not kept: asked again at the same
    revision once it has expired, the answer leaves it out."""
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    schema = "use expiration\n" + SCHEMA.replace("relation member: user |", "relation member: user | user with expiration |")
    engine = engine_from(
        schema, "group:g#member@user:ann", f"group:g#member@user:bob[expiration:{soon}]", "doc:d#viewer@group:g#member",
        "doc:e#viewer@user:cat",
    )
    doc = ObjectRef("doc", "d")
    at = Consistency.at_exact_snapshot(engine.store.head_revision())
    assert [r.subject.id for r in engine.lookup_subjects(doc, "view", "user", consistency=at)] == ["ann", "bob"]
    assert [r.subject.id for r in engine.lookup_subjects(ObjectRef("doc", "e"), "view", "user", consistency=at)] == ["cat"]
    time.sleep(max(0.0, (dt.datetime.strptime(soon, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.timezone.utc)
                         - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.05)
    assert [r.subject.id for r in engine.lookup_subjects(doc, "view", "user", consistency=at)] == ["ann"]
    assert [r.subject.id for r in engine.lookup_subjects(ObjectRef("doc", "e"), "view", "user", consistency=at)] == ["cat"]


UNIONS = """
caveat near(x int) { x < 3 }

definition user {}

definition group {
    relation member: user | user:* | user with near | group#member | group#member with near
}

definition doc {
    relation parent: doc | doc with near
    relation viewer: user | user:* | user with near | group#member | group#member with near
    relation editor: user | group#member
    permission edit = editor + parent->edit
    permission view = viewer + edit + parent->view
}
"""

_MEMBERS = ["group:g0#member", "group:g1#member", "group:g2#member", "doc:d0#viewer", "doc:d1#viewer",
            "doc:d2#editor"]
_SUBJECTS = ["user:u0", "user:u1", "user:*", "group:g0#member", "group:g1#member", "group:g2#member"]
_PARENTS = ["doc:d0#parent@doc:d1", "doc:d1#parent@doc:d2", "doc:d2#parent@doc:d0", "doc:d1#parent@doc:d0"]


@st.composite
def union_worlds(draw: st.DrawFn) -> list[str]:
    """Relationships of ``UNIONS``: groups and parents in cycles, caveats and wildcards."""
    texts: set[str] = set()
    for _ in range(draw(st.integers(0, 14))):
        member = draw(st.sampled_from(_MEMBERS))
        subject = draw(st.sampled_from(_SUBJECTS))
        if member.endswith("#editor") and (subject == "user:*"):
            continue
        caveated = draw(st.booleans()) and not member.endswith("#editor") and subject != "user:*"
        texts.add(f"{member}@{subject}" + ("[near]" if caveated else ""))
    texts.update(draw(st.lists(st.sampled_from(_PARENTS), unique=True)))
    return sorted(texts)


@given(union_worlds())
def test_the_union_walk_finds_what_the_member_walk_finds(texts: list[str]) -> None:
    """A permission of unions only is gathered in one walk (``SubjectWalker.gather``): the same
    bounds as the member-by-member walk, through data cycles, caveats and wildcards, for whole
    subjects and subject sets, and the same LookupSubjects answers."""
    store = MemoryStore()
    engine = Engine(store)
    engine.write_schema(UNIONS)
    engine.touch([parse_relationship(text) for text in texts])
    assert {("doc", "view"), ("doc", "edit"), ("group", "member")} <= lookup._plan_of(
        compile_schema(UNIONS)
    ).unions
    reader = store.snapshot()
    checker = engine._checker(reader, None, None)
    for stype, srel in (("user", None), ("group", "member")):
        for t, oid, name in [("doc", d, p) for d in ("d0", "d1", "d2") for p in ("view", "edit")] + [
            ("group", "g0", "member")
        ]:
            walked = lookup.SubjectWalker(checker, stype, srel).member(t, oid, name, 50)
            gathered = lookup.SubjectWalker(checker, stype, srel).gather(t, oid, name, 50)
            assert gathered == walked, (t, oid, name, stype, srel)
            found = engine.lookup_subjects(ObjectRef(t, oid), name, stype, subject_relation=srel)
            for result in found:
                subject = result.subject
                if subject.id != "*":
                    assert engine.check(ObjectRef(t, oid), name, subject).permissionship == result.permissionship


def test_the_union_walk_keeps_the_depth_budget(nested: Nested) -> None:
    """A permission of unions whose same-object references are followed inline still spends
    one level of depth per reference: the budget runs out where the member walk's does."""
    engine = nested(3, max_depth=4)  # view -> viewer -> n2 -> n1 -> n0: four levels
    assert [r.subject.id for r in engine.lookup_subjects(ObjectRef("doc", "d"), "view", "user")] == ["ann"]
    with pytest.raises(MaxDepthExceeded):
        list(nested(3, max_depth=3).lookup_subjects(ObjectRef("doc", "d"), "view", "user"))
