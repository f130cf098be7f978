"""Rewriting what nodes read: replace a name by an expression everywhere it is used.

Merging node B into A (cse) rewrites every read of `B` as a read of `A`; coalescing A and B
into a batch rewrites `A` as `batch[0]` and `B` as `batch[1]`. This module does that on a
node's canonical document, where it knows which fields are templates (`${...}` holes) and
which are plain expressions, so the result prints canonically and reloads to IR.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from aobc.expr import parse_expr, parse_template, template_source, to_source
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
from aobc.expr.template import Template

#: Node fields holding templates (recursively, for JSON values) and plain expressions.
TEMPLATE_FIELDS: Final = (
    "url",
    "headers",
    "body",
    "args",
    "prompt",
    "system",
    "message",
    "until",
    "requests",
)
EXPR_FIELDS: Final = ("over", "expr")


def subst_expr(e: Expr, names: Mapping[str, Expr]) -> Expr:  # noqa: C901 - one arm per node type
    """`e` with every free use of a name in `names` replaced by its expression."""
    if isinstance(e, Var):
        return names.get(e.name, e)
    if isinstance(e, Lit):
        return e
    if isinstance(e, Attr):
        return Attr(subst_expr(e.obj, names), e.name)
    if isinstance(e, Index):
        return Index(subst_expr(e.obj, names), subst_expr(e.index, names))
    if isinstance(e, Neg):
        return Neg(subst_expr(e.operand, names))
    if isinstance(e, Not):
        return Not(subst_expr(e.operand, names))
    if isinstance(e, BinOp):
        return BinOp(e.op, subst_expr(e.left, names), subst_expr(e.right, names))
    if isinstance(e, Compare):
        return Compare(e.op, subst_expr(e.left, names), subst_expr(e.right, names))
    if isinstance(e, BoolOp):
        return BoolOp(e.op, tuple(subst_expr(v, names) for v in e.values))
    if isinstance(e, Cond):
        return Cond(
            subst_expr(e.test, names), subst_expr(e.then, names), subst_expr(e.orelse, names)
        )
    if isinstance(e, Call):
        return Call(e.fn, tuple(subst_expr(a, names) for a in e.args))
    if isinstance(e, ListExpr):
        return ListExpr(tuple(subst_expr(i, names) for i in e.items))
    assert isinstance(e, DictExpr)
    return DictExpr(tuple((k, subst_expr(v, names)) for k, v in e.items))


def subst_expr_text(text: str, names: Mapping[str, Expr]) -> str:
    return to_source(subst_expr(parse_expr(text), names))


def subst_template_text(text: str, names: Mapping[str, Expr]) -> str:
    if "$" not in text:
        return text
    tpl = parse_template(text)
    parts = tuple(p if isinstance(p, str) else subst_expr(p, names) for p in tpl.parts)
    return template_source(Template(parts))


def _templates(value: Any, names: Mapping[str, Expr]) -> Any:
    if isinstance(value, str):
        return subst_template_text(value, names)
    if isinstance(value, dict):
        return {k: _templates(v, names) for k, v in value.items()}
    if isinstance(value, list):
        return [_templates(v, names) for v in value]
    return value


def subst_node_document(doc: dict[str, Any], names: Mapping[str, Expr]) -> dict[str, Any]:
    """A node document with `names` substituted in every expression it evaluates.

    A map's body is rewritten too (it reads the same names); a composite's sub-workflow is
    not (it has a scope of its own, fed through the composite's `args`).
    """
    out = dict(doc)
    for key in TEMPLATE_FIELDS:
        if key in out:
            out[key] = _templates(out[key], names)
    for key in EXPR_FIELDS:
        if key in out:
            out[key] = subst_expr_text(out[key], names)
    if doc.get("type") == "map" and isinstance(doc.get("body"), dict):
        out["body"] = subst_node_document(doc["body"], names)
    return out


def ref(name: str, *path: str | int) -> Expr:
    """`name.a.b[0]` as an expression."""
    e: Expr = Var(name)
    for step in path:
        e = Index(e, Lit(step)) if isinstance(step, int) else Attr(e, step)
    return e
