"""Validation files (validationfile.py): loading them with positions, running assertions and
the validation block, and clear errors (never a traceback) for bad input. The `relengine
validate` command's summary and exit codes are tests/test_cli.py's."""

from __future__ import annotations

import pathlib

import pytest

from relengine.validationfile import load_validation_file, run_validation_file

GOOD = """\
schema: |-
  definition user {}
  definition group {
    relation member: user | group#member
  }
  definition document {
    relation viewer: user | user:* | group#member
    relation editor: user
    relation banned: user
    permission view = (viewer + editor) - banned
  }
relationships: |-
  document:1#viewer@user:tom
  document:1#editor@user:tom
  document:1#viewer@group:eng#member
  group:eng#member@user:ann
  document:2#viewer@user:*
  document:2#banned@user:bob
assertions:
  assertTrue:
    - document:1#view@user:ann
    - document:2#view@user:anyone
  assertFalse:
    - document:2#view@user:bob
validation:
  document:1#view:
    - "[user:tom] is <document:1#viewer>/<document:1#editor>"
    - "[group:eng#member] is <document:1#viewer>"
    - "[user:ann] is <group:eng#member>"
  document:2#view:
    - "[user:* - {user:bob}] is <document:2#viewer>"
"""


def write(tmp_path: pathlib.Path, text: str, name: str = "v.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_assertions_and_validation_block_pass(tmp_path: pathlib.Path) -> None:
    report = run_validation_file(write(tmp_path, GOOD))
    assert report.error is None
    assert [o.status for o in report.outcomes] == ["passed"] * 5


def test_failures_name_the_line_of_the_assertion(tmp_path: pathlib.Path) -> None:
    text = GOOD.replace("    - document:2#view@user:bob\n", "    - document:2#view@user:bob\n    - document:1#view@user:tom\n")
    report = run_validation_file(write(tmp_path, text))
    failed = [o for o in report.outcomes if o.status == "failed"]
    assert len(failed) == 1 and failed[0].line == 25
    assert "expected NO_PERMISSION, got HAS_PERMISSION" in failed[0].render()


def test_validation_block_mismatch_is_reported(tmp_path: pathlib.Path) -> None:
    text = GOOD.replace("[user:* - {user:bob}]", "[user:*]").replace("<document:1#viewer>/<document:1#editor>", "<document:1#viewer>")
    outcomes = {o.text: o for o in run_validation_file(write(tmp_path, text)).outcomes}
    assert outcomes["document:1#view"].status == "failed"
    assert "user:tom: expected through document:1#viewer" in outcomes["document:1#view"].detail
    assert outcomes["document:2#view"].status == "failed"
    assert "exclusions" in outcomes["document:2#view"].detail


def test_relationship_lines_carry_their_file_line(tmp_path: pathlib.Path) -> None:
    loaded = load_validation_file(write(tmp_path, GOOD))
    assert [line for _, line in loaded.relationships] == [13, 14, 15, 16, 17, 18]
    assert [a.line for a in loaded.assertions] == [21, 22, 24]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("schema: |\n  definition user {}\nrelationships: [unclosed\n", "v.yaml:4:1: invalid YAML"),
        ("schema: |-\n  definition user {}\n  definition doc {\n    relation viewer: nobody\n  }\n", "v.yaml:4:22: object definition `nobody` not found"),
        ("schema: |-\n  definition user {}\nrelationships: |-\n  user:a#nope@@user:b\n", "v.yaml:4:3:"),
        ("schema: |-\n  definition user {}\nassertions:\n  assertTrue:\n    - not a relationship\n", "v.yaml:5:7:"),
        ("schema: |-\n  definition user {}\nassertions:\n  assertMaybe: []\n", "unknown assertion kind `assertMaybe`"),
        ("relationships: ''\n", "no `schema`"),
        ("schema: |-\n  definition user {}\nextra: 1\n", "unknown key `extra`"),
        ("schema: |-\n  definition user {}\n  definition doc {\n    relation viewer: user\n  }\nrelationships: |-\n  doc:1#viewer@user:a\n  doc:1#viewer@user:a\n", "repeats the one on line 7"),
        ("schema: |-\n  definition user {}\n  definition doc {\n    relation viewer: user\n  }\nrelationships: |-\n  doc:1#editor@user:a\n", "v.yaml:7: relation `editor` not found"),
        ("schemaFile: missing.zed\n", "cannot read schemaFile"),
    ],
)
def test_bad_files_give_positioned_errors(tmp_path: pathlib.Path, text: str, expected: str) -> None:
    report = run_validation_file(write(tmp_path, text))
    assert report.error is not None and expected in report.error, report.error
