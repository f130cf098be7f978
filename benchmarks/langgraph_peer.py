"""LangGraph as a benchmarked peer: a `StateGraph`, compiled once, invoked per run.

The state is one dict of step results by node id, behind a reducer that merges each
node's update into it; each node reads its predecessors' results, calls `step` with the
same inputs dict the plain loop builds, and returns its own. A node with several
predecessors waits for all of them (an edge from a list of nodes), which is the graph's
join. Of the state designs tried, this is LangGraph's fastest: one state key per node (the
textbook `TypedDict`) ran the chain 2x and the layered DAG 4x slower, and took 18 s to
compile the layered DAG, since every superstep then looks at thousands of channels.

LangGraph is imported here only, and only in the benchmark venv (`./dev bench`).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from benchmarks.fns import step
from benchmarks.graphs import Graph
from benchmarks.measure import Batch, sync_batch


def merge(results: dict[str, int] | None, update: dict[str, int]) -> dict[str, int]:
    """The reducer: in place, since nodes only read the dict (a copy per update would make
    a run quadratic in the number of nodes)."""
    if results is None:
        return dict(update)
    results.update(update)
    return results


class State(TypedDict, total=False):
    results: Annotated[dict[str, int], merge]


def _node(me: str, preds: tuple[str, ...]) -> Callable[[State], State]:
    def node(state: State) -> State:
        results = state["results"]
        return {"results": {me: step({p: results[p] for p in preds})}}

    return node


class LangGraph:
    name = "LangGraph StateGraph"
    in_process = True
    cold_first = False

    def __init__(self) -> None:
        self.lg: Any = importlib.import_module("langgraph.graph")

    def prepare(self, graph: Graph) -> Batch:
        lg = self.lg
        ids = graph.ids
        builder = lg.StateGraph(State)
        for i, me in enumerate(ids):
            builder.add_node(me, _node(me, tuple(ids[p] for p in graph.preds[i])))
        for i, me in enumerate(ids):
            preds = [ids[p] for p in graph.preds[i]]
            if not preds:
                builder.add_edge(lg.START, me)
            elif len(preds) == 1:
                builder.add_edge(preds[0], me)
            else:
                builder.add_edge(preds, me)
        for i in graph.sinks:
            builder.add_edge(ids[i], lg.END)
        app = builder.compile()
        # One superstep per layer of the graph; the default limit (25) would stop a chain.
        config = {"recursion_limit": graph.n + 10}
        sinks = [ids[i] for i in graph.sinks]

        def run() -> int:
            results = app.invoke({"results": {}}, config)["results"]
            return sum(results[s] for s in sinks)

        return sync_batch(run)

    def close(self) -> None:
        pass
