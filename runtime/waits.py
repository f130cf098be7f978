"""Durable waits: timers and human approvals.

Both are events first. A timer logs `timer.scheduled` with its wake time once, so a run
that sleeps survives a restart and wakes on time (or at once, if the time passed while it
was down). An approval logs `ticket.opened`; when its level's deadline passes it logs
`ticket.escalated` to the next approvers, and after the last level it applies the node's
`on_timeout` policy: approve, reject, or fail the run. A decision is a `ticket.decided`
event, written by whoever decides (`aobc approve` from another process, the API, or the
timeout); the first decision wins.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import TYPE_CHECKING, Any

from aobc.ir import parse_duration
from aobc.runtime import core
from aobc.runtime.driver import NodeFailure
from aobc.runtime.env import render

if TYPE_CHECKING:
    from aobc.runtime.driver import RunDriver
    from aobc.runtime.engine import Engine


def ticket_id(run_id: str, node_id: str) -> str:
    return "t-" + hashlib.sha256(f"{run_id}\x00{node_id}".encode()).hexdigest()[:12]


def parse_time(value: Any) -> float:
    """Epoch seconds from an ISO 8601 time (a `Z` suffix means UTC; no zone means UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise NodeFailure(f"timer `until` must be an ISO 8601 time, got {value!r}", "timer")
    try:
        when = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise NodeFailure(f"timer `until` is not an ISO 8601 time: {value!r}", "timer") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


class Waits:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def now(self) -> float:
        return self.engine.options.clock()

    # --- starting -------------------------------------------------------------------------

    def start(self, d: RunDriver, i: int) -> None:
        node = d.ir.nodes[i]
        cfg = d.configs[i]
        if cfg["type"] == "timer":
            if node.id not in d.state.timers:
                if "duration" in cfg:
                    wake = self.now() + (parse_duration(cfg["duration"]) or 0) / 1000
                else:
                    wake = parse_time(render(cfg["until"], d.env))
                d.emit("timer.scheduled", {"node": node.id, "wake_at": wake})
            self.tick(d)
            return
        tid = ticket_id(d.state.run_id, node.id)
        if tid not in d.state.tickets:
            message = render(cfg["message"], d.env) if cfg.get("message") is not None else None
            d.emit(
                "ticket.opened",
                {
                    "ticket": tid,
                    "node": node.id,
                    "level": 0,
                    "approvers": list(cfg["approvers"]),
                    "deadline": self._deadline(cfg),
                    "message": message,
                },
            )
        self.decided(d, tid)

    def _deadline(self, cfg: dict[str, Any]) -> float | None:
        ms = parse_duration(cfg["timeout"]) if isinstance(cfg.get("timeout"), str) else None
        return None if ms is None else self.now() + ms / 1000

    def rearm(self, d: RunDriver) -> None:
        """After a restart: timers and tickets whose nodes were waiting go on waiting."""
        for node_id in d.state.timers:
            i = d.index.get(node_id)
            if i is not None and d.routing.status[i] in (core.READY, core.RUNNING):
                d.routing.status[i] = core.RUNNING
                if i in d.ready:
                    d.ready.remove(i)
        for t in d.state.tickets.values():
            i = d.index.get(t.node)
            if i is not None and d.routing.status[i] in (core.READY, core.RUNNING):
                d.routing.status[i] = core.RUNNING
                if i in d.ready:
                    d.ready.remove(i)
        self.tick(d)
        for t in list(d.state.tickets.values()):
            self.decided(d, t.ticket)

    # --- progress -------------------------------------------------------------------------

    def _waiting(self, d: RunDriver, node_id: str) -> bool:
        i = d.index.get(node_id)
        return i is not None and d.routing.status[i] == core.RUNNING and node_id not in d.state.done

    def tick(self, d: RunDriver) -> None:
        """Fire due timers and escalate or time out due tickets."""
        now = self.now()
        for node_id, wake in list(d.state.timers.items()):
            if wake <= now and self._waiting(d, node_id):
                d.succeed(d.index[node_id], {"fired_at": now, "wake_at": wake})
        for t in list(d.state.tickets.values()):
            if t.open and t.deadline is not None and t.deadline <= now and self._waiting(d, t.node):
                self._expire(d, t.ticket)

    def _expire(self, d: RunDriver, tid: str) -> None:
        t = d.state.tickets[tid]
        cfg = d.configs[d.index[t.node]]
        chain = list(cfg.get("escalate", []))
        if t.level < len(chain):
            level = t.level + 1
            d.emit(
                "ticket.escalated",
                {
                    "ticket": tid,
                    "node": t.node,
                    "level": level,
                    "approvers": [chain[level - 1]],
                    "deadline": self._deadline(cfg),
                },
            )
            return
        policy = cfg.get("on_timeout", "reject")
        if policy == "fail":
            d.fail(
                t.node,
                NodeFailure(f"approval {tid} timed out after {len(chain)} escalations", "timeout"),
            )
            return
        decision = "approved" if policy == "approve" else "rejected"
        d.emit(
            "ticket.decided",
            {
                "ticket": tid,
                "node": t.node,
                "decision": decision,
                "by": "timeout",
                "reason": "no decision in time",
                "timed_out": True,
            },
        )
        self.decided(d, tid)

    def decided(self, d: RunDriver, tid: str) -> None:
        """If the ticket has a decision and its node is still waiting, the node completes."""
        t = d.state.tickets.get(tid)
        if t is None or t.open or not self._waiting(d, t.node):
            return
        d.succeed(
            d.index[t.node],
            {
                "decision": t.decision,
                "by": t.by,
                "reason": t.reason,
                "level": t.level,
                "timed_out": t.timed_out,
            },
        )

    # --- what the driver asks ---------------------------------------------------------------

    def _pending(self, d: RunDriver) -> tuple[list[float], list[Any]]:
        timers = [w for n, w in d.state.timers.items() if self._waiting(d, n)]
        tickets = [t for t in d.state.tickets.values() if t.open and self._waiting(d, t.node)]
        return timers, tickets

    def idle(self, d: RunDriver) -> bool:
        timers, tickets = self._pending(d)
        return not timers and not tickets

    def only_tickets(self, d: RunDriver) -> bool:
        timers, tickets = self._pending(d)
        return not timers and bool(tickets)

    def next_deadline_in(self, d: RunDriver) -> float:
        timers, tickets = self._pending(d)
        deadlines = timers + [t.deadline for t in tickets if t.deadline is not None]
        return max(min(deadlines) - self.now(), 0.0) if deadlines else float("inf")
