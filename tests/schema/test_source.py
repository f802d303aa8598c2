"""schema/source.py: code-point offsets to 1-based line and column, the text of a line, and
issues that carry both (with a source line whose caret lines up: no CR, one space per tab)."""

from __future__ import annotations

import pytest

from relengine.schema.source import Source

TEXT = "ab\r\n\tcd\n\nlast"  # a CRLF line, a tab, an empty line, no final newline


@pytest.mark.parametrize(
    ("offset", "position"),
    [
        pytest.param(0, (1, 1), id="start"),
        pytest.param(2, (1, 3), id="the-cr"),
        pytest.param(3, (1, 4), id="the-newline-ends-its-line"),
        pytest.param(4, (2, 1), id="after-a-newline"),
        pytest.param(6, (2, 3), id="after-a-tab"),
        pytest.param(8, (3, 1), id="empty-line"),
        pytest.param(12, (4, 4), id="last-character"),
        pytest.param(13, (4, 5), id="end-of-text"),
        pytest.param(100, (4, 5), id="past-the-end-is-the-end"),
        pytest.param(-5, (1, 1), id="before-the-start-is-the-start"),
    ],
)
def test_position(offset: int, position: tuple[int, int]) -> None:
    assert Source(TEXT).position(offset) == position


def test_positions_count_code_points() -> None:
    assert Source("é😀x\n😀y").position(2) == (1, 3)
    assert Source("é😀x\n😀y").position(5) == (2, 2)


def test_line_text() -> None:
    source = Source(TEXT)
    assert [source.line_text(n) for n in range(1, 5)] == ["ab\r", "\tcd", "", "last"]
    assert Source("").line_text(1) == "" and Source("").position(0) == (1, 1)


@pytest.mark.parametrize(
    ("offset", "rendered"),
    [
        pytest.param(6, ["f.zed:2:3: warning: unknown", "   cd", "    ^"], id="tab-as-one-space"),
        pytest.param(1, ["f.zed:1:2: warning: unknown", "  ab", "   ^"], id="no-cr"),
        pytest.param(13, ["f.zed:4:5: warning: unknown", "  last", "      ^"], id="at-the-end"),
    ],
)
def test_an_issue_points_at_its_offset(offset: int, rendered: list[str]) -> None:
    issue = Source(TEXT, "f.zed").issue("unknown", offset, severity="warning", code="some-code")
    assert (issue.source_name, issue.severity, issue.code) == ("f.zed", "warning", "some-code")
    assert issue.render().splitlines() == rendered


def test_an_issue_is_an_error_unless_told() -> None:
    issue = Source("definition x {}").issue("bad", 11)
    assert (issue.line, issue.column, issue.severity, issue.code, issue.source_name) == (1, 12, "error", "", "")
