"""`verify`: every rule a workflow must keep, checked in one go.

The checks: unique ids; edges to declared nodes ("did you mean"); duplicate edges; cycles,
each named; expression references to known, upstream names; branch labels a node can
produce; nodes that can never run; join arity; effects at least as strong as what a node
runs; agent nesting depth; sizes; inline credentials; and SSRF on every static URL. Each
problem is a located diagnostic with a code; nothing stops at the first.

Budgets that depend on who added a node (agent nodes per patch and per run) are checked by
the overlay engine, which knows each patch's author: see `aobc.frontend.overlay`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.expr.ast import Attr, Expr, ref_name, root_refs
from aobc.expr.template import parse_template
from aobc.frontend.schema import effect_at_least, strongest_effect
from aobc.ir import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    Graph,
    HttpNode,
    JoinMode,
    JoinNode,
    MapNode,
    Node,
    Workflow,
    iter_all_nodes,
)
from aobc.ir.reach import ELSE_LABEL, never_running
from aobc.ir.reads import cached_expr, node_exprs
from aobc.passes.base import Pass, PassContext
from aobc.policy import Policy
from aobc.security.ssrf import check_url
from aobc.source import Loc
from aobc.suggest import did_you_mean

APPROVAL_LABELS: Final = ("approved", "rejected")
_SECRET_HEADERS: Final = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)


@dataclass
class _Scope:
    """What names an expression inside one workflow may read."""

    wf: Workflow
    graph: Graph
    inputs: frozenset[str]
    in_map_body: bool
    dropped: frozenset[str] = frozenset()
    _ancestors: dict[str, int] | None = None
    _bit: dict[str, int] | None = None

    def is_upstream(self, reader: str, node_id: str) -> bool:
        """True when `node_id` always finishes before `reader` starts (an ancestor)."""
        if self._ancestors is None:
            self._compute_ancestors()
        assert self._ancestors is not None and self._bit is not None
        bit = self._bit.get(node_id)
        return bit is not None and bool(self._ancestors.get(reader, 0) & bit)

    def _compute_ancestors(self) -> None:
        # Ancestor sets as int bitsets, filled in topological order: one OR per edge. With a
        # cycle (reported separately) fall back to a search per node.
        order = self.graph.topo_order()
        nodes = order if order is not None else list(self.graph.nodes)
        self._bit = {nid: 1 << i for i, nid in enumerate(nodes)}
        anc: dict[str, int] = {}
        if order is not None:
            for nid in order:
                acc = 0
                for e in self.graph.preds[nid]:
                    acc |= anc.get(e.src, 0) | self._bit[e.src]
                anc[nid] = acc
        else:
            for nid in nodes:
                acc = 0
                for a in self.graph.ancestors(nid):
                    acc |= self._bit[a]
                anc[nid] = acc
        self._ancestors = anc

    def for_map_body(self) -> _Scope:
        return dataclasses.replace(self, in_map_body=True)


def verify_workflow(
    wf: Workflow,
    policy: Policy,
    *,
    in_map_body: bool = False,
    depth: int = 0,
    dropped: frozenset[str] = frozenset(),
) -> list[Diagnostic]:
    """Every problem with `wf`, nested sub-workflows included."""
    out: list[Diagnostic] = []
    graph = Graph.of(wf)
    out += _edges(wf, graph, dropped)
    if dropped:
        wf = dataclasses.replace(
            wf, edges=tuple(e for e in wf.edges if not {e.src, e.dst} & dropped)
        )
        graph = Graph.of(wf)
    out += _unique_ids(wf)
    out += _cycles(graph)
    scope = _Scope(wf, graph, frozenset(i.name for i in wf.inputs), in_map_body, dropped=dropped)
    for n in wf.nodes:
        out += _node(n, scope, policy, depth)
    out += _edge_guards(wf, scope)
    out += _outputs(wf, scope)
    out += _labels(wf, graph)
    if not dropped:
        out += _joins(wf, graph)
        if graph.topo_order() is not None:
            out += _unreachable(wf, graph)
    return out


def _unique_ids(wf: Workflow) -> Iterator[Diagnostic]:
    seen: dict[str, Node] = {}
    for n in wf.nodes:
        first = seen.get(n.id)
        if first is None:
            seen[n.id] = n
            continue
        yield Diagnostic.error(
            ec.DUPLICATE_ID,
            f'node id "{n.id}" is already used',
            n.field_loc("id"),
            Diagnostic.note(f'"{n.id}" is first declared here', first.field_loc("id")),
        )


def _edge_loc(e: Edge, end: str) -> Loc | None:
    return e.field_loc(end)


def _edges(wf: Workflow, graph: Graph, dropped: frozenset[str]) -> Iterator[Diagnostic]:
    seen: set[tuple[str, str, str | None]] = set()
    for e in wf.edges:
        for end, nid in (("from", e.src), ("to", e.dst)):
            if nid not in graph.nodes and nid not in dropped:
                yield Diagnostic.error(
                    ec.UNDEFINED_NODE,
                    f'edge endpoint "{nid}" is not a declared node',
                    _edge_loc(e, end),
                    *did_you_mean(nid, graph.nodes),
                )
        if e.key in seen:
            label = f' labelled "{e.label}"' if e.label else ""
            yield Diagnostic.error(
                ec.DUPLICATE_EDGE, f'edge "{e.src}" -> "{e.dst}"{label} is declared twice', e.loc
            )
        seen.add(e.key)


def _cycles(graph: Graph) -> Iterator[Diagnostic]:
    """One diagnostic per strongly connected component that loops."""
    if graph.topo_order() is not None:
        return  # the common case, answered by the (cached) topological sort
    for comp in _loops(graph):
        cycle = _cycle_in(graph, comp)
        first = graph.nodes[cycle[0]]
        closing = next((e for e in graph.preds[cycle[0]] if e.src == cycle[-2]), None)
        yield Diagnostic.error(
            ec.CYCLE,
            "cycle: " + " -> ".join(cycle),
            closing.loc if closing is not None and closing.loc is not None else first.loc,
        )


def _loops(graph: Graph) -> list[list[str]]:  # noqa: C901 - Tarjan's algorithm, iterative
    """Tarjan's SCCs (iterative) that contain a cycle, in declaration order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    out: list[list[str]] = []
    counter = 0
    for root in graph.nodes:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            nid, i = work.pop()
            if i == 0:
                index[nid] = low[nid] = counter
                counter += 1
                stack.append(nid)
                on_stack.add(nid)
            succ = graph.succs[nid]
            if i < len(succ):
                work.append((nid, i + 1))
                nxt = succ[i].dst
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[nid] = min(low[nid], index[nxt])
                continue
            if low[nid] == index[nid]:
                comp: list[str] = []
                while True:
                    w = stack.pop()
                    on_stack.discard(w)
                    comp.append(w)
                    if w == nid:
                        break
                if len(comp) > 1 or any(e.dst == nid for e in graph.succs[nid]):
                    out.append(comp)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[nid])
    order = {nid: i for i, nid in enumerate(graph.nodes)}
    return sorted(out, key=lambda c: min(order[n] for n in c))


def _cycle_in(graph: Graph, comp: list[str]) -> list[str]:
    members = set(comp)
    order = {nid: i for i, nid in enumerate(graph.nodes)}
    start = min(comp, key=order.__getitem__)
    # Breadth-first from start back to start, inside the component: the shortest cycle.
    prev: dict[str, str] = {}
    frontier = [start]
    while frontier:
        nxt_frontier = []
        for nid in frontier:
            for e in graph.succs[nid]:
                if e.dst == start:
                    path = [nid]
                    while path[-1] != start:
                        path.append(prev[path[-1]])
                    return [*reversed(path), start]
                if e.dst in members and e.dst not in prev and e.dst != start:
                    prev[e.dst] = nid
                    nxt_frontier.append(e.dst)
        frontier = nxt_frontier
    return [start, start]  # pragma: no cover - a loop component always has a cycle


# --- expressions ------------------------------------------------------------------------


Ref = tuple[str, str | None]  # a free name, and the member read when the name is `inputs`


def refs_of(e: Expr) -> list[Ref]:
    """The distinct free names an expression reads (`inputs.x` as ("inputs", "x"))."""
    out: dict[Ref, None] = {}
    for ref in root_refs(e):
        name = ref_name(ref)
        member = ref.name if name == "inputs" and isinstance(ref, Attr) else None
        out[(name, member)] = None
    return list(out)


_REFS_CACHE: dict[int, tuple[Node, list[tuple[str, list[Ref]]]]] = {}


def _node_refs(n: Node) -> list[tuple[str, list[Ref]]]:
    """(field, refs) for each expression of a node; cached by node identity, because an
    unchanged node keeps its identity from one overlay version to the next."""
    hit = _REFS_CACHE.get(id(n))
    if hit is not None and hit[0] is n:
        return hit[1]
    found = [(field_name, refs_of(e)) for field_name, e in node_exprs(n)]
    if len(_REFS_CACHE) > 100_000:
        _REFS_CACHE.clear()
    _REFS_CACHE[id(n)] = (n, found)
    return found


def _check_refs(
    e: Expr | list[Ref], reader: str | None, scope: _Scope, loc: Loc | None, what: str
) -> Iterator[Diagnostic]:
    """Names read must be inputs, map variables or nodes that run before `reader`."""
    for name, member in e if isinstance(e, list) else refs_of(e):
        if name == "inputs":
            if member is not None and member not in scope.inputs:
                yield Diagnostic.error(
                    ec.UNDEFINED_REFERENCE,
                    f'{what} reads input "{member}", which the workflow does not declare',
                    loc,
                    *did_you_mean(member, scope.inputs),
                )
            continue
        if name == "item":
            if not scope.in_map_body:
                yield Diagnostic.error(
                    ec.UNDEFINED_REFERENCE,
                    f'{what} reads "{name}", which exists only inside a map body',
                    loc,
                )
            continue
        if name in scope.dropped:
            continue
        if name not in scope.graph.nodes:
            yield Diagnostic.error(
                ec.UNDEFINED_REFERENCE,
                f'{what} reads "{name}", which is not a node, "inputs" or "item"',
                loc,
                *did_you_mean(name, [*scope.graph.nodes, "inputs"]),
            )
        elif reader is not None and name != reader and not scope.is_upstream(reader, name):
            yield Diagnostic.error(
                ec.NOT_UPSTREAM,
                f'{what} reads node "{name}", which does not run before "{reader}"; add an edge "{name}" -> "{reader}"',
                loc,
            )
        elif reader is not None and name == reader:
            yield Diagnostic.error(ec.NOT_UPSTREAM, f'{what} reads its own node "{name}"', loc)


def _node(n: Node, scope: _Scope, policy: Policy, depth: int) -> Iterator[Diagnostic]:
    for field_name, refs in _node_refs(n):
        yield from _check_refs(refs, n.id, scope, n.field_loc(field_name), f'node "{n.id}"')
    if isinstance(n, MapNode):
        body_scope = scope.for_map_body()
        for field_name, refs in _node_refs(n.body):
            yield from _check_refs(
                refs, n.id, body_scope, n.body.field_loc(field_name), f'the body of map "{n.id}"'
            )
    yield from _local(n, policy, depth)


_LOCAL_CACHE: dict[tuple[int, int, int], tuple[Node, Policy, list[Diagnostic]]] = {}


def _local(n: Node, policy: Policy, depth: int) -> list[Diagnostic]:
    """The checks that depend on the node alone, cached by node identity.

    Unchanged nodes keep their identity from one overlay version to the next, so
    re-verifying after a live patch re-checks only what the patch touched (SSRF, secrets,
    whole sub-workflows) plus the graph-wide rules.
    """
    key = (id(n), id(policy), depth)
    hit = _LOCAL_CACHE.get(key)
    if hit is not None and hit[0] is n and hit[1] is policy:
        return hit[2]
    found = list(_kind_rules(n, policy, depth))
    if len(_LOCAL_CACHE) > 100_000:
        _LOCAL_CACHE.clear()
    _LOCAL_CACHE[key] = (n, policy, found)
    return found


def _kind_rules(n: Node, policy: Policy, depth: int) -> Iterator[Diagnostic]:
    if isinstance(n, HttpNode):
        yield from _http(n, policy)
    elif isinstance(n, MapNode):
        if not effect_at_least(n.effect, n.body.effect):
            yield Diagnostic.error(
                ec.EFFECT_MISMATCH,
                f'map "{n.id}" is declared {n.effect.value}, but its body is {n.body.effect.value}',
                n.field_loc("effect"),
            )
        yield from _kind_rules(n.body, policy, depth)
    elif isinstance(n, CompositeNode):
        yield from _composite(n, policy, depth)
    elif isinstance(n, AgentNode):
        if depth > policy.agents.max_depth:
            yield Diagnostic.error(
                ec.AGENT_DEPTH,
                f'agent "{n.id}" is nested {depth} levels deep; the limit is {policy.agents.max_depth}',
                n.loc,
            )
        if n.spawn_budget and not n.may_patch:
            yield Diagnostic.warning(
                ec.SPAWN_BUDGET,
                f'agent "{n.id}" has a spawn budget but may not patch, so it is unused',
                n.field_loc("spawn_budget"),
            )


def _composite(n: CompositeNode, policy: Policy, depth: int) -> Iterator[Diagnostic]:
    sub = n.workflow
    inner = strongest_effect([x.effect for x in sub.nodes])
    if not effect_at_least(n.effect, inner):
        yield Diagnostic.error(
            ec.EFFECT_MISMATCH,
            f'composite "{n.id}" is declared {n.effect.value}, but its workflow has {inner.value} nodes',
            n.field_loc("effect"),
        )
    declared = {i.name: i for i in sub.inputs}
    given = set(n.args or ())
    for name in sorted(given - set(declared)):
        yield Diagnostic.error(
            ec.UNDEFINED_REFERENCE,
            f'composite "{n.id}" passes "{name}", which workflow "{sub.name}" does not declare',
            n.field_loc("args"),
            *did_you_mean(name, declared),
        )
    for name, decl in declared.items():
        if decl.required and name not in given:
            yield Diagnostic.error(
                ec.MISSING_FIELD,
                f'composite "{n.id}" does not pass input "{name}", which workflow "{sub.name}" requires',
                n.field_loc("args"),
            )
    yield from verify_workflow(sub, policy, depth=depth + 1)


def _http(n: HttpNode, policy: Policy) -> Iterator[Diagnostic]:
    yield from _request(n, n.url, n.headers, policy)
    origin = origin_of(n.url)
    for i, req in enumerate(n.requests or ()):
        yield from _request(n, req["url"], req.get("headers", {}), policy)
        sub = origin_of(req["url"])
        if origin is not None and sub != origin:
            yield Diagnostic.error(
                ec.INVALID_VALUE,
                f'request {i} of batch "{n.id}" goes to {req["url"]}, not to the batch\'s origin {n.url}',
                n.field_loc("requests"),
            )


def origin_of(url: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of a URL template whose authority is literal, else None."""
    from aobc.security.ssrf import parse_url

    static = _static_url(url)
    if static is None:
        return None
    try:
        parsed = parse_url(static)
    except ValueError:
        return None
    return (parsed.scheme, parsed.host, parsed.port)


def _request(n: HttpNode, url: str, headers: Any, policy: Policy) -> Iterator[Diagnostic]:
    for name, value in headers.items():
        if name.lower() in _SECRET_HEADERS and "${" not in value:
            yield Diagnostic.error(
                ec.INLINE_SECRET,
                f'header "{name}" of node "{n.id}" holds a credential inline; name a secret with "auth" instead',
                n.field_loc("headers"),
            )
    static = _static_url(url)
    if static is None:
        yield Diagnostic.warning(
            ec.SSRF_DYNAMIC,
            f'the host of node "{n.id}" is computed at run time; it is checked when the request is made',
            n.field_loc("url"),
        )
        return
    violation = check_url(static, policy.ssrf)
    if violation is not None:
        yield Diagnostic.error(
            ec.SSRF,
            f'node "{n.id}" may not call {url if static == url else static}: {violation.message}',
            n.field_loc("url"),
            Diagnostic.note("a policy file can allow a host: [ssrf] allow_hosts = [...]"),
        )


def _static_url(url: str) -> str | None:
    """The part of a URL template up to the end of its authority, when that is literal."""
    if "$" not in url:
        return url
    parts = parse_template(url).parts
    head = parts[0] if parts and isinstance(parts[0], str) else ""
    scheme_end = head.find("://")
    if scheme_end < 0:
        return None
    rest = head[scheme_end + 3 :]
    for i, ch in enumerate(rest):
        if ch in "/?#":
            return head[: scheme_end + 3 + i] + "/"
    return None


def _edge_guards(wf: Workflow, scope: _Scope) -> Iterator[Diagnostic]:
    for e in wf.edges:
        if e.when is None or e.src not in scope.graph.nodes:
            continue
        # A guard is evaluated when its source finishes: it may read the source and its ancestors.
        for ref in root_refs(cached_expr(e.when)):
            if ref_name(ref) == e.src:
                continue
            yield from _check_refs(
                ref,
                e.src,
                scope,
                _edge_loc(e, "when"),
                f'the condition of edge "{e.src}" -> "{e.dst}"',
            )


def _outputs(wf: Workflow, scope: _Scope) -> Iterator[Diagnostic]:
    for o in wf.outputs:
        yield from _check_refs(cached_expr(o.expr), None, scope, o.loc, f'output "{o.name}"')


def _labels(wf: Workflow, graph: Graph) -> Iterator[Diagnostic]:
    for e in wf.edges:
        src = graph.nodes.get(e.src)
        if src is None or e.label is None:
            continue
        if isinstance(src, ApprovalNode):
            if e.label not in (*APPROVAL_LABELS, ELSE_LABEL):
                yield Diagnostic.error(
                    ec.INVALID_LABEL,
                    f'approval "{src.id}" decides "approved" or "rejected", never "{e.label}"',
                    _edge_loc(e, "label"),
                    *did_you_mean(e.label, APPROVAL_LABELS),
                )
        elif not isinstance(src, ConditionNode):
            yield Diagnostic.error(
                ec.INVALID_LABEL,
                f'edge "{e.src}" -> "{e.dst}" has label "{e.label}", but only condition and approval nodes branch; '
                f'use "when" to guard an edge',
                _edge_loc(e, "label"),
            )


def _joins(wf: Workflow, graph: Graph) -> Iterator[Diagnostic]:
    for n in wf.nodes:
        if not isinstance(n, JoinNode) or n.id not in graph.preds:
            continue
        m = len(graph.preds[n.id])
        if m == 0:
            yield Diagnostic.error(ec.JOIN_ARITY, f'join "{n.id}" has no incoming edges', n.loc)
        elif n.mode is JoinMode.N_OF_M and n.n is not None and n.n > m:
            yield Diagnostic.error(
                ec.JOIN_ARITY,
                f'join "{n.id}" waits for {n.n} of its inputs, but it has only {m}',
                n.field_loc("n"),
            )
        elif m == 1:
            yield Diagnostic.warning(
                ec.JOIN_ARITY, f'join "{n.id}" has a single input, so it joins nothing', n.loc
            )


def _unreachable(wf: Workflow, graph: Graph) -> Iterator[Diagnostic]:
    dead = never_running(graph)
    for n in wf.nodes:
        if n.id in dead:
            yield Diagnostic.warning(
                ec.UNREACHABLE, f'node "{n.id}" can never run: {dead[n.id]}', n.loc
            )


def _size(wf: Workflow, policy: Policy) -> Iterator[Diagnostic]:
    total = sum(1 for _ in iter_all_nodes(wf))
    if total > policy.limits.max_nodes:
        yield Diagnostic.error(
            ec.SIZE_LIMIT,
            f"workflow has {total} nodes counting sub-workflows and map bodies; the limit is {policy.limits.max_nodes}",
            wf.loc,
        )
    if len(wf.edges) > policy.limits.max_edges:
        yield Diagnostic.error(
            ec.SIZE_LIMIT,
            f"workflow has {len(wf.edges)} edges; the limit is {policy.limits.max_edges}",
            wf.loc,
        )


def verify(wf: Workflow, policy: Policy, dropped: frozenset[str] = frozenset()) -> list[Diagnostic]:
    """All diagnostics for a workflow: size limits first, then every rule.

    `dropped` names nodes the schema already refused: the workflow is partial, so edges and
    references to them are not reported again, and whole-graph judgements that a missing
    node could change (join arity, reachability) are skipped where it touches them.
    """
    sized = list(_size(wf, policy))
    if any(d.is_error for d in sized):
        return sized
    return sized + verify_workflow(wf, policy, dropped=dropped)


@dataclass(frozen=True, kw_only=True)
class VerifyPass(Pass):
    """Checks every rule; changes nothing."""

    name: ClassVar[str] = "verify"
    summary: ClassVar[str] = "check ids, edges, cycles, references, joins, budgets, sizes and SSRF"
    required: ClassVar[bool] = True
    transforms: ClassVar[bool] = False

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        ctx.diagnostics.extend(verify(wf, ctx.policy))
        return wf
