"""``wire.spicedb.trace``: relengine's traces as SpiceDB's DebugInformation, node by node."""

from __future__ import annotations

from authzed.api.v1 import debug_pb2
from google.protobuf import text_format

from relengine.model import ObjectRef, Revision, SubjectRef, parse_relationship
from relengine.results import CaveatTrace, CheckExplanation, CheckResult, CheckTrace, Permissionship
from relengine.wire.spicedb import trace as st

Trace = debug_pb2.CheckDebugTrace
HAS, NO, CONDITIONAL = (
    Permissionship.HAS_PERMISSION, Permissionship.NO_PERMISSION, Permissionship.CONDITIONAL_PERMISSION,
)
SUBJECT = SubjectRef("user", "ann")
REL = parse_relationship("doc:1#viewer@user:ann[on_day]")


def node(relation: str, result: Permissionship | None, *children: CheckTrace, **kwargs: object) -> CheckTrace:
    return CheckTrace(
        resource=ObjectRef("doc", "1"), relation=relation, is_permission=relation == "view", subject=SUBJECT,
        result=None if result is None else CheckResult(result, ("day",) if result is CONDITIONAL else ()),
        children=children, duration=0.0015, **kwargs,  # type: ignore[arg-type]
    )


def test_each_node_becomes_a_check_debug_trace() -> None:
    caveat = CaveatTrace("on_day", "day == allowed", {"allowed": "tue"}, CONDITIONAL, REL, ("day",))
    viewer = node("viewer", CONDITIONAL, caveats=(caveat,))
    root = node("view", CONDITIONAL, viewer, node("banned", NO))
    info = st.debug_information(CheckExplanation(CheckResult(CONDITIONAL, ("day",)), Revision(3), root, " schema \n"))
    assert info.schema_used == "schema"
    check = info.check
    assert (check.resource.object_type, check.resource.object_id, check.permission) == ("doc", "1", "view")
    assert check.permission_type == Trace.PERMISSION_TYPE_PERMISSION
    assert check.result == Trace.PERMISSIONSHIP_CONDITIONAL_PERMISSION
    assert (check.subject.object.object_type, check.subject.object.object_id, check.subject.optional_relation) == (
        "user", "ann", "")
    assert check.duration.ToNanoseconds() == 1_500_000
    assert check.source == st.SOURCE and check.trace_operation_id
    first, second = check.sub_problems.traces
    assert first.permission_type == Trace.PERMISSION_TYPE_RELATION
    assert first.WhichOneof("resolution") == "was_cached_result"
    assert first.trace_operation_id == check.trace_operation_id
    assert first.caveat_evaluation_info == debug_pb2.CaveatEvalInfo(
        expression="day == allowed", caveat_name="on_day", result=debug_pb2.CaveatEvalInfo.RESULT_MISSING_SOME_CONTEXT,
        context=first.caveat_evaluation_info.context,
        partial_caveat_info=first.caveat_evaluation_info.partial_caveat_info,
    )
    assert dict(first.caveat_evaluation_info.context) == {"allowed": "tue"}
    assert list(first.caveat_evaluation_info.partial_caveat_info.missing_required_context) == ["day"]
    assert second.result == Trace.PERMISSIONSHIP_NO_PERMISSION and not second.HasField("caveat_evaluation_info")


def test_a_failed_node_is_unspecified_and_the_text_parses_back() -> None:
    root = node("view", None, node("viewer", None), error="max depth")
    text = st.proto_text(root)
    assert "\n" not in text
    parsed = text_format.Parse(text, debug_pb2.DebugInformation())
    assert parsed.check.result == Trace.PERMISSIONSHIP_UNSPECIFIED
    assert parsed.check.sub_problems.traces[0].result == Trace.PERMISSIONSHIP_UNSPECIFIED


def test_a_bulk_item_is_wrapped_as_spicedb_wraps_it() -> None:
    root = node("view", HAS, node("viewer", HAS, found=(REL,)))
    info = st.bulk_item_information(CheckExplanation(CheckResult(HAS), Revision(1), root, "s"))
    wrapper = info.check
    assert wrapper.duration.ToNanoseconds() == 0 and wrapper.permission == "view"
    assert wrapper.result == Trace.PERMISSIONSHIP_HAS_PERMISSION
    [inner] = wrapper.sub_problems.traces
    assert inner.duration.ToNanoseconds() == 1_500_000 and len(inner.sub_problems.traces) == 1
