"""`GroupCommit`: finished runs written together, one transaction (one fsync) per turn.

A run that ended before it was recorded (`Engine.run_now`) is written whole. In durable mode
that write is an fsync'd commit, ~0.2 ms on this machine's disk, which is most of such a run.
Runs started together (a server's burst, `asyncio.gather`) each wait for the writes submitted
in the same turn of the event loop to be committed together: one commit for all of them, and
each `start` returns only once its own run is durable. A run started alone waits for nothing
more than a call_soon.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from aobc.runtime.stores.base import Event, RunRecord

Finished = tuple[RunRecord, Sequence[tuple[str, dict[str, Any]]]]
WriteMany = Callable[[Sequence[Finished]], list[list[Event] | Exception]]


class GroupCommit:
    """Collects `submit`ted runs and writes them with `write_many` once per loop turn."""

    def __init__(self, write_many: WriteMany) -> None:
        self._write_many = write_many
        self._runs: list[Finished] = []
        self._futures: list[asyncio.Future[list[Event]]] = []
        self.commits = 0  # transactions written (for tests and metrics)

    def submit(self, record: RunRecord, events: Sequence[tuple[str, dict[str, Any]]]) -> Any:
        """A future of the run's stored events (or its Conflict), once committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Event]] = loop.create_future()
        self._runs.append((record, events))
        self._futures.append(future)
        if len(self._runs) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        runs, futures = self._runs, self._futures
        self._runs, self._futures = [], []
        try:
            stored = self._write_many(runs)
        except Exception as err:  # nothing was written: every run hears why
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            return
        self.commits += 1
        for future, one in zip(futures, stored, strict=True):
            if future.done():
                continue
            if isinstance(one, Exception):  # a Conflict, an event it could not encode
                future.set_exception(one)
            else:
                future.set_result(one)
