"""The Deadline of lookups and expand: when it looks at the clock, and what it costs without one."""

from __future__ import annotations

import time

import pytest

from relengine.engine.dispatch import STEPS_PER_CLOCK, Deadline
from relengine.errors import DeadlineExceeded


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
