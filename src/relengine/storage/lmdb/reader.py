"""LmdbReader: a snapshot at one revision over one LMDB read transaction; the check's read path.

Why a current index plus history, rather than one index of all versions keyed by created
revision: a Check reads at head or close to it, so the hot point read is one ``get`` of the
key as it is, with no revision suffix to seek past, and a scan touches only live entries. Old
revisions pay instead: a current version is visible at R if it was created at or before R, and
only then is history consulted (``created <= R < deleted``). Even that is skipped when nothing
was superseded after R (``state`` keeps the last revision that moved a version to history),
which is the usual case for readers slightly behind head in a create-mostly workload.

Readers open one read transaction and are meant to live for one request. When a remap (map
growth, or an import releasing memory; see ``env``) invalidates it, a Reader transparently
reopens it: reads are defined by
revision, not by LMDB snapshot, so a reopened Reader answers the same.

Every method here runs per check: what it needs is bound once in ``__init__`` (and ``_bind``),
the environment's handles are read as plain attributes, and no helper adds a call the hot
paths can inline.
"""

from __future__ import annotations

import heapq
import itertools
from typing import Any, Callable, Final, Iterable, Iterator

import lmdb

from ...errors import Unavailable
from ...model import Relationship, RelationshipFilter, Revision, SubjectRef, new_object, new_relationship, new_subject
from .. import keys, objects
from ..base import SMALL_OBJECT, ResourceIds, Row, too_old
from ..keys import PLAIN_KEY_LIMIT, PLAIN_OBJECT_LIMIT, REVISION_SIZE
from ..objects import KIND_OFFSET
from .env import LmdbEnv
from .format import read_counters, read_guards
from .items import build, object_value, resource_strings, scan

_object, _subject, _relationship = new_object, new_subject, new_relationship
_ENCODE_REV: Final = keys.encode_revision
_LARGE: Final = objects.LARGE
_EVERYTHING: Final = 1 << 62  # a limit no scan reaches
_NO_RELATIONSHIPS: Final = bytes(REVISION_SIZE) + objects.EMPTY
_SHORT: Final = keys.SHORTENED_BYTE
_PLAIN_TYPED_LIMIT: Final = keys.LONGEST_COMPONENT + 4  # a 4-part prefix this short has no long component


class _ClosedTransaction:
    """Stands in for the transaction of a closed Reader; every use fails like LMDB's would."""

    def get(self, *args: object) -> bytes | None:
        raise lmdb.Error("the Reader is closed")

    def cursor(self, *args: object) -> Any:
        raise lmdb.Error("the Reader is closed")


_CLOSED: Final = _ClosedTransaction()


class LmdbReader:
    """A snapshot of an LmdbStore at one revision; one LMDB read transaction, for one request.

    ``close()`` (or ``with``, or dropping the Reader: py-lmdb aborts a transaction it frees)
    releases the transaction. See base.Reader.
    """

    __slots__ = (
        "_env", "_rel", "_txn", "_get", "_revision", "_rb", "_at_head", "_history", "_epoch",
        "_owned", "_closed", "_cursor", "_objects", "_complete", "_token",
    )

    def __init__(
        self, env: LmdbEnv, txn: lmdb.Transaction[bytes], revision: int, head: int, last_hist: int,
        epoch: int, *, owned: bool,
    ) -> None:
        self._env = env
        self._rel = env.rel
        # A write transaction's own reader sees its uncommitted rows, but the objects index
        # is brought up to date only at commit: it reads by range scans.
        self._objects = env.objects if owned else None
        self._complete = revision >= env.objects_since  # no entry means no relationships
        self._owned = owned
        self._closed = False
        self._revision = revision
        self._token: Revision | None = None
        self._rb = _ENCODE_REV(revision)
        # What _bind sets, inlined: a reader is made for every check.
        self._txn: Any = txn
        self._get: Callable[..., bytes | None] = txn.get
        self._cursor: Any = None  # one by-resource cursor, reused by the reads of small objects
        self._epoch = epoch
        self._at_head = revision >= head
        self._history = revision < last_hist

    def _bind(self, txn: lmdb.Transaction[bytes], head: int, last_hist: int, epoch: int) -> None:
        self._txn = txn
        self._get = txn.get
        self._cursor = None
        self._epoch = epoch
        # At head every current version is visible; history matters only if something visible
        # at R was superseded after R.
        self._at_head = self._revision >= head
        self._history = self._revision < last_hist

    @property
    def revision(self) -> Revision:
        token = self._token
        if token is None:
            token = self._token = Revision(self._revision)
        return token

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            if self._owned:
                try:
                    self._txn.abort()
                except lmdb.Error:
                    pass  # already invalidated by the store closing
            # LMDB frees the reader slot only when the transaction object goes (and cursors
            # keep it alive).
            self._txn = _CLOSED
            self._get = _CLOSED.get
            self._cursor = None

    def __enter__(self) -> LmdbReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def schema_text(self) -> str | None:
        try:
            cur = self._txn.cursor(self._env.schema)
            if cur.set_range(_ENCODE_REV(self._revision + 1)):
                found = cur.prev()
            else:
                found = cur.last()
            if not found:
                return None
            text: str = cur.value().decode()
            return text
        except lmdb.Error as exc:
            self._recover(exc)
            return self.schema_text()

    def counters(self) -> dict[str, bytes]:
        try:
            return read_counters(self._txn, self._env.meta, self._revision)
        except lmdb.Error as exc:
            self._recover(exc)
            return self.counters()

    def guards_text(self) -> str | None:
        try:
            return read_guards(self._txn, self._env.meta, self._revision)
        except lmdb.Error as exc:
            self._recover(exc)
            return self.guards_text()

    def relationship(
        self, resource_type: str, resource_id: str, relation: str, subject: SubjectRef
    ) -> Relationship | None:
        srel = subject.relation
        text = (
            f"{resource_type}\x00{resource_id}\x00{relation}\x00"
            f"{subject.type}\x00{subject.id}\x00{srel or ''}\x00"
        )
        if text.count("\x00") == 6 and "\x01" not in text:
            key = text.encode()
            if len(key) > PLAIN_KEY_LIMIT:
                key = keys.fit_key(key)
        else:
            key = keys.resource_key(
                resource_type, resource_id, relation, subject.type, subject.id, srel or ""
            )
        try:
            value = self._get(key, None, self._rel)
            if value is None or not (self._at_head or value[:REVISION_SIZE] <= self._rb):
                if not self._history:
                    return None
                value = self._historic(key)
                if value is None:
                    return None
        except lmdb.Error as exc:
            self._recover(exc)
            return self.relationship(resource_type, resource_id, relation, subject)
        if srel == "":
            subject = _subject(subject.type, subject.id, None)
        resource = _object(resource_type, resource_id)
        if len(value) == REVISION_SIZE:
            return _relationship(resource, relation, subject, None, None)
        caveat, expiration = keys.decode_payload(value[REVISION_SIZE:])
        return _relationship(resource, relation, subject, caveat, expiration)

    def subjects(self, resource_type: str, resource_id: str, relation: str) -> Iterator[Relationship]:
        prefix = keys.encode((resource_type, resource_id, relation))
        resource = _object(resource_type, resource_id)
        size = len(prefix)
        env = self._env
        for key, value in self._items(env.rel, env.relh, prefix):
            tail = key[size:]
            if not keys.is_plain(tail):
                st, sid, srel = keys.resource_strings(key, value)[3:]
            else:
                st, sid, srel = tail[:-1].decode().split("\x00")
            subject = _subject(st, sid, srel or None)
            if len(value) == REVISION_SIZE:
                yield _relationship(resource, relation, subject, None, None)
            else:
                caveat, expiration = keys.decode_payload(value[REVISION_SIZE:])
                yield _relationship(resource, relation, subject, caveat, expiration)

    def object_rows(self, resource_type: str, resource_id: str) -> bytes | None:
        """See Reader.object_rows: one ``get`` of the objects index when its entry holds at this
        revision (the object is unchanged since), else one range scan."""
        text = f"{resource_type}\x00{resource_id}\x00"  # keys.encode, inlined for plain short names
        prefix = text.encode()
        if len(prefix) > PLAIN_OBJECT_LIMIT or text.count("\x00") != 2 or "\x01" in text:
            prefix = keys.encode((resource_type, resource_id))  # the general way (it may still be the same)
        if self._objects is not None:
            try:
                value = self._get(prefix, None, self._objects)
            except lmdb.Error as exc:
                self._recover(exc)
                return self.object_rows(resource_type, resource_id)
            if value is None:
                if self._complete:
                    return _NO_RELATIONSHIPS
            elif self._at_head or value[:REVISION_SIZE] <= self._rb:  # at head every entry holds
                return None if value[KIND_OFFSET] == _LARGE else value
        if self._at_head and not self._history:
            items = self._head_items(prefix, SMALL_OBJECT)
        else:
            items = list(itertools.islice(self._items(self._env.rel, self._env.relh, prefix), SMALL_OBJECT + 1))
        value = object_value(self._rb, items, len(prefix))
        return None if value[KIND_OFFSET] == _LARGE else value

    def subject_rows(
        self, resource_type: str, resource_id: str, relation: str, subject_type: str, limit: int | None = None
    ) -> list[Row]:
        """The live subjects of ``subject_type`` on ``resource_type:resource_id#relation`` as rows
        (subject type, id, relation or None, None or (caveat, expiration)), at most ``limit``:
        one range scan that skips the other subject types (a relation's many users when looking
        for its groups) and stops at the limit."""
        text = f"{resource_type}\x00{resource_id}\x00{relation}\x00{subject_type}\x00"  # keys.encode, inlined
        prefix = text.encode()
        if len(prefix) > _PLAIN_TYPED_LIMIT or text.count("\x00") != 4 or "\x01" in text:
            prefix = keys.encode((resource_type, resource_id, relation, subject_type))
        size = len(prefix)
        rows: list[Row] = []
        if limit is None and self._at_head and not self._history:
            # The common case (a check at head), in one pass over the cursor: no list of items
            # first, no generator.
            try:
                cur = self._cursor
                if cur is None:
                    cur = self._cursor = self._txn.cursor(self._env.rel)
                if not cur.set_range(prefix):
                    return rows
                add = rows.append
                for key, value in cur:  # from the cursor's position on
                    if not key.startswith(prefix):
                        break
                    tail = key[size:-1]
                    if 1 in tail or _SHORT in tail:
                        _, _, _, _, sid, srel = resource_strings(key, value)
                    else:
                        sid, srel = tail.decode().split("\x00")
                    if len(value) == REVISION_SIZE:
                        add((subject_type, sid, srel or None, None))
                    else:
                        payload = keys.decode_payload(value[REVISION_SIZE:])
                        add((subject_type, sid, srel or None, None if payload == (None, None) else payload))
                return rows
            except lmdb.Error as exc:
                self._recover(exc)
                return self.subject_rows(resource_type, resource_id, relation, subject_type, limit)
        if limit is not None and limit <= 0:
            return rows
        if self._at_head and not self._history:
            # ``_head_items`` reads one past its limit (to tell "more" from "no more"): asking
            # for ``limit - 1`` reads exactly ``limit``.
            items: Iterable[tuple[bytes, bytes]] = self._head_items(prefix, _EVERYTHING if limit is None else limit - 1)
        else:
            items = self._items(self._env.rel, self._env.relh, prefix)
            if limit is not None:
                items = itertools.islice(items, limit)
        for key, value in items:
            if 1 not in key and _SHORT not in key:  # keys.is_plain, inlined
                sid, srel = key[size:-1].decode().split("\x00")
            else:
                _, _, _, _, sid, srel = resource_strings(key, value)
            extra = None
            if len(value) != REVISION_SIZE:
                extra = keys.decode_payload(value[REVISION_SIZE:])
                if extra == (None, None):
                    extra = None
            rows.append((subject_type, sid, srel or None, extra))
        return rows

    def _head_items(self, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
        """At most ``limit + 1`` current items under ``prefix``; for a Reader at head with no
        history to consult (the common case), without the generator machinery of ``_items``."""
        try:
            cur = self._cursor
            if cur is None:
                cur = self._cursor = self._txn.cursor(self._env.rel)
            return scan(cur, prefix, limit)
        except lmdb.Error as exc:
            self._recover(exc)
            return list(itertools.islice(self._items(self._env.rel, self._env.relh, prefix), limit + 1))

    def _plain_ids(self, prefix: bytes) -> list[str] | None:
        """The last components of the current by-subject keys under ``prefix`` (a 5-part
        prefix), if they are all plain relationships with plain keys (the usual case: one pass
        over the keys, one decode and split for all); else None."""
        cur = self._txn.cursor(self._env.sub)
        tails: list[bytes] = []
        payloads = 0
        size = len(prefix)
        if cur.set_range(prefix):
            add = tails.append
            for key, value in cur.iternext():
                if not key.startswith(prefix):
                    break
                if len(value) != REVISION_SIZE:
                    payloads += 1
                add(key[size:])
        joined = b"".join(tails)
        if payloads or 1 in joined or _SHORT in joined:
            return None
        ids = joined.decode().split("\x00")
        ids.pop()  # the empty string after the last terminator
        return ids

    def resources(
        self, subject: SubjectRef, resource_type: str | None = None, relation: str | None = None
    ) -> Iterator[Relationship]:
        parts = [subject.type, subject.id, subject.relation or ""]
        if resource_type is not None:
            parts.append(resource_type)
            if relation is not None:
                parts.append(relation)
        prefix = keys.encode(parts)
        normal = subject if subject.relation != "" else _subject(subject.type, subject.id, None)
        for key, value in self._items(self._env.sub, self._env.subh, prefix):
            rt, rid, rel, _, _, _ = keys.subject_strings(key, value)
            if relation is not None and rel != relation:
                continue
            yield build(rt, rid, rel, normal, value)

    def resource_ids(self, subject: SubjectRef, resource_type: str, relation: str) -> ResourceIds:
        """See Reader.resource_ids: the ids are the keys' last component, sliced off without
        building a relationship; at head, when all are plain, decoded and split all at once
        (``_plain_ids``). In key order but for escaped or shortened ids, which come last."""
        prefix = keys.encode((subject.type, subject.id, subject.relation or "", resource_type, relation))
        size = len(prefix)
        tails: list[bytes] = []
        odd: list[str] = []  # plain relationships to escaped or shortened ids
        others: list[tuple[str, Any]] = []
        if self._at_head and not self._history:
            try:
                found = self._plain_ids(prefix)
            except lmdb.Error as exc:
                self._recover(exc)
                return self.resource_ids(subject, resource_type, relation)
            if found is not None:
                return found, others
        for key, value in self._items(self._env.sub, self._env.subh, prefix):
            plain = key.find(b"\x01", size) < 0 and key.find(keys.SHORTENED, size) < 0  # the id's tail is plain
            if len(value) == REVISION_SIZE and plain:
                tails.append(key[size:])
                continue
            rid = key[size:-1].decode() if plain else keys.subject_strings(key, value)[1]
            extra = keys.decode_payload(value[REVISION_SIZE:]) if len(value) > REVISION_SIZE else keys.NO_PAYLOAD
            if extra == keys.NO_PAYLOAD:
                odd.append(rid)
            else:
                others.append((rid, extra))
        ids = b"".join(tails).decode().split("\x00")
        ids.pop()  # the empty string after the last terminator
        ids += odd
        return ids, others

    def read(
        self, filter: RelationshipFilter, *, after: Relationship | None = None, limit: int | None = None
    ) -> Iterator[Relationship]:
        if limit is not None and limit <= 0:
            return iter(())
        start = None if after is None else keys.resource_key(*after.key)
        subject = filter.subject
        if (
            filter.resource_id is None and filter.resource_id_prefix is None
            and subject is not None and subject.id is not None
        ):
            return self._read_by_subject(filter, start, limit)
        return self._read_by_resource(filter, start, limit)

    def _read_by_resource(
        self, filter: RelationshipFilter, start: bytes | None, limit: int | None
    ) -> Iterator[Relationship]:
        if filter.resource_id is not None:
            parts = [filter.resource_type, filter.resource_id]
            if filter.relation is not None:
                parts.append(filter.relation)
            prefix = keys.encode(parts)
        else:
            prefix = keys.encode((filter.resource_type,))
            if filter.resource_id_prefix is not None:
                prefix += keys.encode_partial(filter.resource_id_prefix)
        count = 0
        for key, value in self._items(self._env.rel, self._env.relh, prefix, start):
            rt, rid, rel, st, sid, srel = resource_strings(key, value)
            rel_ = build(rt, rid, rel, _subject(st, sid, srel or None), value)
            if filter.matches(rel_):
                yield rel_
                count += 1
                if count == limit:
                    return

    def _read_by_subject(
        self, filter: RelationshipFilter, start: bytes | None, limit: int | None
    ) -> Iterator[Relationship]:
        """Filters naming a subject but no resource: scan that subject's index, then sort."""
        subject = filter.subject
        assert subject is not None and subject.id is not None
        parts = [subject.type, subject.id]
        if subject.relation is not None:
            parts += [subject.relation, filter.resource_type]
            if filter.relation is not None:
                parts.append(filter.relation)
        prefix = keys.encode(parts)
        found: list[tuple[bytes, Relationship]] = []
        for key, value in self._items(self._env.sub, self._env.subh, prefix):
            rt, rid, rel, st, sid, srel = keys.subject_strings(key, value)
            rkey = keys.resource_key(rt, rid, rel, st, sid, srel)
            if start is not None and rkey <= start:
                continue
            rel_ = build(rt, rid, rel, _subject(st, sid, srel or None), value)
            if filter.matches(rel_):
                found.append((rkey, rel_))
        found.sort(key=lambda item: item[0])
        return (rel_ for _, rel_ in (found if limit is None else found[:limit]))

    # -- internals ---------------------------------------------------------------------------

    def _historic(self, key: bytes) -> bytes | None:
        """The history version of ``key`` visible at this revision, if any."""
        cur = self._txn.cursor(self._env.relh)
        if cur.set_range(key + _ENCODE_REV(self._revision + 1)):
            hkey: bytes = cur.key()
            if hkey[:-REVISION_SIZE] == key:
                value: bytes = cur.value()
                if value[:REVISION_SIZE] <= self._rb:
                    return value
        return None

    def _items(
        self, db: Any, hist: Any, prefix: bytes, after: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, version) visible at this revision with ``prefix``, after ``after``, in order;
        survives the store adopting a new map size by reopening and resuming after the last."""
        last = after
        while True:
            try:
                if self._history:
                    for item in heapq.merge(
                        self._current_items(db, prefix, last),
                        self._historic_items(hist, prefix, last),
                    ):
                        last = item[0]
                        yield item
                    return
                # The common case, inlined: current versions only.
                cur = self._txn.cursor(db)
                if not cur.set_range(prefix if last is None or last < prefix else last):
                    return
                rb = None if self._at_head else self._rb
                for key, value in cur.iternext():
                    if not key.startswith(prefix):
                        return
                    if key == last or (rb is not None and value[:REVISION_SIZE] > rb):
                        continue
                    last = key
                    yield key, value
                return
            except lmdb.Error as exc:
                self._recover(exc)

    def _current_items(
        self, db: Any, prefix: bytes, after: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(db)
        if not cur.set_range(prefix if after is None or after < prefix else after):
            return
        rb = None if self._at_head else self._rb
        for key, value in cur.iternext():
            if not key.startswith(prefix):
                return
            if key == after or (rb is not None and value[:REVISION_SIZE] > rb):
                continue
            yield key, value

    def _historic_items(
        self, hist: Any, prefix: bytes, after: bytes | None
    ) -> Iterator[tuple[bytes, bytes]]:
        cur = self._txn.cursor(hist)
        start = prefix if after is None or after < prefix else after
        if not cur.set_range(start):
            return
        rb = self._rb
        for hkey, value in cur.iternext():
            if not hkey.startswith(prefix):
                return
            key = hkey[:-REVISION_SIZE]
            if after is not None and key <= after:
                continue
            if value[:REVISION_SIZE] <= rb < hkey[-REVISION_SIZE:]:
                yield key, value

    def _recover(self, exc: lmdb.Error) -> None:
        """After an LMDB error: reopen the transaction if the store remapped its file since it
        was opened (the revision is still answered exactly), else raise the translated error."""
        env = self._env
        if self._closed:
            raise Unavailable("the Reader is closed; take a new one") from exc
        env.check_open()
        if not self._owned or not env.remapped_since(self._epoch):
            raise env.translate(exc) from exc
        epoch = env.epoch
        txn = env.begin_read()
        try:
            head, horizon, last_hist = env.read_state(txn)
            if self._revision < horizon:
                raise too_old(self._revision, env.gc_window)
        except BaseException:
            txn.abort()
            raise
        self._bind(txn, head, last_hist, epoch)


__all__ = ["LmdbReader"]
