"""Runtime phases, one benchmark each, on the seeded interpreter workloads (benchmarks.graphs):
plan build, the core's drain (on both cores), a fused region's call, and event appends."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from aobc.backend.fuse import Candidate, regions
from aobc.backend.lower import lower
from aobc.runtime import core
from aobc.runtime.execir import ExecIR
from aobc.runtime.routing import Plan
from aobc.runtime.stores.base import EventLog, RunRecord
from aobc.runtime.stores.memory import MemoryEventLog
from aobc.runtime.stores.sqlite import SqliteEventLog
from benchmarks import graphs
from benchmarks.fns import step
from benchmarks.runtime import FN, workflow

GRAPHS: dict[str, Callable[[], graphs.Graph]] = {"chain": graphs.chain, "layered": graphs.layered}


def _ir(name: str) -> tuple[graphs.Graph, ExecIR]:
    graph = GRAPHS[name]()
    return graph, lower(workflow(graph))


@pytest.fixture(params=["cython", "python"])
def implementation(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each core in turn, restoring the one the process chose."""
    before = core.IMPLEMENTATION
    core.use(request.param)
    yield request.param
    core.use(before)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_plan_build(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    _, ir = _ir(name)
    benchmark(Plan, ir)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_core_drain(benchmark, name: str, implementation: str) -> None:  # type: ignore[no-untyped-def]
    """Every node inline: routing state from `core.start`, then one `drain` runs the graph."""
    graph, ir = _ir(name)
    plan = Plan(ir)
    fns: list[Callable[[dict[str, Any]], Any] | None] = [step] * graph.n

    def taken(i: int, value: Any) -> list[bool] | None:
        return None  # no edge carries a label or a guard here

    def start_node(i: int) -> bool:
        raise AssertionError(f"node {i} did not run inline")

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        st, ready = core.start(ir)
        values: list[Any] = [None] * graph.n
        return (st, ready, fns, plan.ids, values, {}, [], plan.guarded, taken, start_node), {}

    args, _ = setup()
    core.drain(*args)
    assert args[1] == []  # nothing left ready
    assert graphs.final(graph, args[4]) == graphs.plain_loop(graph)
    benchmark.pedantic(core.drain, setup=setup, rounds=30)


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_fused_region_call(benchmark, name: str) -> None:  # type: ignore[no-untyped-def]
    """The generated function of the graph's one fused region (every node is a candidate;
    nodes with no edge at all are left out, a region of one saves nothing)."""
    graph, ir = _ir(name)
    (region,) = regions(ir, lambda i: Candidate(FN, 1))
    namespace: dict[str, Any] = {}
    exec(compile(region.source, f"<fused {name}>", "exec"), namespace)
    fused = namespace["fused"]
    values: list[Any] = [None] * graph.n
    for i in set(range(graph.n)) - set(region.members):
        values[i] = step({})  # an edgeless node: a root and a sink on its own
    fused(values, (step,))
    assert graphs.final(graph, values) == graphs.plain_loop(graph)
    benchmark(fused, values, (step,))


def _log(kind: str, tmp_path: Path) -> EventLog:
    return MemoryEventLog() if kind == "memory" else SqliteEventLog(tmp_path / "aobc.db")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
@pytest.mark.parametrize("batch", [1, 100])
def test_store_append(benchmark, kind: str, batch: int, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`batch` node.succeeded events in one append (the driver batches a run's events)."""
    log = _log(kind, tmp_path)
    record = RunRecord("r-bench", "bench", "0" * 64, "running", 0.0, 0.0, "default", None, None, {})
    log.create_run(record, [("run.started", {"name": "bench"})])
    events = [("node.succeeded", {"node": f"n{i}", "output": "0" * 64}) for i in range(batch)]
    benchmark(log.append, "r-bench", events)
    log.close()
