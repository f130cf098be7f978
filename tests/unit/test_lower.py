"""Lowering a Workflow to ExecIR: numbering, CSR arrays, constants, subs, origins, refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend import aobir
from aobc.backend.lower import COMPOSITE_HASH_KEY, lower
from aobc.backend.serialize import node_document, to_document, workflow_hash
from aobc.canonical import canonical_bytes
from aobc.frontend import load, load_text
from aobc.ir import (
    CompositeNode,
    Edge,
    Effect,
    FunctionNode,
    Graph,
    InputDecl,
    JoinMode,
    JoinNode,
    OutputDecl,
    ValueType,
    Workflow,
)
from aobc.runtime.execir import (
    E_EFFECTFUL,
    E_IDEMPOTENT,
    E_PURE,
    J_ALL,
    J_ANY,
    J_N_OF_M,
    K_APPROVAL,
    K_COMPOSITE,
    K_FUNCTION,
    K_HTTP,
    K_JOIN,
    PRIORITIES,
    ExecIR,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SAMPLE = """
workflow w {
  input n: int
  output r = b.x
  a = function "m:f" { effect: pure }
  b = http GET "https://api.example.com/x" { effect: idempotent, timeout: 10s, retries: 2 }
  c = approval { approvers: ["ops"], timeout: 1h, escalate: ["lead"] }
  s = composite workflow inner { input q: any  z = function "m:g" { effect: pure } } {
    effect: pure, args: { q: a.v }
  }
  a -> b -> c
  a -> s
  c -[approved]-> d
  d = join any
  b -[when b.ok]-> d
}
"""


def _fn(node_id: str, fn: str = "m:f") -> FunctionNode:
    return FunctionNode(id=node_id, effect=Effect.PURE, fn=fn)


def _wf(n: int, edges: list[tuple[int, int]]) -> Workflow:
    nodes = tuple(_fn(f"n{i}") for i in range(n))
    return Workflow(
        name="g", nodes=nodes, edges=tuple(Edge(src=f"n{s}", dst=f"n{d}") for s, d in edges)
    )


@pytest.fixture(scope="module")
def sample() -> Workflow:
    return load_text(SAMPLE)


def test_nodes_are_numbered_in_declaration_order(sample: Workflow) -> None:
    ir = lower(sample)
    assert [n.id for n in ir.nodes] == ["a", "b", "c", "s", "d"]
    assert ir.node_index("d") == 4
    assert (ir.name, ir.namespace, ir.format) == ("w", "default", aobir.FORMAT_VERSION)


def test_node_codes(sample: Workflow) -> None:
    a, b, c, s, d = lower(sample).nodes
    assert (a.kind, a.effect, a.timeout_ms, a.max_attempts) == (K_FUNCTION, E_PURE, -1, 1)
    assert (b.kind, b.effect, b.timeout_ms, b.max_attempts) == (K_HTTP, E_IDEMPOTENT, 10_000, 3)
    assert (c.kind, c.effect, c.timeout_ms) == (K_APPROVAL, E_EFFECTFUL, 3_600_000)
    assert s.kind == K_COMPOSITE
    assert (d.kind, d.join_mode, d.join_n) == (K_JOIN, J_ANY, 0)
    assert all(n.priority == PRIORITIES.index("medium") for n in (a, b, c, s, d))
    assert all(n.join_mode == J_ALL and n.join_n == 0 for n in (a, b, c, s))
    assert [n.sub for n in (a, b, c, s, d)] == [-1, -1, -1, 0, -1]


def test_csr_and_pred_arrays(sample: Workflow) -> None:
    ir = lower(sample)
    # a: b (e0), s (e2) | b: c (e1), d (e4) | c: d (e3) | s, d: none
    assert ir.succ_offsets == [0, 2, 4, 5, 5, 5]
    assert ir.succ_targets == [1, 3, 2, 4, 4]
    assert ir.succ_edges == [0, 2, 1, 4, 3]
    assert ir.pred_offsets == [0, 0, 1, 2, 3, 5]
    assert ir.pred_sources == [0, 1, 0, 2, 1]
    assert ir.pred_edges == [0, 1, 2, 3, 4]
    assert ir.pred_counts == [0, 1, 1, 1, 2]
    assert ir.roots == [0]
    assert ir.topo == [0, 1, 2, 4, 3]
    assert ir.successors(1) == [2, 4]
    assert ir.predecessors(4) == [2, 1]


def test_edges_refer_to_constants(sample: Workflow) -> None:
    ir = lower(sample)
    assert [(e.src, e.dst) for e in ir.edges] == [(0, 1), (1, 2), (0, 3), (2, 4), (1, 4)]
    assert ir.const(ir.edges[3].label) == "approved"
    assert ir.edges[3].when == -1
    assert ir.const(ir.edges[4].when) == "b.ok"
    assert ir.edges[4].label == -1
    assert ir.const(ir.outputs[0].expr) == "b.x"
    assert ir.outputs[0].name == "r"
    assert [(i.name, i.type, i.required, i.default) for i in ir.inputs] == [
        ("n", "int", True, None)
    ]


def test_config_is_the_node_document(sample: Workflow) -> None:
    ir = lower(sample)
    for node, en in zip(sample.nodes, ir.nodes, strict=True):
        config = ir.consts[en.config]
        assert en.config_hash == hashlib.sha256(canonical_bytes(config)).hexdigest()
        if not isinstance(node, CompositeNode):
            assert config == node_document(node)
    assert ir.workflow_hash == workflow_hash(sample)


def test_composite_is_lowered_into_subs(sample: Workflow) -> None:
    ir = lower(sample)
    composite = sample.nodes[3]
    assert isinstance(composite, CompositeNode)
    assert ir.subs == [lower(composite.workflow)]
    config = ir.consts[ir.nodes[3].config]
    assert "workflow" not in config
    assert (
        config[COMPOSITE_HASH_KEY] == ir.subs[0].workflow_hash == workflow_hash(composite.workflow)
    )
    assert config["args"] == {"q": "${a.v}"}
    assert list(config) == ["id", "type", "effect", COMPOSITE_HASH_KEY, "args"]


def test_composite_config_hash_follows_its_sub_workflow(sample: Workflow) -> None:
    # The sub-workflow is not in the config, but a change to it must still change the node's
    # share of its cache key.
    changed = load_text(SAMPLE.replace('"m:g"', '"m:other"'))
    assert lower(changed).nodes[3].config_hash != lower(sample).nodes[3].config_hash
    assert lower(changed).nodes[0].config_hash == lower(sample).nodes[0].config_hash


def test_nested_composites() -> None:
    text = """
    workflow outer {
      s = composite workflow mid {
        t = composite workflow leaf { x = function "m:x" { effect: pure } } { effect: pure }
      } { effect: pure }
    }
    """
    ir = lower(load_text(text))
    assert ir.subs[0].name == "mid"
    assert ir.subs[0].subs[0].name == "leaf"
    assert ir.subs[0].nodes[0].sub == 0
    assert ir.subs[0].subs[0].subs == []
    assert aobir.decode(aobir.encode(ir)) == ir


def test_constants_are_deduplicated_in_first_use_order() -> None:
    wf = Workflow(
        name="g",
        nodes=(_fn("a"), _fn("b"), _fn("c")),
        edges=(
            Edge(src="a", dst="b", when="a.ok"),
            Edge(src="a", dst="c", when="a.ok"),
            Edge(src="b", dst="c", when="p1"),
        ),
        outputs=(OutputDecl(name="o", expr="a.ok"),),
    )
    ir = lower(wf, {"a": "p1", "b": "p1", "c": "p2"})
    assert ir.consts == [
        node_document(wf.nodes[0]),
        "p1",
        node_document(wf.nodes[1]),
        node_document(wf.nodes[2]),
        "p2",
        "a.ok",
    ]
    assert ir.edges[0].when == ir.edges[1].when == ir.outputs[0].expr == 5
    assert ir.edges[2].when == ir.nodes[0].origin == ir.nodes[1].origin == 1
    keys = [canonical_bytes(c) for c in ir.consts]
    assert len(keys) == len(set(keys))


def test_constants_of_different_json_types_stay_apart() -> None:
    # 1, 1.0, true and "1" are different JSON values; canonical bytes keep them apart.
    wf = Workflow(
        name="g",
        nodes=(_fn("a"),),
        inputs=tuple(
            InputDecl(name=f"i{k}", type=ValueType.ANY, default=v, required=False)
            for k, v in enumerate([1, 1.0, True])
        ),
        outputs=(OutputDecl(name="o", expr="1"),),
    )
    ir = lower(wf)
    assert [i.default for i in ir.inputs] == [1, 1.0, True]
    assert [type(i.default) for i in ir.inputs] == [int, float, bool]
    assert ir.const(ir.outputs[0].expr) == "1"


def test_origins() -> None:
    wf = _wf(3, [(0, 1), (1, 2)])
    ir = lower(wf, {"n0": "sha256:aaa", "n1": None, "missing": "p9"})
    assert ir.const(ir.nodes[0].origin) == "sha256:aaa"
    assert ir.nodes[1].origin == -1
    assert ir.nodes[2].origin == -1
    assert "p9" not in ir.consts
    assert all(n.origin == -1 for n in lower(wf).nodes)


def test_join_n_of_m() -> None:
    wf = Workflow(
        name="g",
        nodes=(
            _fn("a"),
            _fn("b"),
            _fn("c"),
            JoinNode(id="j", effect=Effect.PURE, mode=JoinMode.N_OF_M, n=2),
        ),
        edges=tuple(Edge(src=s, dst="j") for s in "abc"),
    )
    j = lower(wf).nodes[3]
    assert (j.join_mode, j.join_n) == (J_N_OF_M, 2)
    all_join = JoinNode(id="j", effect=Effect.PURE)
    j2 = lower(Workflow(name="g", nodes=(*wf.nodes[:3], all_join), edges=wf.edges)).nodes[3]
    assert (j2.join_mode, j2.join_n) == (J_ALL, 0)


def test_roots_and_topo_on_a_diamond_with_two_roots() -> None:
    # n0 -> n2, n1 -> n2, n2 -> n3, n0 -> n3; declaration order breaks ties.
    ir = lower(_wf(5, [(0, 2), (1, 2), (2, 3), (0, 3)]))
    assert ir.roots == [0, 1, 4]
    assert ir.topo == [0, 1, 2, 3, 4]
    assert ir.pred_counts == [0, 0, 2, 2, 0]


def test_empty_workflow() -> None:
    ir = lower(Workflow(name="e"))
    assert ir.nodes == []
    assert ir.succ_offsets == [0]
    assert ir.pred_offsets == [0]
    assert ir.roots == []
    assert ir.topo == []
    assert ir.consts == []
    assert aobir.decode(aobir.encode(ir)) == ir


@st.composite
def _dags(draw: st.DrawFn) -> tuple[int, list[tuple[int, int]]]:
    """A random DAG over nodes declared in a random order, with its edges in random order."""
    n = draw(st.integers(1, 12))
    rank = draw(st.permutations(range(n)))
    pairs = [(s, d) for s in range(n) for d in range(n) if rank[s] < rank[d]]
    edges = draw(st.lists(st.sampled_from(pairs), unique=True) if pairs else st.just([]))
    return n, edges


@settings(deadline=None, derandomize=True, max_examples=150)
@given(_dags())
def test_arrays_agree_with_graph(dag: tuple[int, list[tuple[int, int]]]) -> None:
    n, edges = dag
    wf = _wf(n, edges)
    ir = lower(wf)
    graph = Graph.of(wf)
    order = graph.topo_order()
    assert order is not None
    assert ir.topo == [int(nid[1:]) for nid in order]
    assert ir.roots == [int(nid[1:]) for nid in graph.roots()]
    for i in range(n):
        assert ir.successors(i) == [int(e.dst[1:]) for e in graph.succs[f"n{i}"]]
        assert ir.predecessors(i) == [int(e.src[1:]) for e in graph.preds[f"n{i}"]]
        row = ir.succ_edges[ir.succ_offsets[i] : ir.succ_offsets[i + 1]]
        assert all(ir.edges[k].src == i for k in row)
    aobir.validate(ir)


def test_lowering_is_deterministic(sample: Workflow) -> None:
    first, second = lower(sample, {"b": "p1"}), lower(sample, {"b": "p1"})
    assert first == second
    assert aobir.encode(first) == aobir.encode(second)
    # The same workflow written as JSON lowers to the same bytes.
    again = load_text(json.dumps(to_document(sample)), name="w.json")
    assert again == sample
    assert aobir.encode(lower(again, {"b": "p1"})) == aobir.encode(first)


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.aob")), ids=lambda p: p.stem)
def test_examples_lower_and_validate(path: Path) -> None:
    ir = lower(load(path).workflow)
    aobir.validate(ir)
    assert aobir.decode(aobir.encode(ir)) == ir


def test_dangling_edge_is_refused() -> None:
    wf = Workflow(name="g", nodes=(_fn("a"),), edges=(Edge(src="a", dst="ghost"),))
    with pytest.raises(ValueError, match="undeclared node 'ghost'"):
        lower(wf)


def test_cycle_is_refused() -> None:
    with pytest.raises(ValueError, match=r"cycle: n1 -> n2 -> n1"):
        lower(_wf(3, [(0, 1), (1, 2), (2, 1)]))


def test_cycle_in_a_sub_workflow_is_refused() -> None:
    inner = _wf(2, [(0, 1), (1, 0)])
    wf = Workflow(name="o", nodes=(CompositeNode(id="s", effect=Effect.PURE, workflow=inner),))
    with pytest.raises(ValueError, match="cycle"):
        lower(wf)


def test_duplicate_ids_are_refused() -> None:
    wf = Workflow(name="g", nodes=(_fn("a"), _fn("a", "m:g")))
    with pytest.raises(ValueError, match="declared twice"):
        lower(wf)


def _chain(n: int) -> Workflow:
    nodes = tuple(_fn(f"n{i}", f"m:f{i % 7}") for i in range(n))
    edges = tuple(Edge(src=f"n{i}", dst=f"n{i + 1}") for i in range(n - 1))
    return Workflow(name="chain", nodes=nodes, edges=edges)


def test_ten_thousand_nodes_lower() -> None:
    # Speed is measured in benchmarks/; this only checks that the big case is right.
    ir = lower(_chain(10_000))
    assert ir.topo == list(range(10_000))
    assert ir.roots == [0]


def test_lowered_ir_is_an_execir(sample: Workflow) -> None:
    assert isinstance(lower(sample), ExecIR)
