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
`json`, passes/ checks `out` and `patch`, backend/ checks `ir`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from aobc.backend.emit import get_emitter
from aobc.backend.lower import lower
from aobc.backend.text import ir_to_text
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.frontend.printer import to_dsl
from aobc.passes.pipeline import PassPipeline

HERE = Path(__file__).parent
_SECTION = re.compile(r"^\[(\w+)(?: ([\w-]+))?\]$")
CHECKS = {"frontend": ("out", "json"), "passes": ("out", "patch"), "backend": ("ir",)}


@dataclass
class Case:
    file: Path
    name: str
    sections: dict[str, str] = field(default_factory=dict)

    @property
    def input(self) -> str:
        return self.sections["input"]

    @property
    def pipeline(self) -> str:
        m = re.search(r"^# pipeline: (.+)$", self.input, re.M)
        return m.group(1).strip() if m else "verify"


def parse_cases(path: Path) -> list[Case]:
    cases: list[Case] = []
    current: Case | None = None
    section = ""
    lines: list[str] = []

    def flush() -> None:
        if current is not None and section:
            current.sections[section] = "\n".join(lines).strip("\n") + "\n"

    for line in path.read_text().splitlines():
        m = _SECTION.match(line)
        if m:
            flush()
            lines = []
            if m.group(1) == "case":
                current = Case(path, m.group(2) or "")
                cases.append(current)
                section = "input"
            else:
                section = m.group(1)
            continue
        lines.append(line)
    flush()
    return cases


def write_cases(path: Path, cases: list[Case]) -> None:
    out: list[str] = []
    for c in cases:
        out.append(f"[case {c.name}]")
        out.append(c.sections["input"].rstrip("\n"))
        for key, text in c.sections.items():
            if key != "input":
                out += [f"[{key}]", text.rstrip("\n")]
        out.append("")
    path.write_text("\n".join(out))


def actual(kind: str, case: Case) -> dict[str, str]:
    wf = load_text(case.input, f"{case.name}.aob")
    if kind == "frontend":
        return {"out": to_dsl(wf), "json": get_emitter("json").emit(wf)}
    if kind == "backend":
        return {"ir": ir_to_text(lower(wf))}
    result = PassPipeline.parse(case.pipeline).run(Overlay(wf))
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
