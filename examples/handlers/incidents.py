"""Incident triage: opening a ticket when on-call does not take the page."""

from __future__ import annotations

from typing import Any


def open_ticket(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    alert = inputs.get("alert") or {}
    return {"ticket": f"INC-{ctx.idempotency_key[:8]}", "title": alert.get("title", "alert")}
