"""Translation validation: checking that an optimized workflow refines the original.

`validate(wf, pipeline)` optimizes `wf`, runs both versions in deterministic worlds on the
real engine, and returns a reduced counterexample when the optimization changed what the
workflow does. `aobc verify-opt` and the pass tests use it.
"""

from __future__ import annotations

from dataclasses import replace

from aobc.frontend.overlay import Overlay
from aobc.ir import Workflow
from aobc.passes.pipeline import PassPipeline
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.tv.reduce import reduce
from aobc.tv.refine import Counterexample, check, check_fusion


def optimize(wf: Workflow, pipeline: str, policy: Policy = DEFAULT_POLICY) -> Workflow:
    result = PassPipeline.parse(pipeline).run(Overlay(wf, policy), policy)
    if not result.ok:
        messages = "; ".join(d.message for d in result.diagnostics if d.is_error)
        raise ValueError(f"pipeline {pipeline} failed: {messages}")
    return result.workflow


def validate(
    wf: Workflow,
    pipeline: str,
    *,
    seeds: int = 5,
    shrink: bool = True,
    policy: Policy = DEFAULT_POLICY,
) -> Counterexample | None:
    """None when the pipeline's output refines `wf` on every tried input; else a
    counterexample whose workflow is reduced (when `shrink`)."""
    found = check(wf, optimize(wf, pipeline, policy), seeds=seeds)
    if found is None or not shrink:
        return found

    def still_fails(candidate: Workflow) -> bool:
        try:
            return check(candidate, optimize(candidate, pipeline, policy), seeds=seeds) is not None
        except ValueError:
            return False

    small = reduce(wf, still_fails)
    again = check(small, optimize(small, pipeline, policy), seeds=seeds)
    return replace(again if again is not None else found, workflow=small)


__all__ = ["Counterexample", "check", "check_fusion", "optimize", "validate"]
