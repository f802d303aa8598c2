"""SpiceDB validation files: a schema, relationships and assertions in YAML, with positions.

``load_validation_file`` reads one into a ``ValidationFile``; ``run_validation_file`` checks
its assertions against an Engine and reports each result with the file and line it came from.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable

import yaml

from .errors import InvalidArgument, RelEngineError, SchemaError, Unimplemented, ValidationFileError
from .model import ObjectRef, Relationship, SubjectRef, parse_relationship, parse_subject
from .schema.typesystem import check_relationship

ASSERTION_KINDS = ("assertTrue", "assertFalse", "assertCaveated")


@dataclass(frozen=True, slots=True)
class Assertion:
    kind: str  # assertTrue / assertFalse / assertCaveated
    text: str
    relationship: Relationship
    context: dict[str, Any] | None
    line: int  # 1-based line in the file


@dataclass(frozen=True, slots=True)
class ExpectedSubjects:
    key: str  # object#relation
    entries: tuple[tuple[str, int], ...]  # (text, line)
    line: int


@dataclass
class ValidationFile:
    path: str
    schema_text: str
    schema_name: str
    schema_line: int  # file line of the schema's first line (0 when from schemaFile)
    relationships: list[tuple[Relationship, int]] = field(default_factory=list)
    assertions: list[Assertion] = field(default_factory=list)
    validation: list[ExpectedSubjects] = field(default_factory=list)


def _error(path: str, line: int, column: int, message: str) -> ValidationFileError:
    return ValidationFileError(f"{path}:{line}:{column}: {message}", source=path, line=line, column=column)


def load_validation_file(path: str) -> ValidationFile:
    """Parse a validation file; raises ValidationFileError naming file, line and column."""
    try:
        with open(path, encoding="utf-8") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ValidationFileError(f"{path}: cannot read: {exc.strerror}", source=path) from None
    try:
        node = yaml.compose(raw, Loader=yaml.SafeLoader)
        data = yaml.load(raw, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise _error(path, line, col, f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.YAMLError as exc:
        raise ValidationFileError(f"{path}: invalid YAML: {exc}", source=path) from None
    if data is None:
        data, node = {}, None
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise _error(path, 1, 1, "a validation file is a YAML mapping with `schema`, `relationships`, `assertions`")
    nodes = {k.value: v for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    lines = raw.splitlines()
    known = {"schema", "schemaFile", "relationships", "assertions", "validation"}
    for key, value_node in nodes.items():
        if key not in known:
            raise _error(
                path,
                value_node.start_mark.line + 1,
                1,
                f"unknown key `{key}`; expected one of {', '.join(sorted(known))}",
            )

    schema_text, schema_name, schema_line = _schema(path, data, nodes)
    result = ValidationFile(path, schema_text, schema_name, schema_line)

    rel_text = data.get("relationships")
    if rel_text is not None:
        rnode = nodes["relationships"]
        if not isinstance(rel_text, str):
            raise _error(path, rnode.start_mark.line + 1, rnode.start_mark.column + 1, "`relationships` must be a string, one relationship per line")
        seen: dict[tuple[str, ...], int] = {}
        cursor = rnode.start_mark.line
        for item in rel_text.split("\n"):
            text = item.strip()
            if not text or text.startswith("//"):
                continue
            line, cursor = _find_line(lines, text, cursor, rnode)
            try:
                rel = parse_relationship(text)
            except InvalidArgument as exc:
                raise _error(path, line, _column(lines, line, text), str(exc)) from None
            if rel.key in seen:
                raise _error(
                    path, line, _column(lines, line, text),
                    f"relationship {text!r} repeats the one on line {seen[rel.key]}",
                )
            seen[rel.key] = line
            result.relationships.append((rel, line))

    assertions = data.get("assertions")
    if assertions is not None:
        anode = nodes["assertions"]
        if not isinstance(assertions, dict) or not isinstance(anode, yaml.MappingNode):
            raise _error(path, anode.start_mark.line + 1, anode.start_mark.column + 1, "`assertions` must be a mapping of assertTrue/assertFalse/assertCaveated lists")
        for knode, vnode in anode.value:
            kind = knode.value
            if kind not in ASSERTION_KINDS:
                raise _error(path, knode.start_mark.line + 1, knode.start_mark.column + 1, f"unknown assertion kind `{kind}`; expected {', '.join(ASSERTION_KINDS)}")
            if isinstance(vnode, yaml.ScalarNode) and vnode.value in ("", "null", "~"):
                continue
            if not isinstance(vnode, yaml.SequenceNode):
                raise _error(path, vnode.start_mark.line + 1, vnode.start_mark.column + 1, f"`{kind}` must be a list of strings")
            for item in vnode.value:
                if not isinstance(item, yaml.ScalarNode):
                    raise _error(path, item.start_mark.line + 1, item.start_mark.column + 1, "an assertion must be a string")
                result.assertions.append(_assertion(path, kind, item))

    validation = data.get("validation")
    if validation:
        vnode_map = nodes["validation"]
        if not isinstance(vnode_map, yaml.MappingNode):
            raise _error(path, vnode_map.start_mark.line + 1, 1, "`validation` must be a mapping")
        for knode, vnode in vnode_map.value:
            entries: list[tuple[str, int]] = []
            if isinstance(vnode, yaml.SequenceNode):
                entries = [(str(i.value), i.start_mark.line + 1) for i in vnode.value]
            result.validation.append(ExpectedSubjects(str(knode.value), tuple(entries), knode.start_mark.line + 1))
    return result


def _schema(path: str, data: dict[str, Any], nodes: dict[str, yaml.Node]) -> tuple[str, str, int]:
    if "schemaFile" in data:
        ref = data["schemaFile"]
        snode = nodes["schemaFile"]
        target = os.path.join(os.path.dirname(path), str(ref))
        try:
            with open(target, encoding="utf-8") as fh:
                return fh.read(), target, 0
        except OSError as exc:
            raise _error(path, snode.start_mark.line + 1, snode.start_mark.column + 1, f"cannot read schemaFile {ref!r}: {exc.strerror}") from None
    text = data.get("schema")
    if text is None:
        raise _error(path, 1, 1, "no `schema` (or `schemaFile`) in the validation file")
    snode = nodes["schema"]
    if not isinstance(text, str):
        raise _error(path, snode.start_mark.line + 1, snode.start_mark.column + 1, "`schema` must be a string")
    # Block scalars (| or >) start on the line after the indicator.
    block = isinstance(snode, yaml.ScalarNode) and snode.style in ("|", ">")
    return text, path, snode.start_mark.line + (1 if block else 0)


def _find_line(lines: list[str], text: str, cursor: int, node: yaml.Node) -> tuple[int, int]:
    """The 1-based file line holding ``text``, searching forward from ``cursor`` (0-based)."""
    for index in range(cursor, min(len(lines), node.end_mark.line + 1)):
        if text in lines[index]:
            return index + 1, index + 1
    # Folded scalars may split a long value over lines; fall back to the block's start.
    return node.start_mark.line + 1, cursor


def _column(lines: list[str], line: int, text: str) -> int:
    if 0 < line <= len(lines):
        found = lines[line - 1].find(text[:20])
        if found >= 0:
            return found + 1
    return 1


def _assertion(path: str, kind: str, item: yaml.ScalarNode) -> Assertion:
    text = str(item.value)
    line = item.start_mark.line + 1
    column = item.start_mark.column + 1
    rel_text, sep, ctx_text = text.partition(" with ")
    context: dict[str, Any] | None = None
    if sep:
        try:
            context = json.loads(ctx_text)
        except json.JSONDecodeError as exc:
            raise _error(path, line, column, f"the context after `with` is not valid JSON: {exc.msg}") from None
        if not isinstance(context, dict):
            raise _error(path, line, column, "the context after `with` must be a JSON object")
    try:
        rel = parse_relationship(rel_text)
    except InvalidArgument as exc:
        raise _error(path, line, column, str(exc)) from None
    return Assertion(kind, text, rel, context, line)


# -- running ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Outcome:
    path: str
    line: int
    text: str
    status: str  # "passed", "failed", "skipped"
    detail: str = ""

    def render(self) -> str:
        return f"{self.path}:{self.line}: {self.status.upper()}: {self.text}" + (f"\n    {self.detail}" if self.detail else "")


@dataclass
class FileReport:
    path: str
    outcomes: list[Outcome] = field(default_factory=list)
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


_EXPECTED = {"assertTrue": "HAS_PERMISSION", "assertFalse": "NO_PERMISSION", "assertCaveated": "CONDITIONAL_PERMISSION"}


def run_validation_file(path: str, engine_factory: Callable[[], Any] | None = None) -> FileReport:
    """Load ``path`` into a fresh engine and run every assertion; never raises for bad input."""
    report = FileReport(path)
    try:
        vf = load_validation_file(path)
    except ValidationFileError as exc:
        report.error = str(exc)
        return report
    with _engine(engine_factory) as engine:
        try:
            schema_rev = engine.write_schema(vf.schema_text, vf.schema_name)
            del schema_rev
        except SchemaError as exc:
            report.error = _schema_error_text(vf, exc)
            return report
        schema = engine.compiled_schema(engine.store.snapshot())
        for issue in schema.warnings:
            line = issue.line + vf.schema_line if vf.schema_name == path else issue.line
            report.warnings.append(f"{vf.schema_name}:{line}:{issue.column}: warning: {issue.message}")
        try:
            batch: list[Relationship] = []
            for rel, line in vf.relationships:
                try:
                    check_relationship(schema, rel)
                except RelEngineError as exc:
                    report.error = f"{path}:{line}: {exc}"
                    return report
                batch.append(rel)
            for start in range(0, len(batch), 500):
                engine.touch(batch[start : start + 500])
        except RelEngineError as exc:
            report.error = f"{path}: cannot load relationships: {exc}"
            return report
        _run_checks(engine, path, vf, report)
    return report


def run_on_store(path: str, engine: Any) -> FileReport:
    """Run ``path``'s assertions and ``validation:`` block on what ``engine``'s store holds
    now (its stored schema and relationships: ``relengine validate --datastore``); the file's
    own schema and relationships are not loaded (a warning says so), and nothing is written."""
    from .errors import SchemaNotFound

    report = FileReport(path)
    try:
        vf = load_validation_file(path)
    except ValidationFileError as exc:
        report.error = str(exc)
        return report
    try:
        engine.read_schema()
    except SchemaNotFound:
        report.error = f"{path}: the store has no schema to run the assertions on"
        return report
    if vf.relationships:
        report.warnings.append(
            f"{path}: its {len(vf.relationships)} relationships are not loaded: the assertions run on the stored ones"
        )
    _run_checks(engine, path, vf, report)
    return report


def _run_checks(engine: Any, path: str, vf: ValidationFile, report: FileReport) -> None:
    for assertion in vf.assertions:
        report.outcomes.append(_run_assertion(engine, path, assertion))
    for expected in vf.validation:
        report.outcomes.append(_check_expected(engine, path, expected))


def _schema_error_text(vf: ValidationFile, exc: SchemaError) -> str:
    out = []
    for issue in exc.issues:
        if vf.schema_name == vf.path:
            out.append(f"{vf.path}:{issue.line + vf.schema_line}:{issue.column + 2}: {issue.message}\n  {issue.source_line}\n  {' ' * (issue.column - 1)}^")
        else:
            out.append(issue.render())
    return "invalid schema:\n" + "\n".join(out)


def _run_assertion(engine: Any, path: str, assertion: Assertion) -> Outcome:
    rel = assertion.relationship
    if rel.caveat is not None:
        return Outcome(path, assertion.line, assertion.text, "failed", "an assertion cannot carry a caveat; use `with {context}`")
    try:
        response = engine.check(rel.resource, rel.relation, rel.subject, context=assertion.context)
    except Unimplemented as exc:
        return Outcome(path, assertion.line, assertion.text, "skipped", str(exc))
    except RelEngineError as exc:
        return Outcome(path, assertion.line, assertion.text, "failed", f"error: {exc}")
    got = response.permissionship.name
    want = _EXPECTED[assertion.kind]
    if got == want:
        return Outcome(path, assertion.line, assertion.text, "passed")
    missing = response.result.missing_parameters
    detail = f"expected {want}, got {got}" + (f" (missing {', '.join(missing)})" if missing else "")
    return Outcome(path, assertion.line, assertion.text, "failed", detail)


_ENTRY_RE = re.compile(r"^\[(?P<subject>.*)\]\s+is\s+(?P<paths>.*)$")


def _parse_entry(text: str) -> tuple[SubjectRef, frozenset[SubjectRef], frozenset[str], bool]:
    """``[user:tom] is <doc:1#viewer>/<doc:1#editor>`` -> (subject, excluded, paths, caveated)."""
    m = _ENTRY_RE.match(text.strip())
    if m is None:
        raise InvalidArgument(f"expected `[subject] is <object#relation>/...`, got {text!r}")
    spec = m.group("subject").strip()
    caveated = "[...]" in spec
    spec_main, _, excluded_text = spec.partition(" - ")
    subject = parse_subject(spec_main.replace("[...]", "").strip())
    excluded: set[SubjectRef] = set()
    if excluded_text:
        inner = excluded_text.strip()
        if not (inner.startswith("{") and inner.endswith("}")):
            raise InvalidArgument(f"expected `{{subject, ...}}` after ` - ` in {text!r}")
        for part in inner[1:-1].split(","):
            if part.strip():
                if "[...]" in part:
                    caveated = True
                excluded.add(parse_subject(part.replace("[...]", "").strip()))
    paths = frozenset(p.strip().strip("<>") for p in m.group("paths").split("/") if p.strip())
    return subject, frozenset(excluded), paths, caveated


def _check_expected(engine: Any, path: str, expected: ExpectedSubjects) -> Outcome:
    from .engine.expand import reachable_subjects

    key = expected.key
    try:
        obj_text, _, relation = key.partition("#")
        resource = parse_subject(obj_text)
        wanted: dict[SubjectRef, tuple[frozenset[SubjectRef], frozenset[str]]] = {}
        for text, line in expected.entries:
            try:
                subject, excluded, paths, caveated = _parse_entry(text)
            except InvalidArgument as exc:
                return Outcome(path, line, text, "failed", f"malformed entry: {exc}")
            if caveated:
                return Outcome(path, expected.line, key, "skipped", "caveats are not evaluated yet")
            wanted[subject] = (excluded, paths)
        reader = engine.store.snapshot()
        schema = engine.compiled_schema(reader)
        found = reachable_subjects(schema, reader, ObjectRef(resource.type, resource.id), relation)
    except Unimplemented as exc:
        return Outcome(path, expected.line, key, "skipped", str(exc))
    except RelEngineError as exc:
        return Outcome(path, expected.line, key, "failed", f"error: {exc}")
    problems: list[str] = []
    for subject in sorted(set(wanted) | set(found), key=str):
        if subject not in found:
            problems.append(f"expected subject {subject} was not found")
        elif subject not in wanted:
            problems.append(f"subject {subject} was found (through {'/'.join(sorted(found[subject].paths))}) but not expected")
        else:
            excluded, paths = wanted[subject]
            got = found[subject]
            if got.paths != paths:
                problems.append(f"{subject}: expected through {'/'.join(sorted(paths))}, found through {'/'.join(sorted(got.paths))}")
            if got.excluded != excluded:
                problems.append(f"{subject}: expected exclusions {sorted(map(str, excluded))}, found {sorted(map(str, got.excluded))}")
    if problems:
        return Outcome(path, expected.line, key, "failed", "; ".join(problems))
    return Outcome(path, expected.line, key, "passed")


class _engine:
    """A fresh Engine on a throwaway LMDB store (or what ``factory`` builds)."""

    def __init__(self, factory: Callable[[], Any] | None) -> None:
        self.factory = factory
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        self.engine: Any = None

    def __enter__(self) -> Any:
        if self.factory is not None:
            self.engine = self.factory()
            return self.engine
        from .service import Engine
        from .storage.lmdb import LmdbStore

        self.tmp = tempfile.TemporaryDirectory(prefix="relengine-validate-")
        self.engine = Engine(LmdbStore(self.tmp.name))
        return self.engine

    def __exit__(self, *exc: object) -> None:
        try:
            self.engine.store.close()
        finally:
            if self.tmp is not None:
                self.tmp.cleanup()


__all__ = ["Assertion", "FileReport", "Outcome", "ValidationFile", "load_validation_file", "run_validation_file"]
