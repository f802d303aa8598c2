"""The check cache: its key, its bounds and statistics, and what the caching dispatcher keeps."""

from __future__ import annotations

from relengine.engine.build import build_checker
from relengine.engine.cache import CheckCache, cache_key, context_key
from relengine.engine.dispatch import HAS, NO
from relengine.model import SubjectRef, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.schema import compile_schema
from relengine.storage.memory import MemoryStore


def test_the_key_is_the_revision_the_context_and_the_questions_strings() -> None:
    assert cache_key(7, None, "doc", "a", "view", "user", "ann", None) == (7, "doc", "a", "view", "user", "ann", None)
    assert cache_key(7, "{}", "doc", "a", "view", "group", "g", "member") == (7, "{}", "doc", "a", "view", "group", "g", "member")
    assert cache_key(7, None, "doc", "a", "view", "user", "ann", None) != cache_key(8, None, "doc", "a", "view", "user", "ann", None)


def test_the_context_key_is_canonical() -> None:
    assert context_key(None) is None and context_key({}) is None
    assert context_key({"b": [1, 2], "a": "x"}) == context_key({"a": "x", "b": [1, 2]}) == '{"a":"x","b":[1,2]}'


def test_plain_questions_are_found_under_their_cache_key() -> None:
    cache = CheckCache()
    cache.put(cache_key(3, None, "doc", "a", "view", "user", "ann", None), HAS)
    cache.put(cache_key(3, None, "doc", "a", "view", "group", "g", "member"), NO)
    assert cache.answer(3, "doc", "a", "view", "user", "ann", None) is HAS
    assert cache.answer(4, "doc", "a", "view", "user", "ann", None) is None
    questions = [("doc", "a", "view", "group", "g", "member"), ("doc", "b", "view", "user", "ann", None)]
    assert cache.answers(3, questions) == [NO, None]
    assert (cache.statistics().hits, cache.statistics().misses) == (2, 0)  # a miss is counted where it is answered


def test_counts_and_bounds() -> None:
    cache = CheckCache(capacity=10)
    assert cache.get("k0") is None
    for i in range(10):
        cache.put(f"k{i}", HAS)
    assert cache.get("k0") is HAS and cache.get("k1") is HAS
    cache.put("k10", NO)  # full: the oldest tenth goes
    assert cache.get("k0") is None and cache.get("k10") is NO
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.evictions, stats.size, stats.capacity) == (3, 2, 1, 10, 10)
    assert stats.hit_ratio == 3 / 5
    cache.count_hits(3)
    assert cache.statistics().hits == 6
    cache.clear()
    assert cache.statistics().size == 0


def test_a_cache_of_no_capacity_keeps_nothing() -> None:
    cache = CheckCache(capacity=0)
    cache.put("k", HAS)
    assert cache.get("k") is None and cache.statistics().size == 0


def test_answers_a_data_cycle_cut_short_are_not_kept() -> None:
    schema = compile_schema("definition user {}\ndefinition group {\n relation member: user | group#member\n}")
    store = MemoryStore()
    with store.transaction() as tx:
        for text in ("group:a#member@group:b#member", "group:b#member@group:a#member"):
            tx.apply(RelationshipUpdate(Operation.TOUCH, parse_relationship(text)))
    cache = CheckCache(100)
    reader = store.snapshot()
    checker = build_checker(schema, reader, max_depth=50, cache=cache)
    assert checker.check("group", "a", "member", SubjectRef("user", "ann")) is NO
    assert checker.cycle_cuts > 0
    # b's NO was cut short where it re-entered a: right for a's question only, so not kept.
    assert cache.get(cache_key(reader.revision.value, None, "group", "b", "member", "user", "ann", None)) is None


def test_a_carried_answer_is_found_where_the_carry_settles_it_and_copied_to_the_newest_revision() -> None:
    from relengine.engine.depends import Changes, dependencies

    deps = dependencies(compile_schema(
        "definition user {}\ndefinition doc {\n relation owner: user\n permission view = owner\n}"))
    cache = CheckCache()
    cache.put(cache_key(3, None, "doc", "a", "view", "user", "ann", None), HAS)
    cache.put(cache_key(3, None, "doc", "b", "view", "user", "ann", None), NO)
    changes = Changes(3)
    changes.mark(deps, 4, [("doc", "b", "owner")])  # b's answers may have changed, a's cannot
    cache.carry(4, changes)
    assert cache.answer(4, "doc", "a", "view", "user", "ann", None) is HAS
    assert cache.answer(4, "doc", "b", "view", "user", "ann", None) is None
    assert cache.get(cache_key(4, None, "doc", "b", "view", "user", "ann", None)) is None
    assert cache.answers(4, [("doc", "a", "view", "user", "ann", None), ("doc", "b", "view", "user", "ann", None)]) == [HAS, None]
    assert cache.statistics().size == 3  # a's answer, copied once to revision 4
    # Answers computed at 4 are filed where they hold from: a's under 3, b's under 4.
    assert cache.settled_key(cache_key(4, None, "doc", "a", "view", "user", "bob", None), 1)[0] == 3
    assert cache.settled_key(cache_key(4, "{}", "doc", "b", "view", "user", "bob", None), 2)[0] == 4
    assert cache.settled_key(cache_key(5, None, "doc", "a", "view", "user", "bob", None), 1)[0] == 5  # not the carry's
    cache.drop_carry()
    assert cache.answer(4, "doc", "a", "view", "user", "ann", None) is HAS  # the copy
    assert cache.answer(4, "doc", "a", "view", "user", "bob", None) is None
