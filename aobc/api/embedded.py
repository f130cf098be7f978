"""`EmbeddedControlPlane`: the API's backend over the embedded runtime, in one process.

Runs are driven by one `Engine` on the server's event loop (`Runner`); commands are the
runtime's own (`aobc.runtime.commands`: cancel, decide, propose, decide_patch), the same
the `aobc` CLI uses, so a run started here can be approved with `aobc approve` and the
other way round. The store directory may be shared with `aobc run` processes: the runner
adopts runs they leave behind, and the hub reads what they append. The API's logic itself is
`StoreControlPlane` (`stored.py`), shared with the distributed backend.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aobc.api.auth import Principal
from aobc.api.backend import PRIORITIES
from aobc.api.errors import invalid
from aobc.api.hub import Hub
from aobc.api.metrics import Metrics
from aobc.api.registry import Registry
from aobc.api.runner import Runner
from aobc.api.stored import StoreControlPlane
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.review import ReviewPolicy
from aobc.runtime.stores.embedded import EmbeddedStores

log = logging.getLogger("aobc.serve")


@dataclass
class EmbeddedOptions:
    store: Path
    durable: bool = False  # fsync every commit (`EmbeddedStores.open`)
    policy: Policy = DEFAULT_POLICY
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    mode: str = "full"
    search_path: list[str] = field(default_factory=list)
    providers: Any = None
    secrets: Any = None
    max_active: int = 64
    sse_buffer: int = 1024
    poll_interval: float = 0.05  # drivers' look at the log for outside commands
    sweep_interval: float = 1.0  # hub catch-up, adoption of runs left by other processes


class EmbeddedControlPlane(StoreControlPlane):
    def __init__(self, options: EmbeddedOptions) -> None:
        self.options = options
        self.policy = options.policy
        self.review = options.review
        self.sse_buffer = options.sse_buffer
        self.embedded = EmbeddedStores.open(options.store, durable=options.durable)
        self.events = self.embedded.events
        self.stores = Stores(self.embedded.events, self.embedded.cas, options.store)
        self.engine = Engine(
            self.stores,
            EngineOptions(
                mode=options.mode,
                policy=options.policy,
                poll_interval=options.poll_interval,
                wait_for_humans=False,
                search_path=list(options.search_path),
                providers=options.providers,
                secrets=options.secrets,
                on_event=self._on_event,
                review=options.review,
            ),
        )
        self.registry = Registry(options.store / "control.db")
        self.metrics = Metrics(self._run_counts)
        self.metrics.workflow_of = self._workflow_of
        self.hub = Hub(self.events, on_drop=self._on_drop)
        self.runner = Runner(
            self.engine, options.max_active, on_change=self._queue_changed, on_idle=self._idle
        )
        self._init_state()
        self.idle_seq: dict[str, int] = {}  # run -> last seq when its driver stopped
        self._sweeper: asyncio.Task[None] | None = None
        self._ready = False

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        for record in self._active_runs():
            self.runner.kick(record.run_id, str(record.labels.get("priority", "medium")))
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        if self._sweeper is not None:
            self._sweeper.cancel()
            await asyncio.gather(self._sweeper, return_exceptions=True)
        await self.runner.close()
        await self.engine.close()
        self.registry.close()
        self.embedded.close()

    def readiness(self) -> dict[str, Any]:
        return {
            "ready": self._ready,
            "store": str(self.options.store),
            "driving": len(self.runner.tasks),
            "queued": len(self.runner.queued),
        }

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.sweep_interval)
            try:
                self.sweep()
            except Exception:  # the sweep must go on; a bad row is logged, not fatal
                log.exception("sweep failed")

    def sweep(self) -> None:
        """Catch the hub up, and adopt runs that another process appended to or left."""
        self.hub.poll()
        self._gauges()
        for record in self._active_runs():
            run_id = record.run_id
            if self.runner.driving(run_id) or run_id in self.runner.queued:
                continue
            if record.status == "waiting":
                seen = self.idle_seq.get(run_id)
                if seen is not None and seen == self.events.last_seq(run_id):
                    continue  # nothing new since its driver stopped here
            if self.runner.locked_elsewhere(run_id):
                continue
            self.runner.kick(run_id, str(record.labels.get("priority", "medium")))

    # --- runner callbacks ---------------------------------------------------------------

    def _queue_changed(self) -> None:
        self.metrics.driven.set(len(self.runner.tasks))
        for p in PRIORITIES:
            self.metrics.queue_depth.labels(p).set(self.runner.depth(p))

    def _idle(self, run_id: str, seq: int) -> None:
        self.idle_seq[run_id] = seq
        self.hub.poke(run_id)

    def _gauges(self) -> None:
        self.metrics.subscribers.set(self.hub.subscriber_count)
        self.metrics.buffered.set(self.hub.buffered)
        self._queue_changed()

    def _run_counts(self) -> dict[tuple[str, str], int]:
        # A read-only connection of our own: counting is not part of the EventLog protocol.
        path = self.options.store / "aobc.db"
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT namespace, status, count(*) FROM runs GROUP BY namespace, status"
            ).fetchall()
        finally:
            conn.close()
        return {(ns, status): n for ns, status, n in rows}

    # --- hooks (StoreControlPlane) ------------------------------------------------------

    def _kick(self, run_id: str, priority: str = "medium") -> None:
        self.runner.kick(run_id, priority)

    def _queued(self, run_id: str) -> bool:
        return run_id in self.runner.queued

    def _queued_runs(self) -> list[str]:
        return list(self.runner.queued)

    def _cancel(self, who: Principal, run_id: str, reason: str) -> str:
        from aobc.runtime.commands import cancel

        status: str = cancel(self.stores, run_id, who.subject, reason)
        if status == "cancelling":
            self.runner.kick(run_id)
        return status


def decode_ir(text: str) -> bytes:
    """A base64 `.aobir` from a request body."""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise invalid("ir must be the base64 of a .aobir file") from None
