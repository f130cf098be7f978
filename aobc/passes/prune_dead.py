"""`prune-dead`: remove nodes that can never run, and pure nodes nobody reads.

Before:
    mode  = condition "fast" { }
    fast  = function "m:fast" { effect: effectful }
    slow  = function "m:slow" { effect: effectful }
    stats = function "m:stats" { effect: pure }      # its output reaches nothing
    mode -[fast]-> fast
    mode -[slow]-> slow

After:
    mode  = condition "fast" { }
    fast  = function "m:fast" { effect: effectful }
    mode -[fast]-> fast

Legality: a node that can never run has no effect, whatever its declared effect, so removing
it preserves every run's effects. A pure node whose output reaches no workflow output and no
non-pure node changes nothing observable. Effectful and idempotent nodes that may run are
never removed; `aggressive=true` also removes unused HTTP GET/HEAD/OPTIONS nodes, whose
methods are safe (RFC 9110 section 9.2.1) and so have no effect to preserve.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from aobc.expr.ast import root_names
from aobc.ir import Effect, Graph, HttpNode, Node, Workflow
from aobc.ir.reach import never_running
from aobc.ir.reads import cached_expr
from aobc.passes.base import Pass, PassContext

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _observable(n: Node, aggressive: bool) -> bool:
    if n.effect is Effect.PURE:
        return False
    if aggressive and isinstance(n, HttpNode) and n.method in _SAFE_METHODS:
        return False
    return True


def unread(wf: Workflow, graph: Graph, aggressive: bool) -> set[str]:
    """Nodes whose result reaches no output and no observable node."""
    live: set[str] = set()
    for o in wf.outputs:
        live |= root_names(cached_expr(o.expr)) & graph.nodes.keys()
    live |= {nid for nid, n in graph.nodes.items() if _observable(n, aggressive)}
    stack = list(live)
    while stack:
        nid = stack.pop()
        for e in graph.preds[nid]:
            if e.src not in live:
                live.add(e.src)
                stack.append(e.src)
    return set(graph.nodes) - live


@dataclass(frozen=True, kw_only=True)
class PruneDeadPass(Pass):
    """Removes unreachable nodes and unread pure nodes."""

    name: ClassVar[str] = "prune-dead"
    summary: ClassVar[str] = "remove nodes that never run and pure nodes whose output nobody reads"
    aggressive: bool = False

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        graph = Graph.of(wf)
        if graph.topo_order() is None:
            return wf  # verify reports the cycle; nothing here is safe to judge
        dead = never_running(graph)
        for nid, why in dead.items():
            node = graph.nodes[nid]
            wf = ctx.rewriter.remove_node(wf, nid)
            ctx.remark(
                self.name,
                "passed",
                "unreachable",
                (nid,),
                f'removed "{nid}": it can never run ({why})',
                node.loc,
            )
            ctx.count("unreachable-removed")
        graph = Graph.of(wf)
        for nid in [n.id for n in wf.nodes if n.id in unread(wf, graph, self.aggressive)]:
            node = graph.nodes[nid]
            wf = ctx.rewriter.remove_node(wf, nid)
            ctx.remark(
                self.name,
                "passed",
                "unread",
                (nid,),
                f'removed "{nid}": its output reaches no output or effect',
                node.loc,
            )
            ctx.count("unread-removed")
        return wf
