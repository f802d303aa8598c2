"""results.py's own contract: what a check answer says, cursors (their round trip, and
InvalidArgument for anything that is not one), streams and the text of an expand tree."""

from __future__ import annotations

import base64
import string
from typing import Any

import msgpack
import pytest

from relengine.errors import InvalidArgument
from relengine.model import ObjectRef, Revision, SubjectRef
from relengine.results import (
    CheckResponse,
    CheckResult,
    ExpandNode,
    Permissionship,
    Stream,
    decode_cursor,
    encode_cursor,
)


@pytest.mark.parametrize(
    ("permissionship", "allowed"),
    [
        (Permissionship.HAS_PERMISSION, True),
        (Permissionship.NO_PERMISSION, False),
        (Permissionship.CONDITIONAL_PERMISSION, False),
    ],
)
def test_only_a_plain_yes_is_allowed(permissionship: Permissionship, allowed: bool) -> None:
    result = CheckResult(permissionship, ("ip",) if permissionship is Permissionship.CONDITIONAL_PERMISSION else ())
    response = CheckResponse(result, Revision(4))
    assert result.allowed is allowed and response.allowed is allowed
    assert response.permissionship is permissionship
    assert response.result.missing_parameters == result.missing_parameters


def test_a_check_result_lacks_no_parameters_unless_told() -> None:
    assert CheckResult(Permissionship.HAS_PERMISSION).missing_parameters == ()
    assert CheckResult(Permissionship.HAS_PERMISSION) == CheckResult(Permissionship.HAS_PERMISSION, ())

URL_SAFE = set(string.ascii_letters + string.digits + "-_")


@pytest.mark.parametrize(
    "parts",
    [
        pytest.param((), id="revision-only"),
        pytest.param(("doc", "d07"), id="strings"),
        pytest.param(("é/|=+", 3, None, True, ["nested", 1]), id="mixed"),
        pytest.param(("x" * 500,), id="long"),
    ],
)
@pytest.mark.parametrize("revision", [Revision(0), Revision(7), Revision(2**40)])
def test_cursors_round_trip(revision: Revision, parts: tuple[Any, ...]) -> None:
    cursor = encode_cursor(revision, *parts)
    assert decode_cursor(cursor, *(type(part) for part in parts)) == (revision, list(parts))
    assert set(cursor) <= URL_SAFE  # no padding, nothing to escape in a URL


def _cursor(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        pytest.param("", id="empty"),
        pytest.param("!!!", id="not-base64"),
        pytest.param("a", id="bad-base64-length"),
        pytest.param("kQHé", id="not-ascii"),
        pytest.param(_cursor(msgpack.packb(5)), id="not-a-list"),
        pytest.param(_cursor(msgpack.packb([])), id="empty-list"),
        pytest.param(_cursor(msgpack.packb(["r5", "d7"])), id="revision-not-a-number"),
        pytest.param(_cursor(msgpack.packb({"revision": 5})), id="a-map"),
        pytest.param(_cursor(msgpack.packb({(1,): 5})), id="an-unhashable-key"),
        pytest.param(_cursor(msgpack.packb([5, "d7"]) + b"\x01"), id="trailing-bytes"),
        pytest.param(_cursor(msgpack.packb([5, "d7"])[:-1]), id="truncated"),
        pytest.param(_cursor(b"\x92\x05\xa2\xff\xfe"), id="not-utf-8"),
        # valid msgpack, the wrong shape: once an IndexError (INTERNAL) in a read
        pytest.param("kQE", id="revision-only"),
        pytest.param(_cursor(msgpack.packb([5, 7])), id="a-number-for-the-id"),
        pytest.param(_cursor(msgpack.packb([5, "d7", "x"])), id="one-part-too-many"),
        pytest.param(_cursor(msgpack.packb([-1, "d7"])), id="negative-revision"),
        pytest.param(_cursor(msgpack.packb([True, "d7"])), id="a-bool-for-the-revision"),
        pytest.param(_cursor(msgpack.packb([5.0, "d7"])), id="a-float-for-the-revision"),
        pytest.param(_cursor(msgpack.packb([5, b"d7"], use_bin_type=True)), id="bytes-for-the-id"),
        # the right values, spelled otherwise than encode_cursor spells them
        pytest.param(_cursor(b"\x92\xce\x00\x00\x00\x05\xa2d7"), id="a-wide-integer"),
        pytest.param(_cursor(msgpack.packb([5, "d7"])) + "=", id="padding"),
        pytest.param(_cursor(msgpack.packb([5, "d7"]))[:2] + "!" + _cursor(msgpack.packb([5, "d7"]))[2:], id="a-stray-character"),
        pytest.param(_cursor(msgpack.packb([5, "x>>"])).replace("-", "+"), id="standard-base64"),
    ],
)
def test_anything_else_is_a_malformed_cursor(cursor: str) -> None:
    with pytest.raises(InvalidArgument, match="malformed cursor") as caught:
        decode_cursor(cursor, str)
    assert caught.value.fields() == {"cursor": cursor}


def test_a_long_malformed_cursor_is_quoted_shortened() -> None:
    with pytest.raises(InvalidArgument) as caught:
        decode_cursor("k" * 100_000, str)
    assert "... (100000 characters)" in str(caught.value) and len(str(caught.value)) < 300


def test_a_stream_knows_its_revision_up_front_and_yields_lazily() -> None:
    produced: list[int] = []

    def items() -> Any:
        for i in range(3):
            produced.append(i)
            yield i

    stream = Stream(Revision(9), items())
    assert stream.revision == Revision(9) and produced == []
    assert list(stream) == [0, 1, 2] and produced == [0, 1, 2]


DOC = ObjectRef("doc", "1")
ANN, BOB = SubjectRef("user", "ann"), SubjectRef("user", "bob")
ENG = SubjectRef("group", "eng", "member")


@pytest.mark.parametrize(
    ("node", "lines"),
    [
        pytest.param(ExpandNode("leaf", DOC, "viewer", subjects=(ANN, ENG)), ["doc:1#viewer -> user:ann, group:eng#member"], id="leaf"),
        pytest.param(ExpandNode("leaf", DOC, "viewer"), ["doc:1#viewer -> (no subjects)"], id="empty-leaf"),
        pytest.param(
            ExpandNode(
                "exclusion", DOC, "view",
                (
                    ExpandNode(
                        "union", DOC, "view",
                        (ExpandNode("leaf", DOC, "viewer", subjects=(ANN,)), ExpandNode("leaf", DOC, "owner")),
                    ),
                    ExpandNode("leaf", DOC, "banned", subjects=(BOB,)),
                ),
            ),
            [
                "doc:1#view [exclusion]",
                "  doc:1#view [union]",
                "    doc:1#viewer -> user:ann",
                "    doc:1#owner -> (no subjects)",
                "  doc:1#banned -> user:bob",
            ],
            id="nested",
        ),
        pytest.param(ExpandNode("intersection", DOC, "edit"), ["doc:1#edit [intersection]"], id="no-children"),
    ],
)
def test_expand_renders_an_indented_tree(node: ExpandNode, lines: list[str]) -> None:
    assert node.render().splitlines() == lines
    assert node.render("> ").splitlines() == ["> " + line for line in lines]
