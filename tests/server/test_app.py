"""``relengine serve`` as real processes: several workers on one port and one LMDB directory."""

from __future__ import annotations

import os
import pathlib
import platform
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import IO, Iterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from relengine import Engine, errors
from relengine.cli import main
from relengine.client import Client
from relengine.model import Consistency
from relengine.server.app import Server, ServerConfig, apply_schema, join_address, split_address
from relengine.wire._proto.relengine.v1 import core_pb2, permissions_pb2, permissions_pb2_grpc

from .harness import KEY, SCHEMA

START_TIMEOUT = 30.0


class Process:
    """A ``relengine serve`` subprocess whose stderr (logfmt lines) is collected as it comes."""

    def __init__(self, args: list[str], env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "relengine", *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first stderr line (from now on, or already seen) matching ``pattern``."""
        regex = re.compile(pattern)
        for line in self.lines:
            if m := regex.search(line):
                return m
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r} in:\n" + "\n".join(self.lines)) from None
            if line is None:
                raise AssertionError(f"exited ({self.proc.wait()}) before {pattern!r}:\n" + "\n".join(self.lines))
            self.lines.append(line)
            if m := regex.search(line):
                return m

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM (the parent forwards it to its workers) and wait; kill the whole process group
        if that does not end it within ``timeout``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait()
        self._reader.join(timeout)
        if not self._reader.is_alive():
            assert self.proc.stderr is not None
            self.proc.stderr.close()
        while not self._queue.empty():
            line = self._queue.get_nowait()
            if line is not None:
                self.lines.append(line)
        return code


def _wait_serving(address: str, timeout: float = START_TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                if stub.Check(health_pb2.HealthCheckRequest(), timeout=1).status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
            grpc.channel_ready_future(channel).result(timeout=max(0.1, deadline - time.monotonic()))


@pytest.fixture
def workers(tmp_path: pathlib.Path) -> Iterator[tuple[Process, str, str]]:
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    env = dict(os.environ, RELENGINE_PRESHARED_KEY=KEY)
    process = Process(
        ["serve", "--data-dir", str(tmp_path / "data"), "--schema", str(schema), "--listen", "127.0.0.1:0",
         "--workers", "2", "--threads", "4", "--metrics-listen", "127.0.0.1:0", "--grace", "5"],
        env,
    )
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=ready .*listen=127\.0\.0\.1:(\d+)").group(1)
        metrics = "127.0.0.1:" + process.wait_for(r"event=metrics_listening .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)
        yield process, address, metrics
    finally:
        process.stop()


@pytest.mark.slow
def test_two_workers_share_port_store_and_metrics(workers: tuple[Process, str, str]) -> None:
    process, address, metrics_address = workers
    assert len(set(re.findall(r"event=serving pid=(\d+)", "\n".join(process.lines)))) == 2
    # Many short connections, so that both workers (SO_REUSEPORT) answer some.
    revision = None
    for i in range(12):
        with Client(address, preshared_key=KEY, timeout=10) as client:
            if i % 3 == 0:
                revision = client.touch(f"doc:{i}#viewer@user:ann")
            assert revision is not None
            assert client.check(f"doc:{i - i % 3}", "view", "user:ann", consistency=Consistency.at_least_as_fresh(revision)).allowed
    with Client(address, timeout=10) as anonymous:
        with pytest.raises(errors.RelEngineError) as info:
            anonymous.read_schema()
        assert info.value.code.value == "UNAUTHENTICATED"
    text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode()
    checks = sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("relengine_rpc_requests_total{") and 'service="relengine.v1.PermissionsService"' in line
        and 'method="Check"' in line and 'code="OK"' in line
    )
    assert checks == 12
    assert re.search(r"^relengine_revision \d", text, re.M)
    assert re.search(r"^relengine_cache_misses \d", text, re.M)
    # SIGTERM drains: an open Watch ends cleanly, every worker stops, the parent exits 0.
    with Client(address, preshared_key=KEY, timeout=None) as client:
        stream = client.watch()
        assert stream.revision is not None
        assert process.stop() == 0
        assert list(stream) == []
    log = "\n".join(process.lines)
    assert len(re.findall(r"event=stopped .*worker=\d", log)) == 2
    assert re.search(r"event=stopped .*workers=2 status=0", log)


@pytest.mark.slow
def test_single_worker_serves_and_stops(tmp_path: pathlib.Path) -> None:
    process = Process(["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--workers", "1",
                       "--metrics-listen", "127.0.0.1:0"])
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
        metrics_address = "127.0.0.1:" + process.wait_for(r"event=metrics_listening .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)
        with Client(address, timeout=10) as client:
            client.write_schema(SCHEMA)
        text = urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=10).read().decode()
        assert 'method="WriteSchema"' in text
    finally:
        assert process.stop() == 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        found = re.search(r"^VmRSS:\s+(\d+) kB", status.read(), re.M)
    assert found is not None
    return int(found.group(1)) / 1024


@pytest.fixture
def one_worker(tmp_path: pathlib.Path) -> Iterator[tuple[Process, str]]:
    """``serve --workers 1 --grace 1`` with SCHEMA (4 streams per connection), and its address."""
    schema = tmp_path / "schema.zed"
    schema.write_text(SCHEMA)
    process = Process(["serve", "--data-dir", str(tmp_path / "data"), "--schema", str(schema), "--listen", "127.0.0.1:0",
                       "--workers", "1", "--threads", "8", "--max-streams-per-connection", "4", "--grace", "1"])
    try:
        address = "127.0.0.1:" + process.wait_for(r"event=serving .*listen=127\.0\.0\.1:(\d+)").group(1)
        _wait_serving(address)
        yield process, address
    finally:
        process.stop()


@pytest.mark.slow
def test_sigterm_ends_the_server_within_the_grace_whatever_streams_are_open_or_broken(
    one_worker: tuple[Process, str],
) -> None:
    """Undecodable Import messages once kept grpc's stop from ever finishing (grpcio 1.85);
    open streams of every kind must not keep it either."""
    process, address = one_worker
    release = threading.Event()

    def held_open() -> Iterator[bytes]:
        release.wait(60)
        return
        yield

    with grpc.insecure_channel(address) as channel:
        import_ = channel.stream_unary("/relengine.v1.RelationshipsService/Import")
        for _ in range(10):
            with pytest.raises(grpc.RpcError) as info:
                import_(iter([b"\xff\xff\xff", b"\xff\xff"]), timeout=10)
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        # Streams left open: an Import whose client never ends it, a Watch, a health Watch.
        pending = import_.future(held_open(), timeout=60)
        watch = channel.unary_stream("/relengine.v1.RelationshipsService/Watch")(b"", timeout=60)
        watch.initial_metadata()
        health = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(), timeout=60)
        assert next(health).status == health_pb2.HealthCheckResponse.SERVING
        try:
            assert process.stop(timeout=1 + 5) == 0  # the grace, and a few seconds
        finally:
            release.set()
            pending.cancel()
    assert re.search(r"event=stopped .*worker=0", "\n".join(process.lines))


@pytest.mark.slow
def test_undecodable_bodies_leak_nothing_and_log_one_line(one_worker: tuple[Process, str]) -> None:
    """grpc's deserialization failure path kept ~19 KiB per call (grpcio 1.85) and logged a
    traceback each time; parsed in our code, a bad body costs nothing that stays."""
    process, address = one_worker
    with grpc.insecure_channel(address) as channel:
        expand = channel.unary_unary("/relengine.v1.PermissionsService/Expand")

        def bad_bodies(count: int) -> None:
            for _ in range(count):
                with pytest.raises(grpc.RpcError) as info:
                    expand(b"\xff\xff\xff", timeout=10)
                assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        bad_bodies(500)  # warm up: buffers, caches, the allocator's arenas
        before = _rss_mib(process.proc.pid)
        bad_bodies(3000)  # ~56 MiB kept with grpc's deserialization
        grown = _rss_mib(process.proc.pid) - before
    assert grown < 20, f"RSS grew by {grown:.1f} MiB over 3000 undecodable requests"
    assert process.stop() == 0
    undecodable = [line for line in process.lines if "event=undecodable_request" in line]
    assert len(undecodable) == 1  # the same line again within 10 s is only counted
    assert not any("Traceback" in line for line in process.lines)


@pytest.mark.slow
def test_a_second_server_on_a_port_in_use_refuses_to_start(tmp_path: pathlib.Path) -> None:
    """Workers bind with SO_REUSEPORT; another server doing the same must not quietly share
    the port (and the traffic) with the first."""
    listen = f"127.0.0.1:{_free_port()}"
    first = Process(["serve", "--data-dir", str(tmp_path / "one"), "--listen", listen, "--workers", "2", "--threads", "4"])
    try:
        first.wait_for(r"event=ready ")
        second = Process(["serve", "--data-dir", str(tmp_path / "two"), "--listen", listen, "--workers", "2", "--threads", "4"])
        try:
            assert second.proc.wait(START_TIMEOUT) == 2
        finally:
            second.stop()
        assert any(f"cannot listen on {listen}: another server already listens there" in line for line in second.lines)
        _wait_serving(listen)  # the first one serves on
    finally:
        assert first.stop() == 0


class _StuckExpand:
    """An Engine whose Expand never returns until ``release`` is set (as a handler that ignores
    its deadline would)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.entered = threading.Event()
        self.release = threading.Event()

    def __getattr__(self, name: str) -> object:
        return getattr(self._engine, name)

    def expand(self, *args: object, **kwargs: object) -> object:
        self.entered.set()
        self.release.wait(60)
        raise errors.Unavailable("released")


def test_stop_gives_up_waiting_past_the_grace_and_margin(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    stuck = _StuckExpand(engine)
    server = Server(stuck, ServerConfig(listen="127.0.0.1:0", threads=4, gc_interval=0))  # type: ignore[arg-type]
    server.start()
    channel = grpc.insecure_channel(server.address)
    try:
        request = permissions_pb2.ExpandRequest(
            resource=core_pb2.ObjectReference(object_type="doc", object_id="1"), permission="view"
        )
        call = permissions_pb2_grpc.PermissionsServiceStub(channel).Expand.future(request, timeout=60)
        assert stuck.entered.wait(10)
        assert server.stop(grace=0, margin=0.1) is False
        assert any(getattr(r, "event", None) == "stop_timeout" for r in caplog.records)
    finally:
        stuck.release.set()
        channel.close()
    with pytest.raises(grpc.RpcError):
        call.result(10)


def test_invalid_schema_refuses_to_start(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.zed"
    bad.write_text("definition user {}\ndefinition doc {\n  relation viewer: nobody\n}\n")
    assert main(["serve", "--data-dir", str(tmp_path / "data"), "--schema", str(bad), "--workers", "1"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:3:" in err and "nobody" in err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_stream_bounds_below_one_refuse_to_start(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], workers: str
) -> None:
    args = ["serve", "--data-dir", str(tmp_path / "data"), "--listen", "127.0.0.1:0", "--workers", workers]
    assert main([*args, "--max-streams-per-method", "0"]) == 2
    assert "--max-streams-per-method must be at least 1, got 0" in capsys.readouterr().err
    assert main([*args, "--max-streams-per-connection", "-1"]) == 2
    assert "--max-streams-per-connection must be at least 1, got -1" in capsys.readouterr().err


def test_schema_is_written_only_when_it_changed(tmp_path: pathlib.Path) -> None:
    data = str(tmp_path / "data")
    assert apply_schema(data, SCHEMA, "schema.zed") is True
    assert apply_schema(data, SCHEMA, "schema.zed") is False
    assert apply_schema(data, SCHEMA + "\ndefinition team {}\n", "schema.zed") is True
    with pytest.raises(errors.SchemaError):
        apply_schema(data, "definition {", "bad.zed")


def test_listen_addresses_split_and_join_with_ipv6_in_brackets() -> None:
    assert split_address("127.0.0.1:50051") == ("127.0.0.1", 50051)
    assert split_address("[::1]:0") == ("::1", 0)
    assert split_address(":50051") == ("0.0.0.0", 50051)  # no host: every interface
    assert join_address("::1", 8080) == "[::1]:8080"
    assert join_address("localhost", 8080) == "localhost:8080"
    for address in ("[::1]:8080", "localhost:9"):
        assert join_address(*split_address(address)) == address
    for bad in ("localhost", "localhost:", "localhost:http", "[::1]"):
        with pytest.raises(errors.InvalidArgument, match="not host:port"):
            split_address(bad)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt's arena limit is glibc's")
def test_the_server_limits_mallocs_arenas_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    """glibc's per-thread arenas made a busy server's own memory grow in steps for minutes."""
    from relengine.server.app import limit_malloc_arenas

    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert limit_malloc_arenas() is True
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False
