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
methods are safe (RFC 9110 section 9.2.1) and so have no effect to preserve. A node kept only
for its effect gets a `missed` remark saying so.

One exception keeps a removable node: the last branch of a condition under a label, when the
condition also has an `else` edge. `else` is taken when no other label of its source matches,
so removing the only `false` branch of `c` would send every `false` run of `c` down `else`.
Such a node stays (with a `missed` remark), and with it whatever it needs to keep meaning
what it meant: the never-running nodes that keep it from running, or the nodes it reads.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import ClassVar

from aobc.expr.ast import root_names
from aobc.ir import ConditionNode, Effect, Graph, HttpNode, Node, Workflow
from aobc.ir.reach import ELSE_LABEL, edge_never_taken, never_running
from aobc.ir.reads import cached_expr
from aobc.passes.base import Pass, PassContext

_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _observable(n: Node, aggressive: bool) -> bool:
    if n.effect is Effect.PURE:
        return False
    if aggressive and isinstance(n, HttpNode) and n.method in _SAFE_METHODS:
        return False
    return True


def unread(
    wf: Workflow, graph: Graph, aggressive: bool, keep: frozenset[str] = frozenset()
) -> set[str]:
    """Nodes whose result reaches no output, no observable node and nothing in `keep`."""
    live: set[str] = set(keep)
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


def else_anchors(graph: Graph, removing: set[str]) -> dict[str, tuple[str, str]]:
    """Nodes of `removing` that must stay so that an `else` edge keeps its meaning, each with
    (condition, label): for every condition that stays with an `else` edge that stays, and every
    other label it may select, the first target when all of that label's edges would go."""
    out: dict[str, tuple[str, str]] = {}
    for sid, node in graph.nodes.items():
        if sid in removing or not isinstance(node, ConditionNode):
            continue
        edges = graph.succs[sid]
        # An `else` edge whose target goes too goes with it: then there is nothing to keep.
        if not any(e.label == ELSE_LABEL and e.dst not in removing for e in edges):
            continue
        by_label: dict[str, list[str]] = {}
        for e in edges:
            if e.label is None or e.label == ELSE_LABEL:
                continue
            # A label the condition can never select never stops `else`. Guards do not count:
            # labels are matched before guards are evaluated.
            if edge_never_taken(dataclasses.replace(e, when=None), node):
                continue
            by_label.setdefault(e.label, []).append(e.dst)
        for label, targets in by_label.items():
            if all(t in removing for t in targets):
                out.setdefault(targets[0], (sid, label))
    return out


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
        anchors = else_anchors(graph, set(dead))
        keep = set(anchors)
        stack = list(anchors)
        while stack:  # a kept never-running node keeps what stops it from running
            for e in graph.preds[stack.pop()]:
                if e.src in dead and e.src not in keep:
                    keep.add(e.src)
                    stack.append(e.src)
        self._kept_anchors(anchors, graph, ctx)
        unreachable = [nid for nid in dead if nid not in keep]
        wf = ctx.rewriter.remove_nodes(wf, unreachable)
        for nid in unreachable:
            why = dead[nid]
            node = graph.nodes[nid]
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
        anchored: frozenset[str] = frozenset()
        while True:  # a kept unread node keeps what it reads, which may free other anchors
            gone = unread(wf, graph, self.aggressive, anchored)
            anchors = else_anchors(graph, gone)
            if not anchors:
                break
            anchored |= anchors.keys()
            self._kept_anchors(anchors, graph, ctx)
        unused = [n.id for n in wf.nodes if n.id in gone]
        wf = ctx.rewriter.remove_nodes(wf, unused)
        for nid in unused:
            node = graph.nodes[nid]
            ctx.remark(
                self.name,
                "passed",
                "unread",
                (nid,),
                f'removed "{nid}": its output reaches no output or effect',
                node.loc,
            )
            ctx.count("unread-removed")
        self._kept_effects(wf, ctx, anchored)
        return wf

    def _kept_anchors(
        self, anchors: dict[str, tuple[str, str]], graph: Graph, ctx: PassContext
    ) -> None:
        for nid, (cond, label) in anchors.items():
            ctx.remark(
                self.name,
                "missed",
                "kept-branch",
                (nid,),
                f'kept "{nid}": it is the only "{label}" branch of "{cond}", whose "else" '
                f'branch would otherwise be taken when "{cond}" is {label}',
                graph.nodes[nid].loc,
            )

    def _kept_effects(self, wf: Workflow, ctx: PassContext, anchored: frozenset[str]) -> None:
        """A `missed` remark for each node kept only for its effect: an author who expected
        it to go learns why it stays."""
        graph = Graph.of(wf)
        live = set(graph.nodes) - unread(wf, graph, self.aggressive, anchored)
        read: set[str] = set()
        for o in wf.outputs:
            read |= root_names(cached_expr(o.expr))
        for n in wf.nodes:
            # Liveness flows to predecessors, so a node with a live successor (or read by an
            # output) would be kept even if it had no effect.
            if n.id in read or any(e.dst in live for e in graph.succs[n.id]):
                continue
            if not _observable(n, self.aggressive):
                continue
            hint = (
                "; prune-dead{aggressive=true} removes unread safe requests"
                if isinstance(n, HttpNode) and n.method in _SAFE_METHODS
                else ""
            )
            ctx.remark(
                self.name,
                "missed",
                "kept-effect",
                (n.id,),
                f'kept "{n.id}": nothing reads its output, but it is {n.effect.value} and its '
                f"effect is observable{hint}",
                n.loc,
            )
