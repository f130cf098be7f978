"""`Rewriter.remove_nodes`: the operations of `remove_node` in turn, computed in one walk."""

from __future__ import annotations

import dataclasses
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.serialize import to_document
from aobc.frontend.jsonpatch import apply_ops
from aobc.ir import Edge, Workflow
from aobc.passes.rewriter import Rewriter
from aobc.testing.generate import random_workflow


def in_turn(wf: Workflow, ids: list[str]) -> tuple[Workflow, list[object]]:
    rw = Rewriter()
    for nid in ids:
        wf = rw._remove_one(wf, nid)
    return wf, rw.ops


def at_once(wf: Workflow, ids: list[str]) -> tuple[Workflow, list[object]]:
    rw = Rewriter()
    wf = rw.remove_nodes(wf, ids)
    return wf, rw.ops


@settings(max_examples=150)
@given(seed=st.integers(0, 2**16), n=st.integers(2, 40), data=st.data())
def test_removing_many_nodes_records_what_removing_each_in_turn_does(
    seed: int, n: int, data: st.DataObject
) -> None:
    wf = random_workflow(random.Random(seed), n)
    ids = [node.id for node in wf.nodes]
    doomed = data.draw(st.lists(st.sampled_from(ids), unique=True, max_size=len(ids)))
    if data.draw(st.booleans()) and wf.edges:
        # A self-loop and a repeated edge: each removed once, with its node.
        e = wf.edges[0]
        loop = Edge(src=e.src, dst=e.src)
        wf = dataclasses.replace(wf, edges=(*wf.edges, loop, e))
    expected = in_turn(wf, doomed)
    assert at_once(wf, doomed) == expected
    # And the operations do to the document what the removals did to the workflow.
    ops = expected[1]
    assert apply_ops(to_document(wf), ops) == to_document(expected[0])  # type: ignore[arg-type]


def test_repeated_ids_are_removed_in_turn() -> None:
    wf = random_workflow(random.Random(1), 6)
    twin = dataclasses.replace(wf.nodes[2])
    wf = dataclasses.replace(wf, nodes=(*wf.nodes, twin))
    ids = [wf.nodes[2].id, wf.nodes[2].id, wf.nodes[0].id]
    assert at_once(wf, ids) == in_turn(wf, ids)


@settings(max_examples=100)
@given(seed=st.integers(0, 2**16), n=st.integers(1, 40), data=st.data())
def test_removing_one_node_records_what_it_always_did(
    seed: int, n: int, data: st.DataObject
) -> None:
    wf = random_workflow(random.Random(seed), n)
    if data.draw(st.booleans()):
        wf = dataclasses.replace(wf, nodes=(*wf.nodes, wf.nodes[-1]))  # a repeated id
    nid = data.draw(st.sampled_from([node.id for node in wf.nodes]))
    fast, slow = Rewriter(), Rewriter()
    assert fast.remove_node(wf, nid) == slow._remove_one(wf, nid)
    assert fast.ops == slow.ops


def test_removing_an_unknown_node_fails_as_it_always_did() -> None:
    wf = random_workflow(random.Random(3), 5)
    with pytest.raises(KeyError, match="no node 'nope'"):
        Rewriter().remove_node(wf, "nope")
