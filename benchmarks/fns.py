"""Trivial pure functions for the interpreter benchmarks: the work is the engine's."""

from __future__ import annotations

from typing import Any


def step(inputs: dict[str, Any]) -> int:
    """One node: the sum of its inputs plus one (an int keeps the payload small)."""
    return sum(inputs.values()) + 1 if inputs else 1
