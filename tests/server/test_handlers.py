"""Rebuilding a gRPC method handler around a wrapped behaviour (server/_handlers.py): requests
as bytes, grpc's options kept; and reading the status an RPC will end with."""

from __future__ import annotations

from concurrent import futures
from typing import Any, Callable

import grpc
import pytest

from relengine.server._handlers import Behavior, Shape, status_code, wrap_handler


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
def test_the_rebuilt_handler_keeps_its_kind_takes_bytes_and_runs_the_wrapped_behaviour(kind: str) -> None:
    make, request_streaming, response_streaming = KINDS[kind]
    handler = make(_behaviour, request_deserializer=_deserialize, response_serializer=_serialize)
    seen: list[Shape] = []

    def wrap(behavior: Behavior, shape: Shape) -> Behavior:
        seen.append(shape)

        def wrapped(request: Any, context: Any) -> Any:
            assert shape.parse is not None
            return ("wrapped", behavior(shape.parse(request), context))

        return wrapped

    rebuilt = wrap_handler(handler, wrap)
    assert (rebuilt.request_streaming, rebuilt.response_streaming) == (request_streaming, response_streaming)
    # Requests come as bytes (the wrapper parses them: grpc's deserialization never runs).
    assert rebuilt.request_deserializer is None and rebuilt.response_serializer is _serialize
    assert seen == [Shape(request_streaming, response_streaming, False, _deserialize)]
    assert seen[0].holds_thread == (request_streaming or response_streaming)
    behaviours = {name: getattr(rebuilt, name) for name in KINDS}
    assert [name for name, b in behaviours.items() if b is not None] == [kind]
    assert behaviours[kind](b"q", None) == ("wrapped", "answer to q")


def test_grpcs_options_on_the_behaviour_are_kept() -> None:
    """grpc reads ``experimental_non_blocking`` off the behaviour: health's Watch without it
    falls back to holding a thread for as long as the stream is open."""

    def watch(request: Any, context: Any, send: Callable[[Any], None]) -> None:
        send(request)

    watch.experimental_non_blocking = True  # type: ignore[attr-defined]
    watch.experimental_thread_pool = None  # type: ignore[attr-defined]
    handler = grpc.unary_stream_rpc_method_handler(watch, request_deserializer=_deserialize, response_serializer=_serialize)
    seen: list[Shape] = []

    def wrap(behavior: Behavior, shape: Shape) -> Behavior:
        seen.append(shape)
        return lambda request, context, send: behavior(request, context, send)

    rebuilt = wrap_handler(handler, wrap)
    assert rebuilt.unary_stream is not None
    assert getattr(rebuilt.unary_stream, "experimental_non_blocking", None) is True
    assert hasattr(rebuilt.unary_stream, "experimental_thread_pool")
    assert seen[0].non_blocking and not seen[0].holds_thread


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
