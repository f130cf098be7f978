"""The expression language: conditions, edge guards, outputs, map sources and templates.

Parsed by the grammar in grammar/aob.lark (start symbol `expr`), printed canonically, and
evaluated by compiled closures over JSON data. Never `eval`ed.
"""

from __future__ import annotations

from aobc.expr.ast import Expr, is_path, root_names, to_source
from aobc.expr.evaluate import ExprError, check_calls, compile_expr, evaluate, json_eq, truthy
from aobc.expr.fastparse import fast_parse_expr as parse_expr
from aobc.expr.parse import ExprSyntaxError, parse_expr_reference
from aobc.expr.template import (
    Template,
    normalize_template,
    parse_template,
    render,
    template_source,
)


def normalize_expr(text: str) -> str:
    """The canonical spelling of an expression; raises ExprSyntaxError."""
    return to_source(parse_expr(text))


__all__ = [
    "Expr",
    "ExprError",
    "ExprSyntaxError",
    "Template",
    "check_calls",
    "compile_expr",
    "evaluate",
    "is_path",
    "json_eq",
    "normalize_expr",
    "normalize_template",
    "parse_expr",
    "parse_expr_reference",
    "parse_template",
    "render",
    "root_names",
    "template_source",
    "to_source",
    "truthy",
]
