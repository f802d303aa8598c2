"""Structured logs: one line per event, ``key=value`` pairs (logfmt), values quoted when needed.

    ts=2026-01-31T12:00:00.123Z level=info logger=relengine.server event=serving listen=127.0.0.1:50051 pid=42

A record's ``extra`` fields become pairs; ``event`` defaults to the message. Tracebacks are
kept on the same line (newlines escaped), so that one event is always one line.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import sys
from typing import Final, TextIO

_STANDARD: Final = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}
_MARK: Final = "_relengine_logfmt"
_PLAIN: Final = re.compile(r"[A-Za-z0-9_.:/@#*+\-,\[\]]+")


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


def configure(level: str = "INFO", stream: TextIO | None = None, **static: object) -> None:
    """Send every ``relengine`` log record to ``stream`` (stderr) in logfmt, with ``static``
    pairs (worker index, pid) on each line."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(LogfmtFormatter({"pid": os.getpid(), **static}))
    setattr(handler, _MARK, True)
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, _MARK, False):  # only our own: a host's handlers (pytest's) stay
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
