"""Functions every workflow may call by reference, with semantics the optimizer knows.

`function "aobc.stdlib:filter"` keeps the items for which an expression holds:

    keep = function "aobc.stdlib:filter" { effect: pure, args: { items: fetch.body.items, where: "item.score > 0.5" } }

Because its meaning is fixed, `pushdown-predicates` may move the `where` into a source that
declares it can filter (an http node with `filter: {param, items}`).
"""

from __future__ import annotations

from typing import Any

from aobc.expr import evaluate, parse_expr, truthy


def filter(inputs: dict[str, Any]) -> list[Any]:
    """The items of `inputs["items"]` for which `inputs["where"]` is true, as `item`."""
    items = inputs.get("items")
    if items is None:
        return []
    if not isinstance(items, list):
        raise TypeError(f"filter needs a list of items, got {type(items).__name__}")
    where = parse_expr(str(inputs["where"]))
    return [item for item in items if truthy(evaluate(where, {"item": item}))]


def identity(inputs: dict[str, Any]) -> Any:
    """Its one input, unchanged (`{"value": x}` gives x)."""
    return inputs.get("value")
