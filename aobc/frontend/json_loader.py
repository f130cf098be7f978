"""Reading JSON inputs safely: size and depth limits, duplicate keys, located syntax errors."""

from __future__ import annotations

import json
import math
from typing import Any

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.policy import Limits
from aobc.source import JsonLoc, SourceFile, Span


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise _DuplicateKey(k)
        out[k] = v
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} is out of range")
    return value


def depth_of(value: Any) -> int:
    """Nesting depth of a JSON value (a scalar is 0), without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            stack.extend((x, d + 1) for x in v.values())
            deepest = max(deepest, d + 1)
        elif isinstance(v, list):
            stack.extend((x, d + 1) for x in v)
            deepest = max(deepest, d + 1)
    return deepest


def check_text_size(src_name: str, size: int, limits: Limits) -> Diagnostic | None:
    if size > limits.max_bytes:
        return Diagnostic.error(
            ec.SIZE_LIMIT,
            f"input is {size} bytes; the limit is {limits.max_bytes}",
            JsonLoc(src_name, ""),
        )
    return None


def parse_json(src: SourceFile, limits: Limits, diags: list[Diagnostic]) -> tuple[bool, Any]:
    """Parse a JSON source. Returns (ok, value); problems are appended to `diags`."""
    too_big = check_text_size(src.name, len(src.text.encode("utf-8")), limits)
    if too_big is not None:
        diags.append(too_big)
        return False, None
    try:
        value = json.loads(
            src.text,
            object_pairs_hook=_pairs,
            parse_constant=_reject_constant,
            parse_float=_parse_float,
        )
    except json.JSONDecodeError as err:
        span = Span(src.name, err.lineno, err.colno, err.lineno, err.colno + 1)
        diags.append(
            Diagnostic.error(
                ec.JSON_SYNTAX, f"invalid JSON: {err.msg[:1].lower()}{err.msg[1:]}", span
            )
        )
        return False, None
    except _DuplicateKey as err:
        diags.append(
            Diagnostic.error(
                ec.JSON_SYNTAX,
                f'key "{err.key}" appears twice in one object',
                JsonLoc(src.name, ""),
            )
        )
        return False, None
    except RecursionError:
        diags.append(
            Diagnostic.error(
                ec.SIZE_LIMIT, "JSON is nested too deeply to read", JsonLoc(src.name, "")
            )
        )
        return False, None
    except ValueError as err:
        diags.append(
            Diagnostic.error(ec.JSON_SYNTAX, f"invalid JSON: {err}", JsonLoc(src.name, ""))
        )
        return False, None
    depth = depth_of(value)
    if depth > limits.max_depth:
        diags.append(
            Diagnostic.error(
                ec.SIZE_LIMIT,
                f"JSON is nested {depth} levels deep; the limit is {limits.max_depth}",
                JsonLoc(src.name, ""),
            )
        )
        return False, None
    return True, value
