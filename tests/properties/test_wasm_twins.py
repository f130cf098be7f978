"""The packaged WebAssembly plugins against their native twins: the same patch, the same remarks.

`wasm-prune-dead` and `wasm-cse` (wasm_passes/src) must do exactly what `prune-dead` and
`cse` do, operation for operation and remark for remark, on every example workflow, on
hand-written workflows that reach every rewrite, and on generated ones. Remarks differ only
in the pass that made them, which the host names.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load, load_text
from aobc.ir import Workflow
from aobc.passes.base import Pass, PassContext
from aobc.passes.cse import CsePass
from aobc.passes.prune_dead import PruneDeadPass
from aobc.passes.registry import available_passes, load_pass_class
from aobc.testing.generate import random_workflow
from aobc.tv import optimize

_DSL = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aob"))
# Every example, in DSL and in its JSON form (other .json files there are run inputs).
EXAMPLES = _DSL + [p.with_suffix(".json") for p in _DSL if p.with_suffix(".json").is_file()]

# Reads renamed in templates (with non-ASCII text before them), guards, outputs and cache
# keys; a node rewritten by one merge that is merged itself by the next (its location is
# then the rewriter's); guards that block; policy fields; approvals on either side.
CSE_CASES = {
    "rewrites": """
workflow w {
  input id: str
  output a = user.body
  output b = again.body.name
  user    = http GET "https://api.example.com/users/${inputs.id}" { effect: idempotent }
  again   = http GET "https://api.example.com/users/${inputs.id}" { effect: idempotent }
  again2  = http GET "https://api.example.com/users/${inputs.id}" { effect: idempotent }
  p1 = function "m:profile" { effect: pure, args: { u: "é ${again.body} ✓ ${again.x}", n: again.n } }
  p2 = function "m:profile" { effect: pure, args: { u: "é ${again2.body} ✓ ${again2.x}", n: again2.n } }
  memo = function "m:memo" { effect: pure, args: { v: again.v }, cache: { key: ["again", "inputs.id", "user"] } }
  sink = function "m:sink" { effect: effectful, args: { a: p1.value, b: p2.value, c: memo.value } }
  again -> p1
  again2 -> p2
  again -> memo
  user -> memo
  p1 -> sink
  p2 -> sink
  memo -> sink
  again -[when again.status == 200]-> sink
}
""",
    "guards_policy_gates": """
workflow w {
  output r = s.value
  a = function "m:a" { effect: pure, args: { x: 1 } }
  b = function "m:a" { effect: pure, args: { x: 1 } }
  c = function "m:a" { effect: pure, args: { x: 1 }, timeout: 5s, retries: 2 }
  ok = approval { approvers: ["ops"] }
  d = function "m:d" { effect: pure, args: { x: a.value } }
  e = function "m:d" { effect: pure, args: { x: a.value } }
  t = function "m:t" { effect: idempotent, args: { x: a.value } }
  u = function "m:t" { effect: idempotent, args: { x: a.value } }
  s = function "m:s" {
    effect: effectful,
    args: { p: d.value, q: e.value, v: t.value, w: u.value, z: c.value, y: b.value }
  }
  a -> d
  ok -[approved]-> e
  a -> e
  a -> t
  a -> u
  t -[when t.ok]-> s
  u -[when u.ok == true]-> s
  d -> s
  e -> s
  b -> s
  c -> s
}
""",
    "else_branches": """
workflow w {
  output r = j
  c1 = condition inputs.n > 1
  c2 = condition inputs.n > 1
  x = function "m:x" { effect: effectful }
  y = function "m:y" { effect: effectful }
  j = join any
  c1 -[true]-> x
  c2 -[else]-> y
  x -> j
  y -> j
}
""",
}


def _run(p: Pass, wf: Workflow) -> tuple[list[Any], list[Any], Workflow]:
    ctx = PassContext(DiagnosticEngine())
    after = p.run(wf, ctx)
    assert not ctx.diagnostics.diagnostics, [d.message for d in ctx.diagnostics.diagnostics]
    remarks = [{k: v for k, v in r.to_json().items() if k != "pass"} for r in ctx.remarks]
    return [op.to_json() for op in ctx.rewriter.ops], remarks, after


def _wasm(name: str, **options: object) -> Pass:
    return load_pass_class(available_passes()[name])(**options)


def assert_twins(native: Pass, wasm: Pass, wf: Workflow) -> None:
    ops, remarks, after = _run(native, wf)
    w_ops, w_remarks, w_after = _run(wasm, wf)
    assert w_ops == ops
    assert w_remarks == remarks
    assert w_after == after


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize("aggressive", [False, True])
def test_prune_dead_twins_on_examples(path: Path, aggressive: bool) -> None:
    wf = load(path).workflow
    assert_twins(
        PruneDeadPass(aggressive=aggressive), _wasm("wasm-prune-dead", aggressive=aggressive), wf
    )


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_cse_twins_on_examples(path: Path) -> None:
    assert_twins(CsePass(), _wasm("wasm-cse"), load(path).workflow)


@pytest.mark.parametrize("name", sorted(CSE_CASES))
def test_cse_twins_on_every_rewrite(name: str) -> None:
    wf = load_text(CSE_CASES[name], f"{name}.aob")
    _, remarks, _ = _run(CsePass(), wf)
    assert remarks  # the case exercises the pass
    assert_twins(CsePass(), _wasm("wasm-cse"), wf)


def test_the_rewrite_case_reaches_what_it_is_for() -> None:
    ops, remarks, _ = _run(CsePass(), load_text(CSE_CASES["rewrites"], "rewrites.aob"))
    paths = [op["path"] for op in ops]
    assert any(p.endswith("/when") for p in paths)
    assert any("/cache/" in p for p in paths)
    assert any(p.startswith("/outputs/") for p in paths)
    assert any("/args/u" in p for p in paths)
    assert any(r["loc"] == "<rewrite>#" for r in remarks)  # p2 was rewritten, then merged


@given(st.randoms(use_true_random=False), st.integers(1, 60), st.booleans())
@settings(max_examples=150)
def test_prune_dead_twins_on_generated_workflows(
    rng: random.Random, n: int, aggressive: bool
) -> None:
    wf = random_workflow(rng, n)
    assert_twins(
        PruneDeadPass(aggressive=aggressive), _wasm("wasm-prune-dead", aggressive=aggressive), wf
    )


@given(st.randoms(use_true_random=False), st.integers(1, 60), st.booleans())
@settings(max_examples=150)
def test_cse_twins_on_generated_workflows(rng: random.Random, n: int, marked: bool) -> None:
    wf = random_workflow(rng, n)
    if marked:  # cache keys naming nodes, for the merge to rename
        wf = optimize(wf, "cache-mark")
    assert_twins(CsePass(), _wasm("wasm-cse"), wf)
