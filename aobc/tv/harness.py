"""Running a workflow in the deterministic world, on the real engine.

The engine, routing, joins, conditions, maps and sub-workflows are the production ones;
only the node kinds that reach outside (functions, HTTP, agents, approvals, timers) are
answered by the `World`. So what translation validation checks is what runs in production.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aobc.backend.lower import lower
from aobc.ir import Workflow
from aobc.runtime.driver import NodeFailure, RunDriver, RunResult
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.env import RunEnv, render
from aobc.runtime.execir import ExecIR
from aobc.runtime.executors.function import Callable_ as ResolvedFunction
from aobc.runtime.executors.function import FunctionResolver
from aobc.runtime.nodes import AgentOutcome, NodeExecutors
from aobc.runtime.stores.memory import MemoryCAS, MemoryEventLog
from aobc.runtime.waits import Waits
from aobc.tv.world import Call, World

STDLIB = "aobc.stdlib:"

# The path of the node whose call is running, from the top-level workflow down: `n`, a map's
# item `m[2]`, a node inside a sub-workflow `c/n` or `m[2]/n`. It rides in a context
# variable because the HTTP executor is not told its node, and asyncio copies the context
# into the tasks a node starts (a batch's parts, a map's items).
_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("tv_path", default="")


@dataclass(frozen=True)
class Trace:
    """What one run did: how it ended, its outputs, its effectful calls in order."""

    status: str
    outputs: Any
    error: str | None
    calls: tuple[Call, ...]
    order: tuple[str, ...]  # the path of the node that made each call (see `_PATH`)


class _FakeNodes(NodeExecutors):
    def __init__(self, engine: _WorldEngine, world: World) -> None:
        super().__init__(engine)
        self.world = world
        self.prefix = engine.prefix

    async def run_spec(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        sub: Any = None,
    ) -> Any:
        step = node_id if item is None else f"{node_id}[{item}]"
        token = _PATH.set(self.prefix + step)
        try:
            return await super().run_spec(d, node_id, cfg, env, item, sub)
        finally:
            _PATH.reset(token)

    async def function(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        key: str,
        item: int | None,
    ) -> Any:
        if cfg["fn"].startswith(STDLIB):
            return await super().function(d, node_id, cfg, env, key, item)  # real semantics
        args = cfg.get("args")
        if args is not None:
            inputs = render(args, env)
        elif item is not None:
            inputs = {"item": env["item"]}
        else:
            inputs = d.join_output(d.index[node_id])
        return self.world.function(_PATH.get(), cfg["fn"], inputs, cfg["effect"])

    async def _one_request(self, cfg: Mapping[str, Any], env: RunEnv, key: str) -> Any:
        url = str(render(cfg["url"], env))
        body = render(cfg.get("body"), env)
        return self.world.http(
            _PATH.get(), cfg["method"], url, body, cfg["effect"], cfg.get("filter")
        )

    async def agent(
        self, d: RunDriver, node_id: str, cfg: Mapping[str, Any], env: RunEnv, key: str
    ) -> AgentOutcome:
        prompt = str(render(cfg["prompt"], env))
        return AgentOutcome(
            self.world.agent(_PATH.get(), cfg["model"], prompt, cfg["effect"]), None
        )


class _FakeWaits(Waits):
    def __init__(self, engine: Engine, world: World) -> None:
        super().__init__(engine)
        self.world = world

    def start(self, d: RunDriver, i: int) -> None:
        node = d.ir.nodes[i]
        if d.configs[i]["type"] == "timer":
            d.succeed(i, {"fired_at": 0.0, "wake_at": 0.0})
            return
        decision = self.world.decide(node.id)
        d.succeed(
            i, {"decision": decision, "by": "tv", "reason": None, "level": 0, "timed_out": False}
        )


class _WorldFunctions(FunctionResolver):
    """Every function reference resolves to the world's synchronous answer for it, so pure
    functions run inline (and fused) as real ones would; effectful and idempotent ones
    still run as tasks, through `_FakeNodes.function`, which records them."""

    def __init__(self, world: World) -> None:
        super().__init__()
        self.world = world

    def resolve(self, ref: str) -> ResolvedFunction:
        if ref.startswith(STDLIB):
            return super().resolve(ref)
        world = self.world

        def answer(inputs: Any) -> Any:
            return world.function(_PATH.get(), ref, inputs, "pure")

        return ResolvedFunction(answer, 1, False)


class _WorldEngine(Engine):
    """The engine, with every outside-facing node kind answered by the world."""

    def __init__(
        self,
        stores: Stores,
        world: World,
        prefix: str = "",
        *,
        inline: bool = False,
        fuse: bool = True,
        mode: str = "fast",
    ) -> None:
        super().__init__(stores, EngineOptions(mode=mode, fuse=fuse))
        self.world = world
        self.prefix = prefix  # this (child) run's path from the top-level run, with "/"
        self.inline = inline
        if inline:
            self.functions = _WorldFunctions(world)
        self.nodes = _FakeNodes(self, world)
        self.waits = _FakeWaits(self, world)

    async def run_child(
        self, parent: RunDriver, child_id: str, ir: ExecIR, inputs: Mapping[str, Any]
    ) -> RunResult:
        # A child run's id is `{parent run}/{node}[item]`; its path is the part after the
        # parent's run id, under the parent's own path.
        step = child_id[len(parent.state.run_id) + 1 :]
        child = _WorldEngine(
            self.stores,
            self.world,
            f"{self.prefix}{step}/",
            inline=self.inline,
            fuse=self.options.fuse,
            mode=self.options.mode,
        )
        return await child.start(ir, inputs, run_id=child_id, parent=parent.state.run_id)


def run_in_world(
    ir: ExecIR,
    inputs: Mapping[str, Any],
    seed: int,
    *,
    inline: bool = False,
    fuse: bool = True,
    mode: str = "fast",
) -> Trace:
    """Run `ir` once in a fresh deterministic world.

    By default every function runs as a task answered by the world. With `inline`, pure
    functions are synchronous world functions the engine calls inline, and with `fuse`
    (the engine's default) runs pure inline regions as generated code: that is how fusion
    is validated (`check_fusion`). `mode` is the engine's ("fast" or "full" fidelity).
    """
    world = World(seed)
    stores = Stores(MemoryEventLog(), MemoryCAS())
    engine = _WorldEngine(stores, world, inline=inline, fuse=fuse, mode=mode)

    async def go() -> RunResult:
        try:
            return await engine.start(ir, dict(inputs))
        finally:
            await engine.close()

    try:
        result = asyncio.run(go())
    except NodeFailure as err:
        return Trace("failed", None, str(err), tuple(world.calls), tuple(world.order))
    return Trace(
        result.status, result.outputs, result.error, tuple(world.calls), tuple(world.order)
    )


def generate_inputs(ir: ExecIR, rng: random.Random) -> dict[str, Any]:
    """Values for the workflow's inputs: defaults where declared, else random of the type."""
    out: dict[str, Any] = {}
    for d in ir.inputs:
        if not d.required and rng.random() < 0.5:
            continue
        out[d.name] = _value_of(d.type, rng)
    return out


def _value_of(kind: str, rng: random.Random) -> Any:
    if kind == "str":
        return rng.choice(["", "a", "alpha", "2026-01-01"])
    if kind == "int":
        return rng.randint(-3, 12)
    if kind == "float":
        return rng.choice([0.0, 0.5, 1.5, -2.25])
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "list":
        return [rng.randint(0, 9) for _ in range(rng.randint(0, 3))]
    if kind == "dict":
        return {"k": rng.randint(0, 9), "items": [rng.randint(0, 9)]}
    return rng.choice([1, "x", [1, 2], {"n": 3}])


def lower_plain(wf: Workflow) -> ExecIR:
    return lower(wf)
