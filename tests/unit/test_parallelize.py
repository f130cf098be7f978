"""`parallelize`: each legality rule with its remark, idempotence, and a differential property
against translation validation on generated workflows full of ordering-only edges."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.cli import main
from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.ir import (
    ApprovalNode,
    ConditionNode,
    Edge,
    Effect,
    FrozenDict,
    FunctionNode,
    Graph,
    HttpNode,
    InputDecl,
    JoinNode,
    Node,
    OutputDecl,
    TimerNode,
    ValueType,
    Workflow,
)
from aobc.passes.analysis import is_data_edge
from aobc.passes.base import Pass, PassContext, Remark
from aobc.passes.parallelize import REASONS, ParallelizePass
from aobc.passes.pipeline import PassPipeline
from aobc.tv import check, validate

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aob"))


def run(src: str) -> tuple[Workflow, PassContext]:
    ctx = PassContext(DiagnosticEngine())
    return ParallelizePass().run(load_text(src, "p.aob"), ctx), ctx


def edges(wf: Workflow) -> set[tuple[str, str]]:
    return {(e.src, e.dst) for e in wf.edges}


def missed(ctx: PassContext) -> list[Remark]:
    return [r for r in ctx.remarks if r.kind == "missed"]


def test_two_safe_reads_stop_waiting_for_each_other() -> None:
    wf, ctx = run(
        """
        workflow w {
          output r = r.value
          a = http GET "https://api.example.com/a" { effect: idempotent }
          b = http GET "https://api.example.com/b" { effect: idempotent }
          r = function "m:r" { effect: pure, args: { a: a.body, b: b.body } }
          a -> b -> r
          a -> r
        }
        """
    )
    assert edges(wf) == {("a", "r"), ("b", "r")}
    (passed,) = [r for r in ctx.remarks if r.kind == "passed"]
    assert passed.nodes == ("a", "b") and passed.name == "dropped-order"
    assert str(passed.loc) == "p.aob:7:11"  # the edge, where it was written
    (analysis,) = [r for r in ctx.remarks if r.kind == "analysis"]
    args = dict(analysis.args)
    assert (args["before_ms"], args["after_ms"]) == (305.0, 155.0)
    assert args["before_path"] == ["a", "b", "r"] and args["after_path"] == ["b", "r"]
    assert "305 ms" in analysis.message and "155 ms" in analysis.message
    assert not missed(ctx)


def test_data_edges_stay_without_a_remark() -> None:
    wf, ctx = run(
        """
        workflow w {
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure, args: { x: a.value } }
          c = function "m:c" { effect: pure }
          a -> b
          b -> c
        }
        """
    )
    # b -> c carries b's output to c (a function without args takes its predecessors').
    assert edges(wf) == {("a", "b"), ("b", "c")}
    assert not missed(ctx) and not ctx.rewriter.ops


def test_an_edge_from_a_node_that_may_be_skipped_stays() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          c = condition inputs.n > 1
          x = function "m:x" { effect: pure, args: { n: inputs.n } }
          y = function "m:y" { effect: pure, args: { n: inputs.n } }
          c -[true]-> x -> y
        }
        """
    )
    assert ("x", "y") in edges(wf)
    (m,) = missed(ctx)
    assert m.nodes == ("x", "y") and dict(m.args)["reason"] == "skippable"
    assert m.message == 'kept "x" -> "y": "x" may be skipped, and then "y" must be skipped too'


def test_work_feeding_a_first_come_join_keeps_its_timing() -> None:
    # Found by the differential property: without the edge, "slow" could beat "fast" to the
    # join and the run would return a different result.
    wf, ctx = run(
        """
        workflow w {
          input n: int
          output r = first
          a    = function "m:a" { effect: pure, args: { n: inputs.n } }
          slow = function "m:slow" { effect: pure, args: { n: inputs.n } }
          fast = function "m:fast" { effect: pure, args: { n: inputs.n } }
          first = join 1
          a -> slow -> first
          fast -> first
        }
        """
    )
    assert ("a", "slow") in edges(wf)
    (m,) = missed(ctx)
    assert m.nodes == ("a", "slow") and dict(m.args)["reason"] == "race"
    assert m.message == (
        'kept "a" -> "slow": "slow" feeds first-come join "first", whose result depends on'
        " what arrives first"
    )


def test_work_never_moves_above_an_approval() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          g = approval { approvers: ["ops"] }
          a = function "m:a" { effect: pure, args: { n: inputs.n } }
          b = function "m:b" { effect: pure, args: { n: inputs.n } }
          g -[approved]-> a -> b
        }
        """
    )
    assert ("a", "b") in edges(wf)
    (m,) = missed(ctx)
    assert dict(m.args)["reason"] == "gate"
    assert 'would no longer wait for approval "g"' in m.message


def test_two_effectful_nodes_keep_their_order() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          p = function "m:p" { effect: effectful, args: { n: inputs.n } }
          q = function "m:q" { effect: effectful, args: { n: inputs.n } }
          p -> q
        }
        """
    )
    assert edges(wf) == {("p", "q")}
    (m,) = missed(ctx)
    assert dict(m.args)["reason"] == "effects"
    assert m.message == 'kept "p" -> "q": both nodes are effectful; their order is observable'


def test_a_read_after_a_write_keeps_its_order() -> None:
    wf, ctx = run(
        """
        workflow w {
          put = http PUT "https://api.example.com/x" { effect: idempotent, body: { v: 1 } }
          get = http GET "https://api.example.com/x" { effect: idempotent }
          put -> get
        }
        """
    )
    assert edges(wf) == {("put", "get")}
    (m,) = missed(ctx)
    assert 'idempotent "put", idempotent "get"' in m.message


def test_effects_ordered_through_pure_nodes_keep_their_order() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          p = function "m:p" { effect: effectful, args: { n: inputs.n } }
          m = function "m:m" { effect: pure, args: { n: inputs.n } }
          q = function "m:q" { effect: effectful, args: { v: m.value } }
          p -> m -> q
        }
        """
    )
    assert ("p", "m") in edges(wf)
    (m,) = missed(ctx)
    assert m.message.endswith('it is what orders effectful "p" before effectful "q"')


def test_a_redundant_edge_between_effects_goes() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          p = function "m:p" { effect: effectful, args: { n: inputs.n } }
          m = function "m:m" { effect: pure, args: { v: p.value } }
          q = function "m:q" { effect: effectful, args: { v: m.value } }
          p -> m -> q
          p -> q
        }
        """
    )
    # p still runs before q through m, so the direct edge orders nothing new.
    assert edges(wf) == {("p", "m"), ("m", "q")}
    assert [r.nodes for r in ctx.remarks if r.kind == "passed"] == [("p", "q")]


def test_what_follows_a_timer_waits_for_it() -> None:
    wf, ctx = run(
        """
        workflow w {
          t = timer 5m
          g = http GET "https://api.example.com/x" { effect: idempotent }
          t -> g
        }
        """
    )
    assert edges(wf) == {("t", "g")}
    (m,) = missed(ctx)
    assert m.message == 'kept "t" -> "g": idempotent "g" must wait for timer "t"'


def test_an_edge_that_puts_a_read_name_upstream_stays() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          x = function "m:x" { effect: pure, args: { n: inputs.n } }
          j = function "m:j" { effect: pure, args: { n: inputs.n } }
          y = function "m:y" { effect: pure, args: { a: x.value, b: j.value } }
          x -> j -> y
        }
        """
    )
    assert ("x", "j") in edges(wf)
    (m,) = missed(ctx)
    assert dict(m.args)["reason"] == "reads"
    assert m.message == 'kept "x" -> "j": "y" reads "x", and only this edge runs "x" first'


def test_a_guard_reads_in_its_source_scope() -> None:
    wf, _ = run(
        """
        workflow w {
          input n: int
          x = function "m:x" { effect: pure, args: { n: inputs.n } }
          j = function "m:j" { effect: pure, args: { n: inputs.n } }
          y = function "m:y" { effect: pure, args: { n: inputs.n } }
          x -> j -[when x.n > 2]-> y
        }
        """
    )
    assert ("x", "j") in edges(wf)


def test_pure_work_after_an_effect_is_freed() -> None:
    wf, ctx = run(
        """
        workflow w {
          input n: int
          output s = s.value
          p = function "m:p" { effect: effectful, args: { n: inputs.n } }
          s = function "m:s" { effect: pure, args: { n: inputs.n } }
          p -> s
        }
        """
    )
    assert edges(wf) == set()
    assert [r.name for r in ctx.remarks] == ["dropped-order", "critical-path"]


def test_the_critical_path_is_reported_even_when_nothing_changes() -> None:
    _, ctx = run('workflow w { a = function "m:a" { effect: pure } }')
    (r,) = ctx.remarks
    assert r.kind == "analysis" and r.name == "critical-path"
    assert r.message == "critical path 5 ms (a), unchanged"


def test_an_effect_still_waits_for_the_work_before_it_to_succeed() -> None:
    src = """
        workflow w {
          input n: int
          check  = function "m:validate" { effect: pure, args: { n: inputs.n } }
          charge = function "m:charge" { effect: effectful, args: { n: inputs.n } }
          check -> charge
        }
        """
    wf, ctx = run(src)
    assert edges(wf) == {("check", "charge")}
    (m,) = missed(ctx)
    assert dict(m.args)["reason"] == "failure"
    assert m.message.endswith('effectful "charge" would no longer wait for "check" to succeed')
    # An author who accepts effects that a later failure cannot stop may say so.
    ctx = PassContext(DiagnosticEngine())
    early = ParallelizePass(early_effects=True).run(load_text(src, "p.aob"), ctx)
    assert edges(early) == set()
    assert str(PassPipeline.parse("parallelize{early-effects=true}")) == (
        "parallelize{early-effects=true}"
    )


def test_every_reason_is_documented() -> None:
    assert set(REASONS) == {"gate", "skippable", "race", "effects", "failure", "reads"}
    doc = (Path(__file__).resolve().parents[2] / "docs" / "explain.md").read_text()
    assert all(f"`{r}`" in doc for r in REASONS)


# --- generated workflows with opportunities -------------------------------------------------


def _node(rng: random.Random, nid: str, parents: list[Node]) -> Node:
    """A node that reads some of its parents (or none): most of its edges only order."""
    readable = [p.id for p in parents if isinstance(p, FunctionNode | HttpNode)]
    read = [p for p in readable if rng.random() < 0.35]
    args = FrozenDict(
        {f"a{i}": "${" + p + ".value}" for i, p in enumerate(read)} or {"n": "${inputs.n}"}
    )
    kind = rng.choices(
        ("pure", "effectful", "idempotent", "get", "put", "timer", "approval", "condition"),
        weights=(6, 3, 1, 3, 1, 1, 1, 1),
    )[0]
    if kind in ("pure", "effectful", "idempotent"):
        return FunctionNode(id=nid, effect=Effect(kind), fn=f"m:{nid}", args=args)
    if kind in ("get", "put"):
        q = "&".join(f"{k}={v}" for k, v in args.items())
        return HttpNode(
            id=nid,
            effect=Effect.IDEMPOTENT,
            method=kind.upper(),
            url=f"https://api.example.com/{nid}?{q}",
            body=FrozenDict({"v": 1}) if kind == "put" else None,
        )
    if kind == "timer":
        return TimerNode(id=nid, effect=Effect.PURE, duration_ms=1000)
    if kind == "approval":
        return ApprovalNode(id=nid, effect=Effect.EFFECTFUL, approvers=("ops",), timeout_ms=60_000)
    src = readable[0] + ".n" if readable else "inputs.n"
    return ConditionNode(id=nid, effect=Effect.PURE, expr=f"{src} > {rng.randint(0, 9)}")


def _label(rng: random.Random, src: Node) -> str | None:
    if isinstance(src, ConditionNode):
        return rng.choice(("true", "false", None))
    if isinstance(src, ApprovalNode):
        return rng.choice(("approved", "rejected", None))
    return None


def opportunities(rng: random.Random, n: int) -> Workflow:
    """A DAG whose expressions read only direct parents, with many edges that only order."""
    nodes: list[Node] = []
    out_edges: list[Edge] = []
    for i in range(n):
        k = rng.randint(0, min(i, 3))
        parents = [nodes[j] for j in sorted(rng.sample(range(i), k))]
        if len(parents) >= 2 and rng.random() < 0.1:
            nodes.append(JoinNode(id=f"n{i}", effect=Effect.PURE))
        else:
            nodes.append(_node(rng, f"n{i}", parents))
        out_edges += [Edge(src=p.id, dst=f"n{i}", label=_label(rng, p)) for p in parents]
    outs = [n for n in nodes if isinstance(n, FunctionNode | HttpNode)][-2:]
    return Workflow(
        name="gen",
        nodes=tuple(nodes),
        edges=tuple(out_edges),
        inputs=(InputDecl(name="n", type=ValueType.INT, default=3, required=False),),
        outputs=tuple(OutputDecl(name=f"o{i}", expr=f"{o.id}.value") for i, o in enumerate(outs)),
    )


@dataclass(frozen=True, kw_only=True)
class _DropAllOrder(Pass):
    """A wrong parallelize: drops every ordering-only edge, whatever it orders."""

    name: ClassVar[str] = "drop-all-order"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        graph = Graph.of(wf)
        doomed = {id(e) for e in wf.edges if not is_data_edge(e, graph)}
        return ctx.rewriter.remove_edges(wf, lambda e: id(e) in doomed)


def _optimized(wf: Workflow, pipeline: str = "parallelize") -> tuple[Workflow, int]:
    result = PassPipeline.parse(pipeline, {"drop-all-order": _DropAllOrder}).run(Overlay(wf))
    assert result.ok, [d.message for d in result.diagnostics]
    return result.workflow, len(wf.edges) - len(result.workflow.edges)


@given(st.randoms(use_true_random=False), st.integers(2, 12))
@settings(max_examples=80, deadline=None)
def test_parallelize_refines_the_original(rng: random.Random, n: int) -> None:
    wf = opportunities(rng, n)
    assert validate(wf, "verify,parallelize,verify", seeds=3, shrink=False) is None
    assert validate(wf, "parallelize{early-effects=true}", seeds=3, shrink=False) is None
    once, _ = _optimized(wf)
    twice, dropped = _optimized(once)
    assert twice == once and dropped == 0


def test_the_generator_gives_parallelize_work_and_legality_matters() -> None:
    fired = caught = 0
    for seed in range(60):
        wf = opportunities(random.Random(seed), 10)
        _, dropped = _optimized(wf)
        fired += dropped > 0
        if check(wf, _optimized(wf, "drop-all-order")[0], seeds=3) is not None:
            caught += 1
    # Parallelize finds something in most generated workflows, and the rules it keeps are
    # not vacuous: dropping every ordering-only edge blindly changes behaviour in some.
    assert fired >= 30, fired
    assert caught >= 5, caught


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_verify_opt_accepts_parallelize_on_every_example(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["verify-opt", str(path), "--passes", "verify,parallelize,verify", "--seeds", "4"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "refines the original" in out
