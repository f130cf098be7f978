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
class Policy:
    limits: Limits = field(default_factory=Limits)
    agents: AgentBudget = field(default_factory=AgentBudget)
    ssrf: SsrfPolicy = field(default_factory=SsrfPolicy)

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
        unknown = set(raw) - {"limits", "agents", "ssrf"}
        if unknown:
            raise fail(f'unknown policy section "{sorted(unknown)[0]}"', f"/{sorted(unknown)[0]}")
        limits = _section(Limits(), raw.get("limits", {}), "/limits", fail)
        agents = _section(AgentBudget(), raw.get("agents", {}), "/agents", fail)
        try:
            ssrf = SsrfPolicy.from_json(raw.get("ssrf", {}))
        except ValueError as err:
            raise fail(str(err), "/ssrf") from None
        return Policy(limits=limits, agents=agents, ssrf=ssrf)


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


DEFAULT_POLICY = Policy()
