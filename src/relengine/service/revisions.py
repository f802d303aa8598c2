"""Which revision each read runs at: the consistency modes, and the recent revision that
minimize_latency reuses (quantization) so that cached answers keep hitting; the Readers that
checks at that revision pass on to each other; with read replicas, which reads a replica may
answer."""

from __future__ import annotations

import threading
import time
import weakref
from typing import Callable, Final

from ..errors import InvalidArgument, RevisionUnavailable
from ..model import Consistency, Revision
from ..storage.base import Reader, ReplicaReads, TupleStore


Quantized = tuple[Revision, float]
"""The revision minimize_latency reuses and when it was chosen (``time.monotonic()``); a new
tuple each time one is chosen, so that its identity names one period of reuse."""

MAX_IDLE_READERS: Final = 32
"""Readers kept open between checks at most: one per thread that checks at once (the server's
default ``--threads``); a Reader holds one of the store's reader slots."""


class Revisions:
    """Hands out snapshots of ``store`` at the revision each consistency asks for.

    minimize_latency reuses the revision it chose last for ``quantization_seconds``, so that
    answers cached at that revision keep being found; a write through the Engine
    (``committed``, ``forget``) ends the reuse, so that its next read sees the write.
    at_least_as_fresh takes the reused revision when it is fresh enough, else head.
    Thread-safe: the reused revision is one tuple, swapped whole; idle Readers are taken from
    and put back on a list (``pop`` and ``append`` are atomic), each used by one thread at a time.

    With read replicas (a store that is ``ReplicaReads``), a replica answers whenever it is
    fresh enough, and the primary otherwise; never an older revision than the mode allows:

    - at_exact_snapshot and the reused revision: ``store.snapshot(R)`` reads R on a replica
      that has reached R (the store decides);
    - at_least_as_fresh R: the reused revision if it is R or newer, else a replica's newest
      revision if it is R or newer, else the primary as without replicas;
    - minimize_latency choosing afresh: a replica's newest revision if it is no older than the
      last revision written through this Engine and was still the primary's newest less than
      ``quantization_seconds`` ago (it is then reused only for the rest of that window, so a
      minimize_latency answer is never staler than the window, as without replicas); else
      the primary's head;
    - fully_consistent: the primary's head.
    """

    def __init__(
        self, store: TupleStore, quantization_seconds: float, on_write: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.seconds = quantization_seconds
        self._quantized: Quantized | None = None
        self._on_write = on_write  # told of every write through the Engine (the cache's carried answers end)
        self._replicas = store if isinstance(store, ReplicaReads) else None
        # The newest revision written through this Engine (None: unknown, after an import): a
        # replica behind it does not answer minimize_latency (a write is seen by the next read).
        self._floor: Revision | None = Revision(0)
        self._floor_lock = threading.Lock()
        # Readers at the reused revision that checks gave back, with the period they belong to.
        self._idle: list[tuple[Reader, Quantized]] = []
        self._reusable = bool(getattr(store, "reusable_readers", False))
        self._expiry: Quantized | None = None  # the period whose end a timer waits for
        # The timer pending (None once it has fired) and when it fires (``time.monotonic()``):
        # one serves every period that ends after it (it schedules the next as it fires), so a
        # write, which starts a new period, starts no thread.
        self._timer: threading.Timer | None = None
        self._due = 0.0
        self._timer_lock = threading.Lock()

    def snapshot(self, consistency: Consistency | None = None) -> Reader:
        """A Reader at the revision ``consistency`` asks for (default: minimize_latency).

        Raises RevisionUnavailable for at_least_as_fresh of a revision newer than head (and,
        from the store, for an exact snapshot it can no longer see), InvalidArgument for an
        unknown mode.
        """
        mode = consistency.mode if consistency is not None else "minimize_latency"
        if mode == "minimize_latency":
            recent = self.recent()
            if recent is not None:
                return self.store.snapshot(recent)
            if self._replicas is not None:
                fresh = self._fresh_replica()
                if fresh is not None:
                    return fresh
            reader = self.store.snapshot()
            self._quantized = (reader.revision, time.monotonic())
            if self._replicas is not None:
                self._chose_head(reader.revision)
            return reader
        if mode == "fully_consistent":
            return self.store.snapshot()
        if mode == "at_exact_snapshot":
            assert consistency is not None and consistency.revision is not None
            return self.store.snapshot(consistency.revision)
        if mode == "at_least_as_fresh":
            assert consistency is not None and consistency.revision is not None
            wanted = consistency.revision
            if self._replicas is not None:
                recent = self.recent()
                if recent is not None and recent >= wanted:
                    return self.store.snapshot(recent)
                on_replica = self._replicas.replica_snapshot(wanted)
                if on_replica is not None:
                    return on_replica[0]
            head = self.store.head_revision()
            if wanted > head:
                raise RevisionUnavailable(
                    f"revision {wanted} is newer than the store's newest revision {head}",
                )
            chosen = self._quantized_revision(head)
            return self.store.snapshot(chosen if chosen >= wanted else head)
        raise InvalidArgument(f"unknown consistency mode {mode!r}")

    def lease(self) -> tuple[Reader, Quantized | None]:
        """A Reader for one request at the revision minimize_latency reads now, and the period
        of reuse it belongs to: hand both back with ``give_back`` when the request is done.

        Where the store allows it (``reusable_readers``: an LMDB read transaction can pass from
        one thread to the next, and costs a reader slot while open), the Reader is one that an
        earlier request gave back in this period: opening one (a read transaction, the store's
        state, the Reader) is a fifth of a small check, and its read of the state lets the GIL
        go once more (bench: threads, uncached_check). A Reader is open at most while its
        period lasts (``quantization_seconds``) and until the next request after it, and no
        longer than the next write through the Engine; ``close_idle`` closes them all now.
        """
        if not self._reusable:  # a plain minimize_latency snapshot (read replicas are chosen there)
            return self.snapshot(), None
        quantized = self._quantized
        if quantized is None or time.monotonic() - quantized[1] >= self.seconds:
            reader = self.store.snapshot()
            quantized = self._quantized = (reader.revision, time.monotonic())
            return reader, quantized
        idle = self._idle
        while idle:
            try:
                reader, period = idle.pop()
            except IndexError:  # another thread took the last one
                break
            if period is quantized:
                return reader, quantized
            reader.close()  # of an earlier period, as are those left: close them now
            self.close_idle()
        return self.store.snapshot(quantized[0]), quantized

    def give_back(self, reader: Reader, period: Quantized | None) -> None:
        """Keep ``reader`` (from ``lease``) for the next request of its period, or close it."""
        if period is not None and period is self._quantized and self._reusable and len(self._idle) < MAX_IDLE_READERS:
            self._idle.append((reader, period))  # before the timer is asked for: see ``_expire``
            if self._expiry is not period:  # the first kept in this period: close them when it ends
                self._expiry = period
                self._wake_by(period[1] + self.seconds)
        else:
            reader.close()

    def close_idle(self, *, stop: bool = False) -> None:
        """Close the Readers kept between requests (a write, housekeeping); ``stop``: the
        Engine is closing, so the timer goes too (else it stays for the periods to come)."""
        self._expiry = None
        if stop:
            with self._timer_lock:
                timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
        self._close_idle(lambda period: True)

    def _wake_by(self, due: float) -> None:
        """``_expire`` runs by ``due`` (a ``time.monotonic()`` instant): on the timer pending if
        it fires by then (as it fires it asks for the next), else on a new daemon timer (the
        one before cancelled), which holds this object only weakly, so that an Engine dropped
        without ``close`` goes."""
        with self._timer_lock:
            if self._timer is not None and self._due <= due:
                return
            timer = threading.Timer(max(0.0, due - time.monotonic()), _expire_weakly, (weakref.ref(self),))
            timer.daemon = True
            previous, self._timer, self._due = self._timer, timer, due
            if previous is not None:
                previous.cancel()
            timer.start()

    def _expire(self) -> None:
        """Close the kept Readers whose period has ended, though no request came to do it, and
        ask for the end of the period now if Readers of it are kept. (A request that keeps one
        meanwhile put it on the list before asking for the timer, so either this finds it or
        that request finds no timer pending and starts one.)"""
        with self._timer_lock:
            if self._timer is threading.current_thread():
                self._timer = None  # fired
        current, now = self._quantized, time.monotonic()
        self._close_idle(lambda period: period is not current or now - period[1] >= self.seconds)
        if self._idle and current is not None:
            self._wake_by(current[1] + self.seconds)

    def _close_idle(self, ended: Callable[[Quantized], bool]) -> None:
        # Each is popped, so that it belongs to exactly one of this and a ``lease`` popping too.
        idle, self._idle = self._idle, []
        while idle:
            try:
                reader, period = idle.pop()
            except IndexError:
                return
            if ended(period):
                reader.close()
            else:
                self._idle.append((reader, period))

    def recent(self) -> Revision | None:
        """The revision minimize_latency reuses, if it was chosen less than
        ``quantization_seconds`` ago (so that cached answers keep hitting); else None."""
        quantized = self._quantized
        if quantized is not None and time.monotonic() - quantized[1] < self.seconds:
            return quantized[0]
        return None

    def committed(self, revision: Revision | None) -> Revision:
        """After a write through this Engine, its next minimize_latency read sees the write."""
        assert revision is not None
        self._quantized = None
        if self._replicas is not None:
            with self._floor_lock:
                if self._floor is not None and self._floor < revision:
                    self._floor = revision
        self.close_idle()
        if self._on_write is not None:
            self._on_write()
        return revision

    def forget(self) -> None:
        """After an import (which wrote past the Engine's own writes): choose afresh next time."""
        self._quantized = None
        self._floor = None  # the next choice reads the primary's head
        self.close_idle()
        if self._on_write is not None:
            self._on_write()

    def _fresh_replica(self) -> Reader | None:
        """For minimize_latency choosing afresh: a replica's newest revision if it is no older
        than this Engine's last write and was the primary's newest within the quantization
        window (reused then only for the rest of the window); None: read the primary."""
        assert self._replicas is not None
        floor = self._floor
        if floor is None:
            return None
        found = self._replicas.replica_snapshot(floor, within=self.seconds)
        if found is None:
            return None
        reader, age = found
        self._quantized = (reader.revision, time.monotonic() - age)
        return reader

    def _chose_head(self, revision: Revision) -> None:
        """minimize_latency chose the primary's head: replicas behind it no longer answer it."""
        with self._floor_lock:
            if self._floor is None or self._floor < revision:
                self._floor = revision

    def _quantized_revision(self, head: Revision) -> Revision:
        """The recent revision if there is one no newer than ``head``; else ``head``, from now on."""
        recent = self.recent()
        if recent is not None and recent <= head:
            return recent
        self._quantized = (head, time.monotonic())
        return head


def _expire_weakly(ref: weakref.ref[Revisions]) -> None:
    revisions = ref()
    if revisions is not None:
        revisions._expire()
