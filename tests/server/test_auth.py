"""Preshared-key auth: no key, wrong key, right key; health needs none; the comparison itself."""

from __future__ import annotations

import threading
from typing import Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from relengine import Engine
from relengine.client import NO_RETRY, Client, Unauthenticated
from relengine.model import RelationshipFilter
from relengine.server.app import ServerConfig
from relengine.server.auth import authorized

from .harness import KEY, SCHEMA, Running


@pytest.fixture
def guarded(engine: Engine) -> Iterator[Running]:
    server = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, preshared_key=KEY))
    yield server
    server.stop()


def test_no_key_is_unauthenticated(guarded: Running) -> None:
    with Client(guarded.address, retry=NO_RETRY, timeout=5) as client:
        with pytest.raises(Unauthenticated, match="missing"):
            client.write_schema(SCHEMA)
        with pytest.raises(Unauthenticated):
            list(client.read(RelationshipFilter("doc")))  # streaming RPCs too


def test_wrong_key_is_unauthenticated(guarded: Running) -> None:
    with Client(guarded.address, preshared_key="wrong", retry=NO_RETRY, timeout=5) as client:
        with pytest.raises(Unauthenticated, match="wrong preshared key"):
            client.read_schema()
        with pytest.raises(Unauthenticated):
            client.import_relationships(["doc:1#viewer@user:ann"])  # client streaming too


def test_right_key_works(guarded: Running) -> None:
    with Client(guarded.address, preshared_key=KEY, timeout=5) as client:
        revision = client.write_schema(SCHEMA)
        assert client.read_schema()[1] == revision


def test_raw_status_is_unauthenticated(guarded: Running) -> None:
    with guarded.channel() as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            list(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")])))
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED


def test_calls_without_the_key_that_never_send_their_message_hold_no_thread(engine: Engine) -> None:
    """grpcio's sync server waits for a unary call's message in one of the server's threads:
    eight calls (twice the threads) sending headers and no message, without the key, left a
    keyed client unanswered until they ended. They are refused before they take a thread."""
    from prometheus_client import CollectorRegistry

    from relengine.server.metrics import ServerMetrics

    registry = CollectorRegistry()
    server = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, preshared_key=KEY), ServerMetrics(registry))
    release = threading.Event()

    def never() -> Iterator[bytes]:
        release.wait(30)
        yield from ()

    try:
        with server.channel() as channel:
            send = channel.stream_unary("/relengine.v1.PermissionsService/Check")
            calls = [send.future(never(), timeout=30) for _ in range(8)]
            with Client(server.address, preshared_key=KEY, retry=NO_RETRY, timeout=5) as client:
                assert client.write_schema(SCHEMA) == client.read_schema()[1]
            for call in calls:
                assert call.exception(timeout=5).code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[union-attr]
            release.set()
        counted = registry.get_sample_value(
            "relengine_rpc_requests_total", {"service": "relengine.v1.PermissionsService", "method": "Check", "code": "UNAUTHENTICATED"}
        )
        assert counted == 8
    finally:
        release.set()
        server.stop()


def test_health_needs_no_key(guarded: Running) -> None:
    with guarded.channel() as channel:
        response = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert response.status == health_pb2.HealthCheckResponse.SERVING


EXPECTED = f"Bearer {KEY}".encode()


@pytest.mark.parametrize(
    ("metadata", "allowed"),
    [
        ((("authorization", f"Bearer {KEY}"),), True),
        ((("x-trace", "1"), ("authorization", f"Bearer {KEY}".encode())), True),  # a binary value
        ((("authorization", "Bearer wrong"),), False),
        ((("authorization", KEY),), False),  # the key without its scheme
        ((("authorization", "Bearer wrong"), ("authorization", f"Bearer {KEY}")), False),  # the first one counts
        ((), False),
        (None, False),
    ],
)
def test_authorized_compares_the_first_authorization_value(metadata: object, allowed: bool) -> None:
    assert authorized(metadata, EXPECTED) is allowed
