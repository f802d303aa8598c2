"""Guards through SpiceDB's API: WriteRelationships, DeleteRelationships and
ImportBulkRelationships refused with FAILED_PRECONDITION when they would take an account below
two administrators, through the official authzed client, and nothing written."""

from __future__ import annotations

from authzed.api.v1 import SyncClient
from authzed.api.v1 import permission_service_pb2 as ps

from relengine import parse_relationship
from relengine.model import RelationshipFilter

from ...service.test_guards import NARROWING, TWO_ADMINS
from .conftest import Spice, fails
from .test_permissions_service import CREATE, DELETE, TOUCH, C, rel, update

KEYS = {"guard", "object", "count", "at_least"}


def guarded(spice: Spice) -> SyncClient:
    spice.engine.write_schema(NARROWING)
    spice.engine.touch([parse_relationship(t) for t in ("account:a#admin@user:ann", "account:a#admin@user:bob")])
    spice.engine.write_guards(TWO_ADMINS)
    return spice.client()


def admins(spice: Spice) -> list[str]:
    return sorted(str(r.relationship) for r in spice.engine.read(RelationshipFilter("account")))


def test_write_delete_and_import_refused_by_a_guard(spice: Spice) -> None:
    api = guarded(spice)
    got = fails(lambda: api.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(TOUCH, rel("account:b", "admin", "user:cat")),
                 update(DELETE, rel("account:a", "admin", "user:ann"))])),
        C.FAILED_PRECONDITION, "WRITE_OR_DELETE_PRECONDITION_FAILURE", KEYS)
    assert got.metadata == {"guard": "two-admins", "object": "account:a", "count": "1", "at_least": "2"}
    assert "two-admins" in got.message
    fails(lambda: api.DeleteRelationships(ps.DeleteRelationshipsRequest(
        relationship_filter=ps.RelationshipFilter(resource_type="account", optional_resource_id="a"),
        optional_limit=1, optional_allow_partial_deletions=True)),
        C.FAILED_PRECONDITION, "WRITE_OR_DELETE_PRECONDITION_FAILURE", KEYS)
    fails(lambda: api.ImportBulkRelationships(iter([ps.ImportBulkRelationshipsRequest(
        relationships=[rel("account:a", "suspended", "user:bob")])])),
        C.FAILED_PRECONDITION, "WRITE_OR_DELETE_PRECONDITION_FAILURE", KEYS)
    fails(lambda: api.WriteRelationships(ps.WriteRelationshipsRequest(
        updates=[update(CREATE, rel("account:a", "admin", "user:ann", caveat="on_weekdays"))])),
        C.ALREADY_EXISTS, "ATTEMPT_TO_RECREATE_RELATIONSHIP")
    assert admins(spice) == ["account:a#admin@user:ann", "account:a#admin@user:bob"]
    api.WriteRelationships(ps.WriteRelationshipsRequest(updates=[update(TOUCH, rel("account:a", "admin", "user:cat"))]))
    api.WriteRelationships(ps.WriteRelationshipsRequest(updates=[update(DELETE, rel("account:a", "admin", "user:ann"))]))
    assert admins(spice) == ["account:a#admin@user:bob", "account:a#admin@user:cat"]
