"""Dask as a benchmarked peer: the graph as a Dask task graph, run by the local synchronous
scheduler (`dask.get`) or by `dask.distributed` on a `LocalCluster`.

Each node is a task `(call, *predecessor keys)`: Dask passes the predecessors' results as
arguments and `call` zips them with their ids into the same inputs dict the plain loop
builds. Dask is imported here only, and only in the benchmark venv (`./dev bench`).
"""

from __future__ import annotations

import functools
import importlib
import itertools
import logging
from typing import Any

from benchmarks.fns import step
from benchmarks.graphs import Graph
from benchmarks.measure import Batch, sync_batch


def call(names: tuple[str, ...], *values: int) -> int:
    return step(dict(zip(names, values, strict=True)))


def task_graph(graph: Graph, suffix: str = "") -> dict[str, tuple[Any, ...]]:
    """The task graph; `suffix` is appended to every key (not to the ids `step` sees)."""
    ids = graph.ids
    dsk: dict[str, tuple[Any, ...]] = {}
    for i, me in enumerate(ids):
        preds = tuple(ids[p] for p in graph.preds[i])
        dsk[me + suffix] = (functools.partial(call, preds), *(p + suffix for p in preds))
    return dsk


class DaskSync:
    name = "Dask, synchronous scheduler"
    in_process = True
    cold_first = False

    def __init__(self) -> None:
        self.dask: Any = importlib.import_module("dask")

    def prepare(self, graph: Graph) -> Batch:
        dsk = task_graph(graph)
        sinks = [graph.ids[i] for i in graph.sinks]
        get = self.dask.get  # dask.local.get_sync

        def run() -> int:
            return sum(get(dsk, sinks))

        return sync_batch(run)

    def close(self) -> None:
        pass


class DaskDistributed:
    """A `LocalCluster` of 2 worker processes (this machine's cores), 1 thread each, and a
    client in this process; the cluster is started once and shared by every workload."""

    name = "Dask distributed, LocalCluster"
    in_process = False
    cold_first = False

    def __init__(self) -> None:
        distributed: Any = importlib.import_module("distributed")
        # The cluster logs every worker start and stop; the table is the output here.
        logging.getLogger("distributed").setLevel(logging.ERROR)
        self.cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = distributed.Client(self.cluster)

    def prepare(self, graph: Graph) -> Batch:
        client = self.client
        runs = itertools.count()

        def run() -> int:
            # Fresh keys for every run: the scheduler may still be releasing the last run's
            # keys, and asking for them again then fails ("couldn't gather keys"). Making the
            # graph costs microseconds per task here, against milliseconds per task to run it.
            suffix = f"-{next(runs)}"
            dsk = task_graph(graph, suffix)
            return sum(client.get(dsk, [graph.ids[i] + suffix for i in graph.sinks]))

        return sync_batch(run)

    def close(self) -> None:
        self.client.close()
        self.cluster.close()
