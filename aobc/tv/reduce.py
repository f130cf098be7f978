"""Shrinking a counterexample to a small workflow that still shows the bug.

Greedy delta debugging: try removing each output, each node (with its edges) and each edge;
keep any removal after which the workflow still verifies and translation validation still
fails; repeat until nothing more can go. The result is usually a handful of nodes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator

from aobc.ir import Workflow
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY


def _candidates(wf: Workflow) -> Iterator[Workflow]:
    for i in range(len(wf.inputs)):
        yield dataclasses.replace(wf, inputs=wf.inputs[:i] + wf.inputs[i + 1 :])
    for i in range(len(wf.outputs)):
        yield dataclasses.replace(wf, outputs=wf.outputs[:i] + wf.outputs[i + 1 :])
    for n in reversed(wf.nodes):
        yield dataclasses.replace(
            wf,
            nodes=tuple(m for m in wf.nodes if m.id != n.id),
            edges=tuple(e for e in wf.edges if n.id not in (e.src, e.dst)),
        )
    for i in reversed(range(len(wf.edges))):
        yield dataclasses.replace(wf, edges=wf.edges[:i] + wf.edges[i + 1 :])


def _valid(wf: Workflow) -> bool:
    return bool(wf.nodes) and not any(d.is_error for d in verify(wf, DEFAULT_POLICY))


def reduce(wf: Workflow, still_fails: Callable[[Workflow], bool], max_rounds: int = 50) -> Workflow:
    """The smallest workflow reachable by removals for which `still_fails` holds."""
    for _ in range(max_rounds):
        for candidate in _candidates(wf):
            if _valid(candidate) and still_fails(candidate):
                wf = candidate
                break
        else:
            return wf
    return wf
