"""SpiceDB's PermissionsService on the Engine: checks, expand, lookups and relationships.

Every request is checked against the API's field rules first (``wire.spicedb.rules``); errors
are left to the pipeline, which gives them SpiceDB's codes and reasons
(``wire.spicedb.status``). CheckPermission is registered with bytes in and out and keeps the
serialized reply of every cached answer per revision, as relengine's own Check does
(``servicer.Replies``), so a repeated question costs one dict lookup.

``with_tracing`` (CheckPermission, CheckBulkPermissions) is answered by ``Engine.explain``,
which walks past the cache, and its trace goes out as SpiceDB's ``debug_trace``
(``wire.spicedb.trace``); a traced check that fails adds the trace walked so far to its
ErrorInfo as ``debug_trace_proto_text`` when it fits. Untraced requests never take that branch.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import Any, Final, Iterable, Iterator

import grpc
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import permission_service_pb2_grpc as ps_grpc

from ...engine.trace import partial_trace
from ...errors import (
    BatchTooLarge, Cancelled, DeadlineExceeded, InvalidArgument, RelEngineError, SchemaNotFound, Unimplemented,
    UnknownDefinition,
)
from ...model import Consistency, ObjectRef, Relationship, RelationshipFilter
from ...results import CheckResponse, CheckResult, CheckTrace, ExpandNode, ReadResult
from ...service import Engine
from ...wire.convert import item_strings
from ...wire.decode import parse_message
from ...wire.spicedb import convert as sc
from ...wire.spicedb import trace as st
from ..servicer import PlainReplies, Replies, cached_answer, received
from .common import Base, SpiceDBOptions, spicedb_status

CHECK_BULK = "/authzed.api.v1.PermissionsService/CheckBulkPermissions"
WILDCARD: Final = "*"

_OPERATION = {
    "union": core.AlgebraicSubjectSet.OPERATION_UNION,
    "intersection": core.AlgebraicSubjectSet.OPERATION_INTERSECTION,
    "exclusion": core.AlgebraicSubjectSet.OPERATION_EXCLUSION,
}


class PermissionsServicer(Base, ps_grpc.PermissionsServiceServicer):
    def __init__(self, engine: Engine, options: SpiceDBOptions | None = None) -> None:
        super().__init__(engine, options)
        self.replies = Replies(engine.cache.capacity)
        self._plain = PlainReplies()
        self._count_hit = engine.cache.count_hits

    # -- checks --------------------------------------------------------------------------------
    def CheckPermission(
        self, request: ps.CheckPermissionRequest, context: grpc.ServicerContext
    ) -> ps.CheckPermissionResponse:
        """CheckPermission on a parsed request (the server registers ``check_bytes`` instead)."""
        if request.with_tracing:
            return self._traced(request, context)
        return ps.CheckPermissionResponse.FromString(self._reply(self._check(request, context)[0]))

    def check_bytes(self, data: bytes, context: grpc.ServicerContext) -> bytes:
        """CheckPermission with the request and the reply as bytes (see ``Replies``)."""
        revision = self.engine.cache_revision()
        if revision is not None:
            reply = self.replies.get(revision.value, data)
            if reply is not None:
                self._count_hit()
                return reply
        request = parse_message(ps.CheckPermissionRequest.FromString, data)
        if request.with_tracing:  # never in the replies: their requests are untraced
            return self._traced(request, context).SerializeToString()
        response, cached = self._check(request, context)
        reply = self._reply(response)
        if cached:
            self.replies.put(response.revision.value, data, reply)
        return reply

    def _check(self, request: ps.CheckPermissionRequest, context: grpc.ServicerContext) -> tuple[CheckResponse, bool]:
        plain = not request.HasField("consistency") and not request.HasField("context")
        if request.subject.object.object_id == WILDCARD:
            self.valid(request)
            raise _wildcard("check on wildcard subject", "subject.object_id")
        if plain:
            response = cached_answer(self.engine, request)
            if response is not None:
                return response, True
        self.valid(request)
        resource = sc.object_from(request.resource)
        with _schema_of(resource.type):
            response = self.engine.check(
                resource, request.permission, sc.subject_from(request.subject),
                consistency=self.consistency(request), context=sc.context_from(request),
                deadline=self.stop(context)["deadline"], cache_missed=plain,
            )
        return response, False

    def _traced(self, request: ps.CheckPermissionRequest, context: grpc.ServicerContext) -> ps.CheckPermissionResponse:
        """CheckPermission ``with_tracing``: the answer with its ``debug_trace``, from a walk
        that bypasses the cache (``Engine.explain``)."""
        self.valid(request)
        try:
            explanation = self.engine.explain(
                sc.object_from(request.resource), request.permission, sc.subject_from(request.subject),
                consistency=self.consistency(request), context=sc.context_from(request),
                deadline=self.stop(context)["deadline"],
            )
        except RelEngineError as exc:
            _with_trace(exc)
            raise
        result = explanation.result
        return ps.CheckPermissionResponse(
            checked_at=self.token(explanation.revision),
            permissionship=sc.PERMISSIONSHIP[result.permissionship],  # type: ignore[arg-type]
            partial_caveat_info=sc.partial_caveat_info(result.missing_parameters),
            debug_trace=st.debug_information(explanation),
        )

    def _reply(self, response: CheckResponse) -> bytes:
        result = response.result
        if result.missing_parameters:
            return ps.CheckPermissionResponse(
                checked_at=self.token(response.revision),
                permissionship=sc.PERMISSIONSHIP[result.permissionship],  # type: ignore[arg-type]
                partial_caveat_info=sc.partial_caveat_info(result.missing_parameters),
            ).SerializeToString()
        return self._plain.get(response, self._plain_reply)

    def _plain_reply(self, response: CheckResponse) -> bytes:
        return ps.CheckPermissionResponse(
            checked_at=self.token(response.revision),
            permissionship=sc.PERMISSIONSHIP[response.result.permissionship],  # type: ignore[arg-type]
        ).SerializeToString()

    def CheckBulkPermissions(
        self, request: ps.CheckBulkPermissionsRequest, context: grpc.ServicerContext
    ) -> ps.CheckBulkPermissionsResponse:
        items = request.items
        limit = self.options.max_bulk_check_items
        if len(items) > limit:
            raise BatchTooLarge(f"check count of {len(items)} is greater than maximum allowed of {limit}",
                                limit=limit, count=len(items), kind="checks")
        if request.with_tracing:
            questions, errors = self._bulk_questions(items, range(len(items)))
            return self._traced_bulk(request, questions, errors, self.consistency(request), context)
        results: list[CheckResult | RelEngineError | None] = [None] * len(items)
        revision = None
        if not request.HasField("consistency") and not any(i.HasField("context") for i in items):
            # Cached answers first, by the items' strings as sent: only questions that were
            # checked, so valid, are in the cache (but a wildcard subject, which relengine.v1
            # may ask and SpiceDB's API refuses). The rest are validated and answered at the
            # same revision.
            found = self.engine.cached_answers(item_strings(items))  # type: ignore[arg-type]  # the same field names
            if found is not None:
                revision, answers = found
                results = [None if a is not None and i.subject.object.object_id == WILDCARD else a
                           for i, a in zip(items, answers, strict=True)]
        misses = [index for index, result in enumerate(results) if result is None]
        if misses or revision is None:
            questions, errors = self._bulk_questions(items, misses)
            asked = [(index, q) for index, q in zip(misses, questions, strict=True) if q is not None]
            consistency = Consistency.at_exact_snapshot(revision) if revision is not None else self.consistency(request)
            with _schema_of(asked[0][1][0] if asked else ""):
                response = self.engine.check_questions([q for _, q in asked], consistency=consistency,
                                                       **self.stop(context))
            revision = response.revision
            for (index, _), answer in zip(asked, response.results, strict=True):
                results[index] = answer
            for index, question, in zip(misses, questions, strict=True):
                if question is None:
                    results[index] = errors[index]
        out = ps.CheckBulkPermissionsResponse(checked_at=self.token(revision))
        add = out.pairs.add
        permissionship = sc.PERMISSIONSHIP
        for item, result in zip(items, results, strict=True):
            pair = add()
            pair.request.CopyFrom(item)
            if isinstance(result, Exception):
                pair.error.CopyFrom(spicedb_status(result, CHECK_BULK))
            else:
                assert result is not None
                pair.item.permissionship = permissionship[result.permissionship]  # type: ignore[assignment]
                if result.missing_parameters:
                    pair.item.partial_caveat_info.missing_required_context.extend(result.missing_parameters)
        return out

    def _bulk_questions(self, items: Any, indices: Iterable[int]) -> tuple[list[Any], dict[int, RelEngineError]]:
        """The ``Engine.check_questions`` tuple of each item at ``indices`` (None for a bad
        one), and each bad item's error by its index: items are answered or refused alone."""
        questions: list[Any] = []
        errors: dict[int, RelEngineError] = {}
        for index in indices:
            item = items[index]
            try:
                self.valid(item)
                if item.subject.object.object_id == WILDCARD:
                    raise _wildcard("check on wildcard subject", "subject.object_id")
                resource = sc.object_from(item.resource)
                questions.append((resource.type, resource.id, item.permission, sc.subject_from(item.subject),
                                  sc.context_from(item)))
            except RelEngineError as exc:
                errors[index] = exc
                questions.append(None)
        return questions, errors

    def _traced_bulk(
        self, request: ps.CheckBulkPermissionsRequest, questions: list[Any], errors: dict[int, RelEngineError],
        consistency: Consistency | None, context: grpc.ServicerContext,
    ) -> ps.CheckBulkPermissionsResponse:
        """CheckBulkPermissions ``with_tracing``: every item answered by a traced check at one
        revision, each with its ``debug_trace`` (or its error, with the trace walked so far)."""
        stop = self.stop(context)
        reader = self.engine.snapshot(consistency)  # the one revision every item is answered at
        revision = reader.revision
        reader.close()
        out = ps.CheckBulkPermissionsResponse(checked_at=self.token(revision))
        for index, (item, question) in enumerate(zip(request.items, questions, strict=True)):
            pair = out.pairs.add()
            pair.request.CopyFrom(item)
            if question is None:
                pair.error.CopyFrom(spicedb_status(errors[index], CHECK_BULK))
                continue
            if stop["cancelled"] is not None and stop["cancelled"]():
                raise Cancelled("the bulk check was cancelled: the client has gone")
            rtype, rid, permission, subject, item_context = question
            try:
                explanation = self.engine.explain(
                    ObjectRef(rtype, rid), permission, subject, context=item_context, at=revision,
                    deadline=stop["deadline"],
                )
            except (DeadlineExceeded, Cancelled):
                raise  # the whole call ran out of time, as an untraced one does
            except RelEngineError as exc:
                _with_trace(exc)
                pair.error.CopyFrom(spicedb_status(exc, CHECK_BULK))
                continue
            result = explanation.result
            pair.item.permissionship = sc.PERMISSIONSHIP[result.permissionship]  # type: ignore[assignment]
            info = sc.partial_caveat_info(result.missing_parameters)
            if info is not None:
                pair.item.partial_caveat_info.CopyFrom(info)
            pair.item.debug_trace.CopyFrom(st.bulk_item_information(explanation))
        return out

    # -- expand --------------------------------------------------------------------------------
    def ExpandPermissionTree(
        self, request: ps.ExpandPermissionTreeRequest, context: grpc.ServicerContext
    ) -> ps.ExpandPermissionTreeResponse:
        self.valid(request)
        resource = sc.object_from(request.resource)
        with _schema_of(resource.type):
            tree, revision = self.engine.expand(
                resource, request.permission, consistency=self.consistency(request), spicedb=True,
                **self.stop(context),
            )
        return ps.ExpandPermissionTreeResponse(expanded_at=self.token(revision), tree_root=_tree(tree))

    # -- lookups -------------------------------------------------------------------------------
    def LookupResources(
        self, request: ps.LookupResourcesRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.LookupResourcesResponse]:
        self.valid(request)
        if request.subject.object.object_id == WILDCARD:
            raise _wildcard("lookup resources on wildcard", "subject_id")
        limit = _limit(request.optional_limit, self.options.max_lookup_limit)
        with _schema_of(request.resource_object_type):
            yield from self._lookup_resources(request, context, limit)

    def _lookup_resources(
        self, request: ps.LookupResourcesRequest, context: grpc.ServicerContext, limit: int | None
    ) -> Iterator[ps.LookupResourcesResponse]:
        stream = self.engine.lookup_resources(
            request.resource_object_type, request.permission, sc.subject_from(request.subject),
            consistency=self.consistency(request), context=sc.context_from(request), limit=limit,
            cursor=request.optional_cursor.token if request.HasField("optional_cursor") else None,
            **self.stop(context),
        )
        token = self.token(stream.revision)
        for result in stream:
            msg = ps.LookupResourcesResponse(
                looked_up_at=token, resource_object_id=result.resource_id,
                permissionship=sc.LOOKUP_PERMISSIONSHIP[result.permissionship],  # type: ignore[arg-type]
                after_result_cursor=core.Cursor(token=result.cursor),
            )
            info = sc.partial_caveat_info(result.missing_parameters)
            if info is not None:
                msg.partial_caveat_info.CopyFrom(info)
            yield msg

    def LookupSubjects(
        self, request: ps.LookupSubjectsRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.LookupSubjectsResponse]:
        self.valid(request)
        if request.optional_concrete_limit:
            raise Unimplemented("optional_concrete_limit is not yet supported by LookupSubjects")
        with _schema_of(request.resource.object_type):
            yield from self._lookup_subjects(request, context)

    def _lookup_subjects(
        self, request: ps.LookupSubjectsRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.LookupSubjectsResponse]:
        relation = request.optional_subject_relation or None
        wildcards = request.wildcard_option != ps.LookupSubjectsRequest.WILDCARD_OPTION_EXCLUDE_WILDCARDS
        stream = self.engine.lookup_subjects(
            sc.object_from(request.resource), request.permission, request.subject_object_type,
            subject_relation=None if relation == sc.ELLIPSIS else relation,
            consistency=self.consistency(request), context=sc.context_from(request),
            **self.stop(context),  # no cursor: SpiceDB neither pages LookupSubjects nor reads one
        )
        token = self.token(stream.revision)
        for result in stream:
            if result.subject.is_wildcard and not wildcards:
                continue
            permissionship = sc.LOOKUP_PERMISSIONSHIP[result.permissionship]
            info = sc.partial_caveat_info(result.missing_parameters)
            subject = ps.ResolvedSubject(
                subject_object_id=result.subject.id, permissionship=permissionship,  # type: ignore[arg-type]
                partial_caveat_info=info,
            )
            excluded = [
                ps.ResolvedSubject(subject_object_id=s.id, permissionship=ps.LOOKUP_PERMISSIONSHIP_HAS_PERMISSION)
                for s in result.excluded
            ]
            yield ps.LookupSubjectsResponse(
                looked_up_at=token, subject=subject, excluded_subjects=excluded,
                subject_object_id=result.subject.id, excluded_subject_ids=[s.id for s in result.excluded],
                permissionship=permissionship,  # type: ignore[arg-type]
                partial_caveat_info=info,  # no after_result_cursor: SpiceDB does not page LookupSubjects
            )

    # -- relationships -------------------------------------------------------------------------
    def ReadRelationships(
        self, request: ps.ReadRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.ReadRelationshipsResponse]:
        self.valid(request)
        limit = _limit(request.optional_limit, self.options.max_read_limit)
        filter = sc.filter_from(request.relationship_filter)
        with _schema_of(filter.resource_type):
            self.engine.check_filter(filter)
        stream = self.engine.read(
            filter, consistency=self.consistency(request), limit=limit,
            cursor=request.optional_cursor.token if request.HasField("optional_cursor") else None,
            expired=False, **self.stop(context),
        )
        token = self.token(stream.revision)
        for result in stream:
            yield ps.ReadRelationshipsResponse(
                read_at=token, relationship=sc.relationship_to(result.relationship),
                after_result_cursor=core.Cursor(token=result.cursor),
            )

    def WriteRelationships(
        self, request: ps.WriteRelationshipsRequest, context: grpc.ServicerContext
    ) -> ps.WriteRelationshipsResponse:
        self.valid(request)
        limit = self.engine.config.max_updates_per_write
        if len(request.updates) > limit:
            raise BatchTooLarge(f"too many updates ({len(request.updates)}) for WriteRelationships call (maximum: "
                                f"{limit})", limit=limit, count=len(request.updates), kind="updates")
        self._check_preconditions(len(request.optional_preconditions))
        updates = [sc.update_from(u, i) for i, u in enumerate(request.updates)]
        _refuse_duplicates(updates)
        preconditions = [sc.precondition_from(p, i) for i, p in enumerate(request.optional_preconditions)]
        with _schema_of(updates[0].relationship.resource.type if updates else ""):
            revision = self.engine.write(updates, preconditions)
        return ps.WriteRelationshipsResponse(written_at=self.token(revision))

    def DeleteRelationships(
        self, request: ps.DeleteRelationshipsRequest, context: grpc.ServicerContext
    ) -> ps.DeleteRelationshipsResponse:
        self.valid(request)
        self._check_preconditions(len(request.optional_preconditions))
        limit = _limit(request.optional_limit, self.options.max_delete_limit)
        filter = sc.filter_from(request.relationship_filter)
        preconditions = [sc.precondition_from(p, i) for i, p in enumerate(request.optional_preconditions)]
        with _schema_of(filter.resource_type):
            self.engine.check_filter(filter)
            result = self.engine.delete(
                filter, limit=limit, preconditions=preconditions,
                deadline=self.stop(context)["deadline"], partial=request.optional_allow_partial_deletions,
            )
        # As SpiceDB: PARTIAL whenever the limit was reached, even when nothing is left.
        progress = (
            ps.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
            if limit is not None and result.deleted >= limit
            else ps.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE
        )
        return ps.DeleteRelationshipsResponse(
            deleted_at=self.token(result.revision), deletion_progress=progress,
            relationships_deleted_count=result.deleted,
        )

    def _check_preconditions(self, count: int) -> None:
        limit = self.options.max_preconditions
        if count > limit:
            raise BatchTooLarge(f"precondition count of {count} is greater than maximum allowed of {limit}",
                                limit=limit, count=count, kind="preconditions")

    # -- bulk import and export ----------------------------------------------------------------
    def ImportBulkRelationships(
        self, request_iterator: Iterable[ps.ImportBulkRelationshipsRequest], context: grpc.ServicerContext
    ) -> ps.ImportBulkRelationshipsResponse:
        """All the stream's relationships in one transaction with CREATE semantics, as SpiceDB
        imports: one that exists (or comes twice) fails the whole import with ALREADY_EXISTS and
        nothing is written; each is validated against the schema; the deadline and the client's
        going are looked at as they come and before the commit.

        Memory: the stream is read as it comes and at most ``max_import_relationships``
        (100,000 by default, about 40 MB held; zed's restore sends 10,000 per call) are held;
        the one past it ends the import with INVALID_ARGUMENT (TOO_MANY_UPDATES_IN_REQUEST)
        saying to split it, before anything is written. The store is locked only for the
        transaction, once the stream has ended (``Engine.create_relationships``)."""

        def relationships() -> Iterator[Relationship]:
            index = 0
            for request in received(request_iterator, context):
                self.valid(request)
                for msg in request.relationships:
                    yield sc.relationship_from(msg, f"relationships[{index}]")
                    index += 1

        count, _ = self.engine.create_relationships(
            relationships(), limit=self.options.max_import_relationships, **self.stop(context))
        return ps.ImportBulkRelationshipsResponse(num_loaded=count)

    def ExportBulkRelationships(
        self, request: ps.ExportBulkRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.ExportBulkRelationshipsResponse]:
        yield from self.export_pages(request, context, self.options.max_export_limit)

    def export_pages(
        self, request: ps.ExportBulkRelationshipsRequest, context: grpc.ServicerContext, maximum: int
    ) -> Iterator[ps.ExportBulkRelationshipsResponse]:
        """Every relationship matching the filter (all without one), at one revision: the
        request's consistency, or the cursor's, so the pages of one export agree. Definitions
        in name order, relationships in key order within one; messages of ``optional_limit``
        relationships (0: ``maximum``; more: refused), never spanning two definitions, each
        with the cursor that resumes after its last relationship. Nothing is sent when
        nothing matches."""
        self.valid(request)
        limit = _limit(request.optional_limit, maximum) or maximum
        if request.HasField("optional_relationship_filter"):
            filter = sc.filter_from(request.optional_relationship_filter, "optional_relationship_filter",
                                    any_type=True)
        else:
            filter = RelationshipFilter("")
        stream = self.engine.export(
            filter, consistency=self.consistency(request),
            cursor=request.optional_cursor.token if request.HasField("optional_cursor") else None,
            **self.stop(context),
        )
        yield from self._pages(stream, limit)

    @staticmethod
    def _pages(stream: Iterable[ReadResult], limit: int) -> Iterator[ps.ExportBulkRelationshipsResponse]:
        page: list[core.Relationship] = []
        kind, cursor = "", ""
        for result in stream:
            rel = result.relationship
            if page and (len(page) >= limit or rel.resource.type != kind):
                yield ps.ExportBulkRelationshipsResponse(
                    after_result_cursor=core.Cursor(token=cursor), relationships=page
                )
                page = []
            page.append(sc.relationship_to(rel))
            kind, cursor = rel.resource.type, result.cursor
        if page:
            yield ps.ExportBulkRelationshipsResponse(after_result_cursor=core.Cursor(token=cursor), relationships=page)


TRACE_TEXT_LIMIT: Final = 2048
"""The most bytes of ``debug_trace_proto_text`` an error carries: a status's details are kept
under ``wire.status.MAX_STATUS_BYTES`` (gRPC sends them in a trailer); a longer trace is cut to
the path that failed, and left out if that is still too long."""


def _with_trace(exc: RelEngineError) -> None:
    """SpiceDB's ``debug_trace_proto_text``: the trace a traced check had walked when it failed,
    added to the error's details (and so to the metadata of its ErrorInfo where the error's
    reason carries its details, as MaxDepthExceeded's does)."""
    trace = partial_trace(exc)
    if trace is None:
        return
    for candidate in (trace, _failed_path(trace)):
        text = st.proto_text(candidate)
        if len(text.encode()) <= TRACE_TEXT_LIMIT:
            exc.details["debug_trace_proto_text"] = text
            return


def _failed_path(trace: CheckTrace) -> CheckTrace:
    """``trace`` with only the nodes on the way to the error (the ones without a result)."""
    failed = [c for c in trace.children if c.result is None]
    return replace(trace, children=tuple(_failed_path(c) for c in failed), found=(), caveats=())


def _limit(value: int, maximum: int) -> int | None:
    """A page size: 0 means none (every match, streamed, as SpiceDB answers it); past the
    maximum is refused with SpiceDB's text and metadata (``pages.check_limit`` is relengine.v1's
    rule, with its own message)."""
    if value > maximum:
        raise InvalidArgument(
            f"provided limit {value} is greater than maximum allowed of {maximum}", limit=maximum, provided=value,
            kind="limit",
        )
    return value or None


def _refuse_duplicates(updates: list[Any]) -> None:
    seen: set[tuple[Any, ...]] = set()
    for update in updates:
        rel = update.relationship
        key = rel.key  # the operation, caveat and expiration do not count, as in SpiceDB
        if key in seen:
            raise InvalidArgument(
                f"found more than one update with relationship `{rel}` in this request; a relationship can "
                "only be specified in an update once per overall WriteRelationships request",
                relationship=str(rel), definition=rel.resource.type, kind="duplicate",
            )
        seen.add(key)


def _wildcard(what: str, field: str) -> InvalidArgument:
    return InvalidArgument(f"invalid argument: cannot perform {what}", field=field, kind="wildcard")


@contextmanager
def _schema_of(resource_type: str) -> Iterator[None]:
    """Before any schema was written, SpiceDB answers a call about ``resource_type`` as that
    definition's absence (UNKNOWN_DEFINITION naming it)."""
    try:
        yield
    except SchemaNotFound:
        raise UnknownDefinition(f"object definition `{resource_type}` not found", definition=resource_type) from None


def _tree(node: ExpandNode) -> core.PermissionRelationshipTree:
    out = core.PermissionRelationshipTree(
        expanded_object=sc.object_to(node.resource), expanded_relation=node.relation
    )
    if node.kind == "leaf":
        out.leaf.subjects.extend(sc.subject_to(s) for s in node.subjects)
    else:
        out.intermediate.operation = _OPERATION[node.kind]
        out.intermediate.children.extend(_tree(child) for child in node.children)
    return out


__all__ = ["PermissionsServicer"]
