"""The Dispatcher seam: every sub-question of a check goes through one, so that caching and
the depth budget apply at every level (SpiceDB's dispatchers, OpenFGA's resolver chain)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol

from ..model import ObjectRef, SubjectRef


class Permissionship(enum.IntEnum):
    """The answer to a check. CONDITIONAL means a caveat lacks parameters to decide."""

    NO_PERMISSION = 0
    HAS_PERMISSION = 1
    CONDITIONAL_PERMISSION = 2


@dataclass(frozen=True, slots=True)
class CheckRequest:
    resource: ObjectRef
    permission: str  # a permission or a relation of the resource's definition
    subject: SubjectRef


@dataclass(frozen=True, slots=True)
class CheckResult:
    permissionship: Permissionship
    missing_parameters: tuple[str, ...] = ()

    @property
    def allowed(self) -> bool:
        return self.permissionship is Permissionship.HAS_PERMISSION


class Dispatcher(Protocol):
    """Answers one sub-question: does ``subject`` have ``relation`` on ``type:id``?

    ``depth`` is the remaining budget (the callee raises MaxDepthExceeded below 0). A dispatcher
    serves one request at one revision; it is not shared between threads.
    """

    def dispatch(
        self, rtype: str, rid: str, relation: str, subject: SubjectRef, depth: int
    ) -> Permissionship: ...
