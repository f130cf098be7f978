"""`function` nodes: Python callables named `"module:function"`, sync or async.

A function is called as `fn(inputs, ctx)`, `fn(inputs)` or `fn()`, whichever its signature
takes: `inputs` is a dict (the node's rendered `args`, or its predecessors' outputs by id)
and `ctx` a `NodeContext` with the run id, the node id and the idempotency key. Modules are
imported from the workflow's directory and the configured search path.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class NodeContext:
    """What a running node may know about where it runs."""

    run_id: str
    node_id: str
    idempotency_key: str
    attempt: int = 1
    item_index: int | None = None
    labels: dict[str, Any] = field(default_factory=dict)


class FunctionError(Exception):
    """A function reference does not resolve, or the function failed."""

    def __init__(self, message: str, kind: str = "call") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Callable_:
    """A resolved function and how to call it."""

    fn: Callable[..., Any]
    arity: int  # 0, 1 (inputs) or 2 (inputs, ctx)
    is_async: bool


class FunctionResolver:
    """Imports and caches functions by reference."""

    def __init__(self, search_path: Sequence[str] = ()) -> None:
        self.search_path = [p for p in search_path if p]
        self._cache: dict[str, Callable_] = {}

    def add_paths(self, paths: Sequence[str]) -> None:
        for p in paths:
            if p and p not in self.search_path:
                self.search_path.append(p)

    def resolve(self, ref: str) -> Callable_:
        hit = self._cache.get(ref)
        if hit is not None:
            return hit
        module_name, _, attr = ref.partition(":")
        for p in reversed(self.search_path):
            if p not in sys.path:
                sys.path.insert(0, p)
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise FunctionError(
                f'cannot import module "{module_name}" for {ref}: {err}', "resolve"
            ) from None
        target: Any = module
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise FunctionError(f'module "{module_name}" has no function "{attr}"', "resolve")
        if not callable(target):
            raise FunctionError(f"{ref} is not callable", "resolve")
        resolved = Callable_(target, _arity(target), inspect.iscoroutinefunction(target))
        self._cache[ref] = resolved
        return resolved


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return min(len(positional), 2)


def call_sync(c: Callable_, inputs: dict[str, Any], ctx: NodeContext) -> Any:
    if c.arity == 2:
        return c.fn(inputs, ctx)
    if c.arity == 1:
        return c.fn(inputs)
    return c.fn()


async def call(c: Callable_, inputs: dict[str, Any], ctx: NodeContext) -> Any:
    result = call_sync(c, inputs, ctx)
    if c.is_async or inspect.isawaitable(result):
        result = await result
    return result
