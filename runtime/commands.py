"""Commands on runs from outside the process that drives them: cancel, decide, propose.

Each is an event appended to the run's log. If a process is driving the run (it holds the
run's lock) it picks the event up on its next poll; if none is, the command's effect waits
in the log until `aobc resume`, except a cancel, which needs no driver and ends the run at
once.
"""

from __future__ import annotations

from typing import Any

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import ExecutionError
from aobc.frontend.patchfile import patch_from_json
from aobc.runtime.engine import Stores
from aobc.runtime.locks import RunLock
from aobc.runtime.state import RunState
from aobc.source import JsonLoc

ACTIVE = ("running", "waiting")


def _error(message: str) -> ExecutionError:
    return ExecutionError(Diagnostic.error(ec.INVALID_VALUE, message, JsonLoc("<runs>", "")))


def load_state(stores: Stores, run_id: str) -> RunState:
    events = stores.events.read(run_id)
    if not events:
        raise _error(f"no run {run_id}")
    return RunState.fold(run_id, events)


def _append(stores: Stores, run_id: str, etype: str, data: dict[str, Any]) -> None:
    stores.events.append(run_id, [(etype, data)])


def cancel(stores: Stores, run_id: str, by: str, reason: str) -> str:
    """Cancel a run: its driver stops it, or, with no driver, it ends now. Returns the status."""
    state = load_state(stores, run_id)
    if state.finished:
        raise _error(f"run {run_id} already {state.status}")
    _append(stores, run_id, "run.cancel_requested", {"by": by, "reason": reason})
    lock = RunLock(stores.dir, run_id) if stores.dir is not None else None
    if lock is None or lock.try_acquire():
        try:
            _append(stores, run_id, "run.cancelled", {"by": by, "reason": reason})
            stores.events.set_status(run_id, "cancelled")
        finally:
            if lock is not None:
                lock.release()
        return "cancelled"
    return "cancelling"


def find_ticket(stores: Stores, ticket: str) -> tuple[str, RunState]:
    """The active run that holds `ticket`."""
    for record in stores.events.list_runs(limit=10_000):
        if record.status not in ACTIVE:
            continue
        state = load_state(stores, record.run_id)
        if ticket in state.tickets:
            return record.run_id, state
    raise _error(f"no open approval ticket {ticket}")


def decide(
    stores: Stores,
    ticket: str,
    decision: str,
    by: str,
    reason: str,
    *,
    state: RunState | None = None,
) -> str:
    """Approve or reject a ticket. Returns the run id.

    `state` is the run holding the ticket when the caller already knows it (a control plane
    keeps an index of open tickets); otherwise every active run is searched."""
    if decision not in ("approve", "reject", "approved", "rejected"):
        raise _error(f'a decision is "approve" or "reject", not "{decision}"')
    if state is not None and ticket in state.tickets and not state.finished:
        run_id = state.run_id
    else:
        run_id, state = find_ticket(stores, ticket)
    t = state.tickets[ticket]
    if not t.open:
        raise _error(f"ticket {ticket} was already {t.decision} by {t.by}")
    verdict = "approved" if decision.startswith("approve") else "rejected"
    data = {
        "ticket": ticket,
        "node": t.node,
        "decision": verdict,
        "by": by,
        "reason": reason,
        "timed_out": False,
    }
    _append(stores, run_id, "ticket.decided", data)
    return run_id


def propose(
    stores: Stores,
    run_id: str,
    raw: Any,
    by: str,
    file: str = "<patch>",
    *,
    source: str | None = None,
) -> str:
    """Propose a human patch to a running run; its driver validates and applies it.

    The patch's syntax is checked here, so a malformed file fails at once; everything else
    (does it apply, does the result verify, does it touch finished nodes) is the driver's
    call, on the version the run is at when it gets there. Returns the patch id.
    """
    state = load_state(stores, run_id)
    if state.finished:
        raise _error(f"run {run_id} already {state.status}; a patch can only change a running run")
    if isinstance(raw, dict) and "operations" not in raw and "ops" not in raw:
        raise _error('a patch needs "operations"')
    if isinstance(raw, list):
        raw = {"operations": raw}
    raw = {"author_kind": "human", "author": by, **raw}
    patch = patch_from_json(raw, file)
    _append(
        stores,
        run_id,
        "patch.proposed",
        {"patch": patch.to_json(), "source": source or f"human:{by}"},
    )
    return patch.id


def decide_patch(
    stores: Stores, patch_id: str, decision: str, by: str, reason: str, *, run_id: str | None = None
) -> str:
    """Approve or reject a patch the review policy held. Returns the run id.

    An approval is an event the run's driver acts on: it validates the patch again on the
    version the run is at by then and applies it (or refuses it, and the refusal is logged).
    """
    if decision not in ("approve", "reject", "approved", "rejected"):
        raise _error(f'a decision is "approve" or "reject", not "{decision}"')
    if run_id is None:
        record = stores.events.get_patch(patch_id)
        if record is None or record.get("run_id") is None:
            raise _error(f"no patch {patch_id}")
        run_id = str(record["run_id"])
    state = load_state(stores, run_id)
    held = state.held.get(patch_id)
    if held is None:
        raise _error(f"patch {patch_id} is not waiting for a decision")
    if "approval" in held:
        raise _error(f"patch {patch_id} was already approved by {held['approval'].get('by')}")
    if state.finished:
        raise _error(f"run {run_id} already {state.status}; its patches can no longer apply")
    approve = decision.startswith("approve")
    etype = "patch.approved" if approve else "patch.rejected"
    _append(stores, run_id, etype, {"patch": patch_id, "by": by, "reason": reason})
    stores.events.record_patch(
        run_id,
        held["patch"],
        "approved" if approve else "rejected",
        {"by": by, "reason": reason, "held": held.get("reason")},
    )
    return run_id
