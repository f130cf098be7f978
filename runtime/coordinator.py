"""`Coordinator`: drives runs on the distributed stores, with their nodes run by workers.

Each run is driven by the embedded `RunDriver` (the same IR, routing and events), with
`RemoteNodes` as its executor; see `remote.py` for the job and result messages.

Partitioning: coordinators split the runs by **Postgres leases with fencing** (table
`run_leases`), not by Kafka partition ownership. A coordinator takes the lease of a running run
nobody holds (or whose lease expired, or that it held under the same `name` before a restart),
renews its leases every `lease_ttl / 3`, and writes a run's events only in transactions that
find its (owner, epoch) still on the lease. A lease taken over bumps the epoch, so a
coordinator that was paused past its lease can append nothing more: the next append raises
`LeaseLost` and that run is dropped here. Why leases: a run's state lives in Postgres anyway,
so ownership checked in the same transaction as the write is exact, a restarted coordinator
with the same name takes its runs back at once (no rebalance), and a run's ownership does not
move when Kafka rebalances a consumer group.

Results: every coordinator reads `node.results` in its own consumer group
(`coordinator.{name}`) and keeps the results its drivers wait for. Each result is read by
every coordinator, which is cheap next to the work behind it for a handful of coordinators;
many coordinators would want results sent to the owner's own partition instead.

Eager jobs (`eager` > 0): a job the coordinator routes runs in this process when one of its
slots is free, skipping the two broker crossings of the hop; see `eager.py`.

New runs: `aobc start` creates a run (status `running`) and sends a NOTIFY on
`{schema}.runs`; coordinators LISTEN and also look every `poll` seconds. A restarted
coordinator resumes every unfinished run it can lease, from its log (`Engine.resume`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import psycopg
from psycopg import sql

from aobc.runtime.agents_remote import AgentOptions, RemoteAgents
from aobc.runtime.answers import Answers
from aobc.runtime.eager import EagerJobs
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.jobs import JobRunner
from aobc.runtime.remote import (
    RESULTS_TOPIC,
    CoordinatorLog,
    KnownCAS,
    LeaseLost,
    RemoteNodes,
    RemoteOptions,
)
from aobc.runtime.stores.config import StoreConfig
from aobc.runtime.stores.kafka import KafkaBus, KafkaSettings
from aobc.runtime.stores.postgres import OutboxRelay
from aobc.runtime.stores.s3 import S3CAS
from aobc.runtime.stores.tiered import TieredCAS

log = logging.getLogger("aobc.coordinator")
_decode = msgspec.json.Decoder().decode

_NOW = "extract(epoch from clock_timestamp())"


def default_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def runs_channel(schema: str) -> str:
    return f"{schema}.runs"


@dataclass
class CoordinatorOptions:
    name: str = field(default_factory=default_name)  # stable across restarts: keep leases
    lease_ttl: float = 10.0
    poll: float = 1.0  # seconds between looks for runs when no NOTIFY came
    max_runs: int = 10_000  # runs driven at once
    eager: int = 0  # jobs run in this process at once when ready (runtime/eager.py)
    drain_timeout: float = 30.0  # on stop, how long eager jobs may finish before hand-back
    remote: RemoteOptions = field(default_factory=RemoteOptions)
    agents: AgentOptions | None = field(default_factory=AgentOptions)  # None: run them here
    engine: EngineOptions = field(default_factory=EngineOptions)


class Coordinator:
    """One coordinator process's work; `serve(stop)` runs it until `stop` is set."""

    def __init__(
        self, config: StoreConfig, options: CoordinatorOptions, kafka: KafkaSettings
    ) -> None:
        config.require("postgres", "kafka", "s3")
        assert config.postgres and config.s3
        self.options = options
        self.name = options.name
        self.log = CoordinatorLog(config.postgres, options.name)
        try:
            self.bus = KafkaBus(kafka)
            self.cas = KnownCAS(TieredCAS(self.log, S3CAS(config.s3)))
        except BaseException:
            self.log.close()
            raise
        # Direct: the coordinator's jobs are produced as their transaction commits; the
        # relay's thread deletes them once acknowledged and sweeps up anyone's leftovers.
        self.relay = OutboxRelay(self.log, self.bus, direct=True).start()
        # A run held by people only says "waiting", as the embedded runtime's do; this
        # coordinator keeps driving it (its deadlines: escalations, timeouts).
        engine_options = dataclasses.replace(options.engine, mark_waiting=True)
        self.engine = Engine(Stores(self.log, self.cas), engine_options)
        self.nodes = RemoteNodes(self.engine, self.log, self.cas, options.remote)
        self.engine.nodes = self.nodes
        self.eager: EagerJobs | None = None
        if options.eager > 0:
            runner = JobRunner(self.engine, self.cas, None, options.name)
            answers = Answers(self.log, self.cas.inner, options.remote.inline_limit)
            self.eager = self.log.eager = EagerJobs(self.log, runner, answers, options.eager)
        if options.agents is not None:  # agent nodes go to agent runners (agents_remote.py)
            group = f"coordinator.{self.name}"
            self.nodes.agents = RemoteAgents(self.engine, self.log, self.bus, group, options.agents)
        self.driving: dict[str, asyncio.Task[None]] = {}
        self.finished = 0
        self._listen: psycopg.Connection[Any] | None = None

    # --- leases ------------------------------------------------------------------------------

    def claim(self, limit: int) -> list[tuple[str, str | None]]:
        """Lease up to `limit` running runs nobody else holds: (run id, priority label), in
        two statements however many there are."""
        if limit <= 0:
            return []
        conn = self.log._conn()
        rows = conn.execute(
            "SELECT r.run_id, r.labels FROM runs r LEFT JOIN run_leases l USING (run_id)"
            " WHERE r.status IN ('running', 'waiting')"
            " AND position('/' in r.run_id) = 0"  # not a child run
            f" AND (l.run_id IS NULL OR l.expires < {_NOW} OR l.owner = %s)"
            " AND NOT (r.run_id = ANY(%s)) ORDER BY r.created LIMIT %s",
            (self.name, list(self.driving), limit),
        ).fetchall()
        if not rows:
            return []
        labels = {run_id: _decode(text) for run_id, text in rows}  # json comes back as text
        won = conn.execute(
            "INSERT INTO run_leases (run_id, owner, epoch, expires)"
            f" SELECT u.run_id, %s, 1, {_NOW} + %s FROM unnest(%s::text[]) AS u(run_id)"
            " ON CONFLICT (run_id) DO UPDATE"
            " SET owner = excluded.owner, epoch = run_leases.epoch + 1,"
            " expires = excluded.expires"
            f" WHERE run_leases.expires < {_NOW} OR run_leases.owner = excluded.owner"
            " RETURNING run_id, epoch",
            (self.name, self.options.lease_ttl, list(labels)),
        ).fetchall()
        taken = []
        for run_id, epoch in sorted(won, key=lambda row: list(labels).index(row[0])):
            self.log.leases[run_id] = int(epoch)
            priority = labels[run_id].get("priority")
            taken.append((run_id, priority if priority in ("high", "medium", "low") else None))
        return taken

    def renew(self) -> None:
        if self.eager is not None:
            self.eager.heartbeat()
        if self.log.leases:
            self.log._conn().execute(
                f"UPDATE run_leases SET expires = {_NOW} + %s"
                " WHERE owner = %s AND run_id = ANY(%s)",
                (self.options.lease_ttl, self.name, list(self.log.leases)),
            )

    def release(self, run_id: str) -> None:
        epoch = self.log.leases.pop(run_id, None)
        if epoch is not None:
            self.log._conn().execute(
                "DELETE FROM run_leases WHERE run_id = %s AND owner = %s AND epoch = %s",
                (run_id, self.name, epoch),
            )

    # --- driving -------------------------------------------------------------------------------

    async def drive(self, run_id: str, priority: str | None = None) -> None:
        if priority is not None:
            self.nodes.priorities[run_id] = priority
        done = False
        try:
            result = await self.engine.resume(run_id)
            done = True
            log.info("run %s %s", run_id, result.status)
        except LeaseLost as err:
            log.warning("%s", err)
            self.log.leases.pop(run_id, None)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Left leased and running: the lease expires, and a coordinator tries again.
            log.exception("driving run %s failed", run_id)
            self.log.leases.pop(run_id, None)
        finally:
            self.nodes.abandon(run_id)
            self.nodes.priorities.pop(run_id, None)
            self.driving.pop(run_id, None)
        if done:
            self.finished += 1
            self.release(run_id)

    async def _results(self) -> None:
        subscription = self.bus.subscribe(RESULTS_TOPIC, f"coordinator.{self.name}")
        try:
            async for message in subscription:
                self.nodes.resolve(message)
        finally:
            await subscription.aclose()

    def _wait_notify(self, timeout: float) -> None:
        if self._listen is None or self._listen.closed or self._listen.broken:
            self._listen = self.log.connect()
            self._listen.execute(
                sql.SQL("LISTEN {}").format(sql.Identifier(runs_channel(self.log.schema)))
            )
        for _ in self._listen.notifies(timeout=timeout, stop_after=1):
            pass

    async def serve(self, stop: asyncio.Event) -> None:
        results = asyncio.create_task(self._results())
        renew_every = self.options.lease_ttl / 3
        if self.eager is not None:  # the heartbeat of held rows must beat the relay's grace
            renew_every = min(renew_every, self.relay.grace / 3)
        loop = asyncio.get_running_loop()
        renewed = loop.time()
        try:
            while not stop.is_set():
                room = self.options.max_runs - len(self.driving)
                for run_id, priority in self.claim(room):
                    self.driving[run_id] = asyncio.create_task(self.drive(run_id, priority))
                if loop.time() - renewed >= renew_every:
                    self.renew()
                    renewed = loop.time()
                if results.done():
                    results.result()  # the results reader failed: say why
                    raise RuntimeError("the results subscription ended")
                waiter = asyncio.ensure_future(
                    asyncio.to_thread(self._wait_notify, min(self.options.poll, renew_every))
                )
                stopping = asyncio.ensure_future(stop.wait())
                await asyncio.wait({waiter, stopping}, return_when=asyncio.FIRST_COMPLETED)
                stopping.cancel()
                if not waiter.done():
                    self._wake()
                    await waiter
        finally:
            await self._shutdown(results)

    def _wake(self) -> None:
        with contextlib.suppress(psycopg.Error):
            self.log._conn().execute(
                "SELECT pg_notify(%s, 'stop')", (runs_channel(self.log.schema),)
            )

    async def _shutdown(self, results: asyncio.Task[None]) -> None:
        """Hand every run back: drivers stop as a crash would stop them (their log says
        where they are), and their leases are released for another coordinator."""
        if self.eager is not None:
            await self.eager.drain(self.options.drain_timeout)
        self.engine.host.detaching = True
        tasks = list(self.driving.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for run_id in list(self.log.leases):
            with contextlib.suppress(psycopg.Error):
                self.release(run_id)
        results.cancel()
        await asyncio.gather(results, return_exceptions=True)
        if self.nodes.agents is not None:
            await self.nodes.agents.aclose()
        await self.engine.close()

    def close(self) -> None:
        self.relay.stop()
        self.bus.close()
        if self._listen is not None:
            self._listen.close()
        self.log.close()
        self.cas.inner.close()  # type: ignore[attr-defined]


def notify_new_runs(conn: psycopg.Connection[Any], schema: str, run_ids: Sequence[str]) -> None:
    """Wake the coordinators: runs were created (`aobc start`)."""
    for run_id in run_ids:
        conn.execute("SELECT pg_notify(%s, %s)", (runs_channel(schema), run_id))
