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

import bisect
import dataclasses
import heapq
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar, Final

from aobc.expr.ast import root_names
from aobc.frontend.jsonpatch import PatchOp
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
    is_data_edge,
    reads,
    stronger,
)
from aobc.passes.base import Pass, PassContext
from aobc.passes.rewriter import Rewriter, contains_sorted

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
    reads: dict[str, set[str]]
    races: dict[str, str]  # node -> a first-come join it feeds


class _Reach:
    """Ancestor sets of the graph as it loses edges, as ints used as bitsets.

    Bit `rank[id]` stands for a node, ranks following sorted ids, so the lowest bit of a set
    is the id a sorted walk meets first. Dropping a -> b removes from each node's ancestors
    exactly the nodes that reached it only through that edge (`_Loss`), so one pass over
    the region that loses something keeps every set exact.
    """

    def __init__(self, graph: Graph, topo: list[str], facts: _Facts) -> None:
        ids = sorted(graph.nodes)
        self.ids = ids
        self.rank = {nid: i for i, nid in enumerate(ids)}
        self.pos = {nid: i for i, nid in enumerate(topo)}
        self.preds = {nid: list(es) for nid, es in graph.preds.items()}
        self.succs = {nid: list(es) for nid, es in graph.succs.items()}
        approvals = {nid for nid, n in graph.nodes.items() if isinstance(n, ApprovalNode)}
        self.anc: dict[str, int] = {}
        # The approvals upstream of each node, as `gated_by` finds them (`facts.gates`).
        self.gates: dict[str, int] = {}
        for nid in topo:
            acc = gates = 0
            for e in self.preds[nid]:
                bit = 1 << self.rank[e.src]
                acc |= self.anc[e.src] | bit
                gates |= self.gates[e.src] | (bit if e.src in approvals else 0)
            self.anc[nid] = acc
            self.gates[nid] = gates
        self.timed = self.bits(nid for nid, n in graph.nodes.items() if is_timed(n))
        self.timed_unsafe = self.timed & ~self.bits(
            nid for nid, n in graph.nodes.items() if is_safe_read(n)
        )
        self.reads = {nid: self.bits(r) for nid, r in facts.reads.items()}

    def bits(self, ids: Iterable[str]) -> int:
        out = 0
        for nid in ids:
            out |= 1 << self.rank[nid]
        return out

    def first(self, bits: int) -> str:
        """The smallest id in a non-empty set."""
        return self.ids[(bits & -bits).bit_length() - 1]

    def incl(self, nid: str) -> int:
        return self.anc[nid] | 1 << self.rank[nid]

    def lost_at_target(self, edge: Edge) -> int:
        """The edge's source and its ancestors that reach its target only through it."""
        other = 0
        for e in self.preds[edge.dst]:
            if e is not edge:
                other |= self.incl(e.src)
        return self.incl(edge.src) & ~other

    def loss(self, edge: Edge, q: int) -> _Loss:
        """What each node downstream of `edge` would stop having upstream without it, given
        `q`, what its target loses (`lost_at_target`)."""
        b = edge.dst
        lost = {b: q}
        if not q:
            return _Loss({})
        # Visit in topological order, and only where something is still lost: a node keeps
        # whatever any of its predecessors still has upstream.
        heap = [(self.pos[e.dst], e.dst) for e in self.succs[b]]
        heapq.heapify(heap)
        while heap:
            _, d = heapq.heappop(heap)
            if d in lost:
                continue
            keep = 0
            for e in self.preds[d]:
                keep |= self.incl(e.src) & ~lost.get(e.src, 0)
            gone = q & ~keep
            if gone:
                lost[d] = gone
                for e in self.succs[d]:
                    if e.dst not in lost:
                        heapq.heappush(heap, (self.pos[e.dst], e.dst))
            else:
                lost[d] = 0
        return _Loss({nid: bits for nid, bits in lost.items() if bits})

    def drop(self, edge: Edge, loss: _Loss) -> None:
        self.preds[edge.dst] = [e for e in self.preds[edge.dst] if e is not edge]
        self.succs[edge.src] = [e for e in self.succs[edge.src] if e is not edge]
        for nid, bits in loss.lost.items():
            self.anc[nid] &= ~bits


@dataclass(frozen=True, slots=True)
class _Loss:
    """For each node at or after an edge's target, the nodes at or before its source that
    reach it only through the edge (nodes that lose nothing are left out)."""

    lost: dict[str, int]


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
            reads_by_node(wf, graph),
            first_come_joins(graph, topo),
        )
        reach = _Reach(graph, topo, facts)
        dropped: list[Edge] = []
        for edge in wf.edges:
            if edge.src not in graph.nodes or edge.dst not in graph.nodes:
                continue
            if is_data_edge(edge, graph):
                continue
            why, loss = self._why_kept(edge, graph, reach, facts)
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
            dropped.append(edge)
            reach.drop(edge, loss)
            ctx.count("edges-dropped")
            ctx.remark(
                self.name,
                "passed",
                "dropped-order",
                (edge.src, edge.dst),
                f'dropped "{edge.src}" -> "{edge.dst}": it only ordered independent nodes',
                edge.loc,
            )
        wf = _remove_in_turn(ctx.rewriter, wf, dropped)
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

    def _why_kept(
        self, edge: Edge, graph: Graph, reach: _Reach, facts: _Facts
    ) -> tuple[tuple[str, str] | None, _Loss]:
        """(reason kind, message) when `edge` must stay, or None when it may go; and what
        dropping it loses. The rules are asked in the order the module docstring gives them,
        the cheap ones before walking what the edge alone orders; each names the first lost
        pair a walk over the sorted ids would meet, as the remarks always have."""
        q = reach.lost_at_target(edge)
        why = _gate_or_skip(edge, reach, facts, q)
        if why is not None:
            return why, _Loss({})
        loss = reach.loss(edge, q)
        return self._order_lost(edge, graph, reach, loss.lost), loss

    def _order_lost(
        self, edge: Edge, graph: Graph, reach: _Reach, lost: dict[str, int]
    ) -> tuple[str, str] | None:
        pair = _lost_order(graph, edge, reach, lost)
        if pair is not None:
            return "effects", _order_message(graph, edge.src, edge.dst, *pair)
        if not self.early_effects:
            effects = [d for d in lost if effect_of(graph.nodes[d]) is Effect.EFFECTFUL]
            if effects:
                d = min(effects, key=reach.rank.__getitem__)
                u = reach.first(lost[d])
                return "failure", f'effectful "{d}" would no longer wait for "{u}" to succeed'
        unread = [d for d in lost if reach.reads[d] & lost[d]]
        if unread:
            d = min(unread, key=reach.rank.__getitem__)
            x = reach.first(reach.reads[d] & lost[d])
            return "reads", f'"{d}" reads "{x}", and only this edge runs "{x}" first'
        return None


def _gate_or_skip(edge: Edge, reach: _Reach, facts: _Facts, q: int) -> tuple[str, str] | None:
    """The rules that need only what the edge's target loses (`q`)."""
    a, b = edge.src, edge.dst
    gone = reach.gates[b] & q
    if gone:
        return "gate", f'"{b}" would no longer wait for approval "{reach.first(gone)}"'
    if a not in facts.always:
        return "skippable", f'"{a}" may be skipped, and then "{b}" must be skipped too'
    if b in facts.races:
        join = facts.races[b]
        return "race", (
            f'"{b}" feeds first-come join "{join}", whose result depends on what arrives first'
        )
    return None


def _lost_order(
    graph: Graph, edge: Edge, reach: _Reach, lost: dict[str, int]
) -> tuple[str, str] | None:
    """The first pair (u, d) of timed nodes across `edge` whose order only it keeps: the
    edge's own ends first (so the remark names the closest reason), then by u, then by d."""
    a, b = edge.src, edge.dst
    if lost.get(b, 0) >> reach.rank[a] & 1 and must_stay_ordered(graph.nodes[a], graph.nodes[b]):
        return a, b
    best: tuple[int, int] | None = None  # (rank of u, rank of d)
    for d, bits in lost.items():
        if not reach.timed >> reach.rank[d] & 1:
            continue
        ups = bits & (reach.timed_unsafe if is_safe_read(graph.nodes[d]) else reach.timed)
        if ups:
            key = ((ups & -ups).bit_length() - 1, reach.rank[d])
            if best is None or key < best:
                best = key
    return None if best is None else (reach.ids[best[0]], reach.ids[best[1]])


def _remove_in_turn(rw: Rewriter, wf: Workflow, dropped: list[Edge]) -> Workflow:
    """`wf` without `dropped`, recording the operations that calling `rw.remove_edges` for
    each edge in turn would (every copy of that edge object, highest index first), but
    walking the edges once instead of once per dropped edge."""
    where: dict[int, list[int]] = {}
    for i, e in enumerate(wf.edges):
        where.setdefault(id(e), []).append(i)
    gone: list[int] = []  # original indices removed so far, sorted
    for edge in dropped:
        doomed = [i for i in where.get(id(edge), ()) if not contains_sorted(gone, i)]
        for i in reversed(doomed):
            rw.ops.append(PatchOp("remove", f"/edges/{i - bisect.bisect_left(gone, i)}"))
        for i in doomed:
            bisect.insort(gone, i)
    if not gone:
        return wf
    skip = set(gone)
    return dataclasses.replace(wf, edges=tuple(e for i, e in enumerate(wf.edges) if i not in skip))


def _path_message(before: Cost, after: Cost) -> str:
    def path(c: Cost) -> str:
        return f"{c.critical_path_ms:,g} ms ({' -> '.join(c.critical_path)})"

    if (before.critical_path_ms, before.critical_path) == (
        after.critical_path_ms,
        after.critical_path,
    ):
        return f"critical path {path(after)}, unchanged"
    return f"critical path {path(before)} -> {path(after)}"


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
