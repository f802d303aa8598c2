"""The LMDB write transaction: apply, delete_matching, the bulk path, the objects index, commit.

A transaction writes through to the current indexes and remembers, per key, the version it
started from; at commit it compares, moves superseded originals to history, and writes one
changelog entry per key that really changed, so churn inside a transaction leaves no history
and a transaction that changed nothing commits no revision. The changelog doubles as the GC
queue (see ``changelog``): each history version was superseded by the change logged at its
deleted revision. At commit the objects index entry of every changed object is rewritten.
"""

from __future__ import annotations

import itertools
import operator
from typing import Callable, Final, Iterable, Mapping, Sequence

import lmdb

from ...errors import AlreadyExists, DeadlineExceeded, RelEngineError, StoreFull
from ...model import Relationship, RelationshipFilter, Revision
from ...results import Operation, RelationshipUpdate
from .. import keys
from ..base import (
    DEADLINE_STEPS,
    SMALL_OBJECT,
    BulkRow,
    batch_too_large,
    check_deadline,
    has_match,
    micros,
    to_delete,
)
from ..keys import REVISION_SIZE, object_prefix
from ..objects import KIND_OFFSET, LARGE
from .env import LmdbEnv
from .format import State, counters_key, encode_counters, guards_key, read_counters, read_guards, write_state
from .items import edited_value, object_value, scan
from .reader import LmdbReader

_ENCODE_REV: Final = keys.encode_revision
_KEY: Final = operator.itemgetter(0)
_OBJECT: Final = operator.itemgetter(0, 1)
_SUBJECT_ORDER: Final = operator.itemgetter(3, 4, 5, 0, 2, 1)  # by-resource strings -> by-subject
_STRINGS: Final = operator.itemgetter(0, 1, 2, 3, 4, 5)
_EXTRAS: Final = operator.itemgetter(6, 7)  # caveat, expiration
_SHORT: Final = keys.SHORTENED_BYTE


class LmdbTransaction:
    """One LMDB write transaction (see base.Transaction and the module docstring), begun from
    ``state`` by ``LmdbTransactionContext``; the thread holds ``env.write_lock`` meanwhile."""

    def __init__(
        self, env: LmdbEnv, txn: lmdb.Transaction[bytes], state: State, batch_limit: int | None,
        full: bool = False,
    ) -> None:
        head, horizon, last_hist = state
        self._env = env
        self._txn = txn
        self._full = full  # refuse what adds data (see env.is_full)
        self._added = False  # wrote more than deletes: StoreFull's advice depends on it
        self._spoilt: DeadlineExceeded | None = None  # a delete_matching ran out of time
        self._head = head
        self._horizon = horizon
        self._last_hist = last_hist
        self._revision = head + 1
        self._rb = _ENCODE_REV(head + 1)
        self._batch_limit = batch_limit
        self._updates = 0
        self._originals: dict[bytes, bytes | None] = {}
        # What this transaction left under each by-resource key it wrote one at a time (None:
        # deleted) and that key's by-subject key: commit then neither reads nor decodes them.
        # A key missing from ``_now`` is read at commit (bulk_touch's fast path drops its keys).
        self._now: dict[bytes, bytes | None] = {}
        self._skeys: dict[bytes, bytes] = {}
        self._rel_cursor: lmdb.Cursor[bytes] | None = None  # _touch's
        self._fresh_keys: list[bytes] = []  # created by bulk_touch's fast path, not in originals
        self._fresh_values: list[bytes] = []
        self._deferred_count = 0  # how many of the fresh keys, the last ones, bulk_touch(defer=True) added
        self.deferred: set[bytes] = set()  # objects bulk_touch(defer=True) marked large (see there)
        self._pending_schema: str | None = None
        self._pending_counters: dict[str, bytes] | None = None
        self._pending_guards: str | None = None

    def reader(self) -> LmdbReader:
        env = self._env
        return LmdbReader(env, self._txn, self._head, self._head, 0, env.epoch, owned=False)

    def schema_text(self) -> str | None:
        if self._pending_schema is not None:
            return self._pending_schema
        return self._texts()[1]

    def _texts(self) -> tuple[int, str | None, str | None]:
        """(head, the schema text, the guard file text) at the head this transaction began
        at, read once per head (``LmdbEnv.texts_at``; a commit of this process carries them
        to its revision, so consecutive writes read them once)."""
        env = self._env
        texts = env.texts_at
        if texts[0] != self._head:
            try:
                guards = read_guards(self._txn, env.meta, self._head)
            except lmdb.Error as exc:
                raise env.translate(exc) from exc
            texts = env.texts_at = (self._head, self.reader().schema_text(), guards)
        return texts

    def set_schema(self, text: str) -> None:
        self._pending_schema = text

    def counters(self) -> dict[str, bytes]:
        if self._pending_counters is not None:
            return dict(self._pending_counters)
        try:
            return read_counters(self._txn, self._env.meta, self._head)
        except lmdb.Error as exc:
            raise self._env.translate(exc) from exc

    def set_counters(self, counters: Mapping[str, bytes]) -> None:
        self._pending_counters = dict(counters)

    def guards_text(self) -> str | None:
        if self._pending_guards is not None:
            return self._pending_guards
        return self._texts()[2]

    def set_guards(self, text: str) -> None:
        self._pending_guards = text

    def apply(self, update: RelationshipUpdate) -> None:
        self._updates += 1
        if self._batch_limit is not None and self._updates > self._batch_limit:
            raise batch_too_large(self._batch_limit)
        rel = update.relationship
        s = rel.subject
        srel = s.relation or ""
        r = rel.resource
        rkey = keys.resource_key(r.type, r.id, rel.relation, s.type, s.id, srel)
        env = self._env
        txn = self._txn
        try:
            if update.operation is Operation.TOUCH and not self._full:
                self._touch(rel, rkey)
                return
            current = txn.get(rkey, None, env.rel)
            if update.operation is Operation.DELETE:
                if current is not None:
                    self._originals.setdefault(rkey, current)
                    skey = keys.subject_key(s.type, s.id, srel, r.type, rel.relation, r.id)
                    txn.delete(rkey, db=env.rel)
                    txn.delete(skey, db=env.sub)
                    self._now[rkey] = None
                    self._skeys[rkey] = skey
                return
            payload = keys.encode_payload(
                rel.caveat, rel.expiration, rel.key if keys.is_shortened(rkey) else None
            )
            if current is not None:
                if update.operation is Operation.CREATE:
                    raise AlreadyExists(
                        f"relationship {rel} already exists", relationship=str(rel), **rel.identity()
                    )
                if current[REVISION_SIZE:] == payload:
                    return
            self._adding()
            self._originals.setdefault(rkey, current)
            value = self._rb + payload
            skey = keys.subject_key(s.type, s.id, srel, r.type, rel.relation, r.id)
            txn.put(rkey, value, db=env.rel)
            txn.put(skey, value, db=env.sub)
            self._now[rkey] = value
            self._skeys[rkey] = skey
        except lmdb.Error as exc:
            raise env.translate(exc, deleting=not self._added) from exc

    def _touch(self, rel: Relationship, rkey: bytes) -> None:
        """``apply``'s TOUCH where the store may grow: one ``replace`` finds the current
        version and writes the new one (a key not there yet, the common case, is one B-tree
        descent, not a ``get`` and a ``put``); a version already holding this payload is put
        back as it was."""
        env = self._env
        if rel.caveat is None and rel.expiration is None and _SHORT not in rkey:
            payload = b""  # ``encode_payload``'s answer, without the two calls (nearly every relationship)
        else:
            payload = keys.encode_payload(rel.caveat, rel.expiration, rel.key if keys.is_shortened(rkey) else None)
        value = self._rb + payload
        cursor = self._rel_cursor
        if cursor is None:
            cursor = self._rel_cursor = self._txn.cursor(env.rel)
        current = cursor.replace(rkey, value)
        if current is not None and current[REVISION_SIZE:] == payload:
            cursor.put(rkey, current)  # unchanged
            return
        self._added = True
        self._originals.setdefault(rkey, current)
        s, r = rel.subject, rel.resource
        skey = keys.subject_key(s.type, s.id, s.relation or "", r.type, rel.relation, r.id)
        self._txn.put(skey, value, db=env.sub)
        self._now[rkey] = value
        self._skeys[rkey] = skey

    def _adding(self) -> None:
        """This transaction is about to add data: refused if the store is full."""
        if self._full:
            raise self._env.full(self._env.data_bytes(self._txn), deleting=False)
        self._added = True

    def matches(self, filter: RelationshipFilter) -> bool:
        return has_match(self.reader(), filter)

    def delete_matching(
        self, filter: RelationshipFilter, limit: int | None = None, *, deadline: float | None = None
    ) -> tuple[int, bool]:
        try:
            doomed, complete = to_delete(self.reader(), filter, limit, deadline)
            saved = self._batch_limit
            self._batch_limit = None
            try:
                for done, rel in enumerate(doomed, 1):
                    self.apply(RelationshipUpdate(Operation.DELETE, rel))
                    if done % DEADLINE_STEPS == 0:
                        check_deadline(deadline)
            finally:
                self._batch_limit = saved
                self._updates -= len(doomed)
        except DeadlineExceeded as exc:
            self._spoilt = exc
            raise
        return len(doomed), complete

    def bulk_touch(self, rows: Sequence[BulkRow], defer: bool = False) -> None:
        """TOUCH every row; the lean path of the importer (see BulkLoader).

        Keys are encoded a chunk at a time, sorted, then inserted with ``putmulti`` in a child
        transaction that refuses to overwrite: if every key was new (an import into fresh
        ground), that is all. Otherwise the child is undone and the rows go one by one,
        comparing with what exists, like ``apply``.

        ``defer``: the objects index entries of the objects the fast path added to are not
        rebuilt at commit but marked large (stamped with this revision: readers then read the
        by-resource index, correct at every revision), and their keys gathered in ``deferred``
        for ``index_objects`` to rebuild once, after many batches (see ``BulkImport``): a
        random-order import touches most objects in every batch.
        """
        if not rows:
            return
        self._adding()
        env = self._env
        txn = self._txn
        rb = self._rb
        lengths = set(map(len, rows))
        # Plain: no caveat, no expiration (rows of six strings, or of eight with two Nones).
        plain = lengths == {6} or (lengths == {8} and set(map(_EXTRAS, rows)) == {(None, None)})
        strings: Sequence[Sequence[str]] = rows if lengths == {6} else list(map(_STRINGS, rows))  # type: ignore[assignment]
        rkeys = keys.encode_many(strings)
        skeys = keys.encode_many(list(map(_SUBJECT_ORDER, strings)))
        many = rkeys is not None and skeys is not None  # no escapes in these keys
        if rkeys is None or skeys is None:
            rkeys = [keys.encode(r) for r in strings]
            skeys = [keys.encode(_SUBJECT_ORDER(r)) for r in strings]
        values: list[bytes] | None = None
        shortened = keys.SHORTENED in b"".join(rkeys)
        if not plain or shortened:
            values = [
                rb + keys.encode_payload(
                    r[6] if len(r) == 8 else None,
                    r[7] if len(r) == 8 else None,
                    r[:6] if keys.is_shortened(k) else None,
                )
                for r, k in zip(rows, rkeys)
            ]

        try:
            self._rel_cursor = None  # no cursor of this transaction is used across a child's
            child = env.begin_child(txn)
            try:
                # In key order: LMDB then walks each B-tree once, page after page.
                added = child.cursor(env.rel).putmulti(
                    _sorted_items(rkeys, values, rb), dupdata=False, overwrite=False
                )[1]
                if added == len(rows):
                    child.cursor(env.sub).putmulti(_sorted_items(skeys, values, rb))
                    if defer:
                        prefixes = _object_prefixes(strings, rkeys, exact=many and values is None)
                        marker = rb + bytes((LARGE,))
                        child.cursor(env.objects).putmulti([(p, marker) for p in sorted(prefixes)])
                    child.commit()
                    if self._now:  # keys this transaction deleted one at a time, added again
                        for key in rkeys:
                            self._now.pop(key, None)
                    if defer:
                        self.deferred |= prefixes
                        self._deferred_count += len(rkeys)
                    else:
                        self._deferred_count = 0  # indexed at commit, as every key before them
                    self._fresh_keys.extend(rkeys)
                    self._fresh_values.extend([rb] * len(rkeys) if values is None else values)
                    return
            finally:
                child.abort()  # after commit, a no-op
            self._touch_each(rkeys, skeys, values)
        except lmdb.Error as exc:
            raise env.translate(exc, deleting=False) from exc

    def _touch_each(self, rkeys: list[bytes], skeys: list[bytes], values: list[bytes] | None) -> None:
        env = self._env
        txn = self._txn
        rb = self._rb
        rel_db, sub_db = env.rel, env.sub
        originals, now, written = self._originals, self._now, self._skeys
        for i, rkey in enumerate(rkeys):
            value = rb if values is None else values[i]
            existing = txn.get(rkey, None, rel_db)
            if existing is None:
                if rkey not in originals:
                    originals[rkey] = None
            elif existing[REVISION_SIZE:] == value[REVISION_SIZE:]:
                continue
            elif rkey not in originals:
                originals[rkey] = None if existing[:REVISION_SIZE] == rb else existing
            txn.put(rkey, value, db=rel_db)
            txn.put(skeys[i], value, db=sub_db)
            now[rkey] = value
            written[rkey] = skeys[i]

    # -- commit --------------------------------------------------------------------------------

    def commit(self) -> tuple[Revision, int]:
        """Write the net changes as one revision, or abort if there are none (or if a
        delete_matching ran past its deadline: then raise its error)."""
        env = self._env
        txn = self._txn
        rb = self._rb
        if self._spoilt is not None:
            txn.abort()
            raise self._spoilt
        try:
            entries: list[tuple[bytes, int, bytes]] = []
            moved = False
            originals, left, skeys = self._originals, self._now, self._skeys
            for rkey in sorted(originals):
                original = originals[rkey]
                now = left[rkey] if rkey in left else txn.get(rkey, None, env.rel)
                if now == original:
                    continue
                known = original if now is None else now
                assert known is not None
                skey = skeys.get(rkey) or keys.subject_key_of(rkey, known)
                if original is not None and now is not None and now[REVISION_SIZE:] == original[REVISION_SIZE:]:
                    txn.put(rkey, original, db=env.rel)
                    txn.put(skey, original, db=env.sub)
                    continue
                if original is not None:
                    txn.put(rkey + rb, original, db=env.relh)
                    txn.put(skey + rb, original, db=env.subh)
                    moved = True
                if now is None:
                    assert original is not None
                    entries.append((rkey, keys.DELETED, original))
                else:
                    entries.append((rkey, keys.CREATED if original is None else keys.TOUCHED, now))
            ops = bytes(e[1] for e in entries)
            rkeys = [e[0] for e in entries]
            versions = [e[2] for e in entries]
            fresh_keys, fresh_values = self._fresh_keys, self._fresh_values
            indexed = len(entries)  # the keys whose objects entries commit rewrites
            deferred = self._deferred_count  # the last fresh keys: their objects are marked
            if fresh_keys and originals:  # a later bulk call rewrote some: logged above
                kept = [p[0] not in originals for p in zip(fresh_keys, fresh_values)]
                deferred = sum(kept[len(kept) - deferred:]) if deferred else 0
                pairs = [p for p, keep in zip(zip(fresh_keys, fresh_values), kept) if keep]
                fresh_keys, fresh_values = [p[0] for p in pairs], [p[1] for p in pairs]
            if fresh_keys:  # bulk rows, in the order given
                ops += bytes((keys.CREATED,)) * len(fresh_keys)
                rkeys += fresh_keys
                versions += fresh_values
                indexed += len(fresh_keys) - deferred
            pending = self._pending_schema
            schema_changed = pending is not None and pending != self._texts()[1]
            counters = self._pending_counters
            counters_changed = counters is not None and counters != read_counters(txn, env.meta, self._head)
            guards = self._pending_guards
            guards_changed = guards is not None and guards != self._texts()[2]
            if not ops and not schema_changed and not counters_changed and not guards_changed:
                txn.abort()
                return Revision(self._head), 0
            if schema_changed or counters_changed or guards_changed:
                self._adding()
            revision = self._revision
            if indexed:
                self._index_objects(rkeys[:indexed], ops[:indexed], versions[:indexed])
            if schema_changed:
                assert pending is not None
                txn.put(rb, pending.encode(), db=env.schema)
            if counters_changed:
                assert counters is not None
                txn.put(counters_key(revision), encode_counters(counters), db=env.meta)
            if guards_changed:
                assert guards is not None
                txn.put(guards_key(revision), guards.encode(), db=env.meta)
            txn.put(rb, keys.encode_changes(schema_changed, ops, rkeys, versions), db=env.log,
                    append=True)
            previous = txn.get(_ENCODE_REV(self._head), None, env.revs)
            stamp = micros(env.clock())
            if previous is not None:
                stamp = max(stamp, keys.decode_revision(previous))
            txn.put(rb, _ENCODE_REV(stamp), db=env.revs)
            last_hist = revision if moved else self._last_hist
            write_state(txn, env.meta, (revision, self._horizon, last_hist))
            txn.commit()
            texts = env.texts_at
            if texts[0] == self._head:  # what this revision holds, known without a read
                env.texts_at = (
                    revision, pending if schema_changed else texts[1], guards if guards_changed else texts[2]
                )
        except lmdb.Error as exc:
            txn.abort()
            raise env.translate(exc, deleting=not self._added) from exc
        except BaseException:
            txn.abort()
            raise
        return Revision(revision), len(ops)

    def _index_objects(self, rkeys: Sequence[bytes], ops: bytes, versions: Sequence[bytes]) -> None:
        """Rewrite the objects index entry of every object these keys (changed by ``ops``,
        their versions now or, deleted, before) belong to, stamped with this revision, in key
        order. A large object that lost nothing stays large: only its stamp moves. A small one
        whose changes are all whole-subject relationships added or deleted has them edited
        into its entry (``edited_value``); any other is rebuilt from its current
        relationships (one short scan)."""
        txn = self._txn
        env = self._env
        cur = None  # a by-resource cursor, for the entries rebuilt
        objects_db = env.objects
        get = txn.get
        put = txn.cursor(objects_db).put
        rb = self._rb
        changed: dict[bytes, list[int]] = {}
        for index, key in enumerate(rkeys):
            prefix = object_prefix(key)
            found = changed.get(prefix)
            if found is None:
                changed[prefix] = [index]
            else:
                found.append(index)
        for prefix in sorted(changed):
            known = get(prefix, None, objects_db)
            if known is not None:
                mine = changed[prefix]
                if known[KIND_OFFSET] == LARGE:
                    if all(ops[i] != keys.DELETED for i in mine):
                        put(prefix, rb + known[REVISION_SIZE:])  # a new stamp
                        continue
                else:
                    value = edited_value(known, rb, len(prefix), [(ops[i], rkeys[i], versions[i]) for i in mine])
                    if value is not None:
                        put(prefix, value)
                        continue
            if cur is None:
                cur = txn.cursor(env.rel)
            put(prefix, object_value(rb, scan(cur, prefix, SMALL_OBJECT), len(prefix)))

    def abort(self) -> None:
        self._txn.abort()


class LmdbTransactionContext:
    """``with`` block of one write transaction (see TupleStore.transaction): holds
    ``env.write_lock`` throughout, commits on a clean exit and aborts on an exception, then
    calls ``on_commit`` if a revision was committed."""

    def __init__(self, env: LmdbEnv, batch_limit: int | None, on_commit: Callable[[], None]) -> None:
        self._env = env
        self._batch_limit = batch_limit
        self._on_commit = on_commit
        self._tx: LmdbTransaction | None = None
        self._head = 0
        self.revision: Revision | None = None
        self.changed = 0

    def __enter__(self) -> LmdbTransaction:
        env = self._env
        env.write_lock.acquire()
        try:
            txn, state = env.begin_write()
            try:
                full = env.is_full(txn)
            except lmdb.Error as exc:
                txn.abort()
                raise env.translate(exc) from exc
        except BaseException:
            env.write_lock.release()
            raise
        self._head = state[0]
        self._tx = LmdbTransaction(env, txn, state, self._batch_limit, full)
        return self._tx

    def __exit__(self, *exc: object) -> None:
        tx = self._tx
        assert tx is not None
        self._tx = None
        committed = False
        try:
            if exc[0] is not None:
                tx.abort()
                return
            self.revision, self.changed = tx.commit()
            committed = self.revision.value != self._head
        finally:
            self._env.write_lock.release()
        if committed:
            self._on_commit()


def _sorted_items(keys_: list[bytes], values: list[bytes] | None, version: bytes) -> Iterable[tuple[bytes, bytes]]:
    """(key, value) pairs in key order (equal keys in their given order: the later wins)."""
    if values is None:
        return zip(sorted(keys_), itertools.repeat(version))
    return sorted(zip(keys_, values), key=_KEY)


def _object_prefixes(strings: Sequence[Sequence[str]], rkeys: list[bytes], exact: bool) -> set[bytes]:
    """The objects (keys in the objects index) of these rows, whose by-resource keys are
    ``rkeys``; ``exact``: the keys hold the strings as they are (no escape, none shortened)."""
    if exact:  # no string holds a newline: one join, one encode, one split
        text = "\x00\n".join(map("\x00".join, set(map(_OBJECT, strings)))) + "\x00"
        return set(text.encode().split(b"\n"))
    return {k[: k.index(b"\x00", k.index(b"\x00") + 1) + 1] for k in rkeys}


def bulk_touch(
    env: LmdbEnv, rows: Sequence[BulkRow], on_commit: Callable[[], None], deferred: set[bytes] | None = None
) -> tuple[Revision, int]:
    """See base.BulkLoader; on a full map, grows it (if max_map_size allows) and retries; then
    releases the pages the batch touched (``LmdbEnv.release_memory``). With ``deferred``, the
    objects index entries of new rows' objects are marked large and their keys added to it
    (see ``LmdbTransaction.bulk_touch`` and ``BulkImport``)."""
    while True:
        ctx = LmdbTransactionContext(env, None, on_commit)
        try:
            with ctx as tx:
                tx.bulk_touch(rows, defer=deferred is not None)
        except StoreFull as exc:
            # A map that filled may grow (doubling up to max_map_size, then grow says no); a
            # store refusing to add data (full, or its disk) would only refuse again.
            if not isinstance(exc.__cause__, lmdb.MapFullError) or not env.grow(force=True):
                raise
            continue
        if deferred is not None:
            deferred |= tx.deferred
        env.release_memory()
        assert ctx.revision is not None
        return ctx.revision, ctx.changed


def index_objects(env: LmdbEnv, prefixes: Iterable[bytes] | None = None, since: int = 0, chunk: int = 50_000) -> None:
    """Rebuild the objects index entries marked large of these objects (keys in the objects
    index), or with ``prefixes`` None of every object whose entry is marked large and stamped
    at ``since`` or later (one walk over the objects index: no set of keys held), from their
    current relationships, in write transactions of ``chunk`` entries that record no revision:
    each is stamped with the head it was read at (an entry says the object has not changed
    since its stamp; a reader at an older revision reads the by-resource index, as it did with
    the mark). An entry a later write rewrote is left as it is; one still large after the
    rebuild (a large object) stays large. The pages each transaction touched leave this
    process's resident memory after it (``LmdbEnv.release_memory``)."""
    todo = iter(sorted(prefixes)) if prefixes is not None else None
    after: bytes | None = None  # the walk: the last objects key looked at
    while True:
        if todo is not None:
            batch = list(itertools.islice(todo, chunk))
        else:
            batch, after = _marked(env, since, after, chunk)
        if batch:
            _rebuild(env, batch)
            env.release_memory()
        if len(batch) < chunk and (todo is not None or after is None):
            return


def _marked(env: LmdbEnv, since: int, after: bytes | None, chunk: int) -> tuple[list[bytes], bytes | None]:
    """The next ``chunk`` objects keys past ``after`` whose entries are marked large at
    ``since`` or later, and the last key looked at (None at the end of the index)."""
    low = _ENCODE_REV(since)

    def walk(txn: lmdb.Transaction[bytes]) -> tuple[list[bytes], bytes | None]:
        found: list[bytes] = []
        cur = txn.cursor(env.objects)
        if not (cur.first() if after is None else cur.set_range(after)):
            return found, None
        for key, value in cur:
            if key == after:
                continue
            if value[KIND_OFFSET] == LARGE and value[:REVISION_SIZE] >= low:
                found.append(key)
                if len(found) >= chunk:
                    return found, key
        return found, None

    return env.read(walk)


def _rebuild(env: LmdbEnv, prefixes: Sequence[bytes]) -> None:
    """One write transaction of ``index_objects``: these entries (sorted), if still marked."""
    with env.write_lock:
        while True:
            txn, state = env.begin_write()
            try:
                rb = _ENCODE_REV(state[0])
                objects_db = env.objects
                get = txn.get
                put = txn.cursor(objects_db).put
                cur = txn.cursor(env.rel)
                for prefix in prefixes:
                    known = get(prefix, None, objects_db)
                    if known is not None and known[KIND_OFFSET] == LARGE:
                        put(prefix, object_value(rb, scan(cur, prefix, SMALL_OBJECT), len(prefix)))
                txn.commit()
                return
            except lmdb.MapFullError as exc:
                txn.abort()
                if not env.grow(force=True):
                    raise env.translate(exc) from exc
            except lmdb.Error as exc:
                txn.abort()
                raise env.translate(exc) from exc
            except BaseException:
                txn.abort()
                raise


class BulkImport:
    """The bulk path for many batches (``LmdbStore.bulk_import``): ``bulk_touch`` as the
    store's, but the objects index entries of the objects the batches add to are marked large
    (readers use the by-resource index for them meanwhile) and rebuilt once each, at the end
    (``__exit__``). A random-order import touches most objects in every batch: rebuilding
    their entries per batch cost more than the rest of the import. The keys of the objects
    marked are kept up to ``limit``; past it the session keeps only the revision of its first
    mark, and the end walks the objects index for the entries marked since (memory stays
    bounded, and each object is still rebuilt once). If the process dies first, the marks stay:
    answers stay right, those objects are read the slower way until a write rewrites their
    entries."""

    def __init__(
        self, env: LmdbEnv, on_commit: Callable[[], None], limit: int = 100_000, chunk: int = 50_000
    ) -> None:
        self._env = env
        self._on_commit = on_commit
        self._limit = limit
        self._chunk = chunk  # entries rebuilt per transaction at the end
        self._pending: set[bytes] | None = set()  # None: too many; walk from ``_since``
        self._since: int | None = None  # the revision of the first mark not yet rebuilt

    def head_revision(self) -> Revision:
        env = self._env
        return Revision(env.read(lambda txn: env.read_state(txn)[0]))

    def bulk_touch(self, rows: Sequence[BulkRow]) -> tuple[Revision, int]:
        """See base.BulkLoader."""
        marked: set[bytes] = set()
        result = bulk_touch(self._env, rows, self._on_commit, marked)
        if marked:
            if self._since is None:
                self._since = result[0].value
            if self._pending is not None:
                self._pending |= marked
                if len(self._pending) > self._limit:
                    self._pending = None
        return result

    def flush(self) -> None:
        """Rebuild the entries marked so far."""
        pending, since = self._pending, self._since
        self._pending, self._since = set(), None
        if since is not None:
            index_objects(self._env, pending, since, self._chunk)

    def __enter__(self) -> BulkImport:
        return self

    def sync(self) -> None:
        """Flush what was committed to disk (a store opened with ``sync=False`` commits without:
        an import is then durable once this returns)."""
        env = self._env
        try:
            env.lmdb_env.sync(True)
        except lmdb.Error as exc:
            raise env.translate(exc) from exc

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.flush()
            self.sync()
            return
        try:  # the batches committed stay: index them if the store lets us, else leave the marks
            self.flush()
            self.sync()
        except RelEngineError:
            pass


__all__ = ["BulkImport", "LmdbTransaction", "LmdbTransactionContext", "bulk_touch", "index_objects"]
