"""The generator: deterministic, exact in size, consistent between its row stream and its
per-object knowledge, and shaped as documented."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.dataset import cache_key
from bench.naive import LazyObjects, NaiveEvaluator
from bench.world import BIG_ADMIN, GENERATOR_VERSION, Shape, World, scale_name, scale_of

SMALL = 3_000


@pytest.fixture(scope="module")
def world() -> World:
    return World(SMALL, seed=7)


def test_same_seed_same_rows(world: World) -> None:
    assert list(World(SMALL, seed=7).iter_rows()) == list(world.iter_rows())


def test_other_seed_other_rows(world: World) -> None:
    assert list(World(SMALL, seed=8).iter_rows()) != list(world.iter_rows())


def test_exact_count_and_no_duplicates(world: World) -> None:
    keys = [row[:6] for row in world.iter_rows()]
    assert len(keys) == SMALL
    assert len(set(keys)) == SMALL


def test_rows_agree_with_per_object_knowledge(world: World) -> None:
    grouped: dict[tuple[str, str], dict[str, list[tuple[str, str, str]]]] = {}
    for t, oid, rel, st, sid, srel, _, _ in world.iter_rows():
        grouped.setdefault((t, oid), {}).setdefault(rel, []).append((st, sid, srel))
    for key, rels in grouped.items():
        assert world.relations_of(*key) == rels, key


def test_shape_is_as_documented() -> None:
    shape = Shape.of(1_000_000)
    assert (shape.users, shape.accounts, shape.containers, shape.teams) == (50_000, 2_000, 100_000, 1_000)
    assert shape.big_account_containers == 10_000
    assert all(5 <= d <= 10 for d in shape.deep_depths)


def test_big_account_owns_every_tenth_container(world: World) -> None:
    owned = world.containers_of_account(0)
    assert owned == [f"c{i}" for i in range(0, world.shape.containers, 10)]
    assert len(owned) == world.shape.big_account_containers


def test_popularity_is_skewed(world: World) -> None:
    users = Counter(sid for _, _, rel, st, sid, _, _, _ in world.iter_rows() if st == "user" and rel != "member")
    top = users.most_common(1)[0][1]
    median = sorted(users.values())[len(users) // 2]
    assert top > 10 * median


def test_queries_mean_what_they_say(world: World) -> None:
    naive = NaiveEvaluator(LazyObjects(world))
    for cid, perm, st, uid in world.admin_path_queries(20):
        rels = world.relations_of("container", cid)
        assert all(s[1] != uid for role in ("reader", "editor", "approver", "publisher") for s in rels.get(role, []))
        assert not any(s[0] == "group" for role in rels if role != "account" for s in rels[role])
        assert naive.check("container", cid, perm, st, uid)
    deep = world.deep_queries()
    assert {q[3] for q in deep} == {f"x_deep{k}" for k in range(8)}
    assert all(naive.check("container", *q) for q in deep)
    assert not naive.check("container", "c1", "read", "user", BIG_ADMIN)
    assert naive.check("container", "c0", "publish", "user", BIG_ADMIN)


def test_deep_chains_are_five_to_ten_groups(world: World) -> None:
    for k, depth in enumerate(world.shape.deep_depths):
        chain = [oid for (t, oid) in world.objects if t == "group" and oid.startswith(f"d{k}_")]
        assert len(chain) == depth


def test_scale_names_and_cache_key() -> None:
    assert scale_of("100k") == 100_000 and scale_of("1M") == 1_000_000 and scale_of("5000") == 5000
    assert scale_name(10_000_000) == "10m"
    with pytest.raises(ValueError):
        scale_of("huge")
    assert cache_key(100_000, 3) == f"gtm-g{GENERATOR_VERSION}-100k-s3"
