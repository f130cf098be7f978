"""`pushdown-predicates`: filters move into the sources that declare they can filter, every
rule that stops it (with its remark), and a differential check on generated workflows."""

from __future__ import annotations

import random
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.serialize import to_document
from aobc.diagnostics import DiagnosticEngine
from aobc.frontend import load, load_text
from aobc.frontend.jsonpatch import apply_ops
from aobc.ir import HttpNode, Workflow
from aobc.passes.base import PassContext
from aobc.passes.pushdown_predicates import PushdownPredicatesPass
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from aobc.tv import validate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
FILTER = '{ param: "where", items: "body.items" }'
DOLLAR = '"item.id == \\"$$x\\""'  # a DSL string holding `item.id == "$x"`


def source(url: str = "https://api.example.com/items", effect: str = "idempotent") -> str:
    return f'http GET "{url}" {{ effect: {effect}, filter: {FILTER} }}'


def keep(items: str = "src.body.items", where: str = '"item.n > 2"') -> str:
    return f'function "aobc.stdlib:filter" {{ effect: pure, args: {{ items: {items}, where: {where} }} }}'


def run(text: str) -> tuple[Workflow, Workflow, PassContext]:
    wf = load_text(text)
    assert not [d.message for d in verify(wf, DEFAULT_POLICY) if d.is_error]
    ctx = PassContext(DiagnosticEngine())
    out = PushdownPredicatesPass().run(wf, ctx)
    assert apply_ops(to_document(wf), ctx.rewriter.ops) == to_document(out)
    assert not [d.message for d in verify(out, DEFAULT_POLICY) if d.is_error]
    return wf, out, ctx


def missed(ctx: PassContext) -> list[str]:
    return [r.message for r in ctx.remarks if r.kind == "missed"]


def src_url(wf: Workflow) -> str:
    node = wf.node("src")
    assert isinstance(node, HttpNode)
    return node.url


BASIC = f"""
workflow w {{
  output big = keep
  src = {source()}
  keep = {keep()}
  use = function "m:use" {{ effect: effectful, args: {{ xs: "${{keep}}", n: "${{len(keep)}}", first: keep[0] }} }}
  src -> keep -[when keep != []]-> use
}}
"""


def test_the_filter_moves_into_the_source() -> None:
    wf, out, ctx = run(BASIC)
    assert src_url(out) == "https://api.example.com/items?where=item.n%20%3E%202"
    assert [n.id for n in out.nodes] == ["src", "use"]
    doc = to_document(out)
    assert doc["outputs"] == {"big": "src.body.items"}
    assert doc["nodes"][1]["args"] == {
        "xs": "${src.body.items}",
        "n": "${len(src.body.items)}",
        "first": "${src.body.items[0]}",
    }
    assert doc["edges"] == [{"from": "src", "to": "use", "when": "src.body.items != []"}]
    [passed] = [r for r in ctx.remarks if r.kind == "passed"]
    assert '"keep"' in passed.message and '"src"' in passed.message
    assert validate(wf, "pushdown-predicates") is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.example.com/items", "https://api.example.com/items?where="),
        ("https://api.example.com/items?", "https://api.example.com/items?where="),
        ("https://api.example.com/items?a=1", "https://api.example.com/items?a=1&where="),
        (
            "https://api.example.com/i?a=${inputs.q}",
            "https://api.example.com/i?a=${inputs.q}&where=",
        ),
        ("https://api.example.com/${inputs.q}", "https://api.example.com/${inputs.q}?where="),
    ],
)
def test_the_parameter_is_appended_as_the_url_needs(url: str, expected: str) -> None:
    text = f"input q: str\n output o = keep\n src = {source(url)}\n keep = {keep(where=DOLLAR)}"
    _, out, _ = run(f"workflow w {{ {text}\n src -> keep }}")
    assert src_url(out).startswith(expected)
    # The where is URL-encoded, so it adds no template hole (its "$" is %24).
    assert urllib.parse.unquote(src_url(out).rpartition("where=")[2]) == 'item.id == "$x"'


def test_readers_of_other_fields_of_the_source_do_not_stop_it() -> None:
    _, out, _ = run(
        f"""
        workflow w {{
          output total = src.body.total
          output status = src.status
          src = {source()}
          keep = {keep()}
          src -> keep
        }}
        """
    )
    assert [n.id for n in out.nodes] == ["src"]


def test_idempotent_and_a_second_filter_is_not_stacked() -> None:
    _, once, ctx = run(
        f"""
        workflow w {{
          output o = again
          src = {source()}
          keep = {keep()}
          again = {keep(items='"${keep}"', where='"item.score > 0.5"')}
          src -> keep -> again
        }}
        """
    )
    assert [n.id for n in once.nodes] == ["src", "again"]
    assert any('already sets the query parameter "where"' in m for m in missed(ctx))
    ctx = PassContext(DiagnosticEngine())
    assert PushdownPredicatesPass().run(once, ctx) == once
    assert not ctx.rewriter.ops


# --- every rule that stops it ---------------------------------------------------------


SRC = f"src = {source()}"
KEEP = f"keep = {keep()}"
BATCH_SRC = (
    f'src = http BATCH "https://api.example.com" {{ effect: idempotent, filter: {FILTER}, '
    'requests: [{ method: "GET", url: "https://api.example.com/a" }] }'
)


def std_filter(effect: str = "pure", extra: str = "") -> str:
    args = f'items: src.body.items, where: "item.n > 1"{extra}'
    return f'keep = function "aobc.stdlib:filter" {{ effect: {effect}, args: {{ {args} }} }}'


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (
            ['src = http GET "https://api.example.com/items" { effect: idempotent }', KEEP],
            '"src" does not declare filter support',
        ),
        ([f"src = {source(effect='effectful')}", KEEP], '"src" is effectful'),
        (
            ['src = function "m:src" { effect: pure }', KEEP],
            '"src" is not an HTTP source that can filter',
        ),
        (
            [SRC, f"keep = {keep(items='src.body.other')}"],
            'filters src.body.other, but "src" filters its items at body.items',
        ),
        (
            [SRC, f"keep = {keep(where=chr(34) + 'item.n > ${inputs.n}' + chr(34))}"],
            "is computed at run time",
        ),
        (
            [SRC, f"keep = {keep(where=chr(34) + 'item.n > inputs.n' + chr(34))}"],
            "reads inputs, which the source cannot see",
        ),
        ([SRC, f"keep = {keep(where=chr(34) + 'item.n >' + chr(34))}"], "is not an expression"),
        ([SRC, std_filter(effect="idempotent")], '"keep" is declared idempotent, not pure'),
        ([SRC, std_filter(extra=", limit: 3")], '"keep" also takes limit'),
        (
            [SRC, KEEP, 'first = function "m:f" { effect: effectful }', "first -> keep"],
            '"keep" also waits for "first"',
        ),
        (
            [
                SRC,
                'all = function "m:all" { effect: pure, args: { xs: src.body.items } }',
                KEEP,
                "src -> all",
            ],
            '"all" reads the unfiltered items',
        ),
        (
            [
                SRC,
                'all = function "m:all" { effect: pure, args: { b: src.body } }',
                KEEP,
                "src -> all",
            ],
            '"all" reads the unfiltered items',
        ),
        (
            [SRC, 'all = function "m:all" { effect: pure }', KEEP, "src -> all"],
            '"all" reads the unfiltered items (all of "src")',
        ),
        (
            [SRC, "both = join all", KEEP, "src -> both"],
            '"both" reads the unfiltered items (all of "src")',
        ),
        (
            [
                SRC,
                'who = function "m:who" { effect: pure, args: { u: src.url } }',
                KEEP,
                "src -> who",
            ],
            '"who" reads src.url, which the pushed filter changes',
        ),
        (
            [
                SRC,
                'nxt = function "m:n" { effect: pure, args: { a: 1 } }',
                KEEP,
                "src -[when src.body.items != []]-> nxt",
            ],
            'the guard of "src" -> "nxt" reads the unfiltered items',
        ),
        ([SRC, KEEP, "output o = src"], 'output "o" reads the unfiltered items'),
        (
            [SRC, KEEP, 'after = function "m:after" { effect: pure }', "keep -> after"],
            '"after" takes the whole output of "keep" as its input',
        ),
        (
            [
                SRC,
                KEEP,
                'use = function "m:u" { effect: pure, args: { x: "${keep}" } }',
                "src -[when src.status == 200]-> use",
                "keep -> use",
            ],
            '"use" follows both "src" and "keep" under guards',
        ),
        (
            [f"src = {source('https://api.example.com/items?where=x')}", KEEP],
            'already sets the query parameter "where"',
        ),
        ([f"src = {source('https://api.example.com/items#top')}", KEEP], "has a fragment"),
        ([BATCH_SRC, KEEP], '"src" is a batch'),
        (
            [
                'src = http GET "https://api.example.com/x" '
                '{ effect: idempotent, filter: { param: "q", items: "body.data[0]" } }',
                f"keep = {keep(items='src.body.data[0]')}",
            ],
            "declares its items at body.data[0], not a dotted path",
        ),
    ],
)
def test_near_misses_are_left_alone_with_a_reason(lines: list[str], message: str) -> None:
    if any(line.startswith("keep") for line in lines) and "src -> keep" not in lines:
        lines = [*lines, "src -> keep"]
    _, _, ctx = run("workflow w { input n: int = 1\n" + "\n".join(lines) + "\n}")
    assert not ctx.rewriter.ops
    assert any(message in m for m in missed(ctx)), missed(ctx)


def test_a_filter_of_something_else_is_no_near_miss() -> None:
    _, _, ctx = run(f"workflow w {{ input xs: list\n keep = {keep(items='inputs.xs')} }}")
    assert not ctx.remarks


def test_work_behind_an_approval_stays_behind_it() -> None:
    # The filter's only input is the source, so it is behind the same approvals: pushing
    # it never moves work across one.
    wf, out, _ = run(
        f"""
        workflow w {{
          output o = keep
          ok = approval {{ approvers: ["ops"] }}
          src = {source()}
          keep = {keep()}
          ok -[approved]-> src -> keep
        }}
        """
    )
    assert [(e.src, e.dst) for e in out.edges] == [("ok", "src")]
    assert validate(wf, "pushdown-predicates") is None


# --- differential: generated workflows with opportunities ------------------------------

WHERES = (
    "item.score > 0.5",
    "item.n >= 3 and item.score < 0.9",
    'item.id != "i3"',
    "not (item.n in [1, 2])",
    "item.n % 2 == 0 or item.score > 0.75",
)


def _opportunities(rng: random.Random) -> Workflow:
    """A filtering source, a stdlib filter after it, readers of the filtered items, and
    now and then something that stops the push."""
    effect = rng.choices(["idempotent", "pure", "effectful"], [8, 2, 1])[0]
    url = rng.choice(
        ["https://api.example.com/items", "https://api.example.com/items?since=${inputs.q}"]
    )
    where = rng.choice(WHERES)
    lines = [
        'input q: str = "a"',
        f'src = http GET "{url}" {{ effect: {effect}, filter: {FILTER} }}',
        "keep = " + keep(where='"' + where.replace('"', '\\"') + '"'),  # a DSL string
        "src -> keep",
    ]
    for i in range(rng.randint(1, 2)):
        kind = rng.choice(["pure", "effectful"])
        arg = rng.choice(['"${keep}"', "keep[0]", '"${len(keep)}"'])
        lines.append(f'use{i} = function "m:use{i}" {{ effect: {kind}, args: {{ x: {arg} }} }}')
        guard = " -[when keep != []]->" if rng.random() < 0.3 else " ->"
        lines.append(f"keep{guard} use{i}")
    roll = rng.random()
    if roll < 0.15:
        lines += [
            'total = function "m:t" { effect: pure, args: { t: src.body.value } }',
            "src -> total",
        ]
    elif roll < 0.22:
        lines += [
            'raw = function "m:r" { effect: pure, args: { t: src.body.items } }',
            "src -> raw",
        ]
    elif roll < 0.27:
        lines += ["again = " + keep(items='"${keep}"', where='"item.score > 0.2"'), "keep -> again"]
    lines.append(f"output o = {rng.choice(['keep', 'use0', 'src.body.n'])}")
    return load_text("workflow gen {\n" + "\n".join(lines) + "\n}")


@given(st.randoms(use_true_random=False))
@settings(deadline=None, max_examples=40)
def test_pushing_refines_generated_workflows(rng: random.Random) -> None:
    assert validate(_opportunities(rng), "pushdown-predicates", seeds=3) is None


def test_the_generated_workflows_are_mostly_pushed() -> None:
    fired = 0
    for seed in range(60):
        ctx = PassContext(DiagnosticEngine())
        PushdownPredicatesPass().run(_opportunities(random.Random(seed)), ctx)
        fired += ctx.rewriter.changed
    assert fired >= 30, fired  # so the differential property is not vacuous


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.aob")), ids=lambda p: p.stem)
def test_every_example_refines(path: Path) -> None:
    assert validate(load(path).workflow, "pushdown-predicates", seeds=3) is None
