"""Python clients of the relengine gRPC server: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Both take and return relengine's own types (``ObjectRef``, ``SubjectRef``, ``Relationship``,
``Consistency``, ``Revision``; ``CheckResponse`` and the other results of ``relengine.service``),
accept text where it is natural (``"doc:1"``, ``"user:ann"``, ``"doc:1#viewer@user:ann"``), and
raise the exception class the server raised (``relengine.errors``), rebuilt from the status code
and its ``google.rpc.ErrorInfo``, so that one ``except UnknownRelation`` works in-process and
remote. Statuses with no relengine class come back as ``RemoteError``; a missing or wrong
preshared key as ``Unauthenticated``.

    with Client("127.0.0.1:50051", preshared_key="secret") as client:
        client.write_schema(open("schema.zed").read())
        client.touch("doc:1#viewer@user:ann")
        assert client.check("doc:1", "view", "user:ann").allowed
"""

from ..errors import RemoteError, Unauthenticated
from ..model import (
    CaveatRef,
    Consistency,
    ObjectRef,
    Relationship,
    RelationshipFilter,
    Revision,
    SubjectFilter,
    SubjectRef,
)
from ..results import (
    BulkCheckResponse,
    Change,
    CheckRequest,
    CheckResponse,
    CheckResult,
    DeleteResult,
    ExpandNode,
    GuardViolation,
    Operation,
    Permissionship,
    Precondition,
    PreconditionKind,
    ReadResult,
    RelationshipUpdate,
    ResourceResult,
    SubjectResult,
)
from ..wire.status import error_from_rpc_error
from ._async import AsyncClient, AsyncResultStream
from ._common import DEFAULT_TIMEOUT, NO_RETRY, RetryPolicy, is_loopback
from ._sync import Client, ResultStream

__all__ = [
    "DEFAULT_TIMEOUT",
    "NO_RETRY",
    "AsyncClient",
    "AsyncResultStream",
    "BulkCheckResponse",
    "CaveatRef",
    "Change",
    "CheckRequest",
    "CheckResponse",
    "CheckResult",
    "Client",
    "Consistency",
    "DeleteResult",
    "ExpandNode",
    "GuardViolation",
    "ObjectRef",
    "Operation",
    "Permissionship",
    "Precondition",
    "PreconditionKind",
    "ReadResult",
    "Relationship",
    "RelationshipFilter",
    "RelationshipUpdate",
    "RemoteError",
    "ResourceResult",
    "ResultStream",
    "RetryPolicy",
    "Revision",
    "SubjectFilter",
    "SubjectRef",
    "SubjectResult",
    "Unauthenticated",
    "error_from_rpc_error",
    "is_loopback",
]
