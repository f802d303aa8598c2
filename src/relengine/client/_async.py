"""The asyncio client (grpc.aio): the same methods as ``Client``, as coroutines and async iterators."""

from __future__ import annotations

import asyncio
import datetime as _dt
import time
from typing import Any, AsyncIterator, Callable, Generic, Iterable, Mapping, Sequence, TypeVar

import grpc
import grpc.aio

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


def _retryable(exc: grpc.aio.AioRpcError) -> bool:
    return exc.code() is grpc.StatusCode.UNAVAILABLE


class AsyncResultStream(Generic[T]):
    """The results of a server-streaming RPC: ``async for`` them; ``await stream.revision()``."""

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

    async def revision(self) -> Revision | None:
        """Waits for the server's initial metadata; raises the call's error if it failed first."""
        try:
            revision = m.revision_of_metadata(await self._call.initial_metadata())
        except grpc.aio.AioRpcError as exc:
            raise error_from_rpc_error(exc) from exc
        if revision is None and self._call.done():
            code = await self._call.code()
            if code is not grpc.StatusCode.OK:
                raise error_from_rpc_error(
                    grpc.aio.AioRpcError(code, await self._call.initial_metadata(), await self._call.trailing_metadata(),
                                         await self._call.details())
                )
        return revision

    def cancel(self) -> None:
        """End the call; iteration then stops quietly."""
        self._cancelled = True
        self._call.cancel()

    async def __aiter__(self) -> AsyncIterator[T]:
        attempt = 0
        while True:
            try:
                async for msg in self._call:
                    self._started = True
                    yield self._convert(msg)
                return
            except asyncio.CancelledError:
                if self._cancelled:  # our own cancel(), not the task's
                    return
                raise
            except grpc.aio.AioRpcError as exc:
                if exc.code() is grpc.StatusCode.CANCELLED and self._cancelled:
                    return
                attempt += 1
                if self._started or not _retryable(exc) or attempt >= self._retry.max_attempts:
                    raise error_from_rpc_error(exc) from exc
                delay = self._retry.backoff(attempt - 1)
                remaining = self._remaining()
                if remaining is not None and remaining <= delay:
                    raise error_from_rpc_error(exc) from exc
                await asyncio.sleep(delay)
                self._call = self._start(self._remaining())


class AsyncClient:
    """The asyncio twin of ``Client`` (same arguments, same errors); use ``async with``."""

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
            self._channel = grpc.aio.insecure_channel(endpoint, options=options)
        else:
            self._channel = grpc.aio.secure_channel(endpoint, credentials, options=options)
        self.endpoint = endpoint
        self.timeout = timeout
        self.retry = retry
        self._metadata = m.auth_metadata(preshared_key)
        self._permissions = permissions_pb2_grpc.PermissionsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._relationships = relationships_pb2_grpc.RelationshipsServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._schema = schema_pb2_grpc.SchemaServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._check = m.check_method(self._channel)

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _timeout(self, timeout: float | None) -> float | None:
        return self.timeout if timeout is None else timeout

    async def _unary(self, method: Any, request: Any, timeout: float | None, *, retry: bool = True) -> Any:
        limit = self._timeout(timeout)
        deadline = None if limit is None else time.monotonic() + limit
        try:  # the first attempt has the whole budget
            return await method(request, timeout=limit, metadata=self._metadata)
        except grpc.aio.AioRpcError as exc:
            if not retry or not _retryable(exc) or self.retry.max_attempts <= 1:
                raise error_from_rpc_error(exc) from exc
            delay = self.retry.backoff(0)
            if deadline is not None and deadline - time.monotonic() <= delay:
                raise error_from_rpc_error(exc) from exc
            await asyncio.sleep(delay)
        attempt = 1
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return await method(request, timeout=remaining, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                attempt += 1
                if not retry or not _retryable(exc) or attempt >= self.retry.max_attempts:
                    raise error_from_rpc_error(exc) from exc
                delay = self.retry.backoff(attempt - 1)
                if deadline is not None and deadline - time.monotonic() <= delay:
                    raise error_from_rpc_error(exc) from exc
                await asyncio.sleep(delay)

    def _stream(self, method: Any, request: Any, convert: Callable[[Any], T], timeout: float | None) -> AsyncResultStream[T]:
        return AsyncResultStream(
            lambda remaining: method(request, timeout=remaining, metadata=self._metadata), convert, self.retry, timeout
        )

    # -- permissions --------------------------------------------------------------------------------
    async def check(
        self, resource: m.ObjectLike, permission: str, subject: m.SubjectLike, *,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> CheckResponse:
        request = m.check_request_bytes(resource, permission, subject, consistency, context)
        return m.check_reply(await self._unary(self._check, request, timeout))

    async def check_text(self, text: str, **kwargs: Any) -> CheckResponse:
        rel = m.as_relationship(text)
        return await self.check(rel.resource, rel.relation, rel.subject, **kwargs)

    async def bulk_check(
        self, items: Sequence[CheckRequest | str], *, consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None, timeout: float | None = None,
    ) -> BulkCheckResponse:
        request = m.bulk_check_request(items, consistency, context)
        return m.bulk_check_response(await self._unary(self._permissions.BulkCheck, request, timeout))

    async def expand(
        self, resource: m.ObjectLike, permission: str, *, consistency: Consistency | None = None, timeout: float | None = None
    ) -> tuple[ExpandNode, Revision]:
        response = await self._unary(self._permissions.Expand, m.expand_request(resource, permission, consistency), timeout)
        return c.expand_from_proto(response.tree), Revision.from_token(response.revision_token)

    def lookup_resources(
        self, resource_type: str, permission: str, subject: m.SubjectLike, *, consistency: Consistency | None = None,
        context: Mapping[str, Any] | None = None, limit: int | None = None, cursor: str | None = None,
        timeout: float | None = None,
    ) -> AsyncResultStream[ResourceResult]:
        request = m.lookup_resources_request(resource_type, permission, subject, consistency, context, limit, cursor)
        return self._stream(self._permissions.LookupResources, request, m.resource_result, self._timeout(timeout))

    def lookup_subjects(
        self, resource: m.ObjectLike, permission: str, subject_type: str, *, subject_relation: str | None = None,
        consistency: Consistency | None = None, context: Mapping[str, Any] | None = None, limit: int | None = None,
        cursor: str | None = None, timeout: float | None = None,
    ) -> AsyncResultStream[SubjectResult]:
        request = m.lookup_subjects_request(resource, permission, subject_type, subject_relation, consistency, context, limit, cursor)
        return self._stream(self._permissions.LookupSubjects, request, m.subject_result, self._timeout(timeout))

    # -- relationships ------------------------------------------------------------------------------
    async def write(
        self, updates: Sequence[RelationshipUpdate], preconditions: Sequence[Precondition] = (), *, timeout: float | None = None
    ) -> Revision:
        response = await self._unary(self._relationships.Write, m.write_request(updates, preconditions), timeout)
        return Revision.from_token(response.revision_token)

    async def create(self, *relationships: m.RelationshipLike, preconditions: Sequence[Precondition] = (), timeout: float | None = None) -> Revision:
        return await self.write(m.updates_of(Operation.CREATE, relationships), preconditions, timeout=timeout)

    async def touch(self, *relationships: m.RelationshipLike, preconditions: Sequence[Precondition] = (), timeout: float | None = None) -> Revision:
        return await self.write(m.updates_of(Operation.TOUCH, relationships), preconditions, timeout=timeout)

    async def delete_relationships(
        self, *relationships: m.RelationshipLike, preconditions: Sequence[Precondition] = (), timeout: float | None = None
    ) -> Revision:
        return await self.write(m.updates_of(Operation.DELETE, relationships), preconditions, timeout=timeout)

    def read(
        self, filter: RelationshipFilter, *, consistency: Consistency | None = None, limit: int | None = None,
        cursor: str | None = None, timeout: float | None = None,
    ) -> AsyncResultStream[ReadResult]:
        return self._stream(self._relationships.Read, m.read_request(filter, consistency, limit, cursor), m.read_result, self._timeout(timeout))

    async def delete(
        self, filter: RelationshipFilter, *, limit: int | None = None, preconditions: Sequence[Precondition] = (),
        timeout: float | None = None,
    ) -> DeleteResult:
        response = await self._unary(self._relationships.Delete, m.delete_request(filter, limit, preconditions), timeout)
        return m.delete_result(response)

    def watch(self, after: Revision | str | None = None, *, timeout: float | None = None) -> AsyncResultStream[Change]:
        return self._stream(self._relationships.Watch, m.watch_request(after), c.change_from_proto, timeout)

    async def import_relationships(
        self, relationships: Iterable[m.RelationshipLike], *, batch: int = m.IMPORT_BATCH, timeout: float | None = None
    ) -> tuple[int, Revision]:
        """As ``Client.import_relationships``."""
        retry = isinstance(relationships, Sequence)
        requests = m.RequestStream(relationships, batch)
        try:
            response = await self._unary(
                lambda _, **kw: self._relationships.Import(iter(requests), **kw), None, timeout, retry=retry
            )
        except RelEngineError:
            if requests.failure is not None:
                raise requests.failure from None
            raise
        return int(response.num_loaded), Revision.from_token(response.revision_token)

    # -- schema -------------------------------------------------------------------------------------
    async def write_schema(self, text: str, *, timeout: float | None = None) -> Revision:
        response = await self._unary(self._schema.WriteSchema, schema_pb2.WriteSchemaRequest(schema=text), timeout)
        return Revision.from_token(response.revision_token)

    async def read_schema(self, *, consistency: Consistency | None = None, timeout: float | None = None) -> tuple[str, Revision]:
        response = await self._unary(self._schema.ReadSchema, m.read_schema_request(consistency), timeout)
        return str(response.schema_text), Revision.from_token(response.revision_token)

    async def write_guards(self, text: str, *, timeout: float | None = None) -> Revision:
        response = await self._unary(self._schema.WriteGuards, schema_pb2.WriteGuardsRequest(guards=text), timeout)
        return Revision.from_token(response.revision_token)

    async def read_guards(self, *, consistency: Consistency | None = None, timeout: float | None = None) -> tuple[str, Revision]:
        response = await self._unary(self._schema.ReadGuards, m.read_guards_request(consistency), timeout)
        return str(response.guards_text), Revision.from_token(response.revision_token)

    async def check_guards(self, within: _dt.timedelta | None = None, *, timeout: float | None = None) -> list[GuardViolation]:
        response = await self._unary(self._schema.CheckGuards, c.check_guards_request(within), timeout)
        return [c.guard_violation_from_proto(v) for v in response.violations]
