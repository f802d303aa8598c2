"""Three-valued answers agree with a brute-force evaluator that enumerates caveat outcomes.

Each caveated relationship carries its own caveat (``cK(pK bool) { pK }``), so every
assignment of true/false to the caveats is one request context. For each check:
- with every parameter given, the engine's answer equals the reference on that assignment;
- with none given, HAS means HAS under every assignment, NO means NO under every assignment,
  and CONDITIONAL names only parameters of caveats the world actually uses.
"""

from __future__ import annotations

import itertools
from typing import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relengine.model import CaveatRef, ObjectRef, Relationship, SubjectRef
from relengine.results import Permissionship
from relengine.schema import compile_schema
from relengine.service import Engine

from .reference import Reference
from .test_check_property import FIXTURE_OK, expressions

CAVEATS = ["cav0", "cav1", "cav2"]
USERS = ["u0", "u1"]
GROUPS = ["g0", "g1"]
DOCS = ["d0", "d1", "d2"]
USER_TYPES = "user | " + " | ".join(f"user with {c}" for c in CAVEATS)


def _param(caveat: str) -> str:
    return "flag" + caveat[-1]


@st.composite
def caveated_worlds(draw: st.DrawFn) -> tuple[str, list[Relationship]]:
    lines = ["definition user {}"]
    lines += [f"caveat {c}({_param(c)} bool) {{\n    {_param(c)}\n}}" for c in CAVEATS]
    lines.append(f"definition group {{\n    relation member: {USER_TYPES} | group#member\n}}")
    lines.append("definition doc {\n    relation parent: doc | doc with cav0")
    for rel in ("viewer", "editor", "banned"):
        lines.append(f"    relation {rel}: {USER_TYPES} | group#member | group#member with cav1")
    permissions: list[str] = []
    for index in range(3):
        name = f"perm{index}"
        rels = ["viewer", "editor", "banned"]
        expr = draw(expressions(rels + permissions, rels + permissions + [name]))
        lines.append(f"    permission {name} = {expr}")
        permissions.append(name)
    lines.append("}")

    unused = list(CAVEATS)
    rels: dict[tuple[str, ...], Relationship] = {}

    def caveat() -> CaveatRef | None:
        if unused and draw(st.booleans()):
            return CaveatRef(unused.pop(0))
        return None

    for i, doc in enumerate(DOCS):
        if i and draw(st.booleans()):
            cav = caveat()
            if cav is None or cav.name == "cav0":
                r = Relationship(ObjectRef("doc", doc), "parent", SubjectRef("doc", DOCS[i - 1]), cav)
                rels[r.key] = r
        for rel in ("viewer", "editor", "banned"):
            for _ in range(draw(st.integers(0, 2))):
                if draw(st.booleans()):
                    subject = SubjectRef("user", draw(st.sampled_from(USERS)))
                    cav = caveat()
                else:
                    subject = SubjectRef("group", draw(st.sampled_from(GROUPS)), "member")
                    cav = caveat() if unused and unused[0] == "cav1" else None
                r = Relationship(ObjectRef("doc", doc), rel, subject, cav)
                rels[r.key] = r
    for group in GROUPS:
        for member in draw(st.lists(st.sampled_from(USERS + GROUPS), max_size=2)):
            subject = SubjectRef("user", member) if member.startswith("u") else SubjectRef("group", member, "member")
            if subject != SubjectRef("group", group, "member"):
                r = Relationship(ObjectRef("group", group), "member", subject, caveat() if subject.relation is None else None)
                rels[r.key] = r
    return "\n".join(lines), list(rels.values())


@pytest.mark.slow
@settings(max_examples=80, deadline=None, suppress_health_check=FIXTURE_OK)
@given(caveated_worlds())
def test_three_valued_answers_agree_with_enumeration(engine_from: Callable[..., Engine], world: tuple[str, list[Relationship]]) -> None:
    schema_text, rels = world
    schema = compile_schema(schema_text)
    engine = engine_from(schema_text, *map(str, rels))
    used = sorted({r.caveat.name for r in rels if r.caveat is not None})
    subjects = [SubjectRef("user", u) for u in USERS + ["fresh"]] + [SubjectRef("group", g, "member") for g in GROUPS]
    references = {}
    for values in itertools.product([False, True], repeat=len(used)):
        assignment = dict(zip(used, values))
        present = [
            Relationship(r.resource, r.relation, r.subject)
            for r in rels
            if r.caveat is None or assignment[r.caveat.name]
        ]
        references[values] = (assignment, Reference(schema, present, set(subjects)))
    for doc in DOCS:
        for name in schema.definitions["doc"].members:
            for subject in subjects:
                outcomes = set()
                for values, (assignment, reference) in references.items():
                    want = reference.check(ObjectRef("doc", doc), name, subject)
                    outcomes.add(want)
                    context = {_param(c): assignment[c] for c in used}
                    got = engine.check(ObjectRef("doc", doc), name, subject, context=context)
                    assert got.allowed == want, f"{schema_text}\n{[str(r) for r in rels]}\n{assignment} doc:{doc}#{name}@{subject}"
                blind = engine.check(ObjectRef("doc", doc), name, subject)
                where = f"{schema_text}\n{[str(r) for r in rels]}\ndoc:{doc}#{name}@{subject}: {blind.result}"
                if blind.permissionship is Permissionship.HAS_PERMISSION:
                    assert outcomes == {True}, where
                elif blind.permissionship is Permissionship.NO_PERMISSION:
                    assert outcomes == {False}, where
                else:
                    assert set(blind.result.missing_parameters) <= {_param(c) for c in used}, where
