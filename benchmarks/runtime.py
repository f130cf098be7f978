"""Interpreter workloads: node executions per second against the plain-loop lower bound.

The lower bound calls the same Python functions, with the same input dicts, in a plain loop
in topological order: everything the engine does beyond that is overhead.
"""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aobc.backend.lower import lower
from aobc.ir import Edge, Effect, FunctionNode, Workflow
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.execir import ExecIR
from aobc.runtime.stores.embedded import EmbeddedStores
from benchmarks import fns

FN = "benchmarks.fns:step"


def _wf(name: str, n: int, edges: list[tuple[int, int]]) -> Workflow:
    nodes = tuple(FunctionNode(id=f"n{i}", effect=Effect.PURE, fn=FN) for i in range(n))
    return Workflow(
        name=name, nodes=nodes, edges=tuple(Edge(src=f"n{a}", dst=f"n{b}") for a, b in edges)
    )


def chain(n: int = 1000) -> Workflow:
    return _wf("chain", n, [(i, i + 1) for i in range(n - 1)])


def fan(width: int = 1000) -> Workflow:
    edges = [(0, i) for i in range(1, width + 1)] + [(i, width + 1) for i in range(1, width + 1)]
    return _wf("fan", width + 2, edges)


def layered(layers: int = 50, width: int = 100, seed: int = 7) -> Workflow:
    rng = random.Random(seed)
    edges = []
    for layer in range(1, layers):
        for k in range(width):
            node = layer * width + k
            for p in rng.sample(range(width), rng.randint(2, 3)):
                edges.append(((layer - 1) * width + p, node))
    return _wf("layered", layers * width, edges)


def plain_loop(ir: ExecIR) -> float:
    """Seconds to call every function once, in topological order, with its inputs dict."""
    outputs: list[Any] = [None] * len(ir.nodes)
    ids = [n.id for n in ir.nodes]
    preds = [ir.predecessors(i) for i in range(len(ir.nodes))]
    start = time.perf_counter()
    for i in ir.topo:
        outputs[i] = fns.step({ids[p]: outputs[p] for p in preds[i]})
    return time.perf_counter() - start


def run_engine(ir: ExecIR, stores: Stores, mode: str) -> float:
    engine = Engine(stores, EngineOptions(mode=mode))

    async def go() -> float:
        start = time.perf_counter()
        result = await engine.start(ir, {})
        elapsed = time.perf_counter() - start
        assert result.status == "succeeded", result.error
        return elapsed

    return asyncio.run(go())


def best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def tiny_workflows(stores: Stores, mode: str, count: int) -> float:
    """Runs per second of a 3-node workflow, started to finished, on one engine."""
    ir = lower(chain(3))
    engine = Engine(stores, EngineOptions(mode=mode))

    async def go() -> float:
        start = time.perf_counter()
        for _ in range(count):
            result = await engine.start(ir, {})
            assert result.status == "succeeded"
        return time.perf_counter() - start

    return count / asyncio.run(go())


def rows() -> list[tuple[str, float, str]]:
    out: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, wf in (
            ("chain 1,000", chain()),
            ("fan-out 1->1,000->1", fan()),
            ("layered 50x100", layered()),
        ):
            ir = lower(wf)
            n = len(ir.nodes)
            floor = best(lambda ir=ir: plain_loop(ir), 5)
            mem = EmbeddedStores.memory()
            fast = best(
                lambda ir=ir, mem=mem: run_engine(ir, Stores(mem.events, mem.cas), "fast"), 3
            )
            disk = EmbeddedStores.open(Path(tmp) / name.split()[0])
            full = best(
                lambda ir=ir, disk=disk: run_engine(
                    ir, Stores(disk.events, disk.cas, disk.dir), "full"
                ),
                2,
            )
            out.append((f"{name}: plain loop", floor, f"{n / floor:,.0f} nodes/s"))
            out.append(
                (
                    f"{name}: engine, fast path, memory",
                    fast,
                    f"{n / fast:,.0f} nodes/s, {fast / floor:.1f}x the loop",
                )
            )
            out.append(
                (
                    f"{name}: engine, full fidelity, SQLite",
                    full,
                    f"{n / full:,.0f} nodes/s, {full / floor:.1f}x the loop",
                )
            )
        mem = EmbeddedStores.memory()
        rate = tiny_workflows(Stores(mem.events, mem.cas), "fast", 2000)
        out.append(("tiny 3-node workflows, fast path, memory", 1 / rate, f"{rate:,.0f} runs/s"))
        disk = EmbeddedStores.open(Path(tmp) / "tiny")
        rate = tiny_workflows(Stores(disk.events, disk.cas, disk.dir), "full", 500)
        out.append(
            ("tiny 3-node workflows, full fidelity, SQLite", 1 / rate, f"{rate:,.0f} runs/s")
        )
    return out
