"""The walk that answers a check, over the evaluation plan (``plan.py``): unions stop at the
first yes, intersections at the first no; arrows read their targets in one range scan.

Reads: the first time a request touches an object, it reads all of that object's
relationships at once if there are few (``Reader.object_rows``: most objects, a container has a
handful of roles), and answers every later question about the object from them. Objects with
many relationships (a group with thousands of members) are read by point reads and typed scans.

A data cycle (``group:a#member@group:b#member`` and back) ends in NO for the branch that
re-enters a sub-question already being answered, which is the least fixed point for unions;
only members the plan marks recursive pay for this guard. Depth is budgeted per dispatch;
running out raises MaxDepthExceeded.
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any, Callable, Final, Mapping

from ..errors import DeadlineExceeded, MaxDepthExceeded, UnknownDefinition
from ..model import WILDCARD, CaveatRef, SubjectRef
from ..schema.types import CompiledSchema
from ..storage import objects
from ..storage.base import Reader, Row
from .dispatch import HAS, NO, Conditional, Dispatcher, Result, both, either
from .groups import GroupView
from .plan import leaf_headers, plan_for

_UNREAD: Final = object()
KEPT_OBJECTS: Final = 2048
"""Small objects' values a reused checker keeps from the requests before at most
(``LocalChecker.reuse``): some hundreds of kilobytes."""
_KIND_AT: Final = objects.KIND_OFFSET
_PLAIN: Final = objects.PLAIN
_HEAD: Final = objects.HEAD
# The subject types of a relation's subject sets, by the plan's frozenset of (type, relation):
# a few per schema, computed once.
_SUBJECT_TYPES: dict[frozenset[tuple[str, str | None]], tuple[str, ...]] = {}


class LocalChecker:
    """Answers sub-questions for one request against one Reader (one revision).

    ``dispatcher`` is where recursive sub-questions go: the checker itself, or what ``wrap``
    makes of it (a cache in front of it; ``build.build_checker`` decides). It is fixed at
    construction. ``now`` decides which expiring relationships are live. The plan's closures
    see the checker through ``plan.Walk``.
    """

    __slots__ = (
        "schema", "context", "reader", "max_depth", "_now", "deadline", "dispatcher", "_plan",
        "_entries", "_active", "_objects", "_others", "_typed", "_object_rows", "subject", "needle",
        "cycle_cuts", "time_bound", "groups", "_grouped", "_leaves", "direct", "_seen",
    )

    def __init__(
        self,
        schema: CompiledSchema,
        reader: Reader,
        *,
        max_depth: int = 50,
        now: _dt.datetime | None = None,
        deadline: float | None = None,
        context: Mapping[str, Any] | None = None,
        wrap: Callable[[LocalChecker], Dispatcher] | None = None,
        groups: GroupView | None = None,
    ) -> None:
        self.schema = schema
        self.context: Mapping[str, Any] = context or {}
        self.reader = reader
        self.max_depth = max_depth
        self._now = now
        self.deadline = deadline
        plan = plan_for(schema)
        self._plan = plan
        self._entries = plan.entries
        self._leaves = leaf_headers(schema)
        self._active: set[tuple[str, str, str]] = set()
        self._objects: dict[tuple[str, str], bytes | None] = {}
        self._others: dict[tuple[str, str], dict[str, tuple[Row, ...]]] = {}
        # Subject sets of large objects, by (type, id, relation, subject type): a bulk check
        # walks the same groups for many subjects.
        self._typed: dict[tuple[str, str, str, str], list[Row]] = {}
        self._seen: set[tuple[str, str]] = set()  # objects ``leaf`` has asked a point read of
        self._object_rows = reader.object_rows
        # The subject of the current check (every sub-question asks about it) and how it looks
        # among an object's direct entries.
        self.subject: SubjectRef | None = None
        self.needle = b""
        self.cycle_cuts = 0  # how many branches a data cycle cut short (a cache must not keep those)
        self.time_bound = 0  # how many answers leaned on a relationship that will expire (nor those)
        # The group index at this revision (``groups``), and the relations it answers for.
        self.groups = groups
        self._grouped = groups.relations if groups is not None else frozenset()
        self.dispatcher: Dispatcher = self if wrap is None else wrap(self)
        self.direct = wrap is None  # sub-questions come back here (see ``leaf``)

    def release(self) -> None:
        """Let go of the dispatcher once the request is done; the checker answers nothing after.

        The checker is its own dispatcher (or its cache's inner one): a reference cycle, which
        would leave the request's objects (the Reader, its reads, the dispatcher) to the cyclic
        garbage collector. Broken here, reference counting frees them as the request ends;
        otherwise every check adds cyclic garbage, and the collector runs every few hundred
        checks, at several microseconds a check and, on a large heap, full collections of tens
        of milliseconds that stall every thread (bench: threads, uncached_check)."""
        del self.dispatcher

    def reuse(self, reader: Reader, deadline: float | None, keep_reads: bool = False) -> None:
        """Ready the checker for another request at the same revision, schema, caveat context
        and group index view (what it was built with): a new Reader of that revision and a new
        deadline, and "now" taken afresh. Building a checker is about a tenth of a small
        uncached check (bench: check_by_object_size); ``Engine.check`` keeps a few for reuse.

        ``keep_reads``: the small objects the requests before read stay (they hold at this one
        revision: checks that share an account's or a group's rows read them once), up to
        ``KEPT_OBJECTS``, past which they start afresh; else each request reads for itself.
        The Engine keeps them where its answer cache is on: with the cache off, each check
        reads what it needs."""
        if reader is not self.reader:  # one thread checking gets the same Reader back
            self.reader = reader
            self._object_rows = reader.object_rows
        self.deadline = deadline
        if self._now is not None:
            self._now = None
        if not keep_reads or len(self._objects) > KEPT_OBJECTS:
            if self._objects:
                self._objects.clear()
            if self._others:
                self._others.clear()
        if self._typed:
            self._typed.clear()
        if self._seen:
            self._seen.clear()

    @property
    def now(self) -> _dt.datetime:
        if self._now is None:
            self._now = _dt.datetime.now(_dt.timezone.utc)
        return self._now

    # -- entry -----------------------------------------------------------------------
    def check(self, rtype: str, rid: str, relation: str, subject: SubjectRef) -> Result:
        if (rtype, relation) not in self._entries:
            self.schema.require(rtype, relation)  # raises, naming what is missing
        if subject is not self.subject:
            if subject.type not in self.schema.definitions:
                raise UnknownDefinition(
                    f"subject type `{subject.type}` is not a definition of the schema", definition=subject.type
                )
            self.subject = subject
            self.needle = objects.needle(subject.type, subject.id)
        return self.dispatcher.dispatch(rtype, rid, relation, subject, self.max_depth)

    # -- Dispatcher --------------------------------------------------------------------
    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Result:
        if subject.id == rid and subject.relation == relation and subject.type == rtype:
            return HAS  # a userset is a member of itself
        if depth < 0:
            raise MaxDepthExceeded.at("check", self.max_depth, f"{rtype}:{rid}#{relation}", rtype, relation)
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the check ran past its deadline")
        if self._grouped and (rtype, relation) in self._grouped:
            assert self.groups is not None
            held = self.groups.holds(rtype, rid, relation, subject, depth)
            if held is not None:
                return HAS if held else NO
        entry = self._entries.get((rtype, relation))
        if entry is None:
            return NO
        node, recursive = entry
        if not recursive:
            return node(self, rid, subject, depth)
        key = (rtype, rid, relation)
        if key in self._active:
            self.cycle_cuts += 1
            return NO
        self._active.add(key)
        try:
            return node(self, rid, subject, depth)
        finally:
            self._active.discard(key)

    # -- reads -----------------------------------------------------------------------
    def object(self, rtype: str, rid: str) -> bytes | None:
        """The relationships of ``rtype:rid`` as one value (read once per request; layout in
        ``storage.objects``), or None for a large object."""
        key = (rtype, rid)
        obj = self._objects.get(key, _UNREAD)
        if obj is _UNREAD:
            obj = self._objects[key] = self._object_rows(rtype, rid)
        return obj  # type: ignore[return-value]

    def leaf(self, rtype: str, rid: str, relation: str, header: bytes) -> bool | None:
        """See ``plan.Walk.leaf``: for the current subject, what ``dispatch`` would answer for
        ``relation`` of ``rtype:rid``, a relation of whole subjects only (``plan.leaf_headers``,
        ``header`` its entries' header: it has no subject sets, so it is on no cycle and no
        group index answers it; a whole subject is never the subject set asked for), without
        the sub-question. None where that cannot tell (a caveat or an expiration to weigh).

        The first time a request asks about an object here, one point read of the subject's
        relationship answers (a single check meets a group once); from the second time on,
        the object is read whole and searched (a bulk check meets the same groups again and
        again). The caller has kept the depth budget; the deadline is looked at here, as
        ``dispatch`` would."""
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineExceeded("the check ran past its deadline")
        key = (rtype, rid)
        objs = self._objects
        if key in objs:
            obj = objs[key]
        elif key not in self._seen:
            self._seen.add(key)
            assert self.subject is not None
            rel = self.reader.relationship(rtype, rid, relation, self.subject)
            if rel is None:
                return False
            return True if rel.caveat is None and rel.expiration is None else None
        else:
            obj = objs[key] = self._object_rows(rtype, rid)
        if obj is None or obj[_KIND_AT] != _PLAIN:
            return None
        begin = obj.find(header, _HEAD)
        if begin < 0:
            return False
        return obj.find(self.needle, begin, obj.index(b"\x02", begin + 1)) >= 0

    def others(self, rtype: str, rid: str, obj: bytes) -> dict[str, tuple[Row, ...]]:
        """The relationships of a small object that are not plain direct entries, by relation."""
        key = (rtype, rid)
        found = self._others.get(key)
        if found is None:
            found = self._others[key] = objects.others(obj)
        return found

    def scan(self, rtype: str, rid: str, relation: str) -> list[Row]:
        rows: list[Row] = []
        for rel in self.reader.subjects(rtype, rid, relation):
            s = rel.subject
            extra = None if rel.caveat is None and rel.expiration is None else (rel.caveat, rel.expiration)
            rows.append((s.type, s.id, s.relation, extra))
        return rows

    def relation_by_index(
        self,
        rtype: str,
        rid: str,
        name: str,
        subject: SubjectRef,
        depth: int,
        wildcard_types: frozenset[str],
        userset_types: frozenset[tuple[str, str | None]],
    ) -> Result:
        reader = self.reader
        found: Result | None = None
        rel = reader.relationship(rtype, rid, name, subject)
        if rel is not None:
            found = self._gate(rel.caveat, rel.expiration)
            if found is HAS:
                return HAS
        if subject.relation is None and subject.type in wildcard_types and subject.id != WILDCARD:
            rel = reader.relationship(rtype, rid, name, SubjectRef(subject.type, WILDCARD))
            if rel is not None:
                found = either(found, self._gate(rel.caveat, rel.expiration))
                if found is HAS:
                    return HAS
        if userset_types:
            dispatch = self.dispatcher.dispatch
            leaves = self._leaves if (
                subject.relation is None and subject is self.subject and depth > 0 and self.direct
            ) else None
            stypes = _SUBJECT_TYPES.get(userset_types)
            if stypes is None:
                stypes = _SUBJECT_TYPES[userset_types] = tuple(sorted({t for t, _ in userset_types}))
            for stype in stypes:
                key = (rtype, rid, name, stype)
                rows = self._typed.get(key)
                if rows is None:
                    rows = self._typed[key] = reader.subject_rows(rtype, rid, name, stype)
                for s_type, sid, srel, extra in rows:
                    if srel is None or (s_type, srel) not in userset_types:
                        continue
                    if extra is None:  # the usual case: no caveat, no expiration
                        if leaves is not None:
                            header = leaves.get((s_type, srel))
                            if header is not None:
                                held = self.leaf(s_type, sid, srel, header)
                                if held is not None:
                                    if held:
                                        return HAS
                                    continue
                        result = dispatch(s_type, sid, srel, subject, depth - 1)
                        if result is HAS:
                            return HAS
                        if result is not NO:
                            found = either(found, result)
                        continue
                    gate = self._gate(extra[0], extra[1])
                    if gate is NO:
                        continue
                    found = either(found, both(gate, dispatch(s_type, sid, srel, subject, depth - 1)))
                    if found is HAS:
                        return HAS
        return NO if found is None else found

    def gate(self, extra: tuple[CaveatRef | None, _dt.datetime | None]) -> Result:
        """Whether a relationship with a caveat and/or an expiration counts: HAS, NO or Conditional."""
        return self._gate(extra[0], extra[1])

    def expired(self, extra: tuple[CaveatRef | None, _dt.datetime | None]) -> bool:
        return extra[1] is not None and extra[1] <= self.now

    def _gate(self, caveat: CaveatRef | None, expiration: _dt.datetime | None) -> Result:
        if expiration is not None:
            if expiration <= self.now:
                return NO
            self.time_bound += 1
        if caveat is None:
            return HAS
        return self._plan.evaluate_caveat(caveat, self.context)


__all__ = ["Conditional", "LocalChecker"]
