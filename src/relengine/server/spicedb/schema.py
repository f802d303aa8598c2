"""SpiceDB's SchemaService on the Engine: the schema text, written and read."""

from __future__ import annotations

import grpc
from authzed.api.v1 import schema_service_pb2 as ss
from authzed.api.v1 import schema_service_pb2_grpc as ss_grpc

from ...errors import Code, SchemaNotFound
from .common import Base


class NoSchema(SchemaNotFound):
    """ReadSchema before any schema was written: NOT_FOUND, as SpiceDB answers it."""

    code = Code.NOT_FOUND


class SchemaServicer(Base, ss_grpc.SchemaServiceServicer):
    def ReadSchema(self, request: ss.ReadSchemaRequest, context: grpc.ServicerContext) -> ss.ReadSchemaResponse:
        self.valid(request)
        try:
            text, revision = self.engine.read_schema()
        except SchemaNotFound:
            raise NoSchema("No schema has been defined; please call WriteSchema to start") from None
        return ss.ReadSchemaResponse(schema_text=text, read_at=self.token(revision))

    def WriteSchema(self, request: ss.WriteSchemaRequest, context: grpc.ServicerContext) -> ss.WriteSchemaResponse:
        self.valid(request)
        revision = self.engine.write_schema(request.schema)
        return ss.WriteSchemaResponse(written_at=self.token(revision))
