"""Role x permission matrices, computed by the engine (``relengine matrix``).

For a resource type, the roles are its relations that can hold a subject of the chosen type
(directly or through a subject set such as ``group#member``), and the relations of the objects
its arrows point to (``account->admin``). For each role the matrix builds a minimal world in
a fresh store, one subject holding just that role, and asks the engine every permission.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

from ..errors import InvalidArgument, UnknownDefinition
from ..model import ObjectRef, Relationship, SubjectRef
from ..schema.types import CompiledSchema, Permission, Relation, TupleToUserset
from ..service import Engine
from ..storage.memory import MemoryStore


@dataclass(frozen=True, slots=True)
class Role:
    label: str  # "editor" or "account->admin"
    grants: tuple[Relationship, ...]  # the relationships that give the probe subject this role


@dataclass(frozen=True, slots=True)
class Matrix:
    resource_type: str
    subject_type: str
    permissions: tuple[str, ...]
    rows: tuple[tuple[str, tuple[bool, ...]], ...]  # role label, one flag per permission


_RESOURCE = "resource"
_PARENT = "parent"
_PROBE = "probe"
_SET = "probe_set"


def _holder_grants(schema: CompiledSchema, obj: ObjectRef, relation: Relation, subject_type: str) -> tuple[Relationship, ...] | None:
    """Relationships making ``subject_type:probe`` hold ``relation`` on ``obj``, or None."""
    probe = SubjectRef(subject_type, _PROBE)
    for allowed in relation.allowed:
        if allowed.caveat is None and allowed.type == subject_type and allowed.relation is None and not allowed.wildcard:
            return (Relationship(obj, relation.name, probe),)
    for allowed in relation.allowed:
        if allowed.caveat is not None or allowed.relation is None:
            continue
        holder = schema.definitions[allowed.type].relation(allowed.relation)
        if holder is None:
            continue
        if any(a.type == subject_type and a.relation is None and not a.wildcard and a.caveat is None for a in holder.allowed):
            userset = SubjectRef(allowed.type, _SET, allowed.relation)
            return (
                Relationship(obj, relation.name, userset),
                Relationship(ObjectRef(allowed.type, _SET), allowed.relation, probe),
            )
    return None


def roles(schema: CompiledSchema, resource_type: str, subject_type: str) -> list[Role]:
    definition = schema.definitions.get(resource_type)
    if definition is None:
        raise UnknownDefinition(f"object definition `{resource_type}` not found", definition=resource_type)
    resource = ObjectRef(resource_type, _RESOURCE)
    found: list[Role] = []
    for member in definition.members.values():
        if isinstance(member, Relation):
            grants = _holder_grants(schema, resource, member, subject_type)
            if grants is not None:
                found.append(Role(member.name, grants))
    arrows: list[str] = []
    for member in definition.members.values():
        if isinstance(member, Permission):
            _arrow_tuplesets(member.rewrite, arrows)
    for tupleset_name in dict.fromkeys(arrows):
        tupleset = definition.relation(tupleset_name)
        if tupleset is None:
            continue
        for allowed in tupleset.allowed:
            target_def = schema.definitions[allowed.type]
            parent = ObjectRef(allowed.type, _PARENT)
            link_subject = SubjectRef(allowed.type, _PARENT, allowed.relation)
            for target_member in target_def.members.values():
                if not isinstance(target_member, Relation):
                    continue
                grants = _holder_grants(schema, parent, target_member, subject_type)
                if grants is not None:
                    link = Relationship(resource, tupleset_name, link_subject)
                    found.append(Role(f"{tupleset_name}->{target_member.name}" if len(tupleset.allowed) == 1 else f"{tupleset_name}({allowed.type})->{target_member.name}", (link, *grants)))
    return found


def _arrow_tuplesets(rewrite: object, out: list[str]) -> None:
    if isinstance(rewrite, TupleToUserset):
        out.append(rewrite.tupleset)
    for child in getattr(rewrite, "children", ()):
        _arrow_tuplesets(child, out)
    for attr in ("base", "subtract"):
        child = getattr(rewrite, attr, None)
        if child is not None:
            _arrow_tuplesets(child, out)


def compute_matrix(schema_text: str, resource_type: str, subject_type: str = "user") -> Matrix:
    """Ask the engine, role by role, which permissions of ``resource_type`` each role grants."""
    def fresh() -> Engine:
        e = Engine(MemoryStore())
        e.write_schema(schema_text)
        return e

    engine = fresh()
    schema = engine.compiled_schema(engine.store.snapshot())
    if subject_type not in schema.definitions:
        raise InvalidArgument(f"subject type `{subject_type}` is not a definition of the schema")
    definition = schema.definitions.get(resource_type)
    if definition is None:
        raise UnknownDefinition(f"object definition `{resource_type}` not found", definition=resource_type)
    permissions = tuple(name for name, m in definition.members.items() if isinstance(m, Permission))
    rows: list[tuple[str, tuple[bool, ...]]] = []
    probe = SubjectRef(subject_type, _PROBE)
    resource = ObjectRef(resource_type, _RESOURCE)
    rows.append(("(no role)", tuple(engine.check(resource, p, probe).allowed for p in permissions)))
    for role in roles(schema, resource_type, subject_type):
        engine = fresh()
        engine.touch(role.grants)
        rows.append((role.label, tuple(engine.check(resource, p, probe).allowed for p in permissions)))
    return Matrix(resource_type, subject_type, permissions, tuple(rows))


def render(matrix: Matrix, fmt: str = "text") -> str:
    if fmt == "markdown":
        head = "| role | " + " | ".join(f"`{p}`" for p in matrix.permissions) + " |"
        sep = "|---|" + "|".join(":-:" for _ in matrix.permissions) + "|"
        body = [
            f"| `{label}` | " + " | ".join("✓" if flag else "·" for flag in flags) + " |"
            for label, flags in matrix.rows
        ]
        return "\n".join([head, sep, *body]) + "\n"
    if fmt == "html":
        cells = "".join(f"<th>{html.escape(p)}</th>" for p in matrix.permissions)
        rows = "".join(
            f"<tr><th>{html.escape(label)}</th>"
            + "".join(f"<td>{'&#10003;' if f else ''}</td>" for f in flags)
            + "</tr>\n"
            for label, flags in matrix.rows
        )
        return (
            f"<table>\n<caption>{html.escape(matrix.resource_type)}: role x permission "
            f"({html.escape(matrix.subject_type)})</caption>\n<tr><th>role</th>{cells}</tr>\n{rows}</table>\n"
        )
    if fmt != "text":
        raise InvalidArgument(f"unknown matrix format {fmt!r}; use text, markdown or html")
    width = max(len(label) for label, _ in matrix.rows)
    header = " " * width + " | " + " | ".join(matrix.permissions)
    lines = [header, "-" * len(header)]
    for label, flags in matrix.rows:
        cells = " | ".join(("yes" if flag else "-").center(len(p)) for p, flag in zip(matrix.permissions, flags))
        lines.append(f"{label.ljust(width)} | {cells}")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class MatrixDiff:
    """Two matrices of one resource type side by side: the roles and permissions of either,
    each cell (old, new); a role or permission missing on a side answers no there."""

    resource_type: str
    subject_type: str
    permissions: tuple[str, ...]
    rows: tuple[tuple[str, tuple[tuple[bool, bool], ...]], ...]

    @property
    def changed(self) -> int:
        return sum(1 for _, cells in self.rows for old, new in cells if old != new)


def diff_matrices(old: Matrix, new: Matrix) -> MatrixDiff:
    permissions = tuple(dict.fromkeys((*new.permissions, *old.permissions)))
    old_rows, new_rows = dict(old.rows), dict(new.rows)
    labels = list(dict.fromkeys((*(label for label, _ in new.rows), *(label for label, _ in old.rows))))

    def flag(rows: dict[str, tuple[bool, ...]], names: tuple[str, ...], label: str, permission: str) -> bool:
        flags = rows.get(label)
        return flags is not None and permission in names and flags[names.index(permission)]

    rows = tuple(
        (label, tuple((flag(old_rows, old.permissions, label, p), flag(new_rows, new.permissions, label, p))
                      for p in permissions))
        for label in labels
    )
    return MatrixDiff(new.resource_type, new.subject_type, permissions, rows)


_MARKS = {
    "text": {(False, False): "-", (True, True): "yes", (False, True): "+yes", (True, False): "-yes"},
    "markdown": {(False, False): "·", (True, True): "✓", (False, True): "**+✓**", (True, False): "**−✓**"},
}
DIFF_LEGEND = "+yes: gained with the new schema; -yes: lost with it"


def render_diff(diff: MatrixDiff, fmt: str = "text") -> str:
    """The new matrix with the cells that change marked: ``+yes`` gained, ``-yes`` lost
    (markdown: **+✓** / **−✓**)."""
    if fmt not in _MARKS:
        raise InvalidArgument(f"unknown matrix diff format {fmt!r}; use text or markdown")
    marks = _MARKS[fmt]
    footer = f"{diff.changed} cells change ({DIFF_LEGEND})\n"
    if fmt == "markdown":
        head = "| role | " + " | ".join(f"`{p}`" for p in diff.permissions) + " |"
        sep = "|---|" + "|".join(":-:" for _ in diff.permissions) + "|"
        body = [f"| `{label}` | " + " | ".join(marks[cell] for cell in cells) + " |" for label, cells in diff.rows]
        return "\n".join([head, sep, *body]) + "\n\n" + footer
    width = max(len(label) for label, _ in diff.rows)
    header = " " * width + " | " + " | ".join(p.center(max(len(p), 4)) for p in diff.permissions)
    lines = [header, "-" * len(header)]
    for label, cells in diff.rows:
        text = " | ".join(marks[cell].center(max(len(p), 4)) for p, cell in zip(diff.permissions, cells))
        lines.append(f"{label.ljust(width)} | {text}")
    return "\n".join(lines) + "\n" + footer
