"""Check agrees with the brute-force reference evaluator on random schemas and relationships."""

from __future__ import annotations

from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine.model import ObjectRef, Relationship, SubjectRef
from relengine.schema import compile_schema
from relengine.service import Engine
from relengine.storage import memory
from relengine.storage.base import SMALL_OBJECT

from .reference import Reference

# engine_from is a factory (each example makes its own engine), so a function-scoped fixture
# under @given carries nothing over between examples.
FIXTURE_OK = [HealthCheck.too_slow, HealthCheck.function_scoped_fixture]

SUBJECT_TYPES = ["user", "user:*", "group#member"]
DOC_RELATIONS = ["viewer", "editor", "banned"]
USERS = ["u0", "u1", "u2"]
GROUPS = ["g0", "g1", "g2"]
DOCS = ["d0", "d1", "d2", "d3"]


@st.composite
def expressions(draw: st.DrawFn, names: list[str], arrow_targets: list[str], depth: int = 0) -> str:
    leaf = st.one_of(
        st.sampled_from(names),
        st.sampled_from(arrow_targets).map(lambda t: f"parent->{t}"),
        st.sampled_from(arrow_targets).map(lambda t: f"parent.all({t})"),
        st.just("nil"),
    )
    if depth >= 2 or draw(st.booleans()):
        return draw(leaf)
    op = draw(st.sampled_from(["+", "&", "-"]))
    left = draw(expressions(names, arrow_targets, depth + 1))
    right = draw(expressions(names, arrow_targets, depth + 1))
    return f"({left} {op} {right})"


@st.composite
def worlds(draw: st.DrawFn, nested: bool = True) -> tuple[str, list[Relationship]]:
    """A random schema and relationships; ``nested=False``: groups of users only (``member:
    user``, a relation of whole subjects, which ends a walk)."""
    allowed = {
        rel: draw(st.lists(st.sampled_from(SUBJECT_TYPES), min_size=1, max_size=3, unique=True))
        for rel in DOC_RELATIONS
    }
    member = "user | group#member" if nested else "user"
    lines = ["definition user {}", f"definition group {{\n    relation member: {member}\n}}", "definition doc {", "    relation parent: doc"]
    for rel, types in allowed.items():
        lines.append(f"    relation {rel}: {' | '.join(types)}")
    permissions: list[str] = []
    for index in range(3):
        name = f"perm{index}"
        # Each permission uses relations and earlier permissions; arrows may also reach
        # itself on the parent (data parents are acyclic, so recursion is well-founded).
        expr = draw(expressions(DOC_RELATIONS + permissions, DOC_RELATIONS + permissions + [name]))
        lines.append(f"    permission {name} = {expr}")
        permissions.append(name)
    lines.append("}")
    schema = "\n".join(lines)

    rels: list[Relationship] = []
    for i, doc in enumerate(DOCS):
        for parent in draw(st.lists(st.sampled_from(DOCS[:i] or ["d0"]), max_size=2, unique=True)):
            if parent != doc:
                rels.append(Relationship(ObjectRef("doc", doc), "parent", SubjectRef("doc", parent)))
        for rel, types in allowed.items():
            for kind in draw(st.lists(st.sampled_from(types), max_size=3)):
                if kind == "user":
                    subject = SubjectRef("user", draw(st.sampled_from(USERS)))
                elif kind == "user:*":
                    subject = SubjectRef("user", "*")
                else:
                    subject = SubjectRef("group", draw(st.sampled_from(GROUPS)), "member")
                rels.append(Relationship(ObjectRef("doc", doc), rel, subject))
    for group in GROUPS:
        for member in draw(st.lists(st.sampled_from(USERS + GROUPS if nested else USERS), max_size=3)):
            subject = SubjectRef("user", member) if member.startswith("u") else SubjectRef("group", member, "member")
            if subject != SubjectRef("group", group, "member"):
                rels.append(Relationship(ObjectRef("group", group), "member", subject))
    unique = {r.key: r for r in rels}
    return schema, list(unique.values())


@pytest.mark.slow
@pytest.mark.parametrize("small", [SMALL_OBJECT, 1], ids=["read-whole", "by-index"])
@settings(max_examples=150, deadline=None, suppress_health_check=FIXTURE_OK)
@given(world=worlds())
def test_check_agrees_with_reference(engine_from: Callable[..., Engine], small: int, world: tuple[str, list[Relationship]]) -> None:
    """Both ways of reading an object: its whole value (small objects), and point reads and
    typed scans (objects over the small-object limit, here forced down to one relationship)."""
    schema_text, rels = world
    schema = compile_schema(schema_text)
    engine = engine_from(schema_text, *map(str, rels))
    saved, memory.SMALL_OBJECT = memory.SMALL_OBJECT, small  # type: ignore[misc]
    try:
        _check_all(engine, schema, schema_text, rels)
    finally:
        memory.SMALL_OBJECT = saved  # type: ignore[misc]


@pytest.mark.slow
@pytest.mark.parametrize("small", [SMALL_OBJECT, 1], ids=["read-whole", "by-index"])
@settings(max_examples=100, deadline=None, suppress_health_check=FIXTURE_OK)
@given(world=worlds(nested=False))
def test_uncached_check_through_groups_of_users_agrees_with_reference(
    engine_from: Callable[..., Engine], small: int, world: tuple[str, list[Relationship]]
) -> None:
    """Without the cache, a subject set naming a relation of whole subjects (``member: user``)
    is answered by one search of the group's value, not a sub-question (``LocalChecker.leaf``);
    on small and large documents."""
    schema_text, rels = world
    schema = compile_schema(schema_text)
    engine = engine_from(schema_text, *map(str, rels), cache_size=0)
    saved, memory.SMALL_OBJECT = memory.SMALL_OBJECT, small  # type: ignore[misc]
    try:
        _check_all(engine, schema, schema_text, rels)
    finally:
        memory.SMALL_OBJECT = saved  # type: ignore[misc]


def _check_all(engine: Engine, schema: Any, schema_text: str, rels: list[Relationship]) -> None:
    subjects = [SubjectRef("user", u) for u in USERS + ["fresh"]] + [SubjectRef("group", g, "member") for g in GROUPS]
    subjects.append(SubjectRef("doc", "d1", "viewer"))
    reference = Reference(schema, rels, set(subjects))
    assert reference.converged
    for doc in DOCS:
        for name in schema.definitions["doc"].members:
            for subject in subjects:
                got = engine.check(ObjectRef("doc", doc), name, subject).allowed
                want = reference.check(ObjectRef("doc", doc), name, subject)
                assert got == want, f"{schema_text}\n{[str(r) for r in rels]}\ndoc:{doc}#{name}@{subject}: engine {got}, reference {want}"


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=FIXTURE_OK)
@given(worlds())
def test_lookups_agree_with_check_and_reference(engine_from: Callable[..., Engine], world: tuple[str, list[Relationship]]) -> None:
    """check(r, p, s) holds exactly when r is in lookup_resources(p, s) and s in lookup_subjects(r, p)."""
    schema_text, rels = world
    schema = compile_schema(schema_text)
    engine = engine_from(schema_text, *map(str, rels))
    subjects = [SubjectRef("user", u) for u in USERS + ["fresh"]] + [SubjectRef("group", g, "member") for g in GROUPS]
    reference = Reference(schema, rels, set(subjects))
    for name in schema.definitions["doc"].members:
        for subject in subjects:
            found = {r.resource_id for r in engine.lookup_resources("doc", name, subject)}
            want = {d for d in DOCS if reference.check(ObjectRef("doc", d), name, subject)}
            assert found == want, f"{schema_text}\n{[str(r) for r in rels]}\nlookup_resources(doc#{name}, {subject})"
        for doc in DOCS:
            for stype, srel in (("user", None), ("group", "member")):
                results = list(engine.lookup_subjects(ObjectRef("doc", doc), name, stype, subject_relation=srel))
                wildcard = next((r for r in results if r.subject.id == "*"), None)
                ids = {r.subject.id for r in results if r.subject.id != "*"}
                for subject in subjects:
                    if subject.type != stype:
                        continue
                    has = subject.id in ids or (
                        wildcard is not None and subject.id not in {e.id for e in wildcard.excluded}
                    )
                    want_has = reference.check(ObjectRef("doc", doc), name, subject)
                    assert has == want_has, f"{schema_text}\n{[str(r) for r in rels]}\nlookup_subjects(doc:{doc}#{name}, {stype}) for {subject}"
