"""Bulk checks: many questions answered at one revision, each with its answer or its own error."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from ..engine.cache import context_key
from ..engine.check import LocalChecker
from ..engine.dispatch import Deadline, Result, to_check_result
from ..errors import Cancelled, DeadlineExceeded, MaxDepthExceeded, RelEngineError
from ..model import SubjectRef
from ..results import CheckResult

Question = tuple[str, str, str, SubjectRef, "Mapping[str, Any] | None"]
"""(resource type, resource id, permission, subject, caveat context or None): one bulk item."""


def answer(
    questions: Sequence[Question],
    checker_for: Callable[[Mapping[str, Any] | None], LocalChecker],
    context: Mapping[str, Any] | None,
    revision: int,
    cached: Callable[[int, str, str, str, str, str, str | None], Result | None] | None,
    clock: Deadline | None = None,
) -> list[CheckResult | RelEngineError]:
    """Each question's answer, or the RelEngineError it raised, in order.

    ``checker_for(context)`` builds the pipeline for a caveat context (all at the same
    revision); questions that share a context share one checker, and so the objects it read.
    Questions without a context of their own use ``context``'s and, given ``cached`` (the
    cache's ``CheckCache.answer``; the request has no context), are looked up in the cache
    first, as ``Engine.check`` does.

    ``clock`` (the request's deadline and cancellation) is stepped once per question: past the
    deadline, or once the caller has gone, the whole call raises DeadlineExceeded or Cancelled
    (an answer to nobody is not worth finishing), rather than each item carrying the error.
    """
    checkers: dict[str | None, LocalChecker] = {}
    results: list[CheckResult | RelEngineError] = []
    default = checkers[context_key(context)] = checker_for(context)
    try:
        _answer_all(questions, checkers, default, checker_for, results, revision, cached, clock)
    finally:
        for checker in checkers.values():
            checker.release()  # no cyclic garbage per bulk check
    return results


def _answer_all(
    questions: Sequence[Question],
    checkers: dict[str | None, LocalChecker],
    default: LocalChecker,
    checker_for: Callable[[Mapping[str, Any] | None], LocalChecker],
    results: list[CheckResult | RelEngineError],
    revision: int,
    cached: Callable[[int, str, str, str, str, str, str | None], Result | None] | None,
    clock: Deadline | None,
) -> None:
    append = results.append
    of = to_check_result
    step = clock.step if clock is not None and clock.watching else None
    for rtype, rid, permission, subject, item_context in questions:
        if step is not None:
            step()
        try:
            if item_context is None:
                if cached is not None:
                    found = cached(revision, rtype, rid, permission, subject.type, subject.id, subject.relation)
                    if found is not None:
                        append(of(found))
                        continue
                checker = default
            else:
                key = context_key(item_context)
                checker = checkers.get(key)  # type: ignore[assignment]
                if checker is None:
                    checker = checkers[key] = checker_for(item_context)
            append(of(checker.check(rtype, rid, permission, subject)))
        except (DeadlineExceeded, Cancelled):
            raise  # the request's, not the item's
        except RelEngineError as exc:
            append(exc)
        except RecursionError:
            append(MaxDepthExceeded.stack("check"))
