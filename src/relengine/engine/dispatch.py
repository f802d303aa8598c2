"""The Dispatcher seam: every sub-question of a check goes through one, so that caching and
the depth budget apply at every level (SpiceDB's dispatchers, OpenFGA's resolver chain).

Answers are three-valued. A sub-question returns ``HAS`` or ``NO`` (the two Permissionship
members), or a ``Conditional`` naming the caveat parameters it would need to decide.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Mapping, Protocol, Union

from ..model import ObjectRef, SubjectRef


class Permissionship(enum.IntEnum):
    """The answer to a check. CONDITIONAL means a caveat lacks parameters to decide."""

    NO_PERMISSION = 0
    HAS_PERMISSION = 1
    CONDITIONAL_PERMISSION = 2


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


@dataclass(frozen=True, slots=True)
class CheckRequest:
    resource: ObjectRef
    permission: str  # a permission or a relation of the resource's definition
    subject: SubjectRef
    context: Mapping[str, object] | None = None  # caveat parameters for this item (bulk check)


@dataclass(frozen=True, slots=True)
class CheckResult:
    permissionship: Permissionship
    missing_parameters: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.permissionship is Permissionship.HAS_PERMISSION

    @classmethod
    def of(cls, result: Result) -> CheckResult:
        if isinstance(result, Conditional):
            return cls(Permissionship.CONDITIONAL_PERMISSION, tuple(sorted(result.missing)))
        return _PLAIN[result]


_PLAIN = {p: CheckResult(p) for p in (NO, HAS)}


class Dispatcher(Protocol):
    """Answers one sub-question: does ``subject`` have ``relation`` on ``type:id``?

    ``depth`` is the remaining budget (the callee raises MaxDepthExceeded below 0). A dispatcher
    serves one request at one revision, with one caveat context; it is not shared between threads.
    """

    def dispatch(self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int) -> Result: ...
