"""Hamilton (`sf-hamilton`) as a benchmarked peer: the graph as a module of functions.

Hamilton builds its DAG from function signatures: a function named after a node, with one
parameter per predecessor. So each graph becomes a generated module of such functions,
each calling `step` with the same inputs dict the plain loop builds; the driver is built
once and `execute` asks for the sinks on each run. Hamilton is imported here only, and only
in the benchmark venv (`./dev bench`).
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
import sys
import types
from typing import Any

from benchmarks.fns import step
from benchmarks.graphs import Graph
from benchmarks.measure import Batch, sync_batch


def module(graph: Graph) -> types.ModuleType:
    ids = graph.ids
    lines = []
    for i, me in enumerate(ids):
        preds = [ids[p] for p in graph.preds[i]]
        params = ", ".join(f"{p}: int" for p in preds)
        inputs = ", ".join(f"{p!r}: {p}" for p in preds)
        lines += [f"def {me}({params}) -> int:", f"    return step({{{inputs}}})", ""]
    name = f"benchmarks_hamilton_{graph.name.split()[0]}"
    mod = types.ModuleType(name)
    mod.__dict__["step"] = step
    exec(compile("\n".join(lines), f"<hamilton {graph.name}>", "exec"), mod.__dict__)
    # Hamilton takes the functions that `inspect.getmodule` says belong to the module.
    sys.modules[name] = mod
    return mod


class Hamilton:
    name = "Hamilton driver"
    in_process = True
    cold_first = False

    def __init__(self) -> None:
        # Hamilton reports usage over the network unless told not to; there is none here.
        os.environ["HAMILTON_TELEMETRY_ENABLED"] = "false"
        with contextlib.redirect_stdout(io.StringIO()):  # its banner, not our table
            self.driver: Any = importlib.import_module("hamilton.driver")
        self.base: Any = importlib.import_module("hamilton.base")

    def prepare(self, graph: Graph) -> Batch:
        # Hamilton walks the DAG recursively, a few frames per node on the longest path.
        sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * graph.n + 1000))
        dr = (
            self.driver.Builder()
            .with_modules(module(graph))
            .with_adapters(self.base.SimplePythonGraphAdapter(self.base.DictResult()))
            .build()
        )
        sinks = [graph.ids[i] for i in graph.sinks]

        def run() -> int:
            results = dr.execute(sinks)
            return sum(results[s] for s in sinks)

        return sync_batch(run)

    def close(self) -> None:
        pass
