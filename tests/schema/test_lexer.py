"""schema/lexer.py: each kind of token with its offsets, the keywords (and those ``use`` flags
add), comments kept with the token that follows, newlines before a token, caveat bodies read as
raw text, and the errors of what never ends."""

from __future__ import annotations

import pytest

from relengine.errors import SchemaSyntaxError
from relengine.schema.lexer import Kind, Lexer, Token
from relengine.schema.source import Source


def tokens(text: str, *extra_keywords: str) -> list[Token]:
    lexer = Lexer(Source(text))
    lexer.extra_keywords.update(extra_keywords)
    out = [lexer.next()]
    while out[-1].kind is not Kind.EOF:
        out.append(lexer.next())
    return out


def kinds(text: str, *extra_keywords: str) -> list[tuple[Kind, str]]:
    return [(t.kind, t.value) for t in tokens(text, *extra_keywords)][:-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "definition doc { relation viewer: user | group#member | user:* }",
            [
                (Kind.KEYWORD, "definition"), (Kind.IDENT, "doc"), (Kind.LBRACE, "{"), (Kind.KEYWORD, "relation"),
                (Kind.IDENT, "viewer"), (Kind.COLON, ":"), (Kind.IDENT, "user"), (Kind.PIPE, "|"), (Kind.IDENT, "group"),
                (Kind.HASH, "#"), (Kind.IDENT, "member"), (Kind.PIPE, "|"), (Kind.IDENT, "user"), (Kind.COLON, ":"),
                (Kind.STAR, "*"), (Kind.RBRACE, "}"),
            ],
            id="relation",
        ),
        pytest.param(
            "permission view = a->b + c.any(d) - e & nil",
            [
                (Kind.KEYWORD, "permission"), (Kind.IDENT, "view"), (Kind.EQUALS, "="), (Kind.IDENT, "a"), (Kind.ARROW, "->"),
                (Kind.IDENT, "b"), (Kind.PLUS, "+"), (Kind.IDENT, "c"), (Kind.DOT, "."), (Kind.IDENT, "any"),
                (Kind.LPAREN, "("), (Kind.IDENT, "d"), (Kind.RPAREN, ")"), (Kind.MINUS, "-"), (Kind.IDENT, "e"),
                (Kind.AMP, "&"), (Kind.KEYWORD, "nil"),
            ],
            id="permission",
        ),
        pytest.param(
            "caveat c(m map<int>, n int); with",
            [
                (Kind.KEYWORD, "caveat"), (Kind.IDENT, "c"), (Kind.LPAREN, "("), (Kind.IDENT, "m"), (Kind.IDENT, "map"),
                (Kind.LANGLE, "<"), (Kind.IDENT, "int"), (Kind.RANGLE, ">"), (Kind.COMMA, ","), (Kind.IDENT, "n"),
                (Kind.IDENT, "int"), (Kind.RPAREN, ")"), (Kind.SEMICOLON, ";"), (Kind.KEYWORD, "with"),
            ],
            id="caveat-header",
        ),
        pytest.param(
            "group#... org/team 1.5e3 42 ? _under é",
            [
                (Kind.IDENT, "group"), (Kind.HASH, "#"), (Kind.ELLIPSIS, "..."), (Kind.IDENT, "org"), (Kind.SLASH, "/"),
                (Kind.IDENT, "team"), (Kind.NUMBER, "1.5e3"), (Kind.NUMBER, "42"), (Kind.OTHER, "?"),
                (Kind.IDENT, "_under"), (Kind.IDENT, "é"),
            ],
            id="ellipsis-prefix-numbers-other",
        ),
        pytest.param(
            "\"a\\\"b\" 'c' \"\"\"multi\nline\"\"\"",
            [(Kind.STRING, '"a\\"b"'), (Kind.STRING, "'c'"), (Kind.STRING, '"""multi\nline"""')],
            id="strings",
        ),
    ],
)
def test_token_kinds(text: str, expected: list[tuple[Kind, str]]) -> None:
    assert kinds(text) == expected


def test_offsets_and_end_of_file() -> None:
    found = tokens("a->b  ...")
    assert [(t.start, t.end) for t in found] == [(0, 1), (1, 3), (3, 4), (6, 9), (9, 9)]
    assert found[-1].kind is Kind.EOF and found[-1].newline_before


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        pytest.param((), [Kind.IDENT, Kind.IDENT, Kind.IDENT, Kind.IDENT], id="not-reserved"),
        pytest.param(("expiration", "and"), [Kind.IDENT, Kind.KEYWORD, Kind.KEYWORD, Kind.IDENT], id="use-expiration"),
        pytest.param(("self",), [Kind.IDENT, Kind.IDENT, Kind.IDENT, Kind.KEYWORD], id="use-self"),
    ],
)
def test_use_flags_add_keywords(flags: tuple[str, ...], expected: list[Kind]) -> None:
    assert [kind for kind, _ in kinds("use expiration and self", *flags)] == expected


def test_comments_and_newlines_go_with_the_next_token() -> None:
    found = tokens("a // one\n/* two\n */ b /* three */ c\n// last")
    assert [(t.value, t.comments, t.newline_before) for t in found] == [
        ("a", [], False),
        ("b", ["// one", "/* two\n */"], True),
        ("c", ["/* three */"], False),
        ("", ["// last"], True),
    ]
    assert tokens("a /* on\none line */ b")[1].newline_before  # a newline inside a comment counts


@pytest.mark.parametrize(
    ("token", "description"),
    [
        (Token(Kind.IDENT, "doc", 0, 3), "identifier `doc`"),
        (Token(Kind.KEYWORD, "definition", 0, 10), "keyword `definition`"),
        (Token(Kind.NUMBER, "12", 0, 2), "number 12"),
        (Token(Kind.STRING, '"s"', 0, 3), 'string "s"'),
        (Token(Kind.ARROW, "->", 0, 2), "'->'"),
        (Token(Kind.OTHER, "?", 0, 1), "character '?'"),
        (Token(Kind.EOF, "", 0, 0), "end of file"),
    ],
)
def test_describe(token: Token, description: str) -> None:
    assert token.describe() == description


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        pytest.param("a /* open", "unterminated comment", (1, 3), id="comment"),
        pytest.param('a\n  "open', "unterminated string", (2, 3), id="string"),
        pytest.param('"a\nb"', "unterminated string", (1, 1), id="newline-in-a-string"),
        pytest.param('"""a\nb""', "unterminated string", (1, 1), id="triple-quoted"),
    ],
)
def test_what_never_ends_is_a_syntax_error_at_its_start(text: str, message: str, position: tuple[int, int]) -> None:
    with pytest.raises(SchemaSyntaxError, match=message) as caught:
        tokens(text)
    assert (caught.value.line, caught.value.column) == position


def _raw(text: str) -> tuple[tuple[str, int, int], Token]:
    lexer = Lexer(Source(text))
    brace = lexer.next()
    block = lexer.raw_block(brace.start)
    return block, lexer.next()


@pytest.mark.parametrize(
    ("text", "body"),
    [
        pytest.param("{ a == 1 }", " a == 1 ", id="plain"),
        pytest.param('{ m["}"] == {"k": [1]}["k"] }', ' m["}"] == {"k": [1]}["k"] ', id="brackets-and-strings"),
        pytest.param("{ a // } not the end\n && (b) }", " a // } not the end\n && (b) ", id="comment"),
    ],
)
def test_a_caveat_body_is_raw_text_up_to_its_closing_brace(text: str, body: str) -> None:
    (raw, start, end), after = _raw(text)
    assert raw == body and text[start:end] == body
    assert (after.kind, after.start) == (Kind.RBRACE, end)


@pytest.mark.parametrize(
    ("text", "message", "position"),
    [
        pytest.param("{ a == 1 ", "caveat expression is not closed", (1, 1), id="unclosed"),
        pytest.param('{ "x }', "unterminated string in caveat expression", (1, 3), id="string"),
    ],
)
def test_a_caveat_body_that_never_ends(text: str, message: str, position: tuple[int, int]) -> None:
    with pytest.raises(SchemaSyntaxError, match=message) as caught:
        _raw(text)
    assert (caught.value.line, caught.value.column) == position
