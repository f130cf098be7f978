"""`licm`: item-independent pure work leaves a map's composite body, placed so that it runs
exactly when the map runs; every rule that keeps a node in the body says why; hoisted
workflows behave as the originals (translation validation on generated maps)."""

from __future__ import annotations

import asyncio
import dataclasses
import random
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aobc.backend.lower import lower
from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.frontend.printer import to_dsl
from aobc.ir import (
    CompositeNode,
    Edge,
    Effect,
    FrozenDict,
    FunctionNode,
    HttpNode,
    InputDecl,
    MapNode,
    Node,
    OutputDecl,
    ValueType,
    Workflow,
)
from aobc.passes.base import PassContext, Remark
from aobc.passes.licm import LicmPass, arg_expr
from aobc.passes.pipeline import PassPipeline
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.testing.generate import random_workflow
from aobc.tv import check, validate


def licm(src: str) -> tuple[Workflow, list[Remark]]:
    result = PassPipeline.parse("licm").run(Overlay(load_text(src, "t.aob")))
    assert result.ok, [d.message for d in result.diagnostics]
    return result.workflow, result.remarks


def body_ids(wf: Workflow, map_id: str = "m") -> list[str]:
    m = wf.node(map_id)
    assert isinstance(m, MapNode) and isinstance(m.body, CompositeNode)
    return [n.id for n in m.body.workflow.nodes]


def missed(remarks: list[Remark]) -> dict[str, str]:
    return {r.nodes[1]: r.message for r in remarks if r.kind == "missed"}


def body(nodes: str, *, args: str = 'it: "${item}", cfg: inputs.cfg', before: str = "") -> str:
    return f"""
    workflow w {{
      input cfg: dict
      input xs: list
      output r = m
      {before}
      m = map inputs.xs {{
        body: composite workflow each {{
          input it: any
          input cfg: any
          output o = last.value
          {nodes}
        }} {{ args: {{ {args} }} }}
      }}
    }}
    """


def test_item_independent_pure_work_is_hoisted_and_passed_back_in() -> None:
    wf, remarks = licm(
        body("""
          rules = function "m:rules" { effect: pure, args: { cfg: inputs.cfg, k: 3 } }
          deep  = function "m:deep" { effect: pure, args: { r: rules.value } }
          last  = function "m:last" { effect: pure, args: { x: inputs.it, r: rules.value, d: deep.n } }
          rules -> deep -> last
        """)
    )
    assert body_ids(wf) == ["last"]
    m = wf.node("m")
    assert isinstance(m, MapNode) and isinstance(m.body, CompositeNode)
    assert m.body.args == {
        "it": "${item}",
        "cfg": "${inputs.cfg}",
        "rules": "${m_rules}",
        "deep": "${m_deep}",
    }
    sub = m.body.workflow
    assert [i.name for i in sub.inputs] == ["cfg", "deep", "it", "rules"]
    assert sub.nodes[0].args == {  # type: ignore[attr-defined]
        "x": "${inputs.it}",
        "r": "${inputs.rules.value}",
        "d": "${inputs.deep.n}",
    }
    rules, deep = wf.node("m_rules"), wf.node("m_deep")
    assert rules is not None and deep is not None
    assert rules.args == {"cfg": "${inputs.cfg}", "k": 3}  # type: ignore[attr-defined]
    assert deep.args == {"r": "${m_rules.value}"}  # type: ignore[attr-defined]
    assert [(e.src, e.dst) for e in wf.edges] == [("m_rules", "m_deep"), ("m_deep", "m")]
    assert [r.nodes for r in remarks if r.kind == "passed"] == [("m", "m_rules"), ("m", "m_deep")]
    assert not verify(wf, DEFAULT_POLICY)


def test_item_dependent_work_stays_silently() -> None:
    wf, remarks = licm(
        body("""
          a    = function "m:a" { effect: pure, args: { x: inputs.it } }
          last = function "m:last" { effect: pure, args: { a: a.value } }
          a -> last
        """)
    )
    assert body_ids(wf) == ["a", "last"]
    assert not remarks


def test_an_argument_computed_from_the_item_makes_its_readers_item_dependent() -> None:
    wf, remarks = licm(
        body(
            'last = function "m:last" { effect: pure, args: { c: inputs.cfg } }',
            args='it: "${item}", cfg: { n: "${item}" }',
        )
    )
    assert body_ids(wf) == ["last"]
    assert not remarks


@pytest.mark.parametrize(
    ("node", "why"),
    [
        ('function "m:f" { effect: effectful, args: { c: inputs.cfg } }', "node is effectful"),
        (
            'http GET "https://api.example.com/c" { effect: idempotent }',
            "node is idempotent, and hoisting would change how often it runs",
        ),
        (
            'agent { model: "m", prompt: "${inputs.cfg}", effect: pure }',
            "node is an agent, whose answer is sampled, not computed",
        ),
        ("timer 1s", "node is a timer, which waits once per item"),
        (
            'function "m:f" { effect: pure }',
            "it takes its predecessors' outputs, which differ outside the body",
        ),
    ],
)
def test_nodes_that_may_not_run_once_for_all_items_stay(node: str, why: str) -> None:
    wf, remarks = licm(
        body(f"""
          x = {node}
          last = function "m:last" {{ effect: pure, args: {{ i: inputs.it }} }}
          x -> last
        """)
    )
    assert body_ids(wf) == ["x", "last"]
    assert missed(remarks) == {"x": f"not hoisted: {why}"}


def test_work_after_a_node_that_stays_stays_too() -> None:
    wf, remarks = licm(
        body("""
          fetch = http GET "https://api.example.com/c" { effect: idempotent }
          parse = function "m:parse" { effect: pure, args: { b: fetch.body } }
          last  = function "m:last" { effect: pure, args: { i: inputs.it, p: parse.value } }
          fetch -> parse -> last
        """)
    )
    assert body_ids(wf) == ["fetch", "parse", "last"]
    assert missed(remarks)["parse"] == 'not hoisted: it runs after "fetch", which stays in the body'


def test_work_behind_an_approval_in_the_body_is_never_hoisted() -> None:
    wf, remarks = licm(
        body("""
          ok   = approval { approvers: ["ops"] }
          prep = function "m:prep" { effect: pure, args: { c: inputs.cfg } }
          last = function "m:last" { effect: pure, args: { i: inputs.it, p: prep.value } }
          ok -[approved]-> prep -> last
        """)
    )
    assert body_ids(wf) == ["ok", "prep", "last"]
    assert missed(remarks)["prep"] == 'not hoisted: it runs after "ok", which stays in the body'


def test_a_node_deciding_a_branch_of_the_body_stays() -> None:
    wf, remarks = licm(
        body("""
          big  = condition inputs.cfg.n > 2
          last = function "m:last" { effect: pure, args: { i: inputs.it } }
          big -[true]-> last
        """)
    )
    assert body_ids(wf) == ["big", "last"]
    assert "is conditional" in missed(remarks)["big"]


def test_a_node_whose_successor_takes_its_predecessors_outputs_stays() -> None:
    wf, remarks = licm(
        body("""
          a    = function "m:a" { effect: pure, args: { c: inputs.cfg } }
          b    = function "m:b" { effect: pure, args: { i: inputs.it } }
          last = join all
          a -> last
          b -> last
        """)
    )
    assert body_ids(wf) == ["a", "b", "last"]
    assert (
        missed(remarks)["a"] == 'not hoisted: its successor "last" takes its predecessors\' outputs'
    )


def test_inputs_without_an_expression_keep_their_readers_in_the_body() -> None:
    wf, remarks = licm(
        body(
            'last = function "m:last" { effect: pure, args: { c: inputs.cfg } }',
            args='it: "${item}", cfg: "id-${inputs.cfg.id}"',
        )
    )
    assert body_ids(wf) == ["last"]
    assert "passed as text with holes" in missed(remarks)["last"]


def test_the_hoisted_node_runs_exactly_when_the_map_runs() -> None:
    # It gets a copy of each edge into the map, so it is gated by the same approval.
    wf, _ = licm(
        body(
            """
          rules = function "m:rules" { effect: pure, args: { cfg: inputs.cfg } }
          last  = function "m:last" { effect: pure, args: { i: inputs.it, r: rules.value } }
          rules -> last
        """,
            before="""
          ok = approval { approvers: ["ops"] }
          c  = condition inputs.cfg.go
          ok -[approved]-> m
          c -[true when c]-> m
        """,
        )
    )
    into = {(e.src, e.label, e.when) for e in wf.edges if e.dst == "m_rules"}
    assert into == {("ok", "approved", None), ("c", "true", "c")}
    assert ("m_rules", "m") in {(e.src, e.dst) for e in wf.edges}


def test_hoisted_ids_do_not_clash() -> None:
    wf, _ = licm(
        body(
            """
          rules = function "m:rules" { effect: pure, args: { cfg: inputs.cfg } }
          last  = function "m:last" { effect: pure, args: { i: inputs.it, r: rules.value } }
          rules -> last
        """,
            before='m_rules = function "m:other" { effect: pure, args: { x: 1 } }',
        )
    )
    assert [n.id for n in wf.nodes] == ["m_rules", "m", "m_rules_2"]


def test_a_map_with_a_plain_body_is_left_alone() -> None:
    src = """
    workflow w {
      input xs: list
      m = map inputs.xs { body: function "m:f" { effect: pure, args: { x: "${item}", k: 1 } } }
    }
    """
    wf, remarks = licm(src)
    assert wf == load_text(src, "t.aob")
    assert not remarks


def test_running_twice_changes_nothing() -> None:
    wf, _ = licm(
        body("""
          rules = function "m:rules" { effect: pure, args: { cfg: inputs.cfg } }
          fetch = http GET "https://api.example.com/c" { effect: idempotent }
          last  = function "m:last" { effect: pure, args: { i: inputs.it, r: rules.value, f: fetch.body } }
          rules -> last
          fetch -> last
        """)
    )
    assert body_ids(wf) == ["fetch", "last"]
    ctx = PassContext(DiagnosticEngine())
    assert LicmPass().run(wf, ctx) == wf
    assert not ctx.rewriter.ops


def test_argument_expressions() -> None:
    assert arg_expr("${a.b}") is not None
    assert arg_expr({"x": ["${a}", 1, "plain"]}) is not None
    assert arg_expr("a-${b}") is None


# --- differential testing -------------------------------------------------------------------


def _sub(rng: random.Random) -> Workflow:
    """A body: a few functions reading the item, the shared config or each other, with
    some idempotent requests and effectful calls among them."""
    nodes: list[Node] = []
    edges: list[Edge] = []
    for i in range(rng.randint(1, 6)):
        reads: dict[str, str] = {}
        parents = rng.sample(range(i), min(i, rng.randint(0, 2)))
        for k, p in enumerate(parents):
            reads[f"p{k}"] = f"${{s{p}.value}}"
            edges.append(Edge(src=f"s{p}", dst=f"s{i}"))
        for name in ("it", "cfg"):
            if rng.random() < (0.3 if name == "it" else 0.6):
                reads[name] = f"${{inputs.{name}}}"
        effect = rng.choice(
            (Effect.PURE, Effect.PURE, Effect.PURE, Effect.IDEMPOTENT, Effect.EFFECTFUL)
        )
        node: Node
        if effect is Effect.IDEMPOTENT and rng.random() < 0.5:
            node = HttpNode(
                id=f"s{i}", effect=effect, method="GET", url="https://api.example.com/c"
            )
        else:
            node = FunctionNode(
                id=f"s{i}",
                effect=effect,
                fn=f"pkg.body:f{rng.randint(0, 3)}",
                args=FrozenDict({"k": i, **reads}),
            )
        nodes.append(node)
    return Workflow(
        name="each",
        nodes=tuple(nodes),
        edges=tuple(edges),
        inputs=(InputDecl(name="cfg"), InputDecl(name="it")),
        outputs=tuple(OutputDecl(name=f"o{i}", expr=f"s{i}.value") for i in range(len(nodes))),
    )


def with_maps(rng: random.Random, n: int) -> Workflow:
    """A generated workflow with maps whose composite bodies hold item-independent work."""
    wf = random_workflow(rng, n)
    nodes, edges, outputs = list(wf.nodes), list(wf.edges), list(wf.outputs)
    data = [x.id for x in wf.nodes if isinstance(x, FunctionNode | HttpNode)]
    for j in range(rng.randint(1, 2)):
        sub = _sub(rng)
        parent = rng.choice(data) if data and rng.random() < 0.7 else None
        cfg: Any = rng.choice(
            ("${inputs.x}", {"n": 3}, f"${{{parent}}}" if parent else "${inputs.n}")
        )
        if rng.random() < 0.15:
            cfg = {"n": "${item}"}  # the shared config is computed per item: nothing moves
        effect = max((x.effect for x in sub.nodes), key=list(Effect).index)
        mid = f"m{j}"
        body = CompositeNode(
            id="body", effect=effect, workflow=sub, args=FrozenDict({"it": "${item}", "cfg": cfg})
        )
        over = f"{parent}.items" if parent and rng.random() < 0.5 else "inputs.xs"
        nodes.append(MapNode(id=mid, effect=effect, over=over, body=body))
        if parent:
            edges.append(Edge(src=parent, dst=mid))
        outputs.append(OutputDecl(name=f"map{j}", expr=mid))
    return dataclasses.replace(
        wf,
        nodes=tuple(nodes),
        edges=tuple(edges),
        outputs=tuple(sorted(outputs, key=lambda o: o.name)),
        inputs=(*wf.inputs[:2], InputDecl(name="xs", type=ValueType.LIST)),
    )


def consistent(wf: Workflow) -> bool:
    """Whether the validator accepts the workflow against itself. It pairs repeated
    identical effectful calls (two maps calling one function with the same items) by their
    last position and can then report a reordering that is not there: such inputs say
    nothing about the pass."""
    return check(wf, wf, seeds=3) is None


@given(st.randoms(use_true_random=False), st.integers(1, 12))
@settings(max_examples=40, deadline=None)
def test_hoisting_preserves_behaviour(rng: random.Random, n: int) -> None:
    wf = with_maps(rng, n)
    assert not [d for d in verify(wf, DEFAULT_POLICY) if d.is_error]
    assume(consistent(wf))
    assert validate(wf, "verify,licm,verify", seeds=3) is None


def test_the_generated_maps_mostly_lose_work() -> None:
    # So that the property above is not vacuous: licm hoists something from most of them.
    fired = 0
    for seed in range(40):
        ctx = PassContext(DiagnosticEngine())
        LicmPass().run(with_maps(random.Random(seed), 8), ctx)
        fired += any(r.kind == "passed" for r in ctx.remarks)
    assert fired >= 24


def test_a_body_can_lose_all_its_nodes_and_hoisted_nodes_lose_their_cache_marks() -> None:
    wf, _ = licm(
        body(
            """
          last = function "m:last" { effect: pure, args: { c: inputs.cfg }, cache: { key: ["inputs.cfg"] } }
        """
        )
    )
    assert body_ids(wf) == []
    hoisted = wf.node("m_last")
    assert hoisted is not None and hoisted.cache is None
    assert load_text(to_dsl(wf), "again.aob") == wf


CALLS: dict[str, int] = {}


def counted(inputs: dict[str, Any]) -> dict[str, Any]:
    """A pure workflow function that counts its calls (referenced by module name below)."""
    CALLS["n"] = CALLS.get("n", 0) + 1
    return {"value": 1}


def test_hoisted_work_runs_once_even_when_the_list_is_empty(tmp_path: Path) -> None:
    # The documented speculation: pure work that ran once per item now runs once, even for
    # no items. Only a failure of that work could tell the difference.
    assert sys.modules[__name__].counted is counted
    src = body(
        f"""
          rules = function "{__name__}:counted" {{ effect: pure, args: {{ c: inputs.cfg }} }}
          last  = function "m:last" {{ effect: pure, args: {{ i: inputs.it, r: rules.value }} }}
          rules -> last
        """
    )
    original = load_text(src, "t.aob")
    hoisted, _ = licm(src)
    calls = []
    for i, wf in enumerate((original, hoisted)):
        CALLS["n"] = 0
        stores = EmbeddedStores.open(tmp_path / str(i))
        engine = Engine(Stores(stores.events, stores.cas, tmp_path), EngineOptions(mode="fast"))

        async def go(engine: Engine = engine, wf: Workflow = wf) -> Any:
            try:
                return await engine.start(lower(wf), {"cfg": {}, "xs": []})
            finally:
                await engine.close()

        try:
            assert asyncio.run(go()).outputs == {"r": []}
        finally:
            stores.close()
        calls.append(CALLS["n"])
    assert calls == [0, 1]
