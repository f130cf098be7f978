"""Analyses the optimization passes share: data dependence, gates, what always runs, cost.

Legality comes from effects and from these facts:

- an edge is a *data* edge when its target reads its source's output (through an expression,
  or by taking all its predecessors' outputs, as a function without `args` and a join do),
  or carries control (a label, a guard, or a source that branches); otherwise it only orders;
- an approval is a *gate*: work downstream of it must stay downstream of it;
- a node *always runs* when nothing on any path to it can be skipped (no labels, guards,
  branching sources or partial joins); only such nodes may lose an ordering edge without
  changing when their successors are skipped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from aobc.ir import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    Effect,
    Graph,
    HttpNode,
    JoinMode,
    JoinNode,
    MapNode,
    Node,
    TimerNode,
    Workflow,
)
from aobc.ir.reads import node_reads, passes_predecessor_outputs

_EFFECT_RANK: Final = {Effect.PURE: 0, Effect.IDEMPOTENT: 1, Effect.EFFECTFUL: 2}


def reads(n: Node) -> set[str]:
    """Every name a node reads, its map body included."""
    out = node_reads(n)
    if isinstance(n, MapNode):
        out |= node_reads(n.body)
    return out


def is_data_edge(e: Edge, graph: Graph) -> bool:
    """True when removing `e` could change what its target computes or whether it runs."""
    src, dst = graph.nodes.get(e.src), graph.nodes.get(e.dst)
    if src is None or dst is None:
        return True
    if e.label is not None or e.when is not None:
        return True
    if isinstance(src, ConditionNode | ApprovalNode):
        return True
    return passes_predecessor_outputs(dst) or e.src in reads(dst)


def gated_by(graph: Graph) -> dict[str, frozenset[str]]:
    """For each node, the approvals upstream of it."""
    order = graph.topo_order() or list(graph.nodes)
    out: dict[str, frozenset[str]] = {}
    for nid in order:
        acc: set[str] = set()
        for e in graph.preds[nid]:
            acc |= out.get(e.src, frozenset())
            if isinstance(graph.nodes[e.src], ApprovalNode):
                acc.add(e.src)
        out[nid] = frozenset(acc)
    return out


def always_runs(graph: Graph) -> set[str]:
    """Nodes that run in every run that succeeds: nothing upstream can skip them."""
    order = graph.topo_order() or []
    out: set[str] = set()
    for nid in order:
        incoming = graph.preds[nid]
        if not incoming:
            out.add(nid)
            continue
        sure = [
            e
            for e in incoming
            if e.src in out
            and e.label is None
            and e.when is None
            and not isinstance(graph.nodes[e.src], ConditionNode | ApprovalNode)
        ]
        node = graph.nodes[nid]
        if isinstance(node, JoinNode) and node.mode is not JoinMode.ALL:
            need = (node.n or 1) if node.mode is JoinMode.N_OF_M else 1
            if len(sure) >= need:
                out.add(nid)
        elif len(sure) == len(incoming):
            out.add(nid)
    return out


def first_come_joins(graph: Graph, topo: list[str]) -> dict[str, str]:
    """For each node, a downstream join that fires on its first inputs (any, n of m).

    What such a join passes on depends on which inputs arrive first, so a rewrite that
    changes when a node upstream of one finishes can change the run's result."""
    out: dict[str, str] = {}
    for nid in reversed(topo):
        node = graph.nodes[nid]
        if isinstance(node, JoinNode) and node.mode is not JoinMode.ALL:
            out[nid] = nid
            continue
        found = next((out[e.dst] for e in graph.succs[nid] if e.dst in out), None)
        if found is not None:
            out[nid] = found
    return out


def stronger(a: Effect, b: Effect) -> Effect:
    return a if _EFFECT_RANK[a] >= _EFFECT_RANK[b] else b


# --- cost ---------------------------------------------------------------------------------

#: Estimated milliseconds per kind when a node gives no `cost` hint.
DEFAULT_COST_MS: Final = {
    "function": 5,
    "http": 150,
    "agent": 2000,
    "join": 0,
    "condition": 0,
    "approval": 0,  # time spent waiting for people is not the workflow's to optimize
    "timer": 0,
}
MAP_ITEMS_GUESS: Final = 10  # items a map is assumed to run when nothing says otherwise


def node_cost_ms(n: Node) -> float:
    """The estimated latency of one node, from its hint or its kind."""
    if n.cost_ms is not None:
        return float(n.cost_ms)
    if isinstance(n, TimerNode):
        return float(n.duration_ms or 0)
    if isinstance(n, HttpNode) and n.requests:
        return float(DEFAULT_COST_MS["http"]) * 1.1  # one round trip, a little fuller
    if isinstance(n, MapNode):
        rounds = -(-MAP_ITEMS_GUESS // max(n.concurrency, 1))
        return rounds * node_cost_ms(n.body)
    if isinstance(n, CompositeNode):
        return cost(n.workflow).critical_path_ms
    return float(DEFAULT_COST_MS.get(n.KIND.value, 5))


def http_round_trips(nodes: Iterable[Node]) -> int:
    """HTTP round trips a run makes: a batch is one; a map's body counts per item guessed."""
    total = 0
    for n in nodes:
        if isinstance(n, HttpNode):
            total += 1
        elif isinstance(n, MapNode):
            total += MAP_ITEMS_GUESS * http_round_trips([n.body])
        elif isinstance(n, CompositeNode):
            total += http_round_trips(n.workflow.nodes)
    return total


@dataclass(frozen=True, slots=True)
class Cost:
    nodes: int
    edges: int
    critical_path_ms: float
    critical_path: tuple[str, ...]
    http_round_trips: int
    agents: int

    def to_json(self) -> dict[str, object]:
        return {
            "nodes": self.nodes,
            "edges": self.edges,
            "critical_path_ms": round(self.critical_path_ms, 3),
            "critical_path": list(self.critical_path),
            "http_round_trips": self.http_round_trips,
            "agents": self.agents,
        }


def cost(wf: Workflow) -> Cost:
    """Node count, critical path (by estimated latency), HTTP round trips, agent calls."""
    graph = Graph.of(wf)
    order = graph.topo_order() or list(graph.nodes)
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for nid in order:
        best, prev = 0.0, None
        for e in graph.preds[nid]:
            f = finish.get(e.src, 0.0)
            if prev is None or f > best:
                best, prev = f, e.src
        finish[nid] = best + node_cost_ms(graph.nodes[nid])
        via[nid] = prev
    end = max(finish, key=finish.__getitem__, default=None)
    path: list[str] = []
    while end is not None:
        path.append(end)
        end = via.get(end)
    return Cost(
        nodes=len(wf.nodes),
        edges=len(wf.edges),
        critical_path_ms=max(finish.values(), default=0.0),
        critical_path=tuple(reversed(path)),
        http_round_trips=http_round_trips(wf.nodes),
        agents=sum(1 for n in wf.nodes if isinstance(n, AgentNode)),
    )
