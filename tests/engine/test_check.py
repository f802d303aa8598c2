"""Check and Expand on hand-written worlds: recursion, cycles, depth, wildcards, expiration."""

from __future__ import annotations

import datetime as dt
from typing import Callable

import pytest

from relengine.errors import (
    InvalidRelationship,
    MaxDepthExceeded,
    SchemaNotFound,
    UnknownDefinition,
    UnknownRelation,
)
from relengine.model import ObjectRef, SubjectRef, parse_relationship, parse_subject
from relengine.results import CheckRequest, Permissionship
from relengine.service import Engine
from relengine.storage.memory import MemoryStore

SCHEMA = """
definition user {}

definition group {
    relation member: user | group#member
}

definition account {
    relation admin: user | group#member
}

definition folder {
    relation parent: folder
    relation viewer: user | user:* | group#member
    permission view = viewer + parent->view
}

definition container {
    relation account: account
    relation reader: user | group#member
    relation editor: user | group#member
    relation approver: user
    relation publisher: user
    relation banned: user
    relation folder: folder
    permission publish = publisher + account->admin
    permission approve = approver + publish
    permission edit = editor + approve
    permission read = (reader + edit + folder->view) - banned
    permission all_folders = folder.all(view)
}
"""

SMALL = "definition user {}\ncaveat small(n int) { n < 3 }\ndefinition doc {\n relation viewer: user with small\n}"


@pytest.fixture
def engine(engine_from: Callable[..., Engine]) -> Engine:
    return engine_from(SCHEMA)


def write(engine: Engine, *texts: str) -> None:
    engine.touch([parse_relationship(t) for t in texts])


def allowed(engine: Engine, text: str) -> bool:
    rel = parse_relationship(text)
    return engine.check(rel.resource, rel.relation, rel.subject).allowed


def test_account_admin_flows_down_the_chain(engine: Engine) -> None:
    write(engine, "container:web#account@account:acme", "account:acme#admin@user:ann")
    for permission in ("publish", "approve", "edit", "read"):
        assert allowed(engine, f"container:web#{permission}@user:ann")
    assert not allowed(engine, "container:web#publish@user:bob")
    assert not allowed(engine, "container:other#read@user:ann")


def test_implication_stops_where_the_role_does(engine: Engine) -> None:
    write(engine, "container:web#editor@user:ed")
    assert allowed(engine, "container:web#edit@user:ed")
    assert allowed(engine, "container:web#read@user:ed")
    assert not allowed(engine, "container:web#approve@user:ed")


def test_exclusion_removes_banned(engine: Engine) -> None:
    write(engine, "container:web#reader@user:ann", "container:web#banned@user:ann", "container:web#reader@user:bob")
    assert not allowed(engine, "container:web#read@user:ann")
    assert allowed(engine, "container:web#read@user:bob")


def test_nested_groups_and_data_cycles_terminate(engine: Engine) -> None:
    write(
        engine,
        "group:a#member@group:b#member",
        "group:b#member@group:c#member",
        "group:c#member@group:a#member",  # a cycle in the data
        "group:c#member@user:carol",
        "container:web#reader@group:a#member",
    )
    assert allowed(engine, "container:web#read@user:carol")
    assert not allowed(engine, "container:web#read@user:nobody")
    assert allowed(engine, "group:b#member@user:carol")


def test_recursive_folders_and_all(engine: Engine) -> None:
    write(
        engine,
        "folder:root#viewer@user:ann",
        "folder:mid#parent@folder:root",
        "folder:leaf#parent@folder:mid",
        "folder:other#viewer@user:bob",
        "container:web#folder@folder:leaf",
    )
    assert allowed(engine, "container:web#read@user:ann")
    assert allowed(engine, "container:web#all_folders@user:ann")
    write(engine, "container:web#folder@folder:other")
    assert allowed(engine, "container:web#read@user:bob")
    assert not allowed(engine, "container:web#all_folders@user:ann")  # not every folder grants it


def test_wildcard_matches_objects_but_never_subject_sets(engine: Engine) -> None:
    write(engine, "folder:pub#viewer@user:*")
    assert allowed(engine, "folder:pub#view@user:anyone")
    assert not allowed(engine, "folder:pub#view@group:eng#member")


def test_userset_is_member_of_itself(engine: Engine) -> None:
    assert allowed(engine, "container:web#edit@container:web#edit")
    assert not allowed(engine, "container:web#edit@container:web#read")


def test_depth_limit_raises_clear_error(engine_from: Callable[..., Engine]) -> None:
    chain = [f"group:g{i}#member@group:g{i + 1}#member" for i in range(10)]
    e = engine_from(SCHEMA, *chain, "group:g10#member@user:deep", max_depth=5)
    with pytest.raises(MaxDepthExceeded, match="maximum depth of 5"):
        allowed(e, "group:g0#member@user:deep")
    assert allowed(e, "group:g8#member@user:deep")


@pytest.mark.slow
def test_a_chain_of_a_thousand_permissions_is_checked(engine_from: Callable[..., Engine]) -> None:
    """Each permission names the next: the plan inlines a few at a time (not one recursion per
    permission) and the rest are sub-questions within the depth budget."""
    chain = "".join(f"    permission perm{i} = perm{i + 1}\n" for i in range(1200))
    e = engine_from(
        "definition user {}\ndefinition doc {\n    relation viewer: user\n" + chain + "    permission perm1200 = viewer\n}\n",
        "doc:1#viewer@user:ann",
    )
    assert allowed(e, "doc:1#perm0@user:ann")
    assert not allowed(e, "doc:1#perm0@user:bob")
    assert allowed(e, "doc:1#viewer@user:ann")


def test_expired_relationships_are_absent(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(
        "use expiration\ndefinition user {}\ndefinition doc {\n relation viewer: user with expiration\n}",
        "doc:a#viewer@user:old[expiration:2020-01-01T00:00:00Z]", "doc:a#viewer@user:new[expiration:2300-01-01T00:00:00Z]",
    )
    assert not allowed(e, "doc:a#viewer@user:old")
    assert allowed(e, "doc:a#viewer@user:new")
    later = dt.datetime(2301, 1, 1, tzinfo=dt.timezone.utc)
    assert not e.check(ObjectRef("doc", "a"), "viewer", SubjectRef("user", "new"), now=later).allowed


def test_caveated_relationships_give_three_valued_answers(engine_from: Callable[..., Engine]) -> None:
    e = engine_from(SMALL, "doc:a#viewer@user:ann[small]", 'doc:a#viewer@user:bob[small:{"n": 7}]')
    ann, bob = SubjectRef("user", "ann"), SubjectRef("user", "bob")
    conditional = e.check(ObjectRef("doc", "a"), "viewer", ann)
    assert conditional.permissionship is Permissionship.CONDITIONAL_PERMISSION
    assert conditional.result.missing_parameters == ("n",)
    assert e.check(ObjectRef("doc", "a"), "viewer", ann, context={"n": 1}).allowed
    assert not e.check(ObjectRef("doc", "a"), "viewer", ann, context={"n": 5}).allowed
    # the relationship's own context wins over the request's
    assert not e.check(ObjectRef("doc", "a"), "viewer", bob, context={"n": 1}).allowed


def test_writes_are_validated_against_the_schema(engine: Engine) -> None:
    with pytest.raises(InvalidRelationship, match="allowed: user, user:\\*, group#member"):
        write(engine, "folder:x#viewer@account:acme")
    with pytest.raises(InvalidRelationship, match="is a permission"):
        write(engine, "container:x#read@user:ann")
    with pytest.raises(UnknownRelation):
        write(engine, "container:x#nope@user:ann")
    with pytest.raises(UnknownDefinition):
        write(engine, "nothing:x#viewer@user:ann")
    with pytest.raises(InvalidRelationship, match="wildcard|not allowed"):
        write(engine, "container:x#reader@user:*")


def test_unknown_names_in_checks(engine: Engine) -> None:
    with pytest.raises(UnknownDefinition):
        engine.check(ObjectRef("nothing", "x"), "view", SubjectRef("user", "a"))
    with pytest.raises(UnknownRelation):
        engine.check(ObjectRef("folder", "x"), "nope", SubjectRef("user", "a"))


def test_check_before_schema() -> None:
    with pytest.raises(SchemaNotFound):
        Engine(MemoryStore()).check(ObjectRef("doc", "x"), "view", SubjectRef("user", "a"))


def test_expand_tree(engine: Engine) -> None:
    write(engine, "container:web#reader@user:ann", "container:web#editor@group:eng#member", "container:web#banned@user:bob")
    tree, _ = engine.expand(ObjectRef("container", "web"), "read")
    assert tree.kind == "exclusion"
    union, banned = tree.children
    assert union.kind == "union"
    assert banned.subjects == (SubjectRef("user", "bob"),)
    reader_leaf = union.children[0]
    assert reader_leaf.relation == "reader" and reader_leaf.subjects == (SubjectRef("user", "ann"),)
    text = tree.render()
    assert "container:web#editor -> group:eng#member" in text


def test_answers_carry_revision(engine: Engine) -> None:
    write(engine, "container:web#reader@user:ann")
    first = engine.check(ObjectRef("container", "web"), "read", parse_subject("user:ann"))
    write(engine, "container:web#banned@user:ann")
    second = engine.check(ObjectRef("container", "web"), "read", parse_subject("user:ann"))
    assert second.revision > first.revision
    assert first.allowed and not second.allowed
    again = engine.check(ObjectRef("container", "web"), "read", parse_subject("user:ann"), at=first.revision)
    assert again.allowed and again.revision == first.revision


def test_caveat_context_is_checked_when_written(engine_from: Callable[..., Engine]) -> None:
    from relengine.errors import InvalidArgument

    e = engine_from(SMALL)
    with pytest.raises(InvalidArgument, match="n"):
        write(e, 'doc:a#viewer@user:ann[small:{"n": "lots"}]')
    with pytest.raises(InvalidArgument, match="other"):
        write(e, 'doc:a#viewer@user:ann[small:{"other": 1}]')
    write(e, 'doc:a#viewer@user:ann[small:{"n": 2}]')
    assert allowed(e, "doc:a#viewer@user:ann")


LEAF_GROUPS = """
use expiration
definition user {}
caveat small(n int) { n < 3 }
definition group {
    relation member: user | user with small | user with expiration
}
definition doc {
    relation viewer: user | group#member
    relation editor: user
    permission view = viewer + editor
}
"""


@pytest.mark.parametrize("size", [1, 40], ids=["small-doc", "large-doc"])
@pytest.mark.parametrize("cache_size", [0, 1000])
def test_subject_sets_of_whole_subject_relations_keep_caveats_and_expirations(
    engine_from: Callable[..., Engine], size: int, cache_size: int
) -> None:
    """Without the cache, a group of users only is searched in place (``LocalChecker.leaf``)
    where its members are plain; one with a caveated or expiring member is walked as before."""
    past = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    future = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    texts = ["group:plain#member@user:ann", "group:mixed#member@user:bob", "group:mixed#member@user:cat[small]",
             f"group:mixed#member@user:dan[expiration:{past}]", f"group:mixed#member@user:eve[expiration:{future}]",
             "doc:d#viewer@group:plain#member", "doc:d#viewer@group:mixed#member", "doc:d#editor@user:fay"]
    texts += [f"doc:d#viewer@user:v{i}" for i in range(size)]
    engine = engine_from(LEAF_GROUPS, *texts, cache_size=cache_size)
    doc = ObjectRef("doc", "d")

    def view(user: str, **context: int) -> Permissionship:
        return engine.check(doc, "view", SubjectRef("user", user), context=context or None).permissionship

    assert view("ann") == view("bob") == view("eve") == view("fay") == view("v0") == Permissionship.HAS_PERMISSION
    assert view("dan") == view("nobody") == Permissionship.NO_PERMISSION
    assert view("cat") == Permissionship.CONDITIONAL_PERMISSION
    assert view("cat", n=1) == Permissionship.HAS_PERMISSION and view("cat", n=5) == Permissionship.NO_PERMISSION
    # A bulk check meets the groups again and again (read whole after the first point read).
    users = ["ann", "bob", "cat", "dan", "eve", "fay", "v0", "nobody"] * 2
    answers = engine.bulk_check([CheckRequest(doc, "view", SubjectRef("user", u)) for u in users]).results
    assert [getattr(a, "permissionship", a) for a in answers] == [view(u) for u in users]
