"""What the LMDB modules make of by-resource items (key, version): strings, relationships,
objects index values.

Pure functions but for ``scan``, which reads a cursor. The reader calls them per check, so they
stay plain module functions, bound by name where they are used.
"""

from __future__ import annotations

import bisect
from typing import Any, Final, Literal, Sequence

from ...model import Relationship, SubjectRef, new_object, new_relationship, new_subject
from .. import keys, objects
from ..base import SMALL_OBJECT, Row
from ..keys import REVISION_SIZE
from ..objects import KIND_OFFSET

_object, _subject, _relationship = new_object, new_subject, new_relationship
_SHORT: Final = keys.SHORTENED_BYTE  # bytes tested as ints: see keys.SHORTENED_BYTE


def resource_strings(key: bytes, value: bytes) -> keys.Strings | list[str]:
    """The strings of a by-resource key (keys.resource_strings, fast when nothing is special)."""
    if not keys.is_plain(key):
        return keys.resource_strings(key, value)
    return key.decode().split("\x00")[:-1]


def scan(cur: Any, prefix: bytes, limit: int) -> list[tuple[bytes, bytes]]:
    """At most ``limit + 1`` items of ``cur``'s database under ``prefix`` (current versions)."""
    found: list[tuple[bytes, bytes]] = []
    if cur.set_range(prefix):
        for item in cur:  # stops at the first key past the prefix
            if not item[0].startswith(prefix):
                break
            found.append(item)
            if len(found) > limit:
                break
    return found


def object_value(revision: bytes, items: list[tuple[bytes, bytes]], size: int) -> bytes:
    """The ``objects`` value of one object's (by-resource key, version) items, whose prefix has
    ``size`` bytes."""
    if len(items) > SMALL_OBJECT:
        return objects.encode(revision, None)
    tails = b"".join([key[size:] for key, _ in items])
    if (
        2 not in tails and 1 not in tails and _SHORT not in tails
        and tails.count(b"\x00\x00") == len(items)  # no subject relation
        and all(len(value) == REVISION_SIZE for _, value in items)
    ):
        return _direct_value(revision, tails)
    if 1 in tails or _SHORT in tails:  # escapes or long ids: the slow way
        fields: list[str] = []
        for key, value in items:
            fields.extend(resource_strings(key, value)[2:])
    else:
        fields = tails.decode().split("\x00")
    pairs: list[tuple[str, Row]] = []
    for index, (_, value) in enumerate(items):
        base = index * 4
        extra = None
        if len(value) != REVISION_SIZE:
            extra = keys.decode_payload(value[REVISION_SIZE:])
            if extra == keys.NO_PAYLOAD:
                extra = None
        pairs.append((fields[base], (fields[base + 1], fields[base + 2], fields[base + 3] or None, extra)))
    return objects.encode(revision, pairs)


def edited_value(
    known: bytes, revision: bytes, size: int, changes: Sequence[tuple[int, bytes, bytes]]
) -> bytes | None:
    """The ``objects`` value ``object_value`` would build after ``changes`` to an object whose
    value was ``known`` (not large), without reading its relationships: each change is (op,
    by-resource key, version) with op ``keys.CREATED`` or ``keys.DELETED`` of a plain
    whole-subject relationship without payload (a direct entry). None where that does not
    hold, or the entries do not match (an added one already there, a removed one missing):
    then the caller builds it from the object's relationships.

    Only the relations changed are taken apart: a relation's direct entries (``type \\x01
    id``) sort as their keys do, since no name holds a byte below ``\\x02``. One change to a
    relation the object already has (most single writes) is edited in place
    (``_edited_section``)."""
    if len(changes) == 1:
        one = _edited_section(known, revision, size, changes[0])
        if one is not False:
            return one
    edits: dict[bytes, list[tuple[int, bytes]]] = {}
    for change in changes:
        parsed = _direct_change(size, change)
        if parsed is None:
            return None
        op, relation, entry = parsed
        edits.setdefault(relation, []).append((op, entry))
    start = objects.direct_start(known)
    sections: dict[bytes, bytes] = {}  # relation -> its direct entries, as stored
    if len(known) > start:
        for chunk in known[start + 1:-1].split(b"\x02"):
            cut = chunk.index(b"\x00")
            sections[chunk[:cut]] = chunk[cut:]
    count = known.count(b"\x01", start)
    for relation, ops in edits.items():
        text = sections.get(relation)
        entries = text[1:-1].split(b"\x00\x00") if text else []
        for op, entry in ops:
            step = _edit(entries, op, entry)
            if step is None:
                return None
            count += step
        if entries:
            sections[relation] = b"\x00" + b"\x00\x00".join(entries) + b"\x00"
        else:
            sections.pop(relation, None)
    count += objects.others_count(known)
    if count > SMALL_OBJECT:
        return objects.encode(revision, None)
    out = [revision, known[KIND_OFFSET:start]]
    for relation in sorted(sections):
        out += (b"\x02", relation, sections[relation])
    if sections:
        out.append(b"\x02")
    return b"".join(out)


def _direct_change(size: int, change: tuple[int, bytes, bytes]) -> tuple[int, bytes, bytes] | None:
    """(op, relation, direct entry ``type \\x01 id``) of a change that creates or deletes a
    plain whole-subject relationship without payload (its by-resource key's object prefix is
    ``size`` bytes), else None."""
    op, key, version = change
    if len(version) != REVISION_SIZE or op == keys.TOUCHED:
        return None
    tail = key[size:]
    # Bytes as ints: ``bytes in bytes`` first tries the needle as an int, some 100 ns a test.
    if 1 in tail or 2 in tail or _SHORT in tail or tail.count(b"\x00") != 4:
        return None
    relation, st, sid, srel, end = tail.split(b"\x00")
    if srel or end or not (relation and st and sid):
        return None
    return op, relation, st + b"\x01" + sid


def _edit(entries: list[bytes], op: int, entry: bytes) -> int | None:
    """Insert (``keys.CREATED``) or remove ``entry`` in the sorted ``entries``: the change in
    their number, or None where it is already there, or missing."""
    place = bisect.bisect_left(entries, entry)
    present = place < len(entries) and entries[place] == entry
    if op == keys.CREATED:
        if present:
            return None
        entries.insert(place, entry)
        return 1
    if not present:
        return None
    del entries[place]
    return -1


def _edited_section(
    known: bytes, revision: bytes, size: int, change: tuple[int, bytes, bytes]
) -> bytes | None | Literal[False]:
    """``edited_value`` of one change to a relation ``known`` already holds direct entries of:
    only that relation's section is taken apart, the rest of the value is copied as it is.
    False where the general path must decide: a relation the object has no direct entries
    of."""
    parsed = _direct_change(size, change)
    if parsed is None:
        return None
    op, relation, entry = parsed
    plain = known[KIND_OFFSET] == objects.PLAIN  # direct entries only (most objects): no others to skip or count
    start = objects.HEAD if plain else objects.direct_start(known)
    at = known.find(b"\x02" + relation + b"\x00", start)  # a section's header: \x02 starts nothing else
    if at < 0:
        return False
    first = at + 1 + len(relation)  # the NUL before its first entry
    stop = known.index(b"\x02", first)  # the next section's header, or the final \x02
    entries = known[first + 1:stop - 1].split(b"\x00\x00")
    step = _edit(entries, op, entry)
    if step is None:
        return None
    count = known.count(b"\x01", start) if plain else known.count(b"\x01", start) + objects.others_count(known)
    if count + step > SMALL_OBJECT:
        return objects.encode(revision, None)
    if entries:
        return b"".join((revision, known[KIND_OFFSET:first], b"\x00", b"\x00\x00".join(entries), b"\x00", known[stop:]))
    if at == start and stop == len(known) - 1:  # its only section: no direct entries are left
        return revision + known[KIND_OFFSET:start]
    return revision + known[KIND_OFFSET:at] + known[stop:]


def _direct_value(revision: bytes, tails: bytes) -> bytes:
    """``objects.encode`` of whole-subject relationships without payloads, in key order, from
    their keys' tails joined (``relation NUL type NUL id NUL NUL`` each): the common case, built
    without a Python object per relationship."""
    if not tails:
        return revision + objects.EMPTY
    parts = tails.split(b"\x00")
    out = [revision, objects.EMPTY]
    current = None
    for index in range(0, len(parts) - 1, 4):
        relation = parts[index]
        if relation != current:
            out.append(b"\x02" + relation)
            current = relation
        out.append(b"\x00" + parts[index + 1] + b"\x01" + parts[index + 2] + b"\x00")
    out.append(b"\x02")
    return b"".join(out)


def build(rt: str, rid: str, rel: str, subject: SubjectRef, value: bytes) -> Relationship:
    """The relationship with these strings and this version."""
    if len(value) == REVISION_SIZE:
        return _relationship(_object(rt, rid), rel, subject, None, None)
    caveat, expiration = keys.decode_payload(value[REVISION_SIZE:])
    return _relationship(_object(rt, rid), rel, subject, caveat, expiration)


def relationship_of(key: bytes, value: bytes) -> Relationship:
    """The relationship of a by-resource key and its version."""
    rt, rid, rel, st, sid, srel = resource_strings(key, value)
    return build(rt, rid, rel, _subject(st, sid, srel or None), value)


__all__ = ["build", "edited_value", "object_value", "relationship_of", "resource_strings", "scan"]
