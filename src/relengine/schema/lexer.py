"""Schema text -> tokens. Comments are kept and attached to the token that follows them."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ..errors import SchemaSyntaxError
from .source import Source


class Kind(enum.Enum):
    IDENT = "identifier"
    KEYWORD = "keyword"
    NUMBER = "number"
    STRING = "string"
    LBRACE = "'{'"
    RBRACE = "'}'"
    LPAREN = "'('"
    RPAREN = "')'"
    LANGLE = "'<'"
    RANGLE = "'>'"
    COLON = "':'"
    SEMICOLON = "';'"
    COMMA = "','"
    PIPE = "'|'"
    HASH = "'#'"
    STAR = "'*'"
    EQUALS = "'='"
    PLUS = "'+'"
    MINUS = "'-'"
    AMP = "'&'"
    ARROW = "'->'"
    DOT = "'.'"
    ELLIPSIS = "'...'"
    SLASH = "'/'"
    OTHER = "character"
    EOF = "end of file"


# Words that are always reserved. `use` is not (the parser reads it by its text); `expiration`
# and `and` become keywords only after `use expiration`, `self` after `use self`, as in SpiceDB.
KEYWORDS = frozenset({"definition", "caveat", "relation", "permission", "nil", "with"})

_PUNCT = {
    "{": Kind.LBRACE,
    "}": Kind.RBRACE,
    "(": Kind.LPAREN,
    ")": Kind.RPAREN,
    "<": Kind.LANGLE,
    ">": Kind.RANGLE,
    ":": Kind.COLON,
    ";": Kind.SEMICOLON,
    ",": Kind.COMMA,
    "|": Kind.PIPE,
    "#": Kind.HASH,
    "*": Kind.STAR,
    "=": Kind.EQUALS,
    "+": Kind.PLUS,
    "&": Kind.AMP,
    ".": Kind.DOT,
    "/": Kind.SLASH,
}


@dataclass(slots=True)
class Token:
    kind: Kind
    value: str
    start: int  # code-point offset of the first character
    end: int  # offset one past the last character
    newline_before: bool = False
    comments: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.kind is Kind.EOF:
            return "end of file"
        if self.kind in (Kind.IDENT, Kind.KEYWORD):
            return f"{self.kind.value} `{self.value}`"
        if self.kind in (Kind.NUMBER, Kind.STRING):
            return f"{self.kind.value} {self.value}"
        if self.kind is Kind.OTHER:
            return f"character {self.value!r}"
        return str(self.kind.value)


def _is_ident_start(ch: str) -> bool:
    return ch.isalpha() or ch == "_"


def _is_ident_char(ch: str) -> bool:
    return ch.isalnum() or ch == "_"


class Lexer:
    """Turns text into tokens on demand; the parser may switch keyword sets (``use`` flags)."""

    def __init__(self, source: Source) -> None:
        self.source = source
        self.text = source.text
        self.pos = 0
        self.extra_keywords: set[str] = set()

    def error(self, message: str, offset: int) -> SchemaSyntaxError:
        return SchemaSyntaxError([self.source.issue(message, offset)])

    def next(self) -> Token:
        text = self.text
        newline = False
        comments: list[str] = []
        n = len(text)
        while self.pos < n:
            ch = text[self.pos]
            if ch == "\n":
                newline = True
                self.pos += 1
            elif ch.isspace():
                self.pos += 1
            elif text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                end = n if end < 0 else end
                comments.append(text[self.pos : end].rstrip())
                self.pos = end
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("unterminated comment: `/*` without `*/`", self.pos)
                comments.append(text[self.pos : end + 2])
                newline = newline or "\n" in text[self.pos : end]
                self.pos = end + 2
            else:
                break
        start = self.pos
        if start >= n:
            return Token(Kind.EOF, "", n, n, True, comments)
        ch = text[start]
        if _is_ident_start(ch):
            end = start + 1
            while end < n and _is_ident_char(text[end]):
                end += 1
            word = text[start:end]
            kind = Kind.KEYWORD if word in KEYWORDS or word in self.extra_keywords else Kind.IDENT
            self.pos = end
            return Token(kind, word, start, end, newline, comments)
        if ch.isdigit():
            end = start + 1
            while end < n and (text[end].isalnum() or text[end] == "."):
                end += 1
            self.pos = end
            return Token(Kind.NUMBER, text[start:end], start, end, newline, comments)
        if text.startswith("->", start):
            self.pos = start + 2
            return Token(Kind.ARROW, "->", start, start + 2, newline, comments)
        if text.startswith("...", start):
            self.pos = start + 3
            return Token(Kind.ELLIPSIS, "...", start, start + 3, newline, comments)
        if ch == "-":
            self.pos = start + 1
            return Token(Kind.MINUS, "-", start, start + 1, newline, comments)
        if ch in "'\"":
            end = _string_end(text, start)
            if end < 0:
                raise self.error("unterminated string", start)
            self.pos = end
            return Token(Kind.STRING, text[start:end], start, end, newline, comments)
        kind = _PUNCT.get(ch, Kind.OTHER)
        self.pos = start + 1
        return Token(kind, ch, start, start + 1, newline, comments)

    def raw_block(self, open_offset: int) -> tuple[str, int, int]:
        """Read raw text up to the `}` matching an already-consumed `{` (caveat bodies are CEL,
        not schema tokens). Returns (text, start, end) and leaves the `}` unread."""
        text = self.text
        depth = 0
        i = self.pos
        start = i
        n = len(text)
        while i < n:
            ch = text[i]
            if ch in "'\"":
                end = _string_end(text, i)
                if end < 0:
                    raise self.error("unterminated string in caveat expression", i)
                i = end
                continue
            if text.startswith("//", i):
                end = text.find("\n", i)
                i = n if end < 0 else end
                continue
            if ch in "{[(":
                depth += 1
            elif ch in ")]":
                depth -= 1
            elif ch == "}":
                if depth == 0:
                    self.pos = i
                    return text[start:i], start, i
                depth -= 1
            i += 1
        raise self.error("caveat expression is not closed: expected `}`", open_offset)


def _string_end(text: str, start: int) -> int:
    """Offset one past the string starting at ``start`` (CEL quoting, incl. triple quotes)."""
    quote = text[start]
    triple = text.startswith(quote * 3, start)
    delim = quote * 3 if triple else quote
    i = start + len(delim)
    n = len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(delim, i):
            return i + len(delim)
        if text[i] == "\n" and not triple:
            return -1
        i += 1
    return -1
