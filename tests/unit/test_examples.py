"""The example workflows: both forms agree, and together they cover the language."""

from __future__ import annotations

from pathlib import Path

import pytest

from aobc.driver import compile_file
from aobc.frontend import load
from aobc.ir import AgentNode, ApprovalNode, NodeKind, walk_nodes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
DSL = sorted(EXAMPLES.glob("*.aob"))


def test_there_are_at_least_six_examples_in_both_forms() -> None:
    assert len(DSL) >= 6
    for path in DSL:
        assert path.with_suffix(".json").exists(), f"{path.name} has no JSON twin"


@pytest.mark.parametrize("path", DSL, ids=lambda p: p.stem)
def test_dsl_and_json_give_equal_ir(path: Path) -> None:
    assert load(path).workflow == load(path.with_suffix(".json")).workflow


@pytest.mark.parametrize("path", DSL, ids=lambda p: p.stem)
def test_examples_compile_cleanly(path: Path) -> None:
    comp = compile_file(path, "verify,prune-dead,verify")
    assert comp.ok, [d.message for d in comp.diagnostics]
    assert not [d for d in comp.diagnostics if d.severity.value == "warning"]


def test_examples_cover_every_kind_a_patching_agent_and_an_escalating_approval() -> None:
    nodes = [n for p in DSL for n in walk_nodes(load(p).workflow.nodes)]
    assert {n.KIND for n in nodes} == set(NodeKind)
    assert any(isinstance(n, AgentNode) and n.may_patch for n in nodes)
    assert any(isinstance(n, ApprovalNode) and n.escalate for n in nodes)
