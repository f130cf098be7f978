"""Support triage: classifying tickets, sending replies, paging people.

The effectful functions write what they did to `$AOBC_DEMO_OUTBOX` (a JSON-lines file) when
it is set, keyed by the idempotency key, so a run that is resumed after a crash can be seen
to send each reply exactly once.
"""

from __future__ import annotations

import json
import os
from typing import Any

URGENT = ("outage", "down", "data loss", "cannot log in", "security")


def classify(inputs: dict[str, Any]) -> dict[str, Any]:
    ticket = inputs.get("ticket") or {}
    text = f"{ticket.get('subject', '')} {ticket.get('body', '')}".lower()
    urgent = any(word in text for word in URGENT)
    category = (
        "billing"
        if "invoice" in text or "charge" in text
        else "technical"
        if urgent or "error" in text
        else "general"
    )
    return {"priority": "urgent" if urgent else "normal", "category": category}


def _record(kind: str, ctx: Any, payload: dict[str, Any]) -> dict[str, Any]:
    entry = {
        "kind": kind,
        "run": ctx.run_id,
        "node": ctx.node_id,
        "key": ctx.idempotency_key,
        **payload,
    }
    outbox = os.environ.get("AOBC_DEMO_OUTBOX")
    if outbox:
        with open(outbox, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
    return entry


def send_reply(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    ticket = inputs.get("ticket") or {}
    entry = _record("reply", ctx, {"to": ticket.get("from"), "reply": inputs.get("reply")})
    return {"message_id": f"msg-{entry['key'][:10]}", "to": ticket.get("from")}


def page_oncall(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    ticket = inputs.get("ticket") or {}
    _record("page", ctx, {"subject": ticket.get("subject")})
    return {"paged": "oncall"}


def notify_engineer(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    _record("engineer", ctx, {"ticket": (inputs.get("ticket") or {}).get("id")})
    return {"notified": "engineering"}
