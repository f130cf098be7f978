"""Overlays: patches with provenance, deterministic materialization, rebase, rollback, budgets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aobc.backend.serialize import to_document
from aobc.canonical import canonical_bytes, content_hash
from aobc.errors import PatchError
from aobc.frontend import load_text
from aobc.frontend.jsonpatch import PatchOp, apply_ops
from aobc.frontend.overlay import Overlay, materialize
from aobc.frontend.patchfile import Patch, patch_from_json
from aobc.policy import AgentBudget, Policy
from aobc.source import JsonLoc

ROOT = Path(__file__).resolve().parents[2]

BASE = """
workflow demo {
  output result = notify.status
  fetch   = http GET "https://api.example.com/items" { effect: idempotent }
  process = function "m:process" { effect: pure, args: { items: fetch.body } }
  notify  = http POST "https://api.example.com/notify" { effect: effectful, body: process.value }
  triage  = agent { model: "gpt-4o-mini", prompt: "look at ${process.value}", may_patch: true, spawn_budget: 1 }
  fetch -> process -> notify
  process -> triage
}
"""


def wf() -> Any:
    return load_text(BASE, "demo.aob")


def email_node(nid: str = "email") -> dict[str, Any]:
    return {"id": nid, "type": "function", "effect": "effectful", "fn": "notify:send_email"}


def add_email(**meta: Any) -> Patch:
    ops = (
        PatchOp("add", "/nodes/-", email_node()),
        PatchOp("add", "/edges/-", {"from": "process", "to": "email"}),
    )
    return Patch(ops=ops, loc=JsonLoc("email.json", ""), **meta)


def test_vision_patch_works_as_written() -> None:
    vision = ROOT / "examples" / "vision"
    base = json.loads((vision / "base.json").read_text())
    raw = json.loads((vision / "patch.json").read_text())
    patch = patch_from_json(raw, "patch.json")
    assert [op.op for op in patch.ops] == ["add", "add"]
    result = apply_ops(base, patch.ops, patch.loc)
    assert result == json.loads((vision / "materialized.json").read_text())


def test_vision_patch_shape_on_a_real_workflow_records_provenance() -> None:
    overlay = Overlay(wf())
    patch = add_email(author_kind="agent", author="triage", reason="notify by email too")
    head = overlay.apply(patch)
    assert [n.id for n in head.workflow.nodes][-1] == "email"
    origin = head.provenance.node("email")
    assert (origin.patch_id, origin.author_kind, origin.author) == (patch.id, "agent", "triage")
    assert head.provenance.edge(("process", "email", None)).patch_id == patch.id
    assert head.provenance.node("fetch").patch_id is None  # untouched: still from the base


def test_the_literal_vision_node_is_refused_with_a_located_diagnostic() -> None:
    overlay = Overlay(wf())
    before = overlay.head
    raw = json.loads((ROOT / "examples" / "vision" / "patch.json").read_text())
    with pytest.raises(PatchError) as err:
        overlay.apply(patch_from_json(raw, "patch.json"))
    codes = err.value.codes
    assert "unknown-node-type" in codes
    diag = next(d for d in err.value.diagnostics if d.code and d.code.name == "unknown-node-type")
    assert str(diag.loc) == "patch.json#/operations/0/value/type"
    assert overlay.head is before  # a refused patch changes nothing


def test_patch_id_is_the_content_hash_and_covers_metadata() -> None:
    a = add_email(reason="x")
    b = add_email(reason="y")
    assert a.id == content_hash(a.body()) and a.id.startswith("sha256:")
    assert a.id != b.id
    raw = a.to_json()
    assert patch_from_json(raw).id == a.id
    raw["reason"] = "edited"
    with pytest.raises(PatchError) as err:
        patch_from_json(raw)
    assert err.value.codes == ["patch-id-mismatch"]


def test_materialization_is_deterministic() -> None:
    patches = [add_email(), Patch(ops=(PatchOp("replace", "/nodes/0/timeout", "5s"),))]
    patches[1] = Patch(ops=(PatchOp("add", "/nodes/0/timeout", "5s"),))
    a = materialize(wf(), patches)
    b = materialize(wf(), patches)
    assert canonical_bytes(a.document) == canonical_bytes(b.document)
    assert a.hash == b.hash == content_hash(to_document(a.workflow))


def test_rebase_reanchors_positions_by_identity() -> None:
    base = Overlay(wf())
    written_against = base.head.hash
    # Someone inserts a node at the front, shifting every position by one.
    front = Patch(
        ops=(PatchOp("add", "/nodes/0", {"id": "warm", "type": "timer", "duration": "1s"}),)
    )
    base.apply(front)
    # This patch was written against the old version: /nodes/1 was "process".
    late = Patch(ops=(PatchOp("add", "/nodes/1/timeout", "3s"),), base=written_against)
    head = base.apply(late)
    process = head.workflow.node("process")
    assert process is not None and process.timeout_ms == 3000
    assert head.applied_ops[0].path == "/nodes/2/timeout"


def test_rebase_refuses_a_conflicting_patch_and_changes_nothing() -> None:
    overlay = Overlay(wf())
    old = overlay.head.hash
    overlay.apply(Patch(ops=(PatchOp("add", "/nodes/1/timeout", "1s"),)))
    before = overlay.head
    stale = Patch(ops=(PatchOp("add", "/nodes/1/timeout", "9s"),), base=old)
    with pytest.raises(PatchError) as err:
        overlay.apply(stale)
    assert err.value.codes[0] == "patch-conflict"
    assert overlay.head is before


def test_unknown_base_with_positional_paths_is_refused() -> None:
    overlay = Overlay(wf())
    p = Patch(ops=(PatchOp("remove", "/nodes/3"),), base="sha256:" + "0" * 64)
    with pytest.raises(PatchError) as err:
        overlay.apply(p)
    assert err.value.codes == ["patch-base-unknown"]
    # Appends do not depend on positions, so they still apply.
    ok = Patch(ops=add_email().ops, base="sha256:" + "0" * 64)
    assert overlay.apply(ok).workflow.node("email") is not None


def test_rollback_rebases_later_patches_or_refuses_dependents() -> None:
    p1 = add_email()
    v1 = materialize(wf(), [p1])
    p2 = Patch(ops=(PatchOp("add", "/nodes/0/timeout", "2s"),), base=v1.hash)
    full = materialize(wf(), [p1, p2])
    rolled = materialize(wf(), [p1, p2], exclude=[p1.id])
    assert full.workflow.node("email") is not None
    assert rolled.workflow.node("email") is None
    fetch = rolled.workflow.node("fetch")
    assert fetch is not None and fetch.timeout_ms == 2000
    # A patch that changes the node p1 added cannot outlive p1.
    p3 = Patch(ops=(PatchOp("add", "/nodes/4/timeout", "1s"),), base=v1.hash)
    with pytest.raises(PatchError) as err:
        materialize(wf(), [p1, p3], exclude=[p1.id])
    assert "patch-conflict" in err.value.codes


def test_patch_that_creates_a_cycle_is_refused() -> None:
    overlay = Overlay(wf())
    cycle = Patch(ops=(PatchOp("add", "/edges/-", {"from": "notify", "to": "fetch"}),))
    with pytest.raises(PatchError) as err:
        overlay.apply(cycle)
    assert "cycle" in err.value.codes


def test_errors_already_in_the_base_are_not_blamed_on_a_patch() -> None:
    broken = load_text(
        BASE.replace("fetch -> process -> notify", "fetch -> process -> notify\n  notify -> ghost"),
        "b.aob",
    )
    overlay = Overlay(broken)
    assert overlay.base.errors  # the dangling edge
    assert overlay.apply(add_email()).workflow.node("email") is not None


def test_frozen_nodes_cannot_be_touched() -> None:
    overlay = Overlay(wf())
    change = Patch(ops=(PatchOp("add", "/nodes/1/timeout", "1s"),))
    with pytest.raises(PatchError) as err:
        overlay.apply(change, frozen=frozenset({"process"}))
    assert err.value.codes == ["patch-touches-executed"]
    into_done = Patch(ops=(PatchOp("add", "/edges/-", {"from": "triage", "to": "process"}),))
    with pytest.raises(PatchError):
        overlay.apply(into_done, frozen=frozenset({"fetch", "process"}))
    # Adding new work after a finished node is what live patching is for.
    assert overlay.apply(add_email(), frozen=frozenset({"fetch", "process"})).workflow.node("email")


def agent_node(nid: str, **extra: Any) -> dict[str, Any]:
    return {"id": nid, "type": "agent", "model": "m", "prompt": "p", **extra}


def spawn(author: str, *ids: str) -> Patch:
    ops = tuple(
        PatchOp("add", "/nodes/-", agent_node(i, may_patch=True, spawn_budget=1)) for i in ids
    )
    return Patch(ops=ops, author_kind="agent", author=author)


def test_spawn_budget_per_agent_per_patch_per_run_and_depth() -> None:
    policy = Policy(agents=AgentBudget(max_per_patch=1, max_per_run=3, max_depth=2))
    overlay = Overlay(wf(), policy)
    with pytest.raises(PatchError) as err:
        overlay.apply(spawn("triage", "a1", "a2"))  # two in one patch
    assert set(err.value.codes) == {"spawn-budget"}
    overlay.apply(spawn("triage", "a1"))
    with pytest.raises(PatchError):
        overlay.apply(spawn("triage", "a2"))  # triage's own spawn_budget is 1
    overlay.apply(spawn("a1", "b1"))  # depth 2: a1 was spawned by triage
    assert overlay.head.provenance.agent_depth["b1"] == 2
    with pytest.raises(PatchError) as err:
        overlay.apply(spawn("b1", "c1"))  # depth 3 > max_depth 2
    assert "spawned by" in err.value.diagnostics[0].message
    human = Patch(
        ops=(PatchOp("add", "/nodes/-", agent_node("h1")),), author_kind="human", author="ops"
    )
    overlay.apply(human)  # third agent added in this run
    with pytest.raises(PatchError) as err:
        overlay.apply(Patch(ops=(PatchOp("add", "/nodes/-", agent_node("h2")),)))
    assert "per run" in err.value.diagnostics[0].message


def test_patch_op_limit() -> None:
    policy = Policy.from_json({"limits": {"max_patch_ops": 2}})
    raw = [{"op": "test", "path": "/name", "value": "demo"}] * 3
    with pytest.raises(PatchError) as err:
        patch_from_json(raw, "p.json", policy)
    assert err.value.codes == ["size-limit"]


def test_malformed_patch_reports_every_problem() -> None:
    raw = {
        "operations": [
            {"op": "nope", "path": "/a"},
            {"op": "add", "path": "x", "value": 1},
            {"op": "remove"},
        ]
    }
    with pytest.raises(PatchError) as err:
        patch_from_json(raw, "bad.json")
    assert len(err.value.diagnostics) == 3
    assert {str(d.loc) for d in err.value.diagnostics} >= {"bad.json#/operations/0/op"}
