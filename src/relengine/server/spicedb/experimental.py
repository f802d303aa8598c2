"""SpiceDB's ExperimentalService: relationship counters, and the deprecated methods that
clients still call, answered by their successors.

BulkCheckPermission, BulkImportRelationships and BulkExportRelationships take and give
messages numbered field for field as CheckBulkPermissions, ImportBulkRelationships and
ExportBulkRelationships (``Exp*`` copies), so each is converted and handed to the
PermissionsServicer's method: the same validation, errors and engine calls
(BulkExportRelationships allows larger pages, as SpiceDB's experimental server does).

Counters (``Engine.register_counter``...) live in the store, shared by every server on it and
versioned by revision. Counting reads the counter's relationships at head, as SpiceDB's
datastores do (``counter_still_calculating`` is never sent).
"""

from __future__ import annotations

from typing import Any, Final, Iterable, Iterator, TypeVar

import grpc
from authzed.api.v1 import experimental_service_pb2 as es
from authzed.api.v1 import experimental_service_pb2_grpc as es_grpc
from authzed.api.v1 import permission_service_pb2 as ps

from ...errors import InvalidArgument
from ...service import Engine
from ...wire.spicedb import convert as sc
from .common import SpiceDBOptions
from .permissions import PermissionsServicer
from .schema import SchemaReflection

M = TypeVar("M")

SERVED: Final = frozenset({
    "BulkImportRelationships", "BulkExportRelationships", "BulkCheckPermission",
    "ExperimentalRegisterRelationshipCounter", "ExperimentalCountRelationships",
    "ExperimentalUnregisterRelationshipCounter",
    "ExperimentalReflectSchema", "ExperimentalComputablePermissions", "ExperimentalDependentRelations",
    "ExperimentalDiffSchema",
})
"""The methods registered: every method of the service (the four schema ones come with
``SchemaReflection``)."""


def _as(kind: type[M], message: Any) -> M:
    """``message`` as the message type ``kind`` with the same field numbers."""
    converted: M = kind.FromString(message.SerializeToString())  # type: ignore[attr-defined]
    return converted


def _name(name: str) -> str:
    if not name:
        raise InvalidArgument("name must be provided", kind="unspecified")
    return name


class ExperimentalServicer(SchemaReflection, es_grpc.ExperimentalServiceServicer):
    def __init__(
        self, engine: Engine, options: SpiceDBOptions | None = None, permissions: PermissionsServicer | None = None
    ) -> None:
        super().__init__(engine, options)
        self.permissions = permissions or PermissionsServicer(engine, options)

    # -- deprecated: their successors answer -----------------------------------------------
    def BulkCheckPermission(
        self, request: es.BulkCheckPermissionRequest, context: grpc.ServicerContext
    ) -> es.BulkCheckPermissionResponse:
        response = self.permissions.CheckBulkPermissions(_as(ps.CheckBulkPermissionsRequest, request), context)
        return _as(es.BulkCheckPermissionResponse, response)

    def BulkImportRelationships(
        self, request_iterator: Iterable[es.BulkImportRelationshipsRequest], context: grpc.ServicerContext
    ) -> es.BulkImportRelationshipsResponse:
        requests = (_as(ps.ImportBulkRelationshipsRequest, r) for r in request_iterator)
        response = self.permissions.ImportBulkRelationships(requests, context)
        return es.BulkImportRelationshipsResponse(num_loaded=response.num_loaded)

    def BulkExportRelationships(
        self, request: es.BulkExportRelationshipsRequest, context: grpc.ServicerContext
    ) -> Iterator[es.BulkExportRelationshipsResponse]:
        pages = self.permissions.export_pages(
            _as(ps.ExportBulkRelationshipsRequest, request), context, self.options.max_experimental_export_limit
        )
        for page in pages:
            yield _as(es.BulkExportRelationshipsResponse, page)

    # -- relationship counters -------------------------------------------------------------
    def ExperimentalRegisterRelationshipCounter(
        self, request: es.ExperimentalRegisterRelationshipCounterRequest, context: grpc.ServicerContext
    ) -> es.ExperimentalRegisterRelationshipCounterResponse:
        self.valid(request)
        name = _name(request.name)
        filter = sc.filter_from(request.relationship_filter, "relationship_filter", any_type=True)
        self.engine.register_counter(name, filter)
        return es.ExperimentalRegisterRelationshipCounterResponse()

    def ExperimentalCountRelationships(
        self, request: es.ExperimentalCountRelationshipsRequest, context: grpc.ServicerContext
    ) -> es.ExperimentalCountRelationshipsResponse:
        self.valid(request)
        count, revision = self.engine.count_relationships(_name(request.name), **self.stop(context))
        return es.ExperimentalCountRelationshipsResponse(
            read_counter_value=es.ReadCounterValue(relationship_count=count, read_at=self.token(revision))
        )

    def ExperimentalUnregisterRelationshipCounter(
        self, request: es.ExperimentalUnregisterRelationshipCounterRequest, context: grpc.ServicerContext
    ) -> es.ExperimentalUnregisterRelationshipCounterResponse:
        self.valid(request)
        self.engine.unregister_counter(_name(request.name))
        return es.ExperimentalUnregisterRelationshipCounterResponse()


__all__ = ["SERVED", "ExperimentalServicer"]
