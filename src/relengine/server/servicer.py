"""The RPCs, each thin: convert the request in, call the Engine, convert the answer out.

Errors are not handled here: ``pipeline.Pipeline`` maps whatever is raised. Streaming
RPCs send the revision in the initial metadata (``relengine-revision``) before the first
message, so that clients know it even for an empty result, and in every message.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Final, Iterable, Iterator, NoReturn, TypeVar

import grpc

from ..errors import Cancelled, DeadlineExceeded, RelEngineError
from ..model import Consistency, Relationship
from ..results import CheckResponse, CheckResult
from ..service import Engine
from ..wire import convert as c
from ..wire._proto.relengine.v1 import (
    permissions_pb2,
    permissions_pb2_grpc,
    relationships_pb2,
    relationships_pb2_grpc,
    schema_pb2,
    schema_pb2_grpc,
)
from ..wire.decode import parse_message
from ..wire.metadata import REVISION_METADATA
from .status import status_of

T = TypeVar("T")
WATCH_POLL_SECONDS: Final = 0.1  # how often an idle Watch looks whether its client or the server left
_NO_DEADLINE: Final = 1e8  # grpc reports "no deadline" as a huge time remaining
_NEAR_DEADLINE: Final = 0.01  # seconds: a call that ended this close to its deadline timed out
_BULK_CHECK: Final = "/{}/BulkCheck".format(permissions_pb2.DESCRIPTOR.services_by_name["PermissionsService"].full_name)


def deadline_of(context: grpc.ServicerContext) -> float | None:
    """The client's deadline as a ``time.monotonic()`` instant (the engine's clock), or None."""
    remaining = context.time_remaining()
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return time.monotonic() + remaining


def cancelled_of(context: grpc.ServicerContext) -> Callable[[], bool]:
    """Whether the client has gone (cancelled the call or disconnected) while its deadline, if
    any, is still ahead: the Engine's long loops ask it every few hundred steps. A call past its
    deadline is inactive too; that one is left to the Engine's clock, so it ends
    DEADLINE_EXCEEDED, not CANCELLED."""
    is_active, time_remaining = context.is_active, context.time_remaining

    def cancelled() -> bool:
        if is_active():
            return False
        remaining = time_remaining()
        return remaining is None or remaining > _NEAR_DEADLINE

    return cancelled


def _stop_options(context: grpc.ServicerContext) -> dict[str, Any]:
    """The call's deadline and cancellation, as the Engine's keyword arguments."""
    return {"deadline": deadline_of(context), "cancelled": cancelled_of(context)}


def _raise_gone(context: grpc.ServicerContext, exc: grpc.RpcError) -> NoReturn:
    """Re-raise ``exc``, from grpc's side of a call, as Cancelled (or DeadlineExceeded) if the
    client has gone. grpcio raises a bare RpcError (no code, no message) from
    ``send_initial_metadata`` and from a request stream once the client has cancelled,
    disconnected or run out of time; left alone it would end as INTERNAL, with an error logged."""
    if context.is_active():
        raise exc
    remaining = context.time_remaining()
    if remaining is not None and remaining <= _NEAR_DEADLINE:
        raise DeadlineExceeded("the call ran past its deadline") from exc
    raise Cancelled("the call was cancelled: the client has gone") from exc


def received(requests: Iterable[T], context: grpc.ServicerContext) -> Iterator[T]:
    """The messages of a request stream as they come, the client's going (grpcio's bare
    RpcError from the stream) raised as Cancelled or DeadlineExceeded (``_raise_gone``)."""
    stream = iter(requests)
    while True:
        try:
            request = next(stream, None)
        except grpc.RpcError as exc:
            _raise_gone(context, exc)
        if request is None:
            return
        yield request


def _page_options(request: Any, context: grpc.ServicerContext) -> dict[str, Any]:
    """What a lookup request says of its revision, caveat context, page, deadline and
    cancellation, as the Engine's keyword arguments."""
    return {
        "consistency": c.consistency_from_proto(request),
        "context": c.optional_context(request),
        "limit": c.limit_from_proto(request.optional_limit),
        "cursor": request.optional_cursor or None,
        **_stop_options(context),
    }


def _send_revision(context: grpc.ServicerContext, token: str) -> None:
    try:
        context.send_initial_metadata(((REVISION_METADATA, token),))
    except grpc.RpcError as exc:
        _raise_gone(context, exc)


class Replies:
    """Serialized Check replies by serialized request, at one revision.

    The server's copy of answers that are in the engine's cache at that revision (so the
    request was valid and the reply is what ``Engine.check`` says), found again without parsing
    the request or building the reply: the same bytes are the same question. Requests with a
    consistency or a caveat context are never kept. A newer revision starts an empty table;
    a full table drops its oldest tenth.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._table: tuple[int, dict[bytes, bytes]] = (-1, {})  # swapped whole: readers take no lock
        self._lock = threading.Lock()

    def get(self, revision: int, request: bytes) -> bytes | None:
        at, table = self._table
        return table.get(request) if at == revision else None

    def put(self, revision: int, request: bytes, reply: bytes) -> None:
        if self.capacity <= 0:
            return
        at, table = self._table
        if at != revision:
            if revision < at:
                return  # a reply at an older revision than the table's: not worth keeping
            table = {}
            self._table = (revision, table)
        if len(table) >= self.capacity:
            with self._lock:
                for old in list(table)[: max(1, self.capacity // 10)]:
                    table.pop(old, None)
        table[request] = reply

    def __len__(self) -> int:
        return len(self._table[1])


def cached_answer(engine: Engine, request: Any) -> CheckResponse | None:
    """The cached answer to a Check request (relengine's or SpiceDB's: the same field names)
    asked under the default consistency, looked up by the request's strings as they are: only
    questions that were checked, so valid, are in the cache."""
    res, sub = request.resource, request.subject
    obj = sub.object
    return engine.cached_check(
        res.object_type, res.object_id, request.permission, obj.object_type, obj.object_id,
        sub.optional_relation or None,
    )


class PlainReplies:
    """The serialized reply of each plain answer (a permissionship, no missing parameters) at a
    revision: a handful of distinct replies, serialized once and shared by every request. A
    newer revision's replies push out the old ones (at most 16 are kept)."""

    def __init__(self) -> None:
        self._table: dict[tuple[int, int], bytes] = {}

    def get(self, response: CheckResponse, build: Callable[[CheckResponse], bytes]) -> bytes:
        key = (response.result.permissionship, response.revision.value)
        reply = self._table.get(key)
        if reply is None:
            reply = build(response)
            if len(self._table) >= 16:
                self._table.clear()
            self._table[key] = reply
        return reply


def _plain_reply(response: CheckResponse) -> bytes:
    return permissions_pb2.CheckResponse(
        revision_token=response.revision.token(),
        permissionship=c.permissionship_to_proto(response.result.permissionship),  # type: ignore[arg-type]
    ).SerializeToString()


class PermissionsServicer(permissions_pb2_grpc.PermissionsServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._plain = PlainReplies()
        self.replies = Replies(engine.cache.capacity)
        self._count_hit = engine.cache.count_hits

    def check_bytes(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """Check, registered with the request and the reply as bytes (see ``Replies``): a known
        question at the revision the default consistency reads now is one dict lookup."""
        revision = self.engine.cache_revision()
        if revision is not None:
            reply = self.replies.get(revision.value, data)
            if reply is not None:
                self._count_hit()
                return reply
        request = parse_message(permissions_pb2.CheckRequest.FromString, data)
        response, cached = self._check(request, context)
        reply = self._reply(response)
        if cached:
            self.replies.put(response.revision.value, data, reply)
        return reply

    def _check(self, request: permissions_pb2.CheckRequest, context: grpc.ServicerContext) -> tuple[CheckResponse, bool]:
        """The answer, and whether it came from the engine's cache."""
        plain = not request.HasField("consistency") and not request.HasField("context")
        if plain:
            response = cached_answer(self.engine, request)
            if response is not None:
                return response, True
        resource, permission, subject = c.question_from_proto(request)
        response = self.engine.check(
            resource, permission, subject,
            consistency=c.consistency_from_proto(request),
            context=c.optional_context(request),
            deadline=deadline_of(context),
            cache_missed=plain,  # looked up above: not again
        )
        return response, False

    def _reply(self, response: CheckResponse) -> bytes:
        result = response.result
        if result.missing_parameters:
            return permissions_pb2.CheckResponse(
                revision_token=response.revision.token(),
                permissionship=c.permissionship_to_proto(result.permissionship),  # type: ignore[arg-type]
                missing_parameters=result.missing_parameters,
            ).SerializeToString()
        return self._plain.get(response, _plain_reply)

    def BulkCheck(
        self, request: permissions_pb2.BulkCheckRequest, context: grpc.ServicerContext
    ) -> permissions_pb2.BulkCheckResponse:
        items = request.items
        cached = None
        if not request.HasField("consistency") and not request.HasField("context"):
            # Cached answers first, by the items' strings as sent (only checked questions are
            # cached); the rest validated and answered at the same revision.
            cached = self.engine.cached_answers(c.item_strings(items))
        results: list[CheckResult | RelEngineError | None]
        if cached is not None:
            revision, answers = cached
            results = list(answers)
            misses = [i for i, answer in enumerate(answers) if answer is None]
            if misses:
                rest = self.engine.check_questions(
                    c.questions_from_items(items, misses),
                    consistency=Consistency.at_exact_snapshot(revision),
                    **_stop_options(context),
                )
                for i, found in zip(misses, rest.results, strict=True):
                    results[i] = found
        else:
            response = self.engine.check_questions(
                c.questions_from_items(items),
                consistency=c.consistency_from_proto(request),
                context=c.optional_context(request),
                **_stop_options(context),
            )
            revision, results = response.revision, list(response.results)
        out = permissions_pb2.BulkCheckResponse(revision_token=revision.token())
        add = out.pairs.add
        to_proto = c.permissionship_to_proto
        for item, result in zip(items, results, strict=True):
            assert result is not None
            pair = add()
            pair.request.CopyFrom(item)
            if isinstance(result, Exception):
                pair.error.CopyFrom(status_of(result, _BULK_CHECK))
            else:
                pair.item.permissionship = to_proto(result.permissionship)  # type: ignore[assignment]
                if result.missing_parameters:
                    pair.item.missing_parameters.extend(result.missing_parameters)
        return out

    def Expand(self, request: permissions_pb2.ExpandRequest, context: grpc.ServicerContext) -> permissions_pb2.ExpandResponse:
        c.require(request, "resource", "resource")
        resource = c.object_from_proto(request.resource)
        permission = c.check_relation(request.permission, "permission")
        tree, revision = self.engine.expand(
            resource, permission, consistency=c.consistency_from_proto(request), **_stop_options(context)
        )
        return permissions_pb2.ExpandResponse(revision_token=revision.token(), tree=c.expand_to_proto(tree))

    def LookupResources(
        self, request: permissions_pb2.LookupResourcesRequest, context: grpc.ServicerContext
    ) -> Iterator[permissions_pb2.LookupResourcesResponse]:
        c.require(request, "subject", "subject")
        stream = self.engine.lookup_resources(
            c.check_type(request.resource_object_type, "resource_object_type"),
            c.check_relation(request.permission, "permission"),
            c.subject_from_proto(request.subject),
            **_page_options(request, context),
        )
        token = stream.revision.token()
        _send_revision(context, token)
        for result in stream:
            yield permissions_pb2.LookupResourcesResponse(
                revision_token=token,
                resource_object_id=result.resource_id,
                permissionship=c.permissionship_to_proto(result.permissionship),  # type: ignore[arg-type]
                missing_parameters=result.missing_parameters,
                after_cursor=result.cursor,
            )

    def LookupSubjects(
        self, request: permissions_pb2.LookupSubjectsRequest, context: grpc.ServicerContext
    ) -> Iterator[permissions_pb2.LookupSubjectsResponse]:
        c.require(request, "resource", "resource")
        subject_relation = request.optional_subject_relation or None
        if subject_relation == "...":
            subject_relation = None
        stream = self.engine.lookup_subjects(
            c.object_from_proto(request.resource),
            c.check_relation(request.permission, "permission"),
            c.check_type(request.subject_object_type, "subject_object_type"),
            subject_relation=None if subject_relation is None else c.check_relation(subject_relation, "optional_subject_relation"),
            **_page_options(request, context),
        )
        token = stream.revision.token()
        _send_revision(context, token)
        for result in stream:
            yield permissions_pb2.LookupSubjectsResponse(
                revision_token=token,
                subject=c.subject_to_proto(result.subject),
                permissionship=c.permissionship_to_proto(result.permissionship),  # type: ignore[arg-type]
                missing_parameters=result.missing_parameters,
                excluded_subjects=[c.subject_to_proto(s) for s in result.excluded],
                after_cursor=result.cursor,
            )


class RelationshipsServicer(relationships_pb2_grpc.RelationshipsServiceServicer):
    """``stopping`` ends open Watch streams when the server shuts down."""

    def __init__(self, engine: Engine, stopping: threading.Event | None = None) -> None:
        self.engine = engine
        self.stopping = stopping or threading.Event()

    def Write(self, request: relationships_pb2.WriteRequest, context: grpc.ServicerContext) -> relationships_pb2.WriteResponse:
        updates = [c.update_from_proto(u, i) for i, u in enumerate(request.updates)]
        preconditions = [c.precondition_from_proto(p, i) for i, p in enumerate(request.preconditions)]
        revision = self.engine.write(updates, preconditions)
        return relationships_pb2.WriteResponse(revision_token=revision.token())

    def Read(self, request: relationships_pb2.ReadRequest, context: grpc.ServicerContext) -> Iterator[relationships_pb2.ReadResponse]:
        stream = self.engine.read(
            c.filter_from_proto(request.filter),
            consistency=c.consistency_from_proto(request),
            limit=c.limit_from_proto(request.optional_limit),
            cursor=request.optional_cursor or None,
            **_stop_options(context),
        )
        token = stream.revision.token()
        _send_revision(context, token)
        for result in stream:
            yield relationships_pb2.ReadResponse(
                revision_token=token, relationship=c.relationship_to_proto(result.relationship), after_cursor=result.cursor
            )

    def Delete(self, request: relationships_pb2.DeleteRequest, context: grpc.ServicerContext) -> relationships_pb2.DeleteResponse:
        result = self.engine.delete(
            c.filter_from_proto(request.filter),
            limit=c.limit_from_proto(request.optional_limit),
            preconditions=[c.precondition_from_proto(p, i) for i, p in enumerate(request.preconditions)],
            deadline=deadline_of(context),
        )
        progress = relationships_pb2.DeleteResponse.PROGRESS_COMPLETE if result.complete else relationships_pb2.DeleteResponse.PROGRESS_PARTIAL
        return relationships_pb2.DeleteResponse(
            revision_token=result.revision.token(), deleted_count=result.deleted, progress=progress
        )

    def Watch(self, request: relationships_pb2.WatchRequest, context: grpc.ServicerContext) -> Iterator[relationships_pb2.WatchResponse]:
        if request.optional_start_revision:
            after = c.revision_from_token(request.optional_start_revision, "optional_start_revision")
        else:
            after = self.engine.head_revision()
        changes = self.engine.watch(after, timeout=WATCH_POLL_SECONDS)  # validates ``after`` up front
        _send_revision(context, after.token())
        while True:
            for change in changes:
                yield c.change_to_proto(change)
                after = change.revision
            if self.stopping.is_set() or not context.is_active():
                return
            changes = self.engine.watch(after, timeout=WATCH_POLL_SECONDS)

    def Import(
        self, request_iterator: Iterable[relationships_pb2.ImportRequest], context: grpc.ServicerContext
    ) -> relationships_pb2.ImportResponse:
        def relationships() -> Iterator[Relationship]:
            index = 0
            for request in received(request_iterator, context):
                for msg in request.relationships:
                    yield c.relationship_from_proto(msg, f"relationships[{index}]")
                    index += 1

        count, revision = self.engine.import_relationships(relationships(), **_stop_options(context))
        return relationships_pb2.ImportResponse(revision_token=revision.token(), num_loaded=count)


class SchemaServicer(schema_pb2_grpc.SchemaServiceServicer):
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def WriteSchema(self, request: schema_pb2.WriteSchemaRequest, context: grpc.ServicerContext) -> schema_pb2.WriteSchemaResponse:
        revision = self.engine.write_schema(request.schema)
        return schema_pb2.WriteSchemaResponse(revision_token=revision.token())

    def ReadSchema(self, request: schema_pb2.ReadSchemaRequest, context: grpc.ServicerContext) -> schema_pb2.ReadSchemaResponse:
        text, revision = self.engine.read_schema(c.consistency_from_proto(request))
        return schema_pb2.ReadSchemaResponse(revision_token=revision.token(), schema_text=text)

    def WriteGuards(self, request: schema_pb2.WriteGuardsRequest, context: grpc.ServicerContext) -> schema_pb2.WriteGuardsResponse:
        revision = self.engine.write_guards(request.guards)
        return schema_pb2.WriteGuardsResponse(revision_token=revision.token())

    def ReadGuards(self, request: schema_pb2.ReadGuardsRequest, context: grpc.ServicerContext) -> schema_pb2.ReadGuardsResponse:
        text, revision = self.engine.read_guards(c.consistency_from_proto(request))
        return schema_pb2.ReadGuardsResponse(revision_token=revision.token(), guards_text=text)

    def CheckGuards(self, request: schema_pb2.CheckGuardsRequest, context: grpc.ServicerContext) -> schema_pb2.CheckGuardsResponse:
        found = self.engine.guard_violations(c.within_from_proto(request), **_stop_options(context))
        return schema_pb2.CheckGuardsResponse(violations=[c.guard_violation_to_proto(v) for v in found])


def add_servicers(engine: Engine, stopping: threading.Event | None = None) -> list[Callable[[Any], None]]:
    """One ``add(server)`` per relengine service, registering its servicer on ``engine``."""
    permissions = PermissionsServicer(engine)
    relationships = RelationshipsServicer(engine, stopping)
    schema = SchemaServicer(engine)
    # Check is served by ``check_bytes``, with no (de)serializers: bytes in and out.
    check: Any = grpc.unary_unary_rpc_method_handler(permissions.check_bytes)
    return [
        lambda server: permissions_pb2_grpc.add_PermissionsServiceServicer_to_server(  # type: ignore[no-untyped-call]
            permissions, _Replacing(server, {"Check": check})
        ),
        lambda server: relationships_pb2_grpc.add_RelationshipsServiceServicer_to_server(relationships, server),  # type: ignore[no-untyped-call]
        lambda server: schema_pb2_grpc.add_SchemaServiceServicer_to_server(schema, server),  # type: ignore[no-untyped-call]
    ]


class _Replacing:
    """Stands in for the server while generated code registers a service, replacing some of
    its method handlers (the pipeline builds the generic handler from the registered ones)."""

    def __init__(self, server: Any, replace: dict[str, Any]) -> None:
        self._server = server
        self._replace = replace

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(service, {**handlers, **self._replace})

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)


SERVICE_NAMES: Final = (
    permissions_pb2.DESCRIPTOR.services_by_name["PermissionsService"].full_name,
    relationships_pb2.DESCRIPTOR.services_by_name["RelationshipsService"].full_name,
    schema_pb2.DESCRIPTOR.services_by_name["SchemaService"].full_name,
)
