"""Bulk import (storage/importer.py) into both stores: formats, validation, errors, restarts."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from relengine.errors import InvalidRelationship, UnknownRelation
from relengine.model import Relationship, RelationshipFilter, Revision
from relengine.results import Operation
from relengine.storage.importer import ImportProgress, import_relationships


def everything(store: Any) -> list[str]:
    reader = store.snapshot()
    return sorted(
        str(r) for rtype in ("doc", "folder", "org/team/doc") for r in reader.read(RelationshipFilter(rtype))
    )


TEXT = """\
// a comment
doc:d1#viewer@user:ann

   doc:d1#viewer@group:eng#member
doc:d2#viewer@user:*
doc:d2#editor@user:bob#...
doc:d3#viewer@user:cid[only_weekdays:{"day": "mon"}]
doc:d4#viewer@user:dan[expiration:2300-01-01T00:00:00Z]
  // indented comment
"""
TEXT_RELATIONSHIPS = sorted([
    "doc:d1#viewer@user:ann",
    "doc:d1#viewer@group:eng#member",
    "doc:d2#viewer@user:*",
    "doc:d2#editor@user:bob",
    'doc:d3#viewer@user:cid[only_weekdays:{"day":"mon"}]',
    "doc:d4#viewer@user:dan[expiration:2300-01-01T00:00:00Z]",
])


def test_text_lines_with_comments_caveats_and_expirations(store: Any) -> None:
    result = import_relationships(store, TEXT.splitlines())
    assert (result.lines, result.relationships, result.changed, result.error_count) == (9, 6, 6, 0)
    assert result.revision == store.head_revision() == Revision(1)
    assert everything(store) == TEXT_RELATIONSHIPS


@pytest.mark.parametrize(
    "lines",
    [
        ["# a comment", "doc:d1#viewer@user:ann", "  # indented", "doc:d2#viewer@user:bob"],  # all plain: one regex
        ["#", "doc:d1#viewer@user:ann", "doc:d2#viewer@user:bob[expiration:2300-01-01T00:00:00Z]", "# last"],
    ],
    ids=["plain", "per-line"],
)
def test_hash_lines_are_comments_as_slash_lines_are(store: Any, lines: list[str]) -> None:
    result = import_relationships(store, lines, on_error="skip")
    assert (result.relationships, result.error_count) == (2, 0)


def test_an_open_stream_and_a_path_read_the_same(store: Any, tmp_path: Path) -> None:
    path = tmp_path / "rels.txt"
    path.write_text(TEXT.replace("\n", "\r\n"), newline="")
    assert import_relationships(store, path).relationships == 6
    assert import_relationships(store, io.StringIO(TEXT)).changed == 0
    assert everything(store) == TEXT_RELATIONSHIPS


def test_batches_commit_separately_and_report_progress(store: Any) -> None:
    lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(10)]
    seen: list[ImportProgress] = []
    if hasattr(store, "bulk_load"):  # a BatchLoader: the first import into an empty store is one revision
        import_relationships(store, lines[:1])
        lines = lines[1:] + ["doc:d10#viewer@user:u10"]
    head = store.head_revision().value
    result = import_relationships(store, lines, batch_size=4, progress=seen.append)
    progress = [(p.lines, p.relationships, p.revision.value) for p in seen]
    if hasattr(store, "bulk_load"):  # progress as batches are read: the revision is known at the end
        progress = [(lines, rels, head + i + 1) for i, (lines, rels, _) in enumerate(progress)]
    assert progress == [(4, 4, head + 1), (8, 8, head + 2), (10, 10, head + 3)]
    assert result.relationships == 10 and store.head_revision() == Revision(head + 3)


def test_a_batch_loader_takes_a_first_import_in_one_revision(store: Any) -> None:
    if not hasattr(store, "bulk_load"):
        pytest.skip("not a BatchLoader: every store's batches are covered above")
    lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(10)] + ["doc:d0#viewer@user:u0[cav_one]"]
    seen: list[ImportProgress] = []
    result = import_relationships(store, lines, batch_size=4, progress=seen.append)
    assert [(p.lines, p.relationships) for p in seen] == [(4, 4), (8, 8), (11, 11)]
    assert (result.relationships, result.changed, result.revision) == (11, 10, Revision(1))
    assert store.head_revision() == Revision(1)
    found = everything(store)
    assert len(found) == 10 and "doc:d0#viewer@user:u0[cav_one]" in found  # the later row won
    changes = list(store.watch(Revision(0), timeout=0))
    assert sorted(str(c.relationship) for c in changes) == found
    assert {(c.revision, c.operation) for c in changes} == {(Revision(1), Operation.TOUCH)}


def test_a_bad_line_ends_a_batch_loaded_import_with_what_came_before_written(store: Any) -> None:
    lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(8)] + ["doc:d8#viewer@"]
    with pytest.raises(InvalidRelationship, match="line 9"):
        import_relationships(store, lines, batch_size=4)
    assert len(everything(store)) == 8


def test_batches_may_exceed_the_write_batch_limit(make_store: Any) -> None:
    store = make_store(batch_limit=10)
    lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(100)]
    assert import_relationships(store, lines).relationships == 100
    assert store.head_revision() == Revision(1)


def test_an_import_can_be_run_again(store: Any) -> None:
    lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(20)]
    import_relationships(store, lines[:12], batch_size=5)
    head = store.head_revision()
    result = import_relationships(store, lines, batch_size=5)
    assert result.relationships == 20 and result.changed == 8
    assert store.head_revision().value == head.value + 2  # batches 1 and 2 changed nothing
    assert len(everything(store)) == 20


def test_touch_semantics_replace_caveats(store: Any) -> None:
    import_relationships(store, ["doc:d1#viewer@user:ann[cav_one]"])
    result = import_relationships(
        store, ["doc:d1#viewer@user:ann", "doc:d1#viewer@user:ann[cav_two]"]
    )
    assert result.changed == 1
    assert everything(store) == ["doc:d1#viewer@user:ann[cav_two]"]


BAD = [
    "doc:d1#viewer@user:ann",
    "doc:d1#viewer@user",  # 2
    "doc:d1#Viewer@user:ann",  # 3
    "doc:d2#viewer@user:bob",
    "doc:d3#viewer@user:*#member",  # 5
    "d:d4#viewer@user:ann",  # 6: type name too short
    "doc:" + "x" * 1025 + "#viewer@user:ann",  # 7
    "doc:" + "x" * 1024 + "#viewer@user:ann",
    "doc:d5#viewer@user:ann[broken",  # 9
]


def test_skip_reports_bad_lines_with_their_numbers(store: Any) -> None:
    result = import_relationships(store, BAD, on_error="skip", batch_size=4)
    assert [e.line for e in result.errors] == [2, 3, 5, 6, 7, 9]
    assert result.error_count == 6 and result.relationships == 3
    assert "user" in result.errors[0].text and "not of the form" in result.errors[0].message
    assert "invalid relation 'Viewer'" in result.errors[1].message
    assert "1025 characters" in result.errors[4].message
    assert str(result.errors[0]).startswith("line 2: ")
    assert len(everything(store)) == 3


def test_skip_keeps_at_most_max_errors(store: Any) -> None:
    result = import_relationships(store, ["nope"] * 10, on_error="skip", max_errors=3)
    assert (len(result.errors), result.error_count) == (3, 10)


def test_abort_stops_at_the_first_batch_with_a_bad_line(store: Any) -> None:
    with pytest.raises(InvalidRelationship, match="^line 5: ") as info:
        lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(1, 5)] + BAD[1:3] + BAD[:1]
        import_relationships(store, lines, batch_size=3)
    assert info.value.details["line"] == 5
    assert [e["line"] for e in info.value.details["errors"]] == [5, 6]  # type: ignore[attr-defined]
    # The first batch (lines 1-3) was committed, the failing one (4-6) was not.
    assert everything(store) == [f"doc:d{i}#viewer@user:u{i}" for i in range(1, 4)]


def test_validate_runs_once_per_shape_and_its_verdict_applies_to_all(store: Any) -> None:
    calls: list[str] = []

    def validate(rel: Relationship) -> None:
        calls.append(str(rel))
        if rel.subject.id == "*":
            raise InvalidRelationship(f"{rel.relation} does not allow {rel.subject.type}")
        if rel.relation == "owner":
            raise UnknownRelation(f"{rel.relation} does not allow {rel.subject.type}")

    lines = [f"doc:d{i}#viewer@user:u{i}" for i in range(50)]
    lines += ["doc:x#viewer@user:*", "doc:y#owner@user:ann", "doc:z#owner@user:bob"]
    lines += [f"doc:c{i}#viewer@user:u{i}[cav]" for i in range(3)]
    result = import_relationships(store, lines, validate=validate, on_error="skip", batch_size=20)
    assert [(e.line, e.message) for e in result.errors] == [
        (51, "viewer does not allow user"),
        (52, "owner does not allow user"),
        (53, "owner does not allow user"),
    ]
    assert sorted(calls) == sorted(
        ["doc:d0#viewer@user:u0", "doc:x#viewer@user:*", "doc:y#owner@user:ann", "doc:c0#viewer@user:u0[cav]"]
    )
    assert result.relationships == 53


CSV = """\
resource_type,resource_id,relation,subject_type,subject_id,subject_relation,caveat_name,caveat_context,expiration
doc,d1,viewer,user,ann
doc,d1,viewer,group,eng,member
doc,d2,viewer,user,bob,...
doc,d3,viewer,user,cid,,only_weekdays,"{""day"": ""mon""}"
doc,d4,viewer,user,dan,,,,2300-01-01T00:00:00Z
doc,d5,viewer,user
doc,d6,viewer,user,a b
doc,d7,viewer@user:x,user,y

doc,d8,viewer,user,eve,,,{}
"""


def test_csv_with_a_header_optional_columns_and_bad_rows(store: Any, tmp_path: Path) -> None:
    path = tmp_path / "rels.csv"
    path.write_text(CSV)
    result = import_relationships(store, path, on_error="skip")
    assert [(e.line, e.message.split(" (")[0]) for e in result.errors] == [
        (7, "expected 5 to 9 columns"),
        (8, "a name or id field holds one of ':#@[]' or whitespace"),
        (9, "a name or id field holds one of ':#@[]' or whitespace"),
        (11, "caveat_context is set but caveat_name is empty"),
    ]
    assert everything(store) == sorted([
        "doc:d1#viewer@user:ann",
        "doc:d1#viewer@group:eng#member",
        "doc:d2#viewer@user:bob",
        'doc:d3#viewer@user:cid[only_weekdays:{"day":"mon"}]',
        "doc:d4#viewer@user:dan[expiration:2300-01-01T00:00:00Z]",
    ])


def test_csv_without_a_header(store: Any) -> None:
    result = import_relationships(store, io.StringIO("doc,d1,viewer,user,ann\n"), "csv")
    assert result.relationships == 1


VALIDATION_FILE = """\
---
schema: |-
  definition user {}
relationships: |-
  // comment
  doc:d1#viewer@user:ann
  doc:d1#viewer@user:
  doc:d2#viewer@user:bob
assertions:
  assertTrue: []
"""


def test_yaml_validation_file_reports_file_line_numbers(store: Any, tmp_path: Path) -> None:
    path = tmp_path / "file.yaml"
    path.write_text(VALIDATION_FILE)
    result = import_relationships(store, path, on_error="skip")
    assert [e.line for e in result.errors] == [7]
    assert everything(store) == ["doc:d1#viewer@user:ann", "doc:d2#viewer@user:bob"]


def test_yaml_folded_block_and_lists(store: Any) -> None:
    folded = "relationships: >-\n  doc:d1#viewer@user:ann\n\n  doc:d2#viewer@user:bob\n"
    assert import_relationships(store, io.StringIO(folded), "yaml").relationships == 2
    listed = "- doc:d3#viewer@user:ann\n- doc:d4#viewer@user\n- doc:d5#viewer@user:ann\n"
    result = import_relationships(store, io.StringIO(listed), "yaml", on_error="skip")
    assert [e.line for e in result.errors] == [2]
    keyed = "relationships:\n  - doc:d6#viewer@user:ann\n"
    assert import_relationships(store, io.StringIO(keyed), "yaml").relationships == 1
    assert len(everything(store)) == 5


def test_yaml_that_holds_no_relationships(store: Any) -> None:
    assert import_relationships(store, io.StringIO("schema: x\n"), "yaml").relationships == 0
    with pytest.raises(InvalidRelationship, match="does not parse"):
        import_relationships(store, io.StringIO("relationships: [\n"), "yaml")
    with pytest.raises(InvalidRelationship, match="must be a string"):
        import_relationships(store, io.StringIO("- {a: 1}\n"), "yaml")


def test_prefixed_type_names_and_long_ids(store: Any) -> None:
    long_id = "y" * 1024
    lines = [f"org/team/doc:{long_id}#viewer@org/team/user:ann", "org/team/doc:a#viewer@user:b"]
    assert import_relationships(store, lines).relationships == 2
    assert everything(store) == sorted(lines)


def test_the_source_is_read_one_batch_at_a_time(store: Any) -> None:
    """Constant memory: when a batch has committed, no line past it has been read."""
    pulled = 0

    def lines() -> Any:
        nonlocal pulled
        for i in range(95):
            pulled += 1
            yield f"doc:d{i % 9}#viewer@user:u{i}\n"

    seen: list[tuple[int, int]] = []
    result = import_relationships(store, lines(), batch_size=10, progress=lambda p: seen.append((p.lines, pulled)))
    assert seen == [(n, n) for n in (*range(10, 95, 10), 95)]
    assert result.relationships == 95 and len(everything(store)) == 95
