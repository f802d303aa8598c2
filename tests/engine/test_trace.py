"""Traced checks (``Engine.explain``, ``engine.trace``): the tree of what was walked, what each
node answered, the caveats evaluated and the relationships that granted the answer; the same
answer as ``check``, with the depth budget and the deadline, and nothing of the cache."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any, Callable

import pytest
from hypothesis import given, settings

from relengine.errors import DeadlineExceeded, MaxDepthExceeded, UnknownRelation
from relengine.engine.trace import partial_trace
from relengine.model import ObjectRef, Relationship, SubjectRef, parse_object, parse_relationship, parse_subject
from relengine.results import CheckExplanation, CheckTrace, Permissionship
from relengine.service import Engine

from .test_check_property import DOCS, FIXTURE_OK, GROUPS, USERS, worlds

HAS, NO, CONDITIONAL = (
    Permissionship.HAS_PERMISSION, Permissionship.NO_PERMISSION, Permissionship.CONDITIONAL_PERMISSION,
)

SCHEMA = """
use expiration

caveat on_day(day string, allowed string) { day == allowed }

definition user {}

definition group {
    relation member: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user | group#member
    permission view = viewer + parent->view
}

definition doc {
    relation folder: folder
    relation owner: user
    relation viewer: user | user:* | group#member | user with on_day | user with expiration
    relation approved: user
    relation banned: user
    permission edit = owner
    permission view = (viewer + edit + folder->view) - banned
    permission approve = owner & approved
    permission every_folder = folder.all(view)
}
"""


def explain(engine: Engine, resource: str, permission: str, subject: str, **kwargs: Any) -> CheckExplanation:
    """``explain``, asserting that it answers as ``check`` does."""
    x = engine.explain(parse_object(resource), permission, parse_subject(subject), **kwargs)
    plain = engine.check(parse_object(resource), permission, parse_subject(subject), **kwargs)
    assert x.result == plain.result
    assert x.revision == plain.revision
    return x


def shape(node: CheckTrace) -> list[Any]:
    """A node as [resource#relation, answer, via, children...]: what a test compares."""
    answer = "error" if node.result is None else node.result.permissionship.name.split("_")[0].lower()
    return [f"{node.resource}#{node.relation}", answer, node.via, *[shape(c) for c in node.children]]


def rels(*texts: str) -> tuple[Relationship, ...]:
    return tuple(parse_relationship(t) for t in texts)


@pytest.fixture
def engine(engine_from: Callable[..., Engine]) -> Engine:
    return engine_from(
        SCHEMA,
        "group:eng#member@user:ann",
        "doc:1#viewer@group:eng#member",
        "doc:1#folder@folder:f",
        "folder:f#parent@folder:root",
        "folder:root#viewer@user:tom",
        "doc:1#banned@user:bob",
        "doc:1#owner@user:bob",
        "doc:2#viewer@user:*",
        "doc:2#banned@user:bob",
        'doc:3#viewer@user:cat[on_day:{"allowed":"tue"}]',
        "doc:3#owner@user:cat",
    )


def test_a_subject_set_path_and_what_granted_it(engine: Engine) -> None:
    x = explain(engine, "doc:1", "view", "user:ann")
    assert x.allowed
    assert shape(x.trace) == [
        "doc:1#view", "has", "",
        ["doc:1#viewer", "has", "expression", ["group:eng#member", "has", "subject set"]],
        ["doc:1#banned", "no", "expression"],  # the exclusion asks once its base said yes
    ]
    viewer = x.trace.children[0]
    assert not viewer.is_permission and x.trace.is_permission
    assert viewer.children[0].through == parse_relationship("doc:1#viewer@group:eng#member")
    assert viewer.children[0].found == rels("group:eng#member@user:ann")
    assert x.granted_by() == rels("doc:1#viewer@group:eng#member", "group:eng#member@user:ann")
    assert all(n.subject == SubjectRef("user", "ann") for n in (x.trace, viewer, viewer.children[0]))
    assert x.trace.duration >= viewer.duration > 0
    assert "definition doc" in x.schema_text


def test_a_union_walks_its_parts_in_order_until_a_yes_through_arrows(engine: Engine) -> None:
    x = explain(engine, "doc:1", "view", "user:tom")
    assert shape(x.trace) == [
        "doc:1#view", "has", "",
        ["doc:1#viewer", "no", "expression", ["group:eng#member", "no", "subject set"]],
        ["doc:1#edit", "no", "expression", ["doc:1#owner", "no", "expression"]],
        ["folder:f#view", "has", "folder->view",
         ["folder:f#viewer", "no", "expression"],
         ["folder:root#view", "has", "parent->view", ["folder:root#viewer", "has", "expression"]]],
        ["doc:1#banned", "no", "expression"],
    ]
    assert x.granted_by() == rels("doc:1#folder@folder:f", "folder:f#parent@folder:root", "folder:root#viewer@user:tom")


def test_an_exclusion_that_removes_the_subject(engine: Engine) -> None:
    x = explain(engine, "doc:1", "view", "user:bob")
    assert not x.allowed
    assert shape(x.trace)[-1] == ["doc:1#banned", "has", "expression"]
    assert x.trace.children[-1].found == rels("doc:1#banned@user:bob")
    assert x.granted_by() == ()
    # a base that says no: the subtraction is not asked
    none = explain(engine, "doc:9", "view", "user:bob")
    assert [c.relation for c in none.trace.children] == ["viewer", "edit"]


def test_an_intersection_stops_at_the_first_no(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, "doc:1#owner@user:ann", "doc:1#approved@user:ann", "doc:2#approved@user:ann")
    both = explain(e, "doc:1", "approve", "user:ann")
    assert shape(both.trace) == [
        "doc:1#approve", "has", "", ["doc:1#owner", "has", "expression"], ["doc:1#approved", "has", "expression"],
    ]
    assert both.granted_by() == rels("doc:1#owner@user:ann", "doc:1#approved@user:ann")
    first_no = explain(e, "doc:2", "approve", "user:ann")
    assert shape(first_no.trace) == ["doc:2#approve", "no", "", ["doc:2#owner", "no", "expression"]]


def test_an_all_arrow_asks_every_target(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, "doc:1#folder@folder:a", "doc:1#folder@folder:b", "folder:a#viewer@user:ann",
                    "folder:b#viewer@user:ann", "folder:b#viewer@user:bob")
    x = explain(e, "doc:1", "every_folder", "user:ann")
    assert [(c.resource.id, c.via, c.result and c.result.permissionship) for c in x.trace.children] == [
        ("a", "folder.all(view)", HAS), ("b", "folder.all(view)", HAS)]
    assert x.granted_by() == rels(
        "doc:1#folder@folder:a", "folder:a#viewer@user:ann", "doc:1#folder@folder:b", "folder:b#viewer@user:ann")
    bob = explain(e, "doc:1", "every_folder", "user:bob")
    assert [c.resource.id for c in bob.trace.children] == ["a"]  # a no ends it


def test_a_wildcard_grant_is_the_relationship_found(engine: Engine) -> None:
    x = explain(engine, "doc:2", "view", "user:zed")
    assert x.allowed
    assert x.trace.children[0].found == rels("doc:2#viewer@user:*")
    assert x.granted_by() == rels("doc:2#viewer@user:*")
    assert not explain(engine, "doc:2", "view", "user:bob").allowed


def test_a_subject_set_is_a_member_of_itself(engine: Engine) -> None:
    x = explain(engine, "doc:1", "viewer", "group:eng#member")
    assert x.allowed and x.trace.children == ()
    assert x.trace.found == rels("doc:1#viewer@group:eng#member")
    itself = explain(engine, "group:eng", "member", "group:eng#member")
    assert itself.allowed and itself.trace.is_subject
    assert "the subject set itself" in itself.trace.render()


def test_caveats_evaluated_are_recorded(engine: Engine) -> None:
    rel = parse_relationship('doc:3#viewer@user:cat[on_day:{"allowed":"tue"}]')
    missing = explain(engine, "doc:3", "viewer", "user:cat")
    assert missing.result.permissionship is CONDITIONAL and missing.result.missing_parameters == ("day",)
    [caveat] = missing.trace.caveats
    assert (caveat.name, caveat.expression, caveat.result, caveat.missing_parameters) == (
        "on_day", "day == allowed", CONDITIONAL, ("day",))
    assert caveat.relationship == rel and dict(caveat.context) == {"allowed": "tue"}
    assert missing.granted_by() == ()

    yes = explain(engine, "doc:3", "viewer", "user:cat", context={"day": "tue"})
    assert yes.allowed and yes.trace.caveats[0].result is HAS
    assert dict(yes.trace.caveats[0].context) == {"day": "tue", "allowed": "tue"}
    assert yes.granted_by() == (rel,)

    no = explain(engine, "doc:3", "view", "user:cat", context={"day": "wed"})
    assert no.allowed  # the caveat says no, the owner says yes
    viewer, edit = no.trace.children[:2]
    assert viewer.caveats[0].result is NO and viewer.result is not None and not viewer.result.allowed
    assert no.granted_by() == rels("doc:3#owner@user:cat")


def test_expired_relationships_are_not_found(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, "doc:1#viewer@user:ann[expiration:2300-01-01T00:00:00Z]")
    assert explain(e, "doc:1", "viewer", "user:ann").trace.found[0].expiration is not None
    later = dt.datetime(2301, 1, 1, tzinfo=dt.timezone.utc)
    gone = explain(e, "doc:1", "viewer", "user:ann", now=later)
    assert not gone.allowed and gone.trace.found == ()


def test_a_data_cycle_is_cut_and_marked(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SCHEMA, "group:a#member@group:b#member", "group:b#member@group:a#member")
    x = explain(e, "group:a", "member", "user:ann")
    assert shape(x.trace) == [
        "group:a#member", "no", "", ["group:b#member", "no", "subject set", ["group:a#member", "no", "subject set"]]]
    assert x.trace.children[0].children[0].cycle
    assert "(cycle)" in x.trace.render(durations=False)


def test_the_depth_budget_raises_with_the_trace_walked(engine_from: Callable[..., Engine]) -> None:
    chain = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(10)]
    e = engine_from(SCHEMA, *chain, "group:g10#member@user:deep", max_depth=5)
    with pytest.raises(MaxDepthExceeded, match="maximum depth of 5") as raised:
        e.explain(ObjectRef("group", "g0"), "member", SubjectRef("user", "deep"))
    trace = partial_trace(raised.value)
    assert trace is not None and trace.result is None and "maximum depth" in trace.error
    path = [trace]
    while path[-1].children:
        path.append(path[-1].children[-1])
    assert [n.resource.id for n in path] == [f"g{i}" for i in range(7)]  # g6 is the node past the budget
    assert all(n.result is None for n in path)
    assert trace.render().startswith("! group:g0#member")
    assert explain(e, "group:g8", "member", "user:deep").allowed


def test_the_deadline_is_kept(engine: Engine) -> None:
    with pytest.raises(DeadlineExceeded):
        engine.explain(ObjectRef("doc", "1"), "view", SubjectRef("user", "ann"), deadline=time.monotonic() - 1)


def test_unknown_names_are_refused_as_check_refuses_them(engine: Engine) -> None:
    with pytest.raises(UnknownRelation):
        engine.explain(ObjectRef("doc", "1"), "nope", SubjectRef("user", "ann"))


def test_a_traced_check_neither_reads_nor_fills_the_cache(engine: Engine) -> None:
    before = engine.statistics()
    engine.explain(ObjectRef("doc", "1"), "view", SubjectRef("user", "ann"))
    after = engine.statistics()
    assert (after.cache_hits, after.cache_misses, after.cache_size) == (
        before.cache_hits, before.cache_misses, before.cache_size)
    engine.check(ObjectRef("doc", "1"), "view", SubjectRef("user", "ann"))  # now it is cached
    x = engine.explain(ObjectRef("doc", "1"), "view", SubjectRef("user", "ann"))
    assert x.trace.children  # still walked
    assert engine.statistics().cache_hits == after.cache_hits


def test_render_is_an_indented_tree(engine: Engine) -> None:
    text = explain(engine, "doc:1", "view", "user:ann").trace.render(durations=False)
    assert text.splitlines() == [
        "✓ doc:1#view (permission)",
        "  ✓ doc:1#viewer (relation, via expression)",
        "    ✓ group:eng#member (relation, via subject set)",
        "      @ group:eng#member@user:ann",
        "  ⨉ doc:1#banned (relation, via expression)",
    ]


@settings(max_examples=40, deadline=None, suppress_health_check=FIXTURE_OK)
@given(world=worlds())
def test_explain_answers_as_check_on_random_worlds(
    engine_from: Callable[..., Engine], world: tuple[str, list[Relationship]]
) -> None:
    schema_text, relationships = world
    e = engine_from(schema_text, *map(str, relationships), cache_size=0)
    subjects = [SubjectRef("user", u) for u in USERS + ["fresh"]] + [SubjectRef("group", g, "member") for g in GROUPS]
    for doc in DOCS:
        for name in ("viewer", "perm0", "perm1", "perm2"):
            for subject in subjects:
                x = e.explain(ObjectRef("doc", doc), name, subject)
                want = e.check(ObjectRef("doc", doc), name, subject).result
                assert x.result == want, f"{schema_text}\n{[str(r) for r in relationships]}\ndoc:{doc}#{name}@{subject}"
                if x.allowed:  # a yes rests on relationships (worlds() have no `self`)
                    assert x.granted_by(), x.trace.render()
