"""WatchService through the official authzed client against a real server."""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any, Iterator

import grpc
import pytest
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import schema_service_pb2 as ss
from authzed.api.v1 import watch_service_pb2 as ws

from relengine import Engine
from relengine.client import Client
from relengine.server.spicedb.watch import CHUNK
from relengine.storage.memory import MemoryStore
from relengine.wire.spicedb import tokens

from .streams_harness import KEY, SCHEMA, Serving, client, error_info, relationship, serving, text, write  # noqa: F401

DELETE = core.RelationshipUpdate.OPERATION_DELETE
TOUCH = core.RelationshipUpdate.OPERATION_TOUCH


class Watching:
    """A Watch call read message by message, each wait bounded."""

    def __init__(self, client: Any, request: ws.WatchRequest) -> None:
        self.call = client.Watch(request, timeout=30)

    def next(self, wait: float = 5.0) -> ws.WatchResponse:
        found: list[Any] = []

        def take() -> None:
            try:
                found.append(next(self.call))
            except BaseException as exc:  # noqa: BLE001 - handed to the test
                found.append(exc)

        reader = threading.Thread(target=take, daemon=True)
        reader.start()
        reader.join(wait)
        if not found:
            self.call.cancel()
            raise AssertionError(f"no Watch message in {wait} s")
        if isinstance(found[0], BaseException):
            raise found[0]
        response: ws.WatchResponse = found[0]
        return response

    def updates(self, wait: float = 5.0) -> tuple[list[tuple[int, str]], str]:
        """The next message's updates (operation, relationship) and its changes_through."""
        msg = self.next(wait)
        assert not msg.is_checkpoint and not msg.schema_updated, msg
        return [(u.operation, text(u.relationship)) for u in msg.updates], msg.changes_through.token

    def close(self) -> None:
        self.call.cancel()


@pytest.fixture
def watching(client: Any) -> Iterator[Any]:
    opened: list[Watching] = []

    def open_(**fields: Any) -> Watching:
        w = Watching(client, ws.WatchRequest(**fields))
        opened.append(w)
        return w

    yield open_
    for w in opened:
        w.close()


def test_touch_and_delete_come_per_revision_with_their_token(client: Any, watching: Any) -> None:
    start = write(client, "doc:1#owner@user:cat")
    watch = watching(optional_start_cursor=start)
    first = write(client, "doc:1#viewer@user:ann", "doc:2#viewer@group:eng#member")
    second = write(client, "doc:1#viewer@user:ann", operation=DELETE)
    created = write(client, "doc:3#viewer@user:bob", operation=core.RelationshipUpdate.OPERATION_CREATE)
    assert watch.updates() == (
        [(TOUCH, "doc:1#viewer@user:ann"), (TOUCH, "doc:2#viewer@group:eng#member")], first.token
    )
    assert watch.updates() == ([(DELETE, "doc:1#viewer@user:ann")], second.token)
    assert watch.updates() == ([(TOUCH, "doc:3#viewer@user:bob")], created.token)  # CREATE is a TOUCH


def test_the_start_cursor_replays_what_came_after_it(client: Any, watching: Any) -> None:
    first = write(client, "doc:1#viewer@user:ann")
    second = write(client, "doc:2#viewer@user:ann")
    watch = watching(optional_start_cursor=first)
    assert watch.updates() == ([(TOUCH, "doc:2#viewer@user:ann")], second.token)


def test_without_a_start_cursor_later_writes_are_seen(client: Any, watching: Any) -> None:
    write(client, "doc:0#viewer@user:ann")
    watch = watching()
    time.sleep(0.3)  # the stream has started
    token = write(client, "doc:1#viewer@user:ann")
    for _ in range(5):  # a recent revision may replay the setup first
        updates, through = watch.updates()
        if through == token.token:
            assert updates == [(TOUCH, "doc:1#viewer@user:ann")]
            break
    else:
        raise AssertionError("the write was not seen")


def test_object_types_filter_resources(client: Any, watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    watch = watching(optional_start_cursor=start, optional_object_types=["group"])
    write(client, "doc:1#viewer@user:ann")  # filtered out entirely: no message
    token = write(client, "doc:2#viewer@user:ann", "group:eng#member@user:ann")
    assert watch.updates() == ([(TOUCH, "group:eng#member@user:ann")], token.token)


def test_relationship_filters_are_ored(client: Any, watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    watch = watching(
        optional_start_cursor=start,
        optional_relationship_filters=[
            ps.RelationshipFilter(resource_type="doc", optional_resource_id_prefix="a", optional_relation="viewer"),
            # No resource type: any type whose subject is group:eng#member.
            ps.RelationshipFilter(optional_subject_filter=ps.SubjectFilter(
                subject_type="group", optional_subject_id="eng",
                optional_relation=ps.SubjectFilter.RelationFilter(relation="member"),
            )),
        ],
    )
    token = write(
        client, "doc:abc#viewer@user:ann", "doc:abc#owner@user:ann", "doc:xyz#viewer@user:ann",
        "doc:xyz#viewer@group:eng#member", "group:all#member@group:eng#member", "group:all#member@user:ann",
    )
    updates, through = watch.updates()
    assert sorted(updates) == [
        (TOUCH, "doc:abc#viewer@user:ann"), (TOUCH, "doc:xyz#viewer@group:eng#member"),
        (TOUCH, "group:all#member@group:eng#member"),
    ]
    assert through == token.token


def test_object_types_and_filters_together_are_refused(client: Any) -> None:
    request = ws.WatchRequest(
        optional_object_types=["doc"], optional_relationship_filters=[ps.RelationshipFilter(resource_type="doc")]
    )
    with pytest.raises(grpc.RpcError) as caught:
        next(client.Watch(request, timeout=10))
    assert error_info(caught.value) == (grpc.StatusCode.INVALID_ARGUMENT, "", {})
    assert "cannot specify both object types and relationship filters" in caught.value.details()


def test_a_filter_naming_an_unknown_type_or_relation_is_refused(client: Any) -> None:
    for bad, reason in [
        (ps.RelationshipFilter(resource_type="folder"), "ERROR_REASON_UNKNOWN_DEFINITION"),
        (ps.RelationshipFilter(resource_type="doc", optional_relation="editor"),
         "ERROR_REASON_UNKNOWN_RELATION_OR_PERMISSION"),
        (ps.RelationshipFilter(optional_subject_filter=ps.SubjectFilter(subject_type="robot")),
         "ERROR_REASON_UNKNOWN_DEFINITION"),
    ]:
        with pytest.raises(grpc.RpcError) as caught:
            next(client.Watch(ws.WatchRequest(optional_relationship_filters=[bad]), timeout=10))
        code, found, _ = error_info(caught.value)
        assert (code, found) == (grpc.StatusCode.FAILED_PRECONDITION, reason)


def test_bad_and_foreign_start_cursors_are_refused(serving: Serving, client: Any) -> None:
    cases = [
        ("bm90IGEgdG9rZW4=", grpc.StatusCode.INVALID_ARGUMENT, "failed to decode start revision"),
        (tokens.encode(serving.engine.head_revision(), "0123456789abcdef"), grpc.StatusCode.INVALID_ARGUMENT,
         "start revision was generated by a different datastore instance"),
    ]
    from relengine.model import Revision

    store_id = serving.engine.store.unique_id()
    cases.append((tokens.encode(Revision(10_000), store_id), grpc.StatusCode.OUT_OF_RANGE, "newer"))
    for token, code, words in cases:
        request = ws.WatchRequest(optional_start_cursor=core.ZedToken(token=token))
        with pytest.raises(grpc.RpcError) as caught:
            next(client.Watch(request, timeout=10))
        assert caught.value.code() == code
        assert words in caught.value.details()


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def test_a_start_cursor_older_than_the_window_is_out_of_range() -> None:
    clock = Clock()
    engine = Engine(MemoryStore(clock=clock, gc_window=dt.timedelta(hours=1), gc_interval=None))
    s = Serving(engine)
    try:
        first = s.client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA)).written_at
        write(s.client, "doc:1#viewer@user:ann")
        clock.now += 2 * 3600
        write(s.client, "doc:2#viewer@user:ann")
        engine.gc()
        with pytest.raises(grpc.RpcError) as caught:
            next(s.client.Watch(ws.WatchRequest(optional_start_cursor=first), timeout=10))
        assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
        assert "too old" in caught.value.details()
    finally:
        s.stop()


def test_schema_updates_only_when_asked(client: Any, watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    quiet = watching(optional_start_cursor=start)
    told = watching(
        optional_start_cursor=start, optional_update_kinds=[ws.WATCH_KIND_INCLUDE_SCHEMA_UPDATES],
        # Without relationship updates in the kinds, object types and filters may go together.
        optional_object_types=["doc"], optional_relationship_filters=[ps.RelationshipFilter(resource_type="doc")],
    )
    schema = client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA + "\ndefinition folder {}\n")).written_at
    token = write(client, "doc:1#viewer@user:ann")
    msg = told.next()
    assert msg.schema_updated and not msg.updates and msg.changes_through.token == schema.token
    assert told.updates() == ([(TOUCH, "doc:1#viewer@user:ann")], token.token)  # relationships always come
    assert quiet.updates() == ([(TOUCH, "doc:1#viewer@user:ann")], token.token)


def test_checkpoints_come_while_idle_when_asked(client: Any, watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    watch = watching(optional_start_cursor=start, optional_update_kinds=[ws.WATCH_KIND_INCLUDE_CHECKPOINTS])
    began = time.monotonic()
    first = watch.next()
    assert first.is_checkpoint and not first.updates and first.changes_through.token == start.token
    second = watch.next()
    assert second.is_checkpoint and time.monotonic() - began >= 0.3  # about one heartbeat apart
    token = write(client, "doc:1#viewer@user:ann")
    msg = watch.next()
    while msg.is_checkpoint:
        msg = watch.next()
    assert [text(u.relationship) for u in msg.updates] == ["doc:1#viewer@user:ann"]
    checkpoint = watch.next()
    assert checkpoint.is_checkpoint and checkpoint.changes_through.token == token.token


def test_no_checkpoints_unless_asked(client: Any, watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    watch = watching(optional_start_cursor=start)
    time.sleep(0.6)  # three heartbeats
    token = write(client, "doc:1#viewer@user:ann")
    assert watch.updates() == ([(TOUCH, "doc:1#viewer@user:ann")], token.token)


def test_a_write_through_relengine_v1_is_seen(serving: Serving, client: Any, watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    watch = watching(optional_start_cursor=start)
    with Client(serving.address, preshared_key=KEY, timeout=10) as own:
        own.touch("doc:7#viewer@user:ann")
        own.delete_relationships("doc:0#viewer@user:ann")
    updates, first = watch.updates()
    assert updates == [(TOUCH, "doc:7#viewer@user:ann")]
    updates, second = watch.updates()
    assert updates == [(DELETE, "doc:0#viewer@user:ann")]
    assert tokens.decode(second, serving.engine.store.unique_id())[0].value == (
        tokens.decode(first, serving.engine.store.unique_id())[0].value + 1
    )


def test_a_large_revision_comes_in_parts_whose_tokens_lose_nothing(serving: Serving, client: Any,
                                                                    watching: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    watch = watching(optional_start_cursor=start)
    count = CHUNK + CHUNK // 2
    with Client(serving.address, preshared_key=KEY, timeout=30) as own:
        own.import_relationships(f"doc:{i}#viewer@user:u{i}" for i in range(1, count + 1))
    head = serving.engine.head_revision()
    part, through = watch.updates()
    assert len(part) == CHUNK and through == start.token  # not all of the revision yet
    rest, through = watch.updates()
    assert len(rest) == count - CHUNK
    assert tokens.decode(through, serving.engine.store.unique_id())[0] == head
    assert len({r for _, r in part + rest}) == count


def test_the_stream_ends_when_the_server_stops(serving: Serving, client: Any) -> None:
    start = write(client, "doc:0#viewer@user:ann")
    call = client.Watch(ws.WatchRequest(optional_start_cursor=start), timeout=30)
    ended = threading.Event()
    outcome: list[Any] = []

    def drain() -> None:
        try:
            outcome.extend(call)
        except grpc.RpcError as exc:
            outcome.append(exc.code())
        ended.set()

    threading.Thread(target=drain, daemon=True).start()
    time.sleep(0.3)
    # A grace far longer than the waits below: a Watch that held the stop for it would not end.
    stopped: list[bool] = []
    stopper = threading.Thread(target=lambda: stopped.append(serving.stop(grace=120)), daemon=True)
    stopper.start()
    assert ended.wait(20), "the Watch stream did not end when the server began to stop"
    stopper.join(20)
    assert stopped == [True]
    assert outcome in ([], [grpc.StatusCode.OK])


def test_watches_count_against_the_stream_bounds_and_end_when_the_client_goes(tmp_path: Any) -> None:
    engine = Engine.open(str(tmp_path / "data"))
    s = Serving(engine, server={"max_streams_per_method": 1})
    try:
        start = s.client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA)).written_at
        request = ws.WatchRequest(optional_start_cursor=start, optional_update_kinds=[ws.WATCH_KIND_INCLUDE_CHECKPOINTS])
        first = Watching(s.client, request)
        assert first.next().is_checkpoint  # open and streaming
        with pytest.raises(grpc.RpcError) as caught:
            next(s.client.Watch(request, timeout=10))
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        first.close()
        deadline = time.monotonic() + 5
        while True:  # the handler ends within a poll interval of the client going
            try:
                again = Watching(s.client, request)
                assert again.next().is_checkpoint
                again.close()
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                assert time.monotonic() < deadline, "the cancelled Watch still holds its stream"
                time.sleep(0.05)
    finally:
        s.stop()
        engine.close()


def test_health_and_reflection_list_the_watch_and_experimental_services(serving: Serving) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(serving.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for name in ("authzed.api.v1.WatchService", "authzed.api.v1.ExperimentalService"):
            status = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=10).status
            assert status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]),
                                                  timeout=10, metadata=[("authorization", f"Bearer {KEY}")])
        names = {s.name for a in answers for s in a.list_services_response.service}
    assert {"authzed.api.v1.WatchService", "authzed.api.v1.ExperimentalService"} <= names
