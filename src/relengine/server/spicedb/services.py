"""Registering SpiceDB's services: one ``add(server)`` per service, and their names."""

from __future__ import annotations

from typing import Any, Callable, Final

import grpc
from authzed.api.v1 import permission_service_pb2, permission_service_pb2_grpc, schema_service_pb2, schema_service_pb2_grpc

from ...service import Engine
from ..servicer import _Replacing
from .common import SpiceDBOptions, spicedb_status
from .permissions import PermissionsServicer
from .schema import SchemaServicer

SERVICE_NAMES: Final = (
    permission_service_pb2.DESCRIPTOR.services_by_name["PermissionsService"].full_name,
    schema_service_pb2.DESCRIPTOR.services_by_name["SchemaService"].full_name,
)

STATUSES: Final = spicedb_status


def add_servicers(engine: Engine, options: SpiceDBOptions | None = None) -> list[Callable[[Any], None]]:
    """One ``add(server)`` per SpiceDB service on ``engine`` (register each with
    ``statuses=STATUSES``)."""
    permissions = PermissionsServicer(engine, options)
    schema = SchemaServicer(engine, options)
    check: Any = grpc.unary_unary_rpc_method_handler(permissions.check_bytes)
    return [
        lambda server: permission_service_pb2_grpc.add_PermissionsServiceServicer_to_server(
            permissions, _Replacing(server, {"CheckPermission": check})  # type: ignore[arg-type]
        ),
        lambda server: schema_service_pb2_grpc.add_SchemaServiceServicer_to_server(schema, server),
    ]
