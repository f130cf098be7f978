"""String templates: literal text with `${expr}` holes.

A string that is exactly one hole (`"${parse.items}"`) evaluates to the expression's value,
of any type; otherwise holes are rendered into the text. `$$` is a literal `$`, so `$${` is a
literal `${`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aobc.expr.ast import Expr, to_source
from aobc.expr.fastparse import fast_parse_expr as parse_expr
from aobc.expr.parse import ExprSyntaxError


@dataclass(frozen=True, slots=True)
class Template:
    parts: tuple[str | Expr, ...]

    @property
    def single(self) -> Expr | None:
        """The expression, when the template is exactly one hole."""
        if len(self.parts) == 1 and not isinstance(self.parts[0], str):
            return self.parts[0]
        return None

    @property
    def exprs(self) -> tuple[Expr, ...]:
        return tuple(p for p in self.parts if not isinstance(p, str))


def has_holes(text: str) -> bool:
    return "$" in text


def _hole_end(text: str, start: int) -> int:
    """Index of the `}` closing the hole whose expression starts at `start`, or -1."""
    depth = 0
    i = start
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == '"':
            i += 1
            while i < n and text[i] != '"':
                i += 2 if text[i] == "\\" else 1
        elif ch == "{":
            depth += 1
        elif ch == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return -1


def parse_template(text: str) -> Template:
    """Split `text` into literal parts and parsed holes; ExprSyntaxError has an offset."""
    parts: list[str | Expr] = []
    buf: list[str] = []
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n and text[i + 1] == "$":
            buf.append("$")
            i += 2
        elif ch == "$" and i + 1 < n and text[i + 1] == "{":
            end = _hole_end(text, i + 2)
            if end < 0:
                raise ExprSyntaxError('unterminated "${" in template', i)
            try:
                expr = parse_expr(text[i + 2 : end])
            except ExprSyntaxError as err:
                raise ExprSyntaxError(err.message, i + 2 + err.offset) from None
            if buf:
                parts.append("".join(buf))
                buf = []
            parts.append(expr)
            i = end + 1
        else:
            buf.append(ch)
            i += 1
    if buf:
        parts.append("".join(buf))
    return Template(tuple(parts))


def _escape_literal(text: str, before_hole: bool) -> str:
    out: list[str] = []
    for i, ch in enumerate(text):
        if ch == "$":
            nxt = text[i + 1] if i + 1 < len(text) else ("{" if before_hole else "")
            out.append("$$" if nxt in ("{", "$") else "$")
        else:
            out.append(ch)
    return "".join(out)


def template_source(t: Template) -> str:
    """The canonical text of a template: parsing it gives back an equal template."""
    out: list[str] = []
    for i, part in enumerate(t.parts):
        if isinstance(part, str):
            before_hole = i + 1 < len(t.parts) and not isinstance(t.parts[i + 1], str)
            out.append(_escape_literal(part, before_hole))
        else:
            out.append("${" + to_source(part) + "}")
    return "".join(out)


def normalize_template(text: str) -> str:
    """Canonical spelling of a template string (identity for text without holes)."""
    if "$" not in text:
        return text
    return template_source(parse_template(text))


def render_value(value: Any) -> str:
    """How a hole's value reads inside text: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def render(t: Template, env: Mapping[str, Any]) -> Any:
    """Evaluate a template against `env` (see `aobc.expr.evaluate.evaluate`)."""
    from aobc.expr.evaluate import evaluate

    single = t.single
    if single is not None:
        return evaluate(single, env)
    return "".join(p if isinstance(p, str) else render_value(evaluate(p, env)) for p in t.parts)
