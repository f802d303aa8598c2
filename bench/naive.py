"""The naive evaluator: relationships in Python dicts, the tag-manager permissions written out
by hand, plain recursion, no cache. It gives the expected answers (independent of relengine's
compiler and checker) and is the baseline that in-process checks are compared with.
"""

from __future__ import annotations

from typing import Final

from .world import Subject, World

Objects = dict[tuple[str, str], dict[str, list[Subject]]]  # plain dicts: a baseline may append to them

# The permissions of schemas/google_tag_manager.zed, by hand: every one is a union of
# ("rel", relation), ("perm", permission) and ("arrow", tupleset relation, target permission).
PERMISSIONS: Final[dict[str, dict[str, tuple[tuple[str, ...], ...]]]] = {
    "account": {
        "administer": (("rel", "admin"),),
        "manage_users": (("perm", "administer"),),
        "create_container": (("perm", "administer"),),
        "view": (("rel", "member"), ("perm", "administer")),
    },
    "container": {
        "publish": (("rel", "publisher"), ("arrow", "account", "administer")),
        "approve": (("rel", "approver"), ("perm", "publish")),
        "edit": (("rel", "editor"), ("perm", "approve")),
        "read": (("rel", "reader"), ("perm", "edit")),
        "create_version": (("perm", "approve"),),
        "create_workspace": (("perm", "edit"),),
        "manage_users": (("arrow", "account", "manage_users"),),
    },
    "group": {},
    "user": {},
}

_EMPTY: Final[dict[str, list[Subject]]] = {}


class LazyObjects(Objects):
    """A dict of objects filled from the world on first use, so that only what a set of
    queries reaches is ever built. ``dict(lazy)`` afterwards is a plain, complete-enough copy."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    def __missing__(self, key: tuple[str, str]) -> dict[str, list[Subject]]:
        value = self.world.relations_of(*key)
        self[key] = value
        return value

    def get(self, key: tuple[str, str], default: object = None) -> dict[str, list[Subject]]:
        return self[key]


class NaiveEvaluator:
    """check / lookup_subjects over ``objects[(type, id)][relation] -> [(type, id, relation)]``;
    ``permissions``: another schema's permissions in the form of ``PERMISSIONS`` (a type with
    relations only maps to ``{}``)."""

    def __init__(self, objects: Objects, permissions: dict[str, dict[str, tuple[tuple[str, ...], ...]]] | None = None) -> None:
        self.objects = objects
        self.permissions = PERMISSIONS if permissions is None else permissions

    def check(self, rtype: str, rid: str, name: str, stype: str, sid: str) -> bool:
        return self._check(rtype, rid, name, stype, sid, set())

    def _check(self, rtype: str, rid: str, name: str, stype: str, sid: str, active: set[tuple[str, str, str]]) -> bool:
        rewrite = self.permissions[rtype].get(name)
        if rewrite is not None:
            for child in rewrite:
                kind = child[0]
                if kind == "rel" or kind == "perm":
                    if self._check(rtype, rid, child[1], stype, sid, active):
                        return True
                else:
                    for ttype, tid, _ in (self.objects.get((rtype, rid)) or _EMPTY).get(child[1], ()):
                        if self._check(ttype, tid, child[2], stype, sid, active):
                            return True
            return False
        key = (rtype, rid, name)
        if key in active:  # a group cycle: this branch adds nothing new
            return False
        active.add(key)
        try:
            for st, si, sr in (self.objects.get((rtype, rid)) or _EMPTY).get(name, ()):
                if not sr:
                    if st == stype and si == sid:
                        return True
                elif self._check(st, si, sr, stype, sid, active):
                    return True
            return False
        finally:
            active.discard(key)

    def lookup_subjects(self, rtype: str, rid: str, name: str, stype: str) -> set[str]:
        """Ids of every ``stype`` subject with ``name`` on ``rtype:rid``."""
        out: set[str] = set()
        self._subjects(rtype, rid, name, stype, out, set())
        return out

    def _subjects(self, rtype: str, rid: str, name: str, stype: str, out: set[str], seen: set[tuple[str, str, str]]) -> None:
        key = (rtype, rid, name)
        if key in seen:
            return
        seen.add(key)
        rewrite = self.permissions[rtype].get(name)
        rels = self.objects.get((rtype, rid)) or _EMPTY
        if rewrite is not None:
            for child in rewrite:
                if child[0] == "arrow":
                    for ttype, tid, _ in rels.get(child[1], ()):
                        self._subjects(ttype, tid, child[2], stype, out, seen)
                else:
                    self._subjects(rtype, rid, child[1], stype, out, seen)
            return
        for st, si, sr in rels.get(name, ()):
            if not sr:
                if st == stype:
                    out.add(si)
            else:
                self._subjects(st, si, sr, stype, out, seen)
