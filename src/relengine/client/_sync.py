"""The blocking client: one method per RPC, relengine model types in and out."""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable, Generic, Iterable, Iterator, Mapping, Sequence, TypeVar

import grpc

from ..errors import RelEngineError
from ..model import Consistency, RelationshipFilter, Revision
from ..results import (
    BulkCheckResponse,
    Change,
    CheckRequest,
    CheckResponse,
    DeleteResult,
    ExpandNode,
    GuardViolation,
    Operation,
    Precondition,
    ReadResult,
    RelationshipUpdate,
    ResourceResult,
    SubjectResult,
)
from ..wire import convert as c
from ..wire._proto.relengine.v1 import (
    permissions_pb2_grpc,
    relationships_pb2_grpc,
    schema_pb2,
    schema_pb2_grpc,
)
from ..wire.status import error_from_rpc_error
from . import _common as m

T = TypeVar("T")


def _retryable(exc: grpc.RpcError) -> bool:
    return exc.code() is grpc.StatusCode.UNAVAILABLE


class ResultStream(Generic[T]):
    """The results of a server-streaming RPC, converted lazily as they arrive.

    ``revision`` is the revision the server answers at (known before the first result, also for
    an empty result; None for Watch until it starts). ``cancel()`` ends the call (Watch).
    Errors are raised as relengine exceptions while iterating.
    """

    def __init__(self, start: Callable[[float | None], Any], convert: Callable[[Any], T], retry: m.RetryPolicy, timeout: float | None) -> None:
        self._start = start
        self._convert = convert
        self._retry = retry
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._call = start(self._remaining())
        self._started = False
        self._cancelled = False

    def _remaining(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    @property
    def revision(self) -> Revision | None:
        """Blocks until the server sent its initial metadata; raises the call's error if it
        failed before that."""
        try:
            revision = m.revision_of_metadata(self._call.initial_metadata())
        except grpc.RpcError as exc:
            raise error_from_rpc_error(exc) from exc
        if revision is None and self._call.done() and self._call.code() is not grpc.StatusCode.OK:
            raise error_from_rpc_error(self._call)
        return revision

    def cancel(self) -> None:
        """End the call; iteration then stops quietly."""
        self._cancelled = True
        self._call.cancel()

    def __iter__(self) -> Iterator[T]:
        attempt = 0
        while True:
            try:
                for msg in self._call:
                    self._started = True
                    yield self._convert(msg)
                return
            except grpc.RpcError as exc:
                if exc.code() is grpc.StatusCode.CANCELLED and self._cancelled:
                    return  # our own cancel()
                attempt += 1
                if self._started or not _retryable(exc) or attempt >= self._retry.max_attempts:
                    raise error_from_rpc_error(exc) from exc
                delay = self._retry.backoff(attempt - 1)
                remaining = self._remaining()
                if remaining is not None and remaining <= delay:
                    raise error_from_rpc_error(exc) from exc
                time.sleep(delay)
                self._call = self._start(self._remaining())

    def __enter__(self) -> ResultStream[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


class Client:
    """A blocking relengine client.

    ``endpoint`` is ``host:port``. Plaintext for loopback endpoints unless ``tls=True`` or
    ``root_certificates`` (PEM) are given; TLS otherwise. ``preshared_key`` is sent as
    ``authorization: Bearer KEY``. ``timeout`` (seconds, None: none) is the default deadline
    of every call but Watch; each method takes its own ``timeout`` too. Calls that fail with
    UNAVAILABLE are retried per ``retry``. Failures raise the relengine exception the server
    raised (``relengine.errors``), so code catches the same classes in-process and remote.
    Thread-safe; close it (or use ``with``) to release the channel.
    """

    def __init__(
        self,
        endpoint: str = m.DEFAULT_ENDPOINT,
        *,
        preshared_key: str | None = None,
        tls: bool | None = None,
        root_certificates: bytes | None = None,
        server_name: str | None = None,
        timeout: float | None = m.DEFAULT_TIMEOUT,
        retry: m.RetryPolicy = m.DEFAULT_RETRY,
        max_message_bytes: int = m.DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        credentials = m.channel_credentials(endpoint, tls, root_certificates)
        options = m.channel_options(max_message_bytes, server_name)
        if credentials is None:
            self._channel = grpc.insecure_channel(endpoint, options=options)
        else:
            self._channel = grpc.secure_channel(endpoint, credentials, options=options)
        self.endpoint = endpoint
        self.timeout = timeout
        self.retry = retry
        self._metadata = m.auth_metadata(preshared_key)
        self._permissions = permissions_pb2_grpc.PermissionsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._relationships = relationships_pb2_grpc.RelationshipsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._schema = schema_pb2_grpc.SchemaServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._check = m.check_method(self._channel)

    # -- plumbing ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _timeout(self, timeout: float | None) -> float | None:
        """A method's ``timeout=None`` means the client's default."""
        return self.timeout if timeout is None else timeout

    def _unary(self, method: Any, request: Any, timeout: float | None, *, retry: bool = True) -> Any:
        limit = self._timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        try:  # the first attempt has the whole budget
            return method(request, timeout=limit, metadata=self._metadata)
        except grpc.RpcError as exc:
            if not retry or not _retryable(exc) or self.retry.max_attempts <= 1:
                raise error_from_rpc_error(exc) from exc
            delay = self.retry.backoff(0)
            if deadline is not None and deadline - time.monotonic() <= delay:
                raise error_from_rpc_error(exc) from exc
            time.sleep(delay)
        attempt = 1
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return method(request, timeout=remaining, metadata=self._metadata)
            except grpc.RpcError as exc:
                attempt += 1
                if not retry or not _retryable(exc) or attempt >= self.retry.max_attempts:
                    raise error_from_rpc_error(exc) from exc
                delay = self.retry.backoff(attempt - 1)
                if deadline is not None and deadline - time.monotonic() <= delay:
                    raise error_from_rpc_error(exc) from exc
                time.sleep(delay)

    def _stream(self, method: Any, request: Any, convert: Callable[[Any], T], timeout: float | None) -> ResultStream[T]:
        """``timeout`` here is final (None: no deadline); callers resolve the default."""
        return ResultStream(
            lambda remaining: method(request, timeout=remaining, metadata=self._metadata), convert, self.retry, timeout
        )

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel connects (raises Unavailable after ``timeout`` seconds)."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            from ..errors import Unavailable

            raise Unavailable(f"no relengine server at {self.endpoint} after {timeout} s") from None

    # -- permissions --------------------------------------------------------------------------------
    def check(
        self, resource: m.ObjectLike, permission: str, subject: m.SubjectLike, *,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> CheckResponse:
        """Whether ``subject`` has ``permission`` on ``resource`` (``"doc:1"``, ``"user:ann"`` work too)."""
        request = m.check_request_bytes(resource, permission, subject, consistency, context)
        return m.check_reply(self._unary(self._check, request, timeout))

    def check_text(self, text: str, **kwargs: Any) -> CheckResponse:
        """``check`` of ``"doc:1#view@user:ann"``."""
        rel = m.as_relationship(text)
        return self.check(rel.resource, rel.relation, rel.subject, **kwargs)

    def bulk_check(
        self, items: Sequence[CheckRequest | str], *, consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> BulkCheckResponse:
        request = m.bulk_check_request(items, consistency, context)
        return m.bulk_check_response(self._unary(self._permissions.BulkCheck, request, timeout))

    def expand(
        self, resource: m.ObjectLike, permission: str, *, consistency: Consistency | None = None, timeout: float | None = None
    ) -> tuple[ExpandNode, Revision]:
        response = self._unary(self._permissions.Expand, m.expand_request(resource, permission, consistency), timeout)
        return c.expand_from_proto(response.tree), Revision.from_token(response.revision_token)

    def lookup_resources(
        self, resource_type: str, permission: str, subject: m.SubjectLike, *, consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None, limit: int | None = None, cursor: str | None = None, timeout: float | None = None,
    ) -> ResultStream[ResourceResult]:
        request = m.lookup_resources_request(resource_type, permission, subject, consistency, context, limit, cursor)
        return self._stream(self._permissions.LookupResources, request, m.resource_result, self._timeout(timeout))

    def lookup_subjects(
        self, resource: m.ObjectLike, permission: str, subject_type: str, *, subject_relation: str | None = None,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None, limit: int | None = None,
        cursor: str | None = None, timeout: float | None = None,
    ) -> ResultStream[SubjectResult]:
        request = m.lookup_subjects_request(resource, permission, subject_type, subject_relation, consistency, context, limit, cursor)
        return self._stream(self._permissions.LookupSubjects, request, m.subject_result, self._timeout(timeout))

    # -- relationships ------------------------------------------------------------------------------
    def write(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = (), *, timeout: float | None = None
    ) -> Revision:
        """Apply ``updates`` atomically after checking ``preconditions``; returns the new revision."""
        response = self._unary(self._relationships.Write, m.write_request(updates, preconditions), timeout)
        return Revision.from_token(response.revision_token)

    def create(self, *relationships: m.RelationshipLike, preconditions: Sequence[Precondition] = (), timeout: float | None = None) -> Revision:
        """CREATE each relationship (text or Relationship); ALREADY_EXISTS if one is live."""
        return self.write(m.updates_of(Operation.CREATE, relationships), preconditions, timeout=timeout)

    def touch(self, *relationships: m.RelationshipLike, preconditions: Sequence[Precondition] = (), timeout: float | None = None) -> Revision:
        """TOUCH (create or update) each relationship (text or Relationship)."""
        return self.write(m.updates_of(Operation.TOUCH, relationships), preconditions, timeout=timeout)

    def delete_relationships(
        self, *relationships: m.RelationshipLike, preconditions: Sequence[Precondition] = (), timeout: float | None = None
    ) -> Revision:
        """DELETE each relationship (text or Relationship); absent ones are no error."""
        return self.write(m.updates_of(Operation.DELETE, relationships), preconditions, timeout=timeout)

    def read(
        self, filter: RelationshipFilter, *, consistency: Consistency | None = None, limit: int | None = None,
        cursor: str | None = None, timeout: float | None = None,
    ) -> ResultStream[ReadResult]:
        return self._stream(self._relationships.Read, m.read_request(filter, consistency, limit, cursor), m.read_result, self._timeout(timeout))

    def delete(
        self, filter: RelationshipFilter, *, limit: int | None = None, preconditions: Sequence[Precondition] = (),
        timeout: float | None = None,
    ) -> DeleteResult:
        """Delete what matches ``filter`` (at most ``limit``); ``complete`` says whether all went."""
        response = self._unary(self._relationships.Delete, m.delete_request(filter, limit, preconditions), timeout)
        return m.delete_result(response)

    def watch(self, after: Revision | str | None = None, *, timeout: float | None = None) -> ResultStream[Change]:
        """Every change after ``after`` (default: from now on); blocks for new ones until
        ``cancel()`` or ``timeout`` (default: none)."""
        return self._stream(self._relationships.Watch, m.watch_request(after), c.change_from_proto, timeout)

    def import_relationships(
        self, relationships: Iterable[m.RelationshipLike], *, batch: int = m.IMPORT_BATCH, timeout: float | None = None
    ) -> tuple[int, Revision]:
        """Stream relationships to the server, which TOUCHes them in transactions of up to
        50,000 (past the per-write limit); returns (count, the last revision). Restartable:
        importing the same relationships again changes nothing. A failure part-way keeps the
        transactions committed before it. Retried on UNAVAILABLE only when ``relationships``
        is a sequence (it can be sent again)."""
        retry = isinstance(relationships, Sequence)
        requests = m.RequestStream(relationships, batch)
        try:
            response = self._unary(
                lambda _, **kw: self._relationships.Import(iter(requests), **kw), None, timeout, retry=retry
            )
        except RelEngineError:
            if requests.failure is not None:
                raise requests.failure from None
            raise
        return int(response.num_loaded), Revision.from_token(response.revision_token)

    # -- schema -------------------------------------------------------------------------------------
    def write_schema(self, text: str, *, timeout: float | None = None) -> Revision:
        """Store a schema; a SchemaError carries the compiler's issues with positions."""
        response = self._unary(self._schema.WriteSchema, schema_pb2.WriteSchemaRequest(schema=text), timeout)
        return Revision.from_token(response.revision_token)

    def read_schema(self, *, consistency: Consistency | None = None, timeout: float | None = None) -> tuple[str, Revision]:
        response = self._unary(self._schema.ReadSchema, m.read_schema_request(consistency), timeout)
        return str(response.schema_text), Revision.from_token(response.revision_token)

    def write_guards(self, text: str, *, timeout: float | None = None) -> Revision:
        """Store a guard file; GuardFileError (line, column) for a bad one."""
        response = self._unary(self._schema.WriteGuards, schema_pb2.WriteGuardsRequest(guards=text), timeout)
        return Revision.from_token(response.revision_token)

    def read_guards(self, *, consistency: Consistency | None = None, timeout: float | None = None) -> tuple[str, Revision]:
        """The stored guard file text (``""`` if none)."""
        response = self._unary(self._schema.ReadGuards, m.read_guards_request(consistency), timeout)
        return str(response.guards_text), Revision.from_token(response.revision_token)

    def check_guards(self, within: _dt.timedelta | None = None, *, timeout: float | None = None) -> list[GuardViolation]:
        """The objects below a stored guard now, at head (``Engine.guard_violations``); with
        ``within``, also those that fall below one by then as relationships expire."""
        response = self._unary(self._schema.CheckGuards, c.check_guards_request(within), timeout)
        return [c.guard_violation_from_proto(v) for v in response.violations]
