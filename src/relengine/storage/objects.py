"""One object's live relationships as one bytes value: what ``Reader.object_rows`` returns and
what the LMDB objects index stores, so that a check reads a small object with one ``get`` and
asks it questions with C-level byte searches, building no Python object per relationship.

Layout
    ========  =========================================================================
    8 bytes   the revision that last changed the object (big-endian; LMDB uses it to tell
              whether the value holds at an older revision; zeros where it does not matter)
    1 byte    the kind: ``S`` direct entries only, ``X`` others and direct entries, ``L`` a
              large object (more than ``base.SMALL_OBJECT`` relationships; nothing follows)
    X only    4 bytes: the length of ``others``, then ``others``: ``msgpack({relation:
              [[subject type, id, subject relation or nil, payload or nil], ...]})``, the
              relationships that are not plain (subject sets, caveats, expirations;
              ``payload`` as in ``keys``)
    direct    per relation with plain whole-subject relationships (no subject relation, no
              caveat, no expiration: nearly all of them): ``\\x02`` + relation, then per
              subject ``\\x00`` + type + ``\\x01`` + id + ``\\x00``; then a final ``\\x02``.
              Empty when there are none.
    ========  =========================================================================

A whole-subject question is one ``find`` of ``needle(type, id)``: entries start with NUL, type
and id are split by \\x01 and end with NUL, and no name or id holds those bytes (those that do
go to ``others``), so the needle matches exactly one whole entry. The relation an entry
belongs to is the header before it.
"""

from __future__ import annotations

import struct
from typing import Final, Sequence

import msgpack

from . import keys
from .base import SMALL_OBJECT, Row

PLAIN: Final = ord("S")
OTHERS: Final = ord("X")
LARGE: Final = ord("L")
KIND_OFFSET: Final = keys.REVISION_SIZE  # where the kind byte is: ``value[KIND_OFFSET] == LARGE``
HEAD: Final = KIND_OFFSET + 1  # revision and kind
EMPTY: Final = bytes((PLAIN,))  # an object without relationships, after its revision
_length = struct.Struct(">I")


def needle(subject_type: str, subject_id: str) -> bytes:
    """How the whole subject ``subject_type:subject_id`` appears among direct entries."""
    return f"\x00{subject_type}\x01{subject_id}\x00".encode()


def header(relation: str) -> bytes:
    """What starts ``relation``'s direct entries."""
    return f"\x02{relation}\x00".encode()


def encode(revision: bytes, pairs: Sequence[tuple[str, Row]] | None) -> bytes:
    """The value of an object with these (relation, Row) pairs (None: a large object)."""
    if pairs is None or len(pairs) > SMALL_OBJECT:
        return revision + bytes((LARGE,))
    direct: dict[str, list[str]] = {}
    others: dict[str, list[list[object]]] = {}
    for relation, (st, sid, srel, extra) in pairs:
        names = relation + st + sid
        if srel is None and extra is None and "\x00" not in names and "\x01" not in names and "\x02" not in names:
            entries = direct.get(relation)
            if entries is None:
                entries = direct[relation] = []
            entries.append(f"\x00{st}\x01{sid}\x00")
        else:
            payload = None if extra is None else keys.encode_payload(extra[0], extra[1])
            others.setdefault(relation, []).append([st, sid, srel, payload])
    text = "".join(f"\x02{relation}" + "".join(entries) for relation, entries in direct.items())
    body = (text + "\x02").encode() if text else b""
    if not others:
        return revision + bytes((PLAIN,)) + body
    packed: bytes = msgpack.packb(others, use_bin_type=True)
    return revision + bytes((OTHERS,)) + _length.pack(len(packed)) + packed + body


def direct_start(value: bytes) -> int:
    """Where the direct entries of ``value`` (not large) begin."""
    if value[KIND_OFFSET] == PLAIN:
        return HEAD
    return HEAD + 4 + int(_length.unpack_from(value, HEAD)[0])


def relation_at(value: bytes, start: int, position: int) -> bytes:
    """The relation (UTF-8) of the direct entry at ``position``."""
    begin = value.rfind(b"\x02", start, position) + 1
    return value[begin:value.index(b"\x00", begin)]


def contains(value: bytes, subject: bytes, relations: frozenset[bytes]) -> bool:
    """Whether the whole subject with needle ``subject`` is a direct entry of any of
    ``relations`` (UTF-8 names)."""
    start = direct_start(value)
    position = value.find(subject, start)
    while position >= 0:
        if relation_at(value, start, position) in relations:
            return True
        position = value.find(subject, position + 1)
    return False


def targets(value: bytes, relation_header: bytes) -> list[tuple[str, str]]:
    """The (type, id) of every direct entry of the relation with ``header`` ``relation_header``."""
    begin = value.find(relation_header, direct_start(value))
    if begin < 0:
        return []
    begin += len(relation_header)
    return entries(value[begin:value.index(b"\x02", begin) - 1].decode())


def entries(text: str) -> list[tuple[str, str]]:
    """The (type, id) pairs of one relation's direct entries, decoded, without the NUL that
    opens the first and the one that closes the last."""
    return [(entry[0], entry[1]) for entry in (e.split("\x01") for e in text.split("\x00\x00"))]


def others(value: bytes) -> dict[str, tuple[Row, ...]]:
    """The relationships in ``others``, by relation, as Rows ((caveat, expiration) extras)."""
    if value[KIND_OFFSET] != OTHERS:
        return {}
    size = _length.unpack_from(value, HEAD)[0]
    packed: dict[str, tuple[Row, ...]] = msgpack.unpackb(value[HEAD + 4:HEAD + 4 + size], use_list=False)
    # A row without payload is already a Row, (type, id, relation or None, None): only the
    # relations with a caveat or an expiration among their rows are rebuilt.
    for relation, rows in packed.items():
        for row in rows:
            if row[3] is not None:
                packed[relation] = tuple(
                    (st, sid, srel, None if payload is None else keys.decode_payload(payload))
                    for st, sid, srel, payload in rows
                )
                break
    return packed


def others_count(value: bytes) -> int:
    """How many relationships ``value``'s ``others`` holds (none decoded)."""
    if value[KIND_OFFSET] != OTHERS:
        return 0
    size = _length.unpack_from(value, HEAD)[0]
    packed: dict[str, list[object]] = msgpack.unpackb(value[HEAD + 4:HEAD + 4 + size])
    return sum(map(len, packed.values()))


def decode(value: bytes) -> dict[str, list[Row]] | None:
    """Every relationship of ``value`` by relation, direct entries first (None: large)."""
    if value[KIND_OFFSET] == LARGE:
        return None
    out: dict[str, list[Row]] = {}
    start = direct_start(value)
    for chunk in value[start:-1].decode().split("\x02")[1:] if len(value) > start else ():
        relation, _, entries = chunk.partition("\x00")
        out[relation] = [
            (st, sid, None, None)
            for st, sid in (e.split("\x01") for e in entries[:-1].split("\x00\x00"))
        ]
    for relation, rows in others(value).items():
        out.setdefault(relation, []).extend(rows)
    return out


__all__ = [
    "EMPTY", "HEAD", "KIND_OFFSET", "LARGE", "OTHERS", "PLAIN", "contains", "decode", "direct_start", "encode", "entries",
    "header", "needle", "others", "others_count", "relation_at", "targets",
]
