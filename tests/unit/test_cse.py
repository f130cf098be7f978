"""`cse`: duplicates are merged to a fixpoint, and every legality rule stops a merge with a
`missed` remark saying why; merged workflows behave as the originals (translation
validation on generated workflows full of duplicates)."""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.ir import (
    AgentNode,
    Edge,
    FrozenDict,
    FunctionNode,
    HttpNode,
    JoinNode,
    Node,
    OutputDecl,
    Workflow,
)
from aobc.ir.reads import passes_predecessor_outputs
from aobc.passes.base import PassContext, Remark
from aobc.passes.cse import CsePass
from aobc.passes.pipeline import PassPipeline
from aobc.testing.generate import random_workflow
from aobc.tv import check, optimize, validate


def cse(src: str) -> tuple[Workflow, list[Remark]]:
    result = PassPipeline.parse("cse").run(Overlay(load_text(src, "t.aob")))
    assert result.ok, [d.message for d in result.diagnostics]
    return result.workflow, result.remarks


def ids(wf: Workflow) -> list[str]:
    return [n.id for n in wf.nodes]


def missed(remarks: list[Remark]) -> list[str]:
    return [r.message for r in remarks if r.kind == "missed"]


def test_identical_nodes_merge_and_their_readers_read_the_kept_one() -> None:
    wf, remarks = cse("""
    workflow w {
      input id: str
      output a = user.body
      output b = again.body.name
      user    = http GET "https://api.example.com/u/${inputs.id}" { effect: idempotent }
      again   = http GET "https://api.example.com/u/${inputs.id}" { effect: idempotent }
      profile = function "m:profile" { effect: pure, args: { user: again.body } }
      again -> profile
    }
    """)
    assert ids(wf) == ["user", "profile"]
    assert wf.nodes[1].args == {"user": "${user.body}"}  # type: ignore[attr-defined]
    assert [(e.src, e.dst) for e in wf.edges] == [("user", "profile")]
    assert {o.name: o.expr for o in wf.outputs} == {"a": "user.body", "b": "user.body.name"}
    assert [r.message for r in remarks if r.kind == "passed"] == [
        'merged "again" into "user": the same http with the same inputs'
    ]


def test_chains_of_duplicates_merge_to_a_fixpoint() -> None:
    wf, remarks = cse("""
    workflow w {
      output r = d2
      a1 = function "m:a" { effect: pure, args: { x: inputs.x } }
      a2 = function "m:a" { effect: pure, args: { x: inputs.x } }
      b1 = function "m:b" { effect: pure, args: { x: a1.value } }
      b2 = function "m:b" { effect: pure, args: { x: a2.value } }
      c1 = condition b1.n > 2
      c2 = condition b2.n > 2
      d1 = function "m:d" { effect: idempotent, args: { x: b1.value } }
      d2 = function "m:d" { effect: idempotent, args: { x: b2.value } }
      a1 -> b1 -> c1 -[true]-> d1
      a2 -> b2 -> c2 -[true]-> d2
      input x: int
    }
    """)
    assert ids(wf) == ["a1", "b1", "c1", "d1"]
    assert {o.name: o.expr for o in wf.outputs} == {"r": "d1"}
    assert sum(r.kind == "passed" for r in remarks) == 4


def test_effectful_nodes_are_never_merged() -> None:
    wf, remarks = cse("""
    workflow w {
      a = function "m:send" { effect: effectful, args: { x: 1 } }
      b = function "m:send" { effect: effectful, args: { x: 1 } }
    }
    """)
    assert ids(wf) == ["a", "b"]
    assert missed(remarks) == ["not CSE'd: node is effectful"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ('auth: "other_key"', "auth"),
        ('headers: { "X-Trace": "1" }', "headers"),
        ("timeout: 5s", "timeout"),
        ("retries: 2", "retries"),
        ("priority: high", "priority"),
    ],
)
def test_nodes_differing_in_policy_are_not_merged_and_the_field_is_named(
    extra: str, field: str
) -> None:
    wf, remarks = cse(f"""
    workflow w {{
      a = http GET "https://api.example.com/x" {{ effect: idempotent }}
      b = http GET "https://api.example.com/x" {{ effect: idempotent, {extra} }}
    }}
    """)
    assert ids(wf) == ["a", "b"]
    assert missed(remarks) == [f'not CSE\'d with "a": different {field}']


AGENTS = """
workflow w {{
  a = agent {{ model: "gpt-4o-mini", prompt: "Summarize ${{inputs.t}}"{extra} }}
  b = agent {{ model: "gpt-4o-mini", prompt: "Summarize ${{inputs.t}}"{extra} }}
  input t: str
}}
"""


def test_agents_are_not_merged_since_an_llm_call_is_not_deterministic() -> None:
    wf, remarks = cse(AGENTS.format(extra=""))
    assert ids(wf) == ["a", "b"]
    assert missed(remarks) == [
        "not CSE'd: agent is idempotent, and an LLM call is not deterministic: "
        "two calls may answer differently"
    ]


def test_agents_declared_pure_are_merged_unless_they_may_patch() -> None:
    wf, _ = cse(AGENTS.format(extra=", effect: pure"))
    assert ids(wf) == ["a"]
    wf, remarks = cse(AGENTS.format(extra=", effect: pure, may_patch: true"))
    assert ids(wf) == ["a", "b"]
    assert "may patch the workflow" in missed(remarks)[0]


def test_maps_running_agents_are_not_merged() -> None:
    wf, remarks = cse("""
    workflow w {
      a = map inputs.xs { body: agent { model: "m", prompt: "${item}" } }
      b = map inputs.xs { body: agent { model: "m", prompt: "${item}" } }
      input xs: list
    }
    """)
    assert ids(wf) == ["a", "b"]
    assert 'it runs agent "body"' in missed(remarks)[0]


def test_approvals_are_never_merged() -> None:
    wf, remarks = cse("""
    workflow w {
      a = approval { approvers: ["ops"], effect: idempotent }
      b = approval { approvers: ["ops"], effect: idempotent }
    }
    """)
    assert ids(wf) == ["a", "b"]
    assert "each ask is its own decision" in missed(remarks)[0]


def test_nodes_on_different_sides_of_an_approval_are_not_merged() -> None:
    wf, remarks = cse("""
    workflow w {
      ok = approval { approvers: ["ops"] }
      before = function "m:f" { effect: pure, args: { x: inputs.x } }
      after = function "m:f" { effect: pure, args: { x: inputs.x } }
      ok -[approved]-> after
      input x: int
    }
    """)
    assert ids(wf) == ["ok", "before", "after"]
    assert missed(remarks) == [
        'not CSE\'d with "before": they are on different sides of approval "ok"'
    ]


def test_nodes_running_in_different_circumstances_are_not_merged() -> None:
    wf, remarks = cse("""
    workflow w {
      c = condition inputs.x > 1
      yes = function "m:f" { effect: pure, args: { x: inputs.x } }
      no = function "m:f" { effect: pure, args: { x: inputs.x } }
      c -[true]-> yes
      c -[false]-> no
      input x: int
    }
    """)
    assert ids(wf) == ["c", "yes", "no"]
    assert "may not run in the same circumstances" in missed(remarks)[0]


def test_functions_taking_their_predecessors_outputs_merge_only_with_the_same_ones() -> None:
    src = """
    workflow w {
      a = function "m:a" { effect: idempotent }
      b = function "m:b" { effect: idempotent }
      f = function "m:f" { effect: pure }
      g = function "m:f" { effect: pure }
      a -> f
      %s -> g
    }
    """
    wf, remarks = cse(src % "b")
    assert ids(wf) == ["a", "b", "f", "g"]
    assert "their predecessors differ" in missed(remarks)[0]
    wf, _ = cse(src % "a")
    assert ids(wf) == ["a", "b", "f"]


def test_a_duplicate_feeding_a_join_is_not_merged() -> None:
    # The join's output names its inputs by id: merging would rename "b" to "a" in it.
    wf, remarks = cse("""
    workflow w {
      output r = both
      a = function "m:f" { effect: pure, args: { x: 1 } }
      b = function "m:f" { effect: pure, args: { x: 1 } }
      both = join all
      a -> both
      b -> both
    }
    """)
    assert ids(wf) == ["a", "b", "both"]
    assert "takes its predecessors' outputs by id" in missed(remarks)[0]


def test_a_duplicate_and_the_kept_node_feeding_one_node_under_different_guards() -> None:
    wf, remarks = cse("""
    workflow w {
      a = function "m:f" { effect: pure, args: { x: 1 } }
      b = function "m:f" { effect: pure, args: { x: 1 } }
      t = function "m:t" { effect: effectful, args: { x: 1 } }
      a -[when a.n > 1]-> t
      b -[when b.n > 2]-> t
    }
    """)
    assert ids(wf) == ["a", "b", "t"]
    assert "under different guards" in missed(remarks)[0]


def test_same_guards_and_moved_edges_are_not_duplicated() -> None:
    wf, _ = cse("""
    workflow w {
      a = function "m:f" { effect: pure, args: { x: 1 } }
      b = function "m:f" { effect: pure, args: { x: 1 } }
      t = function "m:t" { effect: effectful, args: { x: 1 } }
      u = function "m:u" { effect: effectful, args: { x: b.value } }
      a -[when a.n > 1]-> t
      b -[when b.n > 1]-> t
      b -[when b.ok]-> u
    }
    """)
    assert ids(wf) == ["a", "t", "u"]
    assert [(e.src, e.dst, e.when) for e in wf.edges] == [
        ("a", "t", "a.n > 1"),
        ("a", "u", "a.ok"),
    ]


def test_cache_keys_naming_the_duplicate_name_the_kept_node() -> None:
    wf, _ = cse("""
    workflow w {
      a = http GET "https://api.example.com/x" { effect: idempotent }
      b = http GET "https://api.example.com/x" { effect: idempotent }
      f = function "m:f" { effect: pure, args: { x: b.body }, cache: { key: ["b"] } }
      b -> f
    }
    """)
    assert ids(wf) == ["a", "f"]
    assert wf.nodes[1].cache == {"key": ("a",)}


def test_running_twice_changes_nothing() -> None:
    wf, _ = cse("""
    workflow w {
      a = function "m:f" { effect: pure, args: { x: 1 } }
      b = function "m:f" { effect: pure, args: { x: 1 } }
      c = function "m:f" { effect: effectful, args: { x: 1 } }
      d = function "m:f" { effect: effectful, args: { x: 1 } }
    }
    """)
    ctx = PassContext(DiagnosticEngine())
    assert CsePass().run(wf, ctx) == wf
    assert not ctx.rewriter.ops


# --- differential testing -------------------------------------------------------------------


def _clone(n: Node, new_id: str) -> Node:
    return dataclasses.replace(n, id=new_id, loc=None)


def with_duplicates(rng: random.Random, n: int) -> Workflow:
    """A generated workflow where some nodes have a twin (same config, same incoming
    edges), read by a new consumer or feeding the original's successors."""
    wf = random_workflow(rng, n)
    nodes, edges, outputs = list(wf.nodes), list(wf.edges), list(wf.outputs)
    by_id = {x.id: x for x in nodes}
    for i, orig in enumerate(rng.sample(list(wf.nodes), min(len(wf.nodes), rng.randint(1, 4)))):
        twin = f"{orig.id}_twin"
        nodes.append(_clone(orig, twin))
        edges += [dataclasses.replace(e, dst=twin) for e in wf.edges if e.dst == orig.id]
        if isinstance(orig, FunctionNode | HttpNode | AgentNode):
            use = f"use{i}"
            nodes.append(
                FunctionNode(
                    id=use,
                    effect=orig.effect,
                    fn="pkg.use:f",
                    args=FrozenDict({"v": f"${{{twin}.value}}"}),
                )
            )
            edges.append(Edge(src=twin, dst=use))
            outputs.append(OutputDecl(name=f"twin{i}", expr=f"{use}.value"))
        else:
            edges += [
                dataclasses.replace(e, src=twin, when=None)
                for e in wf.edges
                if e.src == orig.id
                and not passes_predecessor_outputs(by_id[e.dst])
                and e.when is None
            ]
    return dataclasses.replace(
        wf,
        nodes=tuple(nodes),
        edges=tuple(edges),
        outputs=tuple(sorted(outputs, key=lambda o: o.name)),
    )


@given(st.randoms(use_true_random=False), st.integers(2, 20))
@settings(max_examples=40, deadline=None)
def test_merging_duplicates_preserves_behaviour(rng: random.Random, n: int) -> None:
    wf = with_duplicates(rng, n)
    # The validator pairs repeated identical effectful calls by their last position, so a
    # workflow making one call twice can fail against itself; such inputs say nothing.
    assume(check(wf, wf, seeds=3) is None)
    assert validate(wf, "verify,cse,verify", seeds=3) is None


def test_the_generated_duplicates_are_mostly_merged() -> None:
    # So that the property above is not vacuous: cse fires on most generated workflows.
    fired = 0
    for seed in range(40):
        ctx = PassContext(DiagnosticEngine())
        CsePass().run(with_duplicates(random.Random(seed), 12), ctx)
        fired += any(r.kind == "passed" for r in ctx.remarks)
    assert fired >= 24


def test_a_join_twin_keeps_the_join_semantics() -> None:
    # Joins are merged like any pure node: same inputs, same output.
    wf, _ = cse("""
    workflow w {
      output r = j2
      a = function "m:a" { effect: idempotent }
      b = function "m:b" { effect: idempotent }
      j1 = join any
      j2 = join any
      a -> j1
      b -> j1
      a -> j2
      b -> j2
    }
    """)
    assert ids(wf) == ["a", "b", "j1"]
    assert isinstance(wf.nodes[2], JoinNode)
    assert {o.name: o.expr for o in wf.outputs} == {"r": "j1"}


def test_conditions_with_else_branches_merge_only_on_the_same_labels() -> None:
    # After merging, "c2"'s else edge would leave "c1", whose "true" label matches: the
    # else branch would no longer be taken when the value is true.
    src = """
    workflow w {
      c1 = condition inputs.n > 1
      c2 = condition inputs.n > 1
      a = function "m:a" { effect: effectful, args: { x: 1 } }
      b = function "m:b" { effect: effectful, args: { x: 1 } }
      c1 -[true]-> a
      c2 -[%s]-> b
      input n: int
    }
    """
    wf, remarks = cse(src % "else")
    assert ids(wf) == ["c1", "c2", "a", "b"]
    assert 'would change their "else" branches' in missed(remarks)[0]
    wf, _ = cse(src % "false")
    assert ids(wf) == ["c1", "a", "b"]


def _cse_trace(wf: Workflow) -> tuple[Workflow, list[Any], list[Remark]]:
    ctx = PassContext(DiagnosticEngine())
    out = CsePass().run(wf, ctx)
    return out, list(ctx.rewriter.ops), list(ctx.remarks)


@given(st.randoms(use_true_random=False), st.integers(20, 150), st.booleans())
@settings(max_examples=60, deadline=None)
def test_a_scan_resumed_after_a_merge_decides_as_one_from_the_start(
    rng: random.Random, n: int, twins: bool
) -> None:
    """The fixpoint resumes each scan where the last merge cannot have changed a decision
    (`_resumable`), and rewrites only the nodes it knows read the duplicate (`_Uses`); scanning
    from the start and looking at every node each time must give the same patch, remark for
    remark."""
    from unittest import mock

    import aobc.passes.cse as cse_module

    wf = with_duplicates(rng, n) if twins else random_workflow(rng, n)
    if rng.random() < 0.5:  # cache keys naming nodes, for the merges to rename
        wf = optimize(wf, "cache-mark")
    resumed = _cse_trace(wf)
    with mock.patch.object(cse_module, "_resumable", return_value=None):
        assert _cse_trace(wf) == resumed
    # Nor does knowing which nodes read what (`_Uses`): looking at every node, the same.
    with mock.patch.object(cse_module._Uses, "of", return_value=None):
        assert _cse_trace(wf) == resumed


def test_resumed_scans_are_exercised() -> None:
    # So that the property above is not vacuous: merges whose scan resumes part-way happen.
    import aobc.passes.cse as cse_module

    seen = {"at j": 0, "earlier": 0, "from the start": 0}
    real = cse_module._resumable

    def spy(*args: Any) -> Any:
        got = real(*args)
        j = args[4][0]
        seen["from the start" if got is None else ("at j" if got[0] == j else "earlier")] += 1
        return got

    from unittest import mock

    with mock.patch.object(cse_module, "_resumable", spy):
        for seed in range(30):
            _cse_trace(random_workflow(random.Random(seed), 200))
    # A merge only adds edges to the kept node, which can block a pair but never unblock
    # one, so on real merges the scan resumes at the duplicate's position: the earlier
    # start is a guard, tested directly below.
    assert seen["at j"] > 0 and seen["from the start"] == 0, seen


def test_a_decision_a_change_would_flip_restarts_the_scan_there() -> None:
    """`_resumable` on a change no merge makes (an edge of the kept node taken away): the
    pair it blocked now merges, so the scan must start at that pair, with the buckets of
    the nodes before it only."""
    import aobc.passes.cse as cse_module
    from aobc.ir import Graph

    wf, _ = cse(
        """
        workflow w {
          output o = t.x
          x1 = http GET "https://a.example.com/v" { effect: idempotent }
          x2 = http GET "https://a.example.com/v" { effect: idempotent }
          t = function "m:t" { effect: pure, args: { a: x1.body, b: x2.body } }
          x1 -[when x1.status == 200]-> t
          x2 -[when x2.status == 201]-> t
        }
        """
    )
    # x2 is not merged into x1: both feed t under different guards.
    assert ids(wf) == ["x1", "x2", "t"]
    docs: cse_module.DocCache = {}
    scan = cse_module._scan(wf, docs, collect=False)
    assert scan.merge is None
    graph = scan.graph
    # As if a merge had been found at t (position 2): the buckets of x1 and x2, one bucket.
    buckets: cse_module.Buckets = {}
    for n in wf.nodes[:2]:
        k = cse_module._keys(n, graph, docs)
        buckets.setdefault((k.full, k.control), []).append(n.id)
    assert list(buckets.values()) == [["x1", "x2"]]
    # Take x1's guarded edge away: now nothing keeps x2 from merging into x1.
    changed = dataclasses.replace(wf, edges=tuple(e for e in wf.edges if e.src != "x1"))
    new_graph = Graph.of(changed)
    got = cse_module._resumable(wf, graph, changed, new_graph, (2, buckets), docs, {"x1", "t"})
    assert got is not None and got[0] == 1  # at x2
    assert list(got[1].values()) == [["x1"]]  # x2 taken back out of its bucket
    # With x1's edge in place, nothing flips: the scan goes on where it stopped.
    same = cse_module._resumable(wf, graph, wf, graph, (2, {**buckets}), docs, {"x1", "t"})
    assert same is not None and same[0] == 2


@given(st.randoms(use_true_random=False), st.integers(20, 150), st.booleans())
@settings(max_examples=40, deadline=None)
def test_the_graph_after_a_merge_is_the_graph_of_the_merged_workflow(
    rng: random.Random, n: int, twins: bool
) -> None:
    """cse updates its graph after each merge (`_next_graph`) instead of building it again:
    the same nodes, edge lists and order as `Graph.of`."""
    from unittest import mock

    import aobc.passes.cse as cse_module
    from aobc.ir import Graph

    real = cse_module._next_graph

    def check(old: Any, graph: Any, new: Any, *rest: Any) -> Any:
        got = real(old, graph, new, *rest)
        want = Graph.of(new)
        for table in ("nodes", "succs", "preds"):
            assert list(getattr(got, table).items()) == list(getattr(want, table).items())
        return got

    wf = with_duplicates(rng, n) if twins else random_workflow(rng, n)
    with mock.patch.object(cse_module, "_next_graph", check):
        _cse_trace(wf)


def test_a_join_any_reads_the_same_inputs_after_a_merge() -> None:
    # Found by the property above: merging n0_twin into n0 readies n2 together with n5, and
    # n5 (join any) used to wait behind n2's smaller index and see n2 too. A join that fires
    # on some inputs runs at once, and sees only those.
    src = """
workflow generated {
  output result = n5
  n0      = timer 1s
  n1      = function "pkg.mod0:f0" { effect: pure }
  n2      = timer 1s
  n5      = join any
  n0_twin = timer 1s
  n0 -> n2
  n0 -> n5
  n1 -> n5
  n2 -> n5
  n0_twin -> n2
}
"""
    assert validate(load_text(src, "g.aob"), "verify,cse,verify", seeds=3) is None
