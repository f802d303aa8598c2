"""What the Watch, bulk and experimental tests share: a real server on a loopback port with
SpiceDB's API, the official authzed client on it, and reading a status's ErrorInfo."""

from __future__ import annotations

import pathlib
from typing import Any, Iterator

import grpc
import pytest
from authzed.api.v1 import SyncClient
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import schema_service_pb2 as ss
from google.rpc import error_details_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status
from grpcutil import insecure_bearer_token_credentials

from relengine import Engine
from relengine.server.app import Server, ServerConfig
from relengine.server.spicedb import SpiceDBOptions

KEY = "spicedb-test-key"
HEARTBEAT = 0.2  # seconds between Watch checkpoints in these tests

SCHEMA = """\
definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation owner: user
    relation viewer: user | user:* | group#member
    permission view = viewer + owner
}
"""


class Serving:
    """A started server on ``engine`` and an authzed client of it; ``server``: ServerConfig
    fields, ``options``: SpiceDBOptions fields."""

    def __init__(self, engine: Engine, server: dict[str, Any] | None = None, **options: Any) -> None:
        options.setdefault("watch_heartbeat", HEARTBEAT)
        self.config = ServerConfig(
            **{"listen": "127.0.0.1:0", "threads": 16, "preshared_key": KEY, "spicedb": SpiceDBOptions(**options),
               **(server or {})}
        )
        self.engine = engine
        self.server = Server(engine, self.config)
        self.server.start()
        self.address = self.server.address
        self.client = SyncClient(self.address, insecure_bearer_token_credentials(KEY))

    def stop(self, grace: float = 0) -> bool:
        return self.server.stop(grace=grace)


@pytest.fixture
def serving(tmp_path: pathlib.Path) -> Iterator[Serving]:
    engine = Engine.open(str(tmp_path / "data"))
    s = Serving(engine)
    yield s
    s.stop()
    engine.close()


@pytest.fixture
def client(serving: Serving) -> Any:
    serving.client.WriteSchema(ss.WriteSchemaRequest(schema=SCHEMA))
    return serving.client


def relationship(text: str) -> core.Relationship:
    """``type:id#rel@type:id[#rel]`` as a Relationship message."""
    resource, subject = text.split("@")
    obj, rel = resource.split("#")
    rtype, rid = obj.split(":")
    srel = ""
    if "#" in subject:
        subject, srel = subject.split("#")
    stype, sid = subject.split(":")
    return core.Relationship(
        resource=core.ObjectReference(object_type=rtype, object_id=rid), relation=rel,
        subject=core.SubjectReference(object=core.ObjectReference(object_type=stype, object_id=sid),
                                      optional_relation=srel),
    )


def text(rel: core.Relationship) -> str:
    s = rel.subject
    out = f"{rel.resource.object_type}:{rel.resource.object_id}#{rel.relation}@{s.object.object_type}:{s.object.object_id}"
    return out + (f"#{s.optional_relation}" if s.optional_relation else "")


def write(client: Any, *texts: str, operation: int = core.RelationshipUpdate.OPERATION_TOUCH) -> core.ZedToken:
    response = client.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[core.RelationshipUpdate(operation=operation, relationship=relationship(t)) for t in texts]
    ))
    return response.written_at


def error_info(exc: grpc.RpcError) -> tuple[grpc.StatusCode, str, dict[str, str]]:
    """The code, the ErrorInfo reason ("" if none) and its metadata of a failed call."""
    status = rpc_status.from_call(exc)  # type: ignore[arg-type]
    code: grpc.StatusCode = exc.code()  # type: ignore[attr-defined]
    if status is None:
        return code, "", {}
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        if detail.Unpack(info):
            return code, info.reason, dict(info.metadata)
    return code, "", {}
