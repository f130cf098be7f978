"""Workflow functions for the distributed-runtime tests, imported by worker processes.

Each call records its node and idempotency key in the file `$AOBC_TEST_EFFECTS`, one line
per effect. `gate` first waits until the file `$AOBC_TEST_GATE/release` exists, having written
its process id to `$AOBC_TEST_GATE/started`, so a test can kill the process running it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any


def _number(value: Any) -> int:
    if isinstance(value, bool | int):
        return int(value)
    if isinstance(value, dict):
        return sum(_number(v) for v in value.values())
    if isinstance(value, list):
        return sum(_number(v) for v in value)
    return 0


def _record(ctx: Any) -> None:
    with open(os.environ["AOBC_TEST_EFFECTS"], "a", encoding="utf-8") as f:
        f.write(f"{ctx.node_id} {ctx.item_index} {ctx.idempotency_key}\n")


def step(inputs: dict[str, Any], ctx: Any) -> int:
    """An effect: one plus the sum of its inputs."""
    _record(ctx)
    return _number(inputs) + 1


def gate(inputs: dict[str, Any], ctx: Any) -> int:
    """As `step`, once the test releases it (polling a file: this is the workload waiting)."""
    gate_dir = Path(os.environ["AOBC_TEST_GATE"])
    release = gate_dir / "release"
    if not release.exists():
        (gate_dir / "started.tmp").write_text(str(os.getpid()))
        (gate_dir / "started.tmp").rename(gate_dir / "started")
        while not release.exists():
            time.sleep(0.005)
    return step(inputs, ctx)


def item_gate(inputs: dict[str, Any], ctx: Any) -> int:
    """As `item`, once the test releases it (as `gate`)."""
    gate(inputs, ctx)  # records the effect, once released
    return int(inputs["item"]) * 10


def item(inputs: dict[str, Any], ctx: Any) -> int:
    _record(ctx)
    return int(inputs["item"]) * 10
