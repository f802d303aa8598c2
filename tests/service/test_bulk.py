"""Bulk checks: each question answered at one revision, with its own caveat context or error;
the whole call stopped by its deadline or its caller's going."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from relengine import Engine
from relengine.engine.dispatch import STEPS_PER_CLOCK
from relengine.errors import Cancelled, DeadlineExceeded, UnknownDefinition
from relengine.model import SubjectRef
from relengine.results import CheckResult, Permissionship

from .test_schemas import SCHEMA  # a doc whose viewers may need a caveat

ANN = SubjectRef("user", "ann")


@pytest.fixture
def engine(engine_from: Callable[..., Engine]) -> Engine:
    return engine_from(SCHEMA, "doc:a#viewer@user:ann[on_network]", "doc:b#viewer@user:ann", quantization_seconds=3600)


def test_each_question_has_its_own_context_or_the_requests(engine: Engine) -> None:
    questions = [
        ("doc", "a", "view", ANN, None),
        ("doc", "a", "view", ANN, {"ip": "10.0.0.1"}),
        ("doc", "a", "view", ANN, {"ip": "10.0.0.2"}),
        ("doc", "b", "view", ANN, None),
        ("nowhere", "a", "view", ANN, None),
    ]
    results = engine.check_questions(questions).results
    assert results[:4] == [
        CheckResult(Permissionship.CONDITIONAL_PERMISSION, ("ip",)),
        CheckResult(Permissionship.HAS_PERMISSION),
        CheckResult(Permissionship.NO_PERMISSION),
        CheckResult(Permissionship.HAS_PERMISSION),
    ]
    assert isinstance(results[4], UnknownDefinition)
    with_context = engine.check_questions(questions[:1], context={"ip": "10.0.0.1"}).results
    assert with_context == [CheckResult(Permissionship.HAS_PERMISSION)]


def test_questions_with_a_context_are_not_answered_from_the_plain_cache(engine: Engine) -> None:
    plain = engine.check_questions([("doc", "a", "view", ANN, None)]).results
    assert plain == [CheckResult(Permissionship.CONDITIONAL_PERMISSION, ("ip",))]
    assert engine.cached_check("doc", "a", "view", "user", "ann", None) is not None
    allowed = [CheckResult(Permissionship.HAS_PERMISSION)]
    assert engine.check_questions([("doc", "a", "view", ANN, None)], context={"ip": "10.0.0.1"}).results == allowed
    assert engine.check_questions([("doc", "a", "view", ANN, {"ip": "10.0.0.1"})]).results == allowed


def test_a_bulk_check_past_its_deadline_or_whose_caller_has_gone_stops_as_a_whole(engine: Engine) -> None:
    questions = [("doc", "b", "view", SubjectRef("user", f"u{i}"), None) for i in range(2 * STEPS_PER_CLOCK)]
    with pytest.raises(DeadlineExceeded, match="bulk check"):  # not an answer of DeadlineExceeded items
        engine.check_questions(questions, deadline=time.monotonic() - 1)
    asked: list[bool] = []

    def gone() -> bool:
        asked.append(True)
        return len(asked) > 1  # there at the first question, gone by the next look

    with pytest.raises(Cancelled, match="bulk check"):
        engine.check_questions(questions, cancelled=gone)
    assert len(asked) == 2  # asked at the first question and STEPS_PER_CLOCK questions later
    answered = engine.check_questions(questions, cancelled=lambda: False, deadline=time.monotonic() + 60).results
    assert answered == [CheckResult(Permissionship.NO_PERMISSION)] * len(questions)
