"""A run's state, as a fold over its events.

`RunState.apply` is the only way state changes, live or on resume: the engine appends an
event and applies it, and resuming a run applies its whole log in order. Routing (which
nodes are ready) is not stored; it is derived from the IR and the order nodes finished in
(see `aobc.runtime.interp_py`), so it is rebuilt exactly after a restart or a live patch.

Event types and their data:

    run.started            workflow, ir, version, inputs, mode, name, namespace, [parent, frozen, replay, labels]
    node.started           node, attempt, key                 (non-pure nodes; all nodes in full mode)
    node.succeeded         node, output (hash | null), [cached, frozen, child, ms]
    node.failed            node, attempt, error, kind, final
    node.skipped           node                               (full mode; informational)
    map.item               node, index, output
    timer.scheduled        node, wake_at
    ticket.opened          ticket, node, level, approvers, deadline, message
    ticket.escalated       ticket, node, level, approvers, deadline
    ticket.decided         ticket, node, decision, by, reason, timed_out
    patch.proposed         patch, source
    patch.applied          patch, author_kind, author, reason, base, version, ir
    patch.refused          patch, diagnostics
    patch.held             patch, source, reason              (the review policy wants a person)
    patch.approved         patch (id), by, reason             (a held patch may now be applied)
    patch.rejected         patch (id), by, reason             (a held patch is dropped)
    run.cancel_requested   by, reason
    run.cancelled          by, reason
    run.succeeded          outputs, value
    run.failed             error, node
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from aobc.runtime.stores.base import Event

TERMINAL: Final = ("succeeded", "failed", "cancelled")


@dataclass
class Ticket:
    """An approval request and where it stands."""

    ticket: str
    node: str
    level: int
    approvers: list[str]
    deadline: float | None  # epoch seconds; None waits forever
    message: str | None = None
    decision: str | None = None  # approved | rejected
    by: str | None = None
    reason: str | None = None
    timed_out: bool = False

    @property
    def open(self) -> bool:
        return self.decision is None

    def to_json(self) -> dict[str, Any]:
        return {
            "ticket": self.ticket,
            "node": self.node,
            "level": self.level,
            "approvers": self.approvers,
            "deadline": self.deadline,
            "message": self.message,
            "decision": self.decision,
            "by": self.by,
            "reason": self.reason,
            "timed_out": self.timed_out,
        }


@dataclass(slots=True)
class RunState:
    """Everything known about one run, folded from its log."""

    run_id: str
    name: str = ""
    namespace: str = "default"
    workflow: str = ""  # hash of the materialized workflow the run started on
    start_ir: str = ""  # hash of the IR the run started on
    ir: str = ""  # hash of the current IR (changes with live patches)
    version: str = ""  # hash of the current workflow version
    inputs: dict[str, Any] = field(default_factory=dict)
    mode: str = "full"
    parent: str | None = None
    frozen: dict[str, str] = field(default_factory=dict)  # replay: node -> output hash
    replay: dict[str, Any] | None = None
    done: dict[str, str | None] = field(default_factory=dict)  # node -> output hash
    order: list[str] = field(default_factory=list)  # nodes in the order they finished
    started: dict[str, tuple[int, str]] = field(default_factory=dict)  # running: attempt, key
    attempts: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    map_items: dict[str, dict[int, str]] = field(default_factory=dict)
    timers: dict[str, float] = field(default_factory=dict)
    tickets: dict[str, Ticket] = field(default_factory=dict)
    patches: list[dict[str, Any]] = field(default_factory=list)  # applied, in order
    proposals: list[dict[str, Any]] = field(default_factory=list)  # not yet decided
    held: dict[str, dict[str, Any]] = field(default_factory=dict)  # awaiting a person, by id
    labels: dict[str, Any] = field(default_factory=dict)
    cancel: dict[str, Any] | None = None
    status: str = "running"
    outputs: str | None = None
    output_value: Any = None
    error: str | None = None
    last_seq: int = 0

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL

    def apply(self, etype: str, data: dict[str, Any]) -> None:
        handler = _HANDLERS.get(etype)
        if handler is not None:
            handler(self, data)

    def apply_event(self, event: Event) -> None:
        self.apply(event.type, event.data)
        self.last_seq = event.seq

    @staticmethod
    def fold(run_id: str, events: list[Event]) -> RunState:
        st = RunState(run_id)
        for e in events:
            st.apply_event(e)
        return st

    def ticket_for(self, node: str) -> Ticket | None:
        for t in self.tickets.values():
            if t.node == node:
                return t
        return None


def _started(st: RunState, d: dict[str, Any]) -> None:
    st.name = d.get("name", "")
    st.namespace = d.get("namespace", "default")
    st.workflow = d["workflow"]
    st.version = d.get("version", d["workflow"])
    st.ir = st.start_ir = d["ir"]
    st.inputs = d.get("inputs", {})
    st.mode = d.get("mode", "full")
    st.parent = d.get("parent")
    st.frozen = dict(d.get("frozen") or {})
    st.replay = d.get("replay")
    st.labels = dict(d.get("labels") or {})


def _node_started(st: RunState, d: dict[str, Any]) -> None:
    st.started[d["node"]] = (d.get("attempt", 1), d.get("key", ""))
    st.attempts[d["node"]] = d.get("attempt", 1)


def _node_succeeded(st: RunState, d: dict[str, Any]) -> None:
    node = d["node"]
    if node in st.done:
        return  # a duplicate delivery of the same completion has no second effect
    st.started.pop(node, None)
    st.done[node] = d.get("output")
    st.order.append(node)


def _node_failed(st: RunState, d: dict[str, Any]) -> None:
    st.attempts[d["node"]] = d.get("attempt", 1)
    if d.get("final"):
        st.started.pop(d["node"], None)
        st.failed[d["node"]] = d.get("error", "")


def _map_item(st: RunState, d: dict[str, Any]) -> None:
    st.map_items.setdefault(d["node"], {})[int(d["index"])] = d["output"]


def _timer(st: RunState, d: dict[str, Any]) -> None:
    st.timers.setdefault(d["node"], float(d["wake_at"]))


def _ticket_opened(st: RunState, d: dict[str, Any]) -> None:
    if d["ticket"] not in st.tickets:
        st.tickets[d["ticket"]] = Ticket(
            d["ticket"],
            d["node"],
            d.get("level", 0),
            list(d.get("approvers", [])),
            d.get("deadline"),
            d.get("message"),
        )


def _ticket_escalated(st: RunState, d: dict[str, Any]) -> None:
    t = st.tickets.get(d["ticket"])
    if t is not None and t.open and d.get("level", 0) > t.level:
        t.level = d["level"]
        t.approvers = list(d.get("approvers", []))
        t.deadline = d.get("deadline")


def _ticket_decided(st: RunState, d: dict[str, Any]) -> None:
    t = st.tickets.get(d["ticket"])
    if t is not None and t.open:  # the first decision wins; later ones change nothing
        t.decision = d["decision"]
        t.by = d.get("by")
        t.reason = d.get("reason")
        t.timed_out = bool(d.get("timed_out"))


def _patch_proposed(st: RunState, d: dict[str, Any]) -> None:
    st.proposals.append(d)


def _patch_id(d: dict[str, Any]) -> Any:
    return d["patch"].get("id") if isinstance(d["patch"], dict) else d["patch"]


def _patch_decided(st: RunState, d: dict[str, Any]) -> None:
    pid = _patch_id(d)
    st.proposals = [p for p in st.proposals if p["patch"].get("id") != pid]
    st.held.pop(pid, None)


def _patch_held(st: RunState, d: dict[str, Any]) -> None:
    _patch_decided(st, d)
    st.held[_patch_id(d)] = dict(d)


def _patch_approved(st: RunState, d: dict[str, Any]) -> None:
    held = st.held.get(d["patch"])
    if held is not None and "approval" not in held:  # the first decision wins
        held["approval"] = {"by": d.get("by"), "reason": d.get("reason")}


def _patch_rejected(st: RunState, d: dict[str, Any]) -> None:
    held = st.held.get(d["patch"])
    if held is not None and "approval" not in held:
        del st.held[d["patch"]]


def _patch_applied(st: RunState, d: dict[str, Any]) -> None:
    _patch_decided(st, d)
    st.patches.append(d)
    st.version = d["version"]
    st.ir = d["ir"]


def _cancel_requested(st: RunState, d: dict[str, Any]) -> None:
    if st.cancel is None:
        st.cancel = d


def _terminal(status: str) -> Any:
    def apply(st: RunState, d: dict[str, Any]) -> None:
        if st.finished:
            return
        st.status = status
        if status == "succeeded":
            st.outputs = d.get("outputs")
            st.output_value = d.get("value")
        elif status == "failed":
            st.error = d.get("error")
        elif status == "cancelled":
            st.cancel = st.cancel or d

    return apply


_HANDLERS: Final = {
    "run.started": _started,
    "node.started": _node_started,
    "node.succeeded": _node_succeeded,
    "node.failed": _node_failed,
    "map.item": _map_item,
    "timer.scheduled": _timer,
    "ticket.opened": _ticket_opened,
    "ticket.escalated": _ticket_escalated,
    "ticket.decided": _ticket_decided,
    "patch.proposed": _patch_proposed,
    "patch.applied": _patch_applied,
    "patch.refused": _patch_decided,
    "patch.held": _patch_held,
    "patch.approved": _patch_approved,
    "patch.rejected": _patch_rejected,
    "run.cancel_requested": _cancel_requested,
    "run.cancelled": _terminal("cancelled"),
    "run.succeeded": _terminal("succeeded"),
    "run.failed": _terminal("failed"),
}
