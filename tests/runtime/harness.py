"""Running workflows in-process on a real embedded store, for the runtime tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.runtime.driver import RunResult
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.state import RunState
from aobc.runtime.stores.base import Event
from aobc.runtime.stores.embedded import EmbeddedStores

HERE = Path(__file__).resolve().parent
"""The directory of the workflow functions (`wf_functions`)."""


@dataclass
class Harness:
    """Runs DSL workflows on one store and keeps every event the engine reported."""

    dir: Path
    stores: EmbeddedStores
    seen: list[Event] = field(default_factory=list)

    def engine(self, **options: Any) -> Engine:
        options.setdefault("search_path", [str(HERE)])
        options.setdefault("poll_interval", 0.01)
        return Engine(
            Stores(self.stores.events, self.stores.cas, self.dir),
            EngineOptions(on_event=self.seen.append, **options),
        )

    def compile(self, text: str, policy: Policy = DEFAULT_POLICY) -> Any:
        return lower(load_text(text, "test.aob", policy))

    def run(self, text: str, inputs: dict[str, Any] | None = None, **options: Any) -> RunResult:
        engine = self.engine(**options)
        ir = self.compile(text, options.get("policy", DEFAULT_POLICY))

        async def go() -> RunResult:
            try:
                return await engine.start(ir, inputs or {})
            finally:
                await engine.close()

        return asyncio.run(go())

    def resume(self, run_id: str, **options: Any) -> RunResult:
        engine = self.engine(**options)

        async def go() -> RunResult:
            try:
                return await engine.resume(run_id)
            finally:
                await engine.close()

        return asyncio.run(go())

    def state(self, run_id: str) -> RunState:
        return RunState.fold(run_id, self.stores.events.read(run_id))

    def types(self, run_id: str) -> list[str]:
        return [e.type for e in self.stores.events.read(run_id)]

    def events(self, run_id: str, etype: str) -> list[dict[str, Any]]:
        return [e.data for e in self.stores.events.read(run_id) if e.type == etype]
