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

from dataclasses import replace
from typing import Any, Final, Iterable, Iterator

import grpc
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import permission_service_pb2_grpc as ps_grpc

from ...engine.trace import partial_trace
from ...errors import BatchTooLarge, Cancelled, DeadlineExceeded, InvalidArgument, RelEngineError, Unimplemented
from ...model import Consistency, ObjectRef, Relationship
from ...results import CheckResponse, CheckResult, CheckTrace, ExpandNode
from ...service import Engine
from ...wire.decode import parse_message
from ...wire.spicedb import convert as sc
from ...wire.spicedb import trace as st
from ..servicer import Replies, _raise_gone
from .common import Base, SpiceDBOptions, spicedb_status

CHECK_BULK = "/authzed.api.v1.PermissionsService/CheckBulkPermissions"

_OPERATION = {
    "union": core.AlgebraicSubjectSet.OPERATION_UNION,
    "intersection": core.AlgebraicSubjectSet.OPERATION_INTERSECTION,
    "exclusion": core.AlgebraicSubjectSet.OPERATION_EXCLUSION,
}


class PermissionsServicer(Base, ps_grpc.PermissionsServiceServicer):
    def __init__(self, engine: Engine, options: SpiceDBOptions | None = None) -> None:
        super().__init__(engine, options)
        self.replies = Replies(engine.cache.capacity)
        self._plain: dict[tuple[int, int], bytes] = {}
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
        if plain:
            res, sub = request.resource, request.subject
            obj = sub.object
            response = self.engine.cached_check(
                res.object_type, res.object_id, request.permission, obj.object_type, obj.object_id,
                sub.optional_relation or None,
            )
            if response is not None:
                return response, True
        self.valid(request)
        response = self.engine.check(
            sc.object_from(request.resource), request.permission, sc.subject_from(request.subject),
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
        key = (result.permissionship, response.revision.value)
        reply = self._plain.get(key)
        if reply is None:
            reply = ps.CheckPermissionResponse(
                checked_at=self.token(response.revision),
                permissionship=sc.PERMISSIONSHIP[result.permissionship],  # type: ignore[arg-type]
            ).SerializeToString()
            if len(self._plain) >= 16:
                self._plain.clear()
            self._plain[key] = reply
        return reply

    def CheckBulkPermissions(
        self, request: ps.CheckBulkPermissionsRequest, context: grpc.ServicerContext
    ) -> ps.CheckBulkPermissionsResponse:
        items = request.items
        limit = self.options.max_bulk_check_items
        if len(items) > limit:
            raise BatchTooLarge(f"the number of checks {len(items)} exceeds the maximum of {limit}", limit=limit,
                                kind="checks")
        consistency = self.consistency(request)
        questions: list[Any] = []
        errors: dict[int, RelEngineError] = {}
        for index, item in enumerate(items):
            try:
                self.valid(item)
                resource = sc.object_from(item.resource)
                questions.append((resource.type, resource.id, item.permission, sc.subject_from(item.subject),
                                  sc.context_from(item)))
            except RelEngineError as exc:
                errors[index] = exc
                questions.append(None)
        if request.with_tracing:
            return self._traced_bulk(request, questions, errors, consistency, context)
        asked = [q for q in questions if q is not None]
        response = self.engine.check_questions(asked, consistency=consistency, **self.stop(context))
        answers = iter(response.results)
        out = ps.CheckBulkPermissionsResponse(checked_at=self.token(response.revision))
        for index, (item, question) in enumerate(zip(items, questions, strict=True)):
            pair = out.pairs.add()
            pair.request.CopyFrom(item)
            result: CheckResult | RelEngineError = errors[index] if question is None else next(answers)
            if isinstance(result, Exception):
                pair.error.CopyFrom(spicedb_status(result, CHECK_BULK))
            else:
                pair.item.permissionship = sc.PERMISSIONSHIP[result.permissionship]  # type: ignore[assignment]
                info = sc.partial_caveat_info(result.missing_parameters)
                if info is not None:
                    pair.item.partial_caveat_info.CopyFrom(info)
        return out

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
        tree, revision = self.engine.expand(
            sc.object_from(request.resource), request.permission, consistency=self.consistency(request),
            **self.stop(context),
        )
        return ps.ExpandPermissionTreeResponse(expanded_at=self.token(revision), tree_root=_tree(tree))

    # -- lookups -------------------------------------------------------------------------------
    def LookupResources(
        self, request: ps.LookupResourcesRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.LookupResourcesResponse]:
        self.valid(request)
        limit = _limit(request.optional_limit, self.options.max_lookup_limit)
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
        relation = request.optional_subject_relation or None
        wildcards = request.wildcard_option != ps.LookupSubjectsRequest.WILDCARD_OPTION_EXCLUDE_WILDCARDS
        stream = self.engine.lookup_subjects(
            sc.object_from(request.resource), request.permission, request.subject_object_type,
            subject_relation=None if relation == sc.ELLIPSIS else relation,
            consistency=self.consistency(request), context=sc.context_from(request),
            cursor=request.optional_cursor.token if request.HasField("optional_cursor") else None,
            **self.stop(context),
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
                partial_caveat_info=info, after_result_cursor=core.Cursor(token=result.cursor),
            )

    # -- relationships -------------------------------------------------------------------------
    def ReadRelationships(
        self, request: ps.ReadRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.ReadRelationshipsResponse]:
        self.valid(request)
        limit = _limit(request.optional_limit, self.options.max_read_limit)
        stream = self.engine.read(
            sc.filter_from(request.relationship_filter), consistency=self.consistency(request), limit=limit,
            cursor=request.optional_cursor.token if request.HasField("optional_cursor") else None,
            **self.stop(context),
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
        self._check_preconditions(len(request.optional_preconditions))
        updates = [sc.update_from(u, i) for i, u in enumerate(request.updates)]
        _refuse_duplicates(updates)
        preconditions = [sc.precondition_from(p, i) for i, p in enumerate(request.optional_preconditions)]
        revision = self.engine.write(updates, preconditions)
        return ps.WriteRelationshipsResponse(written_at=self.token(revision))

    def DeleteRelationships(
        self, request: ps.DeleteRelationshipsRequest, context: grpc.ServicerContext
    ) -> ps.DeleteRelationshipsResponse:
        self.valid(request)
        self._check_preconditions(len(request.optional_preconditions))
        limit = _limit(request.optional_limit, self.options.max_delete_limit)
        result = self.engine.delete(
            sc.filter_from(request.relationship_filter), limit=limit,
            preconditions=[sc.precondition_from(p, i) for i, p in enumerate(request.optional_preconditions)],
            deadline=self.stop(context)["deadline"], partial=request.optional_allow_partial_deletions,
        )
        progress = (
            ps.DeleteRelationshipsResponse.DELETION_PROGRESS_COMPLETE if result.complete
            else ps.DeleteRelationshipsResponse.DELETION_PROGRESS_PARTIAL
        )
        return ps.DeleteRelationshipsResponse(
            deleted_at=self.token(result.revision), deletion_progress=progress,
            relationships_deleted_count=result.deleted,
        )

    def _check_preconditions(self, count: int) -> None:
        limit = self.options.max_preconditions
        if count > limit:
            raise BatchTooLarge(f"precondition count of {count} is greater than maximum allowed of {limit}",
                                limit=limit, kind="preconditions")

    # -- bulk import and export ----------------------------------------------------------------
    def ImportBulkRelationships(
        self, request_iterator: Iterable[ps.ImportBulkRelationshipsRequest], context: grpc.ServicerContext
    ) -> ps.ImportBulkRelationshipsResponse:
        def relationships() -> Iterator[Relationship]:
            index = 0
            requests = iter(request_iterator)
            while True:
                try:
                    request = next(requests, None)
                except grpc.RpcError as exc:
                    _raise_gone(context, exc)
                if request is None:
                    return
                self.valid(request)
                for msg in request.relationships:
                    yield sc.relationship_from(msg, f"relationships[{index}]")
                    index += 1

        count, _ = self.engine.import_relationships(relationships(), **self.stop(context))
        return ps.ImportBulkRelationshipsResponse(num_loaded=count)

    def ExportBulkRelationships(
        self, request: ps.ExportBulkRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[ps.ExportBulkRelationshipsResponse]:
        self.valid(request)
        raise Unimplemented("ExportBulkRelationships is not served yet")
        yield  # pragma: no cover


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
    """A page size: 0 means the server's maximum (SpiceDB answers every match; relengine
    bounds each call), past the maximum is refused."""
    if value > maximum:
        raise InvalidArgument(
            f"provided limit {value} is greater than maximum allowed of {maximum}", limit=maximum, kind="limit"
        )
    return value or None


def _refuse_duplicates(updates: list[Any]) -> None:
    seen: set[tuple[Any, ...]] = set()
    for update in updates:
        rel = update.relationship
        key = (rel.resource, rel.relation, rel.subject)
        if key in seen:
            raise InvalidArgument(
                f"found more than one update with relationship `{rel.resource}#{rel.relation}@{rel.subject}` "
                "in this request; a relationship can only be specified in an update once per overall "
                "WriteRelationships request",
                relationship=f"{rel.resource}#{rel.relation}@{rel.subject}", kind="duplicate",
            )
        seen.add(key)


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
