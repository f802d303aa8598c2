"""``relengine guards write | read | check [--within]`` on a data directory, a --datastore URI
and a server (``--endpoint``, real gRPC on 127.0.0.1), and ``import`` refused by a guard with
the refused exit code."""

from __future__ import annotations

import datetime as dt
import pathlib

import pytest

from relengine import Engine
from relengine.cli import EXIT_FAILED, EXIT_OK, EXIT_REFUSED, EXIT_UNAVAILABLE, EXIT_USAGE, main, parse_duration
from relengine.errors import InvalidArgument
from relengine.model import parse_relationship
from relengine.server.app import ServerConfig
from relengine.storage.memory import MemoryStore

from .server.harness import Running

ROOT = pathlib.Path(__file__).resolve().parents[1]
GTM = ROOT / "schemas" / "google_tag_manager.zed"
# GTM's account, where an administrator may be given until a time.
EXPIRING = GTM.read_text().replace(
    "relation admin: user | group#member", "relation admin: user | user with expiration | group#member")
GUARDS = """\
guards:
  - name: two-admins
    resource: account
    permission: administer
    subject_type: user
    at_least: 2
"""


def test_durations() -> None:
    assert parse_duration("7d") == dt.timedelta(days=7)
    assert parse_duration("12h") == dt.timedelta(hours=12)
    assert parse_duration("1.5w") == dt.timedelta(days=10.5)
    with pytest.raises(InvalidArgument, match="not a duration"):
        parse_duration("7 days")


def test_guards_write_read_check_and_a_refused_import(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    rels = tmp_path / "rels.txt"
    soon = (dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
    schema = tmp_path / "gtm.zed"
    schema.write_text("use expiration\n\n" + EXPIRING)
    rels.write_text(
        f"account:a#admin@user:ann\naccount:a#admin@user:bob\naccount:solo#admin@user:ann\n"
        f"account:soon#admin@user:ann\naccount:soon#admin@user:bob[expiration:{soon}]\n"
    )
    assert main(["import", str(rels), "--data-dir", str(data), "--schema", str(schema), "-q"]) == EXIT_OK
    guards = tmp_path / "guards.yaml"
    guards.write_text(GUARDS.replace("permission: administer", "permission: administrate"))
    capsys.readouterr()
    assert main(["guards", "write", str(guards), "--data-dir", str(data)]) == EXIT_USAGE
    assert f"{guards}:4:17: guard 'two-admins'" in capsys.readouterr().err
    guards.write_text(GUARDS)
    assert main(["guards", "write", str(guards), "--data-dir", str(data)]) == EXIT_OK
    capsys.readouterr()
    assert main(["guards", "read", "--data-dir", str(data)]) == EXIT_OK
    assert capsys.readouterr().out == GUARDS
    assert main(["guards", "check", "--data-dir", str(data)]) == EXIT_FAILED
    assert capsys.readouterr().out == "two-admins\taccount:solo\t1 (at least 2)\tnow\n"
    assert main(["guards", "check", "--within", "7d", "--data-dir", str(data)]) == EXIT_FAILED
    assert capsys.readouterr().out == (
        "two-admins\taccount:solo\t1 (at least 2)\tnow\ntwo-admins\taccount:soon\t1 (at least 2)\twithin 7d\n")
    # An import that would leave account:a one admin is refused; nothing of it is written.
    rels.write_text("account:b#admin@user:cat\naccount:a#admin@user:bob[expiration:2001-01-01T00:00:00Z]\n")
    assert main(["import", str(rels), "--data-dir", str(data), "-q"]) == EXIT_REFUSED
    assert "two-admins" in capsys.readouterr().err
    assert main(["guards", "check", "--within", "1d", "--data-dir", str(data)]) == EXIT_FAILED
    assert "account:soon" not in capsys.readouterr().out


def test_guards_write_read_check_over_grpc(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``relengine --endpoint HOST:PORT guards ...`` against a real server on 127.0.0.1; a bad
    file's error names the file, its line and column, as locally."""
    engine = Engine(MemoryStore())
    engine.write_schema(GTM.read_text())
    engine.touch([parse_relationship(t) for t in (
        "account:a#admin@user:ann", "account:a#admin@user:bob", "account:solo#admin@user:ann",
        "container:c#account@account:orphan")])
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4))
    try:
        remote = ["--endpoint", running.address, "--timeout", "10"]
        guards = tmp_path / "guards.yaml"
        guards.write_text(GUARDS.replace("permission: administer", "permission: administrate"))
        assert main([*remote, "guards", "write", str(guards)]) == EXIT_USAGE
        assert f"{guards}:4:17: guard 'two-admins'" in capsys.readouterr().err
        assert main([*remote, "guards", "check"]) == EXIT_OK  # no guards yet
        guards.write_text(GUARDS)
        assert main(["guards", "write", str(guards), *remote]) == EXIT_OK
        assert capsys.readouterr().out.startswith("r")
        assert main([*remote, "guards", "read"]) == EXIT_OK
        assert capsys.readouterr().out == GUARDS
        assert engine.read_guards()[0] == GUARDS  # stored by the server's engine
        assert main([*remote, "guards", "check", "--within", "7d"]) == EXIT_FAILED
        assert capsys.readouterr().out == (
            "two-admins\taccount:orphan\t0 (at least 2)\tnow\ntwo-admins\taccount:solo\t1 (at least 2)\tnow\n")
    finally:
        running.stop()
    assert main(["guards", "check", "--endpoint", running.address, "--no-retry", "--timeout", "2"]) == EXIT_UNAVAILABLE


def test_guards_on_a_datastore_uri(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    engine = Engine.open(str(data))
    engine.write_schema(GTM.read_text())
    engine.touch([parse_relationship("account:solo#admin@user:ann")])
    engine.close()
    guards = tmp_path / "guards.yaml"
    guards.write_text(GUARDS)
    assert main(["guards", "write", str(guards), "--datastore", f"lmdb://{data}"]) == EXIT_OK
    assert main(["guards", "check", "--datastore", f"lmdb://{data}"]) == EXIT_FAILED
    assert "account:solo\t1 (at least 2)" in capsys.readouterr().out
    assert main(["guards", "read", "--data-dir", str(tmp_path / "missing")]) == EXIT_USAGE
    assert not (tmp_path / "missing").exists()
