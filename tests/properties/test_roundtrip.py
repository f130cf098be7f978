"""Random valid workflows round-trip JSON <-> DSL <-> IR, and compile deterministically."""

from __future__ import annotations

import json
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.aobir import decode, encode
from aobc.backend.lower import lower
from aobc.backend.serialize import to_document, workflow_bytes
from aobc.frontend import load_text
from aobc.frontend.printer import to_dsl
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from aobc.testing.generate import random_workflow

workflows = st.builds(
    lambda rnd, n: random_workflow(rnd, n), st.randoms(use_true_random=False), st.integers(1, 40)
)


@given(workflows)
@settings(max_examples=150)
def test_generated_workflows_verify_clean(wf: object) -> None:
    errors = [d for d in verify(wf, DEFAULT_POLICY) if d.is_error]  # type: ignore[arg-type]
    assert not errors, [d.message for d in errors]


@given(workflows)
@settings(max_examples=150)
def test_json_dsl_ir_round_trip(wf: object) -> None:
    text = json.dumps(to_document(wf))  # type: ignore[arg-type]
    from_json = load_text(text, "w.json")
    assert from_json == wf
    dsl = to_dsl(from_json)
    from_dsl = load_text(dsl, "w.aob")
    assert from_dsl == wf
    # DSL -> JSON -> DSL is the identity on canonical text.
    assert to_dsl(load_text(json.dumps(to_document(from_dsl)), "again.json")) == dsl
    assert workflow_bytes(from_dsl) == workflow_bytes(from_json)


@given(workflows)
@settings(max_examples=100)
def test_lowering_is_deterministic_and_survives_encoding(wf: object) -> None:
    a = encode(lower(wf))  # type: ignore[arg-type]
    b = encode(lower(load_text(to_dsl(wf), "w.aob")))  # type: ignore[arg-type]
    assert a == b
    assert decode(a) == lower(wf)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_workflow() -> None:
    assert random_workflow(random.Random(7), 50) == random_workflow(random.Random(7), 50)
