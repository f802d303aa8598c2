"""The pipeline every RPC goes through, on a small service of its own: handlers registered the
generated way (generic and registered) and handlers that come as a generic handler only."""

from __future__ import annotations

from concurrent import futures
from typing import Any, Iterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from relengine.errors import AlreadyExists
from relengine.server.metrics import ServerMetrics
from relengine.server.pipeline import Pipeline

KEY = "k"


def _behaviours() -> dict[str, Any]:
    def echo(request: bytes, context: Any) -> bytes:
        if request == b"missing":
            raise AlreadyExists("no such thing")
        if request == b"bug":
            raise ZeroDivisionError("bug")
        return request

    def count(request: bytes, context: Any) -> Iterator[bytes]:
        yield b"1"
        if request == b"missing":
            raise AlreadyExists("ran out")
        yield b"2"

    return {
        "Echo": grpc.unary_unary_rpc_method_handler(echo),
        "Count": grpc.unary_stream_rpc_method_handler(count),
    }


def _add_generated_way(server: Any) -> None:
    handlers = _behaviours()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Registered", handlers),))
    server.add_registered_method_handlers("t.Registered", handlers)


def _add_generic_only(server: Any) -> None:
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.Generic", _behaviours()),))


@pytest.fixture
def served() -> Iterator[tuple[grpc.Channel, CollectorRegistry]]:
    registry = CollectorRegistry()
    pipeline = Pipeline(ServerMetrics(registry), KEY)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pipeline.register(server, _add_generated_way)
    pipeline.register(server, _add_generic_only)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    yield channel, registry
    channel.close()
    server.stop(None)


AUTH = (("authorization", f"Bearer {KEY}"),)


@pytest.mark.parametrize("service", ["t.Registered", "t.Generic"])
def test_every_handler_is_guarded_mapped_and_counted(
    served: tuple[grpc.Channel, CollectorRegistry], service: str
) -> None:
    channel, registry = served
    echo = channel.unary_unary(f"/{service}/Echo")
    count = channel.unary_stream(f"/{service}/Count")
    assert echo(b"hi", metadata=AUTH, timeout=5) == b"hi"
    with pytest.raises(grpc.RpcError) as refused:
        echo(b"hi", timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as missing:
        echo(b"missing", metadata=AUTH, timeout=5)
    assert missing.value.code() is grpc.StatusCode.ALREADY_EXISTS and "no such thing" in str(missing.value.details())
    with pytest.raises(grpc.RpcError) as bug:
        echo(b"bug", metadata=AUTH, timeout=5)
    assert bug.value.code() is grpc.StatusCode.INTERNAL and "bug" not in str(bug.value.details())
    assert list(count(b"x", metadata=AUTH, timeout=5)) == [b"1", b"2"]
    stream = count(b"missing", metadata=AUTH, timeout=5)
    assert next(stream) == b"1"
    with pytest.raises(grpc.RpcError) as ended:
        next(stream)
    assert ended.value.code() is grpc.StatusCode.ALREADY_EXISTS

    def seen(method: str, code: str) -> float | None:
        return registry.get_sample_value(
            "relengine_rpc_requests_total", {"service": service, "method": method, "code": code}
        )

    assert seen("Echo", "OK") == 1
    assert seen("Echo", "UNAUTHENTICATED") == 1
    assert seen("Echo", "ALREADY_EXISTS") == 1
    assert seen("Echo", "INTERNAL") == 1
    assert seen("Count", "OK") == 1
    assert seen("Count", "ALREADY_EXISTS") == 1


def test_an_empty_preshared_key_is_refused() -> None:
    with pytest.raises(ValueError, match="must not be empty"):
        Pipeline(None, "")
