"""What evaluating a caveat or type-checking its expression gives back."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, NamedTuple, TypeAlias

TRUE: Final = True
FALSE: Final = False


@dataclass(frozen=True, slots=True)
class Missing:
    """The caveat cannot be decided without these parameters (SpiceDB's CONDITIONAL).

    ``params`` are the caveat's parameters that the context lacked; they are never empty.
    """

    params: frozenset[str]


CaveatResult: TypeAlias = "bool | Missing"
"""``TRUE`` (``True``), ``FALSE`` (``False``) or ``Missing(params)``; test with ``is True``."""


class CaveatProblem(NamedTuple):
    """A problem in a caveat definition, as ``(message, offset)``.

    ``offset`` counts characters (code points) from the start of the expression text; it is
    ``-1`` when the problem is in the declaration rather than the expression (no parameters,
    an unknown or duplicate parameter type, an unused parameter: the message names it).
    """

    message: str
    offset: int
