"""In-process: schema text, relationship text, filters (the CLI's syntax), cursors, revision
tokens and caveat contexts, through the parsers and an ``Engine`` on LMDB holding the world.
Every error is a ``RelEngineError`` whose code is not INTERNAL, with a message; what parses
prints back to text that parses to the same thing."""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Iterator

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from relengine import (
    CaveatRef,
    CheckRequest,
    Consistency,
    Engine,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
    compile_schema,
    parse_relationship,
    print_schema,
)
from relengine.cli import parse_filter
from relengine.errors import Code, RelEngineError, SchemaNotFound
from relengine.model import parse_context

from ..server.harness import make_engine
from . import strategies as s
from .world import FUZZ, IDS, MEMBERS, RELATIONSHIPS, RELATIONSHIPS_TEXT, SCHEMA, scaled, schema_sources

pytestmark = pytest.mark.slow

SCHEMAS = schema_sources()
RELATIONSHIP_WORDS = [":", "#", "@", "*", "...", "[", "]", "{", "}", '"', ",", "expiration:", "2026-12-31T00:00:00Z", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00+01:00", "fuzz_limits", "fuzz_kinds", '{"amount":1}', " ", "\t", "\n", "//", "/"]
FILTER_WORDS = [":", "#", "@", "*", "...", "tenant/doc", "user", "viewer", "member", "ann", " ", "x" * 600]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    e = make_engine(tmp_path_factory.mktemp("fuzz") / "data")
    restore(e)
    yield e
    e.close()


def restore(engine: Engine) -> None:
    """The world's schema and relationships, as a successful write may have changed them."""
    try:
        text: str | None = engine.read_schema()[0]
    except SchemaNotFound:
        text = None
    if text != SCHEMA:
        engine.write_schema(SCHEMA)
    engine.touch(RELATIONSHIPS)


@contextmanager
def clear_errors() -> Iterator[None]:
    """Let a RelEngineError through if it is not INTERNAL and says something; anything else fails."""
    try:
        yield
    except RelEngineError as exc:
        assert exc.code is not Code.INTERNAL, f"{type(exc).__name__} is INTERNAL: {exc}"
        assert str(exc).strip(), f"{type(exc).__name__} without a message"


def drain(stream: Any) -> list[Any]:
    return list(stream)


# -- schema text --------------------------------------------------------------------------------


@FUZZ
@given(text=st.one_of(s.mutated(SCHEMAS, s.SCHEMA_WORDS), s.deep_schemas()), data=st.data())
def test_schema_text(engine: Engine, text: str, data: st.DataObject) -> None:
    """Compiled, printed and compiled again; or refused clearly. Written through the Engine,
    where the world's relationships are, and asked about (check, expand, both lookups on one
    of its members); or refused clearly."""
    with clear_errors():
        printed = print_schema(compile_schema(text))
        assert print_schema(compile_schema(printed)) == printed
    with clear_errors():
        engine.write_schema(text)
        ask(engine, data, [(t, m) for t, d in compile_schema(text).definitions.items() for m in d.members])
    restore(engine)


def ask(engine: Engine, data: st.DataObject, members: list[tuple[str, str]]) -> None:
    """Every question about one of ``members`` on an object with an id of the world: answered,
    or refused clearly."""
    if not members:
        return
    rtype, member = data.draw(st.sampled_from(members), label="member")
    resource = ObjectRef(rtype, data.draw(st.sampled_from(IDS[:-1]), label="id"))  # not "*"
    subject = data.draw(st.sampled_from(sorted({r.subject for r in RELATIONSHIPS})), label="subject")
    event("a written schema asked about")
    with clear_errors():
        engine.check(resource, member, subject)
    with clear_errors():
        engine.expand(resource, member)
    with clear_errors():
        drain(engine.lookup_resources(rtype, member, subject))
    with clear_errors():
        drain(engine.lookup_subjects(resource, member, subject.type))


# -- relationship text ------------------------------------------------------------------------


@scaled(2)
@given(text=s.mostly(s.mutated(RELATIONSHIPS_TEXT, RELATIONSHIP_WORDS), s.texts(80)))
def test_relationship_text(engine: Engine, text: str) -> None:
    """Parsed and printed back to the same relationship; or refused clearly. What parses is
    written, or refused clearly, and the world is as it was."""
    with clear_errors():
        relationship = parse_relationship(text)
        assert parse_relationship(str(relationship)) == relationship, str(relationship)
        with clear_errors():
            engine.touch([relationship])
        with clear_errors():
            engine.write([], [])
    restore(engine)


# -- filters ----------------------------------------------------------------------------------------


@scaled(2)
@given(text=s.mostly(
    s.mutated(["tenant/doc:1#viewer@user:ann", "group:eng*#member@group#member", "folder@user:*", "user"], FILTER_WORDS),
    s.texts(80),
))
def test_filter_text(engine: Engine, text: str) -> None:
    """The CLI's filter syntax, read through the Engine; or refused clearly."""
    with clear_errors():
        found = parse_filter(text)
        with clear_errors():
            for result in drain(engine.read(found, limit=5)):
                assert found.matches(result.relationship)


@FUZZ
@given(
    resource_type=s.type_names, resource_id=s.maybe(s.object_ids), prefix=s.maybe(s.object_ids),
    relation=s.maybe(s.relation_names), subject=s.maybe(st.tuples(s.type_names, s.maybe(s.object_ids), s.maybe(s.relation_names))),
)
def test_filter_values(engine: Engine, resource_type: str, resource_id: str | None, prefix: str | None,
                       relation: str | None, subject: tuple[str, str | None, str | None] | None) -> None:
    """A RelationshipFilter of any strings, read and deleted through the Engine; or refused clearly."""
    found = RelationshipFilter(resource_type, resource_id, prefix, relation, None if subject is None else SubjectFilter(*subject))
    with clear_errors():
        for result in drain(engine.read(found, limit=5)):
            assert found.matches(result.relationship)
    with clear_errors():
        engine.delete(found, limit=2)
    restore(engine)


# -- cursors and tokens -----------------------------------------------------------------------


@scaled(2)
@given(cursor=s.cursors, limit=s.maybe(st.integers(-2, 3)))
def test_cursors(engine: Engine, cursor: str, limit: int | None) -> None:
    """Any cursor, given to read and both lookups: resumed, or refused clearly."""
    with clear_errors():
        drain(engine.read(RelationshipFilter("tenant/doc"), cursor=cursor, limit=limit))
    with clear_errors():
        drain(engine.lookup_resources("tenant/doc", "view", SubjectRef("user", "ann"), cursor=cursor, limit=limit))
    with clear_errors():
        drain(engine.lookup_subjects(ObjectRef("tenant/doc", "1"), "view", "user", cursor=cursor, limit=limit))


@scaled(2)
@given(token=s.tokens, mode=st.sampled_from(["at_least_as_fresh", "at_exact_snapshot"]))
def test_tokens(engine: Engine, token: str, mode: str) -> None:
    """Any revision token: read back as the revision it names, or refused clearly; a check at
    it answers or says the store lacks it."""
    with clear_errors():
        revision = Revision.from_token(token)
        assert revision.token() == token
    with clear_errors():
        consistency = getattr(Consistency, mode)(token)
        with clear_errors():
            engine.check(ObjectRef("tenant/doc", "1"), "view", SubjectRef("user", "ann"), consistency=consistency)
        with clear_errors():
            engine.read_schema(consistency)


# -- caveat contexts --------------------------------------------------------------------------


@st.composite
def questions(draw: s.Draw) -> tuple[ObjectRef, str, SubjectRef]:
    resource = draw(st.sampled_from(sorted({r.resource for r in RELATIONSHIPS})))
    return resource, draw(st.sampled_from(MEMBERS[resource.type])), draw(st.sampled_from(sorted({r.subject for r in RELATIONSHIPS})))


@FUZZ
@given(question=questions(), context=s.contexts(s.python_numbers))
def test_caveat_contexts(engine: Engine, question: tuple[ObjectRef, str, SubjectRef], context: dict[str, Any]) -> None:
    """Any context (any JSON values, NaN, the infinities, ints of any size) in a check, a bulk
    check, both lookups and a caveated relationship: answered, or refused clearly."""
    resource, permission, subject = question
    with clear_errors():
        engine.check(resource, permission, subject, context=context)
    with clear_errors():
        engine.bulk_check([CheckRequest(resource, permission, subject, context)], context=context)
    with clear_errors():
        drain(engine.lookup_resources(resource.type, permission, subject, context=context))
    with clear_errors():
        drain(engine.lookup_subjects(resource, permission, subject.type, context=context))
    for caveated in (r for r in RELATIONSHIPS if r.caveat is not None):
        with clear_errors():
            engine.touch([Relationship(caveated.resource, caveated.relation, caveated.subject, CaveatRef(caveated.caveat.name, context), caveated.expiration)])
    restore(engine)


@scaled(2)
@given(text=s.mostly(
    s.contexts(s.struct_numbers).map(lambda c: json.dumps(c, allow_nan=True)).flatmap(lambda t: s.mutated([t], ["{", "}", "[", "]", ",", ":", '"', "NaN", "1e999", "-Infinity", "9" * 5000])),
    s.texts(80),
))
def test_context_text(text: str) -> None:
    """A context as JSON text (the CLI's --context, a relationship's caveat): a dict, or refused clearly."""
    with clear_errors():
        assert isinstance(parse_context(text), dict)
