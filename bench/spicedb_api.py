"""SpiceDB's API in the bench: the official ``authzed`` client driving ``relengine serve``.

The same ``authzed.api.v1`` client a SpiceDB user runs: ``SyncClient`` with bearer-token
credentials (what authzed-py's documentation shows), and its generated stub on a plain
channel (the same wire without the credentials' per-call work), so the server's cost of
CheckPermission is compared with relengine.v1's Check on the same server, questions and
transport.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Callable, Final, Iterable, Sequence

from .framework import Skip

BENCH_KEY: Final = "bench"  # sent as a bearer token; the bench's server has no key and ignores it

Q = tuple[str, str, str, str]  # (container id, permission, subject type, subject id)


def ready() -> None:
    if importlib.util.find_spec("authzed") is None:
        raise Skip("the authzed package is not installed (pip install authzed): SpiceDB API scenarios skipped")


def client(target: str) -> Any:
    """authzed-py's SyncClient, as its documentation sets it up for a plaintext loopback server."""
    from authzed.api.v1 import SyncClient
    from grpcutil import insecure_bearer_token_credentials  # type: ignore[import-untyped]

    return SyncClient(target, insecure_bearer_token_credentials(BENCH_KEY))


def stub(target: str) -> tuple[Any, Callable[[], None]]:
    """The generated PermissionsService stub on a plain channel, and what closes it."""
    import grpc
    from authzed.api.v1.permission_service_pb2_grpc import PermissionsServiceStub

    channel = grpc.insecure_channel(target)
    return PermissionsServiceStub(channel), channel.close


def check_request(q: Q) -> Any:
    from authzed.api.v1 import CheckPermissionRequest, ObjectReference, SubjectReference

    return CheckPermissionRequest(
        resource=ObjectReference(object_type="container", object_id=q[0]), permission=q[1],
        subject=SubjectReference(object=ObjectReference(object_type=q[2], object_id=q[3])),
    )


def check_call(api: Any, timeout: float = 30.0) -> Callable[[Any], Any]:
    check = api.CheckPermission
    return lambda request: check(request, timeout=timeout)


def allowed(response: Any) -> bool:
    from authzed.api.v1 import CheckPermissionResponse

    return bool(response.permissionship == CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION)


def bulk_request(batch: Sequence[Q]) -> Any:
    from authzed.api.v1 import CheckBulkPermissionsRequest, CheckBulkPermissionsRequestItem

    items = []
    for q in batch:
        single = check_request(q)
        items.append(CheckBulkPermissionsRequestItem(
            resource=single.resource, permission=single.permission, subject=single.subject))
    return CheckBulkPermissionsRequest(items=items)


def bulk_call(api: Any, timeout: float = 60.0) -> Callable[[Any], Any]:
    check = api.CheckBulkPermissions
    return lambda request: check(request, timeout=timeout)


def bulk_answers(response: Any) -> list[bool | str]:
    """Each pair's answer, or its error's message."""
    from authzed.api.v1 import CheckPermissionResponse

    has = CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION
    return [p.item.permissionship == has if p.HasField("item") else p.error.message for p in response.pairs]


def check_op(target: str, queries: Sequence[Q]) -> tuple[Callable[[Any], Any], list[Any]]:
    """(op, items) for a worker process: its own authzed client, CheckPermission of ``queries``."""
    return check_call(client(target)), [check_request(q) for q in queries]


# -- a peer: another server of SpiceDB's API (SpiceDB itself), driven by the same client ---------

PEER_ENV: Final = "RELENGINE_BENCH_SPICEDB"  # host:port of a SpiceDB (or any server of its API)
PEER_KEY_ENV: Final = "RELENGINE_BENCH_SPICEDB_KEY"  # its preshared key
LOAD_BATCH: Final = 1000  # relationships per WriteRelationships call: SpiceDB's default limit


def peer() -> tuple[str, str] | None:
    """(address, key) of the peer named by ``$RELENGINE_BENCH_SPICEDB``, or None."""
    import os

    address = os.environ.get(PEER_ENV, "").strip()
    return (address, os.environ.get(PEER_KEY_ENV, BENCH_KEY)) if address else None


def peer_client(address: str, key: str) -> Any:
    from authzed.api.v1 import SyncClient
    from grpcutil import insecure_bearer_token_credentials

    return SyncClient(address, insecure_bearer_token_credentials(key))


def load(api: Any, schema: str, rows: Iterable[Sequence[Any]], progress: Callable[[str], None] | None = None) -> int:
    """Write ``schema`` and TOUCH every row (``(type, id, relation, subject type, subject id,
    subject relation, ...)``) through SpiceDB's API in batches of ``LOAD_BATCH``: idempotent,
    so a peer loaded by an earlier run is loaded again at no harm. Returns the rows written."""
    from authzed.api.v1 import (
        ObjectReference,
        Relationship,
        RelationshipUpdate,
        SubjectReference,
        WriteRelationshipsRequest,
        WriteSchemaRequest,
    )

    api.WriteSchema(WriteSchemaRequest(schema=schema), timeout=60)
    touch = RelationshipUpdate.OPERATION_TOUCH
    batch: list[Any] = []
    count = 0
    for row in rows:
        t, oid, rel, st, sid, srel = row[:6]
        batch.append(RelationshipUpdate(operation=touch, relationship=Relationship(
            resource=ObjectReference(object_type=t, object_id=oid), relation=rel,
            subject=SubjectReference(object=ObjectReference(object_type=st, object_id=sid), optional_relation=srel or ""),
        )))
        if len(batch) == LOAD_BATCH:
            api.WriteRelationships(WriteRelationshipsRequest(updates=batch), timeout=60)
            count += len(batch)
            batch = []
            if progress is not None and count % 100_000 == 0:
                progress(f"peer: {count:,} relationships written")
    if batch:
        api.WriteRelationships(WriteRelationshipsRequest(updates=batch), timeout=60)
        count += len(batch)
    return count
