"""What every RPC goes through, bound to each method once when the server is built.

For every method of the relengine services, health and reflection, one wrapped behaviour:

1. the preshared key, if the server has one (not for health: load balancers probe without it);
2. the request parsed from its bytes (every method is registered with raw bytes, see
   ``_handlers``; a body that does not parse is an INVALID_ARGUMENT and one warning line);
3. a stream's slot taken (``streams.StreamSlots``: RESOURCE_EXHAUSTED past a bound);
4. the servicer;
   (the call's deadline is made known to the store meanwhile: ``storage.deadline``);
5. any exception mapped to its status (``status.abort``: RelEngineErrors by the one table,
   INTERNAL ones and anything else with an incident id and a logged traceback);
6. the RPC counted and timed by final status code (``ServerMetrics``) and logged at DEBUG.

grpc's server interceptors would do the same per call, building new handler objects for every
RPC, which costs more than answering a cached Check; here the wrapping happens once per method.
The one interceptor, ``Pipeline.gate``, builds nothing: it refuses a call without the key
before grpc gives the call a thread (see there), and passes every other call on unchanged.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable, Iterable, Iterator, Sequence

import grpc

from ..errors import Unauthenticated
from ..storage.deadline import reset_request_deadline, set_request_deadline
from ..wire.decode import is_undecodable, parse_message
from ..wire.metadata import AUTHORIZATION_METADATA, bearer
from ._handlers import Behavior, Handler, Shape, status_code, wrap_handler
from .auth import HEALTH_PREFIX, authorized
from .metrics import ServerMetrics
from .servicer import deadline_of
from .status import abort, status_of
from .streams import StreamSlots

log = logging.getLogger("relengine.server")


class Pipeline:
    def __init__(
        self, metrics: ServerMetrics | None = None, preshared_key: str | Sequence[str] | None = None,
        streams: StreamSlots | None = None,
    ) -> None:
        keys = (preshared_key,) if isinstance(preshared_key, str) else tuple(preshared_key or ())
        if preshared_key is not None and (not keys or not all(keys)):
            raise ValueError("a preshared key must not be empty")
        self._metrics = metrics
        self._streams = streams
        # Several keys are accepted at once, so that a key can be rotated without downtime.
        self._expected = tuple(bearer(key).encode() for key in keys) or None
        self._refusals: dict[str, Handler] = {}  # method -> what answers a call without the key
        self._gated = False  # the key is checked by the gate, not by each behaviour

    def gate(self) -> grpc.ServerInterceptor | None:
        """The key checked in grpc's polling thread, before a call is given one of the server's
        threads (None when the server has no key); pass it to ``grpc.server(interceptors=)``.

        grpcio's sync server gives a unary call its thread first and then waits in it for the
        request message: a client that sends headers and never a message held a thread per
        call, so a few such calls without the key left keyed clients unanswered. A call that
        fails the check here gets a handler that answers UNAUTHENTICATED without reading the
        request. Take it before registering: the behaviours registered after it leave the key
        to the gate (those of a pipeline without one check it themselves), so the server must
        install it."""
        if self._expected is None:
            return None
        self._gated = True
        return _Gate(self._expected, self._refusals, self._refusal("", None, status_of))

    # -- registration --------------------------------------------------------------------------
    def register(self, server: grpc.Server, add: Callable[[Any], object], statuses: Statuses = status_of) -> None:
        """Call ``add(registrar)`` (a generated ``add_*Servicer_to_server`` bound to its servicer,
        or ``reflection.enable_server_reflection``) and register what it adds, wrapped.
        ``statuses`` gives the status a failed call of these services ends with (the SpiceDB
        API speaks its own error details)."""
        registrar = _Registrar()
        add(registrar)
        for service, handlers in registrar.services:
            wrapped = {name: self.wrap(f"/{service}/{name}", h, statuses) for name, h in handlers.items()}
            if self._expected is not None:
                for name in handlers:
                    method = f"/{service}/{name}"
                    if not method.startswith(HEALTH_PREFIX):
                        self._refusals[method] = self._refusal(method, self._observer(method), statuses)
            server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, wrapped),))
            server.add_registered_method_handlers(service, wrapped)
        for generic in registrar.generic:  # only code that knows no registered handlers
            server.add_generic_rpc_handlers((_WrappedGeneric(self, generic, statuses),))

    def wrap(self, method: str, handler: Handler, statuses: Statuses = status_of) -> Handler:
        """``handler`` with its behaviour passed through the pipeline."""
        authenticate = self._expected is not None and not self._gated and not method.startswith(HEALTH_PREFIX)
        observe = self._observer(method)
        fail = _failer(method, statuses)

        def wrap(behavior: Behavior, shape: Shape) -> Behavior:
            if shape.non_blocking:
                return self._non_blocking(method, behavior, shape, authenticate, observe, fail)
            if shape.response_streaming:
                return self._streaming(method, behavior, shape, authenticate, observe, fail)
            return self._unary(method, behavior, shape, authenticate, observe, fail)

        return wrap_handler(handler, wrap)

    # -- behaviours ----------------------------------------------------------------------------
    def _unary(
        self, method: str, behavior: Behavior, shape: Shape, authenticate: bool, observe: _Observe, fail: _Fail
    ) -> Behavior:
        expected = self._expected
        receive = _receiver(shape)
        slots = self._slots(shape)
        if receive is None and slots is None:  # Check: bytes in and out, nothing more per call

            def run(request: Any, context: grpc.ServicerContext) -> Any:
                start = time.perf_counter()
                code = "OK"
                token = set_request_deadline(functools.partial(deadline_of, context))
                try:
                    if authenticate:
                        _authenticate(context, expected)
                    return behavior(request, context)
                except Exception as exc:
                    code = fail(context, exc)
                    raise
                finally:
                    reset_request_deadline(token)
                    observe(code, start)

            return run

        def run_received(request: Any, context: grpc.ServicerContext) -> Any:
            start = time.perf_counter()
            code = "OK"
            release = None
            token = set_request_deadline(functools.partial(deadline_of, context))
            try:
                if authenticate:
                    _authenticate(context, expected)
                if slots is not None:
                    release = _open(slots, method, context, shape.holds_thread)
                return behavior(request if receive is None else receive(request), context)
            except Exception as exc:
                code = fail(context, exc)
                raise
            finally:
                reset_request_deadline(token)
                if release is not None:
                    release()
                observe(code, start)

        return run_received

    def _streaming(
        self, method: str, behavior: Behavior, shape: Shape, authenticate: bool, observe: _Observe, fail: _Fail
    ) -> Behavior:
        expected = self._expected
        receive = _receiver(shape)
        slots = self._slots(shape)

        def run_stream(request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start = time.perf_counter()
            code = "OK"
            release = None
            try:
                if authenticate:
                    _authenticate(context, expected)
                if slots is not None:
                    release = _open(slots, method, context, shape.holds_thread)
                yield from _with_deadline(behavior(request if receive is None else receive(request), context), context)
            except GeneratorExit:
                code = "CANCELLED"
                raise
            except Exception as exc:
                code = fail(context, exc)
                raise
            finally:
                if release is not None:
                    release()
                observe(code, start)

        return run_stream

    def _non_blocking(
        self, method: str, behavior: Behavior, shape: Shape, authenticate: bool, observe: _Observe, fail: _Fail
    ) -> Behavior:
        """A response stream sent through grpc's callback (health's Watch): the behaviour returns
        at once, its thread goes back to the pool, the stream stays open until the call ends."""
        expected = self._expected
        receive = _receiver(shape)
        slots = self._slots(shape)

        def run_non_blocking(request: Any, context: grpc.ServicerContext, send: Callable[[Any], None]) -> None:
            start = time.perf_counter()
            try:
                if authenticate:
                    _authenticate(context, expected)
                if slots is not None:
                    _open(slots, method, context, shape.holds_thread)
                behavior(request if receive is None else receive(request), context, send)
            except Exception as exc:
                observe(fail(context, exc), start)
                raise
            # Counted when the call ends: health's Watch only ever ends by the client (or the
            # server's stop) cancelling it.
            if not context.add_callback(lambda: observe(_code_name(context, "CANCELLED"), start)):
                observe(_code_name(context, "CANCELLED"), start)  # the call is over already

        return run_non_blocking

    def _refusal(self, method: str, observe: _Observe | None, statuses: Statuses) -> Handler:
        """A handler answering UNAUTHENTICATED at once: it takes the request as a stream, which
        grpc reads only when asked (never here), whatever the method's own shape."""
        expected = self._expected
        fail = _failer(method or "(a method of a generic handler)", statuses)

        def refuse(requests: Any, context: grpc.ServicerContext) -> Iterator[Any]:
            start = time.perf_counter()
            code = "UNAUTHENTICATED"
            try:
                _authenticate(context, expected)  # raises: the gate found no key or a wrong one
                raise Unauthenticated("wrong preshared key")  # pragma: no cover - a key changed?
            except Exception as exc:
                code = fail(context, exc)
                raise
            finally:
                if observe is not None:
                    observe(code, start)
            yield  # pragma: no cover - a generator, so grpc treats it as a streaming response

        return grpc.stream_stream_rpc_method_handler(refuse)

    def _slots(self, shape: Shape) -> StreamSlots | None:
        """The bounds a call of this shape counts against (None: a unary call, unbounded)."""
        return self._streams if shape.request_streaming or shape.response_streaming else None

    def _observer(self, method: str) -> _Observe:
        metrics = self._metrics
        record = metrics.recorder(method) if metrics is not None else None

        def observe(code: str, start: float) -> None:
            elapsed = time.perf_counter() - start
            if record is not None:
                record(code, elapsed)
            if log.isEnabledFor(logging.DEBUG):
                log.debug("rpc", extra={"event": "rpc", "method": method, "code": code, "duration_ms": round(elapsed * 1000, 3)})

        return observe


_Observe = Callable[[str, float], None]
_Fail = Callable[[grpc.ServicerContext, Exception], str]
Statuses = Callable[[BaseException, str], Any]
"""What a failed call of a service ends with: (exception, method) -> google.rpc.Status."""


def _with_deadline(stream: Iterable[Any], context: grpc.ServicerContext) -> Iterator[Any]:
    """``stream``'s messages, the call's deadline made known to the store while each is made
    (set and reset around each step, never across a yield: grpc may resume a stream in
    another thread, or drop it unfinished)."""
    deadline = functools.partial(deadline_of, context)
    messages = iter(stream)
    try:
        while True:
            token = set_request_deadline(deadline)
            try:
                message = next(messages)
            except StopIteration:
                return
            finally:
                reset_request_deadline(token)
            yield message
    finally:
        close = getattr(messages, "close", None)
        if close is not None:
            close()


def _authenticate(context: grpc.ServicerContext, expected: tuple[bytes, ...] | None) -> None:
    assert expected is not None
    metadata = context.invocation_metadata()
    if not authorized(metadata, expected):
        has_header = any(name == AUTHORIZATION_METADATA for name, _ in metadata or ())
        # A wrong key is UNAUTHENTICATED on every service, SpiceDB's API included, as issue 15
        # asks; SpiceDB itself answers a wrong one PERMISSION_DENIED ("invalid preshared key:
        # invalid token") and only a missing or malformed header UNAUTHENTICATED.
        raise Unauthenticated(
            "wrong preshared key" if has_header else "missing `authorization: Bearer <preshared key>` metadata"
        )


def _receiver(shape: Shape) -> Callable[[Any], Any] | None:
    """What turns the raw request (bytes, or an iterator of bytes) into what the behaviour
    takes; None if it takes the bytes as they come."""
    parse = shape.parse
    if parse is None:
        return None
    if not shape.request_streaming:
        return lambda data: parse_message(parse, data)

    def messages(raw: Iterable[bytes]) -> Iterator[Any]:
        for index, data in enumerate(raw):
            yield parse_message(parse, data, f"message {index} of the request stream")

    return messages


def _open(slots: StreamSlots, method: str, context: grpc.ServicerContext, holds_thread: bool) -> Callable[[], None]:
    """Take a stream slot for this call (or raise LimitExceeded); returns what gives it back.

    A stream holding a thread gives it back when its behaviour is left (a cancelled call's
    thread can go on until the behaviour's next yield: the slot is held as long), one sending
    through a callback when grpc says the call is over."""
    slot = slots.acquire(method, context.peer(), holds_thread)

    def release() -> None:
        slots.release(slot)

    if not holds_thread and not context.add_callback(release):
        release()  # the call is over already
    return release


def _code_name(context: grpc.ServicerContext, unset: str) -> str:
    code = status_code(context)
    return unset if code is None else str(code.name)


def _failer(method: str, statuses: Statuses) -> _Fail:
    def fail(context: grpc.ServicerContext, exc: Exception) -> str:
        return _fail(context, exc, method, statuses)

    return fail


def _fail(context: grpc.ServicerContext, exc: Exception, method: str, statuses: Statuses = status_of) -> str:
    """Give the RPC the status for ``exc`` unless it has one (``context.abort`` raises after
    setting it); returns the status code's name. Raises what ``abort`` raises."""
    code = status_code(context)
    if is_undecodable(exc):  # one short line: the client's bug, or noise, not ours
        log.warning("undecodable request", extra={"event": "undecodable_request", "method": method})
    if code is None:
        try:
            abort(context, exc, method, statuses)
        except Exception:
            code = status_code(context)
            if code is None:  # pragma: no cover - abort always sets one
                return "UNKNOWN"
            return str(code.name)
    return str(code.name)


class _Gate(grpc.ServerInterceptor):
    """See ``Pipeline.gate``."""

    def __init__(self, expected: tuple[bytes, ...], refusals: dict[str, Handler], fallback: Handler) -> None:
        self._expected = expected
        self._refusals = refusals
        self._fallback = fallback

    def intercept_service(
        self, continuation: Callable[[grpc.HandlerCallDetails], Handler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> Handler | None:
        method = handler_call_details.method
        if authorized(handler_call_details.invocation_metadata, self._expected) or method.startswith(HEALTH_PREFIX):
            return continuation(handler_call_details)
        if continuation(handler_call_details) is None:
            return None  # no such method: UNIMPLEMENTED, as with the key
        return self._refusals.get(method, self._fallback)


class _Registrar:
    """Stands in for the server while generated code adds its handlers."""

    def __init__(self) -> None:
        self.services: list[tuple[str, dict[str, Handler]]] = []
        self._generic: list[grpc.GenericRpcHandler] = []

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Handler]) -> None:
        self.services.append((service, handlers))

    def add_generic_rpc_handlers(self, handlers: Iterable[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    @property
    def generic(self) -> list[grpc.GenericRpcHandler]:
        """The generic handlers of services that came without registered handlers."""
        registered = {service for service, _ in self.services}
        return [h for h in self._generic if getattr(h, "service_name", lambda: None)() not in registered]


class _WrappedGeneric(grpc.GenericRpcHandler):
    """A generic handler whose handlers go through the pipeline (wrapped per call: only for
    handlers that come without registered ones)."""

    def __init__(self, pipeline: Pipeline, inner: grpc.GenericRpcHandler, statuses: Statuses) -> None:
        self._pipeline = pipeline
        self._inner = inner
        self._statuses = statuses

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        handler = self._inner.service(handler_call_details)
        if handler is None:
            return None
        return self._pipeline.wrap(str(handler_call_details.method), handler, self._statuses)


__all__ = ["Pipeline"]
