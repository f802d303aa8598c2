"""The Deadline of long loops: when it looks at the clock and asks whether the caller has gone,
and what it costs without either."""

from __future__ import annotations

import time

import pytest

from relengine.engine.dispatch import STEPS_PER_CLOCK, Deadline
from relengine.errors import Cancelled, DeadlineExceeded


def test_without_a_deadline_nothing_is_counted_or_wrapped() -> None:
    deadline = Deadline(None, "lookup")
    rows = [1, 2, 3]
    assert deadline.rows(rows) is rows
    for _ in range(10 * STEPS_PER_CLOCK):
        deadline.step()


def test_a_request_already_late_stops_at_its_first_step() -> None:
    with pytest.raises(DeadlineExceeded, match="the lookup ran past its deadline"):
        Deadline(time.monotonic() - 1, "lookup").step()
    with pytest.raises(DeadlineExceeded, match="expand"):
        next(iter(Deadline(time.monotonic() - 1, "expand").rows(range(10))))


def test_the_clock_is_read_every_few_hundred_steps() -> None:
    deadline = Deadline(time.monotonic() + 3600, "lookup")
    assert list(deadline.rows(range(3 * STEPS_PER_CLOCK))) == list(range(3 * STEPS_PER_CLOCK))
    deadline.at = time.monotonic() - 1  # it passes now: the next look sees it
    seen = 0
    with pytest.raises(DeadlineExceeded):
        for _ in deadline.rows(range(10 * STEPS_PER_CLOCK)):
            seen += 1
    assert seen < STEPS_PER_CLOCK


class Caller:
    """A caller that goes away when told; counts how often it was asked."""

    def __init__(self) -> None:
        self.gone = False
        self.asked = 0

    def __call__(self) -> bool:
        self.asked += 1
        return self.gone


def test_a_caller_that_has_gone_stops_the_loop_within_a_few_hundred_steps_without_a_deadline() -> None:
    caller = Caller()
    deadline = Deadline(None, "lookup", caller)
    assert list(deadline.rows(range(3 * STEPS_PER_CLOCK))) == list(range(3 * STEPS_PER_CLOCK))
    assert caller.asked == 4  # at the first step, then once per STEPS_PER_CLOCK
    caller.gone = True
    seen = 0
    with pytest.raises(Cancelled, match="the lookup was cancelled"):
        for _ in deadline.rows(range(10 * STEPS_PER_CLOCK)):
            seen += 1
    assert seen < STEPS_PER_CLOCK


def test_a_passed_deadline_wins_over_a_caller_that_has_gone() -> None:
    with pytest.raises(DeadlineExceeded):
        Deadline(time.monotonic() - 1, "expand", lambda: True).step()


def test_look_looks_now_whatever_the_count() -> None:
    caller = Caller()
    deadline = Deadline(None, "import", caller)
    deadline.step()  # the first step looks; the next look would be STEPS_PER_CLOCK steps away
    deadline.step()
    caller.gone = True
    with pytest.raises(Cancelled, match="import"):
        deadline.look()
    Deadline(None, "import").look()  # nothing to look at: nothing happens
