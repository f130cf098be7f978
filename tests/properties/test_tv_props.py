"""The differential property: every native pass, and every preset pipeline, refines the
workflow it rewrites, on generated workflows (translation validation on the real engine).

The per-pass tests (tests/unit/test_<pass>.py) add generators shaped for their own pass; this
one runs every pass on the shared generator, so a pass added to the registry is covered too.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.passes.pipeline import PRESETS
from aobc.passes.registry import available_passes
from aobc.testing.generate import random_workflow
from aobc.tv import validate

#: Native rewriting passes (the `wasm-*` twins are held to their native pass's patch instead,
#: in test_wasm_twins.py; `verify` rewrites nothing).
NATIVE = sorted(n for n in available_passes() if n != "verify" and not n.startswith("wasm"))
PIPELINES = [f"verify,{name},verify" for name in NATIVE] + [PRESETS[p] for p in sorted(PRESETS)]


def test_every_registered_native_pass_is_checked() -> None:
    assert {"coalesce-http", "pushdown-predicates", "cse", "licm"} <= set(NATIVE)
    assert {"prune-dead", "parallelize", "cache-mark"} <= set(NATIVE)


@pytest.mark.parametrize("pipeline", PIPELINES)
@given(st.randoms(use_true_random=False), st.integers(1, 30))
@settings(max_examples=20)
def test_the_pipeline_refines_generated_workflows(
    pipeline: str, rng: random.Random, n: int
) -> None:
    found = validate(random_workflow(rng, n), pipeline, seeds=2)
    assert found is None, found
