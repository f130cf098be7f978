"""Translation validation: the harness, the refinement rules and counterexample reduction."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from aobc.frontend import load, load_text
from aobc.frontend.overlay import Overlay
from aobc.ir import Effect, Workflow
from aobc.passes.base import Pass, PassContext
from aobc.passes.pipeline import PassPipeline
from aobc.testing.generate import random_workflow
from aobc.tv import check, validate
from aobc.tv.reduce import reduce
from aobc.tv.refine import compare
from aobc.tv.world import Call

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aob"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_presets_refine_every_example(path: Path) -> None:
    wf = load(path).workflow
    for pipeline in ("verify,prune-dead,verify", "verify,fixpoint(prune-dead),verify"):
        assert validate(wf, pipeline, seeds=4) is None


@dataclass(frozen=True, kw_only=True)
class DropAnEffect(Pass):
    """A wrong pass: removes the last effectful function."""

    name: ClassVar[str] = "drop-an-effect"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        doomed = [
            n for n in wf.nodes if n.effect is Effect.EFFECTFUL and n.KIND.value == "function"
        ]
        return ctx.rewriter.remove_node(wf, doomed[-1].id) if doomed else wf


def _opt(wf: Workflow) -> Workflow:
    return (
        PassPipeline.parse("drop-an-effect", {"drop-an-effect": DropAnEffect})
        .run(Overlay(wf))
        .workflow
    )


def test_a_wrong_pass_is_caught_and_the_counterexample_reduced() -> None:
    wf = random_workflow(random.Random(4), 20)
    found = check(wf, _opt(wf), seeds=3)
    assert found is not None
    assert "effectful calls differ" in found.reason

    def still(c: Workflow) -> bool:
        return check(c, _opt(c), seeds=3) is not None

    small = reduce(wf, still)
    assert len(small.nodes) == 1
    assert small.nodes[0].effect is Effect.EFFECTFUL


def test_refinement_rules() -> None:
    from aobc.tv.harness import Trace

    wf = load_text(
        'workflow w { a = function "m:a" { effect: effectful }\n b = function "m:b" { effect: effectful }\n a -> b }'
    )
    a, b = Call("function", "m:a", "{}"), Call("function", "m:b", "{}")
    ok = Trace("succeeded", {"o": 1}, None, (a, b), ("a", "b"))
    assert compare(wf, ok, ok) is None
    assert "outputs differ" in (
        compare(wf, ok, Trace("succeeded", {"o": 2}, None, (a, b), ("a", "b"))) or ""
    )
    assert "order changed" in (
        compare(wf, ok, Trace("succeeded", {"o": 1}, None, (b, a), ("b", "a"))) or ""
    )
    assert "calls differ" in (
        compare(wf, ok, Trace("succeeded", {"o": 1}, None, (a,), ("a",))) or ""
    )
    failed = Trace("failed", None, "boom", (a,), ("a",))
    assert compare(wf, failed, ok) is None  # a failing original run constrains nothing
    assert "failed" in (compare(wf, ok, failed) or "")
