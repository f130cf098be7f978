"""Parse expression text into `aobc.expr.ast` trees, with positioned syntax errors."""

from __future__ import annotations

import json
import math
import re
from typing import Any

from lark import Token, Transformer, v_args
from lark.exceptions import LarkError, UnexpectedInput, VisitError

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
from aobc.syntax import parser


class ExprSyntaxError(ValueError):
    """An expression that does not parse. `offset` is 0-based into the expression text."""

    def __init__(self, message: str, offset: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


def decode_string(token: str) -> str:
    """The value of a STRING token: JSON escapes, in single or triple quotes."""
    if token.startswith('"""'):
        body = token[3:-3]
        # Triple-quoted strings may hold raw newlines and quotes; escape them for JSON.
        body = body.replace("\r\n", "\n").replace("\n", "\\n").replace("\t", "\\t")
        body = _escape_bare_quotes(body)
        token = f'"{body}"'
    try:
        value = json.loads(token)
    except json.JSONDecodeError as err:
        raise ExprSyntaxError(f"invalid string escape: {err.msg.lower()}", err.pos) from None
    if not isinstance(value, str):  # pragma: no cover - the token regex only admits strings
        raise ExprSyntaxError("not a string")
    return value


def _escape_bare_quotes(body: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            out.append(body[i : i + 2])
            i += 2
            continue
        out.append('\\"' if ch == '"' else ch)
        i += 1
    return "".join(out)


def number(token: str, negative: bool = False) -> int | float:
    text = ("-" if negative else "") + token
    if any(c in token for c in ".eE"):
        value = float(text)
        if not math.isfinite(value):
            raise ExprSyntaxError(f"number {token} is out of range")
        return value
    return int(text)


@v_args(inline=True)
class ExprBuilder(Transformer[Token, Any]):
    """Turns the grammar's expression rules into AST nodes (shared with the DSL builder)."""

    def var(self, name: Token) -> Expr:
        return Var(str(name))

    def e_int(self, tok: Token) -> Expr:
        return Lit(number(str(tok)))

    def e_float(self, tok: Token) -> Expr:
        return Lit(number(str(tok)))

    def e_string(self, tok: Token) -> Expr:
        return Lit(decode_string(str(tok)))

    def e_true(self) -> Expr:
        return Lit(True)

    def e_false(self) -> Expr:
        return Lit(False)

    def e_null(self) -> Expr:
        return Lit(None)

    def e_list(self, *items: Expr | None) -> Expr:
        return ListExpr(tuple(i for i in items if i is not None))

    def e_pair(self, key: Token, value: Expr) -> tuple[str, Expr]:
        k = decode_string(str(key)) if key.type == "STRING" else str(key)
        return (k, value)

    def e_dict(self, *pairs: tuple[str, Expr] | None) -> Expr:
        return DictExpr(tuple(p for p in pairs if p is not None))

    def attr(self, obj: Expr, name: Token) -> Expr:
        return Attr(obj, str(name))

    def index(self, obj: Expr, idx: Expr) -> Expr:
        return Index(obj, idx)

    def call(self, name: Token, *args: Expr | None) -> Expr:
        return Call(str(name), tuple(a for a in args if a is not None))

    def neg(self, operand: Expr) -> Expr:
        # Fold `-1` into a literal so that printing and parsing agree on negative numbers.
        if isinstance(operand, Lit) and type(operand.value) in (int, float):
            return Lit(-operand.value)
        return Neg(operand)

    def not_expr(self, operand: Expr) -> Expr:
        return Not(operand)

    def comp_op(self, *toks: Token) -> str:
        return " ".join(str(t) for t in toks)

    def add_op(self, tok: Token) -> str:
        return str(tok)

    def mul_op(self, tok: Token) -> str:
        return str(tok)

    def _fold(self, *parts: Any) -> Expr:
        expr: Expr = parts[0]
        for i in range(1, len(parts), 2):
            expr = BinOp(parts[i], expr, parts[i + 1])
        return expr

    sum = _fold
    product = _fold

    def comparison(self, left: Expr, op: str, right: Expr) -> Expr:
        return Compare(op, left, right)

    def and_test(self, *values: Expr) -> Expr:
        return BoolOp("and", values)

    def or_test(self, *values: Expr) -> Expr:
        return BoolOp("or", values)

    def cond_expr(self, then: Expr, test: Expr, orelse: Expr) -> Expr:
        return Cond(test, then, orelse)


_BUILDER = ExprBuilder()

#: How lark's terminal names read in a message.
TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": "a string",
    "INT": "an integer",
    "FLOAT": "a number",
    "DURATION": "a duration",
    "$END": "the end of input",
    "LPAR": '"("',
    "RPAR": '")"',
    "LSQB": '"["',
    "RSQB": '"]"',
    "LBRACE": '"{"',
    "RBRACE": '"}"',
    "COMMA": '","',
    "DOT": '"."',
    "COLON": '":"',
    "EQUAL": '"="',
}


def describe_expected(expected: set[str]) -> str:
    # Kinds of token ("a name", "a string") first: where keywords may stand too, they are the
    # likelier fix and would otherwise fall behind the cut.
    names = sorted({TERMINAL_NAMES.get(t, _terminal_text(t)) for t in expected}, key=message_order)
    if len(names) > 8:
        names = [*names[:8], "..."]
    return ", ".join(names)


#: A keyword's pattern: the word, then no letter, digit or "_" (and for some, more).
_KEYWORD_PATTERN = re.compile(r"([a-z]+)\(\?!\[A-Za-z0-9_\]\)")


def message_order(name: str) -> tuple[bool, str]:
    """Where a described terminal goes in a list of them: kinds first, then fixed texts."""
    return (name.startswith('"'), name)


def _terminal_text(name: str) -> str:
    from aobc.syntax import parser as get_parser

    for term in get_parser().terminals:
        if term.name == name:
            if term.pattern.type == "str":
                return f'"{term.pattern.value}"'
            keyword = _KEYWORD_PATTERN.match(term.pattern.value)
            if keyword is not None:
                return f'"{keyword.group(1)}"'
    return name.lower()


def lark_error_message(err: UnexpectedInput) -> str:
    """A one-line, lower-case description of a lark parse error."""
    token = getattr(err, "token", None)
    expected = getattr(err, "expected", None) or getattr(err, "allowed", None) or set()
    if token is not None:
        found = "end of input" if token.type == "$END" else f'"{token}"'
        msg = f"unexpected {found}"
    else:
        char = getattr(err, "char", None)
        msg = f'unexpected character "{char}"' if char is not None else "unexpected input"
    if expected:
        msg += f"; expected {describe_expected(set(expected))}"
    return msg


def parse_expr_reference(text: str) -> Expr:
    """Parse one expression with the lark grammar itself (the reference for `parse_expr`)."""
    try:
        tree = parser().parse(text, start="expr")
    except UnexpectedInput as err:
        offset = err.pos_in_stream if err.pos_in_stream is not None else len(text)
        token = getattr(err, "token", None)
        if token is not None and token.type == "$END":
            offset = len(text)  # lark places the end at the last token's start
        raise ExprSyntaxError(lark_error_message(err), max(offset, 0)) from None
    except LarkError as err:  # pragma: no cover - defensive: lark's other failures
        raise ExprSyntaxError(str(err).splitlines()[0].lower()) from None
    try:
        result: Expr = _BUILDER.transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ExprSyntaxError):
            raise err.orig_exc from None
        raise
    return result
