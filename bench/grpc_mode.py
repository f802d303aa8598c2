"""The gRPC mode: ``relengine serve`` started by the bench as a subprocess on 127.0.0.1 (an
ephemeral port, loopback only) over a cached dataset, and ``relengine.client.Client`` driving it.

The client is expected to mirror ``Engine``: ``Client(target)``, ``client.check(resource,
permission, subject)`` returning something with ``.allowed``, ``client.close()``; an
``AsyncClient`` with the same coroutine methods enables the asyncio driver. Until
``relengine.server`` and ``relengine.client`` exist the gRPC scenarios are skipped, with that
reason in the report. The serve command line is a template (``RELENGINE_BENCH_SERVE`` overrides
it) with ``{python}``, ``{data_dir}``, ``{port}`` and ``{workers}``.
"""

from __future__ import annotations

import importlib.util
import os
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Awaitable, Callable, Final, Sequence

if TYPE_CHECKING:
    from relengine import CheckResponse
    from relengine.client import Client

    from .scenarios import Refs

    AsyncCheck = Callable[[Refs], Awaitable[CheckResponse]]
    MadeCheck = AsyncCheck | tuple[AsyncCheck, Callable[[], Awaitable[None]]]  # see driver.closed_loop_asyncio

SERVE_TEMPLATE: Final = "{python} -m relengine serve --data-dir {data_dir} --listen 127.0.0.1:{port} --workers {workers}"


def unavailable() -> str | None:
    """Why the gRPC mode cannot run here, or None if it can."""
    missing = [m for m in ("grpc", "relengine.server", "relengine.client") if _missing(m)]
    if missing:
        return (
            f"gRPC mode skipped: {', '.join(missing)} not importable yet "
            "(the server and client are being written; rerun when they land)"
        )
    try:
        from relengine.client import Client  # noqa: F401
    except ImportError as exc:
        return f"gRPC mode skipped: relengine.client has no Client ({exc})"
    return None


def _missing(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is None
    except (ImportError, ValueError):
        return True


def free_port() -> int:
    """An ephemeral loopback port (the kernel's pick; released just before the server binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Stopped:
    """How a server stopped: ``seconds`` from SIGTERM to its exit, its exit code, and whether
    it had to be killed (it had not exited ``wait`` seconds after SIGTERM)."""

    seconds: float
    exit_code: int
    killed: bool


class Server:
    """``relengine serve`` on a copy-free, read-only use of a dataset's store; stopped on close."""

    def __init__(
        self, data_dir: Path | str, workers: int = 1, *, log_dir: Path, ready_timeout: float = 60.0,
        metrics: bool = False,
    ) -> None:
        """``data_dir``: an LMDB data directory, or a PostgreSQL URI (``--datastore``)."""
        self.port = free_port()
        self.target = f"127.0.0.1:{self.port}"
        template = os.environ.get("RELENGINE_BENCH_SERVE", SERVE_TEMPLATE)
        if str(data_dir).startswith(("postgresql://", "postgres://")):
            template = template.replace("--data-dir {data_dir}", "--datastore {data_dir}")
        argv = shlex.split(template.format(
            python=shlex.quote(sys.executable), data_dir=shlex.quote(str(data_dir)), port=self.port, workers=workers,
        ))
        # With ``metrics``, Prometheus metrics at ``metrics_url`` (see ``metric``).
        self.metrics_url: str | None = None
        if metrics:
            metrics_port = free_port()
            argv += ["--metrics-listen", f"127.0.0.1:{metrics_port}"]
            self.metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        self.log_path = log_dir / f"serve-{self.port}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.close()
            raise

    def _wait_ready(self, timeout: float) -> None:
        import grpc

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"relengine serve exited with {self.proc.returncode}: {self.log_tail()}")
            channel = grpc.insecure_channel(self.target)
            try:
                grpc.channel_ready_future(channel).result(timeout=0.5)
                return
            except grpc.FutureTimeoutError:
                pass
            finally:
                channel.close()
        raise RuntimeError(f"relengine serve not ready on {self.target} after {timeout:.0f} s: {self.log_tail()}")

    def metric(self, name: str, timeout: float = 2.0) -> float | None:
        """The sum of the samples of metric ``name`` (over its labels) the server reports now, or
        None without metrics, when it does not answer, or when it has no such metric."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        if self.metrics_url is None:
            return None
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=timeout) as reply:  # loopback only
                text = reply.read().decode()
        except OSError:
            return None
        values = [sample.value for family in text_string_to_metric_families(text)
                  for sample in family.samples if sample.name == name]
        return sum(values) if values else None

    def log_tail(self, chars: int = 800) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self, wait: float = 10.0) -> Stopped:
        """SIGTERM (the server drains), then SIGKILL if it is still running ``wait`` s later."""
        started = time.monotonic()
        killed = False
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                killed = True
        return Stopped(round(time.monotonic() - started, 3), self.proc.returncode, killed)

    def close(self) -> None:
        self.stop()
        self._log.close()


def client(target: str) -> Client:
    from relengine.client import Client

    return Client(target)


def check_op(target: str, queries: Sequence[tuple[str, str, str, str]]) -> tuple[Callable[[Refs], CheckResponse], list[Refs]]:
    """(op, items) for a worker process: its own client, checks of ``queries``."""
    from relengine import ObjectRef, SubjectRef

    c = client(target)
    items = [(ObjectRef("container", cid), perm, SubjectRef(st, sid)) for cid, perm, st, sid in queries]
    return (lambda a: c.check(*a)), items


def echo_op(target: str, payload: bytes) -> tuple[Callable[[bytes], bytes], list[bytes]]:
    import grpc

    from .grpc_echo import METHOD, deadline_call

    channel = grpc.insecure_channel(target)
    return deadline_call(channel.unary_unary(METHOD)), [payload]


def async_check_factory(
    target: str, queries: Sequence[tuple[str, str, str, str]]
) -> tuple[Callable[[], MadeCheck], list[Refs]] | None:
    """(make_op, items) for the asyncio driver, if ``relengine.client`` has an AsyncClient."""
    try:
        from relengine.client import AsyncClient
    except ImportError:
        return None
    from relengine import ObjectRef, SubjectRef

    items = [(ObjectRef("container", cid), perm, SubjectRef(st, sid)) for cid, perm, st, sid in queries]

    def make_op() -> MadeCheck:
        c = AsyncClient(target)

        async def op(a: Refs) -> CheckResponse:
            return await c.check(*a)

        close = getattr(c, "close", None)
        if close is None:
            return op

        async def closing() -> None:
            result = close()
            if hasattr(result, "__await__"):
                await result

        return op, closing

    return make_op, items
