"""The abusive clients' raw bodies can never be taken for a request: none parses as the
request of any method they are sent to (so a raw Write or WriteSchema can change nothing)."""

from __future__ import annotations

import pytest
from google.protobuf import message, message_factory
from grpc_health.v1 import health_pb2

from bench.soak import abuse


def _request_types() -> dict[str, type[message.Message]]:
    from relengine.wire._proto.relengine.v1 import permissions_pb2, relationships_pb2, schema_pb2

    out: dict[str, type[message.Message]] = {abuse.HEALTH_CHECK: health_pb2.HealthCheckRequest}
    for module in (permissions_pb2, relationships_pb2, schema_pb2):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out[f"/{service.full_name}/{m.name}"] = message_factory.GetMessageClass(m.input_type)
    return out


def test_every_method_is_abused() -> None:
    paths = {m.path for m in abuse.methods()}
    assert paths == set(_request_types())
    assert {"/relengine.v1.PermissionsService/Check", "/relengine.v1.RelationshipsService/Import",
            "/relengine.v1.SchemaService/WriteSchema"} <= paths
    streaming = {m.path.rpartition("/")[2]: (m.client_streaming, m.server_streaming) for m in abuse.methods()}
    assert streaming["Import"] == (True, False) and streaming["Watch"] == (False, True)


@pytest.mark.parametrize("body", abuse.RAW_BODIES)
def test_no_raw_body_parses_as_any_request(body: bytes) -> None:
    for path, cls in _request_types().items():
        with pytest.raises(message.DecodeError):
            cls.FromString(body)
