"""The memory store's state: every version of every relationship, indexed, and its collection.

Each relationship key maps to its versions, oldest first, each with the revision that created it
and the one that deleted it (None while live); a Reader at R sees the version with
``created <= R < deleted``. ``record`` appends versions and marks old ones deleted in place,
which readers at older revisions cannot observe; ``collected`` builds a new State instead, so a
Reader keeps the state it started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import Relationship

Key = tuple[str, str, str, str, str, str]
"""A relationship's strings in by-resource order (``Relationship.key``)."""


@dataclass(slots=True)
class Version:
    relationship: Relationship
    created: int
    deleted: int | None = None


@dataclass(slots=True)
class State:
    """The versions by key, indexes of the keys by resource, by subject and by resource type
    (keys stay indexed while they have versions), and the schema texts, the relationship
    counters and the guard texts by revision."""

    versions: dict[Key, list[Version]] = field(default_factory=dict)
    by_resource: dict[tuple[str, str, str], set[Key]] = field(default_factory=dict)
    by_subject: dict[tuple[str, str, str], set[Key]] = field(default_factory=dict)
    by_type: dict[str, set[Key]] = field(default_factory=dict)
    schemas: list[tuple[int, str]] = field(default_factory=list)
    counters: list[tuple[int, dict[str, bytes]]] = field(default_factory=list)
    guards: list[tuple[int, str]] = field(default_factory=list)

    def add_key(self, key: Key) -> None:
        self.by_resource.setdefault(key[:3], set()).add(key)
        self.by_subject.setdefault(key[3:], set()).add(key)
        self.by_type.setdefault(key[0], set()).add(key)

    def schema_at(self, revision: int) -> str | None:
        """The schema text live at ``revision``."""
        text = None
        for rev, value in self.schemas:
            if rev > revision:
                break
            text = value
        return text

    def guards_at(self, revision: int) -> str | None:
        """The guard file text live at ``revision``."""
        text = None
        for rev, value in self.guards:
            if rev > revision:
                break
            text = value
        return text

    def counters_at(self, revision: int) -> dict[str, bytes]:
        """The relationship counters registered at ``revision``."""
        found: dict[str, bytes] = {}
        for rev, value in self.counters:
            if rev > revision:
                break
            found = value
        return dict(found)

    def record(self, revision: int, key: Key, old: Relationship | None, new: Relationship | None) -> None:
        """At ``revision`` (the next one), ``key`` changes from ``old`` (live at head) to ``new``
        (None: deleted)."""
        versions = self.versions.get(key)
        if old is not None:
            assert versions is not None
            versions[-1].deleted = revision
        if new is not None:
            if versions is None:
                versions = self.versions[key] = []
                self.add_key(key)
            versions.append(Version(new, revision))

    def collected(self, horizon: int) -> tuple[State, int]:
        """A new State without what no revision at or after ``horizon`` can see, and how many
        versions that left out."""
        new = State()
        removed = 0
        for key, versions in self.versions.items():
            kept = [v for v in versions if v.deleted is None or v.deleted > horizon]
            removed += len(versions) - len(kept)
            if kept:
                new.versions[key] = kept
                new.add_key(key)
        first_schema = 0
        for i, (rev, _) in enumerate(self.schemas):
            if rev <= horizon:
                first_schema = i
        new.schemas = self.schemas[first_schema:]
        first_counters = 0
        for i, (rev, _) in enumerate(self.counters):
            if rev <= horizon:
                first_counters = i
        new.counters = self.counters[first_counters:]
        first_guards = 0
        for i, (rev, _) in enumerate(self.guards):
            if rev <= horizon:
                first_guards = i
        new.guards = self.guards[first_guards:]
        return new, removed


def visible(versions: list[Version] | None, revision: int) -> Relationship | None:
    """The relationship of the version among ``versions`` live at ``revision``, if any."""
    if versions:
        for version in reversed(versions):
            if version.created <= revision:
                if version.deleted is None or version.deleted > revision:
                    return version.relationship
                return None
    return None


__all__ = ["Key", "State", "Version", "visible"]
