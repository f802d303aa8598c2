"""The Dispatcher seam: every sub-question of a check goes through one, so that caching and
the depth budget apply at every level (SpiceDB's dispatchers, OpenFGA's resolver chain).

Answers are three-valued. A sub-question returns ``HAS`` or ``NO`` (the two Permissionship
members), or a ``Conditional`` naming the caveat parameters it would need to decide.

The contract every Dispatcher keeps (``check.LocalChecker`` answers, ``cache.CachingDispatcher``
wraps it; ``build.build_checker`` composes them, once per request):

Depth
    ``depth`` is the budget left to the sub-question. Whoever asks a further sub-question passes
    ``depth - 1``; the dispatcher that answers raises MaxDepthExceeded when it is below 0. A
    wrapping dispatcher passes ``depth`` on unchanged. The top of a check starts at
    ``EngineConfig.max_depth``; lookups and expand count their hops against the same budget.

Deadline
    A request's deadline is a ``time.monotonic()`` instant (None: none). The answering
    dispatcher looks at the clock once per dispatch and raises DeadlineExceeded past it;
    lookups and expand look every few hundred steps of their loops (``Deadline``), and there
    also ask whether the caller has gone (``cancelled``: a gRPC client that cancelled or
    disconnected), raising Cancelled. Nothing is cached from a request that ran out of time
    or was cancelled: the error unwinds past every store.

Caching
    A dispatcher may answer from a cache instead of asking its inner one. A cached answer is
    the answer at the request's revision, for its caveat context (``cache.cache_key``), so it
    never goes stale. Answers a data cycle cut short, or that rest on a relationship that will
    expire, are never stored (``cache.Taint``).

Threads
    A dispatcher serves one request at one revision, with one caveat context, on one thread;
    it is built per request and dropped after it. Only what it shares (the CheckCache, the
    per-schema plan) is shared between threads, and those are safe to share.

Errors
    Only ``relengine.errors``: MaxDepthExceeded, DeadlineExceeded, Cancelled, Unimplemented (a caveat that
    cannot be evaluated), the store's errors (Unavailable, StorageError, RevisionUnavailable)
    as the Reader raised them. A dispatcher never catches them and never returns None.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Final, Iterable, Iterator, Protocol, TypeVar, Union

from ..errors import Cancelled, DeadlineExceeded
from ..model import SubjectRef
from ..results import CheckResult, Permissionship

T = TypeVar("T")
NO = Permissionship.NO_PERMISSION
HAS = Permissionship.HAS_PERMISSION


@dataclass(frozen=True, slots=True)
class Conditional:
    """Neither yes nor no: the answer depends on the caveat parameters in ``missing``."""

    missing: frozenset[str]

    permissionship = Permissionship.CONDITIONAL_PERMISSION


Result = Union[Permissionship, Conditional]


def either(a: Result | None, b: Result) -> Result:
    """Union of two answers: yes if either is yes; conditional if either is; else no."""
    if a is None or a is NO or b is HAS:
        return b
    if b is NO or a is HAS:
        return a
    assert isinstance(a, Conditional) and isinstance(b, Conditional)
    return Conditional(a.missing | b.missing)


def both(a: Result, b: Result) -> Result:
    """Intersection of two answers: no if either is no; yes if both are; else conditional."""
    if a is NO or b is NO:
        return NO
    if a is HAS:
        return b
    if b is HAS:
        return a
    assert isinstance(a, Conditional) and isinstance(b, Conditional)
    return Conditional(a.missing | b.missing)


def but_not(a: Result, b: Result) -> Result:
    """Exclusion ``a - b``."""
    if a is NO or b is HAS:
        return NO
    if b is NO:
        return a
    assert isinstance(b, Conditional)
    missing = b.missing | (a.missing if isinstance(a, Conditional) else frozenset())
    return Conditional(missing)


def to_check_result(result: Result) -> CheckResult:
    """The public form of an answer (shared for the plain ones)."""
    if isinstance(result, Conditional):
        return CheckResult(Permissionship.CONDITIONAL_PERMISSION, tuple(sorted(result.missing)))
    return _PLAIN[result]


_PLAIN = {p: CheckResult(p) for p in (Permissionship.NO_PERMISSION, Permissionship.HAS_PERMISSION)}


class Dispatcher(Protocol):
    """Answers one sub-question: does ``subject`` have ``relation`` on ``type:id``?

    ``depth`` is the remaining budget (the callee raises MaxDepthExceeded below 0). See the
    module docstring for the whole contract: depth, deadline, caching, threads and errors.
    """

    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Result: ...


STEPS_PER_CLOCK: Final = 256
"""Long loops (lookups, expand, read, import, bulk check) look at the clock, and ask whether
the caller has gone, once per this many steps: a step is a store read or a relationship read
from one, so a few hundred take a millisecond or so, and the look (about 50 ns for the clock,
about a microsecond for a gRPC call's state) is lost in them."""


class Deadline:
    """A request's deadline and cancellation, for walks and loops that are not one dispatch
    per step (lookups, expand, read, import, bulk check).

    ``at`` is a ``time.monotonic()`` instant, or None for no deadline. ``cancelled``, if given,
    says whether the caller has gone (the server passes one that asks the gRPC call; it must be
    cheap and safe to call from the request's thread). Long loops call ``step()`` per step and
    read the store through ``rows()``; the first step looks, then every ``STEPS_PER_CLOCK``
    steps: past ``at`` it raises DeadlineExceeded, else if ``cancelled()`` it raises
    Cancelled. ``look()`` looks now (before a commit). Without either, each call costs one
    attribute test and nothing per row.
    """

    __slots__ = ("at", "cancelled", "watching", "_left", "_what")

    def __init__(self, at: float | None, what: str, cancelled: Callable[[], bool] | None = None) -> None:
        self.at = at
        self.cancelled = cancelled
        self.watching = at is not None or cancelled is not None  # else every call is a no-op
        self._left = 1  # the first step looks: a request that is already late does no work
        self._what = what

    def step(self) -> None:
        if self.watching:
            self._left -= 1
            if self._left <= 0:
                self._look()

    def steps(self, count: int) -> None:
        """``count`` steps at once (a scan read whole, and its rows)."""
        if self.watching:
            self._left -= count
            if self._left <= 0:
                self._look()

    def rows(self, rows: Iterable[T]) -> Iterable[T]:
        """``rows`` (a store scan), counting the scan and each row it yields as a step."""
        if not self.watching:
            return rows
        self.step()
        return self._counted(rows)

    def _counted(self, rows: Iterable[T]) -> Iterator[T]:
        for row in rows:
            self._left -= 1
            if self._left <= 0:
                self._look()
            yield row

    def look(self) -> None:
        """Look now, whatever the count: at a point of no return, such as a commit."""
        if self.watching:
            self._look()

    def _look(self) -> None:
        self._left = STEPS_PER_CLOCK
        if self.at is not None and time.monotonic() > self.at:
            raise DeadlineExceeded(f"the {self._what} ran past its deadline")
        if self.cancelled is not None and self.cancelled():
            raise Cancelled(f"the {self._what} was cancelled: the client has gone")
