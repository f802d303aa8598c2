"""The gRPC echo service: a generic handler returning the request bytes, the transport floor of
the gRPC mode. ``python -m bench.grpc_echo`` serves on 127.0.0.1 (an ephemeral port, printed as
the first line of stdout) until stdin closes or it is terminated.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from concurrent import futures
from typing import TYPE_CHECKING, Callable, Final

if TYPE_CHECKING:
    import grpc

METHOD: Final = "/bench.Echo/Echo"


def _handler() -> grpc.GenericRpcHandler:
    import grpc

    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request

    # No (de)serializers: bytes in, bytes out.
    handler: grpc.RpcMethodHandler[bytes, bytes] = grpc.unary_unary_rpc_method_handler(echo)
    return grpc.method_handlers_generic_handler("bench.Echo", {"Echo": handler})


def serve(port: int = 0, workers: int = 16) -> tuple[grpc.Server, int]:
    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((_handler(),))
    bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server, bound


def deadline_call(stub: grpc.UnaryUnaryMultiCallable[bytes, bytes]) -> Callable[[bytes], bytes]:
    """``stub`` called with the deadline ``relengine.client.Client`` sets on every call by
    default: a deadline costs the gRPC core a timer on both sides, so the echo carries one too
    (the same client stack for both sides)."""
    from relengine.client import DEFAULT_TIMEOUT

    def call(payload: bytes) -> bytes:
        return stub(payload, timeout=DEFAULT_TIMEOUT)

    return call


class EchoProcess:
    """The echo server in a subprocess on loopback; ``call(payload)`` from this process."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.grpc_echo"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.isdigit():
            self.close()
            raise RuntimeError(f"the gRPC echo server did not start: {line!r}")
        self.target = f"127.0.0.1:{line}"

    def client(self) -> Callable[[bytes], bytes]:
        import grpc

        channel = grpc.insecure_channel(self.target)
        grpc.channel_ready_future(channel).result(timeout=20)
        return deadline_call(channel.unary_unary(METHOD))

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.terminate()
                self.proc.wait(timeout=5)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.grpc_echo", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    server, port = serve(args.port)
    print(port, flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin (or dies)
    except KeyboardInterrupt:
        pass
    server.stop(grace=0.5)
    time.sleep(0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
