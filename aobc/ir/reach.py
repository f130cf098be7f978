"""Which edges can be taken and which nodes can run, from what is known at compile time.

An edge is never taken when its guard is a false constant, or when it leaves a condition
whose expression is constant under a label that value does not select. A plain node with a
never-taken (or never-running) input never runs; a join runs while enough inputs remain.
"""

from __future__ import annotations

from typing import Final

from aobc.expr.ast import Expr, Lit
from aobc.ir.nodes import ConditionNode, Edge, JoinMode, JoinNode, Node
from aobc.ir.reads import cached_expr
from aobc.ir.walk import Graph

ELSE_LABEL: Final = "else"
_NOT_CONSTANT: Final = object()


def _constant(e: Expr) -> object:
    return e.value if isinstance(e, Lit) else _NOT_CONSTANT


def label_of(value: object) -> str:
    """The branch label a condition value selects: `true`, `false`, or the value as text."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return str(value)


def edge_never_taken(e: Edge, src: Node | None) -> bool:
    """True when an edge can never be taken: a false constant guard or an impossible label."""
    if e.when is not None:
        guard = _constant(cached_expr(e.when))
        if guard is not _NOT_CONSTANT and not guard:
            return True
    if isinstance(src, ConditionNode) and e.label is not None and e.label != ELSE_LABEL:
        value = _constant(cached_expr(src.expr))
        if value is not _NOT_CONSTANT:
            return e.label != label_of(value)
    return False


def never_running(graph: Graph) -> dict[str, str]:
    """Nodes that can never run, each with the reason, in topological order.

    Empty for a graph with a cycle (nothing is judged there).
    """
    order = graph.topo_order() or []
    dead: dict[str, str] = {}
    for nid in order:
        incoming = graph.preds[nid]
        if not incoming:
            continue
        blocked = [
            e for e in incoming if e.src in dead or edge_never_taken(e, graph.nodes.get(e.src))
        ]
        node = graph.nodes[nid]
        if isinstance(node, JoinNode):
            need = (node.n or 1) if node.mode is JoinMode.N_OF_M else 1
            is_dead = len(incoming) - len(blocked) < need
        else:
            is_dead = bool(blocked)
        if is_dead and not blocked:
            dead[nid] = f"it waits for {node.n} inputs but has only {len(incoming)}"  # type: ignore[attr-defined]
        elif is_dead:
            first = blocked[0]
            dead[nid] = (
                f'"{first.src}" never runs'
                if first.src in dead
                else f'edge "{first.src}" -> "{nid}" is never taken'
            )
    return dead
