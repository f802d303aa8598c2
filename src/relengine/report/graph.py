"""Definitions, relations and how permissions derive from them, as Graphviz dot or Mermaid.

Each definition is a cluster of its relations and permissions. Edges: a relation points to the
subject types it allows (solid, ``group#member`` to that relation), a permission to what it
is computed from (dashed; ``-`` and ``&`` operands labelled), an arrow to the relation it walks
and the target it reaches (labelled ``->``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InvalidArgument
from ..schema.types import (
    CompiledSchema,
    ComputedUserset,
    Exclusion,
    Intersection,
    Permission,
    Relation,
    Rewrite,
    This,
    TupleToUserset,
    Union,
)


@dataclass(frozen=True, slots=True)
class Edge:
    source: str  # node id "type.member" or "type"
    target: str
    style: str  # "allows", "computed", "arrow"
    label: str = ""


def _node(type_name: str, member: str | None = None) -> str:
    base = type_name.replace("/", "__")
    return f"{base}.{member}" if member else base


def edges(schema: CompiledSchema) -> list[Edge]:
    out: list[Edge] = []
    for t, definition in schema.definitions.items():
        for name, member in definition.members.items():
            source = _node(t, name)
            if isinstance(member, Relation):
                for allowed in member.allowed:
                    target = _node(allowed.type, allowed.relation)
                    label = ":*" if allowed.wildcard else ""
                    if allowed.caveat:
                        label = (label + f" with {allowed.caveat}").strip()
                    out.append(Edge(source, target, "allows", label))
            else:
                _rewrite_edges(schema, t, source, member.rewrite, "", out)
    return out


def _rewrite_edges(schema: CompiledSchema, t: str, source: str, node: Rewrite, label: str, out: list[Edge]) -> None:
    if isinstance(node, ComputedUserset):
        out.append(Edge(source, _node(t, node.relation), "computed", label))
    elif isinstance(node, Union):
        for child in node.children:
            _rewrite_edges(schema, t, source, child, label, out)
    elif isinstance(node, Intersection):
        for child in node.children:
            _rewrite_edges(schema, t, source, child, "&", out)
    elif isinstance(node, Exclusion):
        _rewrite_edges(schema, t, source, node.base, label, out)
        _rewrite_edges(schema, t, source, node.subtract, "minus", out)
    elif isinstance(node, TupleToUserset):
        relation = schema.definitions[t].relation(node.tupleset)
        arrow = f"{node.tupleset}->{node.computed}" if node.mode == "any" else f"{node.tupleset}.all({node.computed})"
        for allowed in relation.allowed if relation else ():
            if schema.member(allowed.type, node.computed) is not None:
                out.append(Edge(source, _node(allowed.type, node.computed), "arrow", (label + " " + arrow).strip()))
    elif isinstance(node, This):
        out.append(Edge(source, _node(t), "computed", "self"))


def render_dot(schema: CompiledSchema) -> str:
    lines = ["digraph schema {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica", fontsize=10];', '  edge [fontname="Helvetica", fontsize=9];']
    for t, definition in schema.definitions.items():
        lines.append(f'  subgraph "cluster_{_node(t)}" {{')
        lines.append(f'    label="{t}"; style=rounded;')
        lines.append(f'    "{_node(t)}" [label="{t}", shape=ellipse];')
        for name, member in definition.members.items():
            shape = "box" if isinstance(member, Relation) else "box, style=\"rounded,filled\", fillcolor=\"#eef5ff\""
            lines.append(f'    "{_node(t, name)}" [label="{name}", shape={shape}];')
        lines.append("  }")
    for edge in edges(schema):
        attrs = {"allows": "", "computed": "style=dashed", "arrow": "style=bold, color=\"#1f5fbf\""}[edge.style]
        if edge.label:
            attrs = (attrs + ", " if attrs else "") + f'label="{edge.label}"'
        lines.append(f'  "{edge.source}" -> "{edge.target}"' + (f" [{attrs}];" if attrs else ";"))
    lines.append("}")
    return "\n".join(lines) + "\n"


def render_mermaid(schema: CompiledSchema) -> str:
    def mid(node: str) -> str:
        return node.replace(".", "__")

    lines = ["flowchart LR"]
    for t, definition in schema.definitions.items():
        lines.append(f'  subgraph {mid(_node(t))}_group["{t}"]')
        lines.append(f'    {mid(_node(t))}(["{t}"])')
        for name, member in definition.members.items():
            if isinstance(member, Permission):
                lines.append(f'    {mid(_node(t, name))}("{name}")')
            else:
                lines.append(f'    {mid(_node(t, name))}["{name}"]')
        lines.append("  end")
    for edge in edges(schema):
        arrow = {"allows": "-->", "computed": "-.->", "arrow": "==>"}[edge.style]
        label = f"|{edge.label.replace('>', '&gt;')}|" if edge.label else ""
        lines.append(f"  {mid(edge.source)} {arrow}{label} {mid(edge.target)}")
    return "\n".join(lines) + "\n"


def render(schema: CompiledSchema, fmt: str) -> str:
    if fmt == "dot":
        return render_dot(schema)
    if fmt == "mermaid":
        return render_mermaid(schema)
    raise InvalidArgument(f"unknown graph format {fmt!r}; use dot or mermaid")
