"""`cache-mark`: mark pure, deterministic work as cacheable, with the names its key covers.

Before:
    input q: str
    search = http GET "https://api.example.com/search?q=${inputs.q}" { effect: idempotent }
    rank   = function "m:rank" { effect: pure, args: { hits: search.body, q: inputs.q } }
    top    = function "m:top" { effect: pure, args: { ranked: rank.value } }
    triage = agent { model: "gpt-4o-mini", prompt: "Pick one of ${top.value}" }
    note   = function "m:note" { effect: pure, args: { pick: triage.choice } }
    search -> rank -> top -> triage -> note

After:
    rank   = function "m:rank" { effect: pure, ..., cache: { key: ["inputs.q", "search"] } }
    top    = function "m:top" { effect: pure, ..., cache: { key: ["inputs.q", "search"] } }
    note   (unmarked: it reads agent "triage", which is not deterministic)

A pure node's output is a function of what it reads. Following reads back (the names in
its expressions, and all its predecessors for a function without `args` or a join) through
pure nodes ends at workflow inputs and at non-pure nodes, whose recorded outputs are data:
those names, sorted, are the node's cache key. The runtime keys its memo by the node's
config and its actual inputs, so the key never decides correctness; it says what the cache
entry covers, and marking tells fast-path runs that a memo lookup pays.

A node is deterministic only when nothing it depends on is sampled or timed: agents (an LLM
answer is a sample, whatever the node declares) and timers (their output is the moment they
fired) never are, nor is a node that runs one (a map whose body is an agent, a composite
holding one), nor anything reading them; keys over such values would never repeat. Only
functions and HTTP requests are marked, the kinds the runtime memoizes; conditions, joins,
maps and composites belong to the cacheable subgraphs reported but carry no mark.
Sub-workflows of composites (a map's composite body included) are marked in their own scope,
where keys name `inputs.x` of the sub-workflow; a map's plain body is not (the runtime runs
it per item without the memo).

Re-running changes nothing: a mark already equal to the computed one is left as it is, and a
stale key is replaced. A mark an author put on a node this pass cannot cache is kept.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aobc.backend.serialize import node_document
from aobc.expr.ast import Attr, ref_name, root_refs
from aobc.frontend.schema import load_node
from aobc.ir import (
    AgentNode,
    CompositeNode,
    Effect,
    FrozenDict,
    FunctionNode,
    Graph,
    HttpNode,
    MapNode,
    Node,
    TimerNode,
    Workflow,
    walk_nodes,
)
from aobc.ir.reads import node_exprs, passes_predecessor_outputs
from aobc.passes.base import Pass, PassContext

#: Kinds the runtime memoizes (`RunDriver.memo`): only these carry a mark.
MEMOIZED: Final = (FunctionNode, HttpNode)


def nondeterminism(n: Node) -> str | None:
    """What makes a node's output not a function of what it reads, as a phrase naming it,
    or None: `agent "triage", which is not deterministic`."""
    for inner in walk_nodes((n,)):
        if isinstance(inner, AgentNode):
            what = f'agent "{inner.id}", which is not deterministic'
        elif isinstance(inner, TimerNode):
            what = f'timer "{inner.id}", whose output is the time it fired'
        else:
            continue
        return what if inner is n else f'{n.KIND.value} "{n.id}", which runs {what}'
    return None


def _dependencies(n: Node, graph: Graph) -> tuple[set[str], set[str]]:
    """(input names as `inputs.x` or `inputs`, node ids) a node's output depends on."""
    inputs: set[str] = set()
    nodes: set[str] = set()
    parts = (n, n.body) if isinstance(n, MapNode) else (n,)
    for part in parts:
        for _, e in node_exprs(part):
            for r in root_refs(e):
                name = ref_name(r)
                if name == "inputs":
                    inputs.add(f"inputs.{r.name}" if isinstance(r, Attr) else "inputs")
                elif name in graph.nodes and name != n.id:
                    nodes.add(name)
    if passes_predecessor_outputs(n):
        nodes |= {e.src for e in graph.preds[n.id]}
    return inputs, nodes


@dataclass
class Facts:
    """What cache-mark knows about one workflow scope."""

    key: dict[str, frozenset[str]] = field(default_factory=dict)  # pure, deterministic nodes
    why: dict[str, str] = field(default_factory=dict)  # pure nodes that are not, and why
    links: dict[str, set[str]] = field(default_factory=dict)  # data deps among `key` nodes


def analyze(wf: Workflow) -> Facts:
    """Keys of the pure deterministic nodes of one scope, and reasons for the others."""
    graph = Graph.of(wf)
    out = Facts()
    tainted: dict[str, str] = {}  # node -> the non-deterministic source behind its output
    for nid in graph.topo_order() or []:
        n = graph.nodes[nid]
        own = nondeterminism(n)
        if own is not None:
            tainted[nid] = own
            if n.effect is Effect.PURE:
                out.why[nid] = f"it is {own}"
            continue
        if n.effect is not Effect.PURE:
            continue  # a deterministic source: its recorded output is data for the key
        inputs, deps = _dependencies(n, graph)
        key = set(inputs)
        links: set[str] = set()
        for d in sorted(deps):
            if d in tainted:
                via = "" if nondeterminism(graph.nodes[d]) else f' (through "{d}")'
                out.why[nid] = f"it reads {tainted[d]}{via}"
                tainted[nid] = tainted[d]
                break
            if d in out.key:
                key |= out.key[d]
                links.add(d)
            else:
                key.add(d)
        else:
            out.key[nid] = frozenset(key)
            out.links[nid] = links
    return out


def _components(facts: Facts) -> list[list[str]]:
    """Connected groups of deterministic pure nodes (linked by data), in topological order."""
    parent = {nid: nid for nid in facts.key}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for nid, links in facts.links.items():
        for d in links:
            parent[find(nid)] = find(d)
    groups: dict[str, list[str]] = {}
    for nid in facts.key:
        groups.setdefault(find(nid), []).append(nid)
    return list(groups.values())


def _mark(n: Node, key: frozenset[str]) -> Node:
    cache: FrozenDict[str, Any] = FrozenDict({"key": tuple(sorted(key))})
    return n if n.cache == cache else dataclasses.replace(n, cache=cache)


@dataclass
class _Marker:
    """Marks one workflow and, recursively, the sub-workflows of its composites."""

    pass_name: str
    ctx: PassContext

    def scope(self, wf: Workflow, prefix: str) -> Workflow:
        if len({n.id for n in wf.nodes}) != len(wf.nodes):
            return wf  # a repeated id: verify reports it, and nothing here is safe to judge
        facts = analyze(wf)
        nodes = [self.node(n, facts, prefix) for n in wf.nodes]
        self.report(wf, facts, prefix)
        return dataclasses.replace(wf, nodes=tuple(nodes))

    def node(self, n: Node, facts: Facts, prefix: str) -> Node:
        if isinstance(n, MEMOIZED) and n.id in facts.key:
            return _mark(n, facts.key[n.id])
        if isinstance(n, CompositeNode):
            return dataclasses.replace(n, workflow=self.scope(n.workflow, f"{prefix}{n.id}/"))
        if isinstance(n, MapNode) and isinstance(n.body, CompositeNode):
            sub = self.scope(n.body.workflow, f"{prefix}{n.id}/")
            return dataclasses.replace(n, body=dataclasses.replace(n.body, workflow=sub))
        return n

    def report(self, wf: Workflow, facts: Facts, prefix: str) -> None:
        nodes = Graph.of(wf).nodes
        for group in _components(facts):
            marked = [nid for nid in group if isinstance(nodes[nid], MEMOIZED)]
            if not marked:
                continue
            key = sorted(set().union(*(facts.key[nid] for nid in group)))
            names = tuple(prefix + nid for nid in group)
            self.ctx.remark(
                self.pass_name,
                "analysis",
                "cacheable",
                names,
                f"cacheable subgraph {', '.join(names)}: "
                + (
                    f"its output depends only on {', '.join(key)}"
                    if key
                    else "it reads nothing that varies, so its output is a constant"
                ),
                nodes[group[0]].loc,
                key=key,
                marked=[prefix + nid for nid in marked],
            )
        for nid, why in facts.why.items():
            if isinstance(nodes[nid], MEMOIZED):
                self.ctx.remark(
                    self.pass_name,
                    "missed",
                    "not-deterministic",
                    (prefix + nid,),
                    f"not cached: {why}",
                    nodes[nid].loc,
                )


@dataclass(frozen=True, kw_only=True)
class CacheMarkPass(Pass):
    """Marks pure deterministic functions and requests as cacheable, with their keys."""

    name: ClassVar[str] = "cache-mark"
    summary: ClassVar[str] = "mark pure deterministic nodes cacheable, keyed by what they read"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        if Graph.of(wf).topo_order() is None:
            return wf  # verify reports the cycle; nothing here is safe to judge
        marked = _Marker(self.name, ctx).scope(wf, "")
        for old, new in zip(wf.nodes, marked.nodes, strict=True):
            if new != old:
                if isinstance(new, CompositeNode | MapNode):
                    # As the patch reloads it: a sub-workflow in canonical form.
                    new = load_node(node_document(new))
                wf = ctx.rewriter.replace_node(wf, old.id, new)
                ctx.count("nodes-marked", len(_changed(old, new)))
        return wf


def _changed(old: Node, new: Node) -> list[Node]:
    """The nested nodes whose mark changed between two versions of a node."""
    return [
        b for a, b in zip(walk_nodes((old,)), walk_nodes((new,)), strict=True) if a.cache != b.cache
    ]
