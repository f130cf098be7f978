"""Functions the API tests' workflows call ("apifns:..."), imported by the server process."""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any


def items(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"list": list(range(int(inputs.get("n", 0))))}


def square(inputs: dict[str, Any]) -> int:
    return int(inputs["item"]) ** 2


def echo(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"echo": inputs}


async def nap(inputs: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(float(inputs.get("seconds", 0.01)))
    return {"slept": inputs.get("seconds", 0.01)}


def record(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An effect: appended to $APIFNS_OUTBOX, keyed by its idempotency key."""
    entry = {"node": ctx.node_id, "run": ctx.run_id, "key": ctx.idempotency_key}
    outbox = os.environ.get("APIFNS_OUTBOX")
    if outbox:
        with open(outbox, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    return {"done": ctx.node_id}


async def nap_square(inputs: dict[str, Any]) -> int:
    await asyncio.sleep(0)  # a turn of the loop, as real I/O would take
    return int(inputs["item"]) ** 2
