"""`coalesce-http`: what it batches, every rule that stops it (with its remark), and a
differential check on generated workflows full of opportunities."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.serialize import to_document
from aobc.diagnostics import DiagnosticEngine
from aobc.errors import PassError
from aobc.frontend import load, load_text
from aobc.frontend.jsonpatch import apply_ops
from aobc.frontend.overlay import Overlay
from aobc.ir import HttpNode, Workflow
from aobc.passes.base import PassContext
from aobc.passes.coalesce_http import CoalesceHttpPass, origin_url
from aobc.passes.pipeline import PassPipeline
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from aobc.tv import validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GET = 'http GET "https://api.example.com/{path}" {{ effect: idempotent, batchable: true{extra} }}'


def get(path: str, extra: str = "") -> str:
    return GET.format(path=path, extra=f", {extra}" if extra else "")


def run(text: str, **options: int) -> tuple[Workflow, Workflow, PassContext]:
    wf = load_text(text)
    assert not [d for d in verify(wf, DEFAULT_POLICY) if d.is_error]
    ctx = PassContext(DiagnosticEngine())
    out = CoalesceHttpPass(**options).run(wf, ctx)
    assert apply_ops(to_document(wf), ctx.rewriter.ops) == to_document(out)
    assert not [d.message for d in verify(out, DEFAULT_POLICY) if d.is_error]
    return wf, out, ctx


def missed(ctx: PassContext) -> list[str]:
    return [r.message for r in ctx.remarks if r.kind == "missed"]


def edges(wf: Workflow) -> set[tuple[str, str]]:
    return {(e.src, e.dst) for e in wf.edges}


VISION = f"""
workflow vision {{
  output merged = merge.items
  fetch_A = {get("a")}
  parse_A = function "m:parse" {{ effect: pure, args: {{ page: fetch_A.body }} }}
  fetch_B = {get("b")}
  parse_B = function "m:parse" {{ effect: pure, args: {{ page: fetch_B.body }} }}
  merge = function "m:merge" {{ effect: pure, args: {{ a: parse_A.items, b: parse_B.items }} }}
  fetch_A -> parse_A -> fetch_B -> parse_B -> merge
}}
"""


def test_the_vision_example_becomes_one_batch_feeding_parallel_parses() -> None:
    wf, out, ctx = run(VISION)
    batch = out.node("batch_fetch_A_B")
    assert isinstance(batch, HttpNode)
    assert batch.method == "BATCH"
    assert batch.url == "https://api.example.com"
    assert [r["url"] for r in batch.requests or ()] == [
        "https://api.example.com/a",
        "https://api.example.com/b",
    ]
    assert {n.id for n in out.nodes} == {"batch_fetch_A_B", "parse_A", "parse_B", "merge"}
    # parse_A and parse_B both wait for the batch only, so they run in parallel.
    assert edges(out) == {
        ("batch_fetch_A_B", "parse_A"),
        ("batch_fetch_A_B", "parse_B"),
        ("parse_A", "merge"),
        ("parse_B", "merge"),
    }
    [passed] = [r for r in ctx.remarks if r.kind == "passed"]
    assert 'dissolved the ordering edge "parse_A" -> "fetch_B"' in passed.message
    assert validate(wf, "coalesce-http") is None


def test_the_vision_example_file_coalesces_and_refines() -> None:
    wf = load(EXAMPLES / "vision_coalesce.aob").workflow
    result = PassPipeline.parse("verify,coalesce-http,verify").run(Overlay(wf))
    assert result.ok
    assert [n.id for n in result.workflow.nodes] == [
        "batch_fetch_A_B",
        "parse_A",
        "parse_B",
        "merge",
    ]
    assert validate(wf, "coalesce-http", seeds=4) is None


def test_reads_guards_and_outputs_read_the_batch_element() -> None:
    _, out, _ = run(
        f"""
        workflow w {{
          output first = a.body
          a = {get("a")}
          b = {get("b")}
          use = function "m:use" {{ effect: pure, args: {{ x: a.body.n, y: "n=${{b.status}}" }} }}
          a -[when a.ok]-> use
          b -[when b.status == 200]-> use
        }}
        """
    )
    text = to_document(out)
    assert text["outputs"] == {"first": "batch_a_b[0].body"}
    assert text["nodes"][1]["args"] == {
        "x": "${batch_a_b[0].body.n}",
        "y": "n=${batch_a_b[1].status}",
    }
    # `use` ran only when both edges were taken: the one merged edge carries both guards.
    assert text["edges"] == [
        {"from": "batch_a_b", "to": "use", "when": "batch_a_b[0].ok and batch_a_b[1].status == 200"}
    ]


def test_shared_settings_go_on_the_batch_and_headers_into_each_request() -> None:
    shared = 'auth: "tok", timeout: 5s, retries: 2, priority: high, headers: { Accept: "x" }'
    _, out, _ = run(f"workflow w {{ a = {get('a', shared)}  b = {get('b', shared)} }}")
    [batch] = out.nodes
    assert isinstance(batch, HttpNode)
    assert (batch.auth, batch.timeout_ms, batch.retry.max_attempts) == ("tok", 5000, 3)
    assert batch.priority.value == "high"
    assert not batch.headers
    assert all(r["headers"] == {"Accept": "x"} for r in batch.requests or ())


def test_effects_keep_their_order_through_an_added_edge() -> None:
    wf, out, _ = run(
        f"""
        workflow w {{
          fetch_a = {get("a")}
          parse_a = function "m:parse" {{ effect: pure, args: {{ page: fetch_a.body }} }}
          fetch_b = {get("b")}
          notify = function "m:notify" {{ effect: effectful, args: {{ b: fetch_b.body }} }}
          fetch_a -> parse_a -> fetch_b -> notify
        }}
        """
    )
    assert ("parse_a", "notify") in edges(out)
    assert validate(wf, "coalesce-http") is None


def test_batch_ids_do_not_collide() -> None:
    _, out, _ = run(
        f'workflow w {{ a = {get("a")}  b = {get("b")}  batch_a_b = function "m:f" {{ effect: pure }} }}'
    )
    assert {n.id for n in out.nodes} == {"batch_a_b", "batch_a_b_2"}


def test_max_batch_splits_and_must_be_at_least_two() -> None:
    nodes = "  ".join(f"r{i} = {get(str(i))}" for i in range(5))
    _, out, _ = run(f"workflow w {{ {nodes} }}", max_batch=2)
    sizes = sorted(len(n.requests or ()) for n in out.nodes if isinstance(n, HttpNode))
    assert sizes == [0, 2, 2]  # the fifth request is left alone
    with pytest.raises(PassError, match="at least 2"):
        PassPipeline.parse("coalesce-http{max-batch=1}")


def test_idempotent() -> None:
    _, once, _ = run(VISION)
    ctx = PassContext(DiagnosticEngine())
    assert CoalesceHttpPass().run(once, ctx) == once
    assert not ctx.rewriter.ops


def test_origin_url_leaves_out_default_ports() -> None:
    assert origin_url(("https", "a.example.com", 443)) == "https://a.example.com"
    assert origin_url(("http", "a.example.com", 8080)) == "http://a.example.com:8080"
    assert origin_url(("https", "2001:db8::1", 443)) == "https://[2001:db8::1]"


# --- every rule that stops it ---------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (
            get("a"),
            'http GET "https://data.example.org/b" { effect: idempotent, batchable: true }',
            "not coalesced: different hosts",
        ),
        (
            get("a"),
            'http GET "https://api.example.com:8443/b" { effect: idempotent, batchable: true }',
            "not coalesced: different origins",
        ),
        (
            get("a"),
            'http GET "http://api.example.com/b" { effect: idempotent, batchable: true }',
            "not coalesced: different origins",
        ),
        (get("a", 'headers: { A: "1" }'), get("b", 'headers: { A: "2" }'), "different headers"),
        (get("a", 'auth: "x"'), get("b", 'auth: "y"'), "different auth"),
        (get("a", "timeout: 1s"), get("b", "timeout: 2s"), "different timeouts"),
        (get("a", "retries: 1"), get("b", "retries: 2"), "different retry policies"),
        (get("a", "priority: high"), get("b"), "different priorities"),
        (
            get("a"),
            'http GET "https://api.example.com/b" { effect: pure, batchable: true }',
            "different effects",
        ),
        (
            get("a", 'filter: { param: "q", items: "body.items" }'),
            get("b"),
            "different filters",
        ),
        (
            get("a"),
            'http GET "https://api.example.com/b" { effect: idempotent }',
            'not coalesced: "b" is not batchable',
        ),
        (
            get("a"),
            'http POST "https://api.example.com/b" { effect: effectful, batchable: true }',
            'not coalesced: "b" is effectful',
        ),
        (
            get("a"),
            'http GET "https://${inputs.host}/b" { effect: idempotent, batchable: true }',
            'the host of "b" is computed at run time',
        ),
        (get("a"), get("b", 'cache: { key: ["inputs.host"] }'), '"b" is cache-marked'),
    ],
)
def test_incompatible_requests_are_left_alone_with_a_reason(a: str, b: str, message: str) -> None:
    _, _, ctx = run(f"workflow w {{ input host: str\n a = {a}\n b = {b} }}")
    assert not ctx.rewriter.ops
    assert any(message in m for m in missed(ctx)), missed(ctx)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        # fetch_b reads fetch_a itself.
        (
            f"""a = {get("a")}
            b = http GET "https://api.example.com/b?x=${{a.body.n}}" {{ effect: idempotent, batchable: true }}
            a -> b""",
            '"b" depends on "a"',
        ),
        # ... or a node between them.
        (
            f"""a = {get("a")}
            p = function "m:p" {{ effect: pure, args: {{ x: a.body }} }}
            b = http GET "https://api.example.com/b?x=${{p.n}}" {{ effect: idempotent, batchable: true }}
            a -> p -> b""",
            '"b" depends on "p"',
        ),
        # b reads a through an ordering edge into it: dissolving it cannot help.
        (
            f"""a = {get("a")}
            p = function "m:p" {{ effect: pure, args: {{ x: a.body }} }}
            b = http GET "https://api.example.com/b?x=${{a.n}}" {{ effect: idempotent, batchable: true }}
            a -> p -> b""",
            '"b" depends on "a"',
        ),
        # The ordering edge into b leaves a node that may be skipped.
        (
            f"""a = {get("a")}
            c = condition a.ok
            p = function "m:p" {{ effect: pure, args: {{ x: a.body }} }}
            b = {get("b")}
            a -> c -[true]-> p -> b""",
            '"b" waits for "p", which does not always run',
        ),
        # Only one of them runs behind the condition.
        (
            f"""c = condition inputs.host == "x"
            a = {get("a")}
            b = {get("b")}
            c -[true]-> a""",
            '"a" and "b" run under different conditions',
        ),
        # A write between two reads of one resource keeps them apart.
        (
            f"""a = {get("doc")}
            save = http PUT "https://api.example.com/doc" {{ effect: idempotent }}
            b = {get("doc?again=1")}
            a -> save -> b""",
            '"b" must stay after "save"',
        ),
        # An effect ordered after a and before b (its position is its meaning).
        (
            f"""a = {get("a")}
            log = function "m:log" {{ effect: effectful, args: {{ x: a.body }} }}
            b = {get("b")}
            a -> log -> b""",
            '"b" must stay after "log"',
        ),
        # A function without args takes its predecessors' outputs by id.
        (
            f"""a = {get("a")}
            b = {get("b")}
            f = function "m:f" {{ effect: pure }}
            a -> f""",
            '"f" takes the whole output of "a" as its input',
        ),
        # What a first-come join sees depends on timing, which batching changes.
        (
            f"""a = {get("a")}
            b = {get("b")}
            p = function "m:p" {{ effect: pure, args: {{ x: a.body }} }}
            q = function "m:q" {{ effect: pure, args: {{ x: 1 }} }}
            first = join any
            a -> p -> first
            q -> first""",
            'join "first" after "a" takes the inputs that finish first',
        ),
        # One is behind an approval, the other is not.
        (
            f"""ok = approval {{ approvers: ["ops"] }}
            a = {get("a")}
            b = {get("b")}
            ok -> b""",
            'across approval "ok"',
        ),
    ],
)
def test_illegal_batches_are_refused_with_a_reason(body: str, message: str) -> None:
    _, _, ctx = run(f"workflow w {{ input host: str\n {body} }}")
    assert not ctx.rewriter.ops
    assert any(message in m for m in missed(ctx)), missed(ctx)


def test_a_kept_order_that_would_change_inputs_is_refused() -> None:
    # `log` (an effect) follows parse_a only through fetch_b. Keeping that order needs an
    # edge parse_a -> log, but log takes its predecessors' outputs: that edge would change them.
    _, _, ctx = run(
        f"""
        workflow w {{
          fetch_a = {get("a")}
          parse_a = function "m:p" {{ effect: pure, args: {{ x: fetch_a.body }} }}
          fetch_b = {get("b")}
          use_b = function "m:u" {{ effect: pure, args: {{ x: fetch_b.body }} }}
          log = function "m:log" {{ effect: effectful }}
          fetch_a -> parse_a -> fetch_b -> use_b -> log
        }}
        """
    )
    assert not ctx.rewriter.ops
    assert any(
        'keeping "log" after "parse_a" would change the inputs of "log"' in m for m in missed(ctx)
    )


def test_a_kept_order_that_would_change_skipping_is_refused() -> None:
    # fetch_b must stay after the effect `x`, which runs only when `c` is true; an edge
    # x -> batch would skip the batch (and fetch_a) whenever x is skipped.
    _, _, ctx = run(
        f"""
        workflow w {{
          input n: int = 2
          r = function "m:r" {{ effect: pure, args: {{ a: 1 }} }}
          c = condition inputs.n > 1
          x = function "m:x" {{ effect: effectful, args: {{ a: 1 }} }}
          j = join any
          fetch_a = {get("a")}
          u = function "m:u" {{ effect: pure, args: {{ v: fetch_a.body }} }}
          fetch_b = {get("b")}
          c -[true]-> x -> j
          r -> j -> u
          fetch_a -> u -> fetch_b
        }}
        """
    )
    assert not ctx.rewriter.ops
    assert any(
        'keeping "fetch_b" after "x" would change when "fetch_b" runs' in m for m in missed(ctx)
    )


def test_work_after_an_approval_stays_after_it() -> None:
    # Both requests are behind the approval: batching them keeps them there.
    wf, out, _ = run(
        f"""
        workflow w {{
          ok = approval {{ approvers: ["ops"] }}
          a = {get("a")}
          b = {get("b")}
          ok -[approved]-> a
          ok -[approved]-> b
        }}
        """
    )
    assert edges(out) == {("ok", "batch_a_b")}
    assert validate(wf, "coalesce-http") is None


# --- differential: generated workflows with opportunities ------------------------------


def _opportunities(rng: random.Random) -> Workflow:
    """Chains and fans of batchable requests to mostly one host with shared settings, parses
    reading them, ordering-only and data edges between them, effects, a condition and an
    approval; now and then a request that differs, depends or must not move."""
    lines: list[str] = ['input q: str = "a"', "input n: int = 2"]
    edge_lines: list[str] = []
    parses: list[str] = []
    upstream: dict[str, set[str]] = {}  # the parses chained before each parse
    shared = rng.choice(["", ', headers: { Accept: "json" }', ", timeout: 5s"])
    guards = [g for g in ("gate", "cond") if rng.random() < 0.25]
    if "gate" in guards:
        lines.append('gate = approval { approvers: ["ops"] }')
    if "cond" in guards:
        lines.append("cond = condition inputs.n > 1")
    prev: str | None = None
    for i in range(rng.randint(2, 5)):
        host = "api.example.com" if rng.random() < 0.9 else "data.example.org"
        method = "GET" if rng.random() < 0.85 else "POST"
        extra = shared if rng.random() < 0.9 else rng.choice(["", ", timeout: 1s"])
        query = "?q=${inputs.q}" if rng.random() < 0.4 else ""
        if prev is not None and rng.random() < 0.15:
            query = f"?after=${{{prev}.n}}"  # a data dependence on the previous parse
        body = ', body: { k: "v" }' if method == "POST" else ""
        batchable = "true" if rng.random() < 0.95 else "false"
        effect = "idempotent" if rng.random() < 0.95 else "effectful"
        lines.append(
            f'f{i} = http {method} "https://{host}/r{i}{query}" '
            f"{{ effect: {effect}, batchable: {batchable}{extra}{body} }}"
        )
        kind = "effectful" if rng.random() < 0.15 else "pure"
        lines.append(
            f'p{i} = function "m:parse{i}" {{ effect: {kind}, args: {{ page: f{i}.body }} }}'
        )
        edge_lines.append(f"f{i} -> p{i}")
        parses.append(f"p{i}")
        upstream[f"p{i}"] = set()
        if prev is not None and (query.startswith("?after") or rng.random() < 0.6):
            edge_lines.append(f"{prev} -> f{i}")  # ordering-only unless f{i} reads prev
            upstream[f"p{i}"] = upstream[prev] | {prev}
        elif guards and rng.random() < 0.4:
            g = rng.choice(guards)
            edge_lines.append(f"{g} -[{'approved' if g == 'gate' else 'true'}]-> f{i}")
        prev = f"p{i}"
    into_merge = [p for p in parses if rng.random() < 0.5 or p == parses[-1]]
    # merge reads what runs before it, some of it only through a chain of ordering edges.
    readable = set(into_merge).union(*(upstream[p] for p in into_merge))
    reads = ", ".join(f"{p}: {p}.value" for p in parses if p in readable)
    merge_effect = rng.choice(["pure", "effectful"])
    lines.append(f'merge = function "m:merge" {{ effect: {merge_effect}, args: {{ {reads} }} }}')
    edge_lines += [f"{p} -> merge" for p in into_merge]
    lines.append("output result = merge.value")
    lines.append("output first = f0.body")
    return load_text("workflow gen {\n" + "\n".join(lines + edge_lines) + "\n}")


def _verifies(wf: Workflow) -> bool:
    return not [d for d in verify(wf, DEFAULT_POLICY) if d.is_error]


@given(st.randoms(use_true_random=False))
@settings(deadline=None, max_examples=40)
def test_coalescing_refines_generated_workflows(rng: random.Random) -> None:
    wf = _opportunities(rng)
    assert _verifies(wf)
    assert validate(wf, "coalesce-http", seeds=3) is None


def test_the_generated_workflows_are_mostly_coalesced() -> None:
    fired = 0
    for seed in range(60):
        ctx = PassContext(DiagnosticEngine())
        CoalesceHttpPass().run(_opportunities(random.Random(seed)), ctx)
        fired += ctx.rewriter.changed
    assert fired >= 30, fired  # so the differential property is not vacuous


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.aob")), ids=lambda p: p.stem)
def test_every_example_refines(path: Path) -> None:
    assert validate(load(path).workflow, "coalesce-http", seeds=3) is None
