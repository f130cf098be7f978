"""Every system on every workload, in one process and one run: the rows of the table.

The systems: the plain loop (the lower bound every ratio is taken against), the same DAG as
one generated function, aobc's engine (fast path fused and unfused, full fidelity on
SQLite; the pure-Python core in a subprocess with `AOBC_PUREPYTHON=1`), and the peers,
each where it is installed (`./dev bench` installs them into .venv-bench). All run the same
`step` on the same graphs and must compute the same value, or the suite stops.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

from benchmarks import graphs
from benchmarks.graphs import Graph
from benchmarks.measure import Batch, fastest, sync_batch, throughput

LOOP = "plain loop (lower bound)"
STRAIGHT = "generated straight-line code"
FAST_FUSED = "aobc fast path, fused"
FAST_UNFUSED = "aobc fast path, unfused"
PURE_FUSED = "aobc pure-Python core, fast, fused"
PURE_UNFUSED = "aobc pure-Python core, fast, unfused"
FULL = "aobc full fidelity, SQLite"
FULL_FSYNC = "aobc full fidelity, SQLite fsync"
FULL_FSYNC_AT_ONCE = "aobc full fidelity, SQLite fsync, 100 at once"
FAST_SQLITE = "aobc fast path, SQLite"
FULL_FIRST = "aobc full fidelity, SQLite, first run"

#: The peers: (module, class) in the order they run; the slowest last.
PEERS = (
    ("benchmarks.hamilton_peer", "Hamilton"),
    ("benchmarks.dask_peer", "DaskSync"),
    ("benchmarks.langgraph_peer", "LangGraph"),
    ("benchmarks.dask_peer", "DaskDistributed"),
)
PEER_NAMES = {
    "Hamilton": "Hamilton driver",
    "DaskSync": "Dask, synchronous scheduler",
    "LangGraph": "LangGraph StateGraph",
    "DaskDistributed": "Dask distributed, LocalCluster",
}


class System(Protocol):
    name: str
    in_process: bool
    cold_first: bool  # its first run does work later runs skip: never the only one timed

    def prepare(self, graph: Graph) -> Batch: ...

    def close(self) -> None: ...


@dataclass
class Row:
    workload: str
    system: str
    nodes: int
    seconds: float  # per run: the fastest (graphs) or the mean (tiny workflows)
    runs: int
    in_process: bool = True
    note: str = ""  # why there is no time, when there is none

    @property
    def measured(self) -> bool:
        return not self.note


@dataclass(frozen=True)
class Settings:
    budget: float = 2.0  # seconds per system and graph workload
    max_runs: int = 20
    tiny_count: int = 10_000  # the 10,000 tiny workflows, started to finished
    tiny_budget: float = 10.0  # a slow system runs fewer of them
    peers: bool = True
    pure: bool = True


class _Fn:
    """A system that is one plain function of the graph: the loop and the generated code."""

    in_process = True
    cold_first = False

    def __init__(self, name: str, make: Callable[[Graph], Callable[[], int]]) -> None:
        self.name = name
        self.make = make

    def prepare(self, graph: Graph) -> Batch:
        return sync_batch(self.make(graph))

    def close(self) -> None:
        pass


def _loop(graph: Graph) -> Callable[[], int]:
    return lambda: graphs.plain_loop(graph)


def workloads() -> list[Graph]:
    return [graphs.chain(), graphs.fan(), graphs.layered()]


def aobc_systems(store: Path, *, pure: bool) -> list[System]:
    from benchmarks.runtime import Aobc

    fused, unfused = (PURE_FUSED, PURE_UNFUSED) if pure else (FAST_FUSED, FAST_UNFUSED)
    systems: list[System] = [
        Aobc(fused, mode="fast", fuse=True),
        Aobc(unfused, mode="fast", fuse=False),
    ]
    if not pure:
        systems.append(Aobc(FULL, mode="full", fuse=True, store=store / "full"))
    return systems


def tiny_systems(store: Path) -> list[System]:
    """The tiny-workflow rows beyond the graph ones: the engine on SQLite, fast and fsynced."""
    from benchmarks.runtime import Aobc

    return [
        Aobc(FAST_SQLITE, mode="fast", fuse=True, store=store / "fast-sqlite"),
        Aobc(FULL_FSYNC, mode="full", fuse=True, store=store / "fsync", durable=True),
        Aobc(
            FULL_FSYNC_AT_ONCE,
            mode="full",
            fuse=True,
            store=store / "fsync-100",
            durable=True,
            at_once=100,
        ),
    ]


def peer_systems(log: Callable[[str], None]) -> tuple[list[System], list[Row]]:
    """The installed peers, and a row for each that is not."""
    systems: list[System] = []
    missing: list[Row] = []
    for module, cls in PEERS:
        try:
            systems.append(getattr(importlib.import_module(module), cls)())
        except ImportError as err:
            log(f"{PEER_NAMES[cls]}: not installed ({err}); ./dev bench installs it")
            missing.append(Row("*", PEER_NAMES[cls], 0, 0.0, 0, note="not installed"))
    return systems, missing


def measure_graph(system: System, graph: Graph, expect: int, s: Settings) -> list[Row]:
    batch = system.prepare(graph)
    t = fastest(batch, budget=s.budget, max_runs=s.max_runs, cold_first=system.cold_first)
    if t.value != expect:
        raise AssertionError(f"{system.name} on {graph.name}: {t.value} != {expect}")
    rows = [Row(graph.name, system.name, graph.n, t.best, t.runs, system.in_process)]
    if system.name == FULL:
        # Every output is new to the store in the first run only (later runs compute the
        # same values, which the CAS already holds): a run on fresh data costs this.
        rows.append(Row(graph.name, FULL_FIRST, graph.n, t.first, 1))
    return rows


def measure_tiny(system: System, expect: int, s: Settings) -> list[Row]:
    graph = graphs.tiny()
    batch = system.prepare(graph)
    _, value = batch(1)
    if value != expect:
        raise AssertionError(f"{system.name} on {graph.name}: {value} != {expect}")
    rate, count = throughput(batch, count=s.tiny_count, budget=s.tiny_budget)
    return [Row(graph.name, system.name, graph.n, 1 / rate, count, system.in_process)]


def run_systems(
    systems: list[System], s: Settings, log: Callable[[str], None], *, tiny_only: bool = False
) -> list[Row]:
    """Each system on each workload (graphs first, then the tiny workflow), in that order."""
    rows: list[Row] = []
    if not tiny_only:
        for graph in workloads():
            expect = graphs.plain_loop(graph)
            for system in systems:
                measure = functools.partial(measure_graph, system, graph, expect, s)
                rows.extend(_guard(system, graph.name, log, measure))
    expect = graphs.plain_loop(graphs.tiny())
    for system in systems:
        measure = functools.partial(measure_tiny, system, expect, s)
        rows.extend(_guard(system, graphs.tiny().name, log, measure))
    return rows


def _guard(
    system: System, workload: str, log: Callable[[str], None], measure: Callable[[], list[Row]]
) -> list[Row]:
    """A system that fails on a workload gets a row saying so; a wrong value stops the run."""
    log(f"{workload}: {system.name}")
    try:
        return measure()
    except AssertionError:
        raise
    except Exception as err:  # a peer's own failure is a result, not the suite's crash
        log(f"  failed: {type(err).__name__}: {err}")
        return [Row(workload, system.name, 0, 0.0, 0, system.in_process, f"failed: {err}")]


def pure_rows(s: Settings, log: Callable[[str], None]) -> list[Row]:
    """The pure-Python core's rows, measured by a subprocess with `AOBC_PUREPYTHON=1`."""
    env = dict(os.environ, AOBC_PUREPYTHON="1")
    args = [sys.executable, "-m", "benchmarks", "--worker", "pure", "--settings"]
    args.append(json.dumps(asdict(s)))
    log("pure-Python core: in a subprocess with AOBC_PUREPYTHON=1")
    out = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the pure-core worker failed:\n{out.stderr}")
    return [Row(**r) for r in json.loads(out.stdout)]


def pure_worker(s: Settings, log: Callable[[str], None]) -> list[Row]:
    """The subprocess side of `pure_rows`: aobc's fast path on the pure-Python core."""
    from aobc.runtime import IMPLEMENTATION

    if IMPLEMENTATION != "python":
        raise RuntimeError(f"AOBC_PUREPYTHON=1 but the core in use is {IMPLEMENTATION}")
    with _systems(aobc_systems(Path("."), pure=True)) as systems:
        return run_systems(systems, s, log)


@contextmanager
def _systems(systems: list[System]) -> Iterator[list[System]]:
    try:
        yield systems
    finally:
        for system in systems:
            system.close()


def run_all(s: Settings, log: Callable[[str], None]) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="aobc-bench-") as tmp:
        store = Path(tmp)
        own: list[System] = [_Fn(LOOP, _loop), _Fn(STRAIGHT, graphs.straight_line)]
        own += aobc_systems(store, pure=False)
        with _systems(own) as systems:
            rows += run_systems(systems, s, log)
        with _systems(tiny_systems(store)) as systems:
            rows += run_systems(systems, s, log, tiny_only=True)
        if s.pure:
            rows += pure_rows(s, log)
        if s.peers:
            peers, missing = peer_systems(log)
            rows += missing
            with _systems(peers) as systems:
                rows += run_systems(systems, s, log)
    return rows
