"""`coalesce-http`: send batchable HTTP requests to one origin as one BATCH node.

Before (the vision's example: fetch_B waits for parse_A without reading it):
    fetch_A = http GET "https://api.example.com/a" { effect: idempotent, batchable: true }
    parse_A = function "m:parse" { effect: pure, args: { page: fetch_A.body } }
    fetch_B = http GET "https://api.example.com/b" { effect: idempotent, batchable: true }
    parse_B = function "m:parse" { effect: pure, args: { page: fetch_B.body } }
    merge   = function "m:merge" { effect: pure, args: { a: parse_A.items, b: parse_B.items } }
    fetch_A -> parse_A -> fetch_B -> parse_B -> merge

After:
    batch_fetch_A_B = http BATCH "https://api.example.com" {
      effect: idempotent
      requests: [{ method: "GET", url: "https://api.example.com/a" },
                 { method: "GET", url: "https://api.example.com/b" }]
    }
    parse_A = function "m:parse" { effect: pure, args: { page: batch_fetch_A_B[0].body } }
    parse_B = function "m:parse" { effect: pure, args: { page: batch_fetch_A_B[1].body } }
    merge   = ...
    batch_fetch_A_B -> parse_A -> merge
    batch_fetch_A_B -> parse_B -> merge

The batch's output is the list of its responses in order, so every read of member k becomes
a read of `batch[k]`, and the members' edges now leave (and enter) the batch; two members'
edges into one node become one edge carrying both guards. A member whose whole output a node
takes (a function without `args`, a join) or that is cache-marked stays alone.

Legality. Members are `batchable` HTTP nodes with one origin and the same effect, auth,
headers, timeout, retries, priority, filter and approval gates; none reads another, directly
or through nodes between them. An ordering-only edge into a member from downstream of
another member is dissolved (`parse_A -> fetch_B` above) only when its source always runs,
so nothing's skipping changes. Dissolving drops orderings; every one that matters is kept by
an added edge (`parse_A -> merge`, since merge reads parse_A), else the batch is refused:
what a node reads, what a guard reads, and every ordering that involves a node that is not
freely reorderable (anything but pure nodes and safe, non-effectful requests: writes, agents,
approvals, timers, effectful nodes). Members must run under the same conditions, so the
batch runs exactly when each of them did. A member may not be upstream of a join that
fires on its first inputs (`join any`, `join 2`): batching changes when the nodes after
it finish, and so what such a join sees.

Effectful requests are never coalesced: a batch sends its requests concurrently, so it could
not keep their order, and one failing request no longer stops the others.
"""

from __future__ import annotations

import dataclasses
import functools
import heapq
from collections.abc import Callable, Iterable, Sequence, Set
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aobc.backend.serialize import node_document
from aobc.expr import normalize_expr
from aobc.expr.ast import BoolOp, root_names, to_source
from aobc.frontend.schema import load_node
from aobc.ir import (
    BATCH,
    AgentNode,
    ApprovalNode,
    ConditionNode,
    Edge,
    Effect,
    Graph,
    HttpNode,
    Node,
    TimerNode,
    Workflow,
)
from aobc.ir.reads import cached_expr, passes_predecessor_outputs
from aobc.passes.analysis import (
    always_runs,
    first_come_joins,
    gated_by,
    is_data_edge,
    node_cost_ms,
    reads,
)
from aobc.passes.base import Pass, PassContext
from aobc.passes.subst import ref
from aobc.passes.verify import origin_of

SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_REQUEST_KEYS: Final = ("method", "url", "headers", "body")
_SHARED_KEYS: Final = ("effect", "auth", "priority", "timeout", "retries", "retry", "filter")

Origin = tuple[str, str, int]
EdgeKey = tuple[str, str, str | None]


def origin_url(origin: Origin) -> str:
    """`scheme://host[:port]`, the port left out when it is the scheme's default."""
    scheme, host, port = origin
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}" + ("" if _DEFAULT_PORTS.get(scheme) == port else f":{port}")


def reorderable(n: Node) -> bool:
    """True when moving `n` relative to other reorderable nodes changes nothing observable.

    Pure nodes and safe requests only read. Timers and approvals are pure or effectful
    waits whose position is their meaning, and agents may patch the workflow mid-run.
    """
    if isinstance(n, TimerNode | ApprovalNode | AgentNode):
        return False
    if n.effect is Effect.PURE:
        return True
    if not isinstance(n, HttpNode) or n.effect is Effect.EFFECTFUL:
        return False
    methods = [r["method"] for r in n.requests] if n.requests else [n.method]
    return all(m in SAFE_METHODS for m in methods)


# --- facts about the workflow -----------------------------------------------------------


class _Memo:
    """What one run asks about each node again after every batch, kept while the node
    object is unchanged (a batch rewrites only the nodes it touches)."""

    def __init__(self) -> None:
        self._reads: dict[int, tuple[Node, frozenset[str]]] = {}
        self._fixed: dict[int, tuple[Node, bool]] = {}

    def reads(self, n: Node) -> frozenset[str]:
        hit = self._reads.get(id(n))
        if hit is None or hit[0] is not n:
            hit = self._reads[id(n)] = (n, frozenset(reads(n)))
        return hit[1]

    def reorderable(self, n: Node) -> bool:
        hit = self._fixed.get(id(n))
        if hit is None or hit[0] is not n:
            hit = self._fixed[id(n)] = (n, reorderable(n))
        return hit[1]


@functools.lru_cache(maxsize=65536)
def _origin(url: str) -> Origin | None:
    return origin_of(url)


@dataclass(frozen=True)
class _Facts:
    """What planning asks about the workflow. Node sets are ints used as bitsets, bit
    `order[id]` standing for a node, so the questions stay linear on big graphs."""

    wf: Workflow
    graph: Graph
    order: dict[str, int]  # topological position, and the node's bit
    ids: list[str]  # by topological position
    anc: dict[str, int]  # ancestors
    always: frozenset[str]
    gates: dict[str, int]  # the approvals upstream of each node
    racy: dict[str, str]  # a join downstream of the node that takes what comes first
    approvals: int
    taken: frozenset[str]  # node ids in use
    position: dict[int, int]  # id(edge) -> its index in wf.edges
    declared: dict[str, int]  # position in graph.nodes
    fixed: int  # nodes that may not be reordered
    guards: dict[str, set[str]]  # see `_guard_reads`
    memo: _Memo
    _need: dict[str, int]  # filled in by `need`, for the few nodes planning asks about

    @staticmethod
    def of(wf: Workflow, graph: Graph, topo: list[str], memo: _Memo) -> _Facts:
        order = {nid: i for i, nid in enumerate(topo)}
        fixed = 0  # nodes that may not be reordered
        approvals = 0
        for nid, n in graph.nodes.items():
            if not memo.reorderable(n):
                fixed |= 1 << order[nid]
            if isinstance(n, ApprovalNode):
                approvals |= 1 << order[nid]
        anc: dict[str, int] = {}
        gates: dict[str, int] = {}
        for nid in topo:
            acc = gated = 0
            for e in graph.preds[nid]:
                bit = 1 << order[e.src]
                acc |= anc[e.src] | bit
                gated |= gates[e.src]
                if isinstance(graph.nodes[e.src], ApprovalNode):
                    gated |= bit
            anc[nid] = acc
            gates[nid] = gated
        return _Facts(
            wf,
            graph,
            order,
            topo,
            anc,
            frozenset(always_runs(graph)),
            gates,
            first_come_joins(graph, topo),
            approvals,
            frozenset(n.id for n in wf.nodes),
            {id(e): i for i, e in enumerate(wf.edges)},
            {nid: i for i, nid in enumerate(graph.nodes)},
            fixed,
            _guard_reads(graph),
            memo,
            {},
        )

    def bit(self, nid: str) -> int:
        return 1 << self.order[nid]

    def need(self, nid: str) -> int:
        """The ancestors `nid` must keep: what it or the guards leaving it read, and every
        one when either side may not be reordered."""
        out = self._need.get(nid)
        if out is None:
            anc = self.anc[nid]
            if self.fixed >> self.order[nid] & 1:
                out = anc
            else:
                wanted = self.fixed
                for x in self.memo.reads(self.graph.nodes[nid]) | self.guards.get(nid, set()):
                    if x in self.order:
                        wanted |= 1 << self.order[x]
                out = wanted & anc
            self._need[nid] = out
        return out

    def members_of(self, bits: int) -> list[str]:
        """The ids in a set, in topological order."""
        out = []
        while bits:
            low = bits & -bits
            out.append(self.ids[low.bit_length() - 1])
            bits ^= low
        return out


def _guard_reads(graph: Graph) -> dict[str, set[str]]:
    """Nodes read by the guards on edges leaving each node (evaluated when it finishes)."""
    out: dict[str, set[str]] = {}
    for nid, edges in graph.succs.items():
        for e in edges:
            if e.when is not None:
                out.setdefault(nid, set()).update(root_names(cached_expr(e.when)) - {nid})
    return out


# --- who may be a member ----------------------------------------------------------------


def _ineligible(n: HttpNode, facts: _Facts) -> str | None:
    """Why a batchable request cannot join any batch, or None."""
    graph = facts.graph
    if n.effect is Effect.EFFECTFUL:
        return (
            f'"{n.id}" is effectful: a batch sends its requests concurrently, '
            "so it would not keep their order"
        )
    if _origin(n.url) is None:
        return f'the host of "{n.id}" is computed at run time'
    if n.cache is not None:
        return f'"{n.id}" is cache-marked'
    for e in graph.succs[n.id]:
        if passes_predecessor_outputs(graph.nodes[e.dst]):
            return f'"{e.dst}" takes the whole output of "{n.id}" as its input'
    if n.id in facts.racy:
        # Batching moves when the nodes after a member finish; such a join's output and
        # whether it runs depend on which of its inputs finishes first.
        return f'join "{facts.racy[n.id]}" after "{n.id}" takes the inputs that finish first'
    return None


#: What members must share, in the order near misses are explained.
_ATTRIBUTES: Final[tuple[tuple[str, Callable[[HttpNode], object]], ...]] = (
    ("different hosts", lambda n: (_origin(n.url) or ("", "", 0))[1]),
    ("different origins", lambda n: _origin(n.url)),
    ("different effects", lambda n: n.effect),
    ("different auth", lambda n: n.auth),
    ("different headers", lambda n: n.headers),
    ("different timeouts", lambda n: n.timeout_ms),
    ("different retry policies", lambda n: n.retry),
    ("different priorities", lambda n: n.priority),
    ("different filters", lambda n: n.filter),
)


def _key(n: HttpNode, facts: _Facts) -> tuple[object, ...]:
    return (*(get(n) for _, get in _ATTRIBUTES), facts.gates[n.id])


def _agreement(a: HttpNode, b: HttpNode) -> int:
    """How many of `_ATTRIBUTES` two candidates agree on before they first differ."""
    for i, (_, get) in enumerate(_ATTRIBUTES):
        if get(a) != get(b):
            return i
    return len(_ATTRIBUTES)


def _mismatch(a: HttpNode, b: HttpNode, facts: _Facts) -> tuple[int, str]:
    """How far two candidates agree, and the first thing they differ in."""
    i = _agreement(a, b)
    if i < len(_ATTRIBUTES):
        return i, _ATTRIBUTES[i][0]
    ga, gb = facts.gates[a.id], facts.gates[b.id]
    gate = min(facts.members_of(ga ^ gb)) if ga != gb else ""
    return len(_ATTRIBUTES), f'across approval "{gate}"'


# --- planning one batch -----------------------------------------------------------------


class Refused(Exception):
    """A batch that may not be formed, and why (the text after "not coalesced: ")."""

    def __init__(self, reason: str, nodes: Sequence[str]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.nodes = tuple(nodes)


@dataclass(frozen=True)
class _Plan:
    members: tuple[str, ...]
    batch_id: str
    cut: frozenset[EdgeKey]
    edges: dict[EdgeKey, Edge]  # the edges after the merge, by key
    added: tuple[tuple[str, str], ...]  # ordering edges that keep what the cuts dropped


def _sure(e: Edge, facts: _Facts) -> bool:
    """An edge that is taken in every successful run."""
    src = facts.graph.nodes[e.src]
    return (
        e.src in facts.always
        and e.label is None
        and e.when is None
        and not isinstance(src, ConditionNode | ApprovalNode)
    )


def _cuts(members: Sequence[str], facts: _Facts) -> frozenset[EdgeKey]:
    """The ordering-only edges into a member from another member or its descendants."""
    cut: set[EdgeKey] = set()
    every = 0
    for m in members:
        every |= facts.bit(m)
    for b in members:
        others = every & ~facts.bit(b)
        for e in facts.graph.preds[b]:
            if not (facts.anc[e.src] | facts.bit(e.src)) & others:
                continue
            if is_data_edge(e, facts.graph):
                raise Refused(f'"{b}" depends on "{e.src}"', (b, e.src))
            if e.src not in facts.always:
                raise Refused(f'"{b}" waits for "{e.src}", which does not always run', (b, e.src))
            cut.add(e.key)
    return frozenset(cut)


def _same_conditions(members: Sequence[str], cut: frozenset[EdgeKey], facts: _Facts) -> None:
    """Members must run under the same conditions, so the batch runs when each did."""

    def condition(m: str) -> frozenset[tuple[str, str | None, str | None]]:
        return frozenset(
            (e.src, e.label, e.when)
            for e in facts.graph.preds[m]
            if e.key not in cut and not _sure(e, facts)
        )

    first = condition(members[0])
    for m in members[1:]:
        if condition(m) != first:
            raise Refused(f'"{members[0]}" and "{m}" run under different conditions', members)


def _merged_edges(
    members: Sequence[str], batch: str, cut: frozenset[EdgeKey], facts: _Facts
) -> dict[EdgeKey, Edge]:
    """The edges at a member after the merge (cut ones gone, members renamed), by key; the
    other edges stay as they are."""
    rename = dict.fromkeys(members, batch)
    touching: dict[int, Edge] = {}
    for m in members:
        for e in (*facts.graph.preds[m], *facts.graph.succs[m]):
            touching[facts.position[id(e)]] = e
    out: dict[EdgeKey, Edge] = {}
    for _, e in sorted(touching.items()):
        if e.key in cut:
            continue
        new = dataclasses.replace(e, src=rename.get(e.src, e.src), dst=rename.get(e.dst, e.dst))
        old = out.get(new.key)
        # Two members leading to one node: it ran when both edges were taken (it is no
        # join: see _ineligible), so the merged edge carries both guards.
        out[new.key] = new if old is None else dataclasses.replace(old, when=_both(old, new))
    return out


def _both(a: Edge, b: Edge) -> str | None:
    if a.when is None or b.when is None or a.when == b.when:
        return a.when if b.when is None else b.when
    return normalize_expr(to_source(BoolOp("and", (cached_expr(a.when), cached_expr(b.when)))))


class _Merged:
    """The workflow after a merge, as ancestor sets relative to the one before it.

    Merging adds and cuts ancestors. Everything upstream of a member is upstream of the
    batch (`before`), and the batch is upstream of everything downstream of a member. What
    is cut is what reached a member only through a cut edge; it stays upstream of a node
    downstream of the batch only through a path that avoids the batch, so `lost` follows
    it from the batch's successors and stops where every such node is still reached.
    Member bits stand for the batch.
    """

    def __init__(self, members: Sequence[str], cut: frozenset[EdgeKey], facts: _Facts) -> None:
        self.facts = facts
        self.members = members
        self.mask = 0
        for m in members:
            self.mask |= facts.bit(m)
        before = 0
        upstream = 0
        for m in members:
            upstream |= facts.anc[m]
            for e in facts.graph.preds[m]:
                if e.key not in cut:
                    before |= facts.anc[e.src] | facts.bit(e.src)
        self.before = before  # the batch's ancestors
        self.cut_off = upstream & ~before & ~self.mask  # what the batch no longer has upstream
        self.extra: dict[str, list[str]] = {}  # added edges, by target
        self.lost: dict[str, int] = {}
        self._walk()

    def add(self, x: str, y: str) -> None:
        self.extra.setdefault(y, []).append(x)
        if y in self.facts.order:
            self._walk()
        else:  # an edge into the batch
            self.before |= self.incl(x)

    def below(self, nid: str) -> bool:
        """Whether a node (not a member) is downstream of the batch."""
        return bool(self.facts.anc[nid] & self.mask)

    def anc(self, nid: str) -> int:
        """The ancestors of a node that is not a member, after the merge."""
        facts = self.facts
        if not self.below(nid):
            return facts.anc[nid]
        return facts.anc[nid] & ~self.lost.get(nid, 0) | self.mask | self.before

    def incl(self, nid: str) -> int:
        if nid in self.members or nid not in self.facts.order:
            return self.mask | self.before
        return self.anc(nid) | self.facts.bit(nid)

    def _walk(self) -> None:
        facts = self.facts
        self.lost = {}
        if not self.cut_off:
            return
        seen: set[str] = set()
        heap: list[tuple[int, str]] = []
        for m in self.members:
            for e in facts.graph.succs[m]:
                if e.dst not in self.members:
                    heap.append((facts.order[e.dst], e.dst))
        heapq.heapify(heap)
        while heap:
            _, d = heapq.heappop(heap)
            if d in seen:
                continue
            seen.add(d)
            keep = self.mask | self.before
            for e in facts.graph.preds[d]:
                keep |= self.incl(e.src)
            for x in self.extra.get(d, ()):
                keep |= self.incl(x)
            gone = facts.anc[d] & ~keep
            if gone:
                self.lost[d] = gone
                for e in facts.graph.succs[d]:
                    if e.dst not in seen and e.dst not in self.members:
                        heapq.heappush(heap, (facts.order[e.dst], e.dst))


def _check_members(members: Sequence[str], facts: _Facts) -> None:
    """Refuses when a member needs another member upstream of it."""
    mask = 0
    for m in members:
        mask |= facts.bit(m)
    for y in sorted(members, key=facts.order.__getitem__):
        for x in facts.members_of(facts.need(y) & mask):
            if x in reads(facts.graph.nodes[y]):
                raise Refused(f'"{y}" depends on "{x}"', (y, x))
            if not (reorderable(facts.graph.nodes[x]) and reorderable(facts.graph.nodes[y])):
                raise Refused(f'"{y}" must stay after "{x}"', (y, x))
            # else a guard on an edge leaving y reads x: after the merge it reads its source


def _keep_order(members: Sequence[str], batch: str, merged: _Merged) -> tuple[tuple[str, str], ...]:
    """Ordering edges that keep every needed ancestor upstream, added node by node in
    declaration order (the batch last), each from the latest missing nodes first."""
    facts = merged.facts
    _check_members(members, facts)
    added: list[tuple[str, str]] = []
    # Only a node downstream of the batch can lose an ancestor, and only one it lost.
    todo = sorted(
        (y for y, lost in merged.lost.items() if facts.need(y) & lost),
        key=facts.declared.__getitem__,
    )
    for y in todo:
        missing = facts.members_of(facts.need(y) & merged.lost.get(y, 0))
        if missing:
            added += _fix(missing, y, {x: y for x in missing}, merged)
    ordered = sorted(members, key=facts.order.__getitem__)
    upstream = 0
    for m in ordered:
        upstream |= facts.need(m)
    missing = facts.members_of(upstream & ~merged.mask & ~merged.before)
    if missing:
        # Each is needed by the first member (in topological order) that needs it.
        who = {x: next(m for m in ordered if facts.need(m) & facts.bit(x)) for x in missing}
        added += _fix(missing, batch, who, merged)
    return tuple(added)


def _fix(missing: list[str], y: str, who: dict[str, str], merged: _Merged) -> list[tuple[str, str]]:
    """Edges into `y` from the missing nodes no other missing node follows."""
    facts = merged.facts
    bits = 0
    for o in missing:
        bits |= merged.anc(o)
    latest = sorted(x for x in missing if not bits & facts.bit(x))
    for x in latest:
        _check_added(x, y, who[x], merged)
    for x in latest:
        merged.add(x, y)
    return [(x, y) for x in latest]


def _check_added(x: str, y: str, who: str, merged: _Merged) -> None:
    """An added edge x -> y must not loop, change when y runs, or change y's inputs.
    `who` is the node that needs x upstream: y itself, or the member y stands for."""
    facts = merged.facts
    above = y in facts.order and merged.anc(x) & facts.bit(y)
    if y == x or above or (y not in facts.order and merged.below(x)):
        if x in reads(facts.graph.nodes[who]):
            raise Refused(f'"{who}" depends on "{x}"', (who, x))
        raise Refused(f'"{who}" must stay after "{x}"', (who, x))
    if x not in facts.graph.nodes or not _sure(Edge(src=x, dst=y), facts):
        raise Refused(f'keeping "{who}" after "{x}" would change when "{who}" runs', (who, x))
    if y in facts.graph.nodes and passes_predecessor_outputs(facts.graph.nodes[y]):
        raise Refused(f'keeping "{y}" after "{x}" would change the inputs of "{y}"', (y, x))


def _graph(nodes: dict[str, Node], edges: Iterable[Edge]) -> Graph:
    succs: dict[str, list[Edge]] = {nid: [] for nid in nodes}
    preds: dict[str, list[Edge]] = {nid: [] for nid in nodes}
    for e in edges:
        succs[e.src].append(e)
        preds[e.dst].append(e)
    return Graph(nodes, succs, preds)


def _check_gates(
    members: Sequence[str],
    batch: str,
    edges: dict[EdgeKey, Edge],
    added: tuple[tuple[str, str], ...],
    merged: _Merged,
) -> None:
    """No node may move across an approval: every node keeps the approvals upstream of it.

    Members share their approvals, so a merge should neither add nor cut one; that is
    checked on the bitsets, and only when it fails is the merged graph built to say where.
    """
    facts = merged.facts
    common = facts.gates[members[0]]
    if merged.before & facts.approvals == common and not any(
        bits & facts.approvals for bits in merged.lost.values()
    ):
        return
    nodes = {nid: n for nid, n in facts.graph.nodes.items() if nid not in members}
    nodes[batch] = facts.graph.nodes[members[0]]
    rest = [
        e
        for e in facts.wf.edges
        if e.src in nodes and e.dst in nodes and e.src in facts.graph.nodes
    ]
    everything = [*rest, *edges.values(), *(Edge(src=x, dst=y) for x, y in added)]
    after = gated_by(_graph(nodes, everything))
    for nid, gates in after.items():
        before = frozenset(facts.members_of(facts.gates[members[0] if nid == batch else nid]))
        if gates != before:
            gate = sorted(gates ^ before)[0]
            raise Refused(f'across approval "{gate}" (for "{nid}")', (nid, gate))


def plan_batch(members: Sequence[str], batch: str, facts: _Facts) -> _Plan:
    """The rewrite that merges `members` (in topological order) into node `batch`."""
    cut = _cuts(members, facts)
    _same_conditions(members, cut, facts)
    edges = _merged_edges(members, batch, cut, facts)
    merged = _Merged(members, cut, facts)
    added = _keep_order(members, batch, merged)
    _check_gates(members, batch, edges, added, merged)
    return _Plan(tuple(members), batch, cut, edges, added)


# --- doing it ---------------------------------------------------------------------------


def batch_id(wf: Workflow, members: Sequence[str], taken: Set[str] | None = None) -> str:
    """`batch_` and the members' ids, their shared prefix written once (`fetch_A` and
    `fetch_B` give `batch_fetch_A_B_B`), numbered when that id is taken. Long member lists
    keep only the first id (`batch_fetch_A_B_and_11`)."""
    if taken is None:
        taken = {n.id for n in wf.nodes}
    first = members[0]
    cut = len(first)
    for m in members[1:]:
        same = (i for i, (a, b) in enumerate(zip(first, m, strict=False)) if a != b)
        cut = min(cut, next(same, len(m)))
    prefix = first[: first.rfind("_", 0, cut) + 1] if cut < len(first) else ""
    base = "batch_" + prefix + "_".join(m[len(prefix) :] for m in members)
    if len(base) > 48:
        base = f"batch_{first}_and_{len(members) - 1}"
    nid, k = base, 2
    while nid in taken:
        nid, k = f"{base}_{k}", k + 1
    return nid


def batch_node(members: Sequence[HttpNode], nid: str) -> Node:
    """One BATCH node sending each member's request, in order, with their shared settings."""
    docs = [node_document(m) for m in members]
    origin = origin_of(members[0].url)
    assert origin is not None
    out: dict[str, Any] = {
        "id": nid,
        "type": "http",
        "method": BATCH,
        "url": origin_url(origin),
        "requests": [{k: d[k] for k in _REQUEST_KEYS if k in d} for d in docs],
    }
    out.update({k: docs[0][k] for k in _SHARED_KEYS if k in docs[0]})
    if any(m.cost_ms is not None for m in members):
        # One round trip: the batch takes about as long as its slowest request.
        out["cost"] = f"{round(max(node_cost_ms(m) for m in members))}ms"
    return load_node(out)


def apply_plan(wf: Workflow, plan: _Plan, ctx: PassContext) -> Workflow:
    rw = ctx.rewriter
    members = set(plan.members)
    if plan.cut:
        wf = rw.remove_edges(wf, lambda e: e.key in plan.cut)
    # Only an edge at the batch's (new) id could share a key with a renamed one.
    seen: set[EdgeKey] = {
        e.key
        for e in wf.edges
        if plan.batch_id in (e.src, e.dst) and e.src not in members and e.dst not in members
    }
    for i, e in enumerate(wf.edges):
        if e.src not in members and e.dst not in members:
            continue
        new = dataclasses.replace(
            e,
            src=plan.batch_id if e.src in members else e.src,
            dst=plan.batch_id if e.dst in members else e.dst,
        )
        if new.key not in seen:  # the first edge takes the merged guard; the others go
            seen.add(new.key)
            wf = rw.replace_edge(wf, i, dataclasses.replace(new, when=plan.edges[new.key].when))
    wf = rw.remove_edges(wf, lambda e: e.src in members or e.dst in members)
    nodes = {n.id: n for n in wf.nodes}
    https = [nodes[m] for m in plan.members]
    assert all(isinstance(m, HttpNode) for m in https)
    wf = rw.replace_node(wf, plan.members[0], batch_node(https, plan.batch_id))  # type: ignore[arg-type]
    wf = rw.remove_nodes(wf, plan.members[1:])
    wf = rw.rewrite_reads(wf, {m: ref(plan.batch_id, k) for k, m in enumerate(plan.members)})
    for x, y in plan.added:
        wf = rw.add_edge(wf, Edge(src=x, dst=y))
    return wf


# --- the pass ---------------------------------------------------------------------------


def _candidates(facts: _Facts) -> list[HttpNode]:
    """Batchable single requests, in topological order."""
    found = [
        n for n in facts.wf.nodes if isinstance(n, HttpNode) and n.batchable and n.method != BATCH
    ]
    return sorted(found, key=lambda n: facts.order[n.id])


def _groups(facts: _Facts) -> list[list[HttpNode]]:
    """Eligible candidates that share every attribute, each group in topological order."""
    groups: dict[tuple[object, ...], list[HttpNode]] = {}
    for n in _candidates(facts):
        if _ineligible(n, facts) is None:
            groups.setdefault(_key(n, facts), []).append(n)
    return [g for g in groups.values() if len(g) > 1]


def _near_miss(n: HttpNode, others: list[HttpNode], facts: _Facts) -> tuple[str, str] | None:
    """The candidate that agrees with `n` longest, and what they differ in."""
    best: tuple[int, HttpNode] | None = None
    for d in others:
        if d.id != n.id:
            depth = _agreement(n, d)
            if best is None or depth > best[0]:
                best = (depth, d)
    return None if best is None else (best[1].id, _mismatch(n, best[1], facts)[1])


@dataclass(frozen=True, kw_only=True)
class CoalesceHttpPass(Pass):
    """Merges independent batchable requests to one origin into BATCH nodes."""

    name: ClassVar[str] = "coalesce-http"
    summary: ClassVar[str] = "send batchable HTTP requests to one origin as one BATCH node"
    max_batch: int = dataclasses.field(
        default=8, metadata={"help": "most requests in one batch (at least 2)"}
    )

    def __post_init__(self) -> None:
        if self.max_batch < 2:
            raise ValueError(f"max-batch must be at least 2, not {self.max_batch}")

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        refusals: dict[str, Refused] = {}
        memo = _Memo()
        # One batch at a time, each on the workflow the previous one left, until none is
        # legal: so running the pass again finds nothing more (it is idempotent).
        while True:
            graph = Graph.of(wf)
            topo = graph.topo_order()
            if topo is None:
                return wf  # verify reports the cycle; nothing here is safe to judge
            facts = _Facts.of(wf, graph, topo, memo)
            plan = self._find(facts, refusals)
            if plan is None:
                break
            wf = self._apply(wf, plan, facts, ctx)
        self._explain(facts, refusals, ctx)
        return wf

    def _find(self, facts: _Facts, refusals: dict[str, Refused]) -> _Plan | None:
        """The first legal batch, grown greedily from each candidate in turn."""
        for group in _groups(facts):
            for i, seed in enumerate(group):
                batch, plan = [seed.id], None
                for c in group[i + 1 :]:
                    if len(batch) == self.max_batch:
                        break
                    try:
                        plan = plan_batch(
                            [*batch, c.id], batch_id(facts.wf, [*batch, c.id], facts.taken), facts
                        )
                    except Refused as why:
                        refusals[c.id] = why
                        if len(batch) == 1:
                            refusals.setdefault(seed.id, why)
                        continue
                    batch.append(c.id)
                if plan is not None:
                    return plan
        return None

    def _apply(self, wf: Workflow, plan: _Plan, facts: _Facts, ctx: PassContext) -> Workflow:
        first = facts.graph.nodes[plan.members[0]]
        assert isinstance(first, HttpNode)
        origin = origin_of(first.url)
        assert origin is not None
        names = ", ".join(f'"{m}"' for m in plan.members)
        dissolved = "".join(
            f'; dissolved the ordering edge "{s}" -> "{d}"' for s, d, _ in sorted(plan.cut)
        )
        ctx.remark(
            self.name,
            "passed",
            "coalesced",
            plan.members,
            f'coalesced {names} into "{plan.batch_id}": one round trip to '
            f"{origin_url(origin)} instead of {len(plan.members)}{dissolved}",
            first.loc,
            batch=plan.batch_id,
            requests=len(plan.members),
        )
        ctx.count("batches")
        ctx.count("requests-coalesced", len(plan.members))
        return apply_plan(wf, plan, ctx)

    def _explain(self, facts: _Facts, refusals: dict[str, Refused], ctx: PassContext) -> None:
        """A missed remark for every batchable request left alone, and for every request
        that is not batchable but calls the origin of one that is."""
        left = _candidates(facts)
        eligible = [n for n in left if _ineligible(n, facts) is None]
        for n in left:
            why = _ineligible(n, facts)
            if why is None and n.id in refusals:
                why, nodes = refusals[n.id].reason, refusals[n.id].nodes
            elif why is None:
                near = _near_miss(n, eligible, facts)
                if near is None:
                    continue
                why, nodes = f'{near[1]} ("{n.id}" and "{near[0]}")', (n.id, near[0])
            else:
                nodes = (n.id,)
            ctx.remark(self.name, "missed", "not-coalesced", nodes, f"not coalesced: {why}", n.loc)
        # A request that is not batchable is a near miss only when it would fit a batch.
        keys = {_key(n, facts): n.id for n in eligible}
        for m in facts.wf.nodes:
            if not isinstance(m, HttpNode) or m.batchable or m.method == BATCH:
                continue
            if _ineligible(m, facts) is None and _key(m, facts) in keys:
                ctx.remark(
                    self.name,
                    "missed",
                    "not-batchable",
                    (m.id, keys[_key(m, facts)]),
                    f'not coalesced: "{m.id}" is not batchable (it could join '
                    f'"{keys[_key(m, facts)]}" if its server took it in a batch)',
                    m.loc,
                )
