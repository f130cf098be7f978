"""`parallelize`: drop edges that only order independent nodes, so they can run side by side.

Before:
    a = http GET "https://api.example.com/a" { effect: idempotent }
    b = http GET "https://api.example.com/b" { effect: idempotent }
    r = function "m:r" { effect: pure, args: { a: a.body, b: b.body } }
    a -> b -> r
    a -> r

After (`b` no longer waits for `a`; the critical path drops from 305 ms to 155 ms):
    a -> r
    b -> r

Legality. An edge a -> b goes only when all of these hold, checked against the graph
without it:

- it carries no data or control (`is_data_edge`): `b` does not read `a`, and the edge has no
  label or guard and does not leave a condition or approval;
- `a` always runs, so no run skips `a` and with it `b` (which would run once the edge goes);
- `b` feeds no first-come join (`any`, n of m): such a join passes on whichever inputs
  arrive first, so letting `b` finish earlier could change what the run returns;
- every approval that gated `b` still reaches it, so no work moves above a human decision;
- the order of nodes whose timing is observable is kept: of every node upstream of `a` (and
  `a`) and every node downstream of `b` (and `b`) that both have effects (idempotent or
  effectful), or are timers or approvals, the first still reaches the second. Idempotent
  writes are ordered too (a GET after a PUT must see the PUT); only two safe HTTP reads
  (GET, HEAD or OPTIONS, declared idempotent) may swap, since neither changes what the
  other sees. A timer is a delay on purpose, so what comes after it stays after it;
- an effectful node downstream of `b` still waits for everything upstream of `a` to succeed:
  effectful nodes are never moved, and a step that fails (a pure validation, say) must still
  stop the effects that came after it. `early_effects=true` gives this up where nothing else
  orders the two (the translation validator calls a failed run unconstrained, so it accepts
  either);
- every expression downstream of `b` that reads a node upstream of `a` still has it upstream.

Dropping an edge only removes orderings, and a kept edge is kept because a constraint needs
it and no other path gives it; later drops only remove paths, so a second run drops nothing.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Final

from aobc.expr.ast import root_names
from aobc.ir import (
    ApprovalNode,
    Edge,
    Effect,
    Graph,
    HttpNode,
    Node,
    TimerNode,
    Workflow,
    walk_nodes,
)
from aobc.ir.reads import cached_expr
from aobc.passes.analysis import (
    Cost,
    always_runs,
    cost,
    first_come_joins,
    gated_by,
    is_data_edge,
    reads,
    stronger,
)
from aobc.passes.base import Pass, PassContext

_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
#: The reasons a `kept-order` remark gives in its `reason` argument.
REASONS: Final = ("gate", "skippable", "race", "effects", "failure", "reads")


def effect_of(n: Node) -> Effect:
    """The strongest effect of a node and everything nested in it (map body, sub-workflow)."""
    out = Effect.PURE
    for m in walk_nodes((n,)):
        out = stronger(out, m.effect)
    return out


def is_timed(n: Node) -> bool:
    """Whether when `n` runs is observable: it has an effect, waits, or asks a person."""
    return effect_of(n) is not Effect.PURE or isinstance(n, TimerNode | ApprovalNode)


def is_safe_read(n: Node) -> bool:
    """An idempotent GET/HEAD/OPTIONS request: changes nothing another request could see."""
    return (
        isinstance(n, HttpNode)
        and n.method in _SAFE_METHODS
        and n.requests is None
        and effect_of(n) is Effect.IDEMPOTENT
    )


def must_stay_ordered(u: Node, d: Node) -> bool:
    return is_timed(u) and is_timed(d) and not (is_safe_read(u) and is_safe_read(d))


def _describe(n: Node) -> str:
    if isinstance(n, TimerNode):
        return f'timer "{n.id}"'
    if isinstance(n, ApprovalNode):
        return f'approval "{n.id}"'
    return f'{effect_of(n).value} "{n.id}"'


def reads_by_node(wf: Workflow, graph: Graph) -> dict[str, set[str]]:
    """Node ids each node's expressions read, with the guards of its outgoing edges (a guard
    is evaluated when its source finishes, so it reads in its source's scope)."""
    out = {nid: reads(n) & graph.nodes.keys() for nid, n in graph.nodes.items()}
    for e in wf.edges:
        if e.when is not None and e.src in out:
            out[e.src] |= root_names(cached_expr(e.when)) & graph.nodes.keys()
    for nid, names in out.items():
        names.discard(nid)
    return out


@dataclass(frozen=True, slots=True)
class _Facts:
    """What dropping ordering edges never changes (see the module docstring)."""

    always: set[str]
    gates: dict[str, frozenset[str]]
    reads: dict[str, set[str]]
    races: dict[str, str]  # node -> a first-come join it feeds


def _reach_without(graph: Graph, start: str, without: Edge) -> set[str]:
    """Nodes reachable from `start` (itself included) when `without` is not there."""
    seen = {start}
    stack = [start]
    while stack:
        for e in graph.succs[stack.pop()]:
            if e is not without and e.dst not in seen:
                seen.add(e.dst)
                stack.append(e.dst)
    return seen


@dataclass(frozen=True, kw_only=True)
class ParallelizePass(Pass):
    """Removes ordering-only edges whose order nothing observable depends on."""

    name: ClassVar[str] = "parallelize"
    summary: ClassVar[str] = (
        "drop edges that only order independent nodes; report the critical path before and after"
    )
    #: Let effectful nodes start before pure work they do not read has succeeded.
    early_effects: bool = field(
        default=False,
        metadata={"help": "let effects start before unread work upstream has succeeded"},
    )

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        graph = Graph.of(wf)
        topo = graph.topo_order()
        if topo is None:
            return wf  # verify reports the cycle; nothing here is safe to judge
        before = cost(wf)
        facts = _Facts(
            always_runs(graph),
            gated_by(graph),
            reads_by_node(wf, graph),
            first_come_joins(graph, topo),
        )
        for edge in list(wf.edges):
            if edge.src not in graph.nodes or edge.dst not in graph.nodes:
                continue
            if is_data_edge(edge, graph):
                continue
            why = self._why_kept(edge, graph, facts)
            if why is not None:
                kind, message = why
                ctx.remark(
                    self.name,
                    "missed",
                    "kept-order",
                    (edge.src, edge.dst),
                    f'kept "{edge.src}" -> "{edge.dst}": {message}',
                    edge.loc,
                    reason=kind,
                )
                continue
            wf = ctx.rewriter.remove_edges(wf, functools.partial(operator.is_, edge))
            graph = Graph.of(wf)
            ctx.count("edges-dropped")
            ctx.remark(
                self.name,
                "passed",
                "dropped-order",
                (edge.src, edge.dst),
                f'dropped "{edge.src}" -> "{edge.dst}": it only ordered independent nodes',
                edge.loc,
            )
        after = cost(wf)
        ctx.remark(
            self.name,
            "analysis",
            "critical-path",
            after.critical_path,
            _path_message(before, after),
            wf.loc,
            before_ms=before.critical_path_ms,
            after_ms=after.critical_path_ms,
            before_path=list(before.critical_path),
            after_path=list(after.critical_path),
        )
        return wf

    def _why_kept(self, edge: Edge, graph: Graph, facts: _Facts) -> tuple[str, str] | None:
        """(reason kind, message) when `edge` must stay, or None when it may go."""
        a, b = edge.src, edge.dst
        cut = _Cut(graph, edge, graph.ancestors(a) | {a}, graph.descendants([b]) | {b})
        lost = cut.lost((g, b) for g in sorted(facts.gates[b] & cut.upstream))
        if lost:
            return "gate", f'"{b}" would no longer wait for approval "{lost[0]}"'
        if a not in facts.always:
            return "skippable", f'"{a}" may be skipped, and then "{b}" must be skipped too'
        if b in facts.races:
            join = facts.races[b]
            return "race", (
                f'"{b}" feeds first-come join "{join}", whose result depends on what arrives first'
            )
        lost = cut.lost(_ordered_pairs(graph, edge, cut.upstream, cut.downstream))
        if lost:
            return "effects", _order_message(graph, a, b, *lost)
        if not self.early_effects:
            effects = [
                d for d in sorted(cut.downstream) if effect_of(graph.nodes[d]) is Effect.EFFECTFUL
            ]
            lost = cut.lost((u, d) for d in effects for u in sorted(cut.upstream))
            if lost:
                return (
                    "failure",
                    f'effectful "{lost[1]}" would no longer wait for "{lost[0]}" to succeed',
                )
        lost = cut.lost(
            (x, d) for d in sorted(cut.downstream) for x in sorted(facts.reads[d] & cut.upstream)
        )
        if lost:
            return (
                "reads",
                f'"{lost[1]}" reads "{lost[0]}", and only this edge runs "{lost[0]}" first',
            )
        return None


@dataclass
class _Cut:
    """The graph without one edge, asked which orderings across that edge it still has."""

    graph: Graph
    edge: Edge
    upstream: set[str]  # the edge's source and its ancestors
    downstream: set[str]  # the edge's target and its descendants
    _reach: dict[str, set[str]] = field(default_factory=dict)

    def reaches(self, u: str, d: str) -> bool:
        if u not in self._reach:
            self._reach[u] = _reach_without(self.graph, u, self.edge)
        return d in self._reach[u]

    def lost(self, pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
        """The first pair (u, d) whose order this edge alone gives."""
        return next(((u, d) for u, d in pairs if not self.reaches(u, d)), None)


def _path_message(before: Cost, after: Cost) -> str:
    def path(c: Cost) -> str:
        return f"{c.critical_path_ms:,g} ms ({' -> '.join(c.critical_path)})"

    if (before.critical_path_ms, before.critical_path) == (
        after.critical_path_ms,
        after.critical_path,
    ):
        return f"critical path {path(after)}, unchanged"
    return f"critical path {path(before)} -> {path(after)}"


def _ordered_pairs(
    graph: Graph, edge: Edge, upstream: set[str], downstream: set[str]
) -> Iterator[tuple[str, str]]:
    """Pairs (u, d) across `edge` whose order is observable, the edge's own ends first (so
    the remark names the closest reason), then in a stable order."""
    ups = [u for u in sorted(upstream) if is_timed(graph.nodes[u])]
    downs = [d for d in sorted(downstream) if is_timed(graph.nodes[d])]
    pairs = [
        (u, d) for u in ups for d in downs if must_stay_ordered(graph.nodes[u], graph.nodes[d])
    ]
    own = (edge.src, edge.dst)
    yield from sorted(pairs, key=lambda p: p != own)


def _order_message(graph: Graph, a: str, b: str, u: str, d: str) -> str:
    nu, nd = graph.nodes[u], graph.nodes[d]
    if isinstance(nu, TimerNode):
        return f'{_describe(nd)} must wait for timer "{u}"'
    if isinstance(nd, TimerNode):
        return f'timer "{d}" must start after {_describe(nu)}'
    if (u, d) == (a, b):
        if effect_of(nu) is Effect.EFFECTFUL and effect_of(nd) is Effect.EFFECTFUL:
            return "both nodes are effectful; their order is observable"
        return (
            f"both nodes have effects ({_describe(nu)}, {_describe(nd)}); their order is observable"
        )
    return f"it is what orders {_describe(nu)} before {_describe(nd)}"
