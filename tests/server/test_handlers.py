"""Rebuilding a gRPC method handler around a wrapped behaviour (server/_handlers.py), and reading
the status an RPC will end with."""

from __future__ import annotations

from concurrent import futures
from typing import Any, Callable

import grpc
import pytest

from relengine.server._handlers import Behavior, status_code, wrap_handler


def _deserialize(data: bytes) -> str:
    return data.decode()


def _serialize(text: str) -> bytes:
    return text.encode()


def _behaviour(request: Any, context: Any) -> str:
    return f"answer to {request}"


KINDS: dict[str, tuple[Callable[..., grpc.RpcMethodHandler[Any, Any]], bool, bool]] = {
    # kind: (how grpc makes such a handler, request streaming, response streaming)
    "unary_unary": (grpc.unary_unary_rpc_method_handler, False, False),
    "unary_stream": (grpc.unary_stream_rpc_method_handler, False, True),
    "stream_unary": (grpc.stream_unary_rpc_method_handler, True, False),
    "stream_stream": (grpc.stream_stream_rpc_method_handler, True, True),
}


@pytest.mark.parametrize("kind", KINDS)
def test_the_rebuilt_handler_keeps_its_kind_and_serializers_and_runs_the_wrapped_behaviour(kind: str) -> None:
    make, request_streaming, response_streaming = KINDS[kind]
    handler = make(_behaviour, request_deserializer=_deserialize, response_serializer=_serialize)
    seen: list[bool] = []

    def wrap(behavior: Behavior, streaming: bool) -> Behavior:
        seen.append(streaming)

        def wrapped(request: Any, context: Any) -> Any:
            return ("wrapped", behavior(request, context))

        return wrapped

    rebuilt = wrap_handler(handler, wrap)
    assert (rebuilt.request_streaming, rebuilt.response_streaming) == (request_streaming, response_streaming)
    assert rebuilt.request_deserializer is _deserialize and rebuilt.response_serializer is _serialize
    assert seen == [response_streaming]  # what the wrapper is told: whether it wraps a generator
    behaviours = {name: getattr(rebuilt, name) for name in KINDS}
    assert [name for name, b in behaviours.items() if b is not None] == [kind]
    assert behaviours[kind]("q", None) == ("wrapped", "answer to q")


def test_status_code_is_none_until_the_rpc_has_one() -> None:
    seen: list[grpc.StatusCode | None] = []

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        seen.append(status_code(context))
        context.set_code(grpc.StatusCode.NOT_FOUND)
        seen.append(status_code(context))
        return request

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("t.S", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}),)
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.RpcError) as ended:
                channel.unary_unary("/t.S/Echo")(b"hi", timeout=5)
    finally:
        server.stop(None)
    assert ended.value.code() is grpc.StatusCode.NOT_FOUND
    assert seen == [None, grpc.StatusCode.NOT_FOUND]


def test_status_code_of_a_context_that_cannot_say_is_none() -> None:
    class Bare:
        pass

    assert status_code(Bare()) is None  # type: ignore[arg-type]
