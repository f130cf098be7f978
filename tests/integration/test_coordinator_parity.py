"""What the embedded runtime does, through `aobc coordinator` on real servers: approvals
(decided, and timed out along their escalation chain), durable timers, live patches from
people, cancel, and runs that wait on people across a coordinator restart."""

from __future__ import annotations

import pytest
from agent_cluster import Cluster, cluster, of_type, wait_until

from aobc.runtime.commands import cancel, decide, propose
from aobc.runtime.engine import Stores
from aobc.runtime.stores.postgres import PostgresEventLog

pytestmark = pytest.mark.integration
__all__ = ["cluster"]  # the fixture

APPROVAL = """
workflow a {
  output sent = send
  output archived = archive
  ask = approval {
    approvers: ["ops"]
    escalate: ["lead", "vp"]
    timeout: TIMEOUT
    on_timeout: approve
  }
  send = function "agent_fns:record" { effect: effectful }
  archive = function "agent_fns:record" { effect: effectful }
  ask -[approved]-> send
  ask -[rejected]-> archive
}
"""

TIMER = """
workflow t {
  output woke = nap
  output after = after
  nap = timer 1500ms
  after = function "agent_fns:record" { effect: effectful }
  nap -> after
}
"""

EXTRA = {
    "reason": "one more step",
    "operations": [
        {"op": "add", "path": "/nodes/-",
         "value": {"id": "extra", "type": "function", "effect": "effectful",
                   "fn": "agent_fns:record"}},
        {"op": "add", "path": "/edges/-", "value": {"from": "send", "to": "extra"}},
    ],
}  # fmt: skip


def approval(timeout: str) -> str:
    return APPROVAL.replace("TIMEOUT", timeout)


def stores(c: Cluster, log: PostgresEventLog) -> Stores:
    return Stores(log, None)  # type: ignore[arg-type]  # commands touch only the log


def ticket_of(c: Cluster, run_id: str) -> str:
    (opened,) = wait_until(
        lambda: of_type(c.events(run_id), "ticket.opened"), f"run {run_id} to open a ticket"
    )
    return str(opened["ticket"])


def test_approvals_patches_and_cancel_work_through_the_coordinator(cluster: Cluster) -> None:
    cluster.coordinator()
    cluster.worker()
    decided = cluster.start(approval("1h"))
    patched = cluster.start(approval("1h"))
    cancelled = cluster.start(approval("1h"))
    escalated = cluster.start(approval("300ms"))
    with PostgresEventLog(cluster.postgres) as log:
        # A person's live patch reaches the run its coordinator drives, and is applied.
        ticket_of(cluster, patched)
        propose(stores(cluster, log), patched, EXTRA, "dana")
        wait_until(lambda: of_type(cluster.events(patched), "patch.applied"), "the patch")
        decide(stores(cluster, log), ticket_of(cluster, patched), "approve", "dana", "ok")
        decide(stores(cluster, log), ticket_of(cluster, decided), "reject", "alice", "no")
        ticket_of(cluster, cancelled)
        cancel(stores(cluster, log), cancelled, "bob", "not needed")
    st = cluster.finished(decided)
    assert st.status == "succeeded", st.error
    assert st.output_value["archived"] is not None and st.output_value["sent"] is None
    st = cluster.finished(patched)
    assert st.status == "succeeded", st.error
    assert st.done.get("extra") is not None
    st = cluster.finished(escalated)
    assert st.status == "succeeded", st.error
    escalations = of_type(cluster.events(escalated), "ticket.escalated")
    assert [(e["level"], e["approvers"]) for e in escalations] == [(1, ["lead"]), (2, ["vp"])]
    ((timed_out),) = of_type(cluster.events(escalated), "ticket.decided")
    assert (timed_out["timed_out"], timed_out["by"]) == (True, "timeout")
    assert st.output_value["sent"] is not None
    st = cluster.finished(cancelled)
    assert st.status == "cancelled"
    assert not of_type(cluster.events(cancelled), "node.succeeded")


def test_timers_and_waiting_runs_survive_a_coordinator_restart(cluster: Cluster) -> None:
    first = cluster.coordinator()
    cluster.worker()
    waiting = cluster.start(approval("1h"))
    timed = cluster.start(TIMER)
    ticket = ticket_of(cluster, waiting)
    wait_until(lambda: of_type(cluster.events(timed), "timer.scheduled"), "the timer")
    # Held by people only, its record says so; the next coordinator must take it anyway.
    wait_until(lambda: cluster.status(waiting) == "waiting", "the run to say it waits")
    first.kill()
    first.wait()
    # Decided while no coordinator runs: the next one must pick the run up and go on.
    with PostgresEventLog(cluster.postgres) as log:
        decide(stores(cluster, log), ticket, "approve", "erin", "go")
    cluster.coordinator()
    st = cluster.finished(waiting)
    assert st.status == "succeeded", st.error
    assert st.output_value["sent"] is not None
    st = cluster.finished(timed)
    assert st.status == "succeeded", st.error
    (scheduled,) = of_type(cluster.events(timed), "timer.scheduled")  # once: it was durable
    (woke,) = [
        e for e in cluster.events(timed) if e.type == "node.succeeded" and e.data["node"] == "nap"
    ]
    assert woke.time >= scheduled["wake_at"]
