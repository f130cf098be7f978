"""Where passes come from: a lazy table of built-ins plus the `aobc.passes` entry points.

Importing this module imports no pass. A plugin distribution registers a pass with

    [project.entry-points."aobc.passes"]
    my-pass = "my_pkg.passes:MyPass"

and the name must not clash with a built-in or another plugin: duplicates are refused.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import PassError
from aobc.passes.base import Pass

_BUILTIN: Final[dict[str, str]] = {
    "verify": "aobc.passes.verify:VerifyPass",
    "prune-dead": "aobc.passes.prune_dead:PruneDeadPass",
    "cse": "aobc.passes.cse:CsePass",
    "licm": "aobc.passes.licm:LicmPass",
    "cache-mark": "aobc.passes.cache_mark:CacheMarkPass",
    "coalesce-http": "aobc.passes.coalesce_http:CoalesceHttpPass",
    "pushdown-predicates": "aobc.passes.pushdown_predicates:PushdownPredicatesPass",
    "parallelize": "aobc.passes.parallelize:ParallelizePass",
    "wasm": "aobc.passes.wasm:WasmPass",
}

ENTRY_POINT_GROUP: Final = "aobc.passes"


def _plugin_table() -> dict[str, str]:
    table: dict[str, str] = {}
    sources: dict[str, list[str]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        sources.setdefault(ep.name, []).append(
            f"{ep.value} (from {ep.dist.name if ep.dist else '?'})"
        )
        table[ep.name] = ep.value
    clashes = {name: src for name, src in sources.items() if len(src) > 1 or name in _BUILTIN}
    if clashes:
        raise PassError(
            [
                Diagnostic.error(
                    ec.DUPLICATE_PASS,
                    f'pass "{name}" is defined more than once: '
                    + ", ".join(([f"built-in {_BUILTIN[name]}"] if name in _BUILTIN else []) + src),
                )
                for name, src in sorted(clashes.items())
            ]
        )
    return table


Target = str | type[Pass]


#: Passes loaded for the duration of one command (`--pass-plugin FILE`), see `loaded_passes`.
_LOADED: ContextVar[dict[str, Target] | None] = ContextVar("aobc_loaded_passes", default=None)


@contextmanager
def loaded_passes(extra: dict[str, Target]) -> Iterator[None]:
    """Make `extra` available to every pipeline parsed inside the block (duplicates refused)."""
    token = _LOADED.set({**(_LOADED.get() or {}), **extra})
    try:
        yield
    finally:
        _LOADED.reset(token)


def available_passes(extra: dict[str, Target] | None = None) -> dict[str, Target]:
    """Every registered pass name and its `module:Class` target (or the class itself)."""
    table: dict[str, Target] = dict(_BUILTIN)
    for name, target in {**_plugin_table(), **(_LOADED.get() or {}), **(extra or {})}.items():
        if name in table and table[name] != target:
            raise PassError(
                Diagnostic.error(ec.DUPLICATE_PASS, f'pass "{name}" is defined more than once')
            )
        table[name] = target
    return table


def load_pass_class(target: Target) -> type[Pass]:
    """Import `module:Class` and check that it is a Pass."""
    if isinstance(target, str):
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
    else:
        cls = target
    if not (isinstance(cls, type) and issubclass(cls, Pass)):
        raise TypeError(f"{target} is not an aobc Pass")
    return cls


@dataclass(frozen=True, slots=True)
class OptionInfo:
    """One option of a pass, as the pipeline string spells it."""

    name: str  # kebab-case
    field: str  # snake_case dataclass field
    type: Any
    default: Any
    help: str

    @property
    def type_name(self) -> str:
        if self.type is bool:
            return "bool"
        if self.type is int:
            return "int"
        if self.type is float:
            return "float"
        if typing.get_origin(self.type) is typing.Literal:
            return "|".join(str(a) for a in typing.get_args(self.type))
        return "string"


def pass_options(cls: type[Pass]) -> list[OptionInfo]:
    """The options of a pass: its dataclass fields, with types resolved."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        out.append(
            OptionInfo(
                f.name.replace("_", "-"),
                f.name,
                hints[f.name],
                default,
                str(f.metadata.get("help", "")),
            )
        )
    return out
