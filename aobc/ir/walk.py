"""Graph queries over a Workflow: indexes, adjacency, topological order, cycles."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from aobc.ir.nodes import Edge, Node, Workflow


@dataclass(frozen=True, slots=True)
class Graph:
    """Adjacency of a workflow, by node id. Edges to unknown ids are left out."""

    nodes: dict[str, Node]
    succs: dict[str, list[Edge]]
    preds: dict[str, list[Edge]]
    _topo: list[list[str] | None] = field(default_factory=list, compare=False, repr=False)

    @staticmethod
    def of(wf: Workflow) -> Graph:
        nodes: dict[str, Node] = {n.id: n for n in wf.nodes}
        if len(nodes) != len(wf.nodes):  # a repeated id (verify reports it): the first wins
            nodes = {}
            for n in wf.nodes:
                nodes.setdefault(n.id, n)
        succs: dict[str, list[Edge]] = {nid: [] for nid in nodes}
        preds: dict[str, list[Edge]] = {nid: [] for nid in nodes}
        for e in wf.edges:
            out, into = succs.get(e.src), preds.get(e.dst)
            if out is not None and into is not None:
                out.append(e)
                into.append(e)
        return Graph(nodes, succs, preds)

    def roots(self) -> list[str]:
        return [nid for nid, p in self.preds.items() if not p]

    def topo_order(self) -> list[str] | None:
        """Kahn's order, stable in declaration order; None when the graph has a cycle."""
        if not self._topo:
            self._topo.append(self._kahn())
        return self._topo[0]

    def _kahn(self) -> list[str] | None:
        indeg = {nid: len(p) for nid, p in self.preds.items()}
        ready = [nid for nid, d in indeg.items() if d == 0]
        ready.reverse()
        out: list[str] = []
        while ready:
            nid = ready.pop()
            out.append(nid)
            fresh = []
            for e in self.succs[nid]:
                indeg[e.dst] -= 1
                if indeg[e.dst] == 0:
                    fresh.append(e.dst)
            ready.extend(reversed(fresh))
        return out if len(out) == len(indeg) else None

    def find_cycle(self) -> list[str] | None:
        """One cycle as a list of ids (first id repeated at the end), or None."""
        color: dict[str, int] = dict.fromkeys(self.nodes, 0)  # 0 new, 1 on stack, 2 done
        for start in self.nodes:
            if color[start]:
                continue
            stack: list[tuple[str, int]] = [(start, 0)]
            path: list[str] = []
            while stack:
                nid, i = stack.pop()
                if i == 0:
                    color[nid] = 1
                    path.append(nid)
                out = self.succs[nid]
                if i < len(out):
                    stack.append((nid, i + 1))
                    nxt = out[i].dst
                    if color[nxt] == 1:
                        return [*path[path.index(nxt) :], nxt]
                    if color[nxt] == 0:
                        stack.append((nxt, 0))
                else:
                    color[nid] = 2
                    path.pop()
        return None

    def descendants(self, starts: Iterable[str]) -> set[str]:
        seen: set[str] = set()
        stack = [s for s in starts if s in self.nodes]
        while stack:
            nid = stack.pop()
            for e in self.succs[nid]:
                if e.dst not in seen:
                    seen.add(e.dst)
                    stack.append(e.dst)
        return seen

    def ancestors(self, node_id: str) -> set[str]:
        seen: set[str] = set()
        stack = [node_id]
        while stack:
            nid = stack.pop()
            for e in self.preds.get(nid, ()):
                if e.src not in seen:
                    seen.add(e.src)
                    stack.append(e.src)
        return seen


def index(wf: Workflow) -> dict[str, int]:
    """Position of each node id in `wf.nodes` (first occurrence wins)."""
    out: dict[str, int] = {}
    for i, n in enumerate(wf.nodes):
        out.setdefault(n.id, i)
    return out


def iter_all_nodes(wf: Workflow) -> Iterable[Node]:
    """Every node, including map bodies and the nodes of nested sub-workflows."""
    return walk_nodes(wf.nodes)


def walk_nodes(nodes: Iterable[Node]) -> Iterable[Node]:
    """`nodes` and everything nested in them (map bodies, sub-workflow nodes), in order."""
    from aobc.ir.nodes import CompositeNode, MapNode

    stack: list[Node] = list(reversed(list(nodes)))
    while stack:
        n = stack.pop()
        yield n
        if isinstance(n, MapNode):
            stack.append(n.body)
        elif isinstance(n, CompositeNode):
            stack.extend(reversed(n.workflow.nodes))
