"""Replaying a run from a chosen node, and reporting what diverged.

`freeze` re-executes only the chosen node and what depends on it; every other node takes its
recorded output from the CAS. `fresh` re-executes everything. Either way the replay is a new
run (its parent is the original), on the IR the original finished on, with the same inputs,
and never served from the memo cache: the point is to see what the code does now. It never
asks people again either: approvals take their recorded decisions, and timers do not sleep
twice. The report lists every re-executed node and whether its output changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import ExecutionError
from aobc.runtime.driver import RunResult
from aobc.runtime.execir import K_APPROVAL, K_TIMER, ExecIR
from aobc.runtime.state import RunState
from aobc.source import JsonLoc

if TYPE_CHECKING:
    from aobc.runtime.engine import Engine


@dataclass(frozen=True, slots=True)
class Divergence:
    node: str
    original: str | None  # output hash in the original run (None: did not run)
    replayed: str | None  # output hash in the replay (None: did not run)

    @property
    def status(self) -> str:
        if self.original == self.replayed:
            return "same"
        if self.original is None:
            return "new"
        if self.replayed is None:
            return "missing"
        return "changed"

    def to_json(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "status": self.status,
            "original": self.original,
            "replayed": self.replayed,
        }


def _fail(message: str) -> ExecutionError:
    return ExecutionError(Diagnostic.error(ec.INVALID_VALUE, message, JsonLoc("<replay>", "")))


def downstream(ir: ExecIR, start: int) -> set[int]:
    seen = {start}
    stack = [start]
    while stack:
        i = stack.pop()
        for j in ir.successors(i):
            if j not in seen:
                seen.add(j)
                stack.append(j)
    return seen


def plan(
    original: RunState, ir: ExecIR, from_node: str, mode: str
) -> tuple[dict[str, str], list[str]]:
    """(frozen outputs by node, nodes that will be re-executed) for a replay."""
    if mode not in ("freeze", "fresh"):
        raise _fail(f'replay mode is "freeze" or "fresh", not "{mode}"')
    index = {n.id: i for i, n in enumerate(ir.nodes)}
    if from_node not in index:
        raise _fail(f'run {original.run_id} has no node "{from_node}"')
    if mode == "freeze" and original.mode == "fast":
        raise _fail(
            f"run {original.run_id} ran in fast-path mode, which does not record the outputs of pure "
            "nodes, so there is nothing to freeze; replay it with --mode fresh"
        )
    redo = downstream(ir, index[from_node]) if mode == "freeze" else set(range(len(ir.nodes)))
    frozen: dict[str, str] = {}
    for i, n in enumerate(ir.nodes):
        recorded = original.done.get(n.id)
        keep = i not in redo or (n.kind in (K_APPROVAL, K_TIMER) and n.id != from_node)
        if not keep or n.id not in original.done:
            continue
        if recorded is None:
            raise _fail(
                f'run {original.run_id} ran in fast-path mode and did not record the output of "{n.id}"; '
                "replay it with --mode fresh"
            )
        frozen[n.id] = recorded
    return frozen, [n.id for i, n in enumerate(ir.nodes) if n.id not in frozen]


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay of `original` from `from_node` will run, and on what."""

    original: RunState
    ir: ExecIR
    from_node: str
    mode: str
    frozen: dict[str, str]
    redo: list[str]
    search_path: list[str]

    @property
    def meta(self) -> dict[str, Any]:
        return {
            "of": self.original.run_id,
            "from": self.from_node,
            "mode": self.mode,
            "redo": self.redo,
        }


def prepare(engine: Engine, run_id: str, from_node: str, mode: str) -> ReplayPlan:
    """Check that `run_id` can be replayed from `from_node` and plan it; ExecutionError if not."""
    events = engine.stores.events.read(run_id)
    if not events:
        raise _fail(f"no run {run_id}")
    original = RunState.fold(run_id, events)
    if not original.finished:
        raise _fail(f"run {run_id} is still {original.status}; replay a finished run")
    ir = engine.load_ir(original.ir)
    frozen, redo = plan(original, ir, from_node, mode)
    paths = list(events[0].data.get("search_path", []))
    engine.functions.add_paths(paths)
    return ReplayPlan(original, ir, from_node, mode, frozen, redo, paths)


def divergence(original: RunState, replayed: RunState) -> list[Divergence]:
    """The replay report of `replayed` so far: each node it re-executes, same or changed."""
    redo = (replayed.replay or {}).get("redo", [])
    return [Divergence(n, original.done.get(n), replayed.done.get(n)) for n in redo]


async def replay(
    engine: Engine, run_id: str, from_node: str, mode: str
) -> tuple[RunResult, list[Divergence]]:
    p = prepare(engine, run_id, from_node, mode)
    result = await engine.start(
        p.ir,
        p.original.inputs,
        parent=run_id,
        frozen=p.frozen,
        replay=p.meta,
        search_path=p.search_path,
    )
    replayed = RunState.fold(result.run_id, engine.stores.events.read(result.run_id))
    return result, divergence(p.original, replayed)
