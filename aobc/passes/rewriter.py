"""The only way passes change a workflow: every change is recorded as RFC 6902 operations.

Each method takes the current workflow and returns the changed one, appending to `ops` the
operations that make the same change to the canonical document. Replacing a node records
only the fields that changed, so an optimizer patch reads like a reviewer would write it.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import operator
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

from aobc.backend.serialize import edge_document, node_document
from aobc.expr.ast import Expr
from aobc.frontend.jsonpatch import PatchOp, diff
from aobc.ir import Edge, MapNode, Node, OutputDecl, Workflow


def _node_index(wf: Workflow, node_id: str) -> int:
    for i, n in enumerate(wf.nodes):
        if n.id == node_id:
            return i
    raise KeyError(f"no node {node_id!r}")


_ID = operator.attrgetter("id")
_SRC = operator.attrgetter("src")
_DST = operator.attrgetter("dst")


def _same(values: Iterable[str], value: str) -> Iterator[bool]:
    return map(operator.eq, values, itertools.repeat(value))


def contains_sorted(ordered: list[int], i: int) -> bool:
    """Whether `i` is in the ascending list `ordered`."""
    k = bisect.bisect_left(ordered, i)
    return k < len(ordered) and ordered[k] == i


def _prefixed(ops: Iterable[PatchOp], prefix: str) -> list[PatchOp]:
    return [
        dataclasses.replace(
            op,
            path=prefix + op.path,
            from_=prefix + op.from_ if op.from_ is not None else None,
        )
        for op in ops
    ]


class Rewriter:
    """Records the operations of one pass."""

    def __init__(self) -> None:
        self.ops: list[PatchOp] = []

    @property
    def changed(self) -> bool:
        return bool(self.ops)

    def replace_node(self, wf: Workflow, node_id: str, new: Node) -> Workflow:
        """Put `new` where node `node_id` is (the id may change; edges are not touched)."""
        i = _node_index(wf, node_id)
        old = wf.nodes[i]
        if new == old and new.id == old.id:
            return wf
        self.ops.extend(_prefixed(diff(node_document(old), node_document(new)), f"/nodes/{i}"))
        nodes = list(wf.nodes)
        nodes[i] = new
        return dataclasses.replace(wf, nodes=tuple(nodes))

    def add_node(self, wf: Workflow, node: Node) -> Workflow:
        self.ops.append(PatchOp("add", "/nodes/-", node_document(node)))
        return dataclasses.replace(wf, nodes=(*wf.nodes, node))

    def remove_node(self, wf: Workflow, node_id: str) -> Workflow:
        """Remove a node and every edge that touches it (the first node with that id)."""
        ids = list(map(_ID, wf.nodes))
        if node_id not in ids:
            return self._remove_one(wf, node_id)  # which says so, as it always did
        # With builtins only: a pass may remove a node of a large workflow per step.
        edges = wf.edges
        touching = map(
            operator.or_, _same(map(_SRC, edges), node_id), _same(map(_DST, edges), node_id)
        )
        doomed = list(itertools.compress(itertools.count(), touching))
        for k in reversed(doomed):
            self.ops.append(PatchOp("remove", f"/edges/{k}"))
        i = ids.index(node_id)
        self.ops.append(PatchOp("remove", f"/nodes/{i}"))
        kept: list[Edge] = []
        start = 0
        for k in doomed:
            kept.extend(edges[start:k])
            start = k + 1
        kept.extend(edges[start:])
        return dataclasses.replace(wf, nodes=wf.nodes[:i] + wf.nodes[i + 1 :], edges=tuple(kept))

    def remove_nodes(self, wf: Workflow, node_ids: Sequence[str]) -> Workflow:
        """`remove_node` for each id in turn: the same operations (each node's edges, highest
        index first, then the node, at their indices of that moment), computed in one walk
        over the nodes and edges instead of one per node. A pass removing many nodes of a
        large workflow would otherwise be quadratic."""
        first: dict[str, int] = {}
        for i, n in enumerate(wf.nodes):
            first.setdefault(n.id, i)
        if (
            len(first) != len(wf.nodes)
            or len(set(node_ids)) != len(node_ids)
            or any(nid not in first for nid in node_ids)
        ):
            for nid in node_ids:  # repeated or unknown ids: literally in turn
                wf = self._remove_one(wf, nid)
            return wf
        wanted = set(node_ids)
        touching: dict[str, list[int]] = {}  # edge indices, ascending
        for k, e in enumerate(wf.edges):
            if e.src in wanted:
                touching.setdefault(e.src, []).append(k)
            if e.dst in wanted and e.dst != e.src:
                touching.setdefault(e.dst, []).append(k)
        gone_edges: list[int] = []  # original indices removed so far, sorted
        gone_nodes: list[int] = []
        for nid in node_ids:
            doomed = [k for k in touching.get(nid, ()) if not contains_sorted(gone_edges, k)]
            for k in reversed(doomed):
                self.ops.append(
                    PatchOp("remove", f"/edges/{k - bisect.bisect_left(gone_edges, k)}")
                )
            for k in doomed:
                bisect.insort(gone_edges, k)
            i = first[nid]
            self.ops.append(PatchOp("remove", f"/nodes/{i - bisect.bisect_left(gone_nodes, i)}"))
            bisect.insort(gone_nodes, i)
        drop_edges, drop_nodes = set(gone_edges), set(gone_nodes)
        return dataclasses.replace(
            wf,
            nodes=tuple(n for i, n in enumerate(wf.nodes) if i not in drop_nodes),
            edges=tuple(e for k, e in enumerate(wf.edges) if k not in drop_edges),
        )

    def _remove_one(self, wf: Workflow, node_id: str) -> Workflow:
        wf = self.remove_edges(wf, lambda e: node_id in (e.src, e.dst))
        i = _node_index(wf, node_id)
        self.ops.append(PatchOp("remove", f"/nodes/{i}"))
        return dataclasses.replace(wf, nodes=wf.nodes[:i] + wf.nodes[i + 1 :])

    def add_edge(self, wf: Workflow, edge: Edge) -> Workflow:
        self.ops.append(PatchOp("add", "/edges/-", edge_document(edge)))
        return dataclasses.replace(wf, edges=(*wf.edges, edge))

    def remove_edges(self, wf: Workflow, pred: Callable[[Edge], bool]) -> Workflow:
        """Remove every edge matching `pred` (highest index first, so indices stay valid)."""
        doomed = [i for i, e in enumerate(wf.edges) if pred(e)]
        for i in reversed(doomed):
            self.ops.append(PatchOp("remove", f"/edges/{i}"))
        gone = set(doomed)
        return dataclasses.replace(
            wf, edges=tuple(e for i, e in enumerate(wf.edges) if i not in gone)
        )

    def replace_edge(self, wf: Workflow, index: int, new: Edge) -> Workflow:
        old = wf.edges[index]
        if new == old:
            return wf
        self.ops.extend(_prefixed(diff(edge_document(old), edge_document(new)), f"/edges/{index}"))
        edges = list(wf.edges)
        edges[index] = new
        return dataclasses.replace(wf, edges=tuple(edges))

    def rewrite_reads(
        self, wf: Workflow, names: Mapping[str, Expr], readers: Iterable[str] | None = None
    ) -> Workflow:
        """Replace every read of a name in `names` (node outputs) by its expression:
        in node configs, edge guards and workflow outputs. `readers`: the ids of the only
        nodes that may read those names, when the caller keeps track (a pass rewriting
        reads again and again in a large workflow); the nodes are still taken in order."""
        from aobc.expr.ast import root_names
        from aobc.frontend.schema import load_node
        from aobc.ir.reads import cached_expr, frozen_node_reads
        from aobc.passes.subst import subst_expr_text, subst_node_document

        wanted = set(names)
        candidates: Iterable[Node] = list(wf.nodes)
        if readers is not None:
            ids = list(map(_ID, wf.nodes))
            candidates = [wf.nodes[i] for i in sorted(ids.index(r) for r in readers if r in ids)]
        for n in candidates:
            if wanted.isdisjoint(frozen_node_reads(n)) and (
                not isinstance(n, MapNode) or wanted.isdisjoint(frozen_node_reads(n.body))
            ):
                continue
            doc = subst_node_document(node_document(n), names)
            wf = self.replace_node(wf, n.id, load_node(doc))
        for i, e in enumerate(wf.edges):
            if e.when is not None and root_names(cached_expr(e.when)) & wanted:
                wf = self.replace_edge(
                    wf, i, dataclasses.replace(e, when=subst_expr_text(e.when, names))
                )
        for o in wf.outputs:
            if root_names(cached_expr(o.expr)) & wanted:
                wf = self.set_output(wf, o.name, subst_expr_text(o.expr, names))
        return wf

    def set_output(self, wf: Workflow, name: str, expr: str) -> Workflow:
        outputs = {o.name: o for o in wf.outputs}
        old = outputs.get(name)
        if old is not None and old.expr == expr:
            return wf
        if not wf.outputs:
            self.ops.append(PatchOp("add", "/outputs", {name: expr}))
        else:
            self.ops.append(
                PatchOp("add" if old is None else "replace", f"/outputs/{_esc(name)}", expr)
            )
        outputs[name] = OutputDecl(name=name, expr=expr, loc=old.loc if old else None)
        return dataclasses.replace(
            wf, outputs=tuple(sorted(outputs.values(), key=lambda o: o.name))
        )


def _esc(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")
