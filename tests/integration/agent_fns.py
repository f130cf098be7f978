"""Workflow functions for the agent-runner tests (coordinator and worker processes import them)."""

from __future__ import annotations

import os
from typing import Any


def echo(inputs: dict[str, Any]) -> dict[str, Any]:
    """A pure function: what it was given."""
    return {"inputs": inputs}


def record(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An effect: one line per call in `$AOBC_TEST_EFFECTS`, with its idempotency key."""
    with open(os.environ["AOBC_TEST_EFFECTS"], "a", encoding="utf-8") as f:
        f.write(f"{ctx.node_id} {ctx.idempotency_key}\n")
    return {"recorded": inputs}
