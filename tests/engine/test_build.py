"""build_checker: the check pipeline of one request, composed once."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from relengine.engine.build import build_checker
from relengine.engine.cache import CachingDispatcher, CheckCache, cache_key, context_key
from relengine.engine.dispatch import HAS, NO
from relengine.errors import DeadlineExceeded, MaxDepthExceeded
from relengine.model import SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.schema import compile_schema
from relengine.storage.memory import MemoryStore

SCHEMA = compile_schema("""
use expiration

definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation viewer: user | group#member | user with expiration
    permission view = viewer
}
""")
ANN = SubjectRef("user", "ann")


@pytest.fixture
def store() -> MemoryStore:
    s = MemoryStore()
    with s.transaction() as tx:
        for text in ("doc:a#viewer@group:g1#member", "group:g1#member@group:g0#member", "group:g0#member@user:ann"):
            tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship(text)))
    return s


def test_without_a_cache_the_checker_answers_its_own_sub_questions(store: MemoryStore) -> None:
    checker = build_checker(SCHEMA, store.snapshot(), max_depth=50)
    assert checker.dispatcher is checker
    assert checker.check("doc", "a", "view", ANN) is HAS


def test_with_a_cache_every_sub_question_goes_through_it(store: MemoryStore) -> None:
    cache = CheckCache(100)
    reader = store.snapshot()
    checker = build_checker(SCHEMA, reader, max_depth=50, cache=cache)
    assert isinstance(checker.dispatcher, CachingDispatcher) and checker.dispatcher.inner is checker
    assert checker.check("doc", "a", "view", ANN) is HAS
    revision = reader.revision.value
    for question in (("doc", "a", "view"), ("group", "g1", "member"), ("group", "g0", "member")):
        assert cache.get(cache_key(revision, None, *question, "user", "ann", None)) is HAS


def test_the_caveat_context_is_part_of_every_key(store: MemoryStore) -> None:
    cache = CheckCache(100)
    reader = store.snapshot()
    context = {"b": 2, "a": 1}
    build_checker(SCHEMA, reader, max_depth=50, cache=cache, context=context).check("doc", "a", "view", ANN)
    key = context_key(context)
    assert cache.get(cache_key(reader.revision.value, key, "doc", "a", "view", "user", "ann", None)) is HAS
    assert cache.get(cache_key(reader.revision.value, None, "doc", "a", "view", "user", "ann", None)) is None


def test_answers_at_a_chosen_time_are_not_cached(store: MemoryStore) -> None:
    with store.transaction() as tx:
        tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship("doc:b#viewer@user:bob[expiration:2030-01-01T00:00:00Z]")))
    later = dt.datetime(2031, 1, 1, tzinfo=dt.timezone.utc)
    checker = build_checker(SCHEMA, store.snapshot(), max_depth=50, now=later)
    assert checker.dispatcher is checker
    assert checker.check("doc", "b", "view", SubjectRef("user", "bob")) is NO


def test_the_pipeline_keeps_the_depth_budget_and_the_deadline(store: MemoryStore) -> None:
    with pytest.raises(MaxDepthExceeded):
        build_checker(SCHEMA, store.snapshot(), max_depth=1, cache=CheckCache(10)).check("doc", "a", "view", ANN)
    late = build_checker(SCHEMA, store.snapshot(), max_depth=50, deadline=time.monotonic() - 1, cache=CheckCache(10))
    with pytest.raises(DeadlineExceeded):
        late.check("doc", "a", "view", ANN)
