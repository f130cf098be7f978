"""The JSON shapes the API answers with, built from run records, states and patch rows.

Each function here has a schema of the same name in `schemas.py`; the API tests check the
two agree (schemathesis validates every response against the spec).
"""

from __future__ import annotations

from typing import Any

from aobc.runtime.replay import divergence
from aobc.runtime.state import RunState, Ticket
from aobc.runtime.stores.base import Event, RunRecord


def run_summary(r: RunRecord, status: str | None = None) -> dict[str, Any]:
    return {
        "id": r.run_id,
        "namespace": r.namespace,
        "workflow": r.workflow,
        "status": status or r.status,
        "created": r.created,
        "updated": r.updated,
        "parent": r.parent,
        "idempotency_key": r.idempotency_key,
        "priority": str(r.labels.get("priority", "medium")),
        "started_by": r.labels.get("by"),
        "deployment": r.labels.get("deployment"),
    }


def ticket(t: Ticket, st: RunState) -> dict[str, Any]:
    return {
        **t.to_json(),
        "run": st.run_id,
        "namespace": st.namespace,
        "workflow": st.name,
        "status": "open" if t.open else t.decision,
    }


def held_patch(pid: str, h: dict[str, Any]) -> dict[str, Any]:
    patch = h.get("patch", {})
    return {
        "id": pid,
        "author_kind": patch.get("author_kind"),
        "author": patch.get("author"),
        "reason": h.get("reason"),
        "source": h.get("source"),
        "approval": h.get("approval"),
    }


def run_detail(
    r: RunRecord, st: RunState, status: str, original: RunState | None
) -> dict[str, Any]:
    out = run_summary(r, status)
    out.update(
        {
            "mode": st.mode,
            "version": st.version,
            "ir": st.ir,
            "start_ir": st.start_ir,
            "inputs": st.inputs,
            "nodes": {
                "done": st.done,
                "order": st.order,
                "running": sorted(st.started),
                "failed": st.failed,
            },
            "tickets": [ticket(t, st) for t in st.tickets.values()],
            "patches": [
                {
                    "id": p["patch"].get("id"),
                    "author_kind": p.get("author_kind"),
                    "author": p.get("author"),
                    "reason": p.get("reason"),
                    "version": p.get("version"),
                    "approved_by": p.get("approved_by"),
                }
                for p in st.patches
            ],
            "held": [held_patch(pid, h) for pid, h in st.held.items()],
            "outputs": st.output_value,
            "error": st.error,
            "cancel": st.cancel,
            "last_seq": st.last_seq,
            "replay": None,
        }
    )
    if st.replay is not None:
        out["replay"] = {
            "of": st.replay.get("of"),
            "from": st.replay.get("from"),
            "mode": st.replay.get("mode"),
            "divergence": (
                [d.to_json() for d in divergence(original, st)] if original is not None else []
            ),
        }
    return out


def patch_row(row: dict[str, Any], run_status: str | None) -> dict[str, Any]:
    """A row of the patches table; a patch still pending on a finished run has expired."""
    patch = row["patch"]
    status = row["status"]
    if status in ("pending", "proposed", "approved") and run_status in (
        "succeeded",
        "failed",
        "cancelled",
    ):
        status = "expired"
    return {
        "id": patch.get("id"),
        "run": row.get("run_id"),
        "status": status,
        "author_kind": patch.get("author_kind"),
        "author": patch.get("author"),
        "reason": patch.get("reason"),
        "base": patch.get("base"),
        "operations": patch.get("operations", []),
        "detail": row.get("detail") or {},
        "created": row.get("created"),
        "updated": row.get("updated"),
    }


def event(e: Event) -> dict[str, Any]:
    return e.to_json()
