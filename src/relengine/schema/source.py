"""Schema source text: maps offsets to 1-based line and column for messages."""

from __future__ import annotations

import bisect

from ..errors import SchemaIssue


class Source:
    """Text with a name (a file name, or ``<schema>``) and its line starts."""

    def __init__(self, text: str, name: str = "") -> None:
        self.text = text
        self.name = name
        self._starts = [0]
        for i, ch in enumerate(text):
            if ch == "\n":
                self._starts.append(i + 1)

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a code-point offset."""
        offset = max(0, min(offset, len(self.text)))
        index = bisect.bisect_right(self._starts, offset) - 1
        return index + 1, offset - self._starts[index] + 1

    def line_text(self, line: int) -> str:
        start = self._starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start:] if end < 0 else self.text[start:end]

    def issue(self, message: str, offset: int, *, severity: str = "error", code: str = "") -> SchemaIssue:
        line, column = self.position(offset)
        return SchemaIssue(
            message=message,
            line=line,
            column=column,
            source_line=self.line_text(line).rstrip("\r").expandtabs(1),
            source_name=self.name,
            severity=severity,
            code=code,
        )
