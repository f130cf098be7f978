"""Compile- and run-time policy: size limits, agent spawn budgets and the SSRF allowlist.

A policy file is TOML or JSON:

    [limits]
    max_nodes = 10000          # nodes in one workflow (sub-workflows count separately)
    max_edges = 50000
    max_patch_ops = 1000       # operations in one patch
    max_depth = 64             # nesting depth of any JSON document
    max_bytes = 16777216       # size of any input file

    [agents]
    max_per_patch = 4          # agent nodes one patch may add
    max_per_run = 16           # agent nodes all patches of one run may add
    max_depth = 3              # agents spawned by agents spawned by ... / nested in composites

    [ssrf]
    allow_hosts = ["127.0.0.1:8080", "*.svc.cluster.local", "10.0.0.0/8"]

    [plugins]                  # WebAssembly pass plugins (a pipeline option overrides these)
    fuel = 20000000000         # deterministic work budget per call
    timeout_ms = 10000         # wall time per call
    memory_mb = 512            # linear memory cap
    output_kb = 65536          # output size cap
    on_error = "fail"          # or "warn": go on without the failing plugin's patch
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import FrontendError
from aobc.security.ssrf import SsrfPolicy
from aobc.source import JsonLoc


@dataclass(frozen=True, slots=True)
class Limits:
    max_nodes: int = 100_000
    max_edges: int = 500_000
    max_patch_ops: int = 10_000
    max_depth: int = 64
    max_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class AgentBudget:
    max_per_patch: int = 4
    max_per_run: int = 16
    max_depth: int = 3


@dataclass(frozen=True, slots=True)
class PluginPolicy:
    """Defaults for WebAssembly pass plugins, and what a failing plugin does to a compile."""

    fuel: int = 20_000_000_000
    timeout_ms: int = 10_000
    memory_mb: int = 512
    output_kb: int = 65_536
    on_error: str = "fail"  # "fail" the compile, or "warn" and go on without the patch


@dataclass(frozen=True, slots=True)
class Policy:
    limits: Limits = field(default_factory=Limits)
    agents: AgentBudget = field(default_factory=AgentBudget)
    ssrf: SsrfPolicy = field(default_factory=SsrfPolicy)
    plugins: PluginPolicy = field(default_factory=PluginPolicy)

    @staticmethod
    def load(path: str | Path) -> Policy:
        """Read a policy file; raises FrontendError with a located diagnostic."""
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise FrontendError(
                Diagnostic.error(
                    ec.IO_ERROR, f"cannot read policy file: {err}", JsonLoc(str(p), "")
                )
            ) from None
        try:
            raw = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
        except (json.JSONDecodeError, tomllib.TOMLDecodeError) as err:
            raise FrontendError(
                Diagnostic.error(
                    ec.POLICY, f"policy file does not parse: {err}", JsonLoc(str(p), "")
                )
            ) from None
        return Policy.from_json(raw, str(p))

    @staticmethod
    def from_json(raw: Any, file: str = "<policy>") -> Policy:
        def fail(msg: str, ptr: str) -> FrontendError:
            return FrontendError(Diagnostic.error(ec.POLICY, msg, JsonLoc(file, ptr)))

        if not isinstance(raw, dict):
            raise fail("a policy must be an object", "")
        unknown = set(raw) - {"limits", "agents", "ssrf", "plugins"}
        if unknown:
            raise fail(f'unknown policy section "{sorted(unknown)[0]}"', f"/{sorted(unknown)[0]}")
        limits = _section(Limits(), raw.get("limits", {}), "/limits", fail)
        agents = _section(AgentBudget(), raw.get("agents", {}), "/agents", fail)
        try:
            ssrf = SsrfPolicy.from_json(raw.get("ssrf", {}))
        except ValueError as err:
            raise fail(str(err), "/ssrf") from None
        plugins = _plugins(raw.get("plugins", {}), fail)
        return Policy(limits=limits, agents=agents, ssrf=ssrf, plugins=plugins)


def _section(default: Any, raw: Any, ptr: str, fail: Any) -> Any:
    if not isinstance(raw, dict):
        raise fail(f"{ptr[1:]} must be a table of integers", ptr)
    names = {f.name for f in fields(default)}
    for key, value in raw.items():
        if key not in names:
            raise fail(f'unknown setting "{key}" in {ptr[1:]}', f"{ptr}/{key}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail(f"{ptr[1:]}.{key} must be a non-negative integer", f"{ptr}/{key}")
    return replace(default, **raw)


def _plugins(raw: Any, fail: Any) -> PluginPolicy:
    if not isinstance(raw, dict):
        raise fail("plugins must be a table", "/plugins")
    on_error = raw.get("on_error", "fail")
    if on_error not in ("fail", "warn"):
        raise fail('plugins.on_error must be "fail" or "warn"', "/plugins/on_error")
    numbers = {k: v for k, v in raw.items() if k != "on_error"}
    section: PluginPolicy = _section(PluginPolicy(), numbers, "/plugins", fail)
    return replace(section, on_error=on_error)


DEFAULT_POLICY = Policy()
