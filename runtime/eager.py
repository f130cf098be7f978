"""`EagerJobs`: a coordinator runs a ready job itself when it has a free slot.

Why: on the path through the bus a hop from a node's completion to its successor's start
crosses Kafka twice (the result to the coordinator, the next job to a worker), and each
crossing of a broker costs milliseconds (Tansu holds every fetch for `fetch.wait.max.ms`,
~2 ms a crossing here), which no batching removes. The coordinator has the job in hand the
moment it routes; running it there, as Temporal's eager activities and Ray's local
scheduling do, leaves two Postgres statements on the hop (the answer, then the next append).
Jobs beyond the free slots go to the workers as before, so workers still scale the rest.

The job is as durable as a published one. It is written to the outbox in the statement that
appends its `node.started` (as every job is), but **held**: not produced to Kafka
(`OutboundMessage.held`). Running it here ends with one statement that claims its key in the
inbox, records its result and deletes (retires) that outbox row (`Answers`). The result is
also published on `node.results`, off the path (nobody here waits for it): a coordinator that
took the run over meanwhile (this one lost its lease) is waiting for it there. Hence:

- a coordinator that dies mid-job leaves the row, which a relay's sweep publishes `grace`
  seconds after its `created` (every coordinator and worker runs a relay): a worker runs the
  job, with the same idempotency key, as it would run a job whose first worker died; the
  restarted coordinator finds its answer as for any job started before a crash;
- while a job runs here its row's `created` is pushed forward (`heartbeat`, more often than
  `grace`), so a long job is not published under it;
- a duplicate that ran anyway (a heartbeat missed by a stalled process) loses the inbox claim
  or wins it: either way one result is recorded and both runs share the key, exactly as with a
  Kafka redelivery;
- SIGTERM: no new job is taken here; those running get the coordinator's drain time, then the
  rows of the rest are handed to the publisher (workers take them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

from aobc.canonical import canonical_bytes
from aobc.runtime.answers import Answer, Answers
from aobc.runtime.jobs import JobRunner
from aobc.runtime.stores.postgres import OutboundMessage, PostgresEventLog

log = logging.getLogger("aobc.coordinator")


class EagerJobs:
    """`slots` jobs at once, run in this process; see the module docstring."""

    def __init__(
        self, log: PostgresEventLog, runner: JobRunner, answers: Answers, slots: int
    ) -> None:
        self.log = log
        self.runner = runner
        self.answers = answers
        self.slots = slots
        self.closed = False
        self.ran = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Job key -> (its message, its outbox row id once the append committed).
        self._jobs: dict[str, tuple[OutboundMessage, asyncio.Future[int]]] = {}
        self._rows: dict[int, str] = {}  # outbox id -> job key, while written and unretired
        self._idle = asyncio.Event()  # set while no job runs here
        self._idle.set()

    # --- taking jobs --------------------------------------------------------------------------

    def take(self, message: OutboundMessage) -> bool:
        """Keep a job to run here if a slot is free; `message` (held) carries it."""
        if self.closed or len(self._jobs) >= self.slots:
            return False
        self._loop = loop = asyncio.get_running_loop()
        self._jobs[str(message.message["key"])] = (message, loop.create_future())
        return True

    def has(self, key: str) -> bool:
        return key in self._jobs

    def kept(self, held: Sequence[tuple[OutboundMessage, int]]) -> None:
        """The log committed these held job messages (called from any thread)."""
        loop = self._loop
        if loop is None:
            return
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            self._written(held)
        else:
            loop.call_soon_threadsafe(self._written, held)

    def _written(self, held: Sequence[tuple[OutboundMessage, int]]) -> None:
        for message, id_ in held:
            key = str(message.message["key"])
            entry = self._jobs.get(key)
            if entry is not None and not entry[1].done():
                self._rows[id_] = key
                self._idle.clear()
                entry[1].set_result(id_)

    # --- running ------------------------------------------------------------------------------

    async def run(self, key: str) -> Mapping[str, Any]:
        """Run a job taken here once its start is durable; its result as recorded. Cancelled
        before it is recorded (the run is no longer driven here, or this process stops), its
        row goes to the workers at once."""
        message, written = self._jobs[key]
        id_: int | None = None
        try:
            id_ = await written  # write-ahead: nothing runs before its start committed
            result = await self.runner.run_job(message.message)
            recorded = await self.answers.submit(Answer(message.message, result, retire=id_))
            self._rows.pop(id_, None)
            id_ = None
            self.ran += 1
            return recorded
        finally:
            self._jobs.pop(key, None)
            if id_ is not None and self._rows.pop(id_, None) is not None:
                self.log.hand_over([(id_, message.topic, message.key, _json(message.message))])
            if not self._rows:
                self._idle.set()

    def abandon(self, run_id: str) -> None:
        """The run is no longer driven here: its jobs not yet written will never be."""
        for message, written in list(self._jobs.values()):
            run = str(message.message["run"])
            if (run == run_id or run.startswith(run_id + "/")) and not written.done():
                written.cancel()

    # --- keeping rows unpublished, and handing them back ---------------------------------------

    def heartbeat(self) -> None:
        """Push forward the `created` of the rows of the jobs running here."""
        if self._rows:
            self.log._conn().execute(
                "UPDATE outbox SET created = %s WHERE id = ANY(%s)",
                (time.time(), list(self._rows)),
            )

    async def drain(self, timeout: float) -> None:
        """Take no more jobs, and give the running ones `timeout` seconds to finish (what
        is cancelled after that is handed to the workers by `run`)."""
        self.closed = True
        if not self._idle.is_set():
            log.warning(
                "stopping: %d eager job(s) may finish within %g s", len(self._rows), timeout
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)


def _json(value: Any) -> str:
    return canonical_bytes(value).decode("utf-8")  # as the log wrote it (the same bytes)
