"""Frozen settings shared by the engine, store and server; no logic."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_MAX_DEPTH: Final = 50
DEFAULT_BATCH_LIMIT: Final = 1000


@dataclass(frozen=True, slots=True)
class EngineConfig:
    max_depth: int = DEFAULT_MAX_DEPTH  # sub-questions deeper than this raise MaxDepthExceeded
    max_updates_per_write: int = DEFAULT_BATCH_LIMIT
