"""Guards against brute force: on small random stores and random writes, a guarded write is
refused exactly when some object went from satisfying a guard to violating it, counted by a
full lookup of its holders before and after (``guards.holders``); and the early-stopping
tally (``guards.Tallier``) agrees with that full count on every object, with or without ids to
look at last (``later``)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine import Engine
from relengine.errors import GuardViolated
from relengine.model import CaveatRef, ObjectRef, Relationship, SubjectRef
from relengine.results import Operation, RelationshipUpdate
from relengine.schema import compile_schema
from relengine.service.guards import Guard, Tallier, holders
from relengine.storage.memory import MemoryStore

SCHEMA = """
use expiration

caveat small(x int) { x < 1 }

definition user {}

definition group {
    relation member: user | user:* | user with small | group#member
}

definition folder {
    relation viewer: user | group#member
}

definition account {
    relation admin: user | user with small | user with expiration | group#member
    relation parent: folder
    relation banned: user | group#member
    relation required: user | group#member
    permission via = parent->viewer
    permission administer = admin + via - banned
    permission both = administer & required
    permission every = parent.all(viewer)
    permission keep = admin + via
    permission owner = keep
}
"""
COMPILED = compile_schema(SCHEMA)
USERS = ["u0", "u1", "u2", "u3", "u4"]
PAST = dt.datetime(2001, 1, 1, tzinfo=dt.timezone.utc)
FUTURE = dt.datetime(2999, 1, 1, tzinfo=dt.timezone.utc)


def _user() -> st.SearchStrategy[SubjectRef]:
    return st.sampled_from(USERS).map(lambda u: SubjectRef("user", u))


def _group() -> st.SearchStrategy[SubjectRef]:
    return st.sampled_from(["g0", "g1", "g2"]).map(lambda g: SubjectRef("group", g, "member"))


ACCOUNT = st.sampled_from(["a0", "a1"]).map(lambda a: ObjectRef("account", a))
RELATIONSHIPS = st.one_of(
    st.builds(lambda a, s: Relationship(a, "admin", s), ACCOUNT, st.one_of(_user(), _group())),
    st.builds(lambda a, s: Relationship(a, "admin", s, expiration=PAST), ACCOUNT, _user()),
    st.builds(lambda a, s: Relationship(a, "admin", s, expiration=FUTURE), ACCOUNT, _user()),
    st.builds(lambda a, s, c: Relationship(a, "admin", s, caveat=c), ACCOUNT, _user(),
              st.sampled_from([CaveatRef("small"), CaveatRef("small", {"x": 0}), CaveatRef("small", {"x": 5})])),
    st.builds(lambda a, s: Relationship(a, "banned", s), ACCOUNT, st.one_of(_user(), _group())),
    st.builds(lambda a, s: Relationship(a, "required", s), ACCOUNT, st.one_of(_user(), _group())),
    st.builds(lambda a, f: Relationship(a, "parent", SubjectRef("folder", f)), ACCOUNT, st.sampled_from(["f0", "f1"])),
    st.builds(lambda f, s: Relationship(ObjectRef("folder", f), "viewer", s), st.sampled_from(["f0", "f1"]),
              st.one_of(_user(), _group())),
    st.builds(lambda g, s: Relationship(ObjectRef("group", g), "member", s), st.sampled_from(["g0", "g1", "g2"]),
              st.one_of(_user(), _group(), st.just(SubjectRef("user", "*")))),
)
GUARDS = st.builds(
    lambda p, n: Guard("g", "account", p, "user", n), st.sampled_from(["administer", "both", "every", "admin", "keep", "owner"]),
    st.integers(1, 3),
)


def _counts(engine: Engine, guard: Guard) -> dict[str, tuple[int, bool]]:
    reader = engine.snapshot()
    return {a: holders(COMPILED, reader, guard, a, 50) for a in ("a0", "a1")}


def _ok(found: tuple[int, bool], guard: Guard) -> bool:
    return found[1] or found[0] >= guard.at_least


def _guard_file(guard: Guard) -> str:
    return (f"guards:\n  - name: {guard.name}\n    resource: account\n    permission: {guard.permission}\n"
            f"    subject_type: user\n    at_least: {guard.at_least}\n")


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stored=st.lists(RELATIONSHIPS, min_size=1, max_size=16), guard=GUARDS, data=st.data())
def test_a_write_is_refused_exactly_when_brute_force_says_an_object_fell_below(stored, guard, data) -> None:
    # Mostly deletes of stored relationships (what can take holders away), some new ones.
    change = st.one_of(
        st.tuples(st.just(Operation.DELETE), st.sampled_from(stored)),
        st.tuples(st.just(Operation.DELETE), st.sampled_from(stored)),
        st.tuples(st.just(Operation.TOUCH), RELATIONSHIPS),
    )
    writes = data.draw(st.lists(change, min_size=1, max_size=3, unique_by=lambda w: w[1].key))
    plain, guarded = Engine(MemoryStore()), Engine(MemoryStore())
    for engine in (plain, guarded):
        engine.write_schema(SCHEMA)
        if stored:
            engine.write([RelationshipUpdate(Operation.TOUCH, r) for r in stored])
    guarded.write_guards(_guard_file(guard))
    updates = [RelationshipUpdate(op, r) for op, r in writes]

    before = _counts(plain, guard)
    reader = plain.snapshot()
    tallier = Tallier(COMPILED, reader, 50)
    later = frozenset(data.draw(st.lists(st.sampled_from(USERS), max_size=3)))
    for oid, full in before.items():
        for tally in (tallier.tally(guard, oid), tallier.tally(guard, oid, later=later)):
            assert tally.satisfied == _ok(full, guard), (oid, tally, full, later)
            if not tally.satisfied:
                assert tally.count == full[0]
    plain.write(updates)
    after = _counts(plain, guard)
    fell = [a for a in before if _ok(before[a], guard) and not _ok(after[a], guard)]

    try:
        guarded.write(updates)
    except GuardViolated as exc:
        assert fell, f"refused, yet no object fell below: {before} -> {after}"
        assert exc.object in {f"account:{a}" for a in fell}
        assert exc.count == after[exc.object.split(":")[1]][0]
    else:
        assert not fell, f"allowed, yet {fell} fell below: {before} -> {after}"
