"""The ``relengine`` command line (cli.py), called in-process: the local commands (``schema
check|fmt|graph``, ``matrix``, ``validate``, and once as a subprocess, to test the ``python -m
relengine`` entry point), then the commands that talk to a real server on 127.0.0.1. Exit
codes as the cli module docstring gives them.

``serve`` is tested with the server (tests/server/test_app.py)."""

from __future__ import annotations

import io
import pathlib
import subprocess
import sys
from typing import Callable, Iterator

import pytest

from relengine import Engine
from relengine.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAUTHENTICATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    build_parser,
    main,
    parse_filter,
)
from relengine.model import RelationshipFilter, SubjectFilter, parse_relationship
from relengine.server.app import ServerConfig

from .server.harness import KEY, SCHEMA, Running, engine  # noqa: F401  (engine: a fixture)
from .test_validationfile import GOOD as VALIDATION_FILE

ROOT = pathlib.Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas"

# -- local commands -------------------------------------------------------------------------------

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


def test_schema_check_good_file(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("good.zed", GOOD)
    assert main(["schema", "check", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 definitions, 0 caveats)\n"
    assert err == ""


def test_schema_check_bad_file_shows_position_and_caret(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("bad.zed", BAD)
    assert main(["schema", "check", str(path)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == ""
    head, source_line, caret = err.splitlines()
    assert head.startswith(f"{path}:4:22: error: object definition `usr` not found")
    assert source_line == "      relation viewer: usr"
    assert caret == "  " + " " * 21 + "^"


def test_schema_check_syntax_error(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("broken.zed", "definition user {\n    relation viewer user\n}\n")
    assert main(["schema", "check", str(path)]) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith(f"{path}:2:21: error: expected ':' after the relation name")
    assert err.splitlines()[2] == "  " + " " * 20 + "^"


def test_schema_check_prints_warnings_and_succeeds(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("warns.zed", WARNS)
    assert main(["schema", "check", str(path)]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"{path}: ok (2 definitions, 0 caveats, 1 warnings)\n"
    assert err.startswith(f"{path}:6:32: warning: permission `view` references itself")


def test_schema_check_many_files_fails_if_one_fails(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = write("good.zed", GOOD), write("bad.zed", BAD)
    assert main(["schema", "check", str(bad), str(good)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert f"{good}: ok" in out and f"{bad}:4:22:" in err


def test_schema_check_missing_file_is_a_usage_error(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "check", str(tmp_path / "nope.zed")]) == EXIT_USAGE
    assert "nope.zed" in capsys.readouterr().err


def test_schema_fmt_prints_canonical_text(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("messy.zed", UNFORMATTED)
    assert main(["schema", "fmt", str(path)]) == EXIT_OK
    assert capsys.readouterr().out == GOOD
    assert path.read_text(encoding="utf-8") == UNFORMATTED  # not touched without --write


def test_schema_fmt_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(UNFORMATTED))
    assert main(["schema", "fmt", "-"]) == EXIT_OK
    assert capsys.readouterr().out == GOOD


def test_schema_fmt_write_rewrites_the_file(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("messy.zed", UNFORMATTED)
    assert main(["schema", "fmt", "--write", str(path)]) == EXIT_OK
    assert path.read_text(encoding="utf-8") == GOOD
    assert capsys.readouterr().out == ""
    assert main(["schema", "fmt", "--check", str(path)]) == EXIT_OK


def test_schema_fmt_check(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    messy, good = write("messy.zed", UNFORMATTED), write("good.zed", GOOD)
    assert main(["schema", "fmt", "--check", str(good)]) == EXIT_OK
    assert capsys.readouterr() == ("", "")
    assert main(["schema", "fmt", "--check", str(messy), str(good)]) == EXIT_FAILED
    out, err = capsys.readouterr()
    assert out == "" and err == f"{messy}: not formatted\n"
    assert messy.read_text(encoding="utf-8") == UNFORMATTED


def test_the_shipped_schemas_are_formatted(capsys: pytest.CaptureFixture[str]) -> None:
    files = sorted(str(path) for path in SCHEMAS.glob("*.zed"))
    assert len(files) == 5
    assert main(["schema", "fmt", "--check", *files]) == EXIT_OK, capsys.readouterr().err


def test_schema_fmt_invalid_schema(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    path = write("bad.zed", BAD)
    assert main(["schema", "fmt", "--write", str(path)]) == EXIT_FAILED
    assert f"{path}:4:22: error:" in capsys.readouterr().err
    assert path.read_text(encoding="utf-8") == BAD


def test_schema_fmt_check_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(GOOD))
    assert main(["schema", "fmt", "--check", "-"]) == EXIT_OK


def test_schema_fmt_write_and_check_exclude_each_other(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["schema", "fmt", "--write", "--check", str(write("good.zed", GOOD))])
    assert caught.value.code == EXIT_USAGE
    assert "not allowed with argument" in capsys.readouterr().err


def test_schema_graph(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "graph", str(SCHEMAS / "dxtra.zed"), "--format", "dot"]) == 0
    assert capsys.readouterr().out.startswith("digraph schema {")
    bad = write("bad.zed", "definition doc {\n relation a: nothing\n}\n")
    assert main(["schema", "graph", str(bad)]) == 1
    assert "2:14" in capsys.readouterr().err


def test_matrix(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["matrix", str(SCHEMAS / "taggrs.zed"), "--resource", "product", "--format", "markdown"]) == 0
    out = capsys.readouterr().out
    assert "| `organization->viewer` | · | · | · | ✓ |" in out
    assert main(["matrix", str(SCHEMAS / "taggrs.zed"), "--resource", "nothing"]) == 2


def test_validate_summary_and_exit_codes(write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    good = str(write("v.yaml", VALIDATION_FILE))
    assert main(["validate", good]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "5 passed, 0 failed"
    bad = str(write("bad.yaml", VALIDATION_FILE.replace("document:2#view@user:bob", "document:2#view@user:eve")))
    assert main(["validate", good, bad]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:24: FAILED: document:2#view@user:eve" in out
    assert out.strip().splitlines()[-1] == "9 passed, 1 failed"
    broken = str(write("broken.yaml", "schema: ["))
    assert main(["validate", broken]) == 1
    assert "ERROR" in capsys.readouterr().out


def test_import_skips_comments_and_with_skip_errors_bad_lines(tmp_path: pathlib.Path, write: Write, capsys: pytest.CaptureFixture[str]) -> None:
    schema = write("schema.zed", GOOD)
    lines = write("rels.txt", "# comment\n// comment\ndocument:1#viewer@user:ann\ndocument:2#viewer@usr:bob\ndocument:3#viewer@user:cat\n")
    data = str(tmp_path / "data")
    assert main(["import", "--data-dir", data, "--schema", str(schema), "-q", str(lines)]) == EXIT_USAGE
    assert "INVALID_ARGUMENT: line 4: subject type `usr` not found" in capsys.readouterr().err
    assert main(["import", "--data-dir", data, "-q", "--skip-errors", str(lines)]) == EXIT_OK  # was 1
    out, err = capsys.readouterr()
    assert "imported 2 relationships from 5 lines" in out and "1 bad lines" in out
    assert err.startswith(f"{lines}:4: subject type `usr` not found") and len(err.splitlines()) == 1


@pytest.mark.slow
def test_console_entry_point(write: Write) -> None:
    good, bad = write("good.zed", GOOD), write("bad.zed", BAD)
    command = [sys.executable, "-m", "relengine", "schema", "check"]
    ok = subprocess.run([*command, str(good)], capture_output=True, text=True, timeout=60)
    assert (ok.returncode, ok.stdout) == (EXIT_OK, f"{good}: ok (2 definitions, 0 caveats)\n"), ok.stderr
    failed = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=60)
    assert failed.returncode == EXIT_FAILED
    assert f"{bad}:4:22: error: object definition `usr` not found" in failed.stderr


# -- commands talking to a server -----------------------------------------------------------------


@pytest.fixture
def server(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, preshared_key=KEY))
    monkeypatch.setenv("RELENGINE_PRESHARED_KEY", KEY)
    yield ["--endpoint", running.address, "--timeout", "10"]
    running.stop()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_schema_write_read(server: list[str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "schema.zed"
    path.write_text(SCHEMA)
    code, out, _ = run(capsys, "schema", "write", str(path), *server)
    assert code == EXIT_OK and out.strip().startswith("r")
    code, out, _ = run(capsys, "schema", "read", *server)
    assert code == EXIT_OK and out == SCHEMA
    path.write_text("definition doc {\n  relation viewer: nobody\n}\n")
    code, _, err = run(capsys, "schema", "write", str(path), *server)
    assert code == EXIT_USAGE and ":2:" in err and "nobody" in err


def test_write_check_read_expand_lookup_delete(server: list[str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    assert run(capsys, "schema", "write", str(schema), *server)[0] == EXIT_OK
    more = tmp_path / "rels.txt"
    more.write_text("// a comment\ndoc:2#viewer@user:ann\n\ndoc:3#viewer@user:*\n")
    code, out, _ = run(capsys, "write", "doc:1#viewer@group:eng#member", "group:eng#member@user:ann", "--file", str(more), *server)
    assert code == EXIT_OK
    token = out.strip()

    code, out, _ = run(capsys, "check", "doc:1#view@user:ann", "--at-least-as-fresh", token, *server)
    assert (code, out.split()[0]) == (EXIT_OK, "allowed")
    code, out, _ = run(capsys, "check", "doc:1", "view", "user:bob", "--fully-consistent", *server)
    assert (code, out.split()[0]) == (EXIT_FAILED, "denied")
    code, _, err = run(capsys, "check", "doc:1", "nothing", "user:bob", *server)
    assert code == EXIT_USAGE and "FAILED_PRECONDITION" in err
    code, _, err = run(capsys, "check", "doc:1", "view", *server)
    assert code == EXIT_USAGE

    code, out, _ = run(capsys, "read", "doc", "--fully-consistent", *server)
    assert out.splitlines() == ["doc:1#viewer@group:eng#member", "doc:2#viewer@user:ann", "doc:3#viewer@user:*"]
    code, out, err = run(capsys, "read", "doc", "--limit", "1", *server)
    assert out.splitlines() == ["doc:1#viewer@group:eng#member"] and "next cursor: " in err
    cursor = err.split("next cursor: ")[1].strip()
    code, out, _ = run(capsys, "read", "doc", "--cursor", cursor, *server)
    assert out.splitlines() == ["doc:2#viewer@user:ann", "doc:3#viewer@user:*"]

    code, out, _ = run(capsys, "expand", "doc:1", "view", "--fully-consistent", *server)
    assert code == EXIT_OK and "doc:1#viewer -> group:eng#member" in out
    code, out, _ = run(capsys, "lookup-resources", "doc", "view", "user:ann", "--fully-consistent", *server)
    assert out.splitlines() == ["doc:1", "doc:2", "doc:3"]
    code, out, _ = run(capsys, "lookup-subjects", "doc:3", "view", "user", "--fully-consistent", *server)
    assert out.splitlines() == ["user:*"]
    code, out, _ = run(capsys, "lookup-subjects", "doc:1", "viewer", "group#member", "--fully-consistent", *server)
    assert out.splitlines() == ["group:eng#member"]

    code, _, err = run(capsys, "write", "doc:2#viewer@user:ann", "--operation", "create", *server)
    assert code == EXIT_REFUSED and "ALREADY_EXISTS" in err
    code, _, err = run(capsys, "write", "doc:9#viewer@user:ann", "--must-match", "doc:9", *server)
    assert code == EXIT_REFUSED and "precondition" in err
    code, out, _ = run(capsys, "delete", "doc:*", "--limit", "1", *server)
    assert code == EXIT_OK and out.startswith("deleted 1 (partial")
    code, out, _ = run(capsys, "delete", "doc@user", *server)
    assert code == EXIT_OK and out.startswith("deleted 2 (complete)")
    code, out, _ = run(capsys, "watch", "--after", token, "--count", "2", *server)
    assert code == EXIT_OK
    assert [line.split(" ", 2)[1:] for line in out.splitlines()] == [
        ["DELETE", "doc:1#viewer@group:eng#member"], ["DELETE", "doc:2#viewer@user:ann"],
    ]


def test_watch_duration_ends_quietly(server: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "watch", "--duration", "0.2", *server)
    assert code == EXIT_OK and out == ""


def test_auth_and_unavailable_exit_codes(server: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RELENGINE_PRESHARED_KEY")
    code, _, err = run(capsys, "schema", "read", *server)
    assert code == EXIT_UNAUTHENTICATED and "UNAUTHENTICATED" in err
    code, _, err = run(capsys, "schema", "read", *server, "--preshared-key", "wrong")
    assert code == EXIT_UNAUTHENTICATED
    code, _, err = run(capsys, "check", "doc:1#view@user:ann", "--endpoint", "127.0.0.1:1", "--no-retry", "--timeout", "2")
    assert code == EXIT_UNAVAILABLE and "UNAVAILABLE" in err


def test_a_malformed_cursor_exits_2(server: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["read", "doc"], ["lookup-resources", "doc", "view", "user:ann"]):
        code, _, err = run(capsys, *command, "--cursor", "kQE", *server)  # valid msgpack, the wrong shape
        assert code == EXIT_USAGE and "INVALID_ARGUMENT: malformed cursor 'kQE'" in err


def test_nan_in_a_context_exits_2(server: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for context in ('{"x": NaN}', '{"x": -Infinity}'):  # Python's json reads them; JSON has none
        code, _, err = run(capsys, "check", "doc:1#view@user:ann", "--context", context, *server)
        constant = context.split()[1].rstrip("}")
        assert code == EXIT_USAGE and f"INVALID_ARGUMENT: --context is not valid JSON: {constant} is not a JSON number" in err


def test_server_options_go_before_or_after_the_command(server: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """``relengine --endpoint X check ...`` was a usage error."""
    schema_read = ["schema", "read", "--fully-consistent"]
    code, _, err = run(capsys, *server, *schema_read)
    assert code == EXIT_USAGE and "FAILED_PRECONDITION: no schema" in err  # the server answered
    endpoint, timeout = server[1], server[3]
    code, _, err = run(capsys, "--endpoint", "127.0.0.1:1", "--no-retry", *schema_read, "--endpoint", endpoint)
    assert code == EXIT_USAGE and "FAILED_PRECONDITION" in err  # after the command wins
    code, _, err = run(capsys, "--endpoint", endpoint, "--timeout", timeout, "--preshared-key", "wrong", *schema_read)
    assert code == EXIT_UNAUTHENTICATED
    code, _, err = run(capsys, "--no-retry", "--timeout", "2", *schema_read, "--endpoint", "127.0.0.1:1")
    assert code == EXIT_UNAVAILABLE
    args = build_parser().parse_args(["--preshared-key", "k", "serve", "--data-dir", "d"])
    assert args.preshared_key == "k"  # what serve requires, before the command as after it
    assert build_parser().parse_args(["serve", "--data-dir", "d"]).preshared_key is None
    assert build_parser().parse_args(["check", "doc:1#view@user:ann"]).timeout == 30.0


def test_parse_filter() -> None:
    assert parse_filter("doc") == RelationshipFilter("doc")
    assert parse_filter("doc:1#viewer") == RelationshipFilter("doc", "1", relation="viewer")
    assert parse_filter("doc:ab*") == RelationshipFilter("doc", resource_id_prefix="ab")
    assert parse_filter("doc@group:eng#member") == RelationshipFilter("doc", subject=SubjectFilter("group", "eng", "member"))
    assert parse_filter("doc@user#...") == RelationshipFilter("doc", subject=SubjectFilter("user", relation=""))


def test_conditional_check_exits_1(server: list[str], tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    schema = tmp_path / "schema.zed"
    schema.write_text(
        'caveat ip_allowed(ip string) { ip == "1.2.3.4" }\n'
        "definition user {}\ndefinition doc {\n  relation viewer: user with ip_allowed\n  permission view = viewer\n}\n"
    )
    assert run(capsys, "schema", "write", str(schema), *server)[0] == EXIT_OK
    assert run(capsys, "write", "doc:1#viewer@user:ann[ip_allowed]", *server)[0] == EXIT_OK
    code, out, _ = run(capsys, "check", "doc:1#view@user:ann", "--fully-consistent", *server)
    assert code == EXIT_FAILED and out.startswith("conditional") and "missing context: ip" in out
    code, out, _ = run(capsys, "check", "doc:1#view@user:ann", "--fully-consistent", "--context", '{"ip": "1.2.3.4"}', *server)
    assert code == EXIT_OK
    code, _, err = run(capsys, "check", "doc:1#view@user:ann", "--context", "[1]", *server)
    assert code == EXIT_USAGE and "JSON object" in err


# -- check --explain ------------------------------------------------------------------------------


def test_check_explain_prints_the_tree_walked(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    e = Engine.open(str(data))
    e.write_schema(SCHEMA)
    e.touch(parse_relationship(t) for t in ("group:eng#member@user:ann", "doc:1#viewer@group:eng#member",
                                            "doc:1#banned@user:bob", "doc:1#owner@user:bob"))
    e.close()
    assert main(["check", "--explain", "--data-dir", str(data), "doc:1#view@user:ann"]) == EXIT_OK
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("allowed at ")
    assert out[1].startswith("✓ doc:1#view (permission) ")
    assert any(line.startswith("    ✓ group:eng#member (relation, via subject set)") for line in out)
    assert out[-3:] == ["granted by:", "  doc:1#viewer@group:eng#member", "  group:eng#member@user:ann"]
    assert main(["check", "--explain", "--data-dir", str(data), "doc:1", "view", "user:bob"]) == EXIT_FAILED
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("denied at ") and "granted by:" not in out
    assert any(line.startswith("  ✓ doc:1#banned") for line in out)


def test_check_explain_needs_a_data_dir(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--explain", "doc:1#view@user:ann"]) == EXIT_USAGE
    assert "--data-dir" in capsys.readouterr().err
    assert main(["check", "--explain", "--data-dir", str(tmp_path / "none"), "doc:1#view@user:ann"]) == EXIT_USAGE
    assert "not a directory" in capsys.readouterr().err
    assert main(["check", "--data-dir", str(tmp_path), "doc:1#view@user:ann"]) == EXIT_USAGE
    assert "goes with --explain" in capsys.readouterr().err
