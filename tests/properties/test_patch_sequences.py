"""Random patch sequences materialize deterministically, to exactly the intended workflow."""

from __future__ import annotations

import dataclasses
import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.serialize import to_document, workflow_bytes
from aobc.canonical import canonical_bytes
from aobc.frontend.jsonpatch import diff
from aobc.frontend.overlay import Overlay, materialize
from aobc.frontend.patchfile import Patch
from aobc.ir import Edge, Effect, FunctionNode, Graph, Workflow
from aobc.ir.reads import node_reads
from aobc.testing.generate import random_workflow


def _mutate(rng: random.Random, wf: Workflow, step: int) -> Workflow:
    """One valid change: add a node, remove an unread leaf, retime a node, or add an edge."""
    choice = rng.randrange(4)
    graph = Graph.of(wf)
    if choice == 0 or not wf.nodes:
        parent = rng.choice(wf.nodes).id if wf.nodes else None
        node = FunctionNode(id=f"added{step}", effect=rng.choice(list(Effect)), fn="m:f")
        edges = (*wf.edges, Edge(src=parent, dst=node.id)) if parent else wf.edges
        return dataclasses.replace(wf, nodes=(*wf.nodes, node), edges=edges)
    if choice == 1:
        read: set[str] = set()
        for n in wf.nodes:
            read |= node_reads(n)
        read |= {o.expr.split(".")[0] for o in wf.outputs}
        leaves = [n.id for n in wf.nodes if not graph.succs[n.id] and n.id not in read]
        if leaves:
            gone = rng.choice(leaves)
            return dataclasses.replace(
                wf,
                nodes=tuple(n for n in wf.nodes if n.id != gone),
                edges=tuple(e for e in wf.edges if gone not in (e.src, e.dst)),
            )
        return wf
    if choice == 2:
        i = rng.randrange(len(wf.nodes))
        nodes = list(wf.nodes)
        nodes[i] = dataclasses.replace(nodes[i], timeout_ms=rng.choice((1000, 2000, 3000)))
        return dataclasses.replace(wf, nodes=tuple(nodes))
    order = graph.topo_order() or []
    if len(order) >= 2:
        a, b = sorted(rng.sample(range(len(order)), 2))
        edge = Edge(src=order[a], dst=order[b])
        if edge.key not in {e.key for e in wf.edges} and graph.nodes[order[b]].KIND.value != "join":
            return dataclasses.replace(wf, edges=(*wf.edges, edge))
    return wf


@given(st.randoms(use_true_random=False), st.integers(1, 20), st.integers(1, 8))
@settings(max_examples=80)
def test_random_patch_sequences_materialize_deterministically(
    rng: random.Random, n: int, k: int
) -> None:
    base = random_workflow(rng, n)
    versions = [base]
    for step in range(k):
        versions.append(_mutate(rng, versions[-1], step))
    patches = []
    for before, after in itertools.pairwise(versions):
        ops = diff(to_document(before), to_document(after))
        patches.append(Patch(ops=tuple(ops), author_kind="human", author="prop", base=None))
    first = materialize(base, patches)
    second = materialize(base, patches)
    assert canonical_bytes(first.document) == canonical_bytes(second.document)
    assert first.hash == second.hash
    assert workflow_bytes(first.workflow) == workflow_bytes(versions[-1])


@given(st.randoms(use_true_random=False), st.integers(2, 20))
@settings(max_examples=60)
def test_patches_pinned_to_their_base_apply_the_same(rng: random.Random, n: int) -> None:
    base = random_workflow(rng, n)
    overlay = Overlay(base)
    wf = base
    for step in range(4):
        nxt = _mutate(rng, wf, step)
        ops = diff(to_document(wf), to_document(nxt))
        overlay.apply(Patch(ops=tuple(ops), base=overlay.head.hash))
        wf = nxt
    assert overlay.head.workflow == wf
    # Every version records its document's hash; a patch names the hash it was written on.
    assert [v.patch.base for v in overlay.history[1:]] == [v.hash for v in overlay.history[:-1]]
