"""The CLI's server commands against a real server; exit codes per the cli module docstring."""

from __future__ import annotations

import pathlib
from typing import Iterator

import pytest

from relengine import Engine
from relengine.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_UNAUTHENTICATED,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    main,
    parse_filter,
)
from relengine.model import RelationshipFilter, SubjectFilter
from relengine.server.app import ServerConfig

from ..server.harness import KEY, SCHEMA, Running


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
