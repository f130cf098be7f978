"""Functions the runtime tests' workflows call (imported by reference, "wf_functions:...")."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any

CALLS: list[tuple[str, str, Any]] = []  # (node, key, inputs) of every effectful call in-process
ACTIVE = {"now": 0, "max": 0}
_lock = threading.Lock()


def inc(inputs: dict[str, Any]) -> dict[str, Any]:
    return {"value": inputs.get("x", 0) + 1}


def total(inputs: dict[str, Any]) -> dict[str, Any]:
    return {
        "value": sum(v["value"] for v in inputs.values() if isinstance(v, dict) and "value" in v)
    }


def echo(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    return {"inputs": inputs, "run": ctx.run_id, "node": ctx.node_id, "key": ctx.idempotency_key}


async def slow_double(inputs: dict[str, Any]) -> dict[str, Any]:
    with _lock:
        ACTIVE["now"] += 1
        ACTIVE["max"] = max(ACTIVE["max"], ACTIVE["now"])
    await asyncio.sleep(0.01)
    with _lock:
        ACTIVE["now"] -= 1
    return {"value": inputs["x"] * 2}


def record(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An effect: remembered in-process, and appended (fsynced) to $WF_EFFECTS when set."""
    CALLS.append((ctx.node_id, ctx.idempotency_key, inputs))
    path = os.environ.get("WF_EFFECTS")
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(
                json.dumps({"node": ctx.node_id, "key": ctx.idempotency_key, "pid": os.getpid()})
                + "\n"
            )
            f.flush()
            os.fsync(f.fileno())
    return {"done": ctx.node_id, "key": ctx.idempotency_key}


_flaky: dict[str, int] = {}


def flaky(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Fails the first `fails` attempts of each idempotency key."""
    seen = _flaky.get(ctx.idempotency_key, 0)
    _flaky[ctx.idempotency_key] = seen + 1
    if seen < inputs.get("fails", 1):
        raise RuntimeError(f"transient failure {seen + 1}")
    return {"attempt": ctx.attempt}


def boom(inputs: dict[str, Any]) -> Any:
    raise ValueError("it broke")


def not_json(inputs: dict[str, Any]) -> Any:
    return {"when": {1, 2}}


COUNTER = {"pure": 0}


def counted(inputs: dict[str, Any]) -> dict[str, Any]:
    COUNTER["pure"] += 1
    return {"value": inputs.get("x", 0) * 10}


def record_slow(inputs: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """An effect with work on both sides of it, so a kill can land before, during or after."""
    import time

    time.sleep(inputs.get("delay", 0.02))
    out = record({"item": inputs.get("item")}, ctx)
    time.sleep(inputs.get("delay", 0.02))
    return {"node": ctx.node_id, "item": inputs.get("item"), "key": out["key"]}


STEPS: list[dict[str, Any]] = []  # the inputs of every `step` call, in call order


def _number(value: Any) -> int:
    """The numbers in a node's output: an int, a condition's bool, or a join's dict of them."""
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, dict):
        return sum(_number(v) for v in value.values())
    return 0


def step(inputs: dict[str, Any]) -> int:
    """Pure: 1 + the numbers in its inputs, mod 97 (small values, so guards split both ways).

    Each call's inputs are recorded in STEPS, so a test can compare the order in which two
    runs called it; that is the only thing the record is for.
    """
    STEPS.append(dict(inputs))
    return (1 + sum(_number(v) for v in inputs.values())) % 97


def die_if_told(inputs: dict[str, Any]) -> int:
    """Pure, but SIGKILLs its own process when $WF_DIE is set: a crash in the middle of a run."""
    if os.environ.get("WF_DIE"):
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
    return 1
