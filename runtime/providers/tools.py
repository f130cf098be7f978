"""The tools agents may call: Python callables by name, with the schema the model sees.

A tool takes the model's arguments as one dict and returns a JSON value; it may be sync (run
in a worker thread, so it cannot stall the event loop) or async. Registries load from config:

    {"search_logs": "ops.tools:search_logs",
     "get_user": {"fn": "ops.tools:get_user", "description": "...", "parameters": {...}}}
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from aobc.runtime.providers.base import ProviderError, ToolSpec

ToolFn = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True, slots=True)
class Tool:
    spec: ToolSpec
    fn: ToolFn
    validator: Draft202012Validator


def _import(ref: str) -> ToolFn:
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise ProviderError("config", f"tool reference {ref!r} is not 'module:function'")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as e:
        raise ProviderError("config", f"cannot load tool {ref!r}: {e}") from e
    if not callable(target):
        raise ProviderError("config", f"tool {ref!r} is not callable")
    fn: ToolFn = target
    return fn


def _describe(fn: ToolFn) -> str:
    """The docstring's first paragraph: what the model reads to decide when to call it."""
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].replace("\n", " ").strip()


class ToolRegistry:
    """Tools by name. Unknown names are config errors, found before any model is called."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    @classmethod
    def load(cls, mapping: Mapping[str, str | Mapping[str, Any]]) -> ToolRegistry:
        """A registry from `{name: "module:function"}` or `{name: {"fn", "description",
        "parameters"}}`; every callable is imported now, so a typo fails at startup."""
        registry = cls()
        for name, entry in mapping.items():
            if isinstance(entry, str):
                registry.register(name, _import(entry))
                continue
            ref = entry.get("fn")
            if not isinstance(ref, str):
                raise ProviderError("config", f"tool {name!r} needs 'fn': 'module:function'")
            registry.register(
                name,
                _import(ref),
                description=entry.get("description"),
                parameters=entry.get("parameters"),
            )
        return registry

    def register(
        self,
        name: str,
        fn: ToolFn,
        *,
        description: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        """Add a tool; `parameters` defaults to any JSON object, `description` to the
        docstring."""
        schema = dict(parameters) if parameters is not None else {"type": "object"}
        try:
            Draft202012Validator.check_schema(schema)
        except SchemaError as e:
            raise ProviderError(
                "config", f"tool {name!r} has an invalid parameters schema: {e.message}"
            ) from e
        spec = ToolSpec(name, description if description is not None else _describe(fn), schema)
        self._tools[name] = Tool(spec, fn, Draft202012Validator(schema))

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def names(self) -> list[str]:
        return sorted(self._tools)

    def spec(self, name: str) -> ToolSpec:
        """The spec of tool `name`; an unknown name is a config error."""
        tool = self._tools.get(name)
        if tool is None:
            known = ", ".join(self.names()) or "none"
            raise ProviderError("config", f"unknown tool {name!r} (registered: {known})")
        return tool.spec

    def specs(self, names: Iterable[str]) -> tuple[ToolSpec, ...]:
        """The specs of an agent node's `tools`, in its order."""
        return tuple(self.spec(name) for name in names)

    async def call(self, name: str, arguments: Any) -> str:
        """Run a tool on the model's arguments; its result as JSON text for the model."""
        tool = self._tools.get(name)
        if tool is None:
            raise ProviderError("tool", f"the model called unknown tool {name!r}")
        if not isinstance(arguments, dict):
            raise ProviderError("tool", f"arguments for tool {name!r} are not a JSON object")
        errors = sorted(tool.validator.iter_errors(arguments), key=lambda e: list(e.path))
        if errors:
            raise ProviderError(
                "tool", f"arguments for tool {name!r} do not match its schema: {errors[0].message}"
            )
        try:
            if inspect.iscoroutinefunction(tool.fn):
                result = await tool.fn(arguments)
            else:
                result = await asyncio.to_thread(tool.fn, arguments)
                if inspect.isawaitable(result):
                    result = await result
        except ProviderError:
            raise
        except Exception as e:
            raise ProviderError("tool", f"tool {name!r} failed: {type(e).__name__}: {e}") from e
        try:
            return json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as e:
            raise ProviderError(
                "tool", f"tool {name!r} returned a value that is not JSON: {e}"
            ) from e
