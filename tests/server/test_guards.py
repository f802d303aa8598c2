"""relengine.v1 SchemaService WriteGuards/ReadGuards, and guard refusals, over real gRPC on two
servers whose Engines share one store: a guard written through one binds writes through the
other, and each error comes back as its class with its fields."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Iterator

import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine
from relengine.client import AsyncClient, GuardViolation
from relengine.errors import GuardFileError, GuardViolated, InvalidArgument
from relengine.model import ObjectRef, RelationshipFilter
from relengine.server.metrics import ServerMetrics
from relengine.storage.memory import MemoryStore

from ..service.test_guards import GTM, TWO_ADMINS
from .harness import Running


@pytest.fixture
def servers() -> Iterator[tuple[Running, Running]]:
    store = MemoryStore()
    one = Running(Engine(store), metrics=ServerMetrics(CollectorRegistry()))
    two = Running(Engine(store), metrics=ServerMetrics(CollectorRegistry()))
    yield one, two
    one.stop()
    two.stop()


def test_guards_over_grpc_bind_every_server_on_the_store(servers: tuple[Running, Running]) -> None:
    with servers[0].client() as first, servers[1].client() as second:
        first.write_schema(GTM)
        assert first.read_guards()[0] == ""
        second.touch("account:a#admin@user:ann", "account:a#admin@user:bob")
        with pytest.raises(GuardFileError) as bad:
            first.write_guards(TWO_ADMINS.replace("subject_type: user", "subject_type: person"))
        assert (bad.value.line, bad.value.column) == (6, 19)
        revision = first.write_guards(TWO_ADMINS)
        assert second.read_guards() == (TWO_ADMINS, revision)
        with pytest.raises(GuardViolated) as refused:
            second.delete_relationships("account:a#admin@user:ann")
        assert (refused.value.guard, refused.value.object, refused.value.count) == ("two-admins", "account:a", 1)
        with pytest.raises(GuardViolated):
            second.delete(RelationshipFilter("account", "a"))
        assert len(list(first.read(RelationshipFilter("account")))) == 2
        second.touch("account:a#admin@user:cat")
        second.delete_relationships("account:a#admin@user:ann")


def test_check_guards_over_grpc_lists_violations_now_and_within(servers: tuple[Running, Running]) -> None:
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    expiring = GTM.replace("relation admin: user | group#member", "relation admin: user | user with expiration | group#member")
    with servers[0].client() as first, servers[1].client() as second:
        first.write_schema("use expiration\n\n" + expiring)
        assert second.check_guards() == []  # no guards: nothing to report
        first.touch("account:a#admin@user:ann", "account:a#admin@user:bob", "account:solo#admin@user:ann",
                    "account:soon#admin@user:ann", f"account:soon#admin@user:bob[expiration:{soon}]",
                    "container:c#account@account:orphan")
        first.write_guards(TWO_ADMINS)
        now = [("two-admins", ObjectRef("account", "orphan"), 0, 2, None),
               ("two-admins", ObjectRef("account", "solo"), 1, 2, None)]
        assert [(v.guard, v.object, v.count, v.at_least, v.within) for v in second.check_guards()] == now
        week = dt.timedelta(days=7)
        found = second.check_guards(week)
        assert [(str(v.object), v.count, v.within) for v in found] == [
            ("account:orphan", 0, None), ("account:solo", 1, None), ("account:soon", 1, week)]
        with pytest.raises(InvalidArgument):
            second.check_guards(dt.timedelta(seconds=-1))

        async def from_async() -> list[GuardViolation]:
            async with AsyncClient(servers[1].address, timeout=10) as client:
                return await client.check_guards(week)

        assert asyncio.run(from_async()) == found
