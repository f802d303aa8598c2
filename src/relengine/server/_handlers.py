"""Rebuild a gRPC method handler around a wrapped behaviour (what every interceptor here does).

The rebuilt handler takes its requests as raw bytes: the wrapper parses them (``Shape.parse``),
so that an undecodable body never reaches grpc's own deserialization. grpcio (1.85) leaks
about 19 KiB per call whose request fails to deserialize, and a stream-request call that fails
so can keep ``Server.stop`` from ever finishing; parsed in our code, the same body is an
INVALID_ARGUMENT like any other bad input. grpc's per-behaviour options
(``experimental_non_blocking``, ``experimental_thread_pool``) are carried over to the wrapped
behaviour: without them the health service's Watch falls back to holding a thread per stream.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Final

import grpc

Behavior = Callable[..., Any]  # (request, context) or, non-blocking, (request, context, send)
if TYPE_CHECKING:  # generic only in the stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
else:
    Handler = grpc.RpcMethodHandler

_OPTIONS: Final = ("experimental_non_blocking", "experimental_thread_pool")


@dataclass(frozen=True, slots=True)
class Shape:
    """What a wrapper needs to know of the method it wraps."""

    request_streaming: bool
    response_streaming: bool
    non_blocking: bool  # the behaviour sends responses through a callback and returns at once
    parse: Callable[[bytes], Any] | None  # the request parser; None: the behaviour takes bytes

    @property
    def holds_thread(self) -> bool:
        """Whether a call may keep its RPC thread for as long as the client likes."""
        return (self.request_streaming or self.response_streaming) and not self.non_blocking


Wrap = Callable[[Behavior, Shape], Behavior]


def wrap_handler(handler: Handler, wrap: Wrap) -> Handler:
    """The same kind of handler, its behaviour passed through ``wrap``, its requests raw bytes
    (``wrap`` parses them with ``Shape.parse``), its response serializer and grpc's options
    on the behaviour kept."""
    behavior: Behavior | None
    if handler.request_streaming and handler.response_streaming:
        behavior, make = handler.stream_stream, grpc.stream_stream_rpc_method_handler
    elif handler.request_streaming:
        behavior, make = handler.stream_unary, grpc.stream_unary_rpc_method_handler
    elif handler.response_streaming:
        behavior, make = handler.unary_stream, grpc.unary_stream_rpc_method_handler
    else:
        behavior, make = handler.unary_unary, grpc.unary_unary_rpc_method_handler
    assert behavior is not None
    non_blocking = bool(getattr(behavior, "experimental_non_blocking", False)) and handler.response_streaming
    shape = Shape(handler.request_streaming, handler.response_streaming, non_blocking, handler.request_deserializer)
    wrapped = wrap(behavior, shape)
    for option in _OPTIONS:
        if hasattr(behavior, option):
            setattr(wrapped, option, getattr(behavior, option))
    return make(wrapped, None, handler.response_serializer)


def status_code(context: grpc.ServicerContext) -> grpc.StatusCode | None:
    """The status the RPC will end with, if one was set (``abort`` sets it); not in the stubs."""
    code = getattr(context, "code", None)
    return None if code is None else code()
