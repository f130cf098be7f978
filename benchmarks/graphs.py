"""The interpreter workloads as plain graphs, and the plain-loop lower bound that runs them.

Every system in the benchmark (aobc and each peer) builds its own program from one `Graph`,
so all of them run the same nodes with the same edges, call the same `benchmarks.fns:step`
with the same inputs dicts (predecessor id -> output), and must produce the same values at
the sinks. Nothing here imports aobc or a peer.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

from benchmarks.fns import step


class Graph:
    """`n` nodes named n0..n{n-1}; `edges` are (source, destination) index pairs."""

    def __init__(self, name: str, n: int, edges: list[tuple[int, int]]) -> None:
        self.name = name
        self.n = n
        self.edges = tuple(edges)
        self.ids = tuple(f"n{i}" for i in range(n))
        preds: list[list[int]] = [[] for _ in range(n)]
        succs: list[list[int]] = [[] for _ in range(n)]
        for a, b in edges:
            preds[b].append(a)
            succs[a].append(b)
        self.preds = tuple(tuple(p) for p in preds)
        self.succs = tuple(tuple(s) for s in succs)
        self.sinks = tuple(i for i in range(n) if not succs[i])
        # Kahn's algorithm, lowest index first: deterministic, and the identity on every
        # workload here (their edges all point from a lower index to a higher one).
        missing = [len(p) for p in preds]
        ready = [i for i in range(n) if not missing[i]]
        topo: list[int] = []
        while ready:
            i = heapq.heappop(ready)
            topo.append(i)
            for s in succs[i]:
                missing[s] -= 1
                if not missing[s]:
                    heapq.heappush(ready, s)
        assert len(topo) == n, f"{name}: not a DAG"
        self.topo = tuple(topo)


def chain(n: int = 1_000) -> Graph:
    return Graph(f"chain {n:,}", n, [(i, i + 1) for i in range(n - 1)])


def fan(width: int = 1_000) -> Graph:
    """One source, `width` nodes that each depend on it, and one sink that depends on all."""
    out = [(0, i) for i in range(1, width + 1)]
    into = [(i, width + 1) for i in range(1, width + 1)]
    return Graph(f"fan-out 1->{width:,}->1", width + 2, out + into)


def layered(layers: int = 50, width: int = 100, seed: int = 7) -> Graph:
    """`layers` x `width` nodes; each node past the first layer has 2-3 seeded random
    parents in the layer before."""
    rng = random.Random(seed)
    edges = []
    for layer in range(1, layers):
        for k in range(width):
            node = layer * width + k
            for p in rng.sample(range(width), rng.randint(2, 3)):
                edges.append(((layer - 1) * width + p, node))
    return Graph(f"layered {layers}x{width}", layers * width, edges)


def tiny() -> Graph:
    """The tiny workflow started and finished many times: a 3-node chain."""
    return Graph("tiny 3-node", 3, [(0, 1), (1, 2)])


def final(graph: Graph, outputs: list[Any]) -> int:
    """The value every system must agree on: the sum of the sinks' outputs."""
    return sum(outputs[i] for i in graph.sinks)


def plain_loop(graph: Graph) -> int:
    """The lower bound: `step` on each node in topological order, with its inputs dict."""
    ids, preds = graph.ids, graph.preds
    outputs: list[Any] = [None] * graph.n
    for i in graph.topo:
        outputs[i] = step({ids[p]: outputs[p] for p in preds[i]})
    return final(graph, outputs)


def straight_line(graph: Graph) -> Callable[[], int]:
    """The whole DAG as one generated function of direct calls, with literal inputs dicts:
    the bound below the plain loop that fusion aims at (no loop, no lookups by index)."""
    lines = ["def run(step):"]
    for i in graph.topo:
        inputs = ", ".join(f"{graph.ids[p]!r}: v{p}" for p in graph.preds[i])
        lines.append(f"    v{i} = step({{{inputs}}})")
    lines.append(f"    return {' + '.join(f'v{i}' for i in graph.sinks)}")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(lines), f"<straight line {graph.name}>", "exec"), namespace)
    run = namespace["run"]
    return lambda: int(run(step))
