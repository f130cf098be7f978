"""Evaluate expressions over JSON values, safely.

Expressions are compiled once into nested closures. Only JSON data is ever touched: member
access reads dict keys (never Python attributes), calls go to the fixed table `FUNCTIONS`,
and operations that could allocate without bound (string repetition, powers) do not exist.
A missing key or an index out of range gives `null`; a type error raises `ExprError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Final

from aobc.expr.ast import (
    Attr,
    BinOp,
    BoolOp,
    Call,
    Compare,
    Cond,
    Expr,
    Index,
    ListExpr,
    Lit,
    Neg,
    Not,
    Var,
    children,
)

Env = Mapping[str, Any]
Compiled = Callable[[Env], Any]


class ExprError(Exception):
    """An expression failed at run time (a type error, division by zero, unknown name)."""


def type_name(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list | tuple):
        return "array"
    if isinstance(v, Mapping):
        return "object"
    return type(v).__name__


def _is_num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def json_eq(a: Any, b: Any) -> bool:
    """Equality with JSON semantics: booleans are not numbers; containers compare deeply."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a is b
    if _is_num(a) and _is_num(b):
        return bool(a == b)
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(json_eq(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(json_eq(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and bool(a == b)


def truthy(v: Any) -> bool:
    return bool(v)


# --- functions -------------------------------------------------------------------------


def _need(cond: bool, fn: str, what: str) -> None:
    if not cond:
        raise ExprError(f"{fn}() {what}")


def _len(v: Any) -> int:
    _need(
        isinstance(v, str | list | tuple | Mapping),
        "len",
        f"needs a string, array or object, got {type_name(v)}",
    )
    return len(v)


def _str(v: Any) -> str:
    from aobc.expr.template import render_value

    return render_value(v)


def _int(v: Any) -> int:
    if isinstance(v, bool):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            raise ExprError(f'int() cannot convert "{v}"') from None
    _need(_is_num(v), "int", f"needs a number or string, got {type_name(v)}")
    if isinstance(v, float) and not math.isfinite(v):
        raise ExprError("int() of a non-finite number")
    return int(v)


def _float(v: Any) -> float:
    if isinstance(v, str):
        try:
            out = float(v.strip())
        except ValueError:
            raise ExprError(f'float() cannot convert "{v}"') from None
        if not math.isfinite(out):
            raise ExprError(f'float() cannot convert "{v}"')
        return out
    _need(
        _is_num(v) or isinstance(v, bool), "float", f"needs a number or string, got {type_name(v)}"
    )
    return float(v)


def _strs(fn: str, *vs: Any) -> None:
    for v in vs:
        _need(isinstance(v, str), fn, f"needs strings, got {type_name(v)}")


def _nums(fn: str, vs: Any) -> list[Any]:
    _need(isinstance(vs, list | tuple), fn, f"needs an array, got {type_name(vs)}")
    for v in vs:
        _need(_is_num(v), fn, f"needs numbers, got {type_name(v)}")
    return list(vs)


def _minmax(fn: str, pick: Callable[..., Any], args: tuple[Any, ...]) -> Any:
    items = list(args[0]) if len(args) == 1 and isinstance(args[0], list | tuple) else list(args)
    _need(bool(items), fn, "needs at least one value")
    if all(_is_num(v) for v in items) or all(isinstance(v, str) for v in items):
        return pick(items)
    raise ExprError(f"{fn}() needs numbers or strings of one kind")


def _get(obj: Any, key: Any, default: Any = None) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(key, default) if isinstance(key, str) else default
    if isinstance(obj, list | tuple) and _is_num(key) and isinstance(key, int):
        return obj[key] if -len(obj) <= key < len(obj) else default
    return default


def _sorted(v: Any) -> list[Any]:
    _need(isinstance(v, list | tuple), "sorted", f"needs an array, got {type_name(v)}")
    if all(_is_num(x) for x in v) or all(isinstance(x, str) for x in v):
        return sorted(v)
    raise ExprError("sorted() needs an array of numbers or of strings")


def _round(v: Any, ndigits: Any = 0) -> Any:
    _need(_is_num(v), "round", f"needs a number, got {type_name(v)}")
    _need(
        isinstance(ndigits, int) and not isinstance(ndigits, bool),
        "round",
        "digits must be an integer",
    )
    return round(v, ndigits) if ndigits else round(v)


def _join(items: Any, sep: Any = "") -> str:
    _need(isinstance(items, list | tuple), "join", f"needs an array, got {type_name(items)}")
    _strs("join", sep)
    return str(sep).join(_str(i) for i in items)


def _split(s: Any, sep: Any = " ") -> list[str]:
    _strs("split", s, sep)
    _need(sep != "", "split", "separator must not be empty")
    return str(s).split(sep)


def _contains(hay: Any, needle: Any) -> bool:
    return _in(needle, hay)


def _abs(v: Any) -> Any:
    _need(_is_num(v), "abs", f"needs a number, got {type_name(v)}")
    return abs(v)


def _string_fn(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any) -> Any:
        _strs(name, *args)
        return method(*args)

    return run


def _keys(o: Any) -> list[Any]:
    _need(isinstance(o, Mapping), "keys", f"needs an object, got {type_name(o)}")
    return list(o)


def _values(o: Any) -> list[Any]:
    _need(isinstance(o, Mapping), "values", f"needs an object, got {type_name(o)}")
    return list(o.values())


def _array_fn(name: str, reduce: Callable[[Any], bool]) -> Callable[[Any], bool]:
    def run(v: Any) -> bool:
        _need(isinstance(v, list | tuple), name, f"needs an array, got {type_name(v)}")
        return reduce(truthy(x) for x in v)

    return run


FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "len": _len,
    "str": _str,
    "int": _int,
    "float": _float,
    "bool": truthy,
    "abs": _abs,
    "lower": _string_fn("lower", str.lower),
    "upper": _string_fn("upper", str.upper),
    "strip": _string_fn("strip", str.strip),
    "startswith": _string_fn("startswith", str.startswith),
    "endswith": _string_fn("endswith", str.endswith),
    "contains": _contains,
    "min": lambda *a: _minmax("min", min, a),
    "max": lambda *a: _minmax("max", max, a),
    "sum": lambda v: sum(_nums("sum", v)),
    "round": _round,
    "keys": _keys,
    "values": _values,
    "get": _get,
    "default": lambda v, d: d if v is None else v,
    "coalesce": lambda *a: next((v for v in a if v is not None), None),
    "join": _join,
    "split": _split,
    "sorted": _sorted,
    "any": _array_fn("any", any),
    "all": _array_fn("all", all),
    "type": type_name,
}

#: Number of arguments each function accepts, checked at compile time.
ARITY: Final[dict[str, tuple[int, int]]] = {
    "len": (1, 1), "str": (1, 1), "int": (1, 1), "float": (1, 1), "bool": (1, 1), "abs": (1, 1),
    "lower": (1, 1), "upper": (1, 1), "strip": (1, 1), "startswith": (2, 2), "endswith": (2, 2),
    "contains": (2, 2), "min": (1, 64), "max": (1, 64), "sum": (1, 1), "round": (1, 2),
    "keys": (1, 1), "values": (1, 1), "get": (2, 3), "default": (2, 2), "coalesce": (1, 64),
    "join": (1, 2), "split": (1, 2), "sorted": (1, 1), "any": (1, 1), "all": (1, 1),
    "type": (1, 1),
}  # fmt: skip


def check_calls(e: Expr) -> list[str]:
    """Problems with the calls in `e`: unknown functions and wrong argument counts."""
    problems: list[str] = []
    stack: list[Expr] = [e]
    while stack:
        x = stack.pop()
        stack.extend(children(x))
        if not isinstance(x, Call):
            continue
        if x.fn not in FUNCTIONS:
            problems.append(f'unknown function "{x.fn}"')
            continue
        lo, hi = ARITY[x.fn]
        if not lo <= len(x.args) <= hi:
            want = str(lo) if lo == hi else f"{lo} to {hi}"
            problems.append(f'"{x.fn}" takes {want} argument(s), got {len(x.args)}')
    return problems


# --- operators -------------------------------------------------------------------------


def _arith(op: str, a: Any, b: Any) -> Any:
    if op == "+":
        if isinstance(a, str) and isinstance(b, str):
            return a + b
        if isinstance(a, list | tuple) and isinstance(b, list | tuple):
            return [*a, *b]
    if not (_is_num(a) and _is_num(b)):
        raise ExprError(f'cannot apply "{op}" to {type_name(a)} and {type_name(b)}')
    if op == "+":
        out = a + b
    elif op == "-":
        out = a - b
    elif op == "*":
        out = a * b
    elif b == 0:
        raise ExprError("division by zero")
    elif op == "/":
        out = a / b
    elif op == "//":
        out = a // b
    else:
        out = a % b
    if isinstance(out, float) and not math.isfinite(out):
        raise ExprError(f'"{op}" overflowed')
    return out


def _in(needle: Any, hay: Any) -> bool:
    if isinstance(hay, str):
        if not isinstance(needle, str):
            raise ExprError(f'"in" a string needs a string, got {type_name(needle)}')
        return needle in hay
    if isinstance(hay, Mapping):
        return isinstance(needle, str) and needle in hay
    if isinstance(hay, list | tuple):
        return any(json_eq(needle, x) for x in hay)
    raise ExprError(f'"in" needs a string, array or object, got {type_name(hay)}')


def _order(op: str, a: Any, b: Any) -> bool:
    if not ((_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str))):
        raise ExprError(f'cannot compare {type_name(a)} and {type_name(b)} with "{op}"')
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == ">":
        return bool(a > b)
    return bool(a >= b)


def _compare(op: str, a: Any, b: Any) -> bool:
    if op == "==":
        return json_eq(a, b)
    if op == "!=":
        return not json_eq(a, b)
    if op == "in":
        return _in(a, b)
    if op == "not in":
        return not _in(a, b)
    return _order(op, a, b)


def _member(obj: Any, key: Any) -> Any:
    if isinstance(obj, Mapping):
        if not isinstance(key, str):
            raise ExprError(f"object keys are strings, got {type_name(key)}")
        return obj.get(key)
    if isinstance(obj, list | tuple | str):
        if not (_is_num(key) and isinstance(key, int)):
            raise ExprError(f"{type_name(obj)} indices are integers, got {type_name(key)}")
        return obj[key] if -len(obj) <= key < len(obj) else None
    if obj is None:
        return None
    raise ExprError(f"cannot index into {type_name(obj)}")


# --- compilation -----------------------------------------------------------------------


def _compile_var(name: str) -> Compiled:
    def run(env: Env) -> Any:
        try:
            return env[name]
        except KeyError:
            raise ExprError(f'unknown name "{name}"') from None

    return run


def compile_expr(e: Expr) -> Compiled:  # noqa: C901 - one arm per node type
    """A closure computing `e` over an environment of root names."""
    if isinstance(e, Lit):
        value = e.value
        return lambda env: value
    if isinstance(e, Var):
        return _compile_var(e.name)
    if isinstance(e, Attr):
        obj, name = compile_expr(e.obj), e.name
        return lambda env: _member(obj(env), name)
    if isinstance(e, Index):
        obj, idx = compile_expr(e.obj), compile_expr(e.index)
        return lambda env: _member(obj(env), idx(env))
    if isinstance(e, Neg):
        inner = compile_expr(e.operand)
        return lambda env: _arith("-", 0, inner(env))
    if isinstance(e, Not):
        inner = compile_expr(e.operand)
        return lambda env: not truthy(inner(env))
    if isinstance(e, BinOp):
        op, left, right = e.op, compile_expr(e.left), compile_expr(e.right)
        return lambda env: _arith(op, left(env), right(env))
    if isinstance(e, Compare):
        op, left, right = e.op, compile_expr(e.left), compile_expr(e.right)
        return lambda env: _compare(op, left(env), right(env))
    if isinstance(e, BoolOp):
        parts = [compile_expr(v) for v in e.values]
        return _compile_bool(e.op, parts)
    if isinstance(e, Cond):
        test, then, orelse = compile_expr(e.test), compile_expr(e.then), compile_expr(e.orelse)
        return lambda env: then(env) if truthy(test(env)) else orelse(env)
    if isinstance(e, Call):
        return _compile_call(e)
    if isinstance(e, ListExpr):
        items = [compile_expr(i) for i in e.items]
        return lambda env: [f(env) for f in items]
    pairs = [(k, compile_expr(v)) for k, v in e.items]
    return lambda env: {k: f(env) for k, f in pairs}


def _compile_bool(op: str, parts: list[Compiled]) -> Compiled:
    def run(env: Env) -> Any:
        value: Any = None
        for part in parts:
            value = part(env)
            if truthy(value) == (op == "or"):
                return value
        return value

    return run


def _compile_call(e: Call) -> Compiled:
    fn = FUNCTIONS.get(e.fn)
    if fn is None:
        raise ExprError(f'unknown function "{e.fn}"')
    args = [compile_expr(a) for a in e.args]
    name = e.fn

    def run(env: Env) -> Any:
        try:
            return fn(*(a(env) for a in args))
        except ExprError:
            raise
        except (TypeError, ValueError, OverflowError) as err:
            raise ExprError(f"{name}(): {err}") from None

    return run


_CACHE: dict[Expr, Compiled] = {}


def evaluate(e: Expr, env: Env) -> Any:
    """Evaluate `e` over `env`; compiled closures are cached per expression."""
    fn = _CACHE.get(e)
    if fn is None:
        if len(_CACHE) > 4096:
            _CACHE.clear()
        fn = _CACHE[e] = compile_expr(e)
    return fn(env)
