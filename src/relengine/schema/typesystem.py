"""Which relationships a compiled schema allows: the check every write goes through."""

from __future__ import annotations

from ..errors import InvalidRelationship, UnknownDefinition, UnknownRelation
from ..model import Relationship
from .types import AllowedType, CompiledSchema, Relation


def check_relationship(schema: CompiledSchema, rel: Relationship) -> Relation:
    """Raise if ``rel`` may not be written under ``schema``; return its Relation.

    Unknown resource type: UnknownDefinition; unknown relation: UnknownRelation; a permission
    as relation, a subject type (or caveat, or expiration) the relation does not allow, or a
    relationship without an expiration where the relation allows its subject type only `with
    expiration`: InvalidRelationship naming the allowed types.
    """
    definition = schema.definitions.get(rel.resource.type)
    if definition is None:
        raise UnknownDefinition(
            f"object definition `{rel.resource.type}` not found (in relationship {rel})",
            definition=rel.resource.type,
        )
    member = definition.members.get(rel.relation)
    if member is None:
        raise UnknownRelation(
            f"relation `{rel.relation}` not found under definition `{definition.name}` "
            f"(in relationship {rel})",
            definition=definition.name,
            relation=rel.relation,
        )
    if not isinstance(member, Relation):
        raise InvalidRelationship(
            f"cannot write relationship {rel}: `{definition.name}#{rel.relation}` is a permission, "
            "computed from relations; write to one of its relations instead",
            definition=definition.name,
            relation=rel.relation,
            kind="permission",
        )
    subject = rel.subject
    if subject.type not in schema.definitions:
        raise UnknownDefinition(
            f"subject type `{subject.type}` not found (in relationship {rel})", definition=subject.type
        )
    candidates = [a for a in member.allowed if _matches_subject(a, rel)]
    allowed_text = ", ".join(str(a) for a in member.allowed)
    if not candidates:
        raise InvalidRelationship(
            f"subjects of type `{_subject_kind(rel)}` are not allowed on relation "
            f"`{definition.name}#{member.name}` (in relationship {rel}); allowed: {allowed_text}",
            definition=definition.name,
            relation=member.name,
            subject_type=_subject_kind(rel),
            traits=_traits(rel),
            kind="subject_type",
        )
    caveat = rel.caveat.name if rel.caveat is not None else None
    if not any(a.caveat == caveat for a in candidates):
        what = f"caveat `{caveat}`" if caveat else "no caveat"
        raise InvalidRelationship(
            f"relationship {rel} has {what}, which relation `{definition.name}#{member.name}` "
            f"does not allow for `{_subject_kind(rel)}`; allowed: {allowed_text}",
            definition=definition.name,
            relation=member.name,
            subject_type=_subject_kind(rel),
            traits=_traits(rel),
            kind="caveat",
        )
    expiring = rel.expiration is not None
    if not any(a.caveat == caveat and a.expiration == expiring for a in candidates):
        # As SpiceDB: the expiration trait is part of the allowed type, so `user with
        # expiration` takes only expiring relationships and `user` only lasting ones.
        if expiring:
            problem = "has an expiration, but relation"
            need = "does not allow expiring subjects (`with expiration`)"
        else:
            problem = "has no expiration, but relation"
            need = f"allows `{_subject_kind(rel)}` only `with expiration`"
        raise InvalidRelationship(
            f"relationship {rel} {problem} `{definition.name}#{member.name}` {need}; "
            f"allowed: {allowed_text}",
            definition=definition.name,
            relation=member.name,
            subject_type=_subject_kind(rel),
            traits=_traits(rel),
            kind="expiration",
        )
    return member


def _matches_subject(allowed: AllowedType, rel: Relationship) -> bool:
    subject = rel.subject
    if allowed.type != subject.type:
        return False
    if subject.is_wildcard:
        return allowed.wildcard
    return not allowed.wildcard and allowed.relation == subject.relation


def _traits(rel: Relationship) -> str | None:
    """The relationship's caveat and expiration as a schema names them after ``with``
    (``on_network and expiration``), or None."""
    traits = ([rel.caveat.name] if rel.caveat is not None else []) + (["expiration"] if rel.expiration else [])
    return " and ".join(traits) or None


def _subject_kind(rel: Relationship) -> str:
    s = rel.subject
    if s.is_wildcard:
        return f"{s.type}:*"
    return f"{s.type}#{s.relation}" if s.relation else s.type
