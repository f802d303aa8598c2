"""Structured logs: one line per event, ``key=value`` pairs (logfmt), values quoted when needed.

    ts=2026-01-31T12:00:00.123Z level=info logger=relengine.server event=serving listen=127.0.0.1:50051 pid=42

A record's ``extra`` fields become pairs; ``event`` defaults to the message. Tracebacks are
kept on the same line (newlines escaped), so that one event is always one line. Identical
lines in a burst are written once (``RepeatFilter``): a client repeating a bad request cannot
fill the disk.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import sys
import threading
import time
from typing import Callable, Final, Hashable, TextIO

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_MARK: Final = "_relengine_logfmt"
_PLAIN: Final = re.compile(r"[A-Za-z0-9_.:/@#*+\-,\[\]]+")
REPEAT_WINDOW_SECONDS: Final = 10.0
_REPEAT_KINDS: Final = 1024  # kinds of line remembered; the oldest is forgotten first


def _value(value: object) -> str:
    text = str(value)
    if _PLAIN.fullmatch(text):
        return text
    return json.dumps(text)


class LogfmtFormatter(logging.Formatter):
    def __init__(self, static: dict[str, object] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        ts = _dt.datetime.fromtimestamp(record.created, _dt.timezone.utc).isoformat(timespec="milliseconds")
        message = record.getMessage()
        pairs: dict[str, object] = {
            "ts": ts.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": getattr(record, "event", None) or message,
        }
        if message != pairs["event"]:
            pairs["msg"] = message
        pairs.update(self.static)
        for key, value in vars(record).items():
            if key not in _STANDARD and key != "event" and value is not None:
                pairs[key] = value
        if record.exc_info:
            pairs["error"] = repr(record.exc_info[1])
            pairs["traceback"] = self.formatException(record.exc_info)
        return " ".join(f"{key}={_value(value)}" for key, value in pairs.items())


class RepeatFilter(logging.Filter):
    """Lets the first of identical records through; the same record again within ``window``
    seconds of it is only counted, and the next one let through after the window carries the
    count as ``repeated=N`` (the lines left out since the previous one written). Identical:
    same logger, level, message, ``extra`` fields and exception."""

    def __init__(self, window: float = REPEAT_WINDOW_SECONDS, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window = window
        self._clock = clock
        self._lock = threading.Lock()
        self._seen: dict[Hashable, list[float]] = {}  # identity -> [first written at, left out since]

    def filter(self, record: logging.LogRecord) -> bool:
        identity = _identity(record)
        now = self._clock()
        with self._lock:
            seen = self._seen.pop(identity, None)
            if seen is not None and now - seen[0] < self._window:
                seen[1] += 1
                self._seen[identity] = seen
                return False
            if len(self._seen) >= _REPEAT_KINDS:
                del self._seen[next(iter(self._seen))]
            self._seen[identity] = [now, 0]
        if seen is not None and seen[1]:
            record.repeated = int(seen[1])
        return True


def _identity(record: logging.LogRecord) -> Hashable:
    extra = tuple((key, repr(value)) for key, value in vars(record).items() if key not in _STANDARD)
    error = repr(record.exc_info[1]) if record.exc_info else None
    return record.name, record.levelno, record.getMessage(), extra, error


def configure(level: str = "INFO", stream: TextIO | None = None, **static: object) -> None:
    """Send every ``relengine`` log record to ``stream`` (stderr) in logfmt, with ``static``
    pairs (worker index, pid) on each line, repeated lines collapsed (``RepeatFilter``)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter({"pid": os.getpid(), **static}))
    handler.addFilter(RepeatFilter())
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _MARK, False):  # only our own: a host's handlers (pytest's) stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
