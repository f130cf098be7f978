"""What each node, edge and output reads: the expressions inside them and their root names.

Data dependencies come from here. Parsing is cached per canonical text, so asking again for a
node that did not change costs a dictionary lookup.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from typing import Any

from aobc.expr import Expr, parse_expr, parse_template, root_names
from aobc.ir.nodes import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    FunctionNode,
    HttpNode,
    MapNode,
    Node,
    TimerNode,
)


@functools.lru_cache(maxsize=65536)
def cached_expr(text: str) -> Expr:
    """A parsed expression (IR holds canonical, already-validated text)."""
    return parse_expr(text)


@functools.lru_cache(maxsize=65536)
def cached_template_exprs(text: str) -> tuple[Expr, ...]:
    if "$" not in text:
        return ()
    return parse_template(text).exprs


def _json_template_exprs(value: Any, path: str) -> Iterator[tuple[str, Expr]]:
    if isinstance(value, str):
        for e in cached_template_exprs(value):
            yield path, e
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _json_template_exprs(v, path)
    elif isinstance(value, tuple | list):
        for v in value:
            yield from _json_template_exprs(v, path)


def node_exprs(n: Node) -> Iterator[tuple[str, Expr]]:
    """(field, expression) for every expression a node evaluates before it runs.

    A map's body and a composite's sub-workflow are not included: they run in their own
    scope. The map's `over` is, and so are a composite's `args`.
    """
    if isinstance(n, HttpNode):
        yield from _json_template_exprs(n.url, "url")
        for v in n.headers.values():
            yield from _json_template_exprs(v, "headers")
        yield from _json_template_exprs(n.body, "body")
        for req in n.requests or ():
            yield from _json_template_exprs(req, "requests")
    elif isinstance(n, FunctionNode):
        yield from _json_template_exprs(n.args, "args")
    elif isinstance(n, MapNode):
        yield "over", cached_expr(n.over)
    elif isinstance(n, ConditionNode):
        yield "expr", cached_expr(n.expr)
    elif isinstance(n, CompositeNode):
        yield from _json_template_exprs(n.args, "args")
    elif isinstance(n, AgentNode):
        yield from _json_template_exprs(n.prompt, "prompt")
        yield from _json_template_exprs(n.system, "system")
    elif isinstance(n, ApprovalNode):
        yield from _json_template_exprs(n.message, "message")
    elif isinstance(n, TimerNode):
        yield from _json_template_exprs(n.until, "until")


#: node_reads results by node identity. Nodes are immutable, and passes ask again for every
#: node after each rewrite (cse's fixpoint, say), so this turns O(merges x nodes) expression
#: walks into dictionary lookups. The entry holds the node, so its id is not reused while
#: cached; the table is dropped when it grows past a bound.
_READS: dict[int, tuple[Node, frozenset[str]]] = {}
_READS_MAX = 200_000


def node_reads(n: Node) -> set[str]:
    """Root names a node's own expressions read (node ids, `inputs`, `item`)."""
    return set(frozen_node_reads(n))


def frozen_node_reads(n: Node) -> frozenset[str]:
    """`node_reads`, not copied: for a caller that only looks."""
    hit = _READS.get(id(n))
    if hit is not None and hit[0] is n:
        return hit[1]
    out: set[str] = set()
    for _, e in node_exprs(n):
        out |= root_names(e)
    if len(_READS) >= _READS_MAX:
        _READS.clear()
    frozen = frozenset(out)
    _READS[id(n)] = (n, frozen)
    return frozen


def passes_predecessor_outputs(n: Node) -> bool:
    """True when a node receives all its predecessors' outputs as its input.

    Such a node depends on the data of every incoming edge, so no edge into it is
    ordering-only. A function without `args` and a join are like this.
    """
    from aobc.ir.nodes import JoinNode

    return (isinstance(n, FunctionNode) and n.args is None) or isinstance(n, JoinNode)
