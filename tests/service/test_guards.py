"""Guards: the guard file against the schema, and every write path refusing what would take an
object below a guard (Google Tag Manager's "at least two administrators"), through groups and
arrows, across Engines sharing a store and between concurrent writers in two processes."""

from __future__ import annotations

import datetime as dt
import pathlib
import subprocess
import sys
import textwrap

import pytest

from relengine import Engine, EngineConfig
from relengine.errors import FailedPrecondition, GuardFileError, GuardViolated
from relengine.model import ObjectRef, RelationshipFilter, SubjectFilter, parse_relationship
from relengine.results import Operation, RelationshipUpdate
from relengine.schema import compile_schema
from relengine.service.guards import Guard, Tally, Tallier, _direct_relations, affected, parse_guards
from relengine.storage.lmdb import LmdbStore
from relengine.storage.memory import MemoryStore

ROOT = pathlib.Path(__file__).resolve().parents[2]
GTM = (ROOT / "schemas" / "google_tag_manager.zed").read_text()
TWO_ADMINS = """\
guards:
  - name: two-admins
    description: an account keeps at least two administrators
    resource: account
    permission: administer
    subject_type: user
    at_least: 2
"""
TWO_PUBLISHERS = """\
guards:
  - name: two-publishers
    resource: container
    permission: publish
    subject_type: user
    at_least: 2
"""
# GTM's account, with what the other write paths need: expiration, a caveat, an exclusion.
NARROWING = """
use expiration

caveat on_weekdays(day int) { day < 6 }

definition user {}

definition group {
    relation member: user | group#member
}

definition account {
    relation admin: user | user with expiration | user with on_weekdays | group#member
    relation suspended: user
    permission administer = admin - suspended
}
"""


def rel(text: str) -> RelationshipUpdate:
    return RelationshipUpdate(Operation.TOUCH, parse_relationship(text))


def delete(text: str) -> RelationshipUpdate:
    return RelationshipUpdate(Operation.DELETE, parse_relationship(text))


def create(text: str) -> RelationshipUpdate:
    return RelationshipUpdate(Operation.CREATE, parse_relationship(text))


def gtm(*relationships: str, guards: str = TWO_ADMINS, schema: str = GTM, store: MemoryStore | None = None) -> Engine:
    engine = Engine(store or MemoryStore())
    engine.write_schema(schema)
    if relationships:
        engine.touch([parse_relationship(t) for t in relationships])
    engine.write_guards(guards)
    return engine


def live(engine: Engine, resource_type: str = "account") -> list[str]:
    return sorted(str(r.relationship) for r in engine.read(RelationshipFilter(resource_type)))


# -- the file -----------------------------------------------------------------------------------

BAD_FILES = [
    ("not yaml", "guards: [\n", 2, 1, "not YAML"),
    ("not a mapping", "- a\n", 1, 1, "a mapping with one key"),
    ("unknown top key", "guard: []\n", 1, 1, "unknown key 'guard'"),
    ("guards not a list", "guards: 3\n", 1, 9, "a list of guards"),
    ("entry not a mapping", "guards:\n  - x\n", 2, 5, "a guard is a mapping"),
    ("unknown key", TWO_ADMINS + "    colour: red\n", 8, 5, "unknown key 'colour'"),
    ("missing field", "guards:\n  - name: a\n    resource: account\n", 2, 5, "needs permission, subject_type, at_least"),
    ("zero", TWO_ADMINS.replace("at_least: 2", "at_least: 0"), 7, 15, "positive integer"),
    ("text", TWO_ADMINS.replace("at_least: 2", "at_least: two"), 7, 15, "positive integer"),
    ("quoted", TWO_ADMINS.replace("at_least: 2", "at_least: '2'"), 7, 15, "positive integer"),
    ("unknown definition", TWO_ADMINS.replace("resource: account", "resource: acount"), 4, 15, "definition `acount`"),
    ("unknown permission", TWO_ADMINS.replace("administer", "administrate"), 5, 17, "no permission or relation `administrate`"),
    ("unknown subject type", TWO_ADMINS.replace("subject_type: user", "subject_type: person"), 6, 19, "subject type `person`"),
    ("twice", TWO_ADMINS + TWO_ADMINS.removeprefix("guards:\n"), 8, 11, "defined twice (first on line 2)"),
    ("a list value", TWO_ADMINS.replace("subject_type: user", "subject_type: [user]"), 6, 19, "single value"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), [b[1:] for b in BAD_FILES], ids=[b[0] for b in BAD_FILES])
def test_a_bad_guard_file_is_refused_with_its_line_and_column(text: str, line: int, column: int, message: str) -> None:
    with pytest.raises(GuardFileError) as info:
        parse_guards(text, compile_schema(GTM), "g.yaml")
    assert (info.value.line, info.value.column) == (line, column), str(info.value)
    assert message in str(info.value)
    assert str(info.value).startswith(f"g.yaml:{line}:{column}: ")


def test_a_guard_file_reads_into_guards() -> None:
    (guard,) = parse_guards(TWO_ADMINS, compile_schema(GTM))
    assert (guard.name, guard.resource, guard.permission, guard.subject_type, guard.at_least) == (
        "two-admins", "account", "administer", "user", 2)
    assert guard.description == "an account keeps at least two administrators"
    assert (guard.line, guard.column) == (2, 5)
    assert parse_guards("", compile_schema(GTM)) == ()
    assert parse_guards("guards: []\n", compile_schema(GTM)) == ()


def test_engine_stores_guards_and_refuses_a_bad_file_without_writing() -> None:
    engine = gtm()
    text, revision = engine.read_guards()
    assert text == TWO_ADMINS
    with pytest.raises(GuardFileError):
        engine.write_guards(TWO_ADMINS.replace("administer", "nope"))
    assert engine.read_guards() == (TWO_ADMINS, revision)
    assert Engine(MemoryStore()).read_guards()[0] == ""


def test_a_schema_change_that_breaks_a_guard_is_refused_naming_it() -> None:
    engine = gtm()
    before = engine.head_revision()
    broken = GTM.replace("permission manage_users = administer", "permission manage_users = admin").replace(
        "permission administer = admin\n", "")
    broken = broken.replace("account->administer", "account->manage_users").replace("permission create_container = administer", "permission create_container = admin").replace("member + administer", "member + admin")
    compile_schema(broken)  # valid on its own
    with pytest.raises(FailedPrecondition) as info:
        engine.write_schema(broken)
    assert info.value.details["guard"] == "two-admins"
    assert "two-admins" in str(info.value)
    assert engine.head_revision() == before
    engine.write_guards("")
    engine.write_schema(broken)  # without the guard it goes through


# -- GTM's two administrators -------------------------------------------------------------------


def test_removing_one_of_two_admins_is_refused_and_one_of_three_allowed() -> None:
    engine = gtm("account:a#admin@user:ann", "account:a#admin@user:bob")
    before = engine.head_revision()
    with pytest.raises(GuardViolated) as info:
        engine.write([delete("account:a#admin@user:ann")])
    assert (info.value.guard, info.value.object, info.value.count) == ("two-admins", "account:a", 1)
    assert info.value.details["guard"] == "two-admins"
    assert engine.head_revision() == before
    assert live(engine) == ["account:a#admin@user:ann", "account:a#admin@user:bob"]
    engine.write([rel("account:a#admin@user:cat")])
    engine.write([delete("account:a#admin@user:ann")])
    assert live(engine) == ["account:a#admin@user:bob", "account:a#admin@user:cat"]


def test_nothing_of_a_refused_write_is_applied() -> None:
    engine = gtm("account:a#admin@user:ann", "account:a#admin@user:bob")
    with pytest.raises(GuardViolated):
        engine.write([rel("account:b#admin@user:dan"), delete("account:a#admin@user:bob")])
    assert live(engine) == ["account:a#admin@user:ann", "account:a#admin@user:bob"]


def test_an_object_already_below_a_guard_is_not_blocked() -> None:
    engine = gtm("account:new#admin@user:ann")
    engine.write([rel("account:new#member@user:bob")])
    engine.write([delete("account:new#admin@user:ann")])  # it had one; now none: not refused
    engine.write([rel("account:new#admin@user:ann")])
    engine.write([rel("account:new#admin@user:bob")])
    with pytest.raises(GuardViolated):  # it satisfies the guard now: held to it from here on
        engine.write([delete("account:new#admin@user:bob")])


def test_admins_through_a_group_count_and_are_guarded() -> None:
    engine = gtm(
        "account:a#admin@group:ops#member", "group:ops#member@user:ann", "group:ops#member@group:leads#member",
        "group:leads#member@user:bob",
    )
    with pytest.raises(GuardViolated) as info:
        engine.write([delete("group:leads#member@user:bob")])  # two groups away from the account
    assert info.value.object == "account:a"
    with pytest.raises(GuardViolated):
        engine.write([delete("account:a#admin@group:ops#member")])
    engine.write([rel("account:a#admin@user:cat")])
    engine.write([delete("group:leads#member@user:bob")])


def test_holders_through_an_arrow_are_guarded() -> None:
    engine = gtm(
        "account:a#admin@user:ann", "account:a#admin@user:bob", "container:c#account@account:a",
        guards=TWO_PUBLISHERS,
    )
    with pytest.raises(GuardViolated) as info:
        engine.write([delete("account:a#admin@user:ann")])  # the container's publishers, through account->administer
    assert (info.value.guard, info.value.object) == ("two-publishers", "container:c")
    with pytest.raises(GuardViolated):
        engine.write([delete("container:c#account@account:a")])  # the arrow's own relationship
    engine.write([rel("container:c#publisher@user:cat")])
    engine.write([delete("account:a#admin@user:ann")])


def test_only_the_objects_a_write_can_reach_are_evaluated() -> None:
    engine = gtm(
        "account:a#admin@group:ops#member", "group:ops#member@user:ann", "account:b#admin@user:bob",
        "container:c#account@account:a", "container:d#account@account:b",
    )
    schema = compile_schema(GTM)
    reader = engine.snapshot()
    assert affected(schema, reader, ("account", "administer"), [("group", "ops", "member")]) == {"a"}
    assert affected(schema, reader, ("container", "publish"), [("group", "ops", "member")]) == {"c"}
    assert affected(schema, reader, ("container", "publish"), [("account", "b", "admin")]) == {"d"}
    assert affected(schema, reader, ("account", "administer"), [("account", "a", "member")]) == set()
    assert affected(schema, reader, ("account", "administer"), [("container", "c", "reader")]) == set()


# The direct count (Tallier reads the plain rows of a relation that grants alone first): rows
# that do not count (caveated, expired, usersets, wildcards, ids the write may take) sort before
# the ones that do, so the short scan has to read on; on both stores.
DIRECT = """
use expiration

caveat on_weekdays(day int) { day < 6 }

definition user {}

definition group {
    relation member: user
}

definition account {
    relation admin: user | user:* | user with expiration | user with on_weekdays | group#member
    relation suspended: user
    permission keep = admin + suspended
    permission administer = keep
    permission strict = admin - suspended
}
"""


def test_the_relations_that_grant_alone() -> None:
    schema = compile_schema(DIRECT)

    def direct(permission: str, max_depth: int = 50) -> tuple[str, ...]:
        return _direct_relations(schema, Guard("g", "account", permission, "user", 2), max_depth)

    assert direct("admin") == ("admin",)
    assert direct("keep") == ("admin", "suspended")
    assert direct("administer") == ("admin", "suspended")
    assert direct("administer", max_depth=1) == ()  # two hops away: past the depth
    assert direct("strict") == ()  # an exclusion's base does not grant alone
    assert _direct_relations(compile_schema(GTM), Guard("g", "account", "administer", "user", 2), 50) == ("admin",)


@pytest.mark.parametrize("kind", ["memory", "lmdb"])
def test_the_direct_count_reads_past_rows_that_do_not_count(kind: str, tmp_path: pathlib.Path) -> None:
    store = LmdbStore(tmp_path / "store") if kind == "lmdb" else MemoryStore()
    try:
        past, future = "2001-01-01T00:00:00Z", "2999-01-01T00:00:00Z"
        noise = [f"account:a#admin@user:a{i:02}[expiration:{past}]" for i in range(12)]
        noise += [f"account:a#admin@user:b{i:02}[on_weekdays]" for i in range(12)]
        engine = gtm(
            *noise, "account:a#admin@group:ops#member", "group:ops#member@user:gus",
            f"account:a#admin@user:c00[expiration:{future}]", "account:a#admin@user:c01", "account:a#admin@user:c02",
            schema=DIRECT, store=store,  # type: ignore[arg-type]
        )
        schema = compile_schema(DIRECT)
        reader = engine.snapshot()
        tallier = Tallier(schema, reader, 50)
        guard = Guard("g", "account", "administer", "user", 3)
        assert tallier.tally(guard, "a") == Tally(3, False, True, ("c00", "c01", "c02"))
        # ``later``: found outside those ids when it can be, else counted at the end.
        assert tallier.tally(guard, "a", later=frozenset({"c01"})).confirmed == ("c00", "c02", "gus")
        assert tallier.tally(guard, "a", later=frozenset({"c01", "gus"})) == Tally(
            4, False, True, ("c00", "c02", "c01", "gus")
        )
        assert Tallier(schema, reader, 50).tally(guard, "a", later=frozenset({"c00", "c01", "c02"})) == Tally(
            4, False, True, ("gus", "c00", "c01", "c02")
        )
        engine.write([rel("account:a#admin@user:*")])  # the wildcard counts as everyone, not as one
        tallier = Tallier(schema, engine.snapshot(), 50)
        assert tallier.tally(guard, "a", later=frozenset({"c01", "gus"})).everyone
        # Real writes under a guard of two on ``keep``: holders c00, c01, c02, gus (and everyone).
        engine.write_guards(TWO_ADMINS.replace("administer", "keep"))
        engine.write([delete("account:a#admin@user:c01"), delete("account:a#admin@user:c02")])
        engine.write([delete("account:a#admin@user:*")])
        with pytest.raises(GuardViolated) as info:
            engine.write([delete("account:a#admin@user:c00"), delete("group:ops#member@user:gus")])
        assert info.value.count == 0
        with pytest.raises(GuardViolated) as info:
            engine.write([delete("account:a#admin@user:c00")])
        assert info.value.count == 1
        engine.write([rel("account:a#suspended@user:sam")])  # ``keep`` = admin + suspended
        engine.write([delete("account:a#admin@user:c00")])
        assert live(engine) == sorted([*noise, "account:a#admin@group:ops#member", "account:a#suspended@user:sam"])
    finally:
        if kind == "lmdb":
            store.close()  # type: ignore[union-attr]


# -- every write path -------------------------------------------------------------------------


def narrowing() -> Engine:
    return gtm("account:a#admin@user:ann", "account:a#admin@user:bob", schema=NARROWING)


def test_a_touch_with_a_caveat_that_narrows_is_refused() -> None:
    engine = narrowing()
    with pytest.raises(GuardViolated):
        engine.write([rel("account:a#admin@user:ann[on_weekdays]")])
    engine.write([rel("account:a#admin@user:ann[on_weekdays:{\"day\":1}]")])  # still granted: allowed


def test_a_touch_with_an_expiration_that_has_passed_is_refused_and_a_future_one_counts() -> None:
    engine = narrowing()
    with pytest.raises(GuardViolated):
        engine.write([rel("account:a#admin@user:ann[expiration:2001-01-01T00:00:00Z]")])
    engine.write([rel("account:a#admin@user:ann[expiration:2999-01-01T00:00:00Z]")])


def test_a_create_on_the_subtracted_side_is_refused() -> None:
    engine = narrowing()
    with pytest.raises(GuardViolated):
        engine.write([create("account:a#suspended@user:bob")])
    with pytest.raises(GuardViolated):
        engine.create_relationships([parse_relationship("account:a#suspended@user:bob")])
    assert live(engine) == ["account:a#admin@user:ann", "account:a#admin@user:bob"]


def test_a_delete_by_filter_is_refused() -> None:
    engine = narrowing()
    with pytest.raises(GuardViolated):
        engine.delete(RelationshipFilter("account", "a", subject=SubjectFilter("user", "ann")))
    with pytest.raises(GuardViolated):
        engine.delete(RelationshipFilter("account"), limit=1)
    engine.write([rel("account:a#admin@user:cat")])
    result = engine.delete(RelationshipFilter("account", "a", subject=SubjectFilter("user", "ann")))
    assert result.deleted == 1


def test_imports_are_refused() -> None:
    engine = narrowing()
    with pytest.raises(GuardViolated):
        engine.import_relationships([parse_relationship("account:a#suspended@user:ann")])
    with pytest.raises(GuardViolated):
        engine.import_file(["account:a#admin@user:bob[expiration:2001-01-01T00:00:00Z]"], "text")
    assert live(engine) == ["account:a#admin@user:ann", "account:a#admin@user:bob"]
    count, _ = engine.import_relationships([parse_relationship("account:b#admin@user:ann")])
    assert count == 1
    assert engine.import_file(["account:c#admin@user:ann"], "text").changed == 1


def test_an_import_without_guards_takes_the_bulk_path() -> None:
    engine = Engine(MemoryStore())
    engine.write_schema(GTM)
    assert engine.import_file(["account:a#admin@user:ann", "account:a#admin@user:bob"], "text").changed == 2


# -- time ---------------------------------------------------------------------------------------


def test_guard_violations_now_and_within_a_time() -> None:
    soon = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=3)
    engine = gtm(
        "account:a#admin@user:ann", f"account:a#admin@user:bob[expiration:{soon.isoformat()}]",
        "account:b#admin@user:ann", "account:b#admin@user:bob", "account:solo#admin@user:ann",
        schema=NARROWING,
    )
    now = engine.guard_violations()
    assert [(v.guard, str(v.object), v.count, v.within) for v in now] == [("two-admins", "account:solo", 1, None)]
    week = engine.guard_violations(dt.timedelta(days=7))
    assert [(str(v.object), v.count, v.within) for v in week] == [
        ("account:a", 1, dt.timedelta(days=7)), ("account:solo", 1, None)]
    assert [str(v.object) for v in engine.guard_violations(dt.timedelta(days=1))] == ["account:solo"]


def test_an_object_known_only_as_a_subject_is_listed_with_no_holders() -> None:
    engine = gtm(
        "account:a#admin@user:ann", "account:a#admin@user:bob",
        "container:c#account@account:orphan", "container:d#account@account:a", "group:g#member@user:ann",
    )
    found = [(v.guard, str(v.object), v.count) for v in engine.guard_violations()]
    assert found == [("two-admins", "account:orphan", 0)]
    publishers = gtm("container:c#account@account:orphan", "container:d#publisher@user:ann", guards=TWO_PUBLISHERS)
    assert [(str(v.object), v.count) for v in publishers.guard_violations()] == [("container:c", 0), ("container:d", 1)]


# -- Engines sharing a store ----------------------------------------------------------------------


def test_a_guard_written_by_one_engine_binds_another_on_the_store() -> None:
    store = MemoryStore()
    first = gtm("account:a#admin@user:ann", "account:a#admin@user:bob", store=store, guards="")
    second = Engine(store, EngineConfig())
    second.write([delete("account:a#admin@user:bob")])  # no guard yet
    second.write([rel("account:a#admin@user:bob")])
    first.write_guards(TWO_ADMINS)
    with pytest.raises(GuardViolated):
        second.write([delete("account:a#admin@user:bob")])


WORKER = """
import sys, time, pathlib
from relengine import Engine
from relengine.errors import GuardViolated
from relengine.model import parse_relationship
from relengine.results import Operation, RelationshipUpdate
engine = Engine.open(sys.argv[1])
go = pathlib.Path(sys.argv[1]).parent / "go"
print("ready", flush=True)
while not go.exists():
    time.sleep(0.001)
try:
    engine.write([RelationshipUpdate(Operation.DELETE, parse_relationship(sys.argv[2]))])
    print("written")
except GuardViolated as exc:
    print("refused", exc.count)
engine.close()
"""


@pytest.mark.slow
def test_concurrent_writers_in_two_processes_on_one_lmdb_store_exactly_one_wins(tmp_path: pathlib.Path) -> None:
    env = {"PYTHONPATH": str(ROOT / "src")}
    for round_ in range(3):
        data = tmp_path / f"r{round_}" / "data"
        engine = Engine.open(str(data))
        engine.write_schema(GTM)
        engine.touch([parse_relationship(f"account:a#admin@user:{u}") for u in ("ann", "bob", "cat")])
        engine.write_guards(TWO_ADMINS)
        engine.close()
        workers = [
            subprocess.Popen([sys.executable, "-c", textwrap.dedent(WORKER), str(data), f"account:a#admin@user:{u}"],
                             env=env, stdout=subprocess.PIPE, text=True)
            for u in ("ann", "bob")
        ]
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == "ready"
        (data.parent / "go").touch()
        outs = sorted(w.communicate(timeout=60)[0].strip() for w in workers)
        assert outs == ["refused 1", "written"], outs
        engine = Engine.open(str(data))
        assert len(live(engine)) == 2
        engine.close()
