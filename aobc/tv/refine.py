"""Translation validation: does the optimized workflow refine the original?

For generated inputs and deterministic worlds (several seeds), both programs run on the real
engine. The optimized one refines the original when, every time:

- it ends the same way (succeeded or failed), with equal outputs;
- it makes the same multiset of effectful calls (a batched request counts as its parts);
- effectful calls the original orders (one's node is an ancestor of the other's, at any depth
  of sub-workflows) come in that order; equal calls are interchangeable.

A counterexample says which rule broke and is reduced (`reduce.py`) before it is shown.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aobc.backend.lower import lower
from aobc.ir import CompositeNode, Graph, MapNode, Workflow
from aobc.tv.harness import Trace, generate_inputs, run_in_world
from aobc.tv.world import Call


@dataclass(frozen=True)
class Counterexample:
    reason: str
    inputs: dict[str, Any]
    seed: int
    before: Trace
    after: Trace
    workflow: Workflow | None = None  # the (possibly reduced) input workflow

    def to_json(self) -> dict[str, Any]:
        return {
            "reason": self.reason,
            "inputs": self.inputs,
            "seed": self.seed,
            "before": {
                "status": self.before.status,
                "outputs": self.before.outputs,
                "calls": len(self.before.calls),
            },
            "after": {
                "status": self.after.status,
                "outputs": self.after.outputs,
                "calls": len(self.after.calls),
            },
        }


def _step_node(step: str) -> str:
    """The node id of one path step: `m[2]` is map `m`'s item 2."""
    return step.split("[", 1)[0]


class _Order:
    """Which recorded calls of a run of `wf` the workflow orders, by the paths that made them.

    Two calls are ordered when, at the first level where their paths part, the first's node
    is an ancestor of the second's in that level's graph. Calls from one node (a batch's
    parts), from two items of one map, or from inside one node with different paths below
    a map item are unordered, as the runtime runs them concurrently.
    """

    def __init__(self, wf: Workflow) -> None:
        self.root = wf
        self.graphs: dict[int, Graph] = {}

    def _graph(self, wf: Workflow) -> Graph:
        g = self.graphs.get(id(wf))
        if g is None:
            g = self.graphs[id(wf)] = Graph.of(wf)
        return g

    def before(self, a: str, b: str) -> bool:
        """Must the call made at path `a` come before the one made at path `b`?"""
        sa, sb = a.split("/"), b.split("/")
        wf: Workflow | None = self.root
        for x, y in zip(sa, sb, strict=False):
            if wf is None:
                return False
            nx, ny = _step_node(x), _step_node(y)
            if nx != ny:
                graph = self._graph(wf)
                return nx in graph.nodes and nx in graph.ancestors(ny)
            if x != y:
                return False  # two items of one map
            wf = _inner(wf, nx)
        return False


def _inner(wf: Workflow, node_id: str) -> Workflow | None:
    """The sub-workflow that node `node_id` of `wf` runs (directly or as its map body)."""
    for n in wf.nodes:
        if n.id == node_id:
            body = n.body if isinstance(n, MapNode) else n
            return body.workflow if isinstance(body, CompositeNode) else None
    return None


def _order_violation(original: Workflow, before: Trace, after: Trace) -> str | None:
    """Whether `after` makes the effectful calls the original orders in a wrong order.

    Equal calls are interchangeable (nothing outside can tell them apart), so calls are
    compared by value with multiplicity: for calls X != Y, when the k-th Y of the original
    (ranked by how many X the workflow puts before it) needs r X's first, the k-th Y of the
    optimized run must have at least r X's before it. Sorting both sides is the best
    matching, so no legal reordering is refused and no illegal one passes.
    """
    order = _Order(original)
    need: dict[tuple[Call, Call], list[int]] = {}
    for j, (b_path, y) in enumerate(zip(before.order, before.calls, strict=True)):
        counts: Counter[Call] = Counter()
        for a_path, x in zip(before.order[:j], before.calls[:j], strict=True):
            if x != y and order.before(a_path, b_path):
                counts[x] += 1
        for x, r in counts.items():
            need.setdefault((x, y), []).append(r)
    for (x, y), rs in need.items():
        ys = before.calls.count(y)
        required = sorted(rs + [0] * (ys - len(rs)))
        seen_x = 0
        have = []
        for c in after.calls:
            if c == x:
                seen_x += 1
            elif c == y:
                have.append(seen_x)
        for r, h in zip(required, have, strict=True):
            if h < r:
                return f"effect order changed: {x.target} must come before {y.target}"
    return None


def compare(original: Workflow, before: Trace, after: Trace) -> str | None:
    """Why `after` does not refine `before`, or None when it does.

    A run of the original that fails constrains nothing (as undefined behaviour does not in
    a compiler): removing a dead pure node that would have failed is a legal optimization.
    """
    if before.status == "failed":
        return None
    if before.status != after.status:
        return f"the original run {before.status}, the optimized one {after.status} ({after.error or before.error})"
    if before.status == "succeeded" and before.outputs != after.outputs:
        return f"outputs differ: {before.outputs!r} became {after.outputs!r}"
    if Counter(before.calls) != Counter(after.calls):
        lost = Counter(before.calls) - Counter(after.calls)
        extra = Counter(after.calls) - Counter(before.calls)
        missing, added = sorted(c.target for c in lost), sorted(c.target for c in extra)
        return f"effectful calls differ: missing {missing}, extra {added}"
    return _order_violation(original, before, after)


def check_fusion(wf: Workflow, *, seeds: int = 5, rng_seed: int = 0) -> Counterexample | None:
    """Fusion as a rewrite: the same IR run node by node and with its pure inline regions
    fused (`aobc.runtime.fusion`), in the same worlds and in both fidelity modes, must agree
    as any optimization must (and end the same way even when the original fails: fusion may
    not change which node fails; `core.drain` says why it cannot)."""
    ir = lower(wf)
    rng = random.Random(rng_seed)
    for seed in range(seeds):
        inputs = generate_inputs(ir, rng)
        for mode in ("fast", "full"):
            before = run_in_world(ir, inputs, seed, inline=True, fuse=False, mode=mode)
            after = run_in_world(ir, inputs, seed, inline=True, fuse=True, mode=mode)
            reason = compare(wf, before, after)
            if reason is None and (before.status, before.error) != (after.status, after.error):
                reason = f"the run ended differently: {before.error!r} became {after.error!r}"
            if reason is not None:
                return Counterexample(f"{mode} mode: {reason}", inputs, seed, before, after, wf)
    return None


def check(
    original: Workflow, optimized: Workflow, *, seeds: int = 5, rng_seed: int = 0
) -> Counterexample | None:
    """The first counterexample over `seeds` generated inputs and worlds, or None."""
    ir_before, ir_after = lower(original), lower(optimized)
    rng = random.Random(rng_seed)
    for seed in range(seeds):
        inputs = generate_inputs(ir_before, rng)
        before = run_in_world(ir_before, inputs, seed)
        after = run_in_world(ir_after, inputs, seed)
        reason = compare(original, before, after)
        if reason is not None:
            return Counterexample(reason, inputs, seed, before, after, original)
    return None
