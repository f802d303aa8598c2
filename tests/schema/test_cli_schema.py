"""``relengine schema check`` and ``relengine schema fmt``, called in-process (and once as a
subprocess, to test the ``python -m relengine`` entry point)."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys
from typing import Callable

import pytest

from relengine.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, main

GOOD = """\
definition user {}

definition document {
    relation viewer: user

    permission view = viewer
}
"""

UNFORMATTED = "definition user {}\ndefinition document {\n  relation viewer: user\n  permission view = viewer\n}\n"

BAD = "definition user {}\n\ndefinition document {\n    relation viewer: usr\n}\n"

WARNS = """\
definition user {}

definition document {
    relation viewer: user

    permission view = viewer + view
}
"""


Write = Callable[[str, str], pathlib.Path]


@pytest.fixture
def write(tmp_path: pathlib.Path) -> Write:
    def write(name: str, text: str) -> pathlib.Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


def test_check_good_file(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("good.zed", GOOD)
    assert main(["schema", "check", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 definitions, 0 caveats)\n"
    assert err == ""


def test_check_bad_file_shows_position_and_caret(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("bad.zed", BAD)
    assert main(["schema", "check", str(path)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    head, source_line, caret = err.splitlines()
    assert head.startswith(f"{path}:4:22: error: object definition `usr` not found")
    assert source_line == "      relation viewer: usr"
    assert caret == "  " + " " * 21 + "^"


def test_check_syntax_error(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("broken.zed", "definition user {\n    relation viewer user\n}\n")
    assert main(["schema", "check", str(path)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:2:21: error: expected ':' after the relation name")
    assert err.splitlines()[2] == "  " + " " * 20 + "^"


def test_check_prints_warnings_and_succeeds(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("warns.zed", WARNS)
    assert main(["schema", "check", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 definitions, 0 caveats, 1 warnings)\n"
    assert err.startswith(f"{path}:6:32: warning: permission `view` references itself")


def test_check_many_files_fails_if_one_fails(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = write("good.zed", GOOD), write("bad.zed", BAD)
    assert main(["schema", "check", str(bad), str(good)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert f"{good}: ok" in out and f"{bad}:4:22:" in err


def test_check_missing_file_is_a_usage_error(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "check", str(tmp_path / "nope.zed")]) == EXIT_USAGE
    assert "nope.zed" in capsys.readouterr().err


def test_fmt_prints_canonical_text(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("messy.zed", UNFORMATTED)
    assert main(["schema", "fmt", str(path)]) == EXIT_OK
    assert capsys.readouterr().out == GOOD
    assert path.read_text(encoding="utf-8") == UNFORMATTED  # not touched without --write


def test_fmt_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(UNFORMATTED))
    assert main(["schema", "fmt", "-"]) == EXIT_OK
    assert capsys.readouterr().out == GOOD


def test_fmt_write_rewrites_the_file(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("messy.zed", UNFORMATTED)
    assert main(["schema", "fmt", "--write", str(path)]) == EXIT_OK
    assert path.read_text(encoding="utf-8") == GOOD
    assert capsys.readouterr().out == ""
    assert main(["schema", "fmt", "--check", str(path)]) == EXIT_OK


def test_fmt_check(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    messy, good = write("messy.zed", UNFORMATTED), write("good.zed", GOOD)
    assert main(["schema", "fmt", "--check", str(good)]) == EXIT_OK
    assert capsys.readouterr() == ("", "")
    assert main(["schema", "fmt", "--check", str(messy), str(good)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == "" and err == f"{messy}: not formatted\n"
    assert messy.read_text(encoding="utf-8") == UNFORMATTED


def test_fmt_invalid_schema(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("bad.zed", BAD)
    assert main(["schema", "fmt", "--write", str(path)]) == EXIT_FAILED
    assert f"{path}:4:22: error:" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == BAD


def test_fmt_check_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(GOOD))
    assert main(["schema", "fmt", "--check", "-"]) == EXIT_OK


def test_write_and_check_exclude_each_other(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["schema", "fmt", "--write", "--check", str(write("good.zed", GOOD))])
    assert caught.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.slow
def test_console_entry_point(write: Write) -> None:
    good, bad = write("good.zed", GOOD), write("bad.zed", BAD)
    command = [sys.executable, "-m", "relengine", "schema", "check"]
    ok = subprocess.run([*command, str(good)], capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout) == (EXIT_OK, f"{good}: ok (2 definitions, 0 caveats)\n"), ok.stderr
    failed = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == EXIT_FAILED
    assert f"{bad}:4:22: error: object definition `usr` not found" in failed.stderr
