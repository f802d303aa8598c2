"""Rebuild a gRPC method handler around a wrapped behaviour (what every interceptor here does)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import grpc

Behavior = Callable[[Any, grpc.ServicerContext], Any]
Wrap = Callable[[Behavior, bool], Behavior]  # (behaviour, response_streaming) -> behaviour
if TYPE_CHECKING:  # generic only in the stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler


def wrap_handler(handler: Handler, wrap: Wrap) -> Handler:
    """The same handler (kind, (de)serializers) with its behaviour passed through ``wrap``."""
    if handler.request_streaming and handler.response_streaming:
        assert handler.stream_stream is not None
        return grpc.stream_stream_rpc_method_handler(
            wrap(handler.stream_stream, True), handler.request_deserializer, handler.response_serializer
        )
    if handler.request_streaming:
        assert handler.stream_unary is not None
        return grpc.stream_unary_rpc_method_handler(
            wrap(handler.stream_unary, False), handler.request_deserializer, handler.response_serializer
        )
    if handler.response_streaming:
        assert handler.unary_stream is not None
        return grpc.unary_stream_rpc_method_handler(
            wrap(handler.unary_stream, True), handler.request_deserializer, handler.response_serializer
        )
    assert handler.unary_unary is not None
    return grpc.unary_unary_rpc_method_handler(
        wrap(handler.unary_unary, False), handler.request_deserializer, handler.response_serializer
    )


def status_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status the RPC will end with, if one was set (``abort`` sets it); not in the stubs."""
    code = getattr(context, "code", None)
    return None if code is None else code()
