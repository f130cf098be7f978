"""Emitters: JSON, DOT and Mermaid renderings of a workflow, and the per-kind dispatch."""

from __future__ import annotations

import json
from typing import ClassVar

import pytest

from aobc.backend.emit import (
    EMITTERS,
    DotEmitter,
    Emitter,
    JsonEmitter,
    MermaidEmitter,
    UnsupportedNodeError,
    get_emitter,
)
from aobc.backend.emit.base import node_detail
from aobc.backend.emit.dot import dot_quote
from aobc.backend.emit.mermaid import mermaid_id, mermaid_text
from aobc.backend.serialize import to_document
from aobc.frontend import load_text
from aobc.ir import (
    ConditionNode,
    Edge,
    Effect,
    FunctionNode,
    HttpNode,
    NodeKind,
    Workflow,
)

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

ALL_KINDS = """
workflow every_kind {
  input items: list
  h = http POST "https://api.example.com/v1/things" { effect: effectful }
  f = function "pkg.mod:fn" { effect: pure }
  m = map inputs.items { body: function "pkg.mod:each" { effect: pure } }
  j = join 2
  c = condition h.status == 200
  s = composite workflow sub { x = function "pkg.mod:x" { effect: pure } } { effect: pure }
  g = agent { model: "gpt-4o", prompt: "hi" }
  a = approval { approvers: ["ops", "lead"] }
  t = timer 15m
  h -> c
  c -[true]-> f -> j
  c -[false]-> m -> j
  j -> s -> g -> a -> t
}
"""


@pytest.fixture(scope="module")
def sample() -> Workflow:
    return load_text(SAMPLE)


@pytest.fixture(scope="module")
def every_kind() -> Workflow:
    return load_text(ALL_KINDS)


def test_get_emitter() -> None:
    assert isinstance(get_emitter("json"), JsonEmitter)
    assert isinstance(get_emitter("dot"), DotEmitter)
    assert isinstance(get_emitter("mermaid"), MermaidEmitter)
    assert sorted(EMITTERS) == ["dot", "json", "mermaid"]


def test_unknown_emitter_lists_the_known_ones() -> None:
    with pytest.raises(KeyError, match="unknown emitter 'svg'; known emitters: dot, json, mermaid"):
        get_emitter("svg")


@pytest.mark.parametrize("name", ["json", "dot", "mermaid"])
def test_emitters_are_deterministic(name: str, sample: Workflow, every_kind: Workflow) -> None:
    for wf in (sample, every_kind):
        first = get_emitter(name).emit(wf)
        assert first == get_emitter(name).emit(wf)
        assert first.endswith("\n")
        assert not first.endswith("\n\n")
        # The same workflow loaded from its JSON document renders the same.
        again = load_text(json.dumps(to_document(wf)), name="w.json")
        assert get_emitter(name).emit(again) == first


# --- json ------------------------------------------------------------------------------


def test_json_is_the_document_in_its_own_key_order(sample: Workflow) -> None:
    text = get_emitter("json").emit(sample)
    assert text == json.dumps(to_document(sample), indent=2, ensure_ascii=False) + "\n"
    assert json.loads(text) == to_document(sample)
    assert list(json.loads(text)) == ["name", "inputs", "outputs", "nodes", "edges"]
    assert list(json.loads(text)["nodes"][0]) == ["id", "type", "effect", "fn"]


def test_json_keeps_non_ascii() -> None:
    wf = load_text('workflow w { a = function "m:f" { effect: pure, args: { t: "héllo ✓" } } }')
    assert "héllo ✓" in get_emitter("json").emit(wf)


# --- dot -------------------------------------------------------------------------------


def test_dot(sample: Workflow) -> None:
    lines = get_emitter("dot").emit(sample).splitlines()
    assert lines[0] == 'digraph "w" {'
    assert lines[-1] == "}"
    assert (
        '  "a" [label="a\\nfunction m:f", shape=box, fillcolor="#d5e8d4", style="filled,rounded"];'
        in lines
    )
    assert (
        '  "b" [label="b\\nhttp GET api.example.com", shape=box, fillcolor="#dae8fc", '
        'style="filled"];' in lines
    )
    assert (
        '  "s" [label="s\\ncomposite inner", shape=component, fillcolor="#e6e6e6", style="filled"];'
        in lines
    )
    assert (
        '  "d" [label="d\\njoin any", shape=invhouse, fillcolor="#f5f5f5", style="filled"];'
        in lines
    )
    assert '  "a" -> "b";' in lines
    assert '  "c" -> "d" [label="approved"];' in lines
    assert '  "b" -> "d" [label="when b.ok", style=dashed];' in lines


def test_dot_draws_effectful_nodes_bold(sample: Workflow) -> None:
    text = get_emitter("dot").emit(sample)
    (approval,) = [line for line in text.splitlines() if line.startswith('  "c" [')]
    assert 'style="filled,bold"' in approval
    assert "penwidth=2" in approval
    assert text.count("bold") == 1


def test_dot_handles_every_kind(every_kind: Workflow) -> None:
    text = get_emitter("dot").emit(every_kind)
    for node_id, shape in [
        ("h", "box"), ("f", "box"), ("m", "box3d"), ("j", "invhouse"), ("c", "diamond"),
        ("s", "component"), ("g", "hexagon"), ("a", "octagon"), ("t", "ellipse"),
    ]:  # fmt: skip
        assert f'  "{node_id}" [label="{node_id}\\n' in text
        assert f"shape={shape}," in text
    assert '"m" [label="m\\nmap over inputs.items (function)"' in text
    assert '"j" [label="j\\njoin 2 of m"' in text
    assert '"t" [label="t\\ntimer 15m"' in text
    assert '"a" [label="a\\napproval ops, lead"' in text
    assert '"c" -> "f" [label="true"];' in text


def test_dot_quotes_everything() -> None:
    assert dot_quote('a"b') == '"a\\"b"'
    assert dot_quote("a\\nb") == '"a\\\\nb"'  # a literal backslash-n is not a line break
    assert dot_quote("x\ny") == '"x\\ny"'
    weird = Workflow(
        name="w",
        nodes=(
            FunctionNode(id='say "hi"', effect=Effect.PURE, fn="m:f"),
            ConditionNode(id="k", effect=Effect.PURE, expr='inputs.x == "a\\b"'),
        ),
        edges=(Edge(src='say "hi"', dst="k", when='inputs.y != "}"'),),
    )
    text = get_emitter("dot").emit(weird)
    assert '  "say \\"hi\\"" [label="say \\"hi\\"\\nfunction m:f"' in text
    assert '"k" [label="k\\ncondition inputs.x == \\"a\\\\b\\""' in text
    assert '  "say \\"hi\\"" -> "k" [label="when inputs.y != \\"}\\"", style=dashed];' in text


# --- mermaid ---------------------------------------------------------------------------


def test_mermaid(sample: Workflow) -> None:
    lines = get_emitter("mermaid").emit(sample).splitlines()
    assert lines[:4] == ["---", 'title: "w"', "---", "flowchart TD"]
    assert '  n_a("a<br/>function m:f")' in lines
    assert '  n_b["b<br/>http GET api.example.com"]' in lines
    assert '  n_c>"c<br/>approval ops"]' in lines
    assert '  n_s[/"s<br/>composite inner"/]' in lines
    assert '  n_d(("d<br/>join any"))' in lines
    assert "  n_a --> n_b" in lines
    assert '  n_c -->|"approved"| n_d' in lines
    assert '  n_b -.->|"when b.ok"| n_d' in lines
    assert "  class n_c kind_approval" in lines
    assert "  class n_c effectful" in lines
    assert "  classDef effectful stroke:#000,stroke-width:3px" in lines


def test_mermaid_handles_every_kind(every_kind: Workflow) -> None:
    text = get_emitter("mermaid").emit(every_kind)
    for opening in [
        'n_h["',
        'n_f("',
        'n_m[["',
        'n_j(("',
        'n_c{"',
        'n_s[/"',
        'n_g{{"',
        'n_a>"',
        'n_t(["',
    ]:
        assert f"  {opening}" in text
    assert "  class n_h,n_a effectful" in text
    assert 'n_c{"c<br/>condition h.status == 200"}' in text


def test_mermaid_escapes_labels() -> None:
    assert mermaid_text('a "b" <c> #d') == "a #quot;b#quot; #lt;c#gt; #35;d"
    assert mermaid_text("x\ny") == "x<br/>y"
    wf = Workflow(
        name="w",
        nodes=(
            ConditionNode(id="k", effect=Effect.PURE, expr='inputs.x == "a"'),
            FunctionNode(id="end", effect=Effect.PURE, fn="m:f"),
        ),
        edges=(Edge(src="k", dst="end", label="true", when='inputs.y == "z"'),),
    )
    text = get_emitter("mermaid").emit(wf)
    assert '  n_k{"k<br/>condition inputs.x == #quot;a#quot;"}' in text
    assert '  n_k -.->|"true when inputs.y == #quot;z#quot;"| n_end' in text


def test_mermaid_ids_are_safe_and_distinct() -> None:
    assert mermaid_id("end") == "n_end"
    ids = ["a-b", "a_2d_b", "a b", "a_b", 'x"y', "é"]
    mapped = [mermaid_id(i) for i in ids]
    assert len(set(mapped)) == len(ids)
    assert all(m.replace("_", "").isalnum() and m.isascii() for m in mapped)


# --- dispatch --------------------------------------------------------------------------


def test_dispatch_tables_are_built_per_class() -> None:
    assert set(DotEmitter._dispatch) == set(NodeKind)
    assert set(MermaidEmitter._dispatch) == set(NodeKind)
    assert JsonEmitter._dispatch == {}


class _HttpOnly(Emitter):
    name: ClassVar[str] = "http-only"

    def http_emit(self, node: HttpNode) -> str:
        return f"http {node.id}"

    def emit_edge(self, edge: Edge, wf: Workflow) -> str:
        return f"{edge.src}->{edge.dst}"


def test_a_kind_without_a_method_is_refused() -> None:
    http = HttpNode(id="h", effect=Effect.IDEMPOTENT, method="GET", url="https://x.example/")
    fn = FunctionNode(id="f", effect=Effect.PURE, fn="m:f")
    emitter = _HttpOnly()
    assert set(_HttpOnly._dispatch) == {NodeKind.HTTP}
    assert emitter.emit(Workflow(name="w", nodes=(http,))) == "http h\n"
    with pytest.raises(
        UnsupportedNodeError, match="the http-only emitter cannot emit function node 'f'"
    ):
        emitter.emit(Workflow(name="w", nodes=(http, fn), edges=(Edge(src="h", dst="f"),)))


def test_subclass_inherits_and_extends_dispatch() -> None:
    class _WithFunction(_HttpOnly):
        def function_emit(self, node: FunctionNode) -> str:
            return f"fn {node.id}"

    assert set(_WithFunction._dispatch) == {NodeKind.HTTP, NodeKind.FUNCTION}
    assert set(_HttpOnly._dispatch) == {NodeKind.HTTP}  # the parent's table is untouched
    fn = FunctionNode(id="f", effect=Effect.PURE, fn="m:f")
    assert _WithFunction().emit(Workflow(name="w", nodes=(fn,))) == "fn f\n"


def test_node_detail_cuts_long_text() -> None:
    long_expr = "inputs.a == " + " + ".join(["inputs.b"] * 20)
    detail = node_detail(ConditionNode(id="c", effect=Effect.PURE, expr=long_expr))
    assert len(detail) == 48
    assert detail.endswith("…")


def test_http_with_templated_host_shows_the_url() -> None:
    node = HttpNode(id="h", effect=Effect.IDEMPOTENT, method="GET", url="${inputs.base}/x")
    assert node_detail(node) == "GET ${inputs.base}/x"
