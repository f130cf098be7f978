"""Driving runs inside the server: admission by priority, resumes, wake-ups at deadlines.

Every run the server should advance is `kick`ed: a new run, one whose ticket or patch was
just decided, one whose deadline came, one left running by a previous process. A kicked
run is driven by `Engine.resume` as an asyncio task, at most `max_active` at a time; the
rest wait in a queue ordered by priority (high, medium, low), first come first served
within one. A run that stops to wait for people frees its slot; the runner then sleeps
until its earliest ticket deadline (escalation, timeout) or the next kick.

A kick that arrives while the run is being driven is remembered: if the driver was just
returning "waiting" it goes round once more, so a decision is never lost between the
driver's last look at the log and its return.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from aobc.errors import AobcError
from aobc.runtime.locks import RunLock

if TYPE_CHECKING:
    from aobc.runtime.driver import RunResult
    from aobc.runtime.engine import Engine

log = logging.getLogger("aobc.serve")

RANK = {"high": 0, "medium": 1, "low": 2}


class Runner:
    def __init__(
        self,
        engine: Engine,
        max_active: int = 64,
        on_change: Callable[[], None] | None = None,
        on_idle: Callable[[str, int], None] | None = None,
    ) -> None:
        self.engine = engine
        self.max_active = max_active
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.dirty: set[str] = set()
        self.queue: list[tuple[int, int, str]] = []
        self.queued: dict[str, str] = {}  # run -> priority
        self.wakeups: dict[str, asyncio.TimerHandle] = {}
        self._order = itertools.count()
        self._on_change = on_change or (lambda: None)
        self._on_idle = on_idle or (lambda run_id, seq: None)
        self.closing = False

    # --- what callers see -----------------------------------------------------------

    def driving(self, run_id: str) -> bool:
        task = self.tasks.get(run_id)
        return task is not None and not task.done()

    def depth(self, priority: str) -> int:
        return sum(1 for p in self.queued.values() if p == priority)

    def kick(self, run_id: str, priority: str = "medium") -> None:
        """Drive `run_id` now, or as soon as a slot is free."""
        if self.closing:
            return
        if self.driving(run_id):
            self.dirty.add(run_id)
            return
        if run_id in self.queued:
            return
        if len(self.tasks) >= self.max_active:
            self.queued[run_id] = priority
            heapq.heappush(self.queue, (RANK.get(priority, 1), next(self._order), run_id))
            self._on_change()
            return
        self._spawn(run_id)

    def locked_elsewhere(self, run_id: str) -> bool:
        """True when another process holds the run's lock (it is driving it)."""
        directory = self.engine.stores.dir
        if directory is None or self.driving(run_id):
            return False
        lock = RunLock(directory, run_id)
        if lock.try_acquire():
            lock.release()
            return False
        return True

    # --- driving ----------------------------------------------------------------------

    def _spawn(self, run_id: str) -> None:
        handle = self.wakeups.pop(run_id, None)
        if handle is not None:
            handle.cancel()
        self.tasks[run_id] = asyncio.get_running_loop().create_task(
            self._drive(run_id), name=f"run {run_id}"
        )
        self._on_change()

    async def _drive(self, run_id: str) -> None:
        me = asyncio.current_task()
        try:
            while True:
                self.dirty.discard(run_id)
                result = await self._resume(run_id)
                if result is None or result.status != "waiting":
                    break
                if run_id not in self.dirty:
                    self._sleep_until_deadline(result)
                    break
        finally:
            if self.tasks.get(run_id) is me:
                del self.tasks[run_id]
            self._on_idle(run_id, self.engine.stores.events.last_seq(run_id))
            self._admit()

    async def _resume(self, run_id: str) -> RunResult | None:
        try:
            return await self.engine.resume(run_id)
        except AobcError as err:
            # Most often: another process drives this run. It will finish it; we let go.
            log.info("run %s not driven here: %s", run_id, err)
        except asyncio.CancelledError:
            raise
        except Exception:  # a bug in the runtime must not take the server down
            log.exception("driving run %s failed", run_id)
        return None

    def _sleep_until_deadline(self, result: RunResult) -> None:
        deadlines = [t["deadline"] for t in result.waiting if t.get("deadline") is not None]
        if not deadlines:
            return
        delay = max(min(deadlines) - time.time(), 0.0) + 0.01
        loop = asyncio.get_running_loop()
        self.wakeups[result.run_id] = loop.call_later(delay, self.kick, result.run_id)

    def _admit(self) -> None:
        while self.queue and len(self.tasks) < self.max_active and not self.closing:
            _, _, run_id = heapq.heappop(self.queue)
            if self.queued.pop(run_id, None) is not None:
                self._spawn(run_id)
        self._on_change()

    async def close(self) -> None:
        """Stop every driver, leaving each run resumable by the next process."""
        self.closing = True
        for handle in self.wakeups.values():
            handle.cancel()
        self.wakeups.clear()
        self.engine.host.detaching = True
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
