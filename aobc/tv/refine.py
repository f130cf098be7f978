"""Translation validation: does the optimized workflow refine the original?

For generated inputs and deterministic worlds (several seeds), both programs run on the real
engine. The optimized one refines the original when, every time:

- it ends the same way (succeeded or failed), with equal outputs;
- it makes the same multiset of effectful calls (a batched request counts as its parts);
- effectful calls the original orders (one is an ancestor of the other) come in that order.

A counterexample says which rule broke and is reduced (`reduce.py`) before it is shown.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from aobc.backend.lower import lower
from aobc.ir import Graph, Workflow
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


def _ordered_pairs(wf: Workflow, trace: Trace) -> list[tuple[Call, Call]]:
    """Pairs of calls in `trace` whose nodes the workflow orders (ancestor first)."""
    graph = Graph.of(wf)
    out = []
    for i, (a_node, a_call) in enumerate(zip(trace.order, trace.calls, strict=True)):
        anc = graph.ancestors(a_node) if a_node in graph.nodes else set()
        for b_node, b_call in zip(trace.order[:i], trace.calls[:i], strict=True):
            if b_node in anc:
                out.append((b_call, a_call))
    return out


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
    position = {c: i for i, c in enumerate(after.calls)}
    for first, second in _ordered_pairs(original, before):
        if first in position and second in position and position[first] > position[second]:
            return f"effect order changed: {first.target} must come before {second.target}"
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
