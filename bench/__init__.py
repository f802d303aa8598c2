"""relengine's bench suite: ``python -m bench`` from the repository root.

- ``world``: the deterministic tag-manager world (accounts, containers, users, nested groups)
  at 10k to 10M relationships, and what it knows (who administers what).
- ``naive``: the naive dict evaluator: expected answers, and the in-process baseline.
- ``dataset``: worlds loaded through the bulk import path into LMDB stores, cached in
  ``bench/.cache/`` by generator version, scale and seed.
- ``framework``: scenarios (name, tags, setup, queries with expected answers), verification
  before timing, interleaved reps; ``scenarios``: the scenarios themselves.
- ``driver``: closed loop (one caller, threads, processes, asyncio) and open loop (fixed
  rate, latency from the intended send time); ``hist``: HdrHistogram summaries.
- ``baselines``: raw py-lmdb floors, a gRPC echo (``grpc_echo``); ``grpc_mode``: the server.
- ``report``, ``plots``, ``compare``: results JSON, Markdown, PNGs; diffs of two runs.
- ``soak``: a server under load for a long time with abusive clients, judged on drift.
"""

from typing import Final

BENCH_VERSION: Final = 1
