"""Frozen settings shared by the engine, store and server; no logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_DEPTH: Final = 50
DEFAULT_BATCH_LIMIT: Final = 1000
# The LMDB store's size limit (``--max-store-size``, ``max_map_size``): room for 100M
# relationships and their history. A store takes about 360 bytes per relationship (the 1M and
# 10M bench datasets: 357 and 315, indexes and changelog included), 36 GB for 100M; the map
# is sparse, so the limit costs no disk until it is used.
DEFAULT_MAX_STORE_SIZE: Final = 64 << 30


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_depth: int = DEFAULT_MAX_DEPTH  # sub-questions deeper than this raise MaxDepthExceeded
    max_updates_per_write: int = DEFAULT_BATCH_LIMIT
    quantization_seconds: float = 5.0  # minimize_latency reuses a revision for this long
    cache_size: int = 100_000  # entries in the check cache; 0 disables it
    # The group index (engine.groups, Zanzibar's Leopard): member tests of recursive group
    # relations answered from the closure of group membership, kept per Engine in memory.
    group_index: bool = True
    max_bulk_check_items: int = 10_000
    max_lookup_limit: int = 100_000
