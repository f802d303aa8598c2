"""Bulk import of relationships from text, CSV or YAML into a store, in large transactions.

Formats
    text  One relationship per line in the text form (``model.parse_relationship``), e.g.
          ``doc:1#viewer@user:ann`` or ``doc:1#viewer@user:bob[only_weekdays][expiration:...]``.
          Blank lines and comment lines, starting with ``//`` or ``#``, are skipped.
    csv   Columns ``resource_type,resource_id,relation,subject_type,subject_id`` and optionally
          ``subject_relation`` (empty or ``...`` for the object itself), ``caveat_name``,
          ``caveat_context`` (a JSON object) and ``expiration`` (RFC 3339). A first row whose first
          field is ``resource_type`` is a header and skipped. Fields may not contain ``:#@[]``.
    yaml  A list of strings, or a mapping whose ``relationships`` is a string with one
          relationship per line (SpiceDB validation files) or a list of strings; other keys
          (schema, assertions) are ignored.

Every relationship is written with TOUCH semantics, so an interrupted import can simply be run
again. Transactions hold ``batch_size`` input lines (default 10,000), past the store's per-write
batch limit, through ``BulkLoader.bulk_touch``.

Memory: the input is read a batch at a time (YAML as a stream of parser events; a YAML block
string is one value the parser holds whole), and the store keeps nothing of a batch once it is
committed, so an import's memory depends on the batch size, not on the size of the input or of
the store (10,000 lines: about 200 MB, reached as the store grows past a few million
relationships; more lines, more memory).

Validation: ``validate`` (a schema check raising InvalidRelationship, UnknownDefinition,
UnknownRelation: any InvalidArgument or FailedPrecondition rejects the line) is called once per
distinct *shape* (resource type, relation, subject type, subject relation, wildcard or not,
caveat name, with or without expiration) with the first relationship of that shape; its verdict
applies to every relationship of the shape; a relationship with a caveat context is also
validated on its own (the context's values are not part of the shape). Bad lines are reported with their line numbers:
``on_error="abort"`` raises InvalidRelationship at the first batch holding one (earlier batches
stay written), ``"skip"`` leaves them out and lists them in the result.

Speed: the plain form (no caveat, no expiration) of a whole batch is matched by one regular
expression in C, shapes are checked once, and the store receives 6-string tuples it encodes a
batch at a time; other lines take the per-line path through ``parse_relationship``. A store
with a ``bulk_import`` session (LMDB) writes each batch's keys in key order and brings its
objects index up to date once, at the end, instead of per batch (``bulk_session``), then syncs:
``relengine import`` opens an LMDB store without a sync per commit, durable at the end.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import operator
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, ContextManager, Final, Iterable, Iterator, Literal, Sequence

import yaml

from ..errors import FailedPrecondition, InvalidArgument, InvalidRelationship
from ..model import Relationship, Revision, parse_relationship
from .base import BulkLoader, BulkRow

Format = Literal["text", "csv", "yaml"]
DEFAULT_BATCH_SIZE: Final = 10_000  # lines per transaction; memory grows with it

_ID = r"[a-zA-Z0-9/_|\-=+]{1,1024}"
_PLAIN_FORM = (
    rf"[ \t]*([a-z][a-z0-9_/]*):({_ID})#([a-z][a-z0-9_]*)"
    rf"@([a-z][a-z0-9_/]*):({_ID}|\*)(?:#(?:\.\.\.|([a-z][a-z0-9_]*)))?[ \t\r]*"
)
# Names are matched loosely here and checked exactly once per shape (see _Checker).
_PLAIN_LINES = re.compile(rf"^{_PLAIN_FORM}$", re.MULTILINE)
_PLAIN_LINE = re.compile(_PLAIN_FORM)
_CONTENT_LINES = re.compile(r"^[ \t\r]*(?!//|#)\S", re.MULTILINE)
_COMMENT: Final = ("//", "#")
_CSV_FORBIDDEN = re.compile(r"[:#@\[\]\s]")
_SHAPE = operator.itemgetter(0, 2, 3, 5)
_HEADER: Final = "resource_type"

Shape = tuple[str, str, str, str, bool, str | None, bool]
BatchLoad = Callable[[Iterable[Sequence[BulkRow]]], tuple[Revision, int]]  # BatchLoader.bulk_load


@dataclass(frozen=True, slots=True)
class LineError:
    """A line that is not a valid relationship; ``line`` is 1-based in the input."""

    line: int
    text: str
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class ImportProgress:
    """Where an import stands after a committed batch."""

    lines: int
    relationships: int
    changed: int
    errors: int
    revision: Revision
    elapsed: float


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import did: ``relationships`` written (``changed`` of them new or different),
    ``errors`` (at most ``max_errors`` kept; ``error_count`` counts them all)."""

    lines: int
    relationships: int
    changed: int
    errors: tuple[LineError, ...]
    error_count: int
    revision: Revision
    elapsed: float

    @property
    def rate(self) -> float:
        """Relationships per second."""
        return self.relationships / self.elapsed if self.elapsed > 0 else 0.0


@dataclass(slots=True)
class _Chunk:
    """Consecutive input lines: ``block`` holds them joined by newlines; ``numbers`` gives each
    line's number where they are not ``first``, ``first + 1``, ..."""

    block: str
    first: int
    count: int
    numbers: list[int] | None = None
    errors: list[LineError] | None = None

    def number(self, index: int) -> int:
        return self.first + index if self.numbers is None else self.numbers[index]


def import_relationships(
    store: BulkLoader,
    source: str | os.PathLike[str] | IO[str] | Iterable[str],
    fmt: Format | None = None,
    *,
    validate: Callable[[Relationship], None] | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Callable[[ImportProgress], None] | None = None,
    on_error: Literal["abort", "skip"] = "abort",
    max_errors: int = 1000,
) -> ImportResult:
    """Import relationships from ``source``: a path (the format guessed from its suffix,
    ``.csv``, ``.yaml``/``.yml``, else text, unless ``fmt`` says), an open text stream, or an
    iterable of lines. See the module docstring for formats, validation and errors.

    Raises InvalidRelationship (``on_error="abort"``) naming the first bad line, with
    ``details["line"]`` and ``details["errors"]`` (``{"line", "message"}`` for each bad line of
    the batch, JSON-ready); StoreFull and other store errors as the store raises them. Batches
    committed before stay committed.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    started = time.monotonic()
    checker = _Checker(validate)
    counts = [0, 0, 0, 0]  # lines, written, changed, errors
    errors: list[LineError] = []
    revision = store.head_revision()
    stopped: list[InvalidRelationship] = []

    def report() -> None:
        if progress is not None:
            progress(ImportProgress(counts[0], counts[1], counts[2], counts[3], revision, time.monotonic() - started))

    def batches(stream: Iterable[str], fmt: Format) -> Iterator[list[BulkRow]]:
        """The valid rows of each chunk; at the first bad line under "abort", the error is kept
        and the batches end (those before are written)."""
        for chunk in _chunks(stream, fmt, batch_size):
            rows, bad = checker.rows(chunk)
            counts[0] += chunk.count
            if bad:
                if on_error == "abort":
                    first = bad[0]
                    stopped.append(InvalidRelationship(
                        f"line {first.line}: {first.message}",
                        line=first.line,
                        errors=[{"line": e.line, "message": e.message} for e in bad],
                    ))
                    return
                counts[3] += len(bad)
                errors.extend(bad[: max(0, max_errors - len(errors))])
            if rows:
                yield rows
                counts[1] += len(rows)
            report()

    with _Source(source) as (stream, guessed), bulk_session(store) as loader:
        load: BatchLoad | None = getattr(loader, "bulk_load", None)  # a BatchLoader's
        if load is not None:  # the whole import at once; progress as batches are read
            revision, counts[2] = load(batches(stream, fmt or guessed))
        else:
            for rows in batches(stream, fmt or guessed):
                revision, count = loader.bulk_touch(rows)
                counts[2] += count
    if stopped:
        raise stopped[0]
    lines, written, changed, error_count = counts
    return ImportResult(
        lines, written, changed, tuple(errors), error_count, revision, time.monotonic() - started
    )


def bulk_session(store: BulkLoader) -> ContextManager[BulkLoader]:
    """``store.bulk_import()`` where the store has one (a loader for many batches that brings
    the store's indexes up to date once, at the end: see ``LmdbStore.bulk_import``), else
    ``store`` itself."""
    session = getattr(store, "bulk_import", None)
    return contextlib.nullcontext(store) if session is None else session()


class _Checker:
    """Turns chunks into rows, checking names and calling ``validate`` once per shape."""

    def __init__(self, validate: Callable[[Relationship], None] | None) -> None:
        self._validate = validate
        self._verdicts: dict[Shape, str | None] = {}

    def rows(self, chunk: _Chunk) -> tuple[list[BulkRow], list[LineError]]:
        if not chunk.errors:
            plain: list[BulkRow] = _PLAIN_LINES.findall(chunk.block)
            if (len(plain) == chunk.count or len(plain) == len(_CONTENT_LINES.findall(chunk.block))):
                if self._all_valid(plain, chunk.block):
                    return plain, []
        return self._each(chunk)

    def _all_valid(self, rows: list[BulkRow], block: str) -> bool:
        if "*" in block:
            shapes = {(r[0], r[2], r[3], r[5], r[4] == "*", None, False) for r in rows}
        else:
            shapes = {s + (False, None, False) for s in set(map(_SHAPE, rows))}
        verdicts = self._verdicts
        for shape in shapes:
            if shape not in verdicts:
                row = next(r for r in rows if _plain_shape(r) == shape)
                verdicts[shape] = self._judge(_plain_text(row))[1]
            if verdicts[shape] is not None:
                return False
        return True

    def _judge(self, text: str) -> tuple[Relationship | None, str | None]:
        """Parse and validate one relationship: (it, None) or (None, what is wrong)."""
        try:
            rel = parse_relationship(text)
        except InvalidRelationship as exc:
            return None, exc.message
        verdict = self._check(rel)
        return (None, verdict) if verdict is not None else (rel, None)

    def _check(self, rel: Relationship) -> str | None:
        if self._validate is not None:
            try:
                self._validate(rel)
            except (InvalidArgument, FailedPrecondition) as exc:  # e.g. UnknownDefinition
                return exc.message
        return None

    def _each(self, chunk: _Chunk) -> tuple[list[BulkRow], list[LineError]]:
        rows: list[BulkRow] = []
        errors = list(chunk.errors or ())
        verdicts = self._verdicts
        for index, line in enumerate(chunk.block.split("\n")[: chunk.count]):
            text = line.strip()
            if not text or text.startswith(_COMMENT):
                continue
            match = _PLAIN_LINE.fullmatch(text)
            row: BulkRow
            if match is not None:
                row = match.groups("")  # type: ignore[assignment]
                shape = _plain_shape(row)
                if shape not in verdicts:
                    verdicts[shape] = self._judge(text)[1]
            else:
                try:
                    rel = parse_relationship(text)
                except InvalidRelationship as exc:
                    errors.append(LineError(chunk.number(index), text, exc.message))
                    continue
                shape = _shape(rel)
                if shape not in verdicts:
                    verdicts[shape] = self._check(rel)
                elif rel.caveat is not None and rel.caveat.context and verdicts[shape] is None:
                    # A context is checked on every line: its values, not its shape, can be wrong.
                    context_error = self._check(rel)
                    if context_error is not None:
                        errors.append(LineError(chunk.number(index), text, context_error))
                        continue
                s = rel.subject
                row = (
                    rel.resource.type, rel.resource.id, rel.relation, s.type, s.id,
                    s.relation or "", rel.caveat, rel.expiration,
                )
            verdict = verdicts[shape]
            if verdict is not None:
                errors.append(LineError(chunk.number(index), text, verdict))
                continue
            rows.append(row)
        errors.sort(key=lambda e: e.line)
        return rows, errors


def _plain_shape(row: BulkRow) -> Shape:
    return (row[0], row[2], row[3], row[5], row[4] == "*", None, False)


def _shape(rel: Relationship) -> Shape:
    s = rel.subject
    return (
        rel.resource.type, rel.relation, s.type, s.relation or "", s.id == "*",
        None if rel.caveat is None else rel.caveat.name, rel.expiration is not None,
    )


def _plain_text(row: BulkRow) -> str:
    text = f"{row[0]}:{row[1]}#{row[2]}@{row[3]}:{row[4]}"
    return f"{text}#{row[5]}" if row[5] else text


# -- sources -------------------------------------------------------------------------------


class _Source:
    """Context manager: (a text stream or an iterable of lines, the format its name suggests)."""

    def __init__(self, source: str | os.PathLike[str] | IO[str] | Iterable[str]) -> None:
        self._source = source
        self._file: IO[str] | None = None

    def __enter__(self) -> tuple[Iterable[str], Format]:
        source = self._source
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            self._file = path.open(encoding="utf-8")
            suffix = path.suffix.lower()
            guessed: Format = (
                "csv" if suffix == ".csv" else "yaml" if suffix in (".yaml", ".yml") else "text"
            )
            return self._file, guessed
        return source, "text"

    def __exit__(self, *exc: object) -> None:
        if self._file is not None:
            self._file.close()


def _chunks(stream: Iterable[str], fmt: Format, batch_size: int) -> Iterator[_Chunk]:
    if fmt == "text":
        return _text_chunks(stream, batch_size)
    if fmt == "csv":
        return _csv_chunks(stream, batch_size)
    if fmt == "yaml":
        return _yaml_chunks(stream, batch_size)
    raise ValueError(f"unknown import format {fmt!r}; use text, csv or yaml")


def _text_chunks(stream: Iterable[str], batch_size: int) -> Iterator[_Chunk]:
    lines = iter(stream)
    first = 1
    while True:
        batch = list(itertools.islice(lines, batch_size))
        if not batch:
            return
        block = "".join(batch)
        if block.count("\n") < len(batch) - 1:  # lines without their newline (a list, say)
            block = "\n".join(line.rstrip("\r\n") for line in batch)
        yield _Chunk(block, first, len(batch))
        first += len(batch)


def _csv_chunks(stream: Iterable[str], batch_size: int) -> Iterator[_Chunk]:
    reader = csv.reader(stream)
    texts: list[str] = []
    numbers: list[int] = []
    errors: list[LineError] = []
    for fields in reader:
        number = reader.line_num
        if not fields or (len(fields) == 1 and not fields[0].strip()):
            continue
        if number == 1 and fields[0].strip().lower() == _HEADER:
            continue
        try:
            texts.append(_csv_text(fields))
            numbers.append(number)
        except InvalidRelationship as exc:
            errors.append(LineError(number, ",".join(fields), exc.message))
        if len(texts) + len(errors) >= batch_size:
            yield _Chunk("\n".join(texts), 0, len(texts), numbers, errors)
            texts, numbers, errors = [], [], []
    if texts or errors:
        yield _Chunk("\n".join(texts), 0, len(texts), numbers, errors)


def _csv_text(fields: Sequence[str]) -> str:
    if not 5 <= len(fields) <= 9:
        raise InvalidRelationship(
            f"expected 5 to 9 columns (resource_type,resource_id,relation,subject_type,"
            f"subject_id[,subject_relation,caveat_name,caveat_context,expiration]), "
            f"got {len(fields)}"
        )
    rt, rid, rel, st, sid, *rest = (f.strip() for f in fields)
    rest += [""] * (4 - len(rest))
    srel, caveat, context, expiration = rest
    if _CSV_FORBIDDEN.search(rt + rid + rel + st + sid + srel + caveat):
        raise InvalidRelationship("a name or id field holds one of ':#@[]' or whitespace")
    text = f"{rt}:{rid}#{rel}@{st}:{sid}"
    if srel:
        text += f"#{srel}"
    if caveat:
        text += f"[{caveat}:{context}]" if context else f"[{caveat}]"
    elif context:
        raise InvalidRelationship("caveat_context is set but caveat_name is empty")
    if expiration:
        text += f"[expiration:{expiration}]"
    return text


def _yaml_chunks(stream: Iterable[str], batch_size: int) -> Iterator[_Chunk]:
    """The relationships of a YAML document, read as a stream of parser events so that a long
    list is never held whole (a block string is one scalar: the parser holds that one)."""
    source: str | IO[str] = stream if hasattr(stream, "read") else "".join(stream)  # type: ignore[assignment]
    part: list[tuple[int, str]] = []
    try:
        for item in _yaml_relationships(yaml.parse(source, Loader=yaml.SafeLoader)):
            part.append(item)
            if len(part) >= batch_size:
                yield _yaml_chunk(part)
                part = []
    except yaml.YAMLError as exc:
        raise InvalidRelationship(f"the YAML does not parse: {exc}") from None
    if part:
        yield _yaml_chunk(part)


def _yaml_chunk(part: list[tuple[int, str]]) -> _Chunk:
    return _Chunk("\n".join(t for _, t in part), 0, len(part), [n for n, _ in part])


def _yaml_relationships(events: Iterator[yaml.Event]) -> Iterator[tuple[int, str]]:
    """(line, text) of each relationship: the document is a list of strings, a string of lines,
    or a mapping whose ``relationships`` is either (other keys are skipped)."""
    anchors: dict[str, yaml.ScalarEvent] = {}  # scalars an alias may name
    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            break
    else:
        return
    root = next(events)
    if isinstance(root, yaml.MappingStartEvent):
        while True:
            key = next(events)
            if isinstance(key, yaml.MappingEndEvent):
                break
            if isinstance(key, yaml.ScalarEvent) and key.value == "relationships":
                yield from _yaml_node(next(events), events, anchors)
            else:
                _skip_yaml_node(key, events)
                _skip_yaml_node(next(events), events)
    elif not isinstance(root, yaml.DocumentEndEvent):
        yield from _yaml_node(root, events, anchors)
    for event in events:
        if isinstance(event, yaml.DocumentStartEvent):
            raise InvalidRelationship("the YAML holds more than one document; import one at a time")


def _yaml_node(
    node: yaml.Event, events: Iterator[yaml.Event], anchors: dict[str, yaml.ScalarEvent]
) -> Iterator[tuple[int, str]]:
    if isinstance(node, yaml.ScalarEvent):
        if not _is_null(node):
            # Block scalars (| and >) start on the line after their indicator.
            start = _line(node) + (1 if node.style in ("|", ">") else 0)
            yield from ((start + i, line) for i, line in enumerate(node.value.split("\n")))
        return
    if not isinstance(node, yaml.SequenceStartEvent):
        raise InvalidRelationship(
            "the YAML must be a list of relationships or have a 'relationships' key"
        )
    for item in events:
        if isinstance(item, yaml.SequenceEndEvent):
            return
        if isinstance(item, yaml.AliasEvent) and item.anchor in anchors:
            item = anchors[item.anchor]
        if not isinstance(item, yaml.ScalarEvent):
            line = _line(item)
            raise InvalidRelationship(f"line {line}: a relationship must be a string", line=line)
        if item.anchor is not None:
            anchors[item.anchor] = item
        yield _line(item), item.value.replace("\n", " ")


def _skip_yaml_node(node: yaml.Event, events: Iterator[yaml.Event]) -> None:
    depth = 1 if isinstance(node, (yaml.MappingStartEvent, yaml.SequenceStartEvent)) else 0
    while depth:
        event = next(events)
        if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1


_RESOLVER: Final = yaml.resolver.Resolver()


def _line(event: yaml.Event) -> int:
    """The 1-based line an event starts on."""
    mark = event.start_mark
    return 0 if mark is None else mark.line + 1


def _is_null(scalar: yaml.ScalarEvent) -> bool:
    resolve = _RESOLVER.resolve
    tag = scalar.tag or resolve(yaml.ScalarNode, scalar.value, scalar.implicit)  # type: ignore[no-untyped-call]
    return bool(tag == "tag:yaml.org,2002:null")


__all__ = [
    "DEFAULT_BATCH_SIZE",
    "ImportProgress",
    "ImportResult",
    "LineError",
    "bulk_session",
    "import_relationships",
]
