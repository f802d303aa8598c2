"""The walk over rewrite trees that answers a check: unions stop at the first yes,
intersections at the first no; a direct relation with a known subject is a point read.

A data cycle (``group:a#member@group:b#member`` and back) ends in NO for the branch that
re-enters a sub-question already being answered, which is the least fixed point for unions.
Depth is budgeted per dispatch; running out raises MaxDepthExceeded.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Iterable

from ..errors import DeadlineExceeded, MaxDepthExceeded, Unimplemented, UnknownDefinition, UnknownRelation
from ..model import WILDCARD, Relationship, SubjectRef
from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Nil,
    Permission,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)
from ..storage.base import Reader
from .dispatch import Dispatcher, Permissionship

NO = Permissionship.NO_PERMISSION
HAS = Permissionship.HAS_PERMISSION


class LocalChecker:
    """Answers sub-questions for one request against one Reader (one revision).

    ``dispatcher`` is where recursive sub-questions go (default: this checker itself; a cache
    may wrap it). ``now`` decides which expiring relationships are live.
    """

    def __init__(
        self,
        schema: CompiledSchema,
        reader: Reader,
        *,
        max_depth: int = 50,
        now: _dt.datetime | None = None,
        deadline: float | None = None,
    ) -> None:
        self.schema = schema
        self.reader = reader
        self.max_depth = max_depth
        self.now = now or _dt.datetime.now(_dt.timezone.utc)
        self.deadline = deadline
        self.dispatcher: Dispatcher = self
        self._active: set[tuple[str, str, str, SubjectRef]] = set()
        self.cycle_cuts = 0  # how many branches a data cycle cut short (a cache must not keep those)

    # -- entry -----------------------------------------------------------------------
    def check(self, rtype: str, rid: str, relation: str, subject: SubjectRef) -> Permissionship:
        definition = self.schema.definitions.get(rtype)
        if definition is None:
            raise UnknownDefinition(f"object definition `{rtype}` not found", definition=rtype)
        if relation not in definition.members:
            raise UnknownRelation(
                f"relation/permission `{relation}` not found under definition `{rtype}`",
                definition=rtype,
                relation=relation,
            )
        if subject.type not in self.schema.definitions:
            raise UnknownDefinition(
                f"subject type `{subject.type}` is not a definition of the schema", definition=subject.type
            )
        return self.dispatcher.dispatch(rtype, rid, relation, subject, self.max_depth)

    # -- Dispatcher --------------------------------------------------------------------
    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Permissionship:
        if subject.relation == relation and subject.id == rid and subject.type == rtype:
            return HAS  # a userset is a member of itself
        if depth < 0:
            raise MaxDepthExceeded(
                f"check exceeded the maximum depth of {self.max_depth} at {rtype}:{rid}#{relation}; "
                "the relationship graph is deeper than allowed (raise max_depth if this is expected)",
                definition=rtype,
                relation=relation,
            )
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the check ran past its deadline")
        key = (rtype, rid, relation, subject)
        if key in self._active:
            self.cycle_cuts += 1
            return NO
        member = self.schema.definitions[rtype].members.get(relation)
        if member is None:
            return NO
        self._active.add(key)
        try:
            if isinstance(member, Relation):
                return self._relation(rtype, rid, member, subject, depth)
            return self._rewrite(rtype, rid, member.rewrite, subject, depth)
        finally:
            self._active.discard(key)

    # -- relations ---------------------------------------------------------------------
    def _live(self, rel: Relationship | None) -> bool:
        if rel is None:
            return False
        if rel.expiration is not None and rel.expiration <= self.now:
            return False
        if rel.caveat is not None:
            raise Unimplemented(
                f"relationship {rel} carries caveat `{rel.caveat.name}`; caveat evaluation is "
                "not implemented yet, so this check cannot be answered",
                caveat=rel.caveat.name,
            )
        return True

    def _relation(self, rtype: str, rid: str, relation: Relation, subject: SubjectRef, depth: int) -> Permissionship:
        reader = self.reader
        name = relation.name
        if self._live(reader.relationship(rtype, rid, name, subject)):
            return HAS
        if subject.relation is None and subject.id != WILDCARD and any(
            a.wildcard and a.type == subject.type for a in relation.allowed
        ):
            if self._live(reader.relationship(rtype, rid, name, SubjectRef(subject.type, WILDCARD))):
                return HAS
        if not any(a.relation is not None for a in relation.allowed):
            return NO
        dispatch = self.dispatcher.dispatch
        for rel in reader.subjects(rtype, rid, name):
            s = rel.subject
            if s.relation is None or not self._live(rel):
                continue
            if dispatch(s.type, s.id, s.relation, subject, depth - 1) is HAS:
                return HAS
        return NO

    # -- rewrites ----------------------------------------------------------------------
    def _rewrite(self, rtype: str, rid: str, node: Rewrite, subject: SubjectRef, depth: int) -> Permissionship:
        if isinstance(node, ComputedUserset):
            return self.dispatcher.dispatch(rtype, rid, node.relation, subject, depth - 1)
        if isinstance(node, Union):
            for child in node.children:
                if self._rewrite(rtype, rid, child, subject, depth) is HAS:
                    return HAS
            return NO
        if isinstance(node, Intersection):
            for child in node.children:
                if self._rewrite(rtype, rid, child, subject, depth) is NO:
                    return NO
            return HAS
        if isinstance(node, Exclusion):
            if self._rewrite(rtype, rid, node.base, subject, depth) is NO:
                return NO
            return NO if self._rewrite(rtype, rid, node.subtract, subject, depth) is HAS else HAS
        if isinstance(node, TupleToUserset):
            return self._arrow(rtype, rid, node, subject, depth)
        if isinstance(node, This):
            return HAS if subject.relation is None and subject.type == rtype and subject.id == rid else NO
        assert isinstance(node, Nil)
        return NO

    def _arrow(self, rtype: str, rid: str, node: TupleToUserset, subject: SubjectRef, depth: int) -> Permissionship:
        dispatch = self.dispatcher.dispatch
        definitions = self.schema.definitions
        found = False
        for rel in self._targets(rtype, rid, node.tupleset):
            target = rel.subject
            target_def = definitions.get(target.type)
            has_member = target_def is not None and node.computed in target_def.members
            result = dispatch(target.type, target.id, node.computed, subject, depth - 1) if has_member else NO
            if node.mode == "any":
                if result is HAS:
                    return HAS
            elif result is NO:
                return NO
            found = True
        return HAS if node.mode == "all" and found else NO

    def _targets(self, rtype: str, rid: str, tupleset: str) -> Iterable[Relationship]:
        seen: set[tuple[str, str]] = set()
        for rel in self.reader.subjects(rtype, rid, tupleset):
            target = rel.subject
            if (target.type, target.id) in seen or not self._live(rel):
                continue
            seen.add((target.type, target.id))
            yield rel


def member_kind(schema: CompiledSchema, rtype: str, name: str) -> str:
    member = schema.member(rtype, name)
    if member is None:
        return "unknown"
    return "permission" if isinstance(member, Permission) else "relation"
