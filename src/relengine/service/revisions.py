"""Which revision each read runs at: the consistency modes, and the recent revision that
minimize_latency reuses (quantization) so that cached answers keep hitting."""

from __future__ import annotations

import time
from typing import Callable

from ..errors import InvalidArgument, RevisionUnavailable
from ..model import Consistency, Revision
from ..storage.base import Reader, TupleStore


class Revisions:
    """Hands out snapshots of ``store`` at the revision each consistency asks for.

    minimize_latency reuses the revision it chose last for ``quantization_seconds``, so that
    answers cached at that revision keep being found; a write through the Engine
    (``committed``, ``forget``) ends the reuse, so that its next read sees the write.
    at_least_as_fresh takes the reused revision when it is fresh enough, else head.
    Thread-safe: the reused revision is one tuple, swapped whole.
    """

    def __init__(
        self, store: TupleStore, quantization_seconds: float, on_write: Callable[[], None] | None = None
    ) -> None:
        self.store = store
        self.seconds = quantization_seconds
        self._quantized: tuple[Revision, float] | None = None
        self._on_write = on_write  # told of every write through the Engine (the cache's carried answers end)

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
            reader = self.store.snapshot()
            self._quantized = (reader.revision, time.monotonic())
            return reader
        if mode == "fully_consistent":
            return self.store.snapshot()
        if mode == "at_exact_snapshot":
            assert consistency is not None and consistency.revision is not None
            return self.store.snapshot(consistency.revision)
        if mode == "at_least_as_fresh":
            assert consistency is not None and consistency.revision is not None
            wanted = consistency.revision
            head = self.store.head_revision()
            if wanted > head:
                raise RevisionUnavailable(
                    f"revision {wanted} is newer than the store's newest revision {head}",
                )
            chosen = self._quantized_revision(head)
            return self.store.snapshot(chosen if chosen >= wanted else head)
        raise InvalidArgument(f"unknown consistency mode {mode!r}")

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
        if self._on_write is not None:
            self._on_write()
        return revision

    def forget(self) -> None:
        """After an import (which wrote past the Engine's own writes): choose afresh next time."""
        self._quantized = None
        if self._on_write is not None:
            self._on_write()

    def _quantized_revision(self, head: Revision) -> Revision:
        """The recent revision if there is one no newer than ``head``; else ``head``, from now on."""
        recent = self.recent()
        if recent is not None and recent <= head:
            return recent
        self._quantized = (head, time.monotonic())
        return head
