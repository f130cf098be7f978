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
from aobc.passes.pipeline import PRESETS, PassPipeline
from aobc.testing.generate import random_workflow
from aobc.tv import check, validate
from aobc.tv.reduce import reduce
from aobc.tv.refine import compare
from aobc.tv.world import Call

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aob"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_the_presets_refine_every_example(path: Path) -> None:
    wf = load(path).workflow
    for preset in PRESETS.values():
        assert validate(wf, preset, seeds=4) is None


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


def _calls(wf: Workflow) -> tuple[tuple[Call, ...], tuple[str, ...]]:
    from aobc.backend.lower import lower
    from aobc.tv.harness import run_in_world

    t = run_in_world(lower(wf), {}, 0)
    assert t.status == "succeeded", t.error
    return t.calls, t.order


def test_http_calls_are_recorded_by_their_node() -> None:
    """HTTP calls must carry their node's path, or no order between them is ever checked."""
    wf = load_text(
        "workflow w {\n"
        ' p = http POST "https://x.test/a" { effect: effectful }\n'
        ' q = http POST "https://x.test/b" { effect: effectful }\n'
        " p -> q }"
    )
    calls, order = _calls(wf)
    assert order == ("p", "q")
    from aobc.tv.harness import Trace

    before = Trace("succeeded", None, None, calls, order)
    swapped = Trace("succeeded", None, None, calls[::-1], order[::-1])
    assert "order changed" in (compare(wf, before, swapped) or "")


def test_sub_workflow_calls_are_recorded_by_their_path() -> None:
    wf = load_text(
        "workflow w {\n"
        ' s = composite workflow inner { a = function "m:a" { effect: effectful }\n'
        '   b = function "m:b" { effect: effectful }\n'
        "   a -> b }\n"
        ' m = map [1, 2] { body: function "m:c" { effect: effectful } }\n'
        " s -> m }"
    )
    calls, order = _calls(wf)
    assert order == ("s/a", "s/b", "m[0]", "m[1]")
    from aobc.tv.harness import Trace

    before = Trace("succeeded", None, None, calls, order)
    # the two map items are unordered; everything else is ordered
    items_swapped = (*calls[:2], calls[3], calls[2])
    assert compare(wf, before, Trace("succeeded", None, None, items_swapped, order)) is None
    inner_swapped = (calls[1], calls[0], *calls[2:])
    assert "order changed" in (
        compare(wf, before, Trace("succeeded", None, None, inner_swapped, order)) or ""
    )
    late = calls[2:3] + calls[:2] + calls[3:]
    assert "order changed" in (
        compare(wf, before, Trace("succeeded", None, None, late, order)) or ""
    )


def test_equal_calls_are_interchangeable_but_still_ordered() -> None:
    """Two maps calling one function on the same items make equal calls; a workflow must
    refine itself, and an order between different calls must still be kept."""
    from aobc.tv.harness import Trace

    wf = load_text(
        "workflow w {\n"
        ' m1 = map [1] { body: function "m:f" { effect: effectful } }\n'
        ' g = function "m:g" { effect: effectful }\n'
        ' m2 = map [1] { body: function "m:f" { effect: effectful } }\n'
        " m1 -> g -> m2 }"
    )
    assert check(wf, wf, seeds=2) is None
    f, g = Call("function", "m:f", '{"item":1}'), Call("function", "m:g", "{}")
    before = Trace("succeeded", None, None, (f, g, f), ("m1[0]", "g", "m2[0]"))
    assert compare(wf, before, before) is None
    # one f before g and one after is all the workflow asks; two after g is wrong
    assert "order changed" in (
        compare(wf, before, Trace("succeeded", None, None, (g, f, f), ("g", "m1[0]", "m2[0]")))
        or ""
    )
    assert "order changed" in (
        compare(wf, before, Trace("succeeded", None, None, (f, f, g), ("m1[0]", "m2[0]", "g")))
        or ""
    )
