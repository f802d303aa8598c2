"""The compiled schema: immutable definitions, relations, permissions and rewrite trees.

Positions (``line``, ``column``) are kept for messages but take no part in equality, so two
schemas that print the same compare equal.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, TypeVar, cast

from ..errors import SchemaIssue, UnknownDefinition, UnknownRelation

_T = TypeVar("_T")
_ABSENT = object()


@dataclass(frozen=True, slots=True)
class AllowedType:
    """A subject type a relation accepts: ``user``, ``user:*``, ``group#member``, with caveat/expiration."""

    type: str
    relation: str | None = None
    wildcard: bool = False
    caveat: str | None = None
    expiration: bool = False

    def __str__(self) -> str:
        text = self.type
        if self.wildcard:
            text += ":*"
        elif self.relation is not None:
            text += f"#{self.relation}"
        if self.caveat and self.expiration:
            text += f" with {self.caveat} and expiration"
        elif self.caveat:
            text += f" with {self.caveat}"
        elif self.expiration:
            text += " with expiration"
        return text


# -- rewrite trees ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Nil:
    """The empty set."""


@dataclass(frozen=True, slots=True)
class This:
    """``self``: the resource itself as a subject (``use self``)."""


@dataclass(frozen=True, slots=True)
class ComputedUserset:
    """Another relation or permission of the same object."""

    relation: str


@dataclass(frozen=True, slots=True)
class TupleToUserset:
    """An arrow: for each subject of ``tupleset`` on this object, ``computed`` on that subject.

    ``mode`` is "any" (``->`` and ``.any()``) or "all" (``.all()``: every target must have it).
    """

    tupleset: str
    computed: str
    mode: str = "any"
    function_syntax: bool = False  # written as `.any(...)` rather than `->`


@dataclass(frozen=True, slots=True)
class Union:
    children: tuple["Rewrite", ...]


@dataclass(frozen=True, slots=True)
class Intersection:
    children: tuple["Rewrite", ...]


@dataclass(frozen=True, slots=True)
class Exclusion:
    base: "Rewrite"
    subtract: "Rewrite"


Rewrite = Nil | This | ComputedUserset | TupleToUserset | Union | Intersection | Exclusion
Leaf = Nil | This | ComputedUserset | TupleToUserset


def leaves(rewrite: Rewrite) -> list[Leaf]:
    """The leaves of a rewrite tree (what its ``+ & -`` combine), left to right; walked with a
    stack, as trees may be deeper than Python's recursion allows."""
    out: list[Leaf] = []
    stack: list[Rewrite] = [rewrite]
    while stack:
        node = stack.pop()
        if isinstance(node, (Union, Intersection)):
            stack.extend(reversed(node.children))
        elif isinstance(node, Exclusion):
            stack.extend((node.subtract, node.base))
        else:
            out.append(node)
    return out


# -- definitions --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Relation:
    name: str
    allowed: tuple[AllowedType, ...]
    doc: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    is_permission = False

    @property
    def has_wildcard(self) -> bool:
        return any(a.wildcard for a in self.allowed)


@dataclass(frozen=True, slots=True)
class Permission:
    name: str
    rewrite: Rewrite
    doc: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    is_permission = True


Member = Relation | Permission


@dataclass(frozen=True, slots=True)
class Definition:
    name: str
    members: Mapping[str, Member]  # relations and permissions in source order
    doc: tuple[str, ...] = ()
    trailing_comments: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def relation(self, name: str) -> Relation | None:
        member = self.members.get(name)
        return member if isinstance(member, Relation) else None

    def permission(self, name: str) -> Permission | None:
        member = self.members.get(name)
        return member if isinstance(member, Permission) else None


@dataclass(frozen=True, slots=True)
class CaveatParameter:
    name: str
    type: str  # as written, normalised: "int", "list<string>", "map<any>"


@dataclass(frozen=True, slots=True)
class Caveat:
    name: str
    parameters: tuple[CaveatParameter, ...]
    expression: str
    doc: tuple[str, ...] = ()
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)


@dataclass(frozen=True, slots=True)
class CompiledSchema:
    """A validated schema. ``order`` keeps definitions and caveats in source order (for printing)."""

    definitions: Mapping[str, Definition]
    caveats: Mapping[str, Caveat]
    use_flags: frozenset[str] = frozenset()
    use_docs: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (flag, comments before its `use`)
    order: tuple[str, ...] = ()  # "definition:NAME" / "caveat:NAME"
    trailing_comments: tuple[str, ...] = ()
    warnings: tuple[SchemaIssue, ...] = field(default=(), compare=False)
    source_text: str = field(default="", compare=False, repr=False)
    # What other layers derive from this schema (the engine's evaluation plan, its lookup graph),
    # kept here so that it lives and dies with the schema. Opaque to the schema layer: each
    # user keys its own entry; no part of equality, hash or repr.
    derived: dict[object, object] = field(default_factory=dict, compare=False, repr=False)

    def derive(self, key: object, build: Callable[[CompiledSchema], _T]) -> _T:
        """``build(self)``, built on first use and kept in ``derived`` under ``key``: it lives
        exactly as long as the schema does. Two threads may both build it; either is right."""
        found = self.derived.get(key, _ABSENT)
        if found is _ABSENT:
            found = self.derived[key] = build(self)
        return cast(_T, found)

    def definition(self, name: str) -> Definition | None:
        return self.definitions.get(name)

    def member(self, type_name: str, name: str) -> Member | None:
        definition = self.definitions.get(type_name)
        return None if definition is None else definition.members.get(name)

    def require(self, type_name: str, name: str | None = None) -> Definition:
        """The definition ``type_name`` (which must have member ``name``, if given); raises
        UnknownDefinition or UnknownRelation naming what is missing."""
        definition = self.definitions.get(type_name)
        if definition is None:
            raise UnknownDefinition(f"object definition `{type_name}` not found", definition=type_name)
        if name is not None and name not in definition.members:
            raise UnknownRelation(
                f"relation/permission `{name}` not found under definition `{type_name}`",
                definition=type_name,
                relation=name,
            )
        return definition
