"""aobc's embedded runtime as a benchmarked system: the workload graphs as workflows.

Each graph becomes a workflow of pure function nodes calling `benchmarks.fns:step`, one
per graph node, with the graph's edges and one output per sink; the engine passes each node
its predecessors' outputs by id, exactly the inputs dict the plain loop builds. Runs are
timed inside one event loop, so a run is charged for `Engine.start` to its result, not for
starting a loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from aobc.backend.lower import lower
from aobc.ir import Edge, Effect, FunctionNode, OutputDecl, Workflow
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.execir import ExecIR
from aobc.runtime.stores.embedded import EmbeddedStores
from benchmarks.graphs import Graph
from benchmarks.measure import Batch

FN = "benchmarks.fns:step"


def workflow(graph: Graph) -> Workflow:
    nodes = tuple(FunctionNode(id=i, effect=Effect.PURE, fn=FN) for i in graph.ids)
    ids = graph.ids
    return Workflow(
        name=graph.name.split()[0],
        nodes=nodes,
        edges=tuple(Edge(src=ids[a], dst=ids[b]) for a, b in graph.edges),
        outputs=tuple(OutputDecl(name=f"o{k}", expr=ids[i]) for k, i in enumerate(graph.sinks)),
    )


class Aobc:
    """The embedded engine in one mode, on one kind of store, with or without fusion.

    `store` is None for the in-memory stores, else a directory for SQLite and the local CAS
    (`durable`: fsync every commit, `EmbeddedStores.open(durable=True)`)."""

    in_process = True
    cold_first = True  # plan, fused code, and outputs new to the store

    def __init__(
        self,
        name: str,
        *,
        mode: str,
        fuse: bool,
        store: Path | None = None,
        durable: bool = False,
        at_once: int = 1,
    ) -> None:
        self.name = name
        self.at_once = at_once  # runs started together (asyncio.gather), each then charged
        # its share of their wall time: what a server starting many runs sees
        self.mode = mode
        self.fuse = fuse
        self.store = store
        self.durable = durable
        self.loop = asyncio.new_event_loop()
        self.opened: list[EmbeddedStores] = []

    def prepare(self, graph: Graph) -> Batch:
        # The last workload's batch is done with: let its stores go, so the runs they hold
        # are not in the heap the collector walks during this workload's runs.
        self.close_stores()
        if self.store is None:
            st = EmbeddedStores.memory()
        else:
            st = EmbeddedStores.open(self.store / graph.name.split()[0], durable=self.durable)
        self.opened.append(st)
        engine = Engine(
            Stores(st.events, st.cas, st.dir), EngineOptions(mode=self.mode, fuse=self.fuse)
        )
        return _batch(self.loop, engine, lower(workflow(graph)), self.at_once)

    def close_stores(self) -> None:
        for st in self.opened:
            st.close()
        self.opened.clear()

    def close(self) -> None:
        self.close_stores()
        self.loop.close()


def _batch(loop: asyncio.AbstractEventLoop, engine: Engine, ir: ExecIR, at_once: int = 1) -> Batch:
    clock: Callable[[], float] = time.perf_counter

    async def runs(k: int) -> tuple[list[float], int]:
        times: list[float] = []
        outputs: dict[str, int] = {}
        while len(times) < k:
            n = min(at_once, k - len(times))
            start = clock()
            if n == 1:
                results = [await engine.start(ir, {})]
            else:
                results = await asyncio.gather(*(engine.start(ir, {}) for _ in range(n)))
            times.extend([(clock() - start) / n] * n)
            for result in results:
                if result.status != "succeeded":
                    raise RuntimeError(f"{ir.name}: run {result.status}: {result.error}")
                outputs = result.outputs
        return times, sum(outputs.values())

    def batch(k: int) -> tuple[list[float], int]:
        return loop.run_until_complete(runs(k))

    return batch
