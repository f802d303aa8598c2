"""The asyncio client (client/_async.py) against a real server: every RPC, streams and errors
(asyncio.run; no plugin needed)."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, TypeVar

import pytest

from relengine import Permissionship, Revision, errors
from relengine.client import NO_RETRY, AsyncClient, Unauthenticated
from relengine.model import Consistency, RelationshipFilter, SubjectRef
from relengine.results import Operation
from relengine.server.app import ServerConfig

from ..server.harness import KEY, SCHEMA, Running

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_every_rpc(running: Running) -> None:
    async def scenario() -> dict[str, Any]:
        out: dict[str, Any] = {}
        async with AsyncClient(running.address, timeout=10) as client:
            await client.write_schema(SCHEMA)
            out["schema"] = (await client.read_schema())[0]
            first = await client.touch("doc:1#viewer@user:ann", "doc:2#viewer@user:ann", "doc:3#viewer@user:*")
            await client.create("doc:1#owner@user:cat")
            with pytest.raises(errors.AlreadyExists):
                await client.create("doc:1#owner@user:cat")
            fresh = Consistency.fully_consistent()
            out["check"] = await client.check("doc:1", "view", "user:ann", consistency=fresh)
            out["check_text"] = await client.check_text("doc:1#edit@user:ann", consistency=fresh)
            out["bulk"] = await client.bulk_check(["doc:1#view@user:ann", "doc:1#nope@user:ann"], consistency=fresh)
            out["expand"] = (await client.expand("doc:1", "view", consistency=fresh))[0].render()
            stream = client.lookup_resources("doc", "view", "user:ann", consistency=fresh)
            out["lr_revision"] = await stream.revision()
            out["lr"] = [r.resource_id async for r in stream]
            out["ls"] = [str(r.subject) async for r in client.lookup_subjects("doc:1", "view", "user", consistency=fresh)]
            out["read"] = [str(r.relationship) async for r in client.read(RelationshipFilter("doc", "1"), consistency=fresh)]
            out["delete"] = await client.delete(RelationshipFilter("doc", "2"))
            await client.delete_relationships("doc:3#viewer@user:*")
            watch = client.watch(first)
            changes = []
            async for change in watch:
                changes.append(change)
                if len(changes) == 3:
                    watch.cancel()
            out["watch"] = changes
        return out

    out = run(scenario())
    assert out["schema"] == SCHEMA
    assert out["check"].permissionship is Permissionship.HAS_PERMISSION
    assert not out["check_text"].allowed
    ok, error = out["bulk"].results
    assert ok.allowed and isinstance(error, errors.UnknownRelation)
    assert "doc:1#viewer -> user:ann" in out["expand"]
    assert out["lr_revision"] is not None and out["lr"] == ["1", "2", "3"]
    assert out["ls"] == ["user:ann", "user:cat"]
    assert out["read"] == ["doc:1#owner@user:cat", "doc:1#viewer@user:ann"]
    assert out["delete"].deleted == 1 and out["delete"].complete
    ops = [(c.operation, str(c.relationship)) for c in out["watch"]]
    assert ops == [
        (Operation.TOUCH, "doc:1#owner@user:cat"),
        (Operation.DELETE, "doc:2#viewer@user:ann"),
        (Operation.DELETE, "doc:3#viewer@user:*"),
    ]


def test_errors_are_rebuilt(running: Running) -> None:
    async def scenario() -> None:
        async with AsyncClient(running.address, timeout=10, retry=NO_RETRY) as client:
            with pytest.raises(errors.SchemaNotFound):
                await client.read_schema()
            with pytest.raises(errors.SchemaValidationError) as info:
                await client.write_schema("definition doc {\n  relation viewer: nobody\n}\n")
            assert info.value.issues[0].line == 2
            await client.write_schema(SCHEMA)
            with pytest.raises(errors.UnknownDefinition):
                [r async for r in client.lookup_resources("folder", "view", SubjectRef("user", "ann"))]
            with pytest.raises(errors.RevisionUnavailable):
                await client.check("doc:1", "view", "user:ann", consistency=Consistency.at_exact_snapshot(Revision(999)))

    run(scenario())


def test_preshared_key(engine: Any) -> None:
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, preshared_key=KEY))

    async def scenario() -> None:
        async with AsyncClient(running.address, timeout=5, retry=NO_RETRY) as anonymous:
            with pytest.raises(Unauthenticated):
                await anonymous.read_schema()
        async with AsyncClient(running.address, preshared_key=KEY, timeout=5) as client:
            await client.write_schema(SCHEMA)
            count_rev = await client.read_schema()
            assert count_rev[0] == SCHEMA

    try:
        run(scenario())
    finally:
        running.stop()


def test_unavailable_stream_revision() -> None:
    async def scenario() -> None:
        async with AsyncClient("127.0.0.1:1", timeout=2, retry=NO_RETRY) as client:
            with pytest.raises(errors.Unavailable):
                await client.read(RelationshipFilter("doc")).revision()

    run(scenario())


def test_retries_unavailable_then_succeeds_and_gives_up_after_max_attempts() -> None:
    from relengine.client import RetryPolicy

    from .test_sync import Flaky

    engine = Flaky(2, errors.Unavailable("store closed for a moment"))
    running = Running(engine)

    async def scenario() -> None:
        fast = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.005)
        async with AsyncClient(running.address, timeout=10, retry=fast) as client:
            assert (await client.check("doc:1", "view", "user:ann")).allowed
        assert engine.calls == 3
        engine.calls = 0
        async with AsyncClient(running.address, timeout=10, retry=RetryPolicy(max_attempts=2, initial_backoff=0.001)) as client:
            with pytest.raises(errors.Unavailable, match="closed for a moment"):
                await client.check("doc:1", "view", "user:ann")
        assert engine.calls == 2

    try:
        run(scenario())
    finally:
        running.stop()
