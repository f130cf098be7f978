"""The coordinator core: routing rules, and that any completion order ends the same way."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.ir import Edge, Effect, FunctionNode, JoinMode, JoinNode, Node, Workflow
from aobc.runtime import core
from aobc.runtime.execir import J_N_OF_M, K_JOIN, ExecIR


def ir_of(text: str) -> ExecIR:
    return lower(load_text(text, "c.aob"))


def drain(ir: ExecIR, taken: dict[tuple[int, int], bool], rng: random.Random) -> list[int]:
    """Run the coordinator to the end, completing ready nodes in a random order."""
    st, ready = core.start(ir)
    while ready:
        i = ready.pop(rng.randrange(len(ready)))
        row = [taken.get((i, j), True) for j in ir.successors(i)]
        new, _ = core.complete(st, i, row)
        ready.extend(new)
    return st.status


def oracle(ir: ExecIR, taken: dict[tuple[int, int], bool]) -> list[int]:
    """The rules stated directly, node by node in topological order."""
    status = [core.PENDING] * len(ir.nodes)
    for j in ir.topo:
        preds = ir.predecessors(j)
        if not preds:
            status[j] = core.DONE
            continue
        took = sum(1 for p in preds if status[p] == core.DONE and taken.get((p, j), True))
        node = ir.nodes[j]
        if node.kind != K_JOIN:  # not a join: every input must have been taken
            ok = took == len(preds)
        elif node.join_mode == J_N_OF_M:
            ok = took >= node.join_n
        else:
            ok = took >= 1
        status[j] = core.DONE if ok else core.SKIPPED
    return status


def graphs() -> st.SearchStrategy[tuple[ExecIR, dict[tuple[int, int], bool], int]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[ExecIR, dict[tuple[int, int], bool], int]:
        n = draw(st.integers(1, 14))
        nodes: list[Node] = []
        edges: list[Edge] = []
        for i in range(n):
            parents = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
            if len(parents) >= 2 and draw(st.booleans()):
                mode = draw(st.sampled_from(list(JoinMode)))
                k = draw(st.integers(1, len(parents))) if mode is JoinMode.N_OF_M else None
                nodes.append(JoinNode(id=f"n{i}", effect=Effect.PURE, mode=mode, n=k))
            else:
                nodes.append(FunctionNode(id=f"n{i}", effect=Effect.PURE, fn="m:f"))
            edges += [Edge(src=f"n{p}", dst=f"n{i}") for p in parents]
        ir = lower(Workflow(name="g", nodes=tuple(nodes), edges=tuple(edges)))
        taken = {(e.src, e.dst): draw(st.booleans()) for e in ir.edges}
        return ir, taken, draw(st.integers(0, 2**16))

    return build()


@given(graphs())
@settings(max_examples=300)
def test_any_completion_order_matches_the_rules(
    case: tuple[ExecIR, dict[tuple[int, int], bool], int],
) -> None:
    ir, taken, seed = case
    assert drain(ir, taken, random.Random(seed)) == oracle(ir, taken)


def test_skips_propagate_through_plain_nodes_and_stop_at_joins() -> None:
    ir = ir_of(
        """
        workflow s {
          c = condition true
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          after_b = function "m:c" { effect: pure }
          j = join any
          c -[true]-> a -> j
          c -[false]-> b -> after_b -> j
        }
        """
    )
    st, ready = core.start(ir)
    idx = {n.id: i for i, n in enumerate(ir.nodes)}
    assert ready == [idx["c"]]
    new, skipped = core.complete(st, idx["c"], [True, False])
    assert new == [idx["a"]]
    assert sorted(skipped) == sorted([idx["b"], idx["after_b"]])
    assert st.status[idx["j"]] == core.PENDING  # one input skipped, one still to come
    new, _ = core.complete(st, idx["a"], None)
    assert new == [idx["j"]]


def test_n_of_m_is_skipped_as_soon_as_too_few_can_arrive() -> None:
    ir = ir_of(
        """
        workflow n {
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          c = function "m:c" { effect: pure }
          two = join 2
          a -> two
          b -> two
          c -> two
        }
        """
    )
    st, _ = core.start(ir)
    idx = {n.id: i for i, n in enumerate(ir.nodes)}
    core.skip(st, idx["a"])
    assert st.status[idx["two"]] == core.PENDING
    _, skipped = core.skip(st, idx["b"])
    assert skipped == [idx["two"]]
