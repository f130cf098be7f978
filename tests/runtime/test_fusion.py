"""Fusion: pure inline regions run as one generated function, with the same results.

The regions the backend finds (`aobc.backend.fuse`), the core's `complete_many` on both
cores, and runs with and without fusion: same events, same outputs, same failures, in
fast and full fidelity; replays and live patches fall back to node-by-node where they must.
Translation validation covers fusion as it covers every rewrite (`check_fusion`).
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from harness import Harness
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.fuse import Candidate, regions
from aobc.backend.lower import lower
from aobc.frontend.overlay import Overlay
from aobc.ir import (
    ConditionNode,
    Edge,
    Effect,
    FunctionNode,
    JoinMode,
    JoinNode,
    OutputDecl,
    RetryPolicy,
    Workflow,
)
from aobc.passes.pipeline import PassPipeline
from aobc.runtime import interp_py
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.execir import ExecIR
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.tv import check_fusion

STEP = Candidate("wf_functions:step", 1)


def _wf(
    n: int, edges: list[tuple[int, int]], *, fns: dict[int, str] | None = None, **kw: Any
) -> Workflow:
    fns = fns or {}
    nodes = tuple(
        FunctionNode(
            id=f"n{i}",
            effect=Effect.EFFECTFUL if fns.get(i, "").endswith(":record") else Effect.PURE,
            fn=fns.get(i, "wf_functions:step"),
        )
        for i in range(n)
    )
    return Workflow(
        name="w",
        nodes=nodes,
        edges=tuple(Edge(src=f"n{a}", dst=f"n{b}") for a, b in edges),
        **kw,
    )


def _regions(ir: ExecIR, pure: set[int] | None = None) -> list[list[int]]:
    def candidate(i: int) -> Candidate | None:
        return STEP if pure is None or i in pure else None

    return [list(r.members) for r in regions(ir, candidate)]


# --- finding regions -------------------------------------------------------------------------


def test_a_chain_is_one_region_in_order() -> None:
    ir = lower(_wf(5, [(i, i + 1) for i in range(4)]))
    (region,) = regions(ir, lambda i: STEP)
    assert list(region.members) == [0, 1, 2, 3, 4]
    assert region.roots == (0,)
    assert region.inputs == ()
    assert "v1 = f0({'n0': v0})" in region.source


def test_a_region_does_not_swallow_a_path_that_leaves_and_comes_back() -> None:
    # 0 -> 1 (not fusable) -> 3 and 0 -> 2 -> 3: {0, 2, 3} is connected but not convex, so
    # it splits into single-entry regions; 3 must wait for 1, which waits for 0.
    ir = lower(_wf(4, [(0, 1), (1, 3), (0, 2), (2, 3)]))
    found = _regions(ir, pure={0, 2, 3})
    assert found == [[0, 2]]  # 3 has an outside predecessor: a region of its own, size 1
    for members in found:
        assert not ({0, 3} <= set(members))


def test_labelled_or_guarded_edges_end_a_region() -> None:
    wf = Workflow(
        name="w",
        nodes=(
            FunctionNode(id="a", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="b", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="c", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="d", effect=Effect.PURE, fn="wf_functions:step"),
        ),
        edges=(
            Edge(src="a", dst="b"),
            Edge(src="b", dst="c", when="b > 1"),
            Edge(src="c", dst="d"),
        ),
    )
    assert _regions(lower(wf)) == [[2, 3]]  # a -> b may be fused only if b's edge is plain


def test_sizes_and_inputs() -> None:
    ir = lower(_wf(3, [(0, 1), (1, 2)]))
    assert _regions(ir, pure={1, 2}) == [[1, 2]]
    (region,) = regions(ir, lambda i: STEP if i else None)
    assert region.inputs == (0,) and "v0 = V[0]" in region.source
    assert _regions(ir, pure={0}) == []  # one node: nothing to gain


# --- the core ----------------------------------------------------------------------------------


def _cores() -> list[Any]:
    import importlib

    return [interp_py, importlib.import_module("aobc.runtime._interp")]


@settings(max_examples=60)
@given(seed=st.integers(0, 10_000), size=st.integers(2, 30))
def test_complete_many_is_complete_in_order_on_both_cores(seed: int, size: int) -> None:
    rng = random.Random(seed)
    edges = sorted(
        {(a, b) for b in range(1, size) for a in rng.sample(range(b), min(b, rng.randint(0, 2)))}
    )
    ir = lower(_wf(size, edges))
    members = sorted(rng.sample(range(size), rng.randint(1, size)))
    members = [m for m in ir.topo if m in members]
    for core in _cores():
        st, _ = core.start(ir)
        ref, _ = interp_py.start(ir)
        got = core.complete_many(st, members)
        expected: list[int] = []
        for m in members:
            new, _ = interp_py.complete(ref, m, None)
            expected.extend(new)
        assert got == [j for j in expected if ref.status[j] == interp_py.READY]
        assert list(st.status) == list(ref.status)
        assert list(st.arrived) == list(ref.arrived)


# --- runs --------------------------------------------------------------------------------------


def _mixed() -> Workflow:
    """Fusable chains around an effect, a condition with labelled edges and a join."""
    return Workflow(
        name="mixed",
        nodes=(
            FunctionNode(id="a", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="b", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="c", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="rec", effect=Effect.EFFECTFUL, fn="wf_functions:inc"),
            ConditionNode(id="big", effect=Effect.PURE, expr="c >= 3"),
            FunctionNode(id="yes", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="yes2", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="no", effect=Effect.PURE, fn="wf_functions:step"),
            JoinNode(id="j", effect=Effect.PURE, mode=JoinMode.ANY),
            FunctionNode(id="e", effect=Effect.PURE, fn="wf_functions:step"),
            FunctionNode(id="f", effect=Effect.PURE, fn="wf_functions:step"),
        ),
        edges=(
            Edge(src="a", dst="b"),
            Edge(src="b", dst="c"),
            Edge(src="c", dst="rec"),
            Edge(src="c", dst="big"),
            Edge(src="big", dst="yes", label="true"),
            Edge(src="yes", dst="yes2"),
            Edge(src="big", dst="no", label="false"),
            Edge(src="yes2", dst="j"),
            Edge(src="no", dst="j"),
            Edge(src="j", dst="e"),
            Edge(src="rec", dst="f"),
            Edge(src="e", dst="f"),
        ),
        outputs=(OutputDecl(name="out", expr="f"), OutputDecl(name="mid", expr="c")),
    )


def _run(harness: Harness, wf: Workflow, **options: Any) -> tuple[Any, list[tuple[str, Any]]]:
    """Run `wf` on a fresh in-memory store (so no run reads another's memo)."""
    stores = EmbeddedStores.memory()
    options.setdefault("search_path", harness.engine().options.search_path)
    engine = Engine(Stores(stores.events, stores.cas), EngineOptions(**options))
    ir = lower(wf)

    async def go() -> Any:
        try:
            return await engine.start(ir, {})
        finally:
            await engine.close()

    result = asyncio.run(go())
    events = stores.events.read(result.run_id)
    return result, [(e.type, _scrub(e.data)) for e in events]


def _scrub(data: dict[str, Any]) -> dict[str, Any]:
    """Event data without what differs between any two runs (ids, keys, clocks)."""
    return {k: v for k, v in data.items() if k not in ("key", "ticket", "version", "ir")}


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_a_fused_run_logs_what_an_unfused_run_logs(harness: Harness, mode: str) -> None:
    wf = _mixed()
    plain, plain_events = _run(harness, wf, mode=mode, fuse=False)
    fused, fused_events = _run(harness, wf, mode=mode, fuse=True)
    assert plain.status == fused.status == "succeeded"
    assert fused.outputs == plain.outputs
    assert sorted(map(repr, fused_events)) == sorted(map(repr, plain_events))
    engine = harness.engine(mode=mode)
    ir = lower(wf)
    engine.store_ir(ir, "mixed")
    fusion = engine.fusion(ir)
    assert fusion is not None and fusion.count >= 2  # a, b, c and yes, yes2 (e, f: inputs)
    if mode == "full":
        # every node still has its own completion and output, fused or not
        done = {d["node"] for t, d in fused_events if t == "node.succeeded"}
        assert {"a", "b", "c", "yes", "yes2"} <= done


def _diamond(join: JoinMode) -> Workflow:
    """a -> (b, c) -> j -> d, j a join of the given mode between pure functions."""
    step = "wf_functions:step"
    return Workflow(
        name="diamond",
        nodes=(
            FunctionNode(id="a", effect=Effect.PURE, fn=step),
            FunctionNode(id="b", effect=Effect.PURE, fn=step),
            FunctionNode(id="c", effect=Effect.PURE, fn=step),
            JoinNode(id="j", effect=Effect.PURE, mode=join),
            FunctionNode(id="d", effect=Effect.PURE, fn=step),
        ),
        edges=tuple(
            Edge(src=x, dst=y)
            for x, y in [("a", "b"), ("a", "c"), ("b", "j"), ("c", "j"), ("j", "d")]
        ),
        outputs=(OutputDecl(name="out", expr="d"), OutputDecl(name="both", expr="j")),
    )


@pytest.mark.parametrize("mode", ["fast", "full"])
def test_a_join_all_is_fused_with_the_functions_around_it(harness: Harness, mode: str) -> None:
    wf = _diamond(JoinMode.ALL)
    engine = harness.engine(mode=mode)
    ir = lower(wf)
    engine.store_ir(ir, "diamond")
    fusion = engine.fusion(ir)
    assert fusion is not None and fusion.whole is not None  # one region: the whole graph
    assert "{'b': v1, 'c': v2}" in fusion.whole.region.source  # the join, as a literal
    plain, plain_events = _run(harness, wf, mode=mode, fuse=False)
    fused, fused_events = _run(harness, wf, mode=mode, fuse=True)
    assert plain.status == fused.status == "succeeded"
    assert fused.outputs == plain.outputs and set(fused.outputs["both"]) == {"b", "c"}
    assert sorted(map(repr, fused_events)) == sorted(map(repr, plain_events))


@pytest.mark.parametrize("mode", ["fast", "full"])
@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
def test_a_join_any_sees_only_what_had_arrived_when_it_fired(
    harness: Harness, mode: str, fuse: bool
) -> None:
    # b is ready when j fires on a (and has the smaller index): j runs at once, without b.
    step = "wf_functions:step"
    wf = Workflow(
        name="first",
        nodes=(
            FunctionNode(id="a", effect=Effect.PURE, fn=step),
            FunctionNode(id="b", effect=Effect.PURE, fn=step),
            JoinNode(id="j", effect=Effect.PURE, mode=JoinMode.ANY),
        ),
        edges=(Edge(src="a", dst="j"), Edge(src="b", dst="j")),
        outputs=(OutputDecl(name="first", expr="j"),),
    )
    result, _ = _run(harness, wf, mode=mode, fuse=fuse)
    assert result.status == "succeeded"
    assert list(result.outputs["first"]) == ["a"]


def test_joins_of_other_modes_are_not_fused() -> None:
    from aobc.runtime.fusion import fusable

    for join in (JoinMode.ANY, JoinMode.N_OF_M):
        wf = _diamond(join)
        if join is JoinMode.N_OF_M:
            nodes = tuple(
                JoinNode(id="j", effect=Effect.PURE, mode=join, n=1) if n.id == "j" else n
                for n in wf.nodes
            )
            wf = Workflow(name=wf.name, nodes=nodes, edges=wf.edges, outputs=wf.outputs)
        ir = lower(wf)
        engine = Engine(Stores(EmbeddedStores.memory().events, EmbeddedStores.memory().cas))
        j = [n.id for n in ir.nodes].index("j")
        assert fusable(engine, ir, j) is None


def test_a_region_of_joins_only_calls_nothing() -> None:
    # An effect feeds two joins in a row: the joins form a region with no function in it.
    wf = Workflow(
        name="joins",
        nodes=(
            FunctionNode(id="e", effect=Effect.EFFECTFUL, fn="wf_functions:inc"),
            FunctionNode(id="f", effect=Effect.EFFECTFUL, fn="wf_functions:inc"),
            JoinNode(id="j1", effect=Effect.PURE, mode=JoinMode.ALL),
            JoinNode(id="j2", effect=Effect.PURE, mode=JoinMode.ALL),
        ),
        edges=(
            Edge(src="e", dst="j1"),
            Edge(src="f", dst="j1"),
            Edge(src="j1", dst="j2"),
            Edge(src="f", dst="j2"),
        ),
    )
    ir = lower(wf)
    from aobc.backend.fuse import JOIN_ALL

    (region,) = regions(ir, lambda i: JOIN_ALL if ir.nodes[i].id.startswith("j") else None)
    assert region.fns == ()
    namespace: dict[str, Any] = {}
    exec(compile(region.source, "<fused>", "exec"), namespace)
    values: list[Any] = [{"x": 1}, {"y": 2}, None, None]
    namespace["fused"](values, ())
    assert values[2] == {"e": {"x": 1}, "f": {"y": 2}}
    assert values[3] == {"j1": values[2], "f": {"y": 2}}


def test_a_failing_member_is_named_as_without_fusion(harness: Harness) -> None:
    wf = _wf(4, [(0, 1), (1, 2), (2, 3)], fns={2: "wf_functions:boom"})
    for mode in ("fast", "full"):
        plain, _ = _run(harness, wf, mode=mode, fuse=False)
        fused, _ = _run(harness, wf, mode=mode, fuse=True)
        assert plain.status == fused.status == "failed"
        assert fused.error == plain.error and '"n2"' in (fused.error or "")


def test_a_non_json_output_fails_the_node_in_full_fidelity(harness: Harness) -> None:
    wf = _wf(3, [(0, 1), (1, 2)], fns={1: "wf_functions:not_json"})
    plain, _ = _run(harness, wf, mode="full", fuse=False)
    fused, _ = _run(harness, wf, mode="full", fuse=True)
    assert plain.status == fused.status == "failed"
    assert fused.error == plain.error


def test_replay_freeze_of_a_fused_run(harness: Harness) -> None:
    from aobc.runtime.replay import replay

    wf = _wf(4, [(0, 1), (1, 2), (2, 3)], outputs=(OutputDecl(name="out", expr="n3"),))
    engine = harness.engine(mode="full")
    ir = lower(wf)

    async def go() -> Any:
        try:
            first = await engine.start(ir, {})
            again, _ = await replay(engine, first.run_id, "n2", "freeze")
            return first, again
        finally:
            await engine.close()

    first, again = asyncio.run(go())
    assert first.status == again.status == "succeeded"
    assert again.outputs == first.outputs
    frozen = [d["node"] for d in harness.events(again.run_id, "node.succeeded") if d.get("frozen")]
    assert sorted(frozen) == ["n0", "n1"]


def test_fusion_is_per_ir_and_cached(harness: Harness) -> None:
    wf = _wf(3, [(0, 1), (1, 2)])
    ir = lower(wf)
    stores = EmbeddedStores.memory()
    engine = Engine(Stores(stores.events, stores.cas), EngineOptions(mode="fast"))
    engine.store_ir(ir, "w")
    assert engine.fusion(ir) is engine.fusion(ir)
    off = Engine(Stores(stores.events, stores.cas), EngineOptions(mode="fast", fuse=False))
    assert off.fusion(ir) is None


# --- translation validation ---------------------------------------------------------------------


@st.composite
def fusable_workflows(draw: st.DrawFn) -> Workflow:
    """Mostly pure functions (some failing), with effects, conditions and joins between."""
    n = draw(st.integers(3, 14))
    nodes: list[Any] = []
    edges: list[Edge] = []
    for i in range(n):
        kind = draw(st.sampled_from(["pure"] * 6 + ["effect", "cond", "join", "fail"]))
        nid = f"n{i}"
        preds = (
            sorted(draw(st.sets(st.integers(0, i - 1), min_size=1, max_size=min(i, 2))))
            if i
            else []
        )
        if kind == "cond" and i:
            # A condition reads its last predecessor: verify refuses reading a node that is
            # not upstream, whose value would depend on timing.
            nodes.append(ConditionNode(id=nid, effect=Effect.PURE, expr=f"n{preds[-1]}.n > 4"))
        elif kind == "join" and i > 1:
            mode = draw(st.sampled_from(list(JoinMode)))
            n_of = draw(st.integers(1, len(preds))) if mode is JoinMode.N_OF_M else None
            nodes.append(JoinNode(id=nid, effect=Effect.PURE, mode=mode, n=n_of))
        else:
            fn = {"effect": "w.sink:put", "fail": "w.fail:f"}.get(kind, f"w.f{i % 3}:g")
            effect = Effect.EFFECTFUL if kind == "effect" else Effect.PURE
            nodes.append(FunctionNode(id=nid, effect=effect, fn=fn))
        for p in preds:
            src = nodes[p]
            label = None
            if isinstance(src, ConditionNode):
                label = draw(st.sampled_from(["true", "false"]))
            edges.append(Edge(src=f"n{p}", dst=nid, label=label))
    last = nodes[-1].id
    return Workflow(
        name="g", nodes=tuple(nodes), edges=tuple(edges), outputs=(OutputDecl(name="o", expr=last),)
    )


@settings(max_examples=80)
@given(wf=fusable_workflows())
def test_fusion_refines_node_by_node_execution(wf: Workflow) -> None:
    assert PassPipeline.parse("verify").run(Overlay(wf)).ok  # a workflow aobc would compile
    assert check_fusion(wf, seeds=2) is None


def _first_failure_cases() -> list[tuple[Workflow, str]]:
    """Workflows with two independent failing nodes, and the one a run must report: the
    first in index order, whichever nodes run inline or fused and in either mode."""
    pure = Effect.PURE
    # Found by the property above: two conditions on joins, both failing on null. Run node
    # by node, the interpreter used to reach n6 first; fused, n5.
    joins = Workflow(
        name="g",
        nodes=(
            *(FunctionNode(id=f"n{i}", effect=pure, fn=f"w.f{i}:g") for i in range(3)),
            JoinNode(id="n3", effect=pure, mode=JoinMode.ALL),
            JoinNode(id="n4", effect=pure, mode=JoinMode.ALL),
            ConditionNode(id="n5", effect=pure, expr="n3.n > 4"),
            ConditionNode(id="n6", effect=pure, expr="n4.n > 4"),
        ),
        edges=tuple(
            Edge(src=a, dst=b)
            for a, b in [
                ("n0", "n1"),
                ("n0", "n2"),
                ("n0", "n3"),
                ("n1", "n4"),
                ("n3", "n5"),
                ("n4", "n6"),
            ]
        ),
        outputs=(OutputDecl(name="o", expr="n6"),),
    )
    # A region {n0, n2} beside a chain n1 -> n3 -> n4 of functions that retry (so they run
    # one by one); n4 and n5 fail. Full-fidelity runs used to go in rounds of what was
    # ready together, and a region ran ahead of its round: n5 failed first when fused.
    twice = RetryPolicy(max_attempts=2)
    fns = {0: "w.f0:g", 1: "w.f1:g", 2: "w.f2:g", 3: "w.f0:g", 4: "w.fail:f", 5: "w.fail:f"}
    rounds = Workflow(
        name="g",
        nodes=tuple(
            FunctionNode(
                id=f"n{i}", effect=pure, fn=fn, retry=twice if i in (1, 3, 4, 5) else RetryPolicy()
            )
            for i, fn in fns.items()
        ),
        edges=tuple(
            Edge(src=a, dst=b) for a, b in [("n0", "n2"), ("n1", "n3"), ("n3", "n4"), ("n2", "n5")]
        ),
        outputs=(OutputDecl(name="a", expr="n4"), OutputDecl(name="b", expr="n5")),
    )
    return [(joins, "n5"), (rounds, "n4")]


@pytest.mark.parametrize("mode", ["fast", "full"])
@pytest.mark.parametrize("fuse", [False, True], ids=["unfused", "fused"])
@pytest.mark.parametrize("case", range(2))
def test_of_two_failing_nodes_the_run_reports_the_first(mode: str, fuse: bool, case: int) -> None:
    from aobc.tv.harness import run_in_world

    wf, first = _first_failure_cases()[case]
    assert PassPipeline.parse("verify").run(Overlay(wf)).ok
    trace = run_in_world(lower(wf), {}, 0, inline=True, fuse=fuse, mode=mode)
    assert trace.status == "failed"
    assert trace.error is not None and trace.error.startswith(f'node "{first}" failed'), trace.error
    assert check_fusion(wf, seeds=1) is None


def test_the_generated_workflows_are_mostly_fused() -> None:
    # So that the property above is not vacuous: most generated workflows have a region.
    from aobc.runtime.stores.memory import MemoryCAS, MemoryEventLog
    from aobc.tv.harness import _WorldEngine
    from aobc.tv.world import World

    fired = 0
    for seed in range(40):
        wf = _draw(seed)
        engine = _WorldEngine(Stores(MemoryEventLog(), MemoryCAS()), World(0), inline=True)
        ir = lower(wf)
        engine.store_ir(ir, "g")
        fired += engine.fusion(ir) is not None
    assert fired >= 25


def _draw(seed: int) -> Workflow:
    """A workflow shaped like `fusable_workflows` draws (no conditions), from a seed."""
    rng = random.Random(seed)
    n = rng.randint(3, 14)
    nodes: list[Any] = []
    edges: list[Edge] = []
    for i in range(n):
        kind = rng.choice(["pure"] * 6 + ["effect", "join"])
        nid = f"n{i}"
        if kind == "join" and i > 1:
            nodes.append(JoinNode(id=nid, effect=Effect.PURE, mode=JoinMode.ALL))
        else:
            effect = Effect.EFFECTFUL if kind == "effect" else Effect.PURE
            nodes.append(FunctionNode(id=nid, effect=effect, fn=f"w.f{i % 3}:g"))
        if i:
            for p in sorted(rng.sample(range(i), min(i, rng.randint(1, 2)))):
                edges.append(Edge(src=f"n{p}", dst=nid))
    return Workflow(name="g", nodes=tuple(nodes), edges=tuple(edges))
