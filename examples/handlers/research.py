"""Research assistant: saving answers, flagging uncited ones."""

from __future__ import annotations

from typing import Any


def save(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"saved": True, "question": inputs.get("question"), "key": ctx.idempotency_key}


def flag_uncited(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"flagged": inputs.get("question"), "key": ctx.idempotency_key}
