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

from aobc.runtime.batch import Batch
from aobc.runtime.stores.base import Event, RunRecord

Finished = tuple[RunRecord, Sequence[tuple[str, dict[str, Any]]]]
WriteMany = Callable[[Sequence[Finished]], list[list[Event] | Exception]]


class GroupCommit:
    """Writes the `submit`ted runs with `write_many`, once per loop turn (a `Batch`)."""

    def __init__(self, write_many: WriteMany) -> None:
        self._write_many = write_many
        self._batch: Batch[Finished, list[Event] | Exception] = Batch(self._write)
        self.commits = 0  # transactions written (for tests and metrics)

    def submit(
        self, record: RunRecord, events: Sequence[tuple[str, dict[str, Any]]]
    ) -> asyncio.Future[list[Event]]:
        """A future of the run's stored events (or its Conflict), once committed."""
        return self._batch.submit((record, events))  # type: ignore[return-value]

    def _write(self, runs: list[Finished]) -> list[list[Event] | Exception]:
        stored = self._write_many(runs)
        self.commits += 1
        return stored
