"""Traced checks (``results.CheckExplanation``, ``results.CheckTrace``) as SpiceDB's
``authzed.api.v1.DebugInformation``: what ``with_tracing`` returns in ``debug_trace`` and what
``zed permission check --explain`` prints.

One ``CheckDebugTrace`` per node of the trace, each naming the resource, the permission or
relation and which of the two it is, the subject, the result (UNSPECIFIED where the walk below
ended in an error), the sub-problems in the order they were asked (``sub_problems``) or, for a
node without any, ``was_cached_result`` false (a HAS node without sub-problems is where the
subject was found, as SpiceDB means it), the caveat evaluated at the node when there was
exactly one, the node's duration, an operation id shared by the whole trace and the source
(``relengine:<hash of the host name>``). ``schema_used`` is the schema the check was answered
with.

Where relengine's trace says more than SpiceDB's message holds (how a node was reached, the
relationships found, several caveats at one node), the message leaves it out: the tree of
nodes is the same.
"""

from __future__ import annotations

import hashlib
import json
import socket
import uuid
from typing import Any, Final, Mapping

from authzed.api.v1 import core_pb2 as core
from authzed.api.v1 import debug_pb2
from google.protobuf import duration_pb2, struct_pb2, text_format

from ...results import CaveatTrace, CheckExplanation, CheckTrace, Permissionship

Trace = debug_pb2.CheckDebugTrace

_RESULT: Final[Mapping[Permissionship, Any]] = {
    Permissionship.NO_PERMISSION: Trace.PERMISSIONSHIP_NO_PERMISSION,
    Permissionship.HAS_PERMISSION: Trace.PERMISSIONSHIP_HAS_PERMISSION,
    Permissionship.CONDITIONAL_PERMISSION: Trace.PERMISSIONSHIP_CONDITIONAL_PERMISSION,
}
_CAVEAT_RESULT: Final[Mapping[Permissionship, Any]] = {
    Permissionship.NO_PERMISSION: debug_pb2.CaveatEvalInfo.RESULT_FALSE,
    Permissionship.HAS_PERMISSION: debug_pb2.CaveatEvalInfo.RESULT_TRUE,
    Permissionship.CONDITIONAL_PERMISSION: debug_pb2.CaveatEvalInfo.RESULT_MISSING_SOME_CONTEXT,
}


def _source() -> str:
    host = socket.gethostname().encode("utf-8", "replace")
    return "relengine:" + hashlib.blake2b(host, digest_size=8).hexdigest()


SOURCE: Final = _source()
"""``CheckDebugTrace.source`` of this process: ``relengine:`` and a hash of the host name."""


def debug_information(explanation: CheckExplanation) -> debug_pb2.DebugInformation:
    """The ``debug_trace`` of a traced CheckPermission."""
    return debug_pb2.DebugInformation(
        check=check_trace(explanation.trace), schema_used=explanation.schema_text.strip()
    )


def bulk_item_information(explanation: CheckExplanation) -> debug_pb2.DebugInformation:
    """The ``debug_trace`` of one item of a traced CheckBulkPermissions: as SpiceDB answers
    it, a node for the item (its resource, permission and result, duration 0) whose one
    sub-problem is the item's trace."""
    inner = check_trace(explanation.trace)
    wrapper = Trace(
        resource=inner.resource, permission=inner.permission, permission_type=inner.permission_type,
        subject=inner.subject, result=inner.result, duration=duration_pb2.Duration(),
        trace_operation_id=inner.trace_operation_id, source=inner.source,
        sub_problems=Trace.SubProblems(traces=[inner]),
    )
    return debug_pb2.DebugInformation(check=wrapper, schema_used=explanation.schema_text.strip())


def check_trace(trace: CheckTrace, operation_id: str | None = None) -> debug_pb2.CheckDebugTrace:
    """The CheckDebugTrace of ``trace`` and everything below it."""
    return _node(trace, operation_id or uuid.uuid4().hex)


def _node(trace: CheckTrace, operation_id: str) -> debug_pb2.CheckDebugTrace:
    subject = trace.subject
    out = Trace(
        resource=core.ObjectReference(object_type=trace.resource.type, object_id=trace.resource.id),
        permission=trace.relation,
        permission_type=Trace.PERMISSION_TYPE_PERMISSION if trace.is_permission else Trace.PERMISSION_TYPE_RELATION,
        subject=core.SubjectReference(
            object=core.ObjectReference(object_type=subject.type, object_id=subject.id),
            optional_relation=subject.relation or "",
        ),
        result=Trace.PERMISSIONSHIP_UNSPECIFIED if trace.result is None else _RESULT[trace.result.permissionship],
        trace_operation_id=operation_id,
        source=SOURCE,
    )
    out.duration.FromNanoseconds(int(trace.duration * 1e9))
    if trace.children:
        out.sub_problems.traces.extend(_node(child, operation_id) for child in trace.children)
    else:
        out.was_cached_result = False
    if len(trace.caveats) == 1:
        out.caveat_evaluation_info.CopyFrom(_caveat(trace.caveats[0]))
    return out


def _caveat(caveat: CaveatTrace) -> debug_pb2.CaveatEvalInfo:
    out = debug_pb2.CaveatEvalInfo(
        expression=caveat.expression, result=_CAVEAT_RESULT[caveat.result], caveat_name=caveat.name,
        context=_struct(caveat.context),
    )
    if caveat.missing_parameters:
        out.partial_caveat_info.missing_required_context.extend(caveat.missing_parameters)
    return out


def _struct(context: Mapping[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(json.loads(json.dumps(dict(context), default=str)))  # dates and the like as text
    return out


def proto_text(trace: CheckTrace, schema_text: str = "") -> str:
    """``DebugInformation`` of a trace as protobuf text: the ``debug_trace_proto_text`` that
    SpiceDB adds to the ErrorInfo of a traced check that failed."""
    info = debug_pb2.DebugInformation(check=check_trace(trace), schema_used=schema_text.strip())
    return text_format.MessageToString(info, as_one_line=True)


__all__ = ["SOURCE", "bulk_item_information", "check_trace", "debug_information", "proto_text"]
