"""Bounds on open streams (server/streams.py): no client can take every RPC thread.

On a real server with 4 RPC threads: health Watch streams hold none, relengine streams past a
bound are refused with RESOURCE_EXHAUSTED naming it, and unary calls are answered throughout.
"""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack
from typing import Any, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from relengine import Engine, errors
from relengine.server.app import ServerConfig
from relengine.server.streams import StreamLimits, StreamSlots, StreamStatistics
from relengine.wire._proto.relengine.v1 import core_pb2, relationships_pb2, relationships_pb2_grpc

from .harness import KEY, SCHEMA, Running

AUTH = (("authorization", f"Bearer {KEY}"),)
WATCH = "/relengine.v1.RelationshipsService/Watch"


# -- the bounds ---------------------------------------------------------------------------------


def test_default_bounds_follow_the_threads_and_keep_some_for_unary_calls() -> None:
    assert StreamLimits.for_threads(32) == StreamLimits(per_method=16, per_connection=8, threads=32, reserved=8)
    assert StreamLimits.for_threads(4) == StreamLimits(per_method=2, per_connection=1, threads=4, reserved=1)
    assert StreamLimits.for_threads(2).holding_threads == 1
    assert StreamLimits.for_threads(1).holding_threads == 1  # one thread: nothing to keep it for
    assert StreamLimits.for_threads(8, per_method=5, per_connection=3) == StreamLimits(5, 3, 8, 2)


@pytest.mark.parametrize(
    ("threads", "per_method", "per_connection", "named"),
    [(0, None, None, "--threads"), (4, 0, None, "--max-streams-per-method"), (4, None, -1, "--max-streams-per-connection")],
)
def test_bounds_below_one_are_refused(threads: int, per_method: int | None, per_connection: int | None, named: str) -> None:
    with pytest.raises(errors.InvalidArgument, match=named):
        StreamLimits.for_threads(threads, per_method, per_connection)


def test_each_bound_refuses_the_stream_past_it_and_names_itself() -> None:
    slots = StreamSlots(StreamLimits(per_method=2, per_connection=2, threads=4, reserved=1))
    a = slots.acquire("/s/Watch", "peer-a", True)
    slots.acquire("/s/Watch", "peer-b", True)
    with pytest.raises(errors.LimitExceeded, match=r"open /s/Watch streams: at most 2 .*--max-streams-per-method"):
        slots.acquire("/s/Watch", "peer-c", True)
    slots.acquire("/s/Read", "peer-a", True)
    with pytest.raises(errors.LimitExceeded, match=r"on this connection: at most 2 .*--max-streams-per-connection"):
        slots.acquire("/s/Lookup", "peer-a", True)
    with pytest.raises(errors.LimitExceeded, match=r"at most 3 of the server's 4 RPC threads .*--threads"):
        slots.acquire("/s/Lookup", "peer-c", True)
    slots.acquire("/s/Health", "peer-c", False)  # holds no thread: only the other bounds count
    assert slots.statistics() == StreamStatistics(open=4, holding_threads=3, refused=3)
    slots.release(a)
    slots.release(a)  # again: nothing more given back
    assert slots.statistics() == StreamStatistics(open=3, holding_threads=2, refused=3)
    slots.acquire("/s/Lookup", "peer-c", True)


def test_peers_are_forgotten_when_their_streams_end() -> None:
    slots = StreamSlots(StreamLimits.for_threads(8))
    for i in range(100):
        slots.release(slots.acquire("/s/Watch", f"ipv4:127.0.0.1:{40000 + i}", True))
    assert slots.statistics().open == 0
    assert not slots._by_peer and not slots._by_method


# -- on a real server -----------------------------------------------------------------------------


@pytest.fixture
def small(engine: Engine) -> Iterator[Running]:
    """A keyed server with 4 RPC threads (default bounds: 2 per method, 1 per connection, 3
    streams holding threads); its schema written."""
    server = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, preshared_key=KEY))
    with server.client() as client:
        client.write_schema(SCHEMA)
    yield server
    server.stop()


def _answered(server: Running) -> None:
    """A keyed Check and an unkeyed health Check are both answered (each gets 10 s)."""
    with server.client() as client:
        assert not client.check("doc:1", "view", "user:ann", timeout=10).allowed
    with server.channel() as channel:
        health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


def _connection(server: Running) -> grpc.Channel:
    """A channel with a connection of its own (grpc shares one between the channels of a
    process by default)."""
    return grpc.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])


def _watch(stack: ExitStack, server: Running, channel: grpc.Channel | None = None) -> Any:
    """A relengine Watch stream on ``channel`` (a new connection if None), started: its
    revision (initial metadata) has come back."""
    if channel is None:
        channel = stack.enter_context(_connection(server))
    call = relationships_pb2_grpc.RelationshipsServiceStub(channel).Watch(
        relationships_pb2.WatchRequest(), metadata=AUTH, timeout=30
    )
    stack.callback(call.cancel)
    call.initial_metadata()
    return call


def _refused(call: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        next(call)
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    return info.value


def test_health_watch_streams_hold_no_thread(engine: Engine) -> None:
    """Twice as many unauthenticated health Watch streams as the server has threads: each gets
    its first status, and keyed calls are still answered."""
    server = Running(engine, ServerConfig(
        listen="127.0.0.1:0", threads=4, preshared_key=KEY, max_streams_per_method=100, max_streams_per_connection=100,
    ))
    try:
        with ExitStack() as stack:
            for _ in range(8):
                channel = stack.enter_context(_connection(server))
                call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
                stack.callback(call.cancel)
                assert next(call).status == health_pb2.HealthCheckResponse.SERVING
            with server.client() as client:
                client.write_schema(SCHEMA)
            _answered(server)
    finally:
        server.stop()


def test_health_watch_streams_are_counted_when_they_end(running: Running) -> None:
    with _connection(running) as channel:
        call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=10)
        assert next(call).status == health_pb2.HealthCheckResponse.SERVING
        assert running.server.streams.statistics() == StreamStatistics(open=1, holding_threads=0, refused=0)
        call.cancel()
    _until(lambda: running.server.streams.statistics().open == 0)
    assert running.metrics is not None and running.metrics.registry is not None
    labels = {"service": "grpc.health.v1.Health", "method": "Watch", "code": "CANCELLED"}
    _until(lambda: running.metrics.registry.get_sample_value("relengine_rpc_requests_total", labels) == 1)


def test_streams_of_one_connection_past_its_bound_are_refused(small: Running) -> None:
    with ExitStack() as stack:
        channel = stack.enter_context(small.channel())
        _watch(stack, small, channel)
        extra = relationships_pb2_grpc.RelationshipsServiceStub(channel).Read(
            relationships_pb2.ReadRequest(filter=core_pb2.RelationshipFilter(resource_type="doc")),
            metadata=AUTH, timeout=10,
        )
        assert "on this connection: at most 1 at once (--max-streams-per-connection)" in str(_refused(extra).details())
        _answered(small)


def test_streams_of_one_method_past_its_bound_are_refused(small: Running) -> None:
    with ExitStack() as stack:
        _watch(stack, small)
        _watch(stack, small)
        with _connection(small) as channel:
            extra = relationships_pb2_grpc.RelationshipsServiceStub(channel).Watch(
                relationships_pb2.WatchRequest(), metadata=AUTH, timeout=10
            )
            details = str(_refused(extra).details())
        assert f"too many open {WATCH} streams: at most 2 at once (--max-streams-per-method)" in details
        _answered(small)


def test_streams_never_take_the_threads_kept_for_unary_calls(small: Running) -> None:
    """Two Watch streams and an Import the client keeps open hold 3 of the 4 threads; the next
    stream is refused, whatever its method, and unary calls keep the fourth thread."""
    with ExitStack() as stack:
        _watch(stack, small)
        _watch(stack, small)
        more = threading.Event()
        stack.callback(more.set)

        def slow_import() -> Iterator[relationships_pb2.ImportRequest]:
            more.wait(30)
            return
            yield

        channel = stack.enter_context(_connection(small))
        importing = relationships_pb2_grpc.RelationshipsServiceStub(channel).Import.future(
            slow_import(), metadata=AUTH, timeout=30
        )
        stack.callback(importing.cancel)
        _until(lambda: small.server.streams.statistics().holding_threads == 3)
        with _connection(small) as channel:
            extra = relationships_pb2_grpc.RelationshipsServiceStub(channel).Read(
                relationships_pb2.ReadRequest(filter=core_pb2.RelationshipFilter(resource_type="doc")),
                metadata=AUTH, timeout=10,
            )
            details = str(_refused(extra).details())
        assert "at most 3 of the server's 4 RPC threads serve streams" in details
        _answered(small)


def test_ended_streams_give_their_place_back(small: Running) -> None:
    for _ in range(3):  # more than the bound of 2, one after the other
        with ExitStack() as stack:
            call = _watch(stack, small)
            call.cancel()
        _until(lambda: small.server.streams.statistics().open == 0)
    assert small.server.streams.statistics().refused == 0


def _until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)
