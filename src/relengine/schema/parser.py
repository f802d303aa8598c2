"""Tokens -> AST, by recursive descent. Stops at the first syntax error, with its position.

Expression precedence follows SpiceDB: ``+`` binds tightest, then ``&``, then ``-``, all
left-associative; arrows (``->``, ``.any()``, ``.all()``) bind tighter than any operator.
A newline ends a statement unless the line ends in an operator.

Expressions and parameter types nest at most ``MAX_NESTING`` levels (each pair of parentheses,
arrow, ``-``, run of ``+`` or of ``&``, and ``<...>`` is one): the parser, the passes after it
and the engine recurse once or more per level, and Python's stack is finite (past it, a
RecursionError, not a clear error). A run of one operator is one level however long.
"""

from __future__ import annotations

from typing import Callable, Final

from ..errors import SchemaSyntaxError
from . import ast
from .lexer import Kind, Lexer, Token
from .source import Source

USE_FLAGS = ("expiration", "import", "partial", "self", "typechecking")
SUPPORTED_USE_FLAGS = frozenset({"expiration", "self", "typechecking"})
MAX_NESTING: Final = 100
_EXPRESSION: Final = "the expression"
_TYPE: Final = "the parameter type"
_NESTING_HINTS: Final = {
    _EXPRESSION: (
        " (each pair of parentheses, arrow, `-`, and run of `+` or of `&` is one): split it into several permissions"
    ),
    _TYPE: " (each `<...>` is one)",
}


def parse(text: str, name: str = "") -> ast.File:
    """Parse schema text; raises SchemaSyntaxError with line and column."""
    return _Parser(Source(text, name)).parse_file()


def parse_source(source: Source) -> ast.File:
    return _Parser(source).parse_file()


class _Parser:
    def __init__(self, source: Source) -> None:
        self.source = source
        self.lexer = Lexer(source)
        self.tok: Token = self.lexer.next()
        self.prev: Token = self.tok
        self.depth = 0  # how deep the expression just parsed nests
        self.open = 0  # parentheses (or type arguments) open where the parser is

    # -- token helpers ---------------------------------------------------------------
    def advance(self) -> Token:
        self.prev = self.tok
        self.tok = self.lexer.next()
        return self.prev

    def error(self, message: str, offset: int | None = None) -> SchemaSyntaxError:
        at = self.tok.start if offset is None else offset
        return SchemaSyntaxError([self.source.issue(message, at)])

    def expect(self, kind: Kind, what: str | None = None) -> Token:
        if self.tok.kind is not kind:
            raise self.error(f"expected {what or kind.value}, found {self.tok.describe()}")
        return self.advance()

    def at(self, kind: Kind) -> bool:
        """Whether the current token is of ``kind`` (a method, so that type checkers do not
        narrow ``self.tok`` across ``advance()``)."""
        return self.tok.kind is kind

    def is_word(self, word: str) -> bool:
        return self.tok.kind in (Kind.KEYWORD, Kind.IDENT) and self.tok.value == word

    def expect_ident(self, what: str) -> Token:
        if self.tok.kind is not Kind.IDENT:
            if self.tok.kind is Kind.KEYWORD:
                raise self.error(
                    f"expected {what}, found keyword `{self.tok.value}` (a reserved word cannot be a name)"
                )
            raise self.error(f"expected {what}, found {self.tok.describe()}")
        return self.advance()

    def path_name(self, what: str) -> tuple[str, int]:
        """A possibly prefixed name: ``ident ('/' ident)*``."""
        first = self.expect_ident(what)
        parts = [first.value]
        while self.tok.kind is Kind.SLASH and self.tok.start == self.prev.end:
            self.advance()
            if self.tok.start != self.prev.end:
                raise self.error(f"expected {what} after `/`")
            parts.append(self.expect_ident(what).value)
        return "/".join(parts), first.start

    def end_statement(self) -> None:
        if self.tok.kind is Kind.SEMICOLON:
            self.advance()
            return
        if self.tok.kind in (Kind.RBRACE, Kind.EOF) or self.tok.newline_before:
            return
        raise self.error(f"expected end of statement or definition, found {self.tok.describe()}")

    # -- file ------------------------------------------------------------------------
    def parse_file(self) -> ast.File:
        uses: list[ast.UseFlag] = []
        items: list[ast.Definition | ast.CaveatDef] = []
        while self.tok.kind is not Kind.EOF:
            if self.tok.kind is Kind.SEMICOLON:
                self.advance()
                continue
            if self.is_word("use"):
                if items:
                    raise self.error("`use` expressions must be declared before any definition")
                uses.append(self.parse_use())  # repeating a flag is harmless, as in SpiceDB
            elif self.is_word("definition"):
                items.append(self.parse_definition())
            elif self.is_word("caveat"):
                items.append(self.parse_caveat())
            else:
                raise self.error(
                    f"unexpected {self.tok.describe()} at the top level: expected `definition`, "
                    "`caveat` or `use`"
                )
        return ast.File(0, len(self.source.text), uses, items, self.tok.comments)

    def parse_use(self) -> ast.UseFlag:
        head = self.advance()
        start = head.start
        if self.tok.kind not in (Kind.IDENT, Kind.KEYWORD):
            raise self.error(f"expected a flag name after `use`, found {self.tok.describe()}")
        flag = self.advance()
        if flag.value not in USE_FLAGS:
            raise self.error(
                f"Unknown use flag: `{flag.value}`. Options are: {', '.join(USE_FLAGS)}", flag.start
            )
        if flag.value not in SUPPORTED_USE_FLAGS:
            raise self.error(f"`use {flag.value}` is not supported by relengine yet", flag.start)
        if flag.value in ("expiration", "self"):
            words = {"expiration", "and"} if flag.value == "expiration" else {"self"}
            self.lexer.extra_keywords.update(words)
            if self.tok.kind is Kind.IDENT and self.tok.value in words:
                self.tok.kind = Kind.KEYWORD
        if not (self.is_word("definition") or self.is_word("caveat") or self.is_word("use")):
            # SpiceDB lets the next top-level statement follow on the same line (folded YAML).
            self.end_statement()
        return ast.UseFlag(start, flag.end, flag.value, head.comments)

    # -- definitions -----------------------------------------------------------------
    def parse_definition(self) -> ast.Definition:
        head = self.advance()
        name, name_start = self.path_name("a definition name")
        self.expect(Kind.LBRACE, "'{' to open the definition")
        members: list[ast.RelationDecl | ast.PermissionDecl] = []
        while self.tok.kind is not Kind.RBRACE:
            if self.tok.kind is Kind.SEMICOLON:
                self.advance()
                continue
            if self.is_word("relation"):
                members.append(self.parse_relation())
            elif self.is_word("permission"):
                members.append(self.parse_permission())
            elif self.tok.kind is Kind.EOF:
                raise self.error(f"definition `{name}` is not closed: expected '}}'")
            else:
                raise self.error(
                    f"expected `relation`, `permission` or '}}' in definition `{name}`, "
                    f"found {self.tok.describe()}"
                )
        trailing = self.tok.comments
        end = self.advance().end
        return ast.Definition(head.start, end, name, name_start, members, head.comments, trailing)

    def parse_relation(self) -> ast.RelationDecl:
        head = self.advance()
        name_tok = self.expect_ident("a relation name")
        self.expect(Kind.COLON, "':' after the relation name")
        types = [self.parse_type_ref()]
        while self.tok.kind is Kind.PIPE:
            self.advance()
            types.append(self.parse_type_ref())
        end = self.prev.end  # the statement's terminator is not part of it, as in SpiceDB
        self.end_statement()
        return ast.RelationDecl(head.start, end, name_tok.value, name_tok.start, types, head.comments)

    def parse_type_ref(self) -> ast.TypeRef:
        type_name, start = self.path_name("a subject type")
        ref = ast.TypeRef(start, self.prev.end, type_name)
        if self.tok.kind is Kind.COLON:
            self.advance()
            if not self.at(Kind.STAR):
                raise self.error(f"expected '*' after `{type_name}:`, found {self.tok.describe()}")
            self.advance()
            ref.wildcard = True
        elif self.tok.kind is Kind.HASH:
            self.advance()
            if self.at(Kind.ELLIPSIS):
                self.advance()
            else:
                rel = self.expect_ident(f"a relation name or '...' after `{type_name}#`")
                ref.relation = rel.value
                ref.relation_start = rel.start
        if self.is_word("with"):
            self.advance()
            if self.tok.kind is Kind.KEYWORD and self.tok.value == "expiration":
                self.advance()
                ref.expiration = True
                if self.is_word("and"):
                    raise self.error(
                        "unexpected keyword after expiration: the caveat must come before "
                        "expiration, e.g. `with <caveat_name> and expiration`"
                    )
            else:
                ref.caveat, ref.caveat_start = self.path_name("a caveat name after `with`")
                if self.is_word("and"):
                    self.advance()
                    if not (self.tok.kind is Kind.KEYWORD and self.tok.value == "expiration"):
                        raise self.error(
                            "expected `expiration` after `and` (requires `use expiration`), "
                            f"found {self.tok.describe()}"
                        )
                    self.advance()
                    ref.expiration = True
        ref.end = self.prev.end
        return ref

    def parse_permission(self) -> ast.PermissionDecl:
        head = self.advance()
        name_tok = self.expect_ident("a permission name")
        self.expect(Kind.EQUALS, "'=' after the permission name")
        expr = self.parse_expr()
        end = self.prev.end  # past a closing ')', before the terminator, as in SpiceDB
        self.end_statement()
        return ast.PermissionDecl(head.start, end, name_tok.value, name_tok.start, expr, head.comments)

    # -- expressions -----------------------------------------------------------------
    def _continues(self, kind: Kind) -> bool:
        return self.tok.kind is kind and not self.tok.newline_before

    # A binary or arrow node spans from the first token of its leftmost operand (an opening
    # '(' included) to the last token consumed (a closing ')' included), as SpiceDB's do; a
    # parenthesised operand keeps the span of what is inside the parentheses.
    def parse_expr(self) -> ast.Expr:
        return self._chain(Kind.MINUS, "-", self.parse_intersection)

    def parse_intersection(self) -> ast.Expr:
        return self._chain(Kind.AMP, "&", self.parse_union)

    def parse_union(self) -> ast.Expr:
        return self._chain(Kind.PLUS, "+", self.parse_arrow)

    def _chain(self, kind: Kind, op: str, operand: Callable[[], ast.Expr]) -> ast.Expr:
        """A left-associative chain of ``op`` over what ``operand`` parses.

        A chain of ``+`` (or of ``&``) nests one level deeper than its deepest operand, however
        long: it compiles to one union (intersection) of all of them, and the passes walk it in a
        loop (``ast.operands``), so that a union of thousands of relations is fine. Each ``-``
        nests one level more, as an exclusion has two sides: ``a - b - c`` is ``(a - b) - c``.
        """
        first = self.tok.start
        left = operand()
        deepest = self.depth  # of the operands so far
        while self._continues(kind):
            self.advance()
            right = operand()
            left = ast.BinOp(first, self.prev.end, op, left, right)
            deepest = max(deepest, self.depth)
            self._nested(deepest + 1, first)
            if op == "-":
                deepest = self.depth  # the exclusion so far is the next one's left operand
        return left

    def parse_arrow(self) -> ast.Expr:
        first = self.tok.start
        expr = self.parse_primary()
        while True:
            if self._continues(Kind.ARROW):
                self.advance()
                target = self.expect_ident("a relation or permission name after `->`")
                expr = ast.Arrow(first, target.end, expr, target.value, target.start)
            elif self._continues(Kind.DOT):
                self.advance()
                func = self.tok
                if func.kind not in (Kind.IDENT, Kind.KEYWORD) or func.value not in ("any", "all"):
                    raise self.error(
                        f"expected 'any' or 'all' for arrow function, found {func.describe()}"
                    )
                self.advance()
                self.expect(Kind.LPAREN, f"'(' after `.{func.value}`")
                target = self.expect_ident(f"a relation or permission name in `.{func.value}(...)`")
                close = self.expect(Kind.RPAREN, f"')' to close `.{func.value}(`")
                expr = ast.Arrow(first, close.end, expr, target.value, target.start, func.value)
            else:
                return expr
            self._nested(self.depth + 1, first)

    def parse_primary(self) -> ast.Expr:
        tok = self.tok
        if tok.kind is Kind.LPAREN:
            self._open(tok.start)
            self.advance()
            inner = self.parse_expr()
            self.expect(Kind.RPAREN, "')' to close '('")
            self.open -= 1
            self._nested(self.depth + 1, tok.start)
            return inner
        self.depth = 0
        if tok.kind is Kind.KEYWORD and tok.value == "nil":
            self.advance()
            return ast.Nil(tok.start, tok.end)
        if tok.kind is Kind.KEYWORD and tok.value == "self":
            self.advance()
            return ast.SelfRef(tok.start, tok.end)
        if tok.kind is Kind.IDENT:
            self.advance()
            return ast.Identifier(tok.start, tok.end, tok.value)
        raise self.error(f"expected a relation, permission, `nil` or '(', found {tok.describe()}")

    def _open(self, offset: int, what: str = _EXPRESSION) -> None:
        """One more parenthesis (or type argument list) open at ``offset``: the parser recurses."""
        self.open += 1
        self._nested(self.open, offset, what)

    def _nested(self, depth: int, offset: int, what: str = _EXPRESSION) -> None:
        """Note that what was just parsed, starting at ``offset``, nests ``depth`` levels."""
        if depth > MAX_NESTING:
            raise self.error(f"{what} nests more than {MAX_NESTING} levels deep{_NESTING_HINTS[what]}", offset)
        self.depth = depth

    # -- caveats ---------------------------------------------------------------------
    def parse_caveat(self) -> ast.CaveatDef:
        head = self.advance()
        name, name_start = self.path_name("a caveat name")
        self.expect(Kind.LPAREN, "'(' to open the caveat parameters")
        params: list[ast.CaveatParam] = []
        while self.tok.kind is not Kind.RPAREN:
            pname = self.expect_ident("a parameter name")
            ptype = self.parse_type_expr()
            params.append(ast.CaveatParam(pname.start, ptype.end, pname.value, ptype))
            if self.tok.kind is Kind.COMMA:
                self.advance()
            elif not self.at(Kind.RPAREN):
                raise self.error(f"expected ',' or ')' in caveat parameters, found {self.tok.describe()}")
        self.advance()
        brace = self.expect(Kind.LBRACE, "'{' to open the caveat expression")
        self.lexer.pos = brace.end
        expression, expr_start, close_at = self.lexer.raw_block(brace.start)
        stripped = expression.strip()
        if not stripped:
            raise self.error(f"caveat `{name}` has an empty expression", close_at)
        lead = len(expression) - len(expression.lstrip())
        self.tok = self.lexer.next()
        close = self.expect(Kind.RBRACE, "'}' to close the caveat")
        return ast.CaveatDef(
            head.start, close.end, name, name_start, params, stripped, expr_start + lead, head.comments
        )

    def parse_type_expr(self) -> ast.TypeExpr:
        if self.tok.kind not in (Kind.IDENT, Kind.KEYWORD):
            raise self.error(f"expected a parameter type, found {self.tok.describe()}")
        name = self.advance()
        node = ast.TypeExpr(name.start, name.end, name.value)
        if self.at(Kind.LANGLE):
            self._open(self.tok.start, _TYPE)
            self.advance()
            node.args.append(self.parse_type_expr())
            while self.at(Kind.COMMA):
                self.advance()
                node.args.append(self.parse_type_expr())
            node.end = self.expect(Kind.RANGLE, f"'>' to close `{name.value}<`").end
            self.open -= 1
        return node
