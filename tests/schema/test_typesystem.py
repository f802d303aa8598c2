"""schema/typesystem.py: ``check_relationship``, which relationships a schema allows: the
error class and message for each way one is refused, and the Relation it returns otherwise."""

from __future__ import annotations

import pytest

from relengine.errors import InvalidRelationship, RelEngineError, UnknownDefinition, UnknownRelation
from relengine.model import parse_relationship
from relengine.schema import compile_schema
from relengine.schema.typesystem import check_relationship

SCHEMA = compile_schema(
    """
use expiration

definition user {}

definition group {
    relation member: user | group#member
    permission everyone = member
}

caveat on_network(ip string) {
    ip == "10.0.0.1"
}

definition doc {
    relation viewer: user | user:* | group#member | group#everyone
    relation guest: user with on_network | user:* with on_network
    relation temp: user with expiration | user with on_network and expiration
    relation both: user | user with on_network
    permission view = viewer + guest
}
"""
)

ALLOWED = [
    ("doc:1#viewer@user:ann", "viewer"),
    ("doc:1#viewer@user:*", "viewer"),
    ("doc:1#viewer@group:eng#member", "viewer"),
    ("doc:1#viewer@group:eng#everyone", "viewer"),
    ("group:eng#member@group:ops#member", "member"),
    ('doc:1#guest@user:ann[on_network:{"ip": "10.0.0.1"}]', "guest"),
    ("doc:1#guest@user:*[on_network]", "guest"),
    ("doc:1#temp@user:ann[expiration:2030-01-01T00:00:00Z]", "temp"),
    ("doc:1#temp@user:ann[on_network][expiration:2030-01-01T00:00:00Z]", "temp"),
    ("doc:1#both@user:ann", "both"),
    ("doc:1#both@user:ann[on_network]", "both"),
]


@pytest.mark.parametrize(("text", "relation"), ALLOWED, ids=[text for text, _ in ALLOWED])
def test_allowed_relationships_return_their_relation(text: str, relation: str) -> None:
    rel = parse_relationship(text)
    assert check_relationship(SCHEMA, rel) is SCHEMA.definitions[rel.resource.type].members[relation]


def refused(name: str, text: str, error: type[RelEngineError], message: str, fields: dict[str, str]) -> object:
    return pytest.param(text, error, message, fields, id=name)


REFUSED = [
    refused(
        "unknown-resource-type", "folder:1#viewer@user:ann", UnknownDefinition,
        "object definition `folder` not found (in relationship folder:1#viewer@user:ann)", {"definition": "folder"},
    ),
    refused(
        "unknown-relation", "doc:1#editor@user:ann", UnknownRelation,
        "relation `editor` not found under definition `doc`", {"definition": "doc", "relation": "editor"},
    ),
    refused(
        "a-permission", "doc:1#view@user:ann", InvalidRelationship,
        "`doc#view` is a permission, computed from relations", {"definition": "doc", "relation": "view", "kind": "permission"},
    ),
    refused(
        "unknown-subject-type", "doc:1#viewer@team:a", UnknownDefinition,
        "subject type `team` not found", {"definition": "team"},
    ),
    refused(
        "subject-type-not-allowed", "doc:1#viewer@doc:2", InvalidRelationship,
        "subjects of type `doc` are not allowed on relation `doc#viewer` (in relationship doc:1#viewer@doc:2); "
        "allowed: user, user:*, group#member, group#everyone",
        {"definition": "doc", "relation": "viewer", "subject_type": "doc", "kind": "subject_type"},
    ),
    refused(
        "subject-relation-not-allowed", "doc:1#viewer@group:eng", InvalidRelationship,
        "subjects of type `group` are not allowed", {"definition": "doc", "relation": "viewer", "subject_type": "group", "kind": "subject_type"},
    ),
    refused(
        "other-subject-relation", "doc:1#viewer@user:ann#member", InvalidRelationship,
        "subjects of type `user#member` are not allowed", {"definition": "doc", "relation": "viewer", "subject_type": "user#member", "kind": "subject_type"},
    ),
    refused(
        "wildcard-not-allowed", "group:eng#member@user:*", InvalidRelationship,
        "subjects of type `user:*` are not allowed on relation `group#member`", {"definition": "group", "relation": "member", "subject_type": "user:*", "kind": "subject_type"},
    ),
    refused(
        "caveat-missing", "doc:1#guest@user:ann", InvalidRelationship,
        "has no caveat, which relation `doc#guest` does not allow for `user`; allowed: user with on_network, "
        "user:* with on_network",
        {"definition": "doc", "relation": "guest", "subject_type": "user", "kind": "caveat"},
    ),
    refused(
        "caveat-not-allowed", "doc:1#viewer@user:ann[on_network]", InvalidRelationship,
        "has caveat `on_network`, which relation `doc#viewer` does not allow for `user`",
        {"definition": "doc", "relation": "viewer", "subject_type": "user", "traits": "on_network", "kind": "caveat"},
    ),
    refused(
        "caveat-on-the-wrong-wildcard", "doc:1#guest@user:*[other]", InvalidRelationship,
        "has caveat `other`, which relation `doc#guest` does not allow for `user:*`", {"definition": "doc", "relation": "guest", "subject_type": "user:*", "traits": "other", "kind": "caveat"},
    ),
    refused(
        "expiration-not-allowed", "doc:1#viewer@user:ann[expiration:2030-01-01T00:00:00Z]", InvalidRelationship,
        "has an expiration, but relation `doc#viewer` does not allow expiring subjects", {"definition": "doc", "relation": "viewer", "subject_type": "user", "traits": "expiration", "kind": "expiration"},
    ),
    refused(
        "expiration-not-with-this-caveat", "doc:1#both@user:ann[on_network][expiration:2030-01-01T00:00:00Z]",
        InvalidRelationship, "does not allow expiring subjects (`with expiration`); allowed: user, user with on_network",
        {"definition": "doc", "relation": "both", "subject_type": "user", "traits": "on_network and expiration", "kind": "expiration"},
    ),
    refused(
        "expiration-required", "doc:1#temp@user:ann", InvalidRelationship,
        "has no expiration, but relation `doc#temp` allows `user` only `with expiration`",
        {"definition": "doc", "relation": "temp", "subject_type": "user", "kind": "expiration"},
    ),
    refused(
        "expiration-required-with-the-caveat", "doc:1#temp@user:ann[on_network]", InvalidRelationship,
        "has no expiration, but relation `doc#temp` allows `user` only `with expiration`",
        {"definition": "doc", "relation": "temp", "subject_type": "user", "traits": "on_network", "kind": "expiration"},
    ),
]


@pytest.mark.parametrize(("text", "error", "message", "fields"), REFUSED)
def test_refused_relationships_say_why(text: str, error: type[RelEngineError], message: str, fields: dict[str, str]) -> None:
    with pytest.raises(error) as caught:
        check_relationship(SCHEMA, parse_relationship(text))
    assert type(caught.value) is error
    assert message in str(caught.value)
    assert caught.value.fields() == fields
