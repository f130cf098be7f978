"""The hand-written DSL and expression parsers against lark's, which defines the language.

For every text both must agree: on acceptance; for accepted texts on the whole document and
source map (spans included); for rejected texts on the diagnostic, message and span included.
Texts come from the examples, generated workflows, hand-picked tricky snippets, hypothesis
(`from_lark` on the grammar) and random mutations of all of these. Expressions alone
(`fast_parse_expr`) must agree with the grammar's `expr` rule on acceptance, trees and the
offsets of syntax errors.
"""

from __future__ import annotations

import functools
import gc
import logging
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark.exceptions import VisitError

from aobc.diagnostics import Diagnostic
from aobc.expr.fastparse import fast_parse_expr
from aobc.expr.parse import ExprSyntaxError, parse_expr_reference
from aobc.frontend.dsl import parse_dsl, parse_dsl_reference
from aobc.frontend.dsl_parser import DslSyntaxError, parse_file
from aobc.frontend.printer import to_dsl
from aobc.source import SourceFile, Span
from aobc.syntax import parser
from aobc.testing.generate import random_workflow

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.aob"))

Result = tuple[Any, dict[str, Span], list[Diagnostic]]


def _run(fn: Any, src: SourceFile) -> Result:
    diags: list[Diagnostic] = []
    doc, smap = fn(src, diags)
    return doc, smap.spans, diags


def assert_same(text: str) -> bool:
    """Both parsers agree on `text`; returns whether it was accepted.

    The fast parser may only raise its syntax error, or RecursionError on deep nesting (which
    `parse_dsl` answers by parsing with lark). Lark's path may crash where the fast one reports
    (a 5000-digit integer); such texts are only checked to give a diagnostic.
    """
    src = SourceFile.of("t.aob", text)
    try:
        parse_file(src)
    except (DslSyntaxError, RecursionError):
        pass
    try:
        ref = _run(parse_dsl_reference, src)
    except (VisitError, RecursionError):  # int()'s ValueError, or nesting too deep for lark
        fast = _run(parse_dsl, src)
        assert fast[0] is None and fast[2], text
        return False
    fast = _run(parse_dsl, src)
    assert (fast[0] is None) == (ref[0] is None), (text, fast[2], ref[2])
    assert fast[0] == ref[0], text
    assert fast[1] == ref[1], text
    assert fast[2] == ref[2], text
    return fast[0] is not None


# --- real and generated inputs ----------------------------------------------------------------


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_examples_parse_as_with_lark(path: Path) -> None:
    assert assert_same(path.read_text())


@pytest.mark.parametrize("seed", range(50))
def test_generated_workflows_parse_as_with_lark(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.choice([1, 2, 5, 10, 20, 40, 80])
    assert assert_same(to_dsl(random_workflow(rng, n)))


# --- tricky snippets ---------------------------------------------------------------------------


def _w(body: str) -> str:
    return "workflow w {\n" + body + "\n}\n"


SNIPPETS = [
    # Keywords are names wherever lark's state accepts no keyword...
    _w("map = agent\ntimer_x = agent\nif = agent\nx = agent { map: 1, true: 2, if: 3, input: 4 }"),
    _w("input input: str = 1\noutput output = input\ninput workflow: map"),
    _w("x = agent { a: 1, input: 2 }"),
    _w("x = agent { a: map b c: 1 }"),
    _w("x = join input"),
    _w("a -[else]-> b\na -[null]-> b\na -> input"),
    _w("output o = a.if.map.input\noutput p = {true: 1, map: 2}\noutput q = -not"),
    # ...and a keyword is a whole word, never the front of a longer one...
    _w("x = mapper\ny = agentx = agent\nz = timer5s\nj = joinall"),
    _w("x = mapper"),
    _w("y = agentx = agent"),
    _w("z = timer5s"),
    _w("j = joinall"),
    _w("x = functionality"),
    "workflowfoo {}",
    "workflow_ {}",
    _w("x = composite workflowsub { y = agent }"),
    _w("output o = a not inx\noutput p = a not input"),
    _w("output o = a not inx"),
    _w("output o = a ifx b else c\noutput p = a orb\noutput q = nota"),
    _w("output o = a if b elsec"),
    _w("a -[l whenx > 1]-> b"),
    _w("a -[whenx]-> b"),
    _w("x = timer untilx"),
    _w("x = agent { a: trueish, b: nullx, c: false_, d: mapper, e: agent1 }"),
    _w("inputs: 1\noutputx = agent\ninput inputx: str"),
    _w("x = agent\ninputx y: str"),
    # ...and after an expression or a value LALR merges in keywords that cannot follow
    # (`input` and `output` only where no ":" follows them).
    _w("x = agent { a: 1 input: 2 }"),
    _w("x = agent {\n  a: 1\n  input: 2\n  output: [3]\n  b: c.d output: 4\n}"),
    _w("x = agent { a: 1 input # c\n : 2 }"),
    _w("x = agent { a: 1 input x: str }"),
    _w("x = agent { a: agent input: 1, b: timer 5s output: 2 }"),
    _w("input: 1\noutput: 2\ninput i: str\noutput o = i"),
    _w("output o = a\ninput: 1"),
    _w("input : str"),
    _w("x = agent { a: map b input: 1 }"),
    _w("x = agent { a: map b else: 1 }"),
    _w("output o = a\nelse = agent"),
    _w("output o = a\nif = agent"),
    _w("output o = a\nin = agent"),
    _w("output o = a\nnot = agent"),
    _w("output o = a < b in c"),
    _w("output o = a == b not in c"),
    # Durations and numbers: a duration only where a config value or timer may be.
    _w("x = agent { t: 10s, u: 1h30m, v: 10ms, w: 1.5s, e: 1e5s, n: -10s: 5 }"),
    _w("x = agent { t: 10s, u: 1h30m, v: 10ms, w: 1.5, e: 1e5, n: -10, s: 5 }"),
    # ...and a number ends where a word would: `5s` where no duration fits is an error.
    _w("x = agent { t: -10s }"),
    _w("x = agent { t: 10sx }"),
    _w("x = agent { t: 5x }"),
    _w("x = agent { t: 1.5s }"),
    _w("x = agent { t: 1e5x, u: 2 }"),
    _w("x = agent { t: 007_ }"),
    _w("x = agent { t: 1h30 }"),
    _w("x = join 1e5"),
    _w("x = join 5x"),
    _w("x = timer 5sx"),
    _w("x = timer 5x { a: 1 }"),
    _w("output o = 10s"),
    _w("output o = 5x + 1"),
    _w("output o = a[1x]"),
    _w("output o = 1.5s"),
    _w("x = agent { a: b[1e5] }"),
    _w("x = agent { a: b[1x] }"),
    "workflow w { x = agent { a: 5q",
    "workflow w { x = agent { a: 5q\n }\n}",
    'workflow w { x = agent { a: 5q """\n"""\n}',
    "workflow w {}\n5x",
    "workflow w {}5",
    _w("x = agent { t: -1, u: -1.5, v: - 2, w: -1e3, z: -0, o: 007, f: 1E2 }"),
    _w("x = join 1.5"),
    _w("x = join 5s = agent"),
    _w("x = join 1e5 = agent"),
    _w("x = join 3 { a: 1 }"),
    _w("x = map 10s"),
    _w("x = map 10s = agent"),
    _w("x = timer 5"),
    _w("x = timer 1.5s"),
    _w("x = timer 5m { a: 1 }\ny = timer until 3 { a: 1 }\nz = timer { a: 1 }\nt = timer"),
    _w("x = agent { a: 1e999 }"),
    _w("x = agent { a: -1e999 }"),
    _w("output o = 1e999"),
    _w("x = agent { a: b[1.5] }"),
    _w("x = agent { a: b[5s] }"),
    # Arrows against "-", "[" and "]".
    _w('a -> b -> c\na -[x]-> b\na -["lbl"]-> b\na -[true]-> b -[false]-> c\na -[]-> b'),
    _w("a -[when x > 1]-> b\na -[l when a[0] == 1]-> b\na -[when a -[1] == [0]]-> b"),
    _w("a -[when a[0]->b]-> c"),
    _w("a -[]-> b"),
    _w("a -[ ]-> b"),
    _w("a -[] -> b"),
    _w("a -[]"),
    _w("a -[when a[0]]-> b"),
    _w("a - > b"),
    _w("a -> -> b"),
    _w("a ->"),
    _w("a -[x] -> b"),
    _w("a -[x y]-> b"),
    _w("a -[when]-> b"),
    _w("a -> b\n-[x]-> c"),
    _w("x = map a\n-[x]-> b"),
    _w("output o = [a]->b"),
    _w("output o = []->"),
    _w("output o = [1,]->"),
    _w("output o = a[]->"),
    _w("output o = a->b"),
    _w("output o = a -[1]"),
    _w("x = agent { a: b.c[0]]->"),
    _w("x = agent { a: [agent]-> }"),
    _w("x = agent { a: [map a]-> }"),
    _w("x = agent { a: [1]->"),
    "workflow w {}]->",
    # "=" where "==" is not acceptable.
    _w("output o == 1"),
    _w("output o === 1"),
    _w("x == agent"),
    _w("input x: int == 1"),
    # Expressions.
    _w("output o = a if b else c if d else e"),
    _w("output o = a == not\noutput p = not not a"),
    _w("output o = a < b < c"),
    _w("output o = f(a, b,)\noutput p = f()\noutput q = (a)(b)\noutput r = a\n(b)"),
    _w("output o = [1, 2,]\noutput p = []"),
    _w("output o = [1 2]"),
    _w("output o = [1, 2),]"),
    _w("output o = f(1, 2]"),
    _w("output o = f(1, 2 b)"),
    _w('output o = x // 2 % 3 * -4 / -5 - -(1)\noutput p = a.b["c"][0].d'),
    _w("output o = {a: 1 b: 2}"),
    _w("output o = {a: 1,,}"),
    _w('output o = "a" "b"'),
    _w("x = condition a { b: 1 }\ny = map [1, 2] { concurrency: 3 }"),
    # Values, refs, nodes as values, nested workflows, map bodies.
    _w('x = agent { a: b.c[0]["d"].e, f: [1, [2, []], {}], g: { h: { i: 1 } } }'),
    _w("x = agent { a: [,] }"),
    _w("x = agent { a: true.x }"),
    _w("x = agent { a 1 }"),
    _w("x = agent { ,}"),
    _w("x = agent { a: 1,, }"),
    _w('x = http GET agent { a: 1 }\ny = http GET "u" { a: 1 } { b: 2 }'),
    _w("x = http GET map a { b: 1 }\ny = http GET timer { b: 1 }"),
    _w("x = agent { a: timer until: 1 }"),
    # A node is a value only of a config pair: elsewhere a kind is a name.
    _w("x = http GET agent { a: 1 }"),
    _w("x = http GET agent"),
    _w("x = timer until agent { a: 1 }"),
    _w("input i: str = agent\ndescription: map"),
    _w("x = agent { a: [agent, map, timer] }"),
    _w("x = agent { a: [map b] }"),
    _w("x = agent { a: [agent { b: 1 }] }"),
    _w("x = agent { a: agent { b: 1 }, c: timer 5s { d: 1 } e: join 2 }"),
    _w("x = agent { a: agent } { b: 1 }"),
    _w("x = agent {} {}"),
    _w("x = agent {} ]"),
    _w("x = agent ]"),
    _w("x = map a ]"),
    _w("x = timer ]"),
    _w('x = function "m:f" ]'),
    _w("x = composite workflow s {} ]"),
    _w("x = agent { a: agent ] }"),
    _w("x = http GET u ]"),
    _w('x = map items { body: function "m:f" { args: { x: "${item}" } }, concurrency: 2 }'),
    _w(
        "x = composite workflow sub {\n input a: int\n y = map a.items { body: agent }\n"
        ' z = composite workflow deeper { q = timer until "2025-01-01" } } { timeout: 1m }'
    ),
    _w('description: "d"\nnamespace: ns\nother: 1'),
    _w("input a: int\ninput a: str\nx = agent { a: 1, a: 2, id: 3, type: 4 }"),
    # Strings and their errors (the first one lark's transformer meets is reported).
    _w('x = agent { a: """multi\nline "quoted" \\\\ text""", b: """""" }'),
    _w('x = agent { a: """a"""" }'),
    _w('x = agent { a: "unterminated }'),
    _w('x = agent { a: "a\\\nb" }'),
    _w('x = agent { a: "tab\there" }'),
    _w('x = agent { a: "\\u00e9\\n", "k/~": 1 }'),
    _w('x = agent { "\\q": 1, b: "\\z" }'),
    _w('x = agent { a: "\\q", "\\z": 1 }'),
    _w('x = function "\\q" { a: "\\z" }'),
    _w('a -["\\q"]-> b'),
    _w('output o = {"\\q": "\\z"}'),
    _w('x = agent { a: b["\\q"] }'),
    # Comments, whitespace, odd characters, the end of input.
    _w("x = agent # comment\n# another\ny = agent { a: 1 } # trailing"),
    "workflow w { # c\n x = agent # c\n}",
    _w("x = agent\r\ny = agent\r\n"),
    _w("x\t=\fagent"),
    _w("x = agent\v"),
    _w("x = agent @"),
    _w("x = agent { a: !1 }"),
    "# only a comment",
    "",
    "workflow w {}}",
    "workflow w {} x",
    "workflow w",
    "workflow w { x = agent",
    "workflow w { x = map a",
    "workflow w { x = composite workflow s { y = agent }",
    "workflow w { output o = (a",
    "workflow w { output o = f(",
    "workflow w { x = agent { a: ",
    "workflow w { x = agent { a: [",
    "workflow w { a -[when x",
]


@pytest.mark.parametrize("text", SNIPPETS)
def test_tricky_snippets_parse_as_with_lark(text: str) -> None:
    assert_same(text)


def test_some_snippets_are_accepted_and_some_rejected() -> None:
    accepted = [assert_same(t) for t in SNIPPETS]
    assert 30 < sum(accepted) < len(SNIPPETS) - 30


# --- hypothesis: texts from the grammar, and mutations ------------------------------------------

_WS = next(t.name for t in parser().terminals if t.pattern.value == "[ \t\f\r\n]+")
_NAMES = ["a", "b", "x1", "_", "s", "e5", "GET", "all", "map", "if", "in", "not", "else", "true"]
_NAMES += ["input", "output", "when", "until", "timer", "workflow", "agentx", "mapper", "inx"]

#: Texts for the terminals that are patterns.
_SAMPLES = {
    "NAME": _NAMES,
    "STRING": ['"s"', '""', '"a b"', '"\\n"', '"\\q"', '"""t\n""q"""', '"k/~"'],
    "DURATION": ["10s", "1h30m", "5ms", "2d"],
    "INT": ["0", "1", "42", "007"],
    "FLOAT": ["1.5", "2e3", "1e999", "0.0", "3E-2"],
    "COMMENT": ["#c\n", "# a -> b\n"],  # a comment ends with its line
    _WS: [" ", "\n", "\t "],
}
# from_lark joins tokens with no space between most of them, so names, keywords and numbers
# run together: both parsers must end every keyword and number at a word boundary.
grammar_texts = from_lark(
    parser(), start="file", explicit={k: st.sampled_from(v) for k, v in _SAMPLES.items()}
)


@given(grammar_texts)
@settings(
    max_examples=800, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck)
)
def test_grammar_texts_parse_as_with_lark(text: str) -> None:
    assert_same(text)


_INSERTS = [
    *'{}[]()=:,.-<>+*/%#"\\ \n\tabcxyz_019@!',
    "->",
    "-[",
    "]->",
    "==",
    "when ",
    "map ",
    "in",
    "not ",
    "if ",
    "else ",
    "true",
    "input ",
    "workflow ",
    "timer ",
    "until ",
    '"""',
    "10s",
    "1.5",
    "1e5",
    "agent",
    "join ",
    '"\\q"',
    "5x",
    "0_",
    "http GET ",
    "-[]->",
    "body: agent ",
    "input: ",
]
_SMALL = [t for t in SNIPPETS if len(t) < 400] + [
    to_dsl(random_workflow(random.Random(s), s % 6 + 1)) for s in range(10)
]


def _mutate(rng: random.Random, text: str) -> str:
    for _ in range(rng.randint(1, 3)):
        p = rng.randrange(len(text) + 1)
        op = rng.random()
        if op < 0.35:  # delete a character
            text = text[:p] + text[p + 1 :]
        elif op < 0.7:  # insert a character or a token
            text = text[:p] + rng.choice(_INSERTS) + text[p:]
        elif op < 0.85:  # delete a run
            text = text[:p] + text[p + rng.randint(1, 20) :]
        elif text:  # copy a run somewhere else
            q = rng.randrange(len(text))
            text = text[:p] + text[q : q + rng.randint(1, 20)] + text[p:]
    return text


@given(
    st.randoms(use_true_random=False), st.sampled_from(_SMALL + [p.read_text() for p in EXAMPLES])
)
@settings(max_examples=2000, deadline=None, derandomize=True)
def test_mutated_texts_parse_as_with_lark(rng: random.Random, text: str) -> None:
    assert_same(_mutate(rng, text))


# --- expressions: fastparse against the grammar's `expr` rule -----------------------------------


def assert_same_expr(text: str) -> bool:
    """`fast_parse_expr` and lark's `expr` rule agree on `text`; returns whether it parsed.

    Both accept it with equal trees, or both reject it; a syntax error at the same offset
    (lark finds a bad string escape or number only once the whole text has parsed, and
    fastparse as it reads it, so for those only the rejection is compared).
    """
    try:
        ref: Any = parse_expr_reference(text)
    except ExprSyntaxError as err:
        ref = err
    try:
        fast: Any = fast_parse_expr(text)
    except ExprSyntaxError as err:
        fast = err
    assert isinstance(fast, ExprSyntaxError) == isinstance(ref, ExprSyntaxError), (text, ref, fast)
    if not isinstance(ref, ExprSyntaxError):
        assert fast == ref, text
        return True
    if ref.message.startswith("unexpected") and fast.message.startswith("unexpected"):
        assert fast.offset == ref.offset, (text, ref.message, fast.message)
    return False


EXPR_SNIPPETS = [
    "a if b else c if d else e",
    "not a and b or not c",
    "a not in b",
    "a not inx",
    "a not input",
    "a ifx b else c",
    "a if b elsex c",
    "nota and orb",
    "in in in",
    "and and and",
    "a == not",
    "not not a",
    "a.if.map.input",
    "true.x",
    "{if: 1, true: 2, map: 3}",
    "f(a, b,)",
    "f()",
    "if(1)",
    "true(1)",
    "(a)(b)",
    "a.b(1)",
    "[1, 2,]",
    '{a: 1, "b": [2]}',
    "-(1) - -2 * x // 3 % 4",
    "--1",
    "1.5e3 >= 2E-3",
    "007",
    "1e999",
    "a[1]->b",
    "a[]->",
    "[]->",
    "[1,]->b",
    "[[1]]->",
    "f(1,]->",
    "{a: 1,]->",
    "a->b",
    "a -[1]",
    "a - >b",
    "5s",
    "5s + 1",
    "10sx",
    "5x",
    "1.5s",
    "x + 1e5x",
    "a[1x]",
    "a[1.5]",
    "1.x",
    "x.5",
    "mapper",
    "a @ b",
    ") 5x",
    "a = b",
    '"\\q"',
    '"\\q" +',
    "",
    "-",
    "a < b < c",
    "(a",
    "f(",
]


@pytest.mark.parametrize("text", EXPR_SNIPPETS)
def test_expression_snippets_parse_as_with_lark(text: str) -> None:
    assert_same_expr(text)


def test_some_expression_snippets_are_accepted_and_some_rejected() -> None:
    accepted = [assert_same_expr(t) for t in EXPR_SNIPPETS]
    assert 15 < sum(accepted) < len(EXPR_SNIPPETS) - 15


@functools.cache
def _rules() -> tuple[dict[str, list[list[Any]]], dict[str, int]]:
    """The grammar's compiled rules by name, and the fewest tokens each derives."""
    rules: dict[str, list[list[Any]]] = {}
    for rule in parser().rules:
        rules.setdefault(rule.origin.name, []).append(list(rule.expansion))
    shortest: dict[str, int] = {}
    changed = True
    while changed:  # a fixed point over the rules
        changed = False
        for name, expansions in rules.items():
            for exp in expansions:
                n = _length(exp, shortest)
                if n is not None and n < shortest.get(name, 1 << 30):
                    shortest[name] = n
                    changed = True
    return rules, shortest


def _length(expansion: list[Any], shortest: dict[str, int]) -> int | None:
    """The fewest tokens `expansion` derives (None if not known yet)."""
    n = 0
    for s in expansion:
        k = 1 if s.is_term else shortest.get(s.name)
        if k is None:
            return None
        n += k
    return n


def grammar_walk(rng: random.Random, start: str, size: int) -> str:
    """A random text from the grammar's rule `start`, of about `size` tokens.

    `from_lark` does this too, but with no bound on size the expression rules nest so deep
    that few texts fit hypothesis' buffer (25 tries gave 4 texts in 5 s). Here a rule takes
    one of its shortest expansions half the time, and always once `size` tokens are out (no
    rule derives itself through single rules alone, so that ends). Tokens run together as in
    `from_lark`, with whitespace or a comment after most of them.
    """
    rules, shortest = _rules()
    keyword = re.compile(r"([a-z]+)\(\?!")
    terminals = {t.name: t.pattern for t in parser().terminals}
    out: list[str] = []

    def walk(symbol: Any) -> None:
        if symbol.is_term:
            pattern = terminals[symbol.name]
            if symbol.name in _SAMPLES:
                out.append(rng.choice(_SAMPLES[symbol.name]))
            elif pattern.type == "str":
                out.append(pattern.value)
            else:
                match = keyword.match(pattern.value)
                assert match is not None, symbol.name
                out.append(match.group(1))
            if rng.random() < 0.7:
                out.append(rng.choice([*_SAMPLES[_WS], *_SAMPLES["COMMENT"]]))
            return
        expansions = rules[symbol.name]
        if len(out) >= size or rng.random() < 0.5:
            least = shortest[symbol.name]
            expansions = [e for e in expansions if _length(e, shortest) == least]
        for s in rng.choice(expansions):
            walk(s)

    walk(next(r.origin for r in parser().rules if r.origin.name == start))
    return "".join(out)


@given(st.randoms(use_true_random=True), st.integers(1, 60))
@settings(max_examples=1500, deadline=None, derandomize=True)
def test_grammar_expressions_parse_as_with_lark(rng: random.Random, size: int) -> None:
    assert_same_expr(grammar_walk(rng, "expr", size))


@given(st.randoms(use_true_random=True), st.integers(1, 80))
@settings(max_examples=1000, deadline=None, derandomize=True)
def test_grammar_walks_parse_as_with_lark(rng: random.Random, size: int) -> None:
    text = grammar_walk(rng, "file", size)
    assert_same(text)
    assert_same(_mutate(rng, text))


@given(st.randoms(use_true_random=False), st.sampled_from(EXPR_SNIPPETS[:30]))
@settings(max_examples=1000, deadline=None, derandomize=True)
def test_mutated_expressions_parse_as_with_lark(rng: random.Random, text: str) -> None:
    assert_same_expr(_mutate(rng, text))


# --- behaviour of its own ---------------------------------------------------------------------


def _diags(text: str) -> list[Diagnostic]:
    diags: list[Diagnostic] = []
    doc, _ = parse_dsl(SourceFile.of("t.aob", text), diags)
    assert doc is None
    return diags


def _doc(text: str) -> Any:
    diags: list[Diagnostic] = []
    doc, _ = parse_dsl(SourceFile.of("t.aob", text), diags)
    assert not diags
    return doc


def test_keywords_are_read_as_larks_contextual_lexer_reads_them() -> None:
    # Where no keyword may stand, a keyword is a name.
    doc = _doc(_w("map = agent { map: 1 }\na -[else]-> map"))
    assert doc["nodes"] == [{"id": "map", "type": "agent", "map": 1}]
    assert doc["edges"] == [{"from": "a", "to": "map", "label": "else"}]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("x = mapper", 'unexpected "mapper"; expected "agent", "approval"'),
        ("x = agentx = agent", 'unexpected "agentx"; expected "agent", "approval"'),
        ("x = timer5s", 'unexpected "timer5s"; expected "agent", "approval"'),
        ("output o = a not inx", 'unexpected "inx"; expected "in"'),
        ("a -[l whenx > 1]-> b", 'unexpected "whenx"; expected "]->", "when"'),
    ],
)
def test_a_keyword_is_a_whole_word(body: str, message: str) -> None:
    (d,) = _diags(_w(body))
    assert d.message.startswith(message)
    (d,) = _diags("workflowfoo {}")
    assert d.message == 'unexpected "workflowfoo"; expected "workflow"'


def test_durations_only_where_a_config_value_may_stand() -> None:
    doc = _doc(_w("x = agent { t: 10s, n: -10, s: 5 }\ny = timer 1h30m"))
    assert doc["nodes"] == [
        {"id": "x", "type": "agent", "t": "10s", "n": -10, "s": 5},
        {"id": "y", "type": "timer", "duration": "1h30m"},
    ]


@pytest.mark.parametrize(
    ("body", "message", "col"),
    [
        ("x = join 5s = agent", 'unexpected "5s"; expected a name, an integer', 10),
        ("x = agent { t: -10s }", 'unexpected "10s"; expected a number, an integer', 17),
        ("x = agent { t: 5x }", 'unexpected character "5"', 16),
        ("output o = 10s", 'unexpected "10s"', 12),
        ("output o = a[1x]", 'unexpected character "1"', 14),
    ],
)
def test_a_number_does_not_run_into_a_name(body: str, message: str, col: int) -> None:
    (d,) = _diags(_w(body))
    assert d.message.startswith(message)
    assert isinstance(d.loc, Span) and (d.loc.line, d.loc.col) == (2, col)


def test_input_and_output_are_keys_after_a_value() -> None:
    # LALR reads them as keywords after any value (a workflow item may start there), but
    # before ":" they are names.
    doc = _doc(_w("x = agent {\n  a: 1\n  input: 2\n  output: 3\n}\ninput i: str"))
    assert doc["nodes"] == [{"id": "x", "type": "agent", "a": 1, "input": 2, "output": 3}]
    assert doc["inputs"] == {"i": {"type": "str"}}


def test_a_node_is_a_value_only_of_a_config_pair() -> None:
    doc = _doc(_w("x = http GET agent { a: 1 }\ny = agent { b: [map], c: agent { d: 1 } }"))
    assert doc["nodes"] == [
        {"id": "x", "type": "http", "method": "GET", "url": "agent", "a": 1},
        {"id": "y", "type": "agent", "b": ["map"], "c": {"type": "agent", "d": 1}},
    ]


def test_an_arrow_with_brackets_needs_a_label_or_a_guard() -> None:
    (d,) = _diags(_w("a -[]-> b"))
    assert d.message == 'unexpected "]->"; expected a name, a string, "false", "true", "when"'
    doc = _doc(_w('a -[x]-> b\na -[when x > 1]-> b\na -["y" when x]-> b'))
    assert doc["edges"] == [
        {"from": "a", "to": "b", "label": "x"},
        {"from": "a", "to": "b", "when": "x > 1"},
        {"from": "a", "to": "b", "label": "y", "when": "x"},
    ]


def test_the_grammar_has_no_lalr_conflicts(caplog: pytest.LogCaptureFixture) -> None:
    # Lark resolves a shift/reduce conflict silently (as a shift), logging it only in debug
    # mode: a conflict would mean some text parses other than the grammar reads.
    from lark import Lark

    from aobc.syntax import grammar_text

    caplog.set_level(logging.DEBUG, logger="lark")
    Lark(grammar_text(), parser="lalr", lexer="contextual", start=["file", "expr"], debug=True)
    assert not [r.getMessage() for r in caplog.records if "conflict" in r.getMessage().lower()]


def test_a_syntax_error_points_at_the_token() -> None:
    (d,) = _diags(_w("a = agent\na -> -> b"))
    assert d.code is not None and d.code.name == "syntax"
    assert d.message.startswith('unexpected "->"; expected ')
    assert d.loc == Span("t.aob", 3, 6, 3, 8)


def test_the_end_of_input_is_one_character_past_the_text() -> None:
    (d,) = _diags("workflow w {\n  x = agent")
    assert d.message.startswith("unexpected end of input")
    assert d.loc == Span("t.aob", 2, 12, 2, 13)


def test_a_character_no_token_starts_with() -> None:
    (d,) = _diags(_w("x = agent @"))
    assert d.message.startswith('unexpected character "@"')
    assert d.loc == Span("t.aob", 2, 11, 2, 12)


def test_an_integer_too_long_to_convert_is_a_syntax_error() -> None:
    # lark's path lets int()'s ValueError escape (as a VisitError); this one reports it.
    (d,) = _diags(_w("x = agent { a: " + "9" * 5000 + " }"))
    assert d.code is not None and d.code.name == "syntax"
    assert d.loc == Span("t.aob", 2, 16, 2, 5016)


def test_deep_nesting_falls_back_to_lark() -> None:
    # Recursive descent runs out of stack where lark's LALR parser does not.
    text = _w("output o = " + "(" * 400 + "a" + ")" * 400)
    with pytest.raises(RecursionError):
        parse_file(SourceFile.of("t.aob", text))
    assert assert_same(text)


def test_nesting_too_deep_for_both_is_a_syntax_error() -> None:
    (d,) = _diags(_w("output o = " + "-" * 5000 + "a"))
    assert d.message == "the input is nested too deeply"


def test_parse_dsl_leaves_the_garbage_collector_as_it_was() -> None:
    assert gc.isenabled()
    parse_dsl(SourceFile.of("t.aob", _w("x = agent")), [])
    assert gc.isenabled()
    gc.disable()
    try:
        parse_dsl(SourceFile.of("t.aob", _w("x = agent")), [])
        assert not gc.isenabled()
    finally:
        gc.enable()


@given(
    st.text(
        alphabet=st.sampled_from(list('{}[]()=:,.-<>+*/%#"\\ \n\t\r\fabsmhdeE_019@')), max_size=60
    )
)
@settings(max_examples=400, deadline=None, derandomize=True)
def test_tokens_are_lark_root_lexers(text: str) -> None:
    # Before any contextual splitting, the token stream is what lark's root lexer reads,
    # positions included, up to the first character no terminal matches.
    from lark.exceptions import UnexpectedCharacters

    from aobc.frontend.dsl_parser import _Tokens

    expected: list[tuple[Any, ...]] = []
    try:
        for tok in parser().lex(text):
            expected.append((str(tok), tok.line, tok.column, tok.end_line, tok.end_column))
    except UnexpectedCharacters as err:
        expected.append((text[err.pos_in_stream or 0], err.line, err.column, None, None))
    tokens = _Tokens(SourceFile.of("t.aob", text))
    got: list[tuple[Any, ...]] = [
        (t, tokens.L[k], tokens.C[k], tokens.EL[k], tokens.EC[k])
        for k, t in enumerate(tokens.T[: len(expected)])
    ]
    if expected and expected[-1][3] is None:  # an unexpected character: its place only
        k = len(expected) - 1
        got[-1] = (text[tokens.S[k]], *got[-1][1:3], None, None)
    assert got == expected
    assert len(tokens.T) == len(expected) + 5 or expected[-1][3] is None
