"""The only way passes change a workflow: every change is recorded as RFC 6902 operations.

Each method takes the current workflow and returns the changed one, appending to `ops` the
operations that make the same change to the canonical document. Replacing a node records
only the fields that changed, so an optimizer patch reads like a reviewer would write it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from aobc.backend.serialize import edge_document, node_document
from aobc.expr.ast import Expr
from aobc.frontend.jsonpatch import PatchOp, diff
from aobc.ir import Edge, MapNode, Node, OutputDecl, Workflow


def _node_index(wf: Workflow, node_id: str) -> int:
    for i, n in enumerate(wf.nodes):
        if n.id == node_id:
            return i
    raise KeyError(f"no node {node_id!r}")


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
        """Remove a node and every edge that touches it."""
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

    def rewrite_reads(self, wf: Workflow, names: Mapping[str, Expr]) -> Workflow:
        """Replace every read of a name in `names` (node outputs) by its expression:
        in node configs, edge guards and workflow outputs."""
        from aobc.expr.ast import root_names
        from aobc.frontend.schema import load_node
        from aobc.ir.reads import cached_expr, node_reads
        from aobc.passes.subst import subst_expr_text, subst_node_document

        wanted = set(names)
        for n in list(wf.nodes):
            body_reads = node_reads(n.body) if isinstance(n, MapNode) else set()
            if (node_reads(n) | body_reads) & wanted:
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
