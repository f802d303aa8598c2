"""SpiceDB's validation files (../shared/conformance/spicedb/testconfigs) a second time, through
SpiceDB's API: each file's schema written with WriteSchema and its relationships with
WriteRelationships (TOUCH, at most 1,000 per call) on a fresh server, then every assertion
asked with CheckPermission by the official client. Every one passes."""

from __future__ import annotations

import pathlib
from typing import Iterator

import pytest
from authzed.api.v1 import SyncClient
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import permission_service_pb2 as ps
from authzed.api.v1 import schema_service_pb2 as ss
from google.protobuf.struct_pb2 import Struct

from relengine.model import Relationship
from relengine.validationfile import load_validation_file
from relengine.wire.spicedb import convert as sc

from ...spicedb_data import conformance_files, conformance_params
from ..harness import make_engine
from .conftest import Spice

FILES = conformance_files("testconfigs", "*.yaml")
BATCH = 1000
EXPECTED = {
    "assertTrue": ps.CheckPermissionResponse.PERMISSIONSHIP_HAS_PERMISSION,
    "assertFalse": ps.CheckPermissionResponse.PERMISSIONSHIP_NO_PERMISSION,
    "assertCaveated": ps.CheckPermissionResponse.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}

pytestmark = pytest.mark.conformance


@pytest.fixture
def spice(tmp_path: pathlib.Path) -> Iterator[Spice]:
    engine = make_engine(tmp_path / "data")
    server = Spice(engine)
    yield server
    server.stop()
    engine.close()


def test_every_assertion_of_the_data_is_asked() -> None:
    assert len(FILES) == 73, "expected SpiceDB's 73 validation files"
    assert sum(len(load_validation_file(str(path)).assertions) for path in FILES) == 411


def batches(relationships: list[Relationship]) -> Iterator[list[Relationship]]:
    """Batches of at most BATCH in file order; a relationship seen again starts a new batch
    (one WriteRelationships may name a relationship once), so the last one wins, as in a file."""
    batch: list[Relationship] = []
    keys: set[tuple[str, ...]] = set()
    for rel in relationships:
        if len(batch) == BATCH or rel.key in keys:
            yield batch
            batch, keys = [], set()
        batch.append(rel)
        keys.add(rel.key)
    if batch:
        yield batch


@pytest.mark.parametrize("path", conformance_params(FILES))
def test_validation_file_through_the_api(spice: Spice, path: pathlib.Path) -> None:
    vf = load_validation_file(str(path))
    api: SyncClient = spice.client()
    api.WriteSchema(ss.WriteSchemaRequest(schema=vf.schema_text))
    written = None
    for batch in batches([rel for rel, _ in vf.relationships]):
        written = api.WriteRelationships(ps.WriteRelationshipsRequest(updates=[
            core.RelationshipUpdate(operation=core.RelationshipUpdate.OPERATION_TOUCH,
                                    relationship=sc.relationship_to(rel))
            for rel in batch
        ])).written_at
    consistency = (ps.Consistency(at_least_as_fresh=written) if written is not None
                   else ps.Consistency(fully_consistent=True))
    failed = []
    for assertion in vf.assertions:
        rel = assertion.relationship
        request = ps.CheckPermissionRequest(
            consistency=consistency, resource=sc.object_to(rel.resource), permission=rel.relation,
            subject=sc.subject_to(rel.subject))
        if assertion.context:
            context = Struct()
            context.update(assertion.context)
            request.context.CopyFrom(context)
        got = api.CheckPermission(request)
        if got.permissionship != EXPECTED[assertion.kind]:
            failed.append(f"{path.name}:{assertion.line}: {assertion.kind} {assertion.text}: got "
                          f"{ps.CheckPermissionResponse.Permissionship.Name(got.permissionship)}")
    assert not failed, "\n".join(failed)
