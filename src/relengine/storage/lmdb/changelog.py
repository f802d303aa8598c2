"""The change log of an LMDB store: watch, and garbage collection in its two halves.

The changelog (``log``: revision -> that revision's changes, see ``keys``) is what ``watch``
lists and the queue garbage collection works through: every history version was superseded by
a change logged at its deleted revision, so collecting up to a horizon means walking the log up
to it, deleting the history versions it names, then the log entries, the commit stamps and the
schema versions no readable revision needs.

``ChangeLog`` is the store-level half: it wakes watchers after commits, runs a collection when
one is due, and cuts a collection into batches, each its own write transaction taken under
``env.write_lock``. ``collect_batch`` is the half inside one such transaction.
"""

from __future__ import annotations

import threading
import time
from typing import Final, Iterator

import lmdb

from ...model import Revision
from ...results import Change, Operation
from .. import keys, objects
from ..base import GcResult, check_watchable, gc_cutoff, is_gc_due, too_old
from ..keys import REVISION_SIZE, object_prefix
from .env import LmdbEnv
from .format import COUNTERS_PREFIX, GUARDS_PREFIX, State, read_state, write_state
from .items import relationship_of

_ENCODE_REV: Final = keys.encode_revision
_GC_BATCH: Final = 200_000  # changelog entries per collecting write transaction
_WATCH_BATCH: Final = 100  # revisions per read transaction of a watch


class ChangeLog:
    """Watch and GC of one store (see the module docstring); shared by its threads.

    ``gc_interval``: seconds between automatic collections after commits (None: only ``gc``);
    ``poll_interval``: how often a watch looks for commits made by other processes (commits of
    this process wake it at once).
    """

    def __init__(self, env: LmdbEnv, *, gc_interval: float | None, poll_interval: float) -> None:
        self._env = env
        self._gc_interval = gc_interval
        self._poll_interval = poll_interval
        self._committed = threading.Condition()
        self._last_gc = env.clock()

    def watch(self, after: Revision, *, timeout: float | None = None) -> Iterator[Change]:
        """See TupleStore.watch."""
        env = self._env
        head, horizon, _ = env.read(lambda txn: read_state(txn, env.meta))
        check_watchable(after.value, head, horizon, env.gc_window)
        return self._watch(after.value, timeout)

    def _watch(self, after: int, timeout: float | None) -> Iterator[Change]:
        position = after
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            batch, position = self._read_changes(position)
            if batch:
                yield from batch
                deadline = None if timeout is None else time.monotonic() + timeout
                continue
            wait = self._poll_interval
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                wait = min(wait, remaining)
            with self._committed:
                self._committed.wait(wait)

    def _read_changes(self, after: int, limit: int = _WATCH_BATCH) -> tuple[list[Change], int]:
        """The changes of up to ``limit`` revisions after ``after``, and the last revision read."""
        env = self._env

        def entries(txn: lmdb.Transaction[bytes]) -> list[tuple[bytes, bytes]]:
            _, horizon, _ = read_state(txn, env.meta)
            if horizon > after:
                raise too_old(after, env.gc_window)
            cur = txn.cursor(env.log)
            raw: list[tuple[bytes, bytes]] = []
            if cur.set_range(_ENCODE_REV(after + 1)):
                for item in cur.iternext():
                    raw.append(item)
                    if len(raw) >= limit:
                        break
            return raw

        raw = env.read(entries)
        changes: list[Change] = []
        for key, value in raw:
            after = keys.decode_revision(key)
            changes.extend(_decode_changes(after, value))
        return changes, after

    def committed(self) -> None:
        """After a commit of this process: wake the watchers, collect if a collection is due."""
        with self._committed:
            self._committed.notify_all()
        if self._gc_interval is None:
            return
        env = self._env
        now = env.clock()
        if is_gc_due(self._gc_interval, self._last_gc, now):
            with env.write_lock:
                if not env.closed:
                    self._collect(now)

    def closed(self) -> None:
        """The store closed: wake the watchers (their next read raises Unavailable)."""
        with self._committed:
            self._committed.notify_all()

    def gc(self, *, now: float | None = None) -> GcResult:
        """See TupleStore.gc."""
        env = self._env
        with env.write_lock:
            env.check_open()
            return self._collect(env.clock() if now is None else now)

    def _collect(self, now: float) -> GcResult:
        """Collect in batches of about _GC_BATCH changelog entries, each its own write
        transaction, moving the horizon one fully collected revision at a time. The caller holds
        ``env.write_lock``."""
        env = self._env
        self._last_gc = now
        env.reader_check()
        cutoff = gc_cutoff(now, env.gc_window)
        totals = [0, 0, 0]
        while True:
            txn, state = env.begin_write()
            try:
                done, horizon = collect_batch(env, txn, state, cutoff, _GC_BATCH, totals)
                env.commit(txn, deleting=True)
            except lmdb.Error as exc:
                txn.abort()
                raise env.translate(exc, deleting=True) from exc
            except BaseException:
                txn.abort()
                raise
            if done:
                return GcResult(Revision(horizon), totals[0], totals[1], totals[2])


def collect_batch(
    env: LmdbEnv, txn: lmdb.Transaction[bytes], state: State, cutoff: int, budget: int, totals: list[int]
) -> tuple[bool, int]:
    """In the write transaction ``txn`` begun from ``state``: advance the horizon towards the
    newest revision committed at or before ``cutoff`` (epoch micros), collecting at most about
    ``budget`` changelog entries; returns (whether the target was reached, the new horizon).
    ``totals`` accumulates the GcResult counts. Records no revision."""
    head, horizon, last_hist = state
    target = horizon
    cur = txn.cursor(env.revs)
    if cur.set_range(_ENCODE_REV(target + 1)):
        for key, value in cur.iternext():
            revision = keys.decode_revision(key)
            if revision > head or keys.decode_revision(value) > cutoff:
                break
            target = revision
    if target == horizon:
        return True, horizon
    log = txn.cursor(env.log)
    relh, subh = env.relh, env.subh
    emptied: set[bytes] = set()  # objects that lost relationships: their entries may be empty
    spent = 0
    stopped = False
    while log.first():
        revision = keys.decode_revision(log.key())
        if revision > target:
            break
        if spent >= budget:
            stopped = True
            break
        schema_changed, ops, rkeys, versions = keys.decode_changes(log.value())
        suffix = _ENCODE_REV(revision)
        for op, rkey, version in zip(ops, rkeys, versions):
            if op != keys.CREATED and txn.delete(rkey + suffix, db=relh):
                txn.delete(keys.subject_key_of(rkey, version) + suffix, db=subh)
                totals[0] += 1
            if op == keys.DELETED:
                emptied.add(object_prefix(rkey))
        log.delete()
        totals[1] += len(ops) + schema_changed
        spent += len(ops) + 1
        horizon = revision
    if not stopped:
        horizon = target
    horizon_rb = _ENCODE_REV(horizon)
    for prefix in emptied:
        # An empty entry no readable revision predates says nothing a missing one does not.
        entry = txn.get(prefix, None, env.objects)
        if entry is not None and entry[REVISION_SIZE:] == objects.EMPTY and entry[:REVISION_SIZE] <= horizon_rb:
            txn.delete(prefix, db=env.objects)
    revs = txn.cursor(env.revs)
    while revs.first() and keys.decode_revision(revs.key()) < horizon:
        revs.delete()
        totals[2] += 1
    schema_revisions = list(txn.cursor(env.schema).iternext(values=False))
    older = [k for k in schema_revisions if keys.decode_revision(k) <= horizon]
    for key in older[:-1]:
        txn.delete(key, db=env.schema)
    for prefix in (COUNTERS_PREFIX, GUARDS_PREFIX):
        versioned = []
        meta = txn.cursor(env.meta)
        if meta.set_range(prefix):
            for key in meta.iternext(values=False):
                if not key.startswith(prefix):
                    break
                versioned.append(key)
        older = [k for k in versioned if keys.decode_revision(k[len(prefix):]) <= horizon]
        for key in older[:-1]:
            txn.delete(key, db=env.meta)
    write_state(txn, env.meta, (head, horizon, last_hist))
    return horizon == target, horizon


def _decode_changes(revision: int, value: bytes) -> Iterator[Change]:
    rev = Revision(revision)
    schema_changed, ops, rkeys, versions = keys.decode_changes(value)
    if schema_changed:
        yield Change(rev, Operation.TOUCH, None, schema_changed=True)
    for op, rkey, version in zip(ops, rkeys, versions):
        operation = Operation.DELETE if op == keys.DELETED else Operation.TOUCH
        yield Change(rev, operation, relationship_of(rkey, version))


__all__ = ["ChangeLog", "collect_batch"]
