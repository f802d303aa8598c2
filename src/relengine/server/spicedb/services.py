"""Registering SpiceDB's services: one ``add(server)`` per service, and their names."""

from __future__ import annotations

import threading
from typing import Any, Callable, Final

import grpc
from authzed.api.v1 import (
    experimental_service_pb2,
    experimental_service_pb2_grpc,
    permission_service_pb2,
    permission_service_pb2_grpc,
    schema_service_pb2,
    schema_service_pb2_grpc,
    watch_service_pb2,
    watch_service_pb2_grpc,
)

from ...service import Engine
from ..servicer import _Replacing
from .common import SpiceDBOptions, spicedb_status
from .experimental import SERVED as EXPERIMENTAL_SERVED
from .experimental import ExperimentalServicer
from .permissions import PermissionsServicer
from .schema import SchemaServicer
from .watch import WatchServicer

SERVICE_NAMES: Final = (
    permission_service_pb2.DESCRIPTOR.services_by_name["PermissionsService"].full_name,
    schema_service_pb2.DESCRIPTOR.services_by_name["SchemaService"].full_name,
    watch_service_pb2.DESCRIPTOR.services_by_name["WatchService"].full_name,
    experimental_service_pb2.DESCRIPTOR.services_by_name["ExperimentalService"].full_name,
)

STATUSES: Final = spicedb_status


def add_servicers(
    engine: Engine, options: SpiceDBOptions | None = None, stopping: threading.Event | None = None
) -> list[Callable[[Any], None]]:
    """One ``add(server)`` per SpiceDB service on ``engine`` (register each with
    ``statuses=STATUSES``); ``stopping`` ends open Watch streams when the server shuts down."""
    permissions = PermissionsServicer(engine, options)
    schema = SchemaServicer(engine, options)
    watch = WatchServicer(engine, options, stopping)
    experimental = ExperimentalServicer(engine, options, permissions)
    check: Any = grpc.unary_unary_rpc_method_handler(permissions.check_bytes)
    return [
        lambda server: permission_service_pb2_grpc.add_PermissionsServiceServicer_to_server(
            permissions, _Replacing(server, {"CheckPermission": check})  # type: ignore[arg-type]
        ),
        lambda server: schema_service_pb2_grpc.add_SchemaServiceServicer_to_server(schema, server),
        lambda server: watch_service_pb2_grpc.add_WatchServiceServicer_to_server(watch, server),
        lambda server: experimental_service_pb2_grpc.add_ExperimentalServiceServicer_to_server(
            experimental, _Only(server, EXPERIMENTAL_SERVED)  # type: ignore[arg-type]
        ),
    ]


class _Only:
    """Stands in for the server while generated code registers a service, keeping only the
    handlers of the methods named in ``keep`` (the others answer UNIMPLEMENTED, unknown)."""

    def __init__(self, server: Any, keep: frozenset[str]) -> None:
        self._server = server
        self._keep = keep

    def add_registered_method_handlers(self, service: str, handlers: dict[str, Any]) -> None:
        self._server.add_registered_method_handlers(service, {k: v for k, v in handlers.items() if k in self._keep})

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        self._server.add_generic_rpc_handlers(handlers)
