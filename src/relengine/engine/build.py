"""The check pipeline, built in one place: ``build_checker`` composes it for each request.

A request's pipeline is a ``check.LocalChecker`` (the walk over the schema's evaluation plan,
the depth budget, the deadline, the cycle guard, the request's reads) whose sub-questions go
through a ``cache.CachingDispatcher`` in front of it when the request may use the cache. Both
are fixed when the checker is built; nothing rewires them afterwards. Lookups run on the same
checker (their forward checks go through the same pipeline) with its depth and deadline.

Every cache on the Check path, from the client inwards, and what keeps it right:

``client._common._REQUESTS``
    Serialized CheckRequests by (resource, permission, subject) strings, for questions without
    a consistency or context. The bytes are a pure function of the question: nothing to
    invalidate. Cleared when full (4,096). ``_REPLIES`` beside it maps a reply's bytes to its
    CheckResponse, equally pure (the revision is inside the bytes); cleared past 64.
``server.servicer.Replies`` (``PermissionsServicer.replies``)
    Serialized Check replies by serialized request, for one revision: only requests without a
    consistency or context whose answer came from the engine's cache, so the reply is what
    ``Engine.check`` says at that revision. Read only when the default consistency reads that
    revision now (``Engine.cache_revision``); a newer revision starts an empty table, which is
    all the invalidation a revision-keyed answer needs. A full table drops its oldest tenth.
``PermissionsServicer._plain``
    The serialized reply of each plain answer (yes or no) at a revision: immutable for its key
    (permissionship, revision). Cleared past 16.
``wire.convert._VALID_TYPES`` / ``_VALID_RELATIONS``
    Type and relation names already seen to be well-formed: syntax only, never invalid later.
    Stops growing at 10,000.
``Engine._responses``
    The shared CheckResponse of each plain answer at a revision: immutable for its key (answer,
    revision). Conditional answers are made each time. Cleared past 8.
``cache.CheckCache`` (``Engine.cache``; ``CachingDispatcher`` fills it)
    Answers by ``cache.cache_key``: revision, caveat context, question. An answer at revision R
    stays true at R, so nothing is invalidated; which revision a default-consistency request
    reads is ``service.revisions``' business (a write through the Engine moves it to the new
    head). Answers cut short by a data cycle, resting on a relationship that will expire, or
    computed at a caller-chosen ``now`` are never stored. A full cache drops its oldest tenth.
``service.schemas.Schemas``
    Compiled schemas by revision (a revision's schema never changes; cleared past 1,024) and by
    text (compiling is a pure function of the text; cleared past 16).
``CompiledSchema.derived``: ``plan.plan_for``, ``lookup.reverse_graph``
    The evaluation plan (closures per member, the recursive members, compiled caveats) and the
    lookup reverse graph of a schema, kept on the schema object they are derived from: they
    live and die with it, and a schema is immutable.
``groups.GroupIndex`` (``Engine._groups``)
    The closure of nested group membership, exact at one revision; a checker at another
    revision gets no view of it (or one after it moved forward along the changelog), and a
    query that sees the index move under it gives up (the walk answers).
``check.LocalChecker`` reads (``_objects``, ``_others``, ``_typed``), ``lookup.SubjectWalker.memo``
    What one request has read or derived at its one revision; dropped with the request.
    ``Engine.check`` keeps a few checkers for the next check at the same revision
    (``Engine._spares``, ``LocalChecker.reuse``): the reads go with the request all the same.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, Callable, Mapping

from ..schema.types import CompiledSchema
from ..storage.base import Reader
from .cache import CachingDispatcher, CheckCache, context_key
from .check import LocalChecker
from .dispatch import Dispatcher
from .groups import GroupView


def build_checker(
    schema: CompiledSchema,
    reader: Reader,
    *,
    max_depth: int,
    deadline: float | None = None,
    context: Mapping[str, Any] | None = None,
    cache: CheckCache | None = None,
    now: _dt.datetime | None = None,
    groups: GroupView | None = None,
) -> LocalChecker:
    """The pipeline answering one request at ``reader``'s revision: a checker over ``schema``,
    with ``cache`` in front of every dispatch when one is given (pass None for answers that
    must not be stored, such as those at a caller-chosen ``now``).

    ``max_depth`` is the request's depth budget, ``deadline`` a ``time.monotonic()`` instant
    (DeadlineExceeded past it), ``context`` the request's caveat context (part of every cache
    key). The checker serves one thread, for one request; build one per request.
    ``groups``: the group index at the reader's revision (``groups.GroupIndex.view``), which
    answers the indexed relations' member tests in place of the walk.
    """
    wrap: Callable[[LocalChecker], Dispatcher] | None = None
    if cache is not None:
        revision, key, answers = reader.revision.value, context_key(context), cache
        wrap = lambda checker: CachingDispatcher(checker, answers, revision, checker, key)  # noqa: E731
    return LocalChecker(schema, reader, max_depth=max_depth, now=now, deadline=deadline, context=context, wrap=wrap, groups=groups)
