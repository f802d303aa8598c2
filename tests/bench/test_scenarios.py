"""The real scenarios at 10k on a fresh cache: the engine and every baseline agree with the
expected answers, and the dataset cache is reused. (Behaviour only: nothing here reads a time.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import cli, dataset, framework

from .test_framework import ctx

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cache")


def test_dataset_is_built_once_then_cached(cache: Path) -> None:
    first = dataset.load(10_000, 1, cache_dir=cache)
    assert first.meta["cached"] is False and first.meta["relationships"] == 10_000
    again = dataset.load(10_000, 1, cache_dir=cache)
    assert again.meta["cached"] is True
    store = again.open()
    try:
        assert store.statistics().relationships == 10_000
    finally:
        store.close()


@pytest.mark.parametrize(
    "name", ["uncached_check", "deep_check", "lookup_resources", "lookup_subjects", "write_single", "grpc_check",
             "spicedb_check", "spicedb_bulk_check", "check_by_object_size", "zipf_groups"]
)
def test_scenario_verifies_and_times(name: str, cache: Path, tmp_path: Path) -> None:
    from bench import scenarios  # noqa: F401

    c = ctx(tmp_path)
    c.cache_dir = cache
    result = framework.run_scenario(c, framework.REGISTRY[name], [10_000])
    assert result["status"] == "ok", result.get("reason")
    assert result["headline"]["ratio"] > 0


def test_cli_list_and_bad_filters(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    assert "uncached_check" in capsys.readouterr().out
    assert cli.main(["--scenario", "no_such_scenario"]) == 2
    assert cli.main(["--scenario", "cached_check", "--scale", "tiny"]) == 2


def test_spicedb_check_drives_a_peer_of_the_api_with_the_same_client(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``$RELENGINE_BENCH_SPICEDB`` names a server of SpiceDB's API (SpiceDB itself where it is
    installed): the scenario loads the world into it through WriteRelationships and times it
    with the same authzed client, its answers checked first. Here the peer is a second
    relengine server with a key of its own, which proves the loading and the driving."""
    from bench import scenarios  # noqa: F401
    from bench.spicedb_api import PEER_ENV, PEER_KEY_ENV

    from relengine.server.app import Server, ServerConfig
    from relengine.service import Engine

    engine = Engine.open(str(tmp_path / "peer"))
    server = Server(engine, ServerConfig(listen="127.0.0.1:0", preshared_key="peer-key"))
    server.start()
    try:
        monkeypatch.setenv(PEER_ENV, f"127.0.0.1:{server.port}")
        monkeypatch.setenv(PEER_KEY_ENV, "peer-key")
        c = ctx(tmp_path)
        c.cache_dir = cache
        result = framework.run_scenario(c, framework.REGISTRY["spicedb_check"], [10_000])
        assert result["status"] == "ok", result.get("reason")
        assert engine.store.statistics().relationships == 10_000
        labels = {m["label"] for m in result["measurements"]}
        assert "peer_client" in labels
        assert "peer vs relengine, client, threads, c=1" in result["headline"]["throughput"]
    finally:
        server.stop(grace=0)
        engine.close()


@pytest.mark.parametrize("name", ["pg_import", "pg_check", "pg_cached_check", "pg_lookup_resources", "pg_two_servers"])
def test_postgres_scenario_verifies_and_times(name: str, cache: Path, tmp_path: Path) -> None:
    from bench import pg_bench, pgcluster

    reason = pgcluster.unavailable_reason()
    if reason is not None and not pg_bench.os.environ.get(pg_bench.ENV):
        pytest.skip(reason)
    c = ctx(tmp_path)
    c.cache_dir = cache
    result = framework.run_scenario(c, framework.REGISTRY[name], [10_000])
    assert result["status"] == "ok", result.get("reason")
    assert result["headline"]["ratio"] > 0


def test_postgres_scenarios_are_skipped_with_the_reason_without_postgres(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import pg_bench

    monkeypatch.delenv(pg_bench.ENV, raising=False)
    monkeypatch.setattr(pg_bench, "unavailable_reason", lambda: "no PostgreSQL binaries under /nowhere")
    result = framework.run_scenario(ctx(tmp_path), framework.REGISTRY["pg_check"], [10_000])
    assert result["status"] == "skipped"
    assert "no PostgreSQL binaries under /nowhere" in result["reason"] and pg_bench.ENV in result["reason"]
