"""SpiceDB's WatchService on ``Engine.watch``.

The stream is built as relengine's own Watch (``servicer.RelationshipsServicer.Watch``): the
Engine's changes are read with a short timeout, so that between revisions and while idle the
stream looks whether the server is stopping (``stopping``) or the client has gone, and ends
then; it holds no store transaction between reads.

Per committed revision, as SpiceDB sends them, each message with ``changes_through`` = that
revision's ZedToken: the relationship updates that pass the filters (TOUCH for a create or a
touch, DELETE), if any; ``schema_updated`` if the schema changed and schema updates were asked
for. Relationship updates are always included, whatever ``optional_update_kinds`` says (as in
SpiceDB). With checkpoints asked for, ``is_checkpoint`` messages come every
``SpiceDBOptions.watch_heartbeat`` seconds (SpiceDB's --watch-api-heartbeat, 1 s), once every
change up to the token they carry has been sent.

A revision with more than ``CHUNK`` matching updates (an import, a large delete) is sent in
several messages so that none grows past what clients accept; all but the last carry the
token of the revision before it, so ``changes_through`` always means "every change up to here
was sent" and a client resuming from any token misses nothing (it may see a part again).
"""

from __future__ import annotations

import threading
import time
from typing import Final, Iterator

import grpc
from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import watch_service_pb2 as ws
from authzed.api.v1 import watch_service_pb2_grpc as ws_grpc

from ...errors import InvalidArgument
from ...model import Consistency, Revision
from ...results import Change, Operation
from ...service import Engine
from ...service.transfer import matches
from ...wire.spicedb import convert as sc
from ...wire.spicedb import tokens
from ..servicer import WATCH_POLL_SECONDS
from .common import Base, SpiceDBOptions

CHUNK: Final = 1000  # relationship updates per message at most

_RELATIONSHIPS: Final = frozenset({ws.WATCH_KIND_UNSPECIFIED, ws.WATCH_KIND_INCLUDE_RELATIONSHIP_UPDATES})
_TOUCH: Final = core.RelationshipUpdate.OPERATION_TOUCH
_DELETE: Final = core.RelationshipUpdate.OPERATION_DELETE


class WatchServicer(Base, ws_grpc.WatchServiceServicer):
    """``stopping`` ends open Watch streams when the server shuts down."""

    def __init__(
        self, engine: Engine, options: SpiceDBOptions | None = None, stopping: threading.Event | None = None
    ) -> None:
        super().__init__(engine, options)
        self.stopping = stopping or threading.Event()

    def Watch(self, request: ws.WatchRequest, context: grpc.ServicerContext) -> Iterator[ws.WatchResponse]:
        self.valid(request)
        kinds = set(request.optional_update_kinds)
        object_types = frozenset(request.optional_object_types)
        if (not kinds or kinds & _RELATIONSHIPS) and object_types and request.optional_relationship_filters:
            raise InvalidArgument("cannot specify both object types and relationship filters")
        after = self._start(request)
        filters = [
            sc.filter_from(f, f"optional_relationship_filters[{i}]", any_type=True)
            for i, f in enumerate(request.optional_relationship_filters)
        ]
        if filters:
            reader = self.engine.store.snapshot(after)  # RevisionUnavailable outside the window
            try:
                for f in filters:
                    self.engine.check_filter(f, reader)
            finally:
                reader.close()
        schema_updates = ws.WATCH_KIND_INCLUDE_SCHEMA_UPDATES in kinds
        checkpoints = ws.WATCH_KIND_INCLUDE_CHECKPOINTS in kinds
        heartbeat = self.options.watch_heartbeat
        changes = self.engine.watch(after, timeout=WATCH_POLL_SECONDS)  # validates ``after`` up front
        last_checkpoint = time.monotonic()
        revision: Revision | None = None  # the revision being gathered
        updates: list[core.RelationshipUpdate] = []
        schema_changed = False

        def flush() -> Iterator[ws.WatchResponse]:
            token = self.token(revision)  # type: ignore[arg-type]
            if updates:
                yield ws.WatchResponse(updates=updates, changes_through=token)
            if schema_changed and schema_updates:
                yield ws.WatchResponse(schema_updated=True, changes_through=token)

        def wanted(change: Change) -> bool:
            rel = change.relationship
            assert rel is not None
            if object_types and rel.resource.type not in object_types:
                return False
            return not filters or any(matches(f, rel) for f in filters)

        while True:
            for change in changes:
                if revision is not None and change.revision != revision:
                    yield from flush()
                    after, updates, schema_changed = revision, [], False
                    if self._ended(context):
                        return
                revision = change.revision
                if change.relationship is None:
                    schema_changed = schema_changed or change.schema_changed
                elif wanted(change):
                    operation = _DELETE if change.operation is Operation.DELETE else _TOUCH
                    updates.append(core.RelationshipUpdate(
                        operation=operation, relationship=sc.relationship_to(change.relationship)
                    ))
                    if len(updates) >= CHUNK:  # a part: every change before this revision was sent
                        yield ws.WatchResponse(updates=updates, changes_through=self.token(after))
                        updates = []
            # No change for a poll interval: every change of ``revision`` has come.
            if revision is not None:
                yield from flush()
                after, revision, updates, schema_changed = revision, None, [], False
            if checkpoints and time.monotonic() - last_checkpoint >= heartbeat:
                yield ws.WatchResponse(is_checkpoint=True, changes_through=self.token(after))
                last_checkpoint = time.monotonic()
            if self._ended(context):
                return
            changes = self.engine.watch(after, timeout=WATCH_POLL_SECONDS)

    def _start(self, request: ws.WatchRequest) -> Revision:
        """The revision the stream starts after: the start cursor's, else a recent one (SpiceDB's
        optimized revision)."""
        if request.HasField("optional_start_cursor") and request.optional_start_cursor.token:
            try:
                revision, ours = tokens.decode(request.optional_start_cursor.token, self.store_id)
            except InvalidArgument as exc:
                raise InvalidArgument(f"failed to decode start revision: {exc}") from None
            if not ours:
                raise InvalidArgument("start revision was generated by a different datastore instance")
            return revision
        reader = self.engine.snapshot(Consistency.minimize_latency())
        try:
            return reader.revision
        finally:
            reader.close()

    def _ended(self, context: grpc.ServicerContext) -> bool:
        return self.stopping.is_set() or not context.is_active()


__all__ = ["CHUNK", "WatchServicer"]
