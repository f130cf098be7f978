"""Golden tests: plain files of cases, reviewed in diffs, rewritten by `--update-goldens`.

A file holds cases in the mypyc style:

    [case two_nodes]
    # pipeline: prune-dead          (passes/ only; default "verify")
    workflow w { ... }              (DSL input)
    [out]
    ...expected canonical DSL...
    [patch]                          (passes/: the optimizer patches, one JSON array per pass)
    ...
    [ir]                             (backend/: the IR text form)
    ...

Which sections a case checks depends on its directory: frontend/ checks `out` (fmt) and
`json`, passes/ checks `out` and `patch`, backend/ checks `ir`. The files are read and
written by the pass kit's parser (aobc.kit.golden), which ships with aobc: `aobc pass test`
runs plugin authors' goldens in this same format.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aobc.backend.emit import get_emitter
from aobc.backend.lower import lower
from aobc.backend.text import ir_to_text
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.frontend.printer import to_dsl
from aobc.kit.golden import Case, parse_cases, write_cases
from aobc.passes.pipeline import PassPipeline

HERE = Path(__file__).parent
CHECKS = {"frontend": ("out", "json"), "passes": ("out", "patch"), "backend": ("ir",)}


def actual(kind: str, case: Case) -> dict[str, str]:
    wf = load_text(case.sections["input"], f"{case.name}.aob")
    if kind == "frontend":
        return {"out": to_dsl(wf), "json": get_emitter("json").emit(wf)}
    if kind == "backend":
        return {"ir": ir_to_text(lower(wf))}
    result = PassPipeline.parse(case.pipeline("verify")).run(Overlay(wf))
    assert result.ok, [d.message for d in result.diagnostics]
    # One line per operation, one blank line between the patches of successive passes.
    patches = "\n\n".join(
        "\n".join(json.dumps(op.to_json()) for op in p.ops) for p in result.patches
    )
    return {"out": to_dsl(result.workflow), "patch": patches + "\n"}


def _all() -> list[object]:
    params = []
    for kind in CHECKS:
        for path in sorted((HERE / kind).glob("*.test")):
            for case in parse_cases(path):
                params.append(pytest.param(kind, case, id=f"{kind}/{path.stem}/{case.name}"))
    return params


@pytest.mark.parametrize(("kind", "case"), _all())
def test_golden(kind: str, case: Case, update_goldens: bool) -> None:
    got = actual(kind, case)
    if update_goldens:
        cases = parse_cases(case.file)
        for c in cases:
            if c.name == case.name:
                c.sections.update(got)
        write_cases(case.file, cases)
        return
    for key in CHECKS[kind]:
        assert key in case.sections, (
            f"case {case.name} has no [{key}] section; run with --update-goldens"
        )
        assert got[key] == case.sections[key], (
            f"[{key}] differs; run with --update-goldens and review"
        )


def test_there_are_goldens_for_every_kind() -> None:
    for kind in CHECKS:
        assert list((HERE / kind).glob("*.test")), f"no golden files in {kind}/"
