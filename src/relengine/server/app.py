"""Build, run and stop the gRPC server: one process, or a parent supervising worker processes.

``Server`` is one grpc.Server around an Engine (the tests run it in-process on port 0).
``serve`` is ``relengine serve``: with ``workers > 1`` the parent starts that many worker
processes (``python -m relengine serve --workers 1`` with hidden ``--worker-index`` and
``--ready-fd``), each binding the same address with SO_REUSEPORT (the kernel spreads
connections over them) and opening its own Engine on the shared LMDB directory. The parent
first makes sure that nothing listens on the address yet (SO_REUSEPORT would let the workers
of a second server share it with the first), never opens LMDB or gRPC while workers run (it
writes ``--schema`` first and closes the store before starting any), forwards SIGTERM/SIGINT
to the workers, and serves the metrics of all of them (see ``metrics``). If a worker dies,
the parent stops the others and exits 1: restarting is left to the supervisor above (systemd,
Kubernetes).

A worker drains on SIGTERM: health goes NOT_SERVING, open Watch streams end, new RPCs are
refused while running ones get ``grace`` seconds, then the Engine (and LMDB) is closed. If
the stop is not over ``STOP_MARGIN_SECONDS`` after the grace period (a handler that does not
return), the worker logs ``stop_timeout`` and exits 1 at once, leaving the store as it is.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from dataclasses import dataclass
from typing import Any, Final, Sequence

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ..config import DEFAULT_MAX_STORE_SIZE
from ..errors import InvalidArgument, SchemaNotFound
from ..service import Engine
from .metrics import Periodic, ServerMetrics, refresher
from .pipeline import Pipeline
from . import spicedb
from .servicer import SERVICE_NAMES, add_servicers
from .streams import StreamLimits, StreamSlots

log = logging.getLogger("relengine.server")

DEFAULT_LISTEN: Final = "127.0.0.1:50051"
DEFAULT_MAX_MESSAGE_BYTES: Final = 4 * 1024 * 1024
READY_TIMEOUT_SECONDS: Final = 60.0
STOP_MARGIN_SECONDS: Final = 5.0  # how long past the grace period a stop may take
KEY_ENV: Final = "RELENGINE_PRESHARED_KEY"
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"


@dataclass(frozen=True, slots=True)
class ServerConfig:
    listen: str = DEFAULT_LISTEN  # host:port; port 0 picks a free one
    workers: int = 1
    threads: int = 32  # per worker; each open stream but health's Watch holds one (see ``streams``)
    preshared_key: str | tuple[str, ...] | None = None  # several: any of them is accepted (key rotation)
    tls_cert: str | None = None  # PEM files; both or neither
    tls_key: str | None = None
    metrics_listen: str | None = None  # host:port for /metrics (None: no metrics endpoint)
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    grace_seconds: float = 10.0
    reuse_port: bool = False
    gc_interval: float = 600.0  # seconds between housekeeping runs (expired relationships, old versions); 0: never
    max_streams_per_method: int | None = None  # open streams of one method; None: threads // 2
    max_streams_per_connection: int | None = None  # open streams of one connection; None: threads // 4
    max_store_size: int = DEFAULT_MAX_STORE_SIZE  # the store grows up to this many bytes (max_map_size)
    pool_min: int | None = None  # PostgreSQL: connections kept open per worker (None: the store's default)
    pool_max: int | None = None  # PostgreSQL: most connections per worker
    pool_timeout: float | None = None  # PostgreSQL: seconds a request waits for a connection
    spicedb: spicedb.SpiceDBOptions = spicedb.SpiceDBOptions()  # SpiceDB's API: its server-flag choices
    read_replicas: tuple[str, ...] = ()  # PostgreSQL URIs of read replicas of the datastore

    def store_options(self) -> dict[str, Any]:
        """What ``Engine.open`` is given besides the location."""
        options: dict[str, Any] = {"max_map_size": self.max_store_size}
        for name in ("pool_min", "pool_max", "pool_timeout"):
            if getattr(self, name) is not None:
                options[name] = getattr(self, name)
        return options

    def stream_limits(self) -> StreamLimits:
        return StreamLimits.for_threads(self.threads, self.max_streams_per_method, self.max_streams_per_connection)


def join_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise InvalidArgument(f"address {address!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


class Server:
    """One grpc.Server serving ``engine``: the relengine services, health and reflection.

    ``start()`` binds (``port`` is then the real one) and marks health SERVING; ``stop()``
    drains. The Engine belongs to the caller, who closes it after ``stop()``.
    """

    def __init__(self, engine: Engine, config: ServerConfig, metrics: ServerMetrics | None = None) -> None:
        self.engine = engine
        self.config = config
        self.metrics = metrics
        self.stopping = threading.Event()
        self.streams = StreamSlots(config.stream_limits())
        self._executor = futures.ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="relengine-rpc")
        options = [
            ("grpc.so_reuseport", 1 if config.reuse_port else 0),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
        ]
        pipeline = Pipeline(metrics, config.preshared_key or None, self.streams)
        gate = pipeline.gate()
        self._server = grpc.server(self._executor, options=options, interceptors=[gate] if gate else None)
        for add in add_servicers(engine, self.stopping):
            pipeline.register(self._server, add)
        for add in spicedb.add_servicers(engine, config.spicedb, self.stopping):
            pipeline.register(self._server, add, statuses=spicedb.STATUSES)
        self.health = health.HealthServicer(experimental_non_blocking=True)
        pipeline.register(self._server, lambda server: health_pb2_grpc.add_HealthServicer_to_server(self.health, server))
        names = (*SERVICE_NAMES, *spicedb.SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME)
        pipeline.register(self._server, lambda server: reflection.enable_server_reflection(names, server))
        self.port = self._bind()
        self._refresher = refresher(metrics, engine) if metrics is not None else None
        # Housekeeping: expired relationships and versions older than the store's window go.
        collect = getattr(engine, "gc", None)
        self._housekeeper = (
            Periodic(collect, config.gc_interval, "relengine-gc", "gc_failed")
            if collect is not None and config.gc_interval > 0
            else None
        )

    def _bind(self) -> int:
        cfg = self.config
        if bool(cfg.tls_cert) != bool(cfg.tls_key):
            raise InvalidArgument("TLS needs both --tls-cert and --tls-key")
        try:
            if cfg.tls_cert and cfg.tls_key:
                with open(cfg.tls_key, "rb") as key, open(cfg.tls_cert, "rb") as cert:
                    credentials = grpc.ssl_server_credentials([(key.read(), cert.read())])
                port = self._server.add_secure_port(cfg.listen, credentials)
            else:
                port = self._server.add_insecure_port(cfg.listen)
        except RuntimeError as exc:  # grpc's way of saying the bind failed
            raise InvalidArgument(f"cannot listen on {cfg.listen}: the address is in use or not available") from exc
        if port == 0:
            raise InvalidArgument(f"cannot listen on {cfg.listen}: the address is in use or not available")
        return port

    @property
    def address(self) -> str:
        host, _ = split_address(self.config.listen)
        return join_address(host, self.port)

    def start(self) -> None:
        self._server.start()
        if self._refresher is not None:
            self._refresher.start()
        if self._housekeeper is not None:
            self._housekeeper.start()
        self.health.set("", health_pb2.HealthCheckResponse.SERVING)
        for name in (*SERVICE_NAMES, *spicedb.SERVICE_NAMES):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float | None = None, margin: float = STOP_MARGIN_SECONDS) -> bool:
        """Refuse new RPCs, end Watch streams, give running RPCs ``grace`` seconds, then wait
        for them at most ``margin`` seconds more. Returns whether everything stopped in that
        time; if not, RPC threads are left behind (``serve`` then exits without waiting)."""
        grace = self.config.grace_seconds if grace is None else grace
        # The steps can block beyond any bound: health's NOT_SERVING waits until each Watch
        # stream took it, grpc's stop until every call is accounted for (grpcio 1.85 could
        # miss some, see ``_handlers``), the pool until every handler returned. Hence a
        # thread of their own, and a deadline.
        steps = threading.Thread(target=self._stop_steps, args=(grace,), name="relengine-stop", daemon=True)
        steps.start()
        steps.join(grace + margin)
        if steps.is_alive():
            log.error("not stopped in time", extra={"event": "stop_timeout", "grace": grace, "margin": margin})
            return False
        return True

    def _stop_steps(self, grace: float) -> None:
        self.health.enter_graceful_shutdown()
        self.stopping.set()
        self._server.stop(grace).wait()
        self._executor.shutdown(wait=True)
        if self._refresher is not None:
            self._refresher.stop()
        if self._housekeeper is not None:
            self._housekeeper.stop()


# -- relengine serve ----------------------------------------------------------------------------


def apply_schema(
    data_dir: str, text: str, source_name: str, *, max_store_size: int = DEFAULT_MAX_STORE_SIZE
) -> bool:
    """Write ``text`` as the schema of the store in ``data_dir`` unless it is already the stored
    one; returns whether it wrote. Raises SchemaError (with positions) if it does not compile."""
    from ..schema.compiler import compile_schema

    compile_schema(text, source_name)
    engine = Engine.open(data_dir, max_map_size=max_store_size)
    try:
        try:
            current, _ = engine.read_schema()
        except SchemaNotFound:
            current = None
        if current == text:
            return False
        revision = engine.write_schema(text, source_name)
        log.info("schema written", extra={"event": "schema_written", "source": source_name, "revision": revision.token()})
        return True
    finally:
        engine.close()


def serve(data_dir: str, config: ServerConfig, *, worker_index: int | None = None, ready_fd: int | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the process exit status."""
    config.stream_limits()  # bounds out of range: refused before anything starts
    if config.workers > 1 and worker_index is None:
        return _supervise(data_dir, config)
    return _run_worker(data_dir, config, worker_index or 0, ready_fd)


def _install_stop_handlers(stop: threading.Event) -> None:
    def handle(signum: int, frame: Any) -> None:
        log.info("stopping", extra={"event": "stopping", "signal": signal.Signals(signum).name})
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


MALLOC_ARENAS: Final = 2
_M_ARENA_MAX: Final = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Let glibc's malloc use at most ``arenas`` arenas in this process, unless
    ``MALLOC_ARENA_MAX`` says otherwise; returns whether the limit was set.

    glibc gives threads arenas of their own (up to eight per core); grpc's threads allocate in
    many of them and each keeps its fragments, so a busy server's own memory (RssAnon) rose in
    steps that looked like a leak: 72 -> 106 MiB over 200 s of Checks with 1% writes on the 1M
    dataset, flat at 68-79 MiB with two arenas (the engine alone stays flat either way). Python
    holds the GIL around most allocations, so fewer arenas cost it little. Not glibc (musl,
    macOS): nothing to do."""
    if os.environ.get("MALLOC_ARENA_MAX") or not sys.platform.startswith("linux"):
        return False
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols: libc's, no library search
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


def _run_worker(data_dir: str, config: ServerConfig, index: int, ready_fd: int | None) -> int:
    limit_malloc_arenas()  # before the server's threads start
    stop = threading.Event()
    _install_stop_handlers(stop)
    multiprocess = ready_fd is not None and bool(os.environ.get(MULTIPROC_ENV))
    metrics_server: Any = None
    metrics: ServerMetrics | None = None
    if multiprocess:
        metrics = ServerMetrics(None)  # samples go to PROMETHEUS_MULTIPROC_DIR; the parent serves them
    elif config.metrics_listen:
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        metrics = ServerMetrics(registry)
        host, port = split_address(config.metrics_listen)
        metrics_server, _ = start_http_server(port, host, registry=registry)
        log.info("metrics", extra={"event": "metrics_listening", "listen": join_address(host, metrics_server.server_port)})
    # After the fork/spawn: an LMDB environment never crosses one.
    engine = Engine.open(data_dir, read_replicas=config.read_replicas, **config.store_options())
    try:
        server = Server(engine, config, metrics)
        server.start()
        # What exists now (modules, the schema, the store's handles) lives as long as the
        # process: keep it out of every later garbage collection pass.
        gc.freeze()
        log.info(
            "serving",
            extra={"event": "serving", "listen": server.address, "worker": index, "tls": bool(config.tls_cert),
                   "auth": bool(config.preshared_key)},
        )
        if ready_fd is not None:
            os.write(ready_fd, b"ready\n")
            os.close(ready_fd)
            _wait_while_parent_lives(stop)
        else:
            stop.wait()
        if not server.stop():
            # Threads are left behind, maybe in the store: leave the store as it is (LMDB
            # needs no close to be consistent) and end the process, which waiting for those
            # threads at exit would keep alive.
            logging.shutdown()
            os._exit(1)
        log.info("stopped", extra={"event": "stopped", "worker": index})
    finally:
        engine.close()
        if metrics_server is not None:
            metrics_server.shutdown()
    return 0


def _wait_while_parent_lives(stop: threading.Event) -> None:
    """A worker also stops when its parent is gone (killed with no chance to forward SIGTERM)."""
    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            log.warning("parent exited; stopping", extra={"event": "orphaned"})
            return


def _placeholder(host: str) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket reserving a free port for the workers."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, 0))
    return sock


def _refuse_if_listening(host: str, port: int, listen: str) -> None:
    """InvalidArgument if a socket already listens on the address. The workers bind it with
    SO_REUSEPORT, which the kernel also grants to another server of the same user that does:
    both would start, and share the connections. A plain bind (with SO_REUSEADDR, as grpc's
    own, so that connections left in TIME_WAIT do not count) fails when something listens."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise InvalidArgument(f"cannot listen on {listen}: {exc.strerror}") from exc
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise InvalidArgument(f"cannot listen on {listen}: another server already listens there") from exc
                raise InvalidArgument(f"cannot listen on {listen}: {exc.strerror}") from exc


def _worker_command(data_dir: str, config: ServerConfig, listen: str, index: int, ready_fd: int) -> list[str]:
    cmd = [
        sys.executable, "-m", "relengine", "--log-level", logging.getLevelName(logging.getLogger().level),
        "serve", "--datastore" if "://" in data_dir else "--data-dir", data_dir, "--listen", listen, "--workers", "1",
        "--threads", str(config.threads), "--max-message-bytes", str(config.max_message_bytes),
        "--grace", str(config.grace_seconds), "--gc-interval", str(config.gc_interval), "--worker-index", str(index), "--ready-fd", str(ready_fd),
        "--max-store-size", str(config.max_store_size),
        "--mismatched-zedtoken", config.spicedb.mismatched_tokens.value,
    ]
    for option, value in (("--max-streams-per-method", config.max_streams_per_method),
                          ("--max-streams-per-connection", config.max_streams_per_connection),
                          ("--datastore-pool-min", config.pool_min), ("--datastore-pool-max", config.pool_max),
                          ("--datastore-pool-timeout", config.pool_timeout)):
        if value is not None:
            cmd += [option, str(value)]
    if config.tls_cert and config.tls_key:
        cmd += ["--tls-cert", config.tls_cert, "--tls-key", config.tls_key]
    for replica in config.read_replicas:
        cmd += ["--datastore-read-replica", replica]
    return cmd


def _supervise(data_dir: str, config: ServerConfig) -> int:
    stop = threading.Event()
    _install_stop_handlers(stop)
    host, port = split_address(config.listen)
    if port != 0:
        _refuse_if_listening(host, port, config.listen)
    holder = _placeholder(host) if port == 0 else None
    if holder is not None:
        port = holder.getsockname()[1]
    listen = join_address(host, port)
    env = dict(os.environ)
    if config.preshared_key:  # not on the command line, where `ps` shows it
        keys = (config.preshared_key,) if isinstance(config.preshared_key, str) else config.preshared_key
        if any("," in key for key in keys):
            raise InvalidArgument("a preshared key must not hold a comma")
        env[KEY_ENV] = ",".join(keys)
    metrics_dir: tempfile.TemporaryDirectory[str] | None = None
    metrics_server: Any = None
    if config.metrics_listen:
        metrics_dir = tempfile.TemporaryDirectory(prefix="relengine-metrics-")
        env[MULTIPROC_ENV] = metrics_dir.name
    workers: list[subprocess.Popen[bytes]] = []
    readers: dict[int, int] = {}
    status = 0
    try:
        for index in range(config.workers):
            read_end, write_end = os.pipe()
            cmd = _worker_command(data_dir, config, listen, index, write_end)
            workers.append(subprocess.Popen(cmd, env=env, pass_fds=(write_end,)))
            os.close(write_end)
            readers[read_end] = index
        if _wait_ready(readers, stop):
            if holder is not None:
                holder.close()
                holder = None
            if metrics_dir is not None and config.metrics_listen:
                metrics_server = _serve_multiprocess_metrics(config.metrics_listen, metrics_dir.name)
            log.info("ready", extra={"event": "ready", "listen": listen, "workers": config.workers})
            status = _watch_workers(workers, stop)
        else:
            status = 1
    finally:
        for fd in readers:
            os.close(fd)
        _stop_workers(workers, config.grace_seconds + 10.0, metrics_dir.name if metrics_dir else None)
        if holder is not None:
            holder.close()
        if metrics_server is not None:
            metrics_server.shutdown()
        if metrics_dir is not None:
            metrics_dir.cleanup()
    if any(w.returncode != 0 for w in workers):
        status = status or 1
    log.info("stopped", extra={"event": "stopped", "workers": len(workers), "status": status})
    return status


def _serve_multiprocess_metrics(address: str, path: str) -> Any:
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    host, port = split_address(address)
    server, _ = start_http_server(port, host, registry=registry)
    log.info("metrics", extra={"event": "metrics_listening", "listen": join_address(host, server.server_port)})
    return server


def _watch_workers(workers: Sequence[subprocess.Popen[bytes]], stop: threading.Event) -> int:
    """Until a stop signal (0), or until a worker exits by itself (1)."""
    while not stop.wait(0.2):
        for worker in workers:
            if worker.poll() is not None:
                log.error("worker exited", extra={"event": "worker_exited", "worker_pid": worker.pid, "status": worker.returncode})
                return 1
    return 0


def _wait_ready(readers: dict[int, int], stop: threading.Event) -> bool:
    """Wait until every worker wrote to its ready pipe; False if one closed it first (it died)."""
    pending = set(readers)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while pending and not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            log.error("workers not ready", extra={"event": "start_timeout", "pending": len(pending)})
            return False
        ready, _, _ = select.select(list(pending), [], [], min(remaining, 0.5))
        for fd in ready:
            if not os.read(fd, 64):
                log.error("worker failed to start", extra={"event": "worker_failed", "worker": readers[fd]})
                return False
            pending.discard(fd)
    return not pending


def _stop_workers(workers: Sequence[subprocess.Popen[bytes]], timeout: float, metrics_dir: str | None) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for worker in workers:
        try:
            worker.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("worker did not stop; killing it", extra={"event": "worker_killed", "pid": worker.pid})
            worker.kill()
            worker.wait()
        if metrics_dir is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(worker.pid, metrics_dir)  # type: ignore[no-untyped-call]
