"""What expressions see while a run executes, and how node configs are rendered against it.

An expression reads node outputs by id (`parse.items`), workflow inputs (`inputs.since`) and,
inside a map body, the current `item`. A node that has not produced an output (it was
skipped, or a join did not wait for it) reads as `null`. Templates are compiled once per
text and cached.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aobc.expr import ExprError, compile_expr, parse_template
from aobc.expr.evaluate import Env
from aobc.expr.template import render_value
from aobc.ir.reads import cached_expr

Compiled = Callable[[Env], Any]


class RunEnv(Mapping[str, Any]):
    """Node outputs by id, plus `inputs` (and `item` in a map body); absent nodes read null."""

    __slots__ = ("extra", "index", "inputs", "outputs")

    def __init__(
        self,
        index: Mapping[str, int],
        outputs: list[Any],
        inputs: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self.index = index
        self.outputs = outputs  # by node index; shared with the driver, which fills it in
        self.inputs = inputs
        self.extra = extra

    def __getitem__(self, key: str) -> Any:
        if self.extra is not None and key in self.extra:
            return self.extra[key]
        i = self.index.get(key)
        if i is not None:
            return self.outputs[i]
        if key == "inputs":
            return self.inputs
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        yield from self.index
        yield "inputs"
        if self.extra:
            yield from self.extra

    def __len__(self) -> int:
        return len(self.index) + 1 + (len(self.extra) if self.extra else 0)

    def with_item(self, item: Any) -> RunEnv:
        return RunEnv(self.index, self.outputs, self.inputs, {"item": item})


@functools.lru_cache(maxsize=16384)
def compiled_expr(text: str) -> Compiled:
    return compile_expr(cached_expr(text))


@functools.lru_cache(maxsize=16384)
def compiled_template(text: str) -> Compiled:
    """A function rendering the template `text`: the value itself for a single hole."""
    if "$" not in text:
        return lambda env: text
    tpl = parse_template(text)
    single = tpl.single
    if single is not None:
        return compile_expr(single)
    parts: list[str | Compiled] = [p if isinstance(p, str) else compile_expr(p) for p in tpl.parts]

    def run(env: Env) -> str:
        return "".join(p if isinstance(p, str) else render_value(p(env)) for p in parts)

    return run


def evaluate(text: str, env: Env) -> Any:
    return compiled_expr(text)(env)


def render(value: Any, env: Env) -> Any:
    """A JSON config value with every string rendered as a template."""
    if isinstance(value, str):
        return compiled_template(value)(env)
    if isinstance(value, Mapping):
        return {k: render(v, env) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [render(v, env) for v in value]
    return value


__all__ = ["ExprError", "RunEnv", "compiled_expr", "compiled_template", "evaluate", "render"]
