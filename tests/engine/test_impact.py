"""engine/impact.py through Engine.schema_impact and Engine.write_impact, against brute force:
every resource, permission and subject of a small store asked under both sides."""

from __future__ import annotations

import datetime as _dt
import itertools
import pathlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine import Engine
from relengine.engine.build import build_checker
from relengine.engine.dispatch import HAS, NO
from relengine.engine.impact import level
from relengine.results import AccessChange
from relengine.errors import AlreadyExists
from relengine.model import ObjectRef, Relationship, SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.schema import compile_schema
from relengine.schema.types import CompiledSchema, Permission
from relengine.storage.base import Reader
from relengine.storage.memory import MemoryStore

NOW = _dt.datetime(2030, 1, 1, tzinfo=_dt.timezone.utc)
FRESH = "zz_fresh"  # an id no relationship names: it answers as the wildcard does


def _ids(reader: Reader, schemas: list[CompiledSchema]) -> dict[str, set[str]]:
    from relengine.model import RelationshipFilter

    ids: dict[str, set[str]] = {}
    for t in sorted({d for s in schemas for d in s.definitions}):
        for rel in reader.read(RelationshipFilter(resource_type=t)):
            ids.setdefault(rel.resource.type, set()).add(rel.resource.id)
            if rel.subject.id != "*":
                ids.setdefault(rel.subject.type, set()).add(rel.subject.id)
    return ids


def brute_force(old: CompiledSchema, new: CompiledSchema, before: Reader, after: Reader) -> set[tuple[str, bool]]:
    """Every (resource, permission, subject) asked under both sides; a subject whose answers
    are the fresh id's on both sides is covered by the wildcard entry."""
    checkers = [build_checker(s, r, max_depth=50, now=NOW) for s, r in ((old, before), (new, after))]
    ids: dict[str, set[str]] = {}
    for reader in (before, after):
        for t, found in _ids(reader, [old, new]).items():
            ids.setdefault(t, set()).update(found)
    types = sorted({d for s in (old, new) for d in s.definitions})
    out: set[tuple[str, bool]] = set()

    def answer(side: int, t: str, rid: str, perm: str, stype: str, sid: str) -> object:
        schema = (old, new)[side]
        if schema.member(t, perm) is None or stype not in schema.definitions:
            return NO
        return checkers[side].check(t, rid, perm, SubjectRef(stype, sid))

    for t in types:
        perms = sorted({n for s in (old, new) if t in s.definitions for n, m in s.definitions[t].members.items()
                        if isinstance(m, Permission)})
        for rid, perm, stype in itertools.product(sorted(ids.get(t, ())), perms, types):
            fresh = [answer(i, t, rid, perm, stype, FRESH) for i in (0, 1)]
            if level(fresh[0]) != level(fresh[1]):  # type: ignore[arg-type]
                out.add((f"{t}:{rid}#{perm}@{stype}:*", level(fresh[1]) > level(fresh[0])))  # type: ignore[arg-type]
            for sid in sorted(ids.get(stype, ())):
                a, b = (answer(i, t, rid, perm, stype, sid) for i in (0, 1))
                if level(a) != level(b) and (a, b) != tuple(fresh):  # type: ignore[arg-type]
                    out.add((f"{t}:{rid}#{perm}@{stype}:{sid}", level(b) > level(a)))  # type: ignore[arg-type]
    return out


def _found(changes: list[AccessChange]) -> set[tuple[str, bool]]:
    as_list = [(str(c), c.gained) for c in changes]
    assert len(as_list) == len(set(as_list)), "each change is reported once"
    return set(as_list)


def _engine(schema: str, rels: list[str]) -> Engine:
    engine = Engine(MemoryStore())
    engine.write_schema(schema)
    if rels:
        engine.touch([parse_relationship(r) for r in rels])
    return engine


def _schema_case(old_text: str, new_text: str, rels: list[str]) -> tuple[set[tuple[str, bool]], set[tuple[str, bool]]]:
    engine = _engine(old_text, rels)
    found = _found(list(engine.schema_impact(old_text, new_text, now=NOW)))
    reader = engine.store.snapshot()
    expected = brute_force(compile_schema(old_text), compile_schema(new_text), reader, reader)
    return found, expected


GTM = (pathlib.Path(__file__).resolve().parents[2] / "schemas" / "google_tag_manager.zed").read_text(encoding="utf-8")
GTM_RELS = [
    "account:acme#admin@user:ann", "account:acme#admin@group:ops#member", "group:ops#member@user:olga",
    "account:acme#member@user:mo", "container:web#account@account:acme", "container:web#publisher@user:pat",
    "container:web#reader@user:rex", "container:app#account@account:acme", "container:app#editor@user:ed",
]


def test_a_permission_narrowed_loses_its_holders_and_their_dependents() -> None:
    new = GTM.replace("permission publish = publisher + account->administer", "permission publish = publisher")
    found, expected = _schema_case(GTM, new, GTM_RELS)
    assert found == expected
    lost = {text for text, gained in found if not gained}
    assert "container:web#publish@user:ann" in lost and "container:web#read@user:olga" in lost
    assert "container:web#publish@user:pat" not in lost  # still the publisher
    assert not any(gained for _, gained in found)


def test_an_unchanged_schema_changes_nothing() -> None:
    found, expected = _schema_case(GTM, GTM, GTM_RELS)
    assert found == expected == set()


def test_a_wildcard_is_reported_as_itself() -> None:
    old = "definition user {}\ndefinition doc {\n relation viewer: user | user:*\n relation banned: user\n permission view = viewer\n}"
    new = old.replace("permission view = viewer", "permission view = viewer - banned")
    found, expected = _schema_case(old, new, ["doc:1#viewer@user:*", "doc:1#banned@user:bob", "doc:2#viewer@user:ann"])
    assert found == expected == {("doc:1#view@user:bob", False)}
    gone = old.replace("permission view = viewer", "permission view = nil")
    found, expected = _schema_case(old, gone, ["doc:1#viewer@user:*", "doc:1#viewer@user:ann"])
    assert found == expected == {("doc:1#view@user:*", False)}


def test_write_impact_reports_without_writing() -> None:
    engine = _engine(GTM, GTM_RELS)
    head = engine.head_revision()
    update = RelationshipUpdate(Operation.DELETE, parse_relationship("account:acme#admin@group:ops#member"))
    found = engine.write_impact([update], now=NOW)
    assert engine.head_revision() == head
    assert ("container:web#publish@user:olga", False) in _found(found)
    assert ("account:acme#administer@user:olga", False) in _found(found)
    assert all(c.subject_id == "olga" for c in found)
    assert engine.check(ObjectRef("container", "web"), "publish", SubjectRef("user", "olga")).allowed
    with pytest.raises(AlreadyExists):  # the write's own checks apply
        engine.write_impact([RelationshipUpdate(Operation.CREATE, parse_relationship(GTM_RELS[0]))])
    assert engine.head_revision() == head


# -- the property: random schemas, edits and stores ---------------------------------------------------

TYPES = ["user", "user:*", "group#member"]
RELATIONS = ["viewer", "editor", "banned"]


@st.composite
def expressions(draw: st.DrawFn, leaves: list[str], depth: int = 2) -> str:
    if depth == 0 or draw(st.booleans()):
        return draw(st.sampled_from(leaves))
    op = draw(st.sampled_from([" + ", " & ", " - "]))
    return f"({draw(expressions(leaves, depth - 1))}{op}{draw(expressions(leaves, depth - 1))})"


@st.composite
def schema_parts(draw: st.DrawFn) -> dict[str, str]:
    parts = {r: " | ".join(draw(st.lists(st.sampled_from(TYPES), min_size=1, max_size=3, unique=True))) for r in RELATIONS}
    parts["folder_view"] = draw(expressions(["viewer", "parent->view", "nil"], 1))
    parts["pone"] = draw(expressions(["viewer", "editor", "banned", "parent->view"]))
    parts["ptwo"] = draw(expressions(["viewer", "editor", "banned", "pone", "parent->view"]))
    parts["pthree"] = draw(st.one_of(st.just(""), expressions(["viewer", "ptwo", "pone"], 1)))
    return parts


def render(parts: dict[str, str]) -> str:
    extra = f"\n    permission pthree = {parts['pthree']}" if parts["pthree"] else ""
    return f"""definition user {{}}
definition group {{
    relation member: user | group#member
}}
definition folder {{
    relation viewer: user | group#member
    relation parent: folder
    permission view = {parts['folder_view']}
}}
definition doc {{
    relation viewer: {parts['viewer']}
    relation editor: {parts['editor']}
    relation banned: {parts['banned']}
    relation parent: folder
    permission pone = {parts['pone']}
    permission ptwo = {parts['ptwo']}{extra}
}}
"""


@st.composite
def edits(draw: st.DrawFn, parts: dict[str, str]) -> dict[str, str]:
    new = dict(parts)
    for key in draw(st.lists(st.sampled_from(sorted(parts)), min_size=1, max_size=2, unique=True)):
        new[key] = draw(schema_parts())[key]
    return new


def _relationships(draw: st.DrawFn, parts: dict[str, str]) -> list[str]:
    pool = ["folder:f0#viewer@user:u0", "folder:f1#viewer@group:g0#member", "folder:f1#parent@folder:f0",
            "folder:f0#parent@folder:f1", "group:g0#member@user:u1", "group:g1#member@group:g0#member",
            "group:g1#member@user:u2", "doc:d0#parent@folder:f1", "doc:d1#parent@folder:f0"]
    for rel in RELATIONS:
        allowed = parts[rel].split(" | ")
        for doc in ("d0", "d1", "d2"):
            if "user" in allowed:
                pool += [f"doc:{doc}#{rel}@user:u{i}" for i in range(3)]
            if "user:*" in allowed:
                pool.append(f"doc:{doc}#{rel}@user:*")
            if "group#member" in allowed:
                pool += [f"doc:{doc}#{rel}@group:g{i}#member" for i in range(2)]
    return draw(st.lists(st.sampled_from(pool), max_size=14, unique=True))


@pytest.mark.slow
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_schema_impact_matches_brute_force(data: st.DataObject) -> None:
    parts = data.draw(schema_parts())
    new_parts = data.draw(edits(parts))
    rels = _relationships(data.draw, parts)
    found, expected = _schema_case(render(parts), render(new_parts), rels)
    assert found == expected


@pytest.mark.slow
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_write_impact_matches_brute_force(data: st.DataObject) -> None:
    parts = data.draw(schema_parts())
    text = render(parts)
    rels = _relationships(data.draw, parts)
    engine = _engine(text, rels)
    changes = _relationships(data.draw, parts)[:4]
    ops = [data.draw(st.sampled_from([Operation.TOUCH, Operation.DELETE])) for _ in changes]
    updates = [RelationshipUpdate(op, parse_relationship(r)) for op, r in zip(ops, changes)]
    found = _found(engine.write_impact(updates, now=NOW))
    schema = compile_schema(text)
    before = engine.store.snapshot()
    other = Engine(MemoryStore())
    other.write_schema(text)
    if rels:
        other.touch([parse_relationship(r) for r in rels])
    other.write(updates)
    after = other.store.snapshot()
    assert found == brute_force(schema, schema, before, after)


def test_a_caveat_change_moves_answers_between_has_conditional_and_no() -> None:
    old = """caveat on_day(day string) {
    day == "tuesday"
}
definition user {}
definition doc {
    relation viewer: user with on_day
    permission view = viewer
}"""
    new = old.replace('day == "tuesday"', 'day == "monday"')
    rels = ['doc:1#viewer@user:tue[on_day:{"day":"tuesday"}]', 'doc:1#viewer@user:mon[on_day:{"day":"monday"}]',
            "doc:1#viewer@user:open[on_day]"]
    found, expected = _schema_case(old, new, rels)
    assert found == expected == {("doc:1#view@user:tue", False), ("doc:1#view@user:mon", True)}
