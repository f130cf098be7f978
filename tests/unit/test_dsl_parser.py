"""The hand-written DSL parser against lark's, which defines the language.

For every text both must agree: on acceptance; for accepted texts on the whole document and
source map (spans included); for rejected texts on the diagnostic, message and span included.
Texts come from the examples, generated workflows, hand-picked tricky snippets, hypothesis
(`from_lark` on the grammar) and random mutations of all of these.
"""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark
from lark.exceptions import VisitError

from aobc.diagnostics import Diagnostic
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
    # ...but where the state has keywords and no name, a keyword matches a word's prefix...
    _w("x = mapper\ny = agentx = agent\nz = timer5s\nj = joinall"),
    _w("x = functionality"),
    "workflowfoo {}",
    _w("x = composite workflowsub { y = agent }"),
    _w("output o = a not inx\noutput p = a not input"),
    _w("a -[l whenx > 1]-> b"),
    # ...and after an expression or a value LALR merges in keywords that cannot follow.
    _w("x = agent { a: 1 input: 2 }"),
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

grammar_texts = from_lark(
    parser(),
    start="file",
    explicit={
        # from_lark joins tokens with no space between most of them, so names, keywords and
        # numbers run together into the prefix and keyword cases the contextual lexer has.
        "NAME": st.sampled_from(_NAMES),
        "STRING": st.sampled_from(
            ['"s"', '""', '"a b"', '"\\n"', '"\\q"', '"""t\n""q"""', '"k/~"']
        ),
        "DURATION": st.sampled_from(["10s", "1h30m", "5ms", "2d"]),
        "INT": st.sampled_from(["0", "1", "42", "007"]),
        "FLOAT": st.sampled_from(["1.5", "2e3", "1e999", "0.0", "3E-2"]),
        "COMMENT": st.sampled_from(["#c\n", "# a -> b\n"]),  # a comment ends with its line
        _WS: st.sampled_from([" ", "\n", "\t "]),
    },
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
    # Where no keyword may stand, a keyword is a name; where keywords but no name may stand,
    # a keyword is read off the front of a longer word.
    doc = _doc(_w("x = mapper\nmap = agent { map: 1 }\na -[else]-> map"))
    assert doc["nodes"] == [
        {"id": "x", "type": "map", "over": "per"},
        {"id": "map", "type": "agent", "map": 1},
    ]
    assert doc["edges"] == [{"from": "a", "to": "map", "label": "else"}]
    assert _doc(_w("output o = a not inx"))["outputs"] == {"o": "a not in x"}


def test_durations_only_where_a_config_value_may_stand() -> None:
    doc = _doc(_w("x = agent { t: 10s, n: -10s: 5 }\ny = join 5s = agent"))
    assert doc["nodes"] == [
        {"id": "x", "type": "agent", "t": "10s", "n": -10, "s": 5},
        {"id": "y", "type": "join", "n": 5},
        {"id": "s", "type": "agent"},
    ]


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

    expected = []
    try:
        for tok in parser().lex(text):
            expected.append((str(tok), tok.line, tok.column, tok.end_line, tok.end_column))
    except UnexpectedCharacters as err:
        expected.append((text[err.pos_in_stream], err.line, err.column, None, None))
    tokens = _Tokens(SourceFile.of("t.aob", text))
    got = [
        (t, tokens.L[k], tokens.C[k], tokens.EL[k], tokens.EC[k])
        for k, t in enumerate(tokens.T[: len(expected)])
    ]
    if expected and expected[-1][3] is None:  # an unexpected character: its place only
        got[-1] = (*got[-1][:3], None, None)
    assert got == expected
    assert len(tokens.T) == len(expected) + 5 or expected[-1][3] is None
