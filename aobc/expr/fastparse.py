"""A hand-written parser for the expression language, about 20 times faster than lark.

Expressions are parsed on hot paths: every template and guard when a workflow loads, every
recompile after a live patch. The grammar in grammar/aob.lark stays the definition of the
language (the DSL parser uses it, expressions included); this parser implements the same
`expr` rule by precedence climbing, and a property test checks that both accept the same
texts and build the same trees. The DSL parser (`aobc.frontend.dsl_parser`) runs these rules on
its own token stream by subclassing `_Parser`.
"""

from __future__ import annotations

import re
from typing import Final

from aobc.expr.ast import (
    Attr,
    BinOp,
    BoolOp,
    Call,
    Compare,
    Cond,
    DictExpr,
    Expr,
    Index,
    ListExpr,
    Lit,
    Neg,
    Not,
    Var,
)
from aobc.expr.parse import ExprSyntaxError, decode_string, number

# Mirrors the grammar's terminals; where two overlap, in the order lark would prefer them.
# Numbers, like keywords, end at a word boundary: `5s` is a duration, which no expression
# takes, and `5x` no token at all. `]->` (an edge guard's end) is read as lark's state after
# an element reads it, so that `a[1]->b` fails where lark's parser does; `at` splits it where
# a list may close.
_TOKEN: Final = re.compile(
    r"""
    (?P<ws>[ \t\f\r\n]+|\#[^\n]*)
  | (?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<OP>\]->|==|!=|<=|>=|//|[<>+\-*/%()\[\]{},.:])
  | (?P<DURATION>(?:[0-9]+(?:ms|s|m|h|d))+(?![A-Za-z0-9_]))
  | (?P<FLOAT>(?:[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)(?![A-Za-z0-9_]))
  | (?P<INT>[0-9]+(?![A-Za-z0-9_]))
  | (?P<STRING>\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\"|"(?:[^"\\\n]|\\.)*")
    """,
    re.VERBOSE | re.DOTALL,
)
_KEYWORDS: Final = frozenset({"and", "or", "not", "in", "if", "else", "true", "false", "null"})
_MUL_OPS: Final = frozenset({"*", "/", "//", "%"})
_CMP_OPS: Final = frozenset({"==", "!=", "<", "<=", ">", ">=", "in"})

#: (kind, text, offset); kind is NAME/INT/FLOAT/DURATION/STRING/OP/KW/END, or ERR for a
#: character no token starts with.
Token = tuple[str, str, int]


def tokenize(text: str) -> list[Token]:
    out: list[Token] = []
    pos = 0
    n = len(text)
    match = _TOKEN.match
    while pos < n:
        m = match(text, pos)
        if m is None:
            # Lark's lexer stops here, but its parser may fail on an earlier token first: the
            # parser reports this character when it gets to it.
            out.append(("ERR", text[pos], pos))
            break
        kind = m.lastgroup
        value = m.group()
        if kind != "ws":
            if kind == "NAME" and value in _KEYWORDS:
                kind = "KW"
            out.append((kind, value, pos))  # type: ignore[arg-type]
        pos = m.end()
    out.append(("END", "", n))
    return out


class _Parser:
    __slots__ = ("i", "toks")

    def __init__(self, toks: list[Token]) -> None:
        self.toks = toks
        self.i = 0

    def peek(self) -> Token:
        return self.toks[self.i]

    def at(self, text: str) -> bool:
        kind, value, pos = self.toks[self.i]
        if value == text:
            return kind == "OP" or kind == "KW"
        if value == "]->" and text == "]" and self.toks[self.i - 1][1] in ("[", ","):
            # Where a list may close (after "[" or a trailing ","), lark's state has "]" but
            # not "]->", and reads "]" then "-" and ">".
            self.toks[self.i : self.i + 1] = [
                ("OP", "]", pos),
                ("OP", "-", pos + 1),
                ("OP", ">", pos + 2),
            ]
            return True
        return False

    def take(self) -> Token:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def fail(self, expected: str) -> ExprSyntaxError:
        kind, value, pos = self.peek()
        if kind == "ERR":
            return ExprSyntaxError(f'unexpected character "{value}"', pos)
        found = "end of input" if kind == "END" else f'"{value}"'
        return ExprSyntaxError(f"unexpected {found}; expected {expected}", pos)

    def expect(self, text: str) -> None:
        if not self.at(text):
            raise self.fail(f'"{text}"')
        self.i += 1

    def name(self) -> str:
        # After "." any identifier is a name, keywords included (as in the contextual lexer).
        kind, value, _ = self.peek()
        if kind not in ("NAME", "KW"):
            raise self.fail("a name")
        self.i += 1
        return value

    # expr := or_test ["if" or_test "else" expr]
    def expr(self) -> Expr:
        then = self.or_test()
        if self.at("if"):
            self.i += 1
            test = self.or_test()
            self.expect("else")
            return Cond(test, then, self.expr())
        return then

    def or_test(self) -> Expr:
        values = [self.and_test()]
        while self.at("or"):
            self.i += 1
            values.append(self.and_test())
        return values[0] if len(values) == 1 else BoolOp("or", tuple(values))

    def and_test(self) -> Expr:
        values = [self.not_test()]
        while self.at("and"):
            self.i += 1
            values.append(self.not_test())
        return values[0] if len(values) == 1 else BoolOp("and", tuple(values))

    def not_test(self) -> Expr:
        if self.at("not"):
            self.i += 1
            return Not(self.not_test())
        return self.comparison()

    def comparison(self) -> Expr:
        left = self.sum()
        kind, value, _ = self.peek()
        if kind in ("OP", "KW") and value in _CMP_OPS:
            self.i += 1
            return Compare(value, left, self.sum())
        if self.at("not"):
            self.i += 1
            self.expect("in")
            return Compare("not in", left, self.sum())
        return left

    def sum(self) -> Expr:
        left = self.product()
        while self.at("+") or self.at("-"):
            op = self.take()[1]
            left = BinOp(op, left, self.product())
        return left

    def product(self) -> Expr:
        left = self.unary()
        while True:
            kind, value, _ = self.peek()
            if kind != "OP" or value not in _MUL_OPS:
                return left
            self.i += 1
            left = BinOp(value, left, self.unary())

    def unary(self) -> Expr:
        if self.at("-"):
            self.i += 1
            operand = self.unary()
            if isinstance(operand, Lit) and type(operand.value) in (int, float):
                return Lit(-operand.value)
            return Neg(operand)
        return self.postfix()

    def postfix(self) -> Expr:
        e = self.atom()
        while True:
            if self.at("."):
                self.i += 1
                e = Attr(e, self.name())
            elif self.at("["):
                self.i += 1
                idx = self.expr()
                self.expect("]")
                e = Index(e, idx)
            else:
                return e

    # Literals are built by these two hooks so that the DSL parser (a subclass reading its own
    # token stream) can defer a bad escape or an out-of-range number until the whole file has
    # parsed, as lark's tree transformer does.
    def number_lit(self, text: str, pos: int) -> Expr:
        return Lit(number(text))

    def string_lit(self, text: str, pos: int) -> Expr:
        try:
            return Lit(decode_string(text))
        except ExprSyntaxError as err:
            raise ExprSyntaxError(err.message, pos) from None

    def atom(self) -> Expr:
        kind, value, pos = self.peek()
        if kind == "NAME" or (kind == "KW" and value not in ("true", "false", "null")):
            # Where no keyword can stand, the grammar's contextual lexer reads one as a name.
            self.i += 1
            if self.at("("):
                self.i += 1
                return Call(value, self.items(")"))
            return Var(value)
        if kind == "INT" or kind == "FLOAT":
            self.i += 1
            return self.number_lit(value, pos)
        if kind == "STRING":
            self.i += 1
            return self.string_lit(value, pos)
        if kind == "KW" and value in ("true", "false", "null"):
            self.i += 1
            return Lit({"true": True, "false": False, "null": None}[value])
        if self.at("("):
            self.i += 1
            e = self.expr()
            self.expect(")")
            return e
        if self.at("["):
            self.i += 1
            return ListExpr(self.items("]"))
        if self.at("{"):
            self.i += 1
            return self.dict()
        raise self.fail('"(", "-", "[", "{", a name, a number or a string')

    def items(self, close: str) -> tuple[Expr, ...]:
        out: list[Expr] = []
        while not self.at(close):
            out.append(self.expr())
            if self.at(","):
                self.i += 1
            elif not self.at(close):
                raise self.fail(f'"," or "{close}"')
        self.i += 1
        return tuple(out)

    def dict(self) -> Expr:
        pairs: list[tuple[str, Expr]] = []
        while not self.at("}"):
            kind, value, _ = self.peek()
            if kind == "STRING":
                key = decode_string(value)
            elif kind in ("NAME", "KW"):
                key = value
            else:
                raise self.fail("a key")
            self.i += 1
            self.expect(":")
            pairs.append((key, self.expr()))
            if self.at(","):
                self.i += 1
            elif not self.at("}"):
                raise self.fail('"," or "}"')
        self.i += 1
        return DictExpr(tuple(pairs))


def fast_parse_expr(text: str) -> Expr:
    """Parse one expression; raises ExprSyntaxError with an offset into `text`."""
    p = _Parser(tokenize(text))
    e = p.expr()
    if p.peek()[0] != "END":
        raise p.fail("an operator or the end of the expression")
    return e
