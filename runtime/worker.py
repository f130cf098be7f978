"""`Worker`: takes node jobs from Kafka, runs them, and answers through the Postgres outbox.

Workers scale in one consumer group (`PriorityConsumer.for_jobs`: high before medium and low,
without starving them). For each job:

1. if the job's key already has a recorded result (a duplicate delivery, or a job a restarted
   coordinator is still waiting for), that result is sent again and nothing runs;
2. else the node runs (`JobRunner`, runtime/jobs.py), and one statement claims
   the key in the inbox, records the result, stores a small output (up to `inline_limit`,
   which also travels inline in the message) in the CAS's Postgres tier (`TieredCAS`), and
   queues the `node.results` message in the outbox; a large output goes to S3 first, and
   only its digest travels. A racing duplicate that lost the claim sends the winner's result
   instead. The outbox row is produced by this worker as soon as the statement commits
   (`OutboxRelay` in direct mode), not when a relay wakes up;
3. only then is the Kafka offset committed (`ack`).

Latency: the stored-result check and the answer are one round trip each, made on the event
loop's thread (a hand-off to a thread and back costs more than either); a sync function runs
in a thread, so that `concurrency` of them run at once.

A worker killed mid-job never acknowledged it, so Kafka delivers it again to another member,
which runs it with the same idempotency key. SIGTERM (`stop`): take no more jobs, give the
running ones `drain_timeout` seconds to finish, and hand back the rest (not acknowledged, so
redelivered when this member leaves the group).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aobc.runtime.answers import Answer, Answers
from aobc.runtime.batch import Batch
from aobc.runtime.consume import consume
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.jobs import BadJob, JobRunner, check_job
from aobc.runtime.remote import PRIORITIES, RESULTS_TOPIC
from aobc.runtime.stores.config import StoreConfig
from aobc.runtime.stores.distributed import DistributedStores
from aobc.runtime.stores.kafka import Delivery, KafkaSettings, PriorityConsumer

log = logging.getLogger("aobc.worker")
_decode = msgspec.json.Decoder().decode


@dataclass
class WorkerOptions:
    priorities: Sequence[str] = PRIORITIES
    concurrency: int = 4
    group: str = "workers"
    drain_timeout: float = 30.0
    inline_limit: int = 16 * 1024  # outputs larger than this travel by CAS digest only
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    engine: EngineOptions = field(default_factory=EngineOptions)


class Worker:
    """One worker process's work; `serve(stop)` runs it until `stop` is set."""

    def __init__(self, config: StoreConfig, options: WorkerOptions, kafka: KafkaSettings) -> None:
        self.options = options
        self.stores = DistributedStores.open(config, relay=True, kafka=kafka)
        self.engine = Engine(Stores(self.stores.events, self.stores.cas), options.engine)
        self.jobs = JobRunner(self.engine, self.stores.cas, self.stores.cache, options.name)
        self.done = 0
        # Jobs that reach the same step in the same turn of the event loop share a statement.
        self._checks: Batch[str, dict[str, Any] | None] = Batch(self._stored_many)
        self.answers = Answers(self.stores.events, self.stores.cas, options.inline_limit)

    # --- the loop -------------------------------------------------------------------------

    async def serve(self, stop: asyncio.Event) -> None:
        consumer = PriorityConsumer.for_jobs(
            self.stores.bus, self.options.group, self.options.priorities
        )

        async def handle(delivery: Delivery) -> None:
            await self._handle(consumer, delivery)

        try:
            # What is fetched already starts in this turn of the loop (`try_next`), so that
            # its stored-result checks (and later its answers) share one statement.
            await consume(
                consumer.next_delivery,
                handle,
                stop,
                concurrency=self.options.concurrency,
                drain_timeout=self.options.drain_timeout,
                try_next=consumer.try_next,
            )
        finally:
            await consumer.aclose()
            await self.engine.close()

    async def _handle(self, consumer: PriorityConsumer, delivery: Delivery) -> None:
        job = delivery.message
        try:
            check_job(job)
        except BadJob as err:
            await consumer.dead_letter(delivery, str(err))
            return
        key = str(job["key"])
        # One indexed lookup and (below) one statement, each shared by the jobs that get
        # there together, made on this thread: cheaper than a hand-off to another and back
        # (~0.1-0.3 ms each way on a busy machine).
        stored = await self._checks.submit(key)
        if stored is None:
            result = await self.jobs.run_job(job)
            await self.answers.submit(Answer(job, result))
        else:
            self.stores.events.send([_outbound(job, stored)])
        consumer.ack(delivery)  # the result is durable (and queued): the job is done
        self.done += 1

    def _stored_many(self, keys: list[str]) -> list[dict[str, Any] | None]:
        rows = (
            self.stores.events._conn()
            .execute("SELECT key, message FROM job_results WHERE key = ANY(%s)", (keys,))
            .fetchall()
        )
        found = {key: dict(_decode(message)) for key, message in rows}
        return [found.get(key) for key in keys]

    def close(self) -> None:
        relay = self.stores.relay
        if relay is not None:
            # Publish what this worker answered before leaving (another relay would, later).
            with contextlib.suppress(Exception):
                relay.drain(timeout=5.0)
        self.stores.close()


def _outbound(job: Mapping[str, Any], result: dict[str, Any]) -> Any:
    from aobc.runtime.stores.postgres import OutboundMessage

    return OutboundMessage(RESULTS_TOPIC, str(job["run"]), result)
