"""The table: every row with its absolute time and its ratio to the plain loop of the same
run, then the issue's targets as measured ratios, each with pass or miss."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import suite
from benchmarks.suite import Row

TINY = "tiny 3-node"
LANGGRAPH = "LangGraph StateGraph"
TARGET_WORKLOADS = ("chain 1,000", "layered 50x100")  # where the issue sets the loop target


def _us(seconds: float) -> str:
    us = seconds * 1e6
    if us >= 100_000:
        return f"{us / 1e6:8.3f} s "
    if us >= 1_000:
        return f"{us / 1e3:8.2f} ms"
    return f"{us:8.1f} us"


class Table:
    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.by = {(r.workload, r.system): r for r in rows}

    def get(self, workload: str, system: str) -> Row | None:
        row = self.by.get((workload, system))
        return row if row is not None and row.measured else None

    def loop(self, workload: str) -> float | None:
        row = self.get(workload, suite.LOOP)
        return row.seconds if row else None

    def fastest_peer(self, workload: str) -> Row | None:
        peers = set(suite.PEER_NAMES.values())
        rows = [
            r
            for r in self.rows
            if r.workload == workload and r.system in peers and r.in_process and r.measured
        ]
        return min(rows, key=lambda r: r.seconds, default=None)

    def print(self, out: Callable[[str], None]) -> None:
        workloads = list(dict.fromkeys(r.workload for r in self.rows if r.workload != "*"))
        width = max(len(r.system) for r in self.rows) + 2
        head = (
            f"{'system'.ljust(width)}{'runs':>6}  {'per run':>11}  {'per node':>11}  {'x loop':>8}"
        )
        for workload in workloads:
            rows = [r for r in self.rows if r.workload == workload]
            loop = self.loop(workload)
            nodes = max(r.nodes for r in rows)
            out("")
            if workload == TINY:
                out(f"{workload} workflows, started to finished ({nodes} nodes each)")
                out(f"{head}  {'runs/s':>10}")
            else:
                out(f"{workload} ({nodes:,} nodes)")
                out(head)
            for r in rows:
                line = f"{r.system.ljust(width)}"
                if not r.measured:
                    out(f"{line}{'':>6}  {r.note}")
                    continue
                ratio = f"{r.seconds / loop:7.2f}x" if loop else "       -"
                line += f"{r.runs:>6}  {_us(r.seconds)}  {_us(r.seconds / r.nodes)}  {ratio}"
                if workload == TINY:
                    line += f"  {1 / r.seconds:>10,.0f}"
                out(line)
        missing = [r for r in self.rows if r.workload == "*"]
        for r in missing:
            out(f"\n{r.system}: {r.note} (./dev bench installs the peers into .venv-bench)")


@dataclass(frozen=True)
class Target:
    what: str
    workload: str
    measured: str
    ok: bool | None  # None: not measured


def _check(
    what: str, workload: str, x: float | None, text: str, ok: Callable[[float], bool]
) -> Target:
    """A target from a measured figure `x` (None: not measured), shown as `text` % x."""
    if x is None:
        return Target(what, workload, "-", None)
    return Target(what, workload, text % x, ok(x))


def targets(t: Table) -> list[Target]:
    out: list[Target] = []

    def vs_loop(workload: str, system: str) -> float | None:
        row, loop = t.get(workload, system), t.loop(workload)
        return row.seconds / loop if row and loop else None

    def speedup(workload: str, other: Row | None) -> float | None:
        me = t.get(workload, suite.FAST_UNFUSED)
        return other.seconds / me.seconds if other and me else None

    for w in TARGET_WORKLOADS:
        out.append(
            _check(
                "interpreter (Cython, fast path) within 3x of the loop",
                w,
                vs_loop(w, suite.FAST_UNFUSED),
                "%.2fx the loop",
                lambda x: x <= 3,
            )
        )
        out.append(
            _check(
                "fused: faster than the plain loop",
                w,
                vs_loop(w, suite.FAST_FUSED),
                "%.2fx the loop",
                lambda x: x < 1,
            )
        )
    graph_workloads = [w for w in dict.fromkeys(r.workload for r in t.rows) if w != "*"]
    for w in graph_workloads:
        peer = t.fastest_peer(w)
        name = f" ({peer.system})" if peer else ""
        out.append(
            _check(
                ">=5x faster than the fastest in-process peer",
                w,
                speedup(w, peer),
                "%.1fx" + name,
                lambda x: x >= 5,
            )
        )
    for w in graph_workloads:
        out.append(
            _check(
                ">=100x faster than LangGraph",
                w,
                speedup(w, t.get(w, LANGGRAPH)),
                "%.0fx",
                lambda x: x >= 100,
            )
        )
    for w in graph_workloads:
        out.append(
            _check(
                ">=10x faster than the pure-Python core (both unfused)",
                w,
                speedup(w, t.get(w, suite.PURE_UNFUSED)),
                "%.2fx",
                lambda x: x >= 10,
            )
        )
    fast = t.get(TINY, suite.FAST_FUSED)
    out.append(
        _check(
            ">=50,000 tiny runs/s, fast path",
            TINY,
            1 / fast.seconds if fast else None,
            "%.0f/s",
            lambda x: x >= 50_000,
        )
    )
    # "Durable": committed to SQLite's WAL (synchronous=NORMAL: survives a crash of the
    # process, may lose the last commits to a power cut), and with an fsync per commit
    # (synchronous=FULL), one at a time and 100 started at once (group commit).
    for what, system in (
        ("every run in SQLite", suite.FULL),
        ("every run fsynced, one at a time", suite.FULL_FSYNC),
        ("every run fsynced, 100 at once", suite.FULL_FSYNC_AT_ONCE),
    ):
        row = t.get(TINY, system)
        out.append(
            _check(
                f">=5,000 tiny runs/s, {what}",
                TINY,
                1 / row.seconds if row else None,
                "%.0f/s",
                lambda x: x >= 5_000,
            )
        )
    return out  # fmt: skip


def print_targets(t: Table, out: Callable[[str], None]) -> None:
    rows = targets(t)
    w1 = max(len(r.what) for r in rows) + 2
    w2 = max(len(r.workload) for r in rows) + 2
    w3 = max(len(r.measured) for r in rows) + 2
    out("")
    out("targets (issue 8), as ratios measured in this run")
    out(f"{'target'.ljust(w1)}{'workload'.ljust(w2)}{'measured'.ljust(w3)}result")
    for r in rows:
        verdict = "-" if r.ok is None else ("pass" if r.ok else "MISS")
        out(f"{r.what.ljust(w1)}{r.workload.ljust(w2)}{r.measured.ljust(w3)}{verdict}")


def print_compile(rows: list[tuple[str, float, str]], out: Callable[[str], None]) -> None:
    width = max(len(r[0]) for r in rows) + 2
    out("")
    out("compile (seeded random workflows with every node kind)")
    for name, seconds, note in rows:
        out(f"{name.ljust(width)}{seconds * 1000:9.2f} ms  {note}")
