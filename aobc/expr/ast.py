"""The expression language's syntax tree and its canonical printer.

The language is small on purpose: JSON literals, names, member and index access, arithmetic,
comparisons, `and`/`or`/`not`, a conditional, and calls to a fixed table of functions. It is
parsed by the grammar in grammar/aob.lark and evaluated by `aobc.expr.evaluate`; there is no
path to Python's `eval`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Final

from aobc.ir.names import KEYWORDS, is_identifier


@dataclass(frozen=True, slots=True)
class Lit:
    value: Any  # None, bool, int, float or str


@dataclass(frozen=True, slots=True)
class Var:
    name: str


@dataclass(frozen=True, slots=True)
class Attr:
    obj: Expr
    name: str


@dataclass(frozen=True, slots=True)
class Index:
    obj: Expr
    index: Expr


@dataclass(frozen=True, slots=True)
class Neg:
    operand: Expr


@dataclass(frozen=True, slots=True)
class Not:
    operand: Expr


@dataclass(frozen=True, slots=True)
class BinOp:
    op: str  # + - * / // %
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class Compare:
    op: str  # == != < <= > >= in "not in"
    left: Expr
    right: Expr


@dataclass(frozen=True, slots=True)
class BoolOp:
    op: str  # and | or
    values: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class Cond:
    """`then if test else orelse`."""

    test: Expr
    then: Expr
    orelse: Expr


@dataclass(frozen=True, slots=True)
class Call:
    fn: str
    args: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class ListExpr:
    items: tuple[Expr, ...]


@dataclass(frozen=True, slots=True)
class DictExpr:
    items: tuple[tuple[str, Expr], ...]


Expr = (
    Lit
    | Var
    | Attr
    | Index
    | Neg
    | Not
    | BinOp
    | Compare
    | BoolOp
    | Cond
    | Call
    | ListExpr
    | DictExpr
)

# Binding strength, loosest first; mirrors the grammar's rule nesting.
_COND, _OR, _AND, _NOT, _CMP, _SUM, _PRODUCT, _UNARY, _POSTFIX = range(9)
_BINOP_PREC: Final = {
    "+": _SUM,
    "-": _SUM,
    "*": _PRODUCT,
    "/": _PRODUCT,
    "//": _PRODUCT,
    "%": _PRODUCT,
}


def _prec(e: Expr) -> int:
    if isinstance(e, Cond):
        return _COND
    if isinstance(e, BoolOp):
        return _OR if e.op == "or" else _AND
    if isinstance(e, Not):
        return _NOT
    if isinstance(e, Compare):
        return _CMP
    if isinstance(e, BinOp):
        return _BINOP_PREC[e.op]
    if isinstance(e, Neg):
        return _UNARY
    if isinstance(e, Lit) and type(e.value) in (int, float) and math.copysign(1, e.value) < 0:
        return _UNARY  # prints with a leading "-", so it binds like a negation
    return _POSTFIX


def _wrap(e: Expr, min_prec: int) -> str:
    text = to_source(e)
    return f"({text})" if _prec(e) < min_prec else text


def _literal(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite number in expression")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _key(name: str) -> str:
    return name if is_identifier(name) and name not in KEYWORDS else json.dumps(name)


def to_source(e: Expr) -> str:  # noqa: C901 - one arm per node type reads best here
    """The canonical text of an expression: parsing it gives back an equal tree."""
    if isinstance(e, Lit):
        return _literal(e.value)
    if isinstance(e, Var):
        return e.name
    if isinstance(e, Attr):
        return f"{_wrap(e.obj, _POSTFIX)}.{e.name}"
    if isinstance(e, Index):
        return f"{_wrap(e.obj, _POSTFIX)}[{to_source(e.index)}]"
    if isinstance(e, Neg):
        return f"-{_wrap(e.operand, _UNARY)}"
    if isinstance(e, Not):
        return f"not {_wrap(e.operand, _NOT)}"
    if isinstance(e, BinOp):
        p = _BINOP_PREC[e.op]
        return f"{_wrap(e.left, p)} {e.op} {_wrap(e.right, p + 1)}"
    if isinstance(e, Compare):
        return f"{_wrap(e.left, _SUM)} {e.op} {_wrap(e.right, _SUM)}"
    if isinstance(e, BoolOp):
        p = _OR if e.op == "or" else _AND
        return f" {e.op} ".join(_wrap(v, p + 1) for v in e.values)
    if isinstance(e, Cond):
        return f"{_wrap(e.then, _OR)} if {_wrap(e.test, _OR)} else {_wrap(e.orelse, _COND)}"
    if isinstance(e, Call):
        return f"{e.fn}({', '.join(to_source(a) for a in e.args)})"
    if isinstance(e, ListExpr):
        return f"[{', '.join(to_source(i) for i in e.items)}]"
    return "{" + ", ".join(f"{_key(k)}: {to_source(v)}" for k, v in e.items) + "}"


def children(e: Expr) -> tuple[Expr, ...]:
    """The direct sub-expressions of `e`."""
    if isinstance(e, Attr):
        return (e.obj,)
    if isinstance(e, Index):
        return (e.obj, e.index)
    if isinstance(e, Neg | Not):
        return (e.operand,)
    if isinstance(e, BinOp | Compare):
        return (e.left, e.right)
    if isinstance(e, BoolOp):
        return e.values
    if isinstance(e, Cond):
        return (e.test, e.then, e.orelse)
    if isinstance(e, Call):
        return e.args
    if isinstance(e, ListExpr):
        return e.items
    if isinstance(e, DictExpr):
        return tuple(v for _, v in e.items)
    return ()


def root_refs(e: Expr) -> list[Var | Attr]:
    """Each use of a free name: a `Var`, or `Attr(Var, member)` so `inputs.x` keeps `x`."""
    out: list[Var | Attr] = []
    stack: list[Expr] = [e]
    while stack:
        x = stack.pop()
        if isinstance(x, Var) or (isinstance(x, Attr) and isinstance(x.obj, Var)):
            out.append(x)
        else:
            stack.extend(children(x))
    return out


def ref_name(ref: Var | Attr) -> str:
    """The free name of a `root_refs` item."""
    if isinstance(ref, Var):
        return ref.name
    assert isinstance(ref.obj, Var)
    return ref.obj.name


def root_names(e: Expr) -> set[str]:
    """The free names an expression reads: node ids, `inputs`, `item`."""
    return {ref_name(r) for r in root_refs(e)}


def is_path(e: Expr) -> bool:
    """True for `a.b[0]["c"]`: a name followed by member and literal index steps."""
    while True:
        if isinstance(e, Var):
            return True
        if isinstance(e, Attr):
            e = e.obj
        elif isinstance(e, Index) and isinstance(e.index, Lit):
            if not isinstance(e.index.value, int | str) or isinstance(e.index.value, bool):
                return False
            if isinstance(e.index.value, int) and e.index.value < 0:
                return False
            e = e.obj
        else:
            return False
