"""Running fused regions: the backend's generated functions, compiled once, called by a run.

`aobc.backend.fuse` finds the regions of an IR whose nodes are pure synchronous functions
the engine calls inline, and emits each as one Python function of direct calls. Here they
are compiled (once per distinct source, which is a function of the IR and of which nodes
may be inlined, so in effect once per IR hash) and bound to the engine's resolved
functions, as part of the IR's `Plan`.

A run calls a region instead of its members when every input from outside the region is
done, every root is ready and every other member still pending (so no member has run or
been skipped: each member descends from a root inside the region). Afterwards the run is
exactly as if the members had run inline one by one in topological order: their values
are stored, their completions recorded (in full-fidelity mode as `node.succeeded` events
with their outputs, in fast mode in the state only), and routing marks them done and
readies what follows, in one core call (`core.complete_region`, with the region's routing
precomputed once per IR). What fusion skips is
the memo: a fused node is not looked up in, nor stored to, the cross-run cache (cache-
marked nodes, where the cache pays, are never fused).

If a member raises, the region's outputs are not stored (the generated code stores them
last) and the run goes on without fusing that region: the interpreter then runs the
members one by one and reports the failing node as usual. Members are pure, so running
the ones before it again is allowed.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from types import CodeType
from typing import TYPE_CHECKING, Any

from aobc.backend.fuse import JOIN_ALL, Candidate, Region, regions
from aobc.runtime import core
from aobc.runtime.execir import E_PURE, J_ALL, K_FUNCTION, K_JOIN, ExecIR
from aobc.runtime.values import ValueError_

if TYPE_CHECKING:
    from aobc.runtime.driver import RunDriver
    from aobc.runtime.engine import Engine

_CODE_CACHE_SIZE = 256
_CODE: OrderedDict[str, CodeType] = OrderedDict()


def _compiled(source: str) -> Callable[[list[Any], tuple[Any, ...]], None]:
    key = hashlib.sha256(source.encode()).hexdigest()
    code = _CODE.get(key)
    if code is None:
        code = compile(source, f"<aobc fused {key[:12]}>", "exec")
        _CODE[key] = code
        if len(_CODE) > _CODE_CACHE_SIZE:
            _CODE.popitem(last=False)
    else:
        _CODE.move_to_end(key)
    namespace: dict[str, Any] = {}
    exec(code, namespace)  # the backend's own generated code: calls and assignments only
    fn: Callable[[list[Any], tuple[Any, ...]], None] = namespace["fused"]
    return fn


@dataclass(eq=False)
class Fused:
    """One region of one IR, ready to call."""

    region: Region
    call: Callable[[list[Any], tuple[Any, ...]], None]
    fns: tuple[Any, ...]
    ids: list[str]  # the members' ids, in the region's (topological) order
    done: dict[str, None]  # what a fast-path run records for them
    ir: ExecIR
    # The region's routing (`core.Region`: what its outside successors wait for), per core
    # implementation, made on first use: a run completes the region as one unit with it.
    routings: dict[str, Any] = field(default_factory=dict)

    def routing(self) -> Any:
        r = self.routings.get(core.IMPLEMENTATION)
        if r is None:
            r = self.routings[core.IMPLEMENTATION] = core.Region(self.ir, self.region.members)
        return r


class Fusion:
    """The fused regions of one IR in one engine, indexed by their roots."""

    def __init__(self, engine: Engine, ir: ExecIR) -> None:
        def candidate(i: int) -> Candidate | None:
            return fusable(engine, ir, i)

        self.by_root: dict[int, Fused] = {}
        self.count = 0
        #: The region that holds every node of the IR, if one does: a fresh run's every
        #: node then runs in its one call (see `Engine.run_now`).
        self.whole: Fused | None = None
        for region in regions(ir, candidate):
            fns = tuple(engine.functions.resolve(ref).fn for ref in region.fns)
            ids = [ir.nodes[m].id for m in region.members]
            fused = Fused(region, _compiled(region.source), fns, ids, dict.fromkeys(ids), ir)
            self.count += 1
            for r in region.roots:
                self.by_root[r] = fused
            if len(region.members) == len(ir.nodes):
                self.whole = fused

    def run_ready(self, d: RunDriver) -> None:
        """Call every region whose roots are ready and whose outside inputs are done."""
        by_root = self.by_root
        status = d.routing.status
        for i in list(d.ready):
            f = by_root.get(i)
            # A region's other roots are DONE once it ran: one status read skips them.
            if f is None or status[i] != core.READY or f in d.unfused:
                continue
            routing = f.routing()
            if not core.region_ready(d.routing, routing):
                continue
            if d.state.frozen and any(m in d.state.frozen for m in f.ids):
                d.unfused.add(f)  # a replay reads these from the store instead
                continue
            try:
                f.call(d.values, f.fns)
            except Exception:  # a workflow function failing: let the interpreter say where
                d.unfused.add(f)
                continue
            if d.full:
                for m in f.region.members:
                    try:
                        d.succeed(m, d.values[m], route=False)
                    except ValueError_ as err:  # an output JSON cannot carry
                        d.fail(d.ids[m], err)
                        return
            else:
                # What a fast run records per node (live patches and a rebuild read it):
                # two bulk operations over precomputed members, no per-node call.
                d.state.done.update(f.done)
                d.state.order.extend(f.ids)
            # Every member done and what waits on the region routed, in one core call.
            d.ready.extend(core.complete_region(d.routing, routing))


def fusable(engine: Engine, ir: ExecIR, i: int) -> Candidate | None:
    """Node i as a fusion candidate: a pure synchronous function the engine calls inline
    with its predecessors' outputs (no `args`, no retries, not cache-marked), taking its
    inputs or nothing (a function that wants its context runs on its own); or a `join all`;
    and none that feeds a join firing on some of its inputs (`any`, `n of m`).
    (A region runs only once every input from outside is done, so all of a join's inputs
    ran: its output is all of them, as the interpreter's would be. `any` and `n` joins fire
    on what has run so far, which a region does not model.)"""
    node = ir.nodes[i]
    for j in ir.successors(i):
        succ = ir.nodes[j]
        if succ.kind == K_JOIN and succ.join_mode != J_ALL:
            # A join that fires on some inputs sees those done when it fires: run one by
            # one, its inputs arrive one at a time, which a region's single call would not.
            return None
    if node.kind == K_JOIN and node.join_mode == J_ALL:
        return JOIN_ALL
    if node.kind != K_FUNCTION or node.effect != E_PURE or node.max_attempts > 1:
        return None
    cfg = ir.consts[node.config]
    if "args" in cfg or "cache" in cfg or not engine.inline_ok(cfg):
        return None
    fn = engine.functions.resolve(cfg["fn"])
    if fn.arity not in (0, 1):
        return None
    return Candidate(cfg["fn"], fn.arity)
