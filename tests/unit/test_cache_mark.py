"""`cache-mark`: keys are the inputs and non-pure outputs a pure node's value depends on;
agents and timers taint what reads them; sub-workflows are marked in their own scope; a
marked node is served from the memo in a fast-path run of the real engine."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aobc.backend.lower import lower
from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load, load_text
from aobc.frontend.overlay import Overlay
from aobc.ir import CompositeNode, MapNode, Workflow
from aobc.passes.base import PassContext, Remark
from aobc.passes.cache_mark import CacheMarkPass
from aobc.passes.pipeline import PassPipeline
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.testing.generate import random_workflow
from aobc.tv import check, validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def mark(src: str | Workflow) -> tuple[Workflow, list[Remark]]:
    wf = load_text(src, "t.aob") if isinstance(src, str) else src
    result = PassPipeline.parse("cache-mark").run(Overlay(wf))
    assert result.ok, [d.message for d in result.diagnostics]
    return result.workflow, result.remarks


def keys(wf: Workflow) -> dict[str, list[str] | None]:
    return {n.id: list(n.cache["key"]) if n.cache is not None else None for n in wf.nodes}


SEARCH = """
workflow w {
  input q: str
  search = http GET "https://api.example.com/search?q=${inputs.q}" { effect: idempotent }
  rank   = function "m:rank" { effect: pure, args: { hits: search.body, q: inputs.q } }
  top    = function "m:top" { effect: pure, args: { ranked: rank.value } }
  big    = condition top.n > 2
  triage = agent { model: "gpt-4o-mini", prompt: "Pick one of ${top.value}" }
  note   = function "m:note" { effect: pure, args: { pick: triage.choice } }
  again  = function "m:again" { effect: pure, args: { n: note.value } }
  const  = function "m:const" { effect: pure, args: { k: 1 } }
  search -> rank -> top -> triage -> note -> again
  top -> big
}
"""


def test_keys_name_the_inputs_and_non_pure_outputs_behind_each_pure_node() -> None:
    wf, _ = mark(SEARCH)
    assert keys(wf) == {
        "search": None,  # not pure: its output is data for the keys below
        "rank": ["inputs.q", "search"],
        "top": ["inputs.q", "search"],
        "big": None,  # a condition: the runtime memoizes only functions and requests
        "triage": None,
        "note": None,
        "again": None,
        "const": [],
    }


def test_remarks_describe_each_cacheable_subgraph_and_each_node_that_is_not() -> None:
    _, remarks = mark(SEARCH)
    analysis = [(r.nodes, dict(r.args)) for r in remarks if r.kind == "analysis"]
    assert analysis == [
        (("rank", "top", "big"), {"key": ["inputs.q", "search"], "marked": ["rank", "top"]}),
        (("const",), {"key": [], "marked": ["const"]}),
    ]
    assert [(r.nodes, r.message) for r in remarks if r.kind == "missed"] == [
        (("note",), 'not cached: it reads agent "triage", which is not deterministic'),
        (
            ("again",),
            'not cached: it reads agent "triage", which is not deterministic (through "note")',
        ),
    ]


def test_timers_and_nodes_running_agents_taint_their_readers() -> None:
    wf, remarks = mark("""
    workflow w {
      wait = timer 1m
      at = function "m:at" { effect: pure, args: { t: wait.fired_at } }
      asks = map inputs.xs { body: agent { model: "m", prompt: "${item}" } }
      sum  = function "m:sum" { effect: pure, args: { a: "${asks}" } }
      wait -> at
      asks -> sum
      input xs: list
    }
    """)
    assert keys(wf)["at"] is None and keys(wf)["sum"] is None
    assert [r.message for r in remarks if r.kind == "missed"] == [
        'not cached: it reads timer "wait", whose output is the time it fired',
        'not cached: it reads map "asks", which runs agent "body", which is not deterministic',
    ]


def test_functions_taking_their_predecessors_outputs_are_keyed_by_them() -> None:
    wf, _ = mark("""
    workflow w {
      a = http GET "https://api.example.com/a" { effect: idempotent }
      b = function "m:b" { effect: pure, args: { x: inputs.x } }
      both = join all
      f = function "m:f" { effect: pure }
      a -> both
      b -> both -> f
      input x: int
    }
    """)
    assert keys(wf)["f"] == ["a", "inputs.x"]


def test_sub_workflows_are_marked_in_their_own_scope() -> None:
    wf, remarks = mark(load(EXAMPLES / "document_pipeline.aob").workflow)
    docs = wf.node("docs")
    assert isinstance(docs, MapNode) and isinstance(docs.body, CompositeNode)
    assert keys(docs.body.workflow) == {
        "fetch": None,
        "ocr": ["fetch"],
        "clean": ["fetch"],
        "extract": ["fetch"],
    }
    assert keys(wf)["summarize"] == ["docs", "indexer"]
    assert (("docs/ocr", "docs/clean", "docs/extract"), [("key", ["fetch"])]) in [
        (r.nodes, [a for a in r.args if a[0] == "key"]) for r in remarks if r.kind == "analysis"
    ]


def test_a_plain_map_body_is_not_marked() -> None:
    wf, _ = mark("""
    workflow w {
      m = map inputs.xs { body: function "m:f" { effect: pure, args: { x: "${item}" } } }
      input xs: list
    }
    """)
    m = wf.nodes[0]
    assert isinstance(m, MapNode) and m.body.cache is None


def test_stale_keys_are_replaced_and_authors_marks_kept() -> None:
    wf, _ = mark("""
    workflow w {
      a = function "m:a" { effect: pure, args: { x: inputs.x }, cache: { key: ["gone"] } }
      t = agent { model: "m", prompt: "hi" }
      b = function "m:b" { effect: pure, args: { x: t.value }, cache: { key: ["t"] } }
      t -> b
      input x: int
    }
    """)
    assert keys(wf) == {"a": ["inputs.x"], "t": None, "b": ["t"]}


def test_running_twice_changes_nothing() -> None:
    wf, _ = mark(SEARCH)
    ctx = PassContext(DiagnosticEngine())
    assert CacheMarkPass().run(wf, ctx) == wf
    assert not ctx.rewriter.ops


# --- the mark pays at run time -----------------------------------------------------------

CALLS: dict[str, int] = {}


def counted(inputs: dict[str, Any]) -> dict[str, Any]:
    """A pure workflow function that counts its calls (referenced by module name below)."""
    CALLS["n"] = CALLS.get("n", 0) + 1
    return {"value": inputs["x"] * 10}


def _fast_runs(wf: Workflow, tmp: Path, runs: int) -> list[Any]:
    stores = EmbeddedStores.open(tmp)
    try:
        outputs = []
        for _ in range(runs):
            engine = Engine(
                Stores(stores.events, stores.cas, tmp),
                EngineOptions(mode="fast", poll_interval=0.01),
            )

            async def go(engine: Engine = engine) -> Any:
                try:
                    return await engine.start(lower(wf), {"x": 4})
                finally:
                    await engine.close()

            outputs.append(asyncio.run(go()).outputs)
        return outputs
    finally:
        stores.close()


def test_a_marked_node_is_served_from_the_memo_in_fast_runs(tmp_path: Path) -> None:
    assert sys.modules[__name__].counted is counted  # importable by the name used below
    src = f"""
    workflow w {{
      input x: int
      output o = a.value
      a = function "{__name__}:counted" {{ effect: pure, args: {{ x: inputs.x }} }}
    }}
    """
    plain = load_text(src, "t.aob")
    CALLS["n"] = 0
    assert _fast_runs(plain, tmp_path / "plain", 2) == [{"o": 40}, {"o": 40}]
    assert CALLS["n"] == 2  # fast runs memoize only marked nodes
    marked, _ = mark(plain)
    assert keys(marked) == {"a": ["inputs.x"]}
    CALLS["n"] = 0
    assert _fast_runs(marked, tmp_path / "marked", 3) == [{"o": 40}] * 3
    assert CALLS["n"] == 1


# --- differential testing -------------------------------------------------------------------


@given(st.randoms(use_true_random=False), st.integers(1, 25))
@settings(max_examples=30, deadline=None)
def test_marking_preserves_behaviour(rng: random.Random, n: int) -> None:
    wf = random_workflow(rng, n)
    # The validator pairs repeated identical effectful calls by their last position, so a
    # workflow making one call twice can fail against itself; such inputs say nothing.
    assume(check(wf, wf, seeds=3) is None)
    assert validate(wf, "verify,cache-mark,verify", seeds=3, shrink=False) is None


def test_most_generated_workflows_get_marks() -> None:
    fired = 0
    for seed in range(30):
        ctx = PassContext(DiagnosticEngine())
        CacheMarkPass().run(random_workflow(random.Random(seed), 10), ctx)
        fired += bool(ctx.rewriter.ops)
    assert fired >= 20
