"""Replay in freeze and fresh modes, with the divergence report."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import wf_functions
from harness import Harness

from aobc.errors import ExecutionError
from aobc.runtime.replay import replay

TEXT = """
workflow rp {
  input x: int = 1
  output final = c
  a = function "wf_functions:counted" { effect: pure, args: { x: inputs.x } }
  b = function "wf_functions:inc" { effect: pure, args: { x: a.value } }
  c = function "wf_functions:record" { effect: effectful, args: { v: b.value } }
  side = function "wf_functions:inc" { effect: pure, args: { x: 100 } }
  a -> b -> c
  side -> c
}
"""


def do_replay(h: Harness, run_id: str, node: str, mode: str) -> Any:
    engine = h.engine()

    async def go() -> Any:
        try:
            return await replay(engine, run_id, node, mode)
        finally:
            await engine.close()

    return asyncio.run(go())


def test_freeze_reexecutes_only_the_node_and_its_dependents(harness: Harness) -> None:
    original = harness.run(TEXT)
    wf_functions.COUNTER["pure"] = 0
    result, report = do_replay(harness, original.run_id, "b", "freeze")
    assert result.status == "succeeded"
    assert wf_functions.COUNTER["pure"] == 0  # a is upstream of b: read from the CAS
    assert sorted(r.node for r in report) == ["b", "c"]
    statuses = {r.node: r.status for r in report}
    assert statuses["b"] == "same"
    assert statuses["c"] == "changed"  # an effect re-run in a new run carries a new key
    frozen = {d["node"] for d in harness.events(result.run_id, "node.succeeded") if d.get("frozen")}
    assert frozen == {"a", "side"}
    record = harness.stores.events.get_run(result.run_id)
    assert record is not None
    assert record.parent == original.run_id


def test_fresh_reexecutes_everything_without_the_memo(harness: Harness) -> None:
    original = harness.run(TEXT)
    wf_functions.COUNTER["pure"] = 0
    result, report = do_replay(harness, original.run_id, "a", "fresh")
    assert result.status == "succeeded"
    assert wf_functions.COUNTER["pure"] == 1  # not served from the memo cache
    assert {r.node for r in report} == {"a", "b", "c", "side"}
    assert {r.node for r in report if r.status == "same"} == {"a", "b", "side"}


def test_replay_refuses_bad_requests(harness: Harness) -> None:
    original = harness.run(TEXT)
    with pytest.raises(ExecutionError, match='no node "nope"'):
        do_replay(harness, original.run_id, "nope", "freeze")
    with pytest.raises(ExecutionError, match="freeze"):
        do_replay(harness, original.run_id, "a", "sideways")
    fast = harness.run(TEXT, mode="fast")
    with pytest.raises(ExecutionError, match="fast-path mode"):
        do_replay(harness, fast.run_id, "c", "freeze")
