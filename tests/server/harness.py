"""Fixtures shared by tests/server and tests/client: an Engine on the LMDB store (or the memory
store with RELENGINE_TEST_STORE=memory), a real gRPC server on an ephemeral loopback port, clients."""

from __future__ import annotations

import os
import pathlib
from typing import Any, Iterator

import grpc
import pytest
from prometheus_client import CollectorRegistry

from relengine import Engine, EngineConfig
from relengine.client import Client
from relengine.engine.cache import CheckCache
from relengine.server.app import Server, ServerConfig
from relengine.server.metrics import ServerMetrics


class Uncached:
    """For engines that stand in for Engine: no answer is ever cached, so every Check goes to
    their ``check``."""

    cache = CheckCache(0)

    def cache_revision(self) -> None:
        return None

    def cached_check(self, *args: Any) -> None:
        return None

    def cached_answers(self, *args: Any) -> None:
        return None


ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
STORE = os.environ.get("RELENGINE_TEST_STORE", "lmdb")
KEY = "test-key"

SCHEMA = """\
definition user {}

definition group {
    relation member: user | group#member
}

definition doc {
    relation owner: user
    relation viewer: user | user:* | group#member
    relation banned: user

    permission edit = owner
    permission view = (viewer + edit) - banned
}
"""


def make_engine(path: pathlib.Path, config: EngineConfig | None = None) -> Engine:
    if STORE == "memory":
        from relengine.storage.memory import MemoryStore

        return Engine(MemoryStore(), config)
    return Engine.open(str(path), config)


class Running:
    """A started in-process server and what it serves."""

    def __init__(self, engine: Any, config: ServerConfig | None = None, metrics: ServerMetrics | None = None) -> None:
        self.config = config or ServerConfig(listen="127.0.0.1:0", threads=8)
        self.metrics = metrics
        self.server = Server(engine, self.config, metrics)
        self.server.start()
        self.address = self.server.address

    def client(self, **kwargs: Any) -> Client:
        kwargs.setdefault("timeout", 10.0)
        if self.config.preshared_key:
            kwargs.setdefault("preshared_key", self.config.preshared_key)
        return Client(self.address, **kwargs)

    def channel(self) -> grpc.Channel:
        return grpc.insecure_channel(self.address)

    def stop(self) -> None:
        self.server.stop(grace=0)


@pytest.fixture
def engine(tmp_path: pathlib.Path) -> Iterator[Engine]:
    e = make_engine(tmp_path / "data")
    yield e
    e.close()


@pytest.fixture
def running(engine: Engine) -> Iterator[Running]:
    server = Running(engine, metrics=ServerMetrics(CollectorRegistry()))
    yield server
    server.stop()


@pytest.fixture
def client(running: Running) -> Iterator[Client]:
    with running.client() as c:
        yield c


@pytest.fixture
def loaded(client: Client) -> Client:
    """A client of a server holding SCHEMA and a few relationships."""
    client.write_schema(SCHEMA)
    client.touch(
        "group:eng#member@user:ann",
        "doc:1#owner@user:cat",
        "doc:1#viewer@group:eng#member",
        "doc:2#viewer@user:ann",
        "doc:3#viewer@user:*",
        "doc:3#banned@user:bob",
    )
    return client
