"""`cse`: merge identical pure or idempotent nodes that compute the same thing.

Before:
    input id: str
    output a = user.body
    output b = profile.body.name
    user    = http GET "https://api.example.com/users/${inputs.id}" { effect: idempotent }
    again   = http GET "https://api.example.com/users/${inputs.id}" { effect: idempotent }
    profile = function "m:profile" { effect: pure, args: { user: again.body } }
    again -> profile

After:
    input id: str
    output a = user.body
    output b = profile.body.name
    user    = http GET "https://api.example.com/users/${inputs.id}" { effect: idempotent }
    profile = function "m:profile" { effect: pure, args: { user: user.body } }
    user -> profile

Two nodes are duplicates when their canonical documents, ids aside, are equal (so they read
the same names through the same expressions, with the same auth, headers, timeout, retries
and priority) and they have the same incoming edges: the same sources, labels and guards.
The same incoming edges mean they run in exactly the same circumstances, see the same
values (a function without `args` and a join also receive the same predecessors' outputs),
and sit behind the same approvals, so neither can cross a gate. The first in declaration
order is kept; the duplicate's readers read the kept node instead, its outgoing edges leave
the kept node, and it is removed. Merging can make more nodes identical (their readers now
read one name), so the pass repeats to a fixpoint.

Legality: only pure and idempotent nodes are merged; running an idempotent call once
instead of twice, concurrently and with the same inputs, is a run the original could have
had. Never merged (each with a `missed` remark when it is otherwise a duplicate):

- effectful nodes: each must run exactly once per run;
- approvals, whatever their declared effect: each ask is a person's own decision;
- agents, unless declared pure and unable to patch, and maps or composites that run such
  agents: an LLM call is sampled, so two calls with one prompt may answer differently
  (an author who declares an agent pure vouches that it is deterministic);
- nodes whose policy fields differ (auth, headers, timeout, retries, priority);
- a duplicate whose successor takes its predecessors' outputs (a function without `args`, a
  join): that successor receives the duplicate's output under the duplicate's id;
- a duplicate and a kept node feeding one node under the same label but different guards;
- conditions with an "else" edge that branch on different labels: an "else" edge is taken
  when no other label of its source matches, so the kept node's labels would change it.

Cache marks that name the duplicate are renamed to the kept node.
"""

from __future__ import annotations

import dataclasses
import itertools
import operator
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from aobc.backend.serialize import node_document
from aobc.canonical import canonical_bytes
from aobc.expr.ast import root_names
from aobc.ir import (
    AgentNode,
    ApprovalNode,
    Edge,
    Effect,
    FrozenDict,
    Graph,
    MapNode,
    Node,
    Workflow,
    walk_nodes,
)
from aobc.ir.reach import ELSE_LABEL
from aobc.ir.reads import cached_expr, frozen_node_reads, passes_predecessor_outputs
from aobc.passes.analysis import gated_by
from aobc.passes.base import Pass, PassContext
from aobc.passes.subst import ref, subst_expr_text

#: Document fields that change how a call is made, not what it computes. Nodes that differ
#: only in these are reported, never merged.
POLICY_FIELDS: Final = ("auth", "headers", "timeout", "retry", "retries", "priority")
_FIELD_NAMES: Final = {"retry": "retries", "retries": "retries"}

Control = tuple[tuple[str, str, str], ...]


@dataclass(frozen=True, slots=True)
class _Keys:
    """What two nodes must share to be merged, as hashable keys."""

    full: bytes  # the document minus id
    core: bytes  # the document minus id and policy fields
    control: Control  # incoming edges: (source, label, guard)


#: Per node identity: the node, the incoming edge list its keys were made from (the graph's
#: own list object), and the keys.
DocCache = dict[int, tuple[Node, "list[Edge] | tuple[()]", _Keys]]


def _keys(n: Node, graph: Graph, docs: DocCache) -> _Keys:
    # Nodes a merge does not touch keep their identity, and the graph of the next merge keeps
    # their very edge lists (`_next_graph`), so the fixpoint loop encodes each document once
    # and sorts a node's incoming edges again only when they changed: most calls are two
    # identity checks, returning the keys made before.
    preds = graph.preds.get(n.id, ())
    hit = docs.get(id(n))
    if hit is not None and hit[0] is n and hit[1] is preds:
        return hit[2]
    if hit is not None and hit[0] is n:
        full, core = hit[2].full, hit[2].core
        if list(hit[1]) == list(preds):  # other lists, the same edges (a graph built anew)
            docs[id(n)] = (n, preds, hit[2])
            return hit[2]
    else:
        doc = node_document(n, with_id=False)
        full = canonical_bytes(doc)
        core = canonical_bytes({k: v for k, v in doc.items() if k not in POLICY_FIELDS})
    control = tuple(sorted((e.src, e.label or "", e.when or "") for e in preds))
    keys = _Keys(full, core, control)
    docs[id(n)] = (n, preds, keys)
    return keys


def unmergeable(n: Node) -> tuple[str, str] | None:
    """(remark name, why) when a node may never be merged, whatever it duplicates."""
    if n.effect is Effect.EFFECTFUL:
        return "effectful", "node is effectful"
    for inner in walk_nodes((n,)):
        where = "" if inner is n else f' (it runs {inner.KIND.value} "{inner.id}")'
        if isinstance(inner, ApprovalNode):
            return "approval", "an approval asks people, and each ask is its own decision" + where
        if isinstance(inner, AgentNode):
            if inner.may_patch:
                return "agent", "an agent that may patch the workflow acts on it" + where
            if inner.effect is not Effect.PURE:
                return (
                    "agent",
                    f"agent is {inner.effect.value}, and an LLM call is not deterministic: "
                    "two calls may answer differently" + where,
                )
    return None


def _policy_difference(a: Node, b: Node) -> list[str]:
    da, db = node_document(a, with_id=False), node_document(b, with_id=False)
    return sorted({_FIELD_NAMES.get(f, f) for f in POLICY_FIELDS if da.get(f) != db.get(f)})


def _successor_blocker(dup: str, graph: Graph) -> str | None:
    for e in graph.succs[dup]:
        if passes_predecessor_outputs(graph.nodes[e.dst]):
            return (
                f'its successor "{e.dst}" takes its predecessors\' outputs by id, '
                f'so it would see "{dup}" renamed'
            )
    return None


def _branches(nid: str, graph: Graph) -> tuple[frozenset[str], bool]:
    """The labels a node's outgoing edges select on, and whether one of them is "else"."""
    labels = {e.label for e in graph.succs[nid] if e.label is not None}
    return frozenset(labels - {ELSE_LABEL}), ELSE_LABEL in labels


def _moved_edges(keep: str, dup: str, graph: Graph) -> tuple[list[Edge], str | None]:
    """The duplicate's outgoing edges as edges of the kept node (those not already there),
    or why they cannot be moved."""
    branches = [_branches(nid, graph) for nid in (keep, dup)]
    if (branches[0][1] or branches[1][1]) and branches[0][0] != branches[1][0]:
        # An "else" edge is taken when no other label of its source matches, so moving
        # edges with new labels onto a node with an "else" edge (or the reverse) would
        # change when the "else" branch is taken.
        return [], 'they branch on different labels, which would change their "else" branches'
    existing = {(e.dst, e.label): e.when for e in graph.succs[keep]}
    rename = {dup: ref(keep)}
    moved: list[Edge] = []
    for e in graph.succs[dup]:
        when = subst_expr_text(e.when, rename) if e.when is not None else None
        key = (e.dst, e.label)
        if key in existing:
            if existing[key] != when:
                return [], f'both feed "{e.dst}" under different guards'
            continue
        existing[key] = when
        moved.append(Edge(src=keep, dst=e.dst, label=e.label, when=when))
    return moved, None


@dataclass
class _Scan:
    """One pass over the nodes: the first merge found, and what was missed before it."""

    graph: Graph
    gates: dict[str, frozenset[str]] | None = None  # gated_by(graph), when first needed
    merge: tuple[str, str, list[Edge]] | None = None
    #: Where the merge was found, and the duplicate buckets of the nodes before it.
    stop: tuple[int, Buckets] | None = None
    missed: list[tuple[str, tuple[str, str], str]] = dataclasses.field(default_factory=list)


def _near_miss(
    n: Node,
    k: _Keys,
    graph: Graph,
    by_core: dict[tuple[bytes, Control], str],
    by_doc: dict[bytes, str],
    out: _Scan,
) -> tuple[str, tuple[str, str], str] | None:
    """Why `n` is not merged with an earlier node that computes the same thing under other
    policy fields, or in other circumstances; None when there is no such node."""
    if (k.core, k.control) in by_core:
        keep = by_core[(k.core, k.control)]
        fields = _policy_difference(graph.nodes[keep], n)
        return "policy", (keep, n.id), f'not CSE\'d with "{keep}": different {", ".join(fields)}'
    if k.full not in by_doc:
        return None
    keep = by_doc[k.full]
    if out.gates is None:
        out.gates = gated_by(graph)
    gate = sorted(out.gates.get(keep, frozenset()) ^ out.gates.get(n.id, frozenset()))
    if gate:
        why = f'they are on different sides of approval "{gate[0]}"'
        name = "gate"
    elif passes_predecessor_outputs(n):
        why = "it takes its predecessors' outputs, and their predecessors differ"
        name = "control"
    else:
        why = "their incoming edges differ, so they may not run in the same circumstances"
        name = "control"
    return name, (keep, n.id), f'not CSE\'d with "{keep}": {why}'


Buckets = dict[tuple[bytes, Control], list[str]]


def _decide(
    n: Node, earlier: list[str], graph: Graph
) -> tuple[str, list[Edge], tuple[str, str] | None]:
    """What the scan decides for node `n`, which duplicates the nodes `earlier` (in order):
    (keep, the edges to move, None) to merge it into `keep`; or (the node a remark names,
    [], (remark name, why)) when it may not be merged."""
    keep = earlier[0]
    blocked = unmergeable(n)
    if blocked is None:
        why = _successor_blocker(n.id, graph)
        blocked = ("by-id", why) if why else None
    if blocked is None:
        for keep in earlier:
            moved, why = _moved_edges(keep, n.id, graph)
            if why is None:
                return keep, moved, None
        blocked = ("edges", why or "")
    return keep, [], blocked


def _scan(
    wf: Workflow,
    docs: DocCache,
    *,
    collect: bool,
    graph: Graph | None = None,
    resume: tuple[int, Buckets] | None = None,
) -> _Scan:
    """The first merge in declaration order; with `collect`, also every missed one before it
    (only the last scan's are reported, so the fixpoint's other scans skip that work).
    `resume` starts at a position with the buckets of the nodes before it (see `_resumable`)."""
    graph = graph if graph is not None else Graph.of(wf)
    out = _Scan(graph)
    first, by_full = resume if resume is not None else (0, {})
    by_core: dict[tuple[bytes, Control], str] = {}
    by_doc: dict[bytes, str] = {}
    for j in range(first, len(wf.nodes)):
        n = wf.nodes[j]
        if n.id not in graph.nodes or graph.nodes[n.id] is not n:
            continue  # a repeated id: verify reports it, and nothing here is safe to judge
        k = _keys(n, graph, docs)
        earlier = by_full.setdefault((k.full, k.control), [])
        if earlier:
            keep, moved, blocked = _decide(n, earlier, graph)
            if blocked is None:
                out.merge = (keep, n.id, moved)
                out.stop = (j, by_full)
                return out
            if collect:
                out.missed.append((blocked[0], (keep, n.id), f"not CSE'd: {blocked[1]}"))
        elif collect:
            miss = _near_miss(n, k, graph, by_core, by_doc, out)
            if miss is not None:
                out.missed.append(miss)
        earlier.append(n.id)
        if collect:
            by_core.setdefault((k.core, k.control), n.id)
            by_doc.setdefault(k.full, n.id)
    return out


def _resumable(
    old: Workflow,
    old_graph: Graph,
    new: Workflow,
    new_graph: Graph,
    stop: tuple[int, Buckets],
    docs: DocCache,
    ends: set[str],
) -> tuple[int, Buckets] | None:
    """Where the next scan may start after a merge found at position `j` of `old`, with the
    buckets of the nodes before that position; None: scan from the start.

    The scan before the merge found nothing to merge before `j`. A node there keeps its
    decisions when it is the same object (its document is unchanged) with the same incoming
    edges (its control key), so a replaced node or changed incoming edges before `j` mean
    starting again. Outgoing edges matter only to the decisions made at the nodes of a
    changed node's bucket (`_decide`: `_successor_blocker`, `_moved_edges`), so those are
    made again on the new graph. The first that now merges is where the next scan starts,
    with the buckets cut down to the nodes before it; when none does, it starts at `j`.
    Either way it decides exactly as one from the start would, up to where it starts. `ends`: the nodes
    whose edges the merge may have changed (`_changed_ends`); no other node's did."""
    j, buckets = stop
    if any(map(operator.is_not, old.nodes[:j], new.nodes[:j])):
        return None
    first = j
    for nid in ends:
        a = old_graph.nodes.get(nid)
        if a is None or new_graph.nodes.get(nid) is not a:
            continue  # gone (the duplicate), or not a node before j (checked below)
        if tuple(old_graph.preds.get(nid, ())) != tuple(new_graph.preds.get(nid, ())):
            if _position(old, a, j) is not None:
                return None
            continue
        if tuple(old_graph.succs.get(nid, ())) != tuple(new_graph.succs.get(nid, ())):
            at = _position(old, a, j)
            if at is None:
                continue
            k = _keys(a, new_graph, docs)
            where = _first_merge(buckets.get((k.full, k.control), []), old, old_graph, new_graph, j)
            if where is not None:
                first = min(first, where)
    if first == j:
        return stop
    # Take the nodes from `first` to `j` back out of their buckets, last first: each is the
    # last of its bucket then (buckets fill in scan order), with the keys it went in with.
    for n in reversed(old.nodes[first:j]):
        if old_graph.nodes.get(n.id) is not n:
            continue  # a repeated id: never in a bucket
        k = _keys(n, new_graph, docs)  # its edges did not change: the same keys
        bucket = buckets[(k.full, k.control)]
        assert bucket[-1] == n.id
        bucket.pop()
    return first, buckets


def _first_merge(
    bucket: list[str], old: Workflow, old_graph: Graph, new_graph: Graph, j: int
) -> int | None:
    """The position of the first node of `bucket` (nodes before `j`, in scan order) that the
    scan would now merge, deciding on the new graph; None when none would."""
    for at in range(1, len(bucket)):
        member = old_graph.nodes[bucket[at]]
        if _decide(member, bucket[:at], new_graph)[2] is None:
            where = _position(old, member, j)
            assert where is not None  # buckets hold only nodes before j
            return where
    return None


def _changed_ends(
    old: Workflow, old_graph: Graph, keep: str, dup: str, moved: Iterable[Edge]
) -> set[str]:
    """The nodes whose edge lists `merge(old, keep, dup, moved)` changes, at least: the ends
    of the edges it adds (the moved ones, from `keep`), removes (the duplicate's) or
    replaces (those whose guard reads the duplicate). Every other node has the same edges,
    in the same order."""
    ends = {keep, dup}
    ends.update(e.dst for e in moved)
    ends.update(e.src for e in old_graph.preds.get(dup, ()))
    ends.update(e.dst for e in old_graph.succs.get(dup, ()))
    for e in itertools.compress(old.edges, map(_GUARD, old.edges)):  # builtins only
        if dup in root_names(cached_expr(e.when)):
            ends.update((e.src, e.dst))
    return ends


_GUARD = operator.attrgetter("when")


def _next_graph(
    old: Workflow,
    graph: Graph,
    new: Workflow,
    dup: str,
    j: int,
    moved: list[Edge],
    ends: set[str],
) -> Graph:
    """`Graph.of(new)`, where `new` is what `merge` made of `old` (whose graph is `graph` and
    whose node `j` is the duplicate): the old graph with only what changed changed, instead
    of every list built again after every merge. The duplicate and its edges are gone, the
    replaced nodes and edges are where they were, the moved edges come last. Anything else
    (a repeated id, an edge to no node) and the graph is built from scratch."""
    removed = [*graph.preds[dup], *graph.succs[dup]]
    gone = sorted({_index(old.edges, e) for e in removed}, key=lambda at: -1 if at is None else at)
    if (
        len(graph.nodes) != len(old.nodes)
        or len(new.nodes) != len(old.nodes) - 1
        or len(new.edges) != len(old.edges) - len(gone) + len(moved)
        or (gone and gone[0] is None)
    ):
        return Graph.of(new)
    nodes = dict(graph.nodes)
    del nodes[dup]
    head = map(operator.is_not, old.nodes[:j], new.nodes[:j])
    tail = map(operator.is_not, old.nodes[j + 1 :], new.nodes[j:])
    for at in [
        *itertools.compress(itertools.count(), head),
        *itertools.compress(itertools.count(j), tail),
    ]:
        if new.nodes[at].id not in nodes:
            return Graph.of(new)  # a node renamed: the general case
        nodes[new.nodes[at].id] = new.nodes[at]
    # The old edges but the duplicate's, in order, line up with the new ones but the moved.
    kept: list[Edge] = []
    start = 0
    for cut in gone:
        assert cut is not None
        kept.extend(old.edges[start:cut])
        start = cut + 1
    kept.extend(old.edges[start:])
    added = new.edges[len(kept) :]
    if not all(map(operator.is_, added, moved)):
        return Graph.of(new)
    differ = map(operator.is_not, kept, new.edges[: len(kept)])
    swapped = [(kept[at], new.edges[at]) for at in itertools.compress(itertools.count(), differ)]
    if any((a.src, a.dst) != (b.src, b.dst) for a, b in swapped):
        return Graph.of(new)  # not a replacement in place: the general case
    instead = {id(a): b for a, b in swapped}
    dead = {id(e) for e in removed}
    touched = set(ends)
    for e in [*removed, *added, *(b for _, b in swapped)]:
        touched.update((e.src, e.dst))
    succs, preds = dict(graph.succs), dict(graph.preds)
    del succs[dup], preds[dup]
    for nid in touched & nodes.keys():
        for table, side in ((succs, "src"), (preds, "dst")):
            now = [instead.get(id(e), e) for e in table[nid] if id(e) not in dead]
            now += [
                e for e in added if getattr(e, side) == nid and e.src in nodes and e.dst in nodes
            ]
            table[nid] = now
    return Graph(nodes, succs, preds)


def _index(edges: tuple[Edge, ...], edge: Edge) -> int | None:
    """The index of this very `edge` in `edges`, or None (by identity, with builtins only)."""
    same = map(operator.is_, edges, itertools.repeat(edge))
    return next(itertools.compress(itertools.count(), same), None)


def _position(wf: Workflow, node: Node, j: int) -> int | None:
    """The index of this very `node` among the first `j` nodes of `wf`, or None. (By
    identity, with builtins only: `index` would call the dataclass's `__eq__` on each.)"""
    same = map(operator.is_, wf.nodes[:j], itertools.repeat(node))
    return next(itertools.compress(itertools.count(), same), None)


def _rename_cache_keys(
    wf: Workflow, ctx: PassContext, dup: str, keep: str, keyed: set[str] | None = None
) -> Workflow:
    """Cache keys naming `dup` name `keep` instead. `keyed`: the ids of the only nodes with a
    cache key, when the caller keeps track."""
    nodes: Iterable[Node] = list(wf.nodes)
    if keyed is not None:
        nodes = [n for n in nodes if n.id in keyed] if keyed else []
    for n in nodes:
        key = n.cache.get("key") if n.cache is not None else None
        if isinstance(key, tuple | list) and dup in key:
            names = sorted({keep if k == dup else k for k in key})
            cache: FrozenDict[str, Any] = FrozenDict({"key": tuple(names)})
            wf = ctx.rewriter.replace_node(wf, n.id, dataclasses.replace(n, cache=cache))
    return wf


class _Uses:
    """Which nodes read each name, and which have a cache key: the only nodes a merge can
    rewrite, so that it need not look at every node of a large workflow. Kept up to date
    merge by merge (`replaced`); None for a workflow with repeated ids."""

    def __init__(self, wf: Workflow) -> None:
        self.readers: dict[str, set[str]] = {}
        self.keyed: set[str] = set()
        for n in wf.nodes:
            self.add(n)

    @staticmethod
    def of(wf: Workflow) -> _Uses | None:
        return _Uses(wf) if len({n.id for n in wf.nodes}) == len(wf.nodes) else None

    def add(self, n: Node) -> None:
        for name in _reads(n):
            self.readers.setdefault(name, set()).add(n.id)
        if n.cache is not None:
            self.keyed.add(n.id)

    def remove(self, n: Node) -> None:
        for name in _reads(n):
            self.readers.get(name, set()).discard(n.id)
        self.keyed.discard(n.id)

    def replaced(self, old: Graph, new: Graph, ids: Iterable[str], gone: str) -> None:
        """After a merge: nodes `ids` may have been replaced, and `gone` was removed."""
        for nid in ids:
            a, b = old.nodes.get(nid), new.nodes.get(nid)
            if a is not b:
                if a is not None:
                    self.remove(a)
                if b is not None:
                    self.add(b)
        self.remove(old.nodes[gone])


def _reads(n: Node) -> frozenset[str]:
    """What `Rewriter.rewrite_reads` looks for in a node: its reads, and its body's."""
    if isinstance(n, MapNode):
        return frozen_node_reads(n) | frozen_node_reads(n.body)
    return frozen_node_reads(n)


def merge(
    wf: Workflow,
    ctx: PassContext,
    keep: str,
    dup: str,
    moved: Iterable[Edge],
    uses: _Uses | None = None,
) -> Workflow:
    """Make every use of `dup` a use of `keep`, then remove `dup`. (`_changed_ends` knows
    which edges this touches: keep the two in step.)"""
    readers = None if uses is None else set(uses.readers.get(dup, ()))
    wf = ctx.rewriter.rewrite_reads(wf, {dup: ref(keep)}, readers)
    wf = _rename_cache_keys(wf, ctx, dup, keep, None if uses is None else uses.keyed)
    for e in moved:
        wf = ctx.rewriter.add_edge(wf, e)
    return ctx.rewriter.remove_node(wf, dup)


@dataclass(frozen=True, kw_only=True)
class CsePass(Pass):
    """Merges duplicate pure and idempotent nodes, to a fixpoint."""

    name: ClassVar[str] = "cse"
    summary: ClassVar[str] = "merge identical pure or idempotent nodes with identical inputs"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        if Graph.of(wf).topo_order() is None:
            return wf  # verify reports the cycle; nothing here is safe to judge
        docs: DocCache = {}
        uses = _Uses.of(wf)
        scan = _scan(wf, docs, collect=False)
        while scan.merge is not None:
            keep, dup, moved = scan.merge
            node = scan.graph.nodes[dup]
            kind = node.KIND.value
            before = wf
            touched = set() if uses is None else uses.readers.get(dup, set()) | uses.keyed
            wf = merge(wf, ctx, keep, dup, moved, uses)
            ctx.remark(
                self.name,
                "passed",
                "merged",
                (keep, dup),
                f'merged "{dup}" into "{keep}": the same {kind} with the same inputs',
                node.loc,
            )
            ctx.count("nodes-merged")
            assert scan.stop is not None
            ends = _changed_ends(before, scan.graph, keep, dup, moved)
            graph = _next_graph(before, scan.graph, wf, dup, scan.stop[0], moved, ends)
            if uses is not None:
                uses.replaced(scan.graph, graph, touched, dup)
            resume = _resumable(before, scan.graph, wf, graph, scan.stop, docs, ends)
            scan = _scan(wf, docs, collect=False, graph=graph, resume=resume)
        scan = _scan(wf, docs, collect=True)
        assert scan.merge is None  # the same workflow, the same decisions
        nodes = scan.graph.nodes
        for name, pair, message in scan.missed:
            ctx.remark(self.name, "missed", name, pair, message, nodes[pair[1]].loc)
        return wf
