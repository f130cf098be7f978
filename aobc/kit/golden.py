"""Golden cases for a pass project: the mypyc-style files aobc's own tests use.

    [case name]
    # pipeline: verify,my-pass{dry-run=true},verify     (default: the pass alone)
    workflow w { ... }                                   (the input, DSL)
    [out]
    ...the workflow after the pipeline, canonical DSL...
    [patch]
    ...one JSON operation per line (a blank line between the patches of two passes)...
    [remarks]
    ...one JSON remark per line...

`aobc pass test --update` writes the sections from what the pass does now; review the diff.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from aobc.diagnostics import render_text
from aobc.errors import AobcError
from aobc.frontend import load_text
from aobc.frontend.overlay import Overlay
from aobc.frontend.printer import to_dsl
from aobc.passes.pipeline import PassPipeline

_SECTION: Final = re.compile(r"^\[(\w+)(?: ([\w-]+))?\]$")
CHECKED: Final = ("out", "patch", "remarks")
_REMARK_KEYS: Final = ("pass", "kind", "name", "nodes", "message", "loc")


@dataclass
class Case:
    file: Path
    name: str
    sections: dict[str, str] = field(default_factory=dict)

    def pipeline(self, default: str) -> str:
        m = re.search(r"^# pipeline: (.+)$", self.sections.get("input", ""), re.M)
        return m.group(1).strip() if m else default


def parse_cases(path: Path) -> list[Case]:
    cases: list[Case] = []
    current: Case | None = None
    section = ""
    lines: list[str] = []

    def flush() -> None:
        if current is not None and section:
            current.sections[section] = "\n".join(lines).strip("\n") + "\n"

    for line in path.read_text(encoding="utf-8").splitlines():
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
    path.write_text("\n".join(out), encoding="utf-8")


def actual(case: Case, pipeline: str) -> dict[str, str]:
    """What the pipeline does to the case's input now; {"error": text} when it fails."""
    try:
        wf = load_text(case.sections["input"], f"{case.name}.aob")
        result = PassPipeline.parse(pipeline).run(Overlay(wf))
    except AobcError as err:
        return {"error": render_text(err.diagnostics, {})}
    if not result.ok:
        return {"error": render_text(result.diagnostics, {})}
    patches = "\n\n".join(
        "\n".join(json.dumps(op.to_json()) for op in p.ops) for p in result.patches
    )
    remarks = "\n".join(
        json.dumps({k: r.to_json()[k] for k in _REMARK_KEYS}) for r in result.remarks
    )
    return {"out": to_dsl(result.workflow), "patch": patches + "\n", "remarks": remarks + "\n"}
