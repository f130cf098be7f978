"""Approvals (decisions, timeouts, escalation) and durable timers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from harness import HERE, Harness

from aobc.runtime.commands import decide
from aobc.runtime.engine import Stores

APPROVAL = """
workflow a {
  output sent = send
  output archived = archive
  ask = approval {
    approvers: ["ops"]
    escalate: ["lead", "vp"]
    timeout: TIMEOUT
    on_timeout: POLICY
    message: "ship it?"
  }
  send = function "wf_functions:record" { effect: effectful }
  archive = function "wf_functions:record" { effect: effectful }
  ask -[approved]-> send
  ask -[rejected]-> archive
}
"""


def approval(timeout: str = "1h", policy: str = "reject") -> str:
    return APPROVAL.replace("TIMEOUT", timeout).replace("POLICY", policy)


def stores(h: Harness) -> Stores:
    return Stores(h.stores.events, h.stores.cas, h.dir)


@pytest.mark.parametrize(("decision", "branch"), [("approve", "sent"), ("reject", "archived")])
def test_decisions_take_their_labelled_branch(harness: Harness, decision: str, branch: str) -> None:
    waiting = harness.run(approval(), wait_for_humans=False)
    assert waiting.status == "waiting"
    (ticket,) = waiting.waiting
    assert ticket["approvers"] == ["ops"]
    assert ticket["message"] == "ship it?"
    decide(stores(harness), ticket["ticket"], decision, "alice", "checked")
    done = harness.resume(waiting.run_id)
    assert done.status == "succeeded"
    assert done.outputs[branch] is not None
    other = "archived" if branch == "sent" else "sent"
    assert done.outputs[other] is None
    decided = harness.events(waiting.run_id, "ticket.decided")
    assert decided == [
        {
            "ticket": ticket["ticket"],
            "node": "ask",
            "decision": {"approve": "approved", "reject": "rejected"}[decision],
            "by": "alice",
            "reason": "checked",
            "timed_out": False,
        }
    ]


def test_a_decision_reaches_a_run_being_driven(harness: Harness) -> None:
    engine = harness.engine()
    ir = harness.compile(approval())

    async def go() -> Any:
        task = asyncio.create_task(engine.start(ir, {}))
        while not any(e.type == "ticket.opened" for e in harness.seen):
            await asyncio.sleep(0)
        opened = next(e for e in harness.seen if e.type == "ticket.opened")
        decide(stores(harness), opened.data["ticket"], "approve", "bob", "ok")
        return await task

    result = asyncio.run(go())
    assert result.status == "succeeded"
    assert result.outputs["sent"] is not None


def test_a_ticket_cannot_be_decided_twice(harness: Harness) -> None:
    from aobc.errors import ExecutionError

    waiting = harness.run(approval(), wait_for_humans=False)
    tid = waiting.waiting[0]["ticket"]
    decide(stores(harness), tid, "approve", "a", "x")
    with pytest.raises(ExecutionError, match="already approved"):
        decide(stores(harness), tid, "reject", "b", "y")


@pytest.mark.parametrize(
    ("policy", "outcome"), [("approve", "sent"), ("reject", "archived"), ("fail", None)]
)
def test_timeouts_escalate_along_the_chain_then_apply_the_policy(
    harness: Harness, policy: str, outcome: str | None
) -> None:
    result = harness.run(approval("30ms", policy))
    escalations = harness.events(result.run_id, "ticket.escalated")
    assert [(e["level"], e["approvers"]) for e in escalations] == [(1, ["lead"]), (2, ["vp"])]
    if outcome is None:
        assert result.status == "failed"
        assert "timed out after 2 escalations" in (result.error or "")
        return
    assert result.status == "succeeded"
    assert result.outputs[outcome] is not None
    (decided,) = harness.events(result.run_id, "ticket.decided")
    assert decided["timed_out"] is True
    assert decided["by"] == "timeout"


def test_a_decision_before_the_deadline_stops_escalation(harness: Harness) -> None:
    waiting = harness.run(approval("1h"), wait_for_humans=False)
    decide(stores(harness), waiting.waiting[0]["ticket"], "approve", "carol", "fine")
    done = harness.resume(waiting.run_id)
    assert done.status == "succeeded"
    assert harness.events(waiting.run_id, "ticket.escalated") == []


TIMER = """
workflow t {
  output woke = nap
  nap = timer 700ms
  after = function "wf_functions:record" { effect: effectful }
  nap -> after
}
"""


def test_a_timer_survives_a_restart_and_wakes_on_time(tmp_path: Path, harness: Harness) -> None:
    src = tmp_path / "t.aob"
    src.write_text(TIMER)
    env = {**os.environ, "AOBC_STORE": str(harness.dir)}
    run_id = None
    with subprocess.Popen(
        [sys.executable, "-m", "aobc", "run", str(src), "--path", str(HERE)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    ) as child:
        try:
            while run_id is None:  # wait until the child has logged the timer, then kill it
                for r in harness.stores.events.list_runs():
                    if any(
                        e.type == "timer.scheduled" for e in harness.stores.events.read(r.run_id)
                    ):
                        run_id = r.run_id
                if child.poll() is not None:
                    raise AssertionError(
                        child.stderr.read().decode() if child.stderr else "child exited"
                    )
        finally:
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
            child.wait()
    assert run_id is not None
    (scheduled,) = harness.events(run_id, "timer.scheduled")
    assert harness.state(run_id).status == "running"
    result = harness.resume(run_id)
    assert result.status == "succeeded"
    assert result.outputs["woke"]["fired_at"] >= scheduled["wake_at"]
    assert result.outputs["woke"]["wake_at"] == scheduled["wake_at"]  # not re-scheduled
    assert len(harness.events(run_id, "timer.scheduled")) == 1


def test_a_timer_until_a_past_time_fires_at_once(harness: Harness) -> None:
    start = time.time()
    result = harness.run('workflow u { output o = t\n t = timer until "2020-01-01T00:00:00Z" }')
    assert result.status == "succeeded"
    assert result.outputs["o"]["wake_at"] < start
