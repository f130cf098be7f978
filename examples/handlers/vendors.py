"""Vendor onboarding notifications."""

from __future__ import annotations

from typing import Any


def send_welcome(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    vendor = inputs.get("vendor") or {}
    return {
        "sent_to": vendor.get("email"),
        "vendor_id": inputs.get("id"),
        "key": ctx.idempotency_key,
    }


def notify_rejection(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    vendor = inputs.get("vendor") or {}
    return {"notified": vendor.get("email"), "key": ctx.idempotency_key}
