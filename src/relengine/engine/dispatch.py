"""The Dispatcher seam: every sub-question of a check goes through one, so that caching and
the depth budget apply at every level (SpiceDB's dispatchers, OpenFGA's resolver chain).

Answers are three-valued. A sub-question returns ``HAS`` or ``NO`` (the two Permissionship
members), or a ``Conditional`` naming the caveat parameters it would need to decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Union

from ..model import SubjectRef
from ..results import CheckResult, Permissionship

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

    ``depth`` is the remaining budget (the callee raises MaxDepthExceeded below 0). A dispatcher
    serves one request at one revision, with one caveat context; it is not shared between threads.
    """

    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Result: ...
