"""Laws every pass must keep, checked on generated workflows.

- patch law: apply(to_document(before), the pass's ops) == to_document(after);
- contract: a workflow that verifies still verifies after the pass;
- idempotence, for the passes that run once: running twice changes nothing more.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.serialize import to_document
from aobc.diagnostics import DiagnosticEngine
from aobc.frontend.jsonpatch import apply_ops
from aobc.passes.base import PassContext
from aobc.passes.registry import available_passes, load_pass_class
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from aobc.testing.generate import random_workflow

TRANSFORMS = sorted(
    name for name, target in available_passes().items() if load_pass_class(target).transforms
)
IDEMPOTENT = (
    "prune-dead",
    "parallelize",
    "cse",
    "licm",
    "cache-mark",
    "coalesce-http",
    "pushdown-predicates",
)


def _run(name: str, wf: object) -> tuple[object, PassContext]:
    ctx = PassContext(DiagnosticEngine())
    return load_pass_class(available_passes()[name])().run(wf, ctx), ctx  # type: ignore[arg-type]


@pytest.mark.parametrize("name", TRANSFORMS)
@given(st.randoms(use_true_random=False), st.integers(1, 40))
@settings(max_examples=120)
def test_patch_law_and_contract(name: str, rng: random.Random, n: int) -> None:
    before = random_workflow(rng, n)
    after, ctx = _run(name, before)
    assert apply_ops(to_document(before), ctx.rewriter.ops) == to_document(after)  # type: ignore[arg-type]
    assert not [d for d in verify(after, DEFAULT_POLICY) if d.is_error]  # type: ignore[arg-type]


@pytest.mark.parametrize("name", IDEMPOTENT)
@given(st.randoms(use_true_random=False), st.integers(1, 40))
@settings(max_examples=80)
def test_once_passes_are_idempotent(name: str, rng: random.Random, n: int) -> None:
    once, _ = _run(name, random_workflow(rng, n))
    twice, ctx = _run(name, once)
    assert twice == once
    assert not ctx.rewriter.ops


def test_there_are_transforming_passes_to_check() -> None:
    assert "prune-dead" in TRANSFORMS
