"""print_schema: compile(print(compile(s))) == compile(s) on random valid schemas, formatting
is idempotent, and the canonical text of a few fixed inputs."""

from __future__ import annotations

import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relengine.schema import compile_schema, print_schema
from relengine.schema.printer import print_rewrite
from relengine.schema.types import ComputedUserset, Exclusion, Intersection, Nil, TupleToUserset, Union

# -- a strategy for valid schemas ------------------------------------------------------------

DEFINITION_NAMES = ["user", "group", "folder", "document", "tenant/org", "tenant/team/space"]
MEMBER_NAMES = ["owner", "editor", "viewer", "parent", "member", "banned", "reader", "admin", "manage", "view"]
CAVEAT = "caveat only_weekdays(day string, hours list<int>) {{\n{}\n}}"
CAVEAT_BODIES = [
    ["day != 'sunday' && hours.size() > 0"],
    ["day != 'sunday'", "&& hours.size() > 0"],
    ["day != 'sunday' && (", "hours.size() > 0", "", "|| hours[0] > 8", ")"],
]
COMMENTS = ["// a line comment", "/** a doc comment */", "/*\n * a block\n * comment\n */"]


@st.composite
def schemas(draw: st.DrawFn) -> str:
    """Schema text: definitions whose relations allow existing types (plain, wildcard, usersets
    of existing members, with the caveat or expiration) and whose permissions combine existing
    names with + & - -> .any() .all() nil self and parentheses. Permissions only use earlier
    permissions, so none is part of a cycle."""
    use_expiration = draw(st.booleans())
    use_self = draw(st.booleans())
    with_caveat = draw(st.booleans())
    names = draw(st.lists(st.sampled_from(DEFINITION_NAMES), min_size=1, max_size=4, unique=True))
    # First the member names and kinds of every definition, so that types can refer to them.
    layout: dict[str, list[tuple[str, bool]]] = {}
    for name in names:
        members = draw(st.lists(st.sampled_from(MEMBER_NAMES), max_size=5, unique=True))
        kinds = draw(st.lists(st.booleans(), min_size=len(members), max_size=len(members)))
        relations = [(m, False) for m, is_perm in zip(members, kinds) if not is_perm]
        permissions = [(m, True) for m, is_perm in zip(members, kinds) if is_perm]
        layout[name] = relations + permissions  # relations first; the order is kept, not required

    allowed_choices: list[str] = []
    for name, members in layout.items():
        allowed_choices += [name, f"{name}:*"] + [f"{name}#{m}" for m, _ in members]
    suffixes = [""]
    if with_caveat:
        suffixes.append(" with only_weekdays")
    if use_expiration:
        suffixes.append(" with expiration")
        if with_caveat:
            suffixes.append(" with only_weekdays and expiration")

    # Arrow targets: any member name, whether or not the arrow's subject types have it (a
    # missing one is only a warning).
    targets = sorted({m for members in layout.values() for m, _ in members} | {"view"})
    blocks: list[str] = []
    if use_self:
        blocks.append("use self")
    if use_expiration:
        blocks.append("use expiration")
    for name, members in layout.items():
        lines = [f"definition {name} {{"]
        relation_types: dict[str, list[str]] = {}
        earlier: list[str] = []
        for member, is_permission in members:
            if draw(st.integers(0, 4)) == 0:
                lines.append(textwrap.indent(draw(st.sampled_from(COMMENTS)), "    "))
            if not is_permission:
                types = draw(
                    st.lists(
                        st.tuples(st.sampled_from(allowed_choices), st.sampled_from(suffixes)).map("".join),
                        min_size=1,
                        max_size=3,
                        unique=True,
                    )
                )
                relation_types[member] = types
                lines.append(f"    relation {member}: {' | '.join(types)}")
            else:
                arrow_sources = [r for r, ts in relation_types.items() if not any(":*" in t for t in ts)]
                expr = draw(expressions(earlier, arrow_sources, targets, use_self, 0))
                lines.append(f"    permission {member} = {expr}")
            earlier.append(member)
        lines.append("}")
        if draw(st.integers(0, 3)) == 0:
            lines.insert(0, draw(st.sampled_from(COMMENTS)))
        blocks.append("\n".join(lines))
    if with_caveat:
        # The CEL body on one or more lines, each indented anyhow.
        body = draw(st.sampled_from(CAVEAT_BODIES))
        indent = st.sampled_from(["", " ", "    ", "\t", "        "])
        indents = draw(st.lists(indent, min_size=len(body), max_size=len(body)))
        caveat = CAVEAT.format("\n".join(i + line for i, line in zip(indents, body)))
        blocks.insert(draw(st.integers(len(blocks) - len(layout), len(blocks))), caveat)
    return "\n\n".join(blocks) + "\n"


@st.composite
def expressions(
    draw: st.DrawFn, names: list[str], arrow_sources: list[str], targets: list[str], use_self: bool, depth: int
) -> str:
    leaves: list[st.SearchStrategy[str]] = [st.just("nil")]
    if names:
        leaves.append(st.sampled_from(names))
    if arrow_sources:
        pairs = st.tuples(st.sampled_from(arrow_sources), st.sampled_from(targets))
        leaves.append(pairs.map(lambda p: f"{p[0]}->{p[1]}"))
        leaves.append(pairs.map(lambda p: f"{p[0]}.any({p[1]})"))
        leaves.append(pairs.map(lambda p: f"{p[0]}.all({p[1]})"))
    if use_self:
        leaves.append(st.just("self"))
    if depth >= 3 or draw(st.integers(0, 2)) == 0:
        return draw(st.one_of(leaves))
    op = draw(st.sampled_from(["+", "&", "-"]))
    left = draw(expressions(names, arrow_sources, targets, use_self, depth + 1))
    right = draw(expressions(names, arrow_sources, targets, use_self, depth + 1))
    text = f"{left} {op} {right}"
    return f"({text})" if draw(st.booleans()) else text


PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(schemas())
def test_print_then_compile_gives_the_same_schema(text: str) -> None:
    compiled = compile_schema(text)
    printed = print_schema(compiled)
    assert compile_schema(printed) == compiled, printed


@pytest.mark.slow
@PROPERTY_SETTINGS
@given(schemas())
def test_formatting_is_idempotent(text: str) -> None:
    printed = print_schema(compile_schema(text))
    assert print_schema(compile_schema(printed)) == printed


@pytest.mark.slow
def test_the_strategy_makes_valid_varied_schemas() -> None:
    """The strategy's own examples compile (and so exercise the property tests)."""
    seen: set[str] = set()

    @settings(max_examples=30, deadline=None, database=None)
    @given(schemas())
    def collect(text: str) -> None:
        compile_schema(text)
        for feature in ("->", ".any(", ".all(", "nil", ":*", "#", " with ", "use self", " - ", " & ", " + ", "("):
            if feature in text:
                seen.add(feature)

    collect()
    assert len(seen) >= 8, seen


# -- expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rewrite", "text"),
    [
        pytest.param(Union((ComputedUserset("aaa"), ComputedUserset("bbb"))), "aaa + bbb", id="union"),
        pytest.param(
            Exclusion(Exclusion(ComputedUserset("aaa"), ComputedUserset("bbb")), ComputedUserset("ccc")),
            "aaa - bbb - ccc",
            id="left-exclusion-chain-bare",
        ),
        pytest.param(
            Exclusion(ComputedUserset("aaa"), Exclusion(ComputedUserset("bbb"), ComputedUserset("ccc"))),
            "aaa - (bbb - ccc)",
            id="right-exclusion-parenthesised",
        ),
        pytest.param(
            Exclusion(ComputedUserset("aaa"), Union((ComputedUserset("bbb"), ComputedUserset("ccc")))),
            "aaa - (bbb + ccc)",
            id="nested-operators-parenthesised",
        ),
        pytest.param(
            Intersection((Union((ComputedUserset("aaa"), Nil())), TupleToUserset("parent", "view"))),
            "(aaa + nil) & parent->view",
            id="arrow-is-an-atom",
        ),
        pytest.param(TupleToUserset("parent", "view", "any", True), "parent.any(view)", id="any-kept"),
        pytest.param(TupleToUserset("parent", "view", "all", False), "parent.all(view)", id="all"),
    ],
)
def test_print_rewrite(rewrite: object, text: str) -> None:
    assert print_rewrite(rewrite) == text  # type: ignore[arg-type]


# -- canonical output of fixed inputs --------------------------------------------------------

MESSY = """\
use self
use expiration
/** users */
definition user {}
definition document{relation owner:user;relation viewer:user|user:*
// who may read
permission view=viewer+owner+(owner&viewer)
 permission edit = owner - (viewer - owner)
relation parent : folder with expiration|folder#viewer
permission delete = ((owner)) + parent->delete + parent.any(viewer) + parent.all(viewer) + self
// the end
}
definition folder {
  relation viewer: user with weekday and expiration
  permission delete = nil
}
caveat weekday(day string, hours   list<int>) {
      day != 'sunday'
   && hours.size() > 0
}
// end of file
"""

CANONICAL = """\
use expiration
use self

/** users */
definition user {}

definition document {
    relation owner: user
    relation viewer: user | user:*

    // who may read
    permission view = viewer + owner + (owner & viewer)
    permission edit = owner - (viewer - owner)

    relation parent: folder with expiration | folder#viewer

    permission delete = owner + parent->delete + parent.any(viewer) + parent.all(viewer) + self
    // the end
}

definition folder {
    relation viewer: user with weekday and expiration

    permission delete = nil
}

caveat weekday(day string, hours list<int>) {
    day != 'sunday'
    && hours.size() > 0
}

// end of file
"""


def test_canonical_output() -> None:
    assert print_schema(compile_schema(MESSY)) == CANONICAL


def test_canonical_output_is_a_fixed_point() -> None:
    assert print_schema(compile_schema(CANONICAL)) == CANONICAL
    assert compile_schema(CANONICAL) == compile_schema(MESSY)


def test_caveat_body_keeps_relative_indentation() -> None:
    text = "caveat cav(num int) {\n\t\tnum > 1 && (\n\t\t\t\tnum < 9\n\n\t\t)\n}\n"
    compiled = compile_schema(text)
    assert compiled.caveats["cav"].expression == "num > 1 && (\n\t\tnum < 9\n\n)"
    printed = print_schema(compiled)
    assert printed == "caveat cav(num int) {\n    num > 1 && (\n    \t\tnum < 9\n\n    )\n}\n"
    assert compile_schema(printed) == compiled


def test_empty_schema_prints_as_a_newline() -> None:
    assert print_schema(compile_schema("")) == "\n"


def test_block_comments_are_reindented_with_their_member() -> None:
    text = "definition user {\n\t\t/**\n\t\t * indented\n\t\t */\n\t\trelation self_ref: user\n}\n"
    assert print_schema(compile_schema(text)) == (
        "definition user {\n    /**\n     * indented\n     */\n    relation self_ref: user\n}\n"
    )


def test_blank_lines_between_and_after_comments_are_kept_as_one() -> None:
    """A file's header comment stays apart from the first definition's doc comment: the shipped
    schemas all start so, and ``schema fmt --check`` failed on every one of them."""
    text = (
        "/**\n * header\n */\n\n/** user is a person */\ndefinition user {}\n\n"
        "// about caveats\n\n\n\ncaveat cav(n int) {\n    n > 1\n}\n\n"
        "definition doc {\n    // first\n\n    // second\n    relation viewer: user\n    // trailing\n\n    // comments\n\n}\n\n"
        "// the end\n\n// really\n"
    )
    expected = text.replace("\n\n\n\n", "\n\n").replace("// comments\n\n}", "// comments\n}")
    compiled = compile_schema(text)
    assert compiled.definitions["user"].doc == ("/**\n * header\n */", "", "/** user is a person */")
    assert compiled.caveats["cav"].doc == ("// about caveats", "")
    assert compiled.definitions["doc"].members["viewer"].doc == ("// first", "", "// second")
    assert print_schema(compiled) == expected
    assert print_schema(compile_schema(expected)) == expected


def test_comments_without_blank_lines_stay_together() -> None:
    text = "// one\n// two\ndefinition user {}\n"
    assert compile_schema(text).definitions["user"].doc == ("// one", "// two")
    assert print_schema(compile_schema(text)) == text


def test_comments_before_use_lines_are_kept_with_their_flag() -> None:
    """They were dropped: ``schema fmt`` lost a file's header comment when it began with `use`."""
    text = "// header\n\n// expiring grants\nuse expiration\n\n// people\ndefinition user {}\n"
    assert print_schema(compile_schema(text)) == text
    unsorted = "use self\n// expiring grants\nuse expiration\n\ndefinition user {}\n"
    printed = print_schema(compile_schema(unsorted))
    assert printed == "// expiring grants\nuse expiration\nuse self\n\ndefinition user {}\n"
    assert print_schema(compile_schema(printed)) == printed
