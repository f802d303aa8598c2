"""What every SpiceDB API servicer shares: the engine, the store's id for ZedTokens, the
options, and reading a request's consistency and deadline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import grpc
from authzed.api.v1 import core_pb2 as core

from google.rpc import status_pb2  # type: ignore[import-untyped]

from ...errors import Code, RelEngineError
from ...model import Consistency, Revision
from ...service import Engine
from ...wire.spicedb import tokens
from ...wire.spicedb.rules import validate
from ...wire.spicedb.status import error_status
from ..servicer import cancelled_of, deadline_of
from ..status import status_of


def spicedb_status(exc: BaseException, method: str = "") -> status_pb2.Status:
    """The status a failed call (or a failed CheckBulkPermissions item) of the SpiceDB API
    ends with: SpiceDB's code and ErrorInfo, or for INTERNAL ones the generic message with an
    incident id under which the error is logged."""
    if isinstance(exc, RelEngineError) and exc.code is not Code.INTERNAL:
        return error_status(exc)
    return status_of(exc, method)


@dataclass(frozen=True, slots=True)
class SpiceDBOptions:
    """How the SpiceDB API behaves where SpiceDB has a server flag for it."""

    mismatched_tokens: tokens.MismatchedTokens = tokens.MismatchedTokens.FULL
    max_read_limit: int = 1000  # ReadRelationships page
    max_lookup_limit: int = 1000  # LookupResources page
    max_delete_limit: int = 1000  # DeleteRelationships optional_limit
    max_preconditions: int = 1000  # per WriteRelationships / DeleteRelationships
    max_bulk_check_items: int = 10_000
    # ImportBulkRelationships: one transaction of at most this many (SpiceDB takes any size;
    # relengine bounds what one call holds in memory).
    max_import_relationships: int = 100_000
    # ExportBulkRelationships: relationships per message, the default and the most
    # ``optional_limit`` may ask (--max-bulk-export-relationships-limit); the deprecated
    # BulkExportRelationships allows more (SpiceDB's experimental server options).
    max_export_limit: int = 10_000
    max_experimental_export_limit: int = 100_000
    watch_heartbeat: float = 1.0  # seconds between Watch checkpoints (--watch-api-heartbeat)


class Base:
    def __init__(self, engine: Engine, options: SpiceDBOptions | None = None) -> None:
        self.engine = engine
        self.options = options or SpiceDBOptions()
        self._store_id: str | None = None

    @property
    def store_id(self) -> str:
        """The store's unique id, which ZedTokens carry (asked on first use)."""
        if self._store_id is None:
            self._store_id = self.engine.store.unique_id()
        return self._store_id

    def token(self, revision: Revision) -> core.ZedToken:
        return core.ZedToken(token=tokens.encode(revision, self.store_id))

    def consistency(self, request: Any) -> Consistency | None:
        return tokens.consistency(request, self.store_id, self.options.mismatched_tokens)

    @staticmethod
    def valid(request: Any) -> None:
        validate(request)

    @staticmethod
    def stop(context: grpc.ServicerContext) -> dict[str, Any]:
        return {"deadline": deadline_of(context), "cancelled": cancelled_of(context)}
