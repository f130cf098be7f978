"""Random and mutated inputs never raise anything but a diagnostic."""

from __future__ import annotations

import io
import json
import random
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.lark import from_lark

from aobc.backend.serialize import to_document
from aobc.cli import main
from aobc.errors import AobcError
from aobc.frontend import load_text
from aobc.frontend.printer import to_dsl
from aobc.syntax import parser
from aobc.testing.generate import random_workflow

EXAMPLES = sorted((Path(__file__).resolve().parents[2] / "examples").glob("*.aob"))
names = st.from_regex(r"[a-z][a-z0-9_]{0,6}", fullmatch=True)
dsl_texts = from_lark(
    parser(),
    start="file",
    explicit={
        "NAME": names,
        "STRING": st.from_regex(r'"[a-z0-9:/.${} ]{0,12}"', fullmatch=True),
        "DURATION": st.from_regex(r"[1-9][0-9]{0,2}(ms|s|m|h|d)", fullmatch=True),
        "INT": st.from_regex(r"[0-9]{1,4}", fullmatch=True),
        "FLOAT": st.from_regex(r"[0-9]{1,3}\.[0-9]{1,3}", fullmatch=True),
    },
)


def _load_never_crashes(text: str, name: str) -> None:
    """Loading either succeeds or raises AobcError with coded diagnostics; nothing else."""
    problems: tuple[object, ...] = ()
    try:
        load_text(text, name)
    except AobcError as err:
        problems = err.diagnostics
        assert problems, "an error with no diagnostics"
    assert all(d.code is not None for d in problems if d.is_error)  # type: ignore[attr-defined]


@given(dsl_texts)
@settings(max_examples=300, suppress_health_check=list(HealthCheck))
def test_grammar_generated_sources_give_ir_or_diagnostics(text: str) -> None:
    _load_never_crashes(text, "fuzz.aob")


def _mutations(text: str, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(rng.randint(1, 6)):
        op = rng.randrange(3)
        i = rng.randrange(len(chars) + 1)
        if op == 0 and chars:
            del chars[min(i, len(chars) - 1)]
        elif op == 1:
            chars.insert(i, rng.choice('{}[]()"=-><:,.$#\n x1_'))
        elif chars:
            j = rng.randrange(len(chars))
            chars[min(i, len(chars) - 1)], chars[j] = chars[j], chars[min(i, len(chars) - 1)]
    return "".join(chars)


@given(st.randoms(use_true_random=False), st.sampled_from(EXAMPLES))
@settings(max_examples=300)
def test_mutated_examples_give_ir_or_diagnostics(rng: random.Random, path: Path) -> None:
    _load_never_crashes(_mutations(path.read_text(), rng), "mutated.aob")


@given(st.randoms(use_true_random=False), st.integers(1, 12))
@settings(max_examples=200)
def test_mutated_json_gives_ir_or_diagnostics(rng: random.Random, n: int) -> None:
    text = json.dumps(to_document(random_workflow(rng, n)))
    _load_never_crashes(_mutations(text, rng), "mutated.json")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "id",
                    "type",
                    "effect",
                    "fn",
                    "url",
                    "method",
                    "nodes",
                    "edges",
                    "from",
                    "to",
                    "args",
                    "over",
                    "body",
                    "x",
                ]
            ),
            inner,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@given(json_values)
@settings(max_examples=300)
def test_arbitrary_json_gives_ir_or_diagnostics(value: object) -> None:
    _load_never_crashes(json.dumps(value), "any.json")


@given(st.randoms(use_true_random=False), st.sampled_from(EXAMPLES))
@settings(max_examples=25)
def test_the_cli_never_prints_a_traceback(rng: random.Random, path: Path) -> None:
    import tempfile

    text = _mutations(path.read_text(), rng)
    with tempfile.TemporaryDirectory() as d:
        src = Path(d) / "w.aob"
        src.write_text(text)
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(["compile", str(src), "-o", str(Path(d) / "w.aobir")])
        assert code in (0, 1)
        assert "Traceback" not in err.getvalue() + out.getvalue()
        assert "internal-error" not in err.getvalue()


def test_printed_generated_workflows_parse_back() -> None:
    for seed in range(30):
        wf = random_workflow(random.Random(seed), 25)
        assert load_text(to_dsl(wf), "printed.aob") == wf
