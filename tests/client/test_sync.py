"""The blocking client (client/_sync.py) against a real server: text helpers, retries on
UNAVAILABLE only, TLS. What both clients share is tests/client/test_common.py's."""

from __future__ import annotations

import pathlib
import shutil
import subprocess
from typing import Any, Iterator

import pytest

from relengine import Engine, Revision, errors
from relengine.client import Client, RetryPolicy
from relengine.model import RelationshipFilter
from relengine.results import CheckResponse, CheckResult, Permissionship, ReadResult, Stream
from relengine.server.app import ServerConfig

from ..server.harness import SCHEMA, Running, Uncached

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.005)


class Flaky(Uncached):
    """Fails the first ``failures`` calls of check/read with ``error``, then answers."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error

    def check(self, *args: Any, **kwargs: Any) -> CheckResponse:
        self._maybe_fail()
        return CheckResponse(CheckResult(Permissionship.HAS_PERMISSION), Revision(3))

    def read(self, *args: Any, **kwargs: Any) -> Stream[ReadResult]:
        self._maybe_fail()
        return Stream(Revision(3), iter(()))


@pytest.fixture
def flaky_server() -> Iterator[tuple[Flaky, Running]]:
    engine = Flaky(2, errors.Unavailable("store closed for a moment"))
    running = Running(engine)
    yield engine, running
    running.stop()


def test_retries_unavailable_then_succeeds(flaky_server: tuple[Flaky, Running]) -> None:
    engine, running = flaky_server
    with running.client(retry=FAST) as client:
        assert client.check("doc:1", "view", "user:ann").allowed
    assert engine.calls == 3


def test_gives_up_after_max_attempts(flaky_server: tuple[Flaky, Running]) -> None:
    engine, running = flaky_server
    with running.client(retry=RetryPolicy(max_attempts=2, initial_backoff=0.001)) as client:
        with pytest.raises(errors.Unavailable, match="closed for a moment"):
            client.check("doc:1", "view", "user:ann")
    assert engine.calls == 2


def test_streams_retry_before_the_first_message(flaky_server: tuple[Flaky, Running]) -> None:
    engine, running = flaky_server
    with running.client(retry=FAST) as client:
        assert list(client.read(RelationshipFilter("doc"))) == []
    assert engine.calls == 3


def test_other_errors_are_not_retried() -> None:
    engine = Flaky(5, errors.InvalidArgument("bad request"))
    running = Running(engine)
    try:
        with running.client(retry=FAST) as client:
            with pytest.raises(errors.InvalidArgument):
                client.check("doc:1", "view", "user:ann")
    finally:
        running.stop()
    assert engine.calls == 1


def test_text_helpers(loaded: Client) -> None:
    revision = loaded.create("doc:t#viewer@user:tex")
    assert loaded.check_text("doc:t#view@user:tex").revision >= revision
    loaded.delete_relationships("doc:t#viewer@user:tex")
    assert not loaded.check_text("doc:t#view@user:tex").allowed
    with pytest.raises(errors.InvalidRelationship):
        loaded.touch("not a relationship")
    with pytest.raises(errors.InvalidRelationship):
        loaded.check("doc", "view", "user:ann")  # no id


def _self_signed(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed; it makes the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.slow
def test_tls(engine: Engine, tmp_path: pathlib.Path) -> None:
    cert, key = _self_signed(tmp_path)
    running = Running(engine, ServerConfig(listen="127.0.0.1:0", threads=4, tls_cert=str(cert), tls_key=str(key)))
    try:
        with Client(running.address, root_certificates=cert.read_bytes(), timeout=10) as client:
            revision = client.write_schema(SCHEMA)
            assert client.read_schema()[1] == revision
        with Client(running.address, tls=False, timeout=5, retry=RetryPolicy(max_attempts=1)) as plain:
            with pytest.raises(errors.Unavailable):
                plain.read_schema()
    finally:
        running.stop()
