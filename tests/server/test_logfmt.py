"""Structured logs (server/logfmt.py): one logfmt line per event, values quoted only when needed,
identical lines in a burst collapsed, and ``configure`` installing its handler beside the host's."""

from __future__ import annotations

import io
import logging
import os
import sys
from typing import Any, Iterator

import pytest

from relengine.server.logfmt import LogfmtFormatter, RepeatFilter, configure

CREATED = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _record(message: str, level: int = logging.INFO, **extra: Any) -> logging.LogRecord:
    logger = logging.getLogger("relengine.test_logfmt")
    record = logger.makeRecord(logger.name, level, __file__, 1, message, (), None, extra=extra)
    record.created = CREATED
    return record


def test_logfmt_one_line_per_event() -> None:
    logger = logging.getLogger("relengine.test_logfmt")
    record = logger.makeRecord(
        logger.name, logging.ERROR, __file__, 1, "internal error", (), None,
        extra={"event": "internal_error", "method": "/a.B/C", "detail": "two words"},
    )
    try:
        raise ValueError("boom\nsecond line")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = LogfmtFormatter({"worker": 1}).format(record)
    assert "\n" not in line
    assert line.startswith("ts=") and " level=error " in line and " event=internal_error " in line
    assert ' detail="two words"' in line and " worker=1 " in line and "traceback=" in line


def test_pairs_come_in_a_fixed_order_and_the_event_defaults_to_the_message() -> None:
    formatter = LogfmtFormatter({"worker": 2})
    assert formatter.format(_record("serving", listen="127.0.0.1:50051", absent=None)) == (
        "ts=2023-11-14T22:13:20.000Z level=info logger=relengine.test_logfmt event=serving worker=2 "
        "listen=127.0.0.1:50051"
    )
    assert formatter.format(_record("the store is full", logging.WARNING, event="store_full")) == (
        "ts=2023-11-14T22:13:20.000Z level=warning logger=relengine.test_logfmt event=store_full "
        'msg="the store is full" worker=2'
    )


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("doc:1#viewer@user:*", "doc:1#viewer@user:*"),
        ("/relengine.v1.PermissionsService/Check", "/relengine.v1.PermissionsService/Check"),
        (42, "42"),
        ("two words", '"two words"'),
        ("a=b", '"a=b"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("line\nbreak", '"line\\nbreak"'),
        ("", '""'),
        ("é", '"\\u00e9"'),
    ],
)
def test_values_are_quoted_only_when_a_reader_could_misread_them(value: object, text: str) -> None:
    assert LogfmtFormatter().format(_record("e", detail=value)).endswith(f" detail={text}")


@pytest.fixture
def root_logger() -> Iterator[logging.Logger]:
    """The root logger; the handlers and level a test gives it are taken away afterwards."""
    root = logging.getLogger()
    before = list(root.handlers)
    level = root.level
    yield root
    for h in root.handlers[:]:
        if h not in before:
            root.removeHandler(h)
    root.setLevel(level)


def test_configure_keeps_foreign_handlers(root_logger: logging.Logger) -> None:
    before = list(root_logger.handlers)
    stream = io.StringIO()
    configure("INFO", stream)
    configure("INFO", stream)  # again: replaces its own handler only
    logging.getLogger("relengine.server").info("hello", extra={"event": "hello"})
    ours = [h for h in root_logger.handlers if h not in before]
    assert len(ours) == 1
    assert "event=hello" in stream.getvalue()


def test_configure_sets_the_level_and_stamps_every_line(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure("warning", stream, worker=3)
    assert root_logger.level == logging.WARNING
    log = logging.getLogger("relengine.server")
    log.info("quiet")
    log.warning("loud")
    (line,) = stream.getvalue().splitlines()
    assert " event=loud " in line and line.endswith(f" pid={os.getpid()} worker=3")
    configure("no-such-level", stream)
    assert root_logger.level == logging.INFO


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_identical_lines_within_the_window_collapse_into_one_with_a_count() -> None:
    clock = _Clock()
    repeats = RepeatFilter(window=10.0, clock=clock)
    bad = lambda: _record("undecodable request", logging.WARNING, event="undecodable_request", method="/a.B/C")  # noqa: E731
    assert repeats.filter(bad())
    for _ in range(999):
        clock.now += 0.001
        assert not repeats.filter(bad())
    # Anything else still goes through: another method, another level, another message.
    assert repeats.filter(_record("undecodable request", logging.WARNING, event="undecodable_request", method="/a.B/D"))
    assert repeats.filter(_record("undecodable request", logging.ERROR, event="undecodable_request", method="/a.B/C"))
    assert repeats.filter(_record("serving"))
    clock.now = 110.0  # the window is over: the next one is written, with the count left out
    record = bad()
    assert repeats.filter(record)
    assert " repeated=999" in LogfmtFormatter().format(record)
    clock.now += 10.0
    record = bad()
    assert repeats.filter(record) and not hasattr(record, "repeated")  # none left out since


def test_the_kinds_of_line_remembered_are_bounded() -> None:
    repeats = RepeatFilter(window=10.0, clock=_Clock())
    for i in range(5000):
        assert repeats.filter(_record("incident", logging.ERROR, incident=i))
    assert len(repeats._seen) <= 1024


def test_configure_collapses_repeated_lines(root_logger: logging.Logger) -> None:
    stream = io.StringIO()
    configure("INFO", stream)
    log = logging.getLogger("relengine.server")
    for _ in range(100):
        log.warning("undecodable request", extra={"event": "undecodable_request", "method": "/a.B/C"})
    assert len(stream.getvalue().splitlines()) == 1
