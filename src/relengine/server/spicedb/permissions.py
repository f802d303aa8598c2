"""SpiceDB's PermissionsService on the Engine: checks, expand, lookups and relationships.

Every request is checked against the API's field rules first (``wire.spicedb.rules``); errors
are left to the pipeline, which gives them SpiceDB's codes and reasons
(``wire.spicedb.status``). CheckPermission is registered with bytes in and out and keeps the
serialized reply of every cached answer per revision, as relengine's own Check does
(``servicer.Replies``), so a repeated question costs one dict lookup.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Final, Iterable, Iterator

import grpc
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import permission_service_pb2_grpc as ps_grpc

from ...errors import BatchTooLarge, InvalidArgument, RelEngineError, SchemaNotFound, Unimplemented, UnknownDefinition
from ...model import Relationship, RelationshipFilter
from ...results import CheckResponse, CheckResult, ExpandNode, ReadResult
from ...service import Engine
from ...wire.decode import parse_message
from ...wire.spicedb import convert as sc
from ..servicer import Replies, _raise_gone
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
        self._plain: dict[tuple[int, int], bytes] = {}
        self._count_hit = engine.cache.count_hits

    # -- checks --------------------------------------------------------------------------------
    def CheckPermission(
        self, request: ps.CheckPermissionRequest, context: grpc.ServicerContext
    ) -> ps.CheckPermissionResponse:
        """CheckPermission on a parsed request (the server registers ``check_bytes`` instead)."""
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
        response, cached = self._check(request, context)
        reply = self._reply(response)
        if cached:
            self.replies.put(response.revision.value, data, reply)
        return reply

    def _check(self, request: ps.CheckPermissionRequest, context: grpc.ServicerContext) -> tuple[CheckResponse, bool]:
        plain = (
            not request.HasField("consistency") and not request.HasField("context") and not request.with_tracing
        )
        if request.subject.object.object_id == WILDCARD:
            self.valid(request)
            raise _wildcard("check on wildcard subject", "subject.object_id")
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
        if request.with_tracing:
            raise Unimplemented("with_tracing is not served yet: debug traces are not available on this server")
        resource = sc.object_from(request.resource)
        with _schema_of(resource.type):
            response = self.engine.check(
                resource, request.permission, sc.subject_from(request.subject),
                consistency=self.consistency(request), context=sc.context_from(request),
                deadline=self.stop(context)["deadline"], cache_missed=plain,
            )
        return response, False

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
            raise BatchTooLarge(f"check count of {len(items)} is greater than maximum allowed of {limit}",
                                limit=limit, count=len(items), kind="checks")
        consistency = self.consistency(request)
        questions: list[Any] = []
        errors: dict[int, RelEngineError] = {}
        for index, item in enumerate(items):
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
        asked = [q for q in questions if q is not None]
        with _schema_of(asked[0][0] if asked else ""):
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

        Memory: the stream is read as it comes and at most the store's batch limit of
        relationships (``batch_limit``, 1,000 by default) is held; the one past it ends the
        import with INVALID_ARGUMENT (TOO_MANY_UPDATES_IN_REQUEST) saying to split it, before
        anything is written. The store is locked only for the transaction, once the stream
        has ended (``Engine.create_relationships``)."""

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

        count, _ = self.engine.create_relationships(relationships(), **self.stop(context))
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


def _limit(value: int, maximum: int) -> int | None:
    """A page size: 0 means the server's maximum (SpiceDB answers every match; relengine
    bounds each call), past the maximum is refused."""
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
