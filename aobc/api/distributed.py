"""`DistributedControlPlane`: the API's backend over the distributed runtime's stores.

The API logic is `StoreControlPlane`'s, unchanged; this server drives no run. It writes what
`aobc deploy` and `aobc start` write, and coordinators (`runtime/coordinator.py`) do the rest:

- deploy: the IR into S3 (where `aobc deploy` puts it; the tiered CAS coordinators and
  workers read looks there after Postgres `blobs`) and `artifacts`; deployments and tags in `control_deployments`
  and `control_tags` (`pgregistry.py`);
- start: the run is created in Postgres (`Engine.create`, status `running`), then a NOTIFY
  on `{schema}.runs` wakes the coordinators, one of which leases and drives it;
- decisions (tickets, patches) and proposals are the runtime's own commands: one event
  appended to the run's log (`ticket.decided`, `patch.proposed`, `patch.approved`...).
  The coordinator driving the run reads outside appends on its next look at the log
  (its `poll_interval`, or at once when its own append conflicts with ours) and acts on
  them exactly as the embedded driver does. A patch is validated and compiled here first
  (`LiveGraph.check`, as the embedded backend does), so an invalid one is a 422 and
  appends nothing; the driver validates it again on the version it is at.
- cancel: with a live lease on the run, only `run.cancel_requested` (its coordinator
  stops the run's work and appends `run.cancelled`); with none (no coordinator has it),
  the run ends at once, as `aobc cancel` does with no driver.

Live timelines tail `event_log` by polling, not LISTEN/NOTIFY: the log sends no
notification on append (only the outbox does), and adding a trigger would put a `pg_notify`
in every coordinator append, on the hot path, where NOTIFY also takes a database-wide lock
at commit. Polling costs one indexed query per `poll_interval` (50 ms) for all the runs
somebody watches, whatever the append rate, plus a read of the runs that moved; events
reach SSE clients within that interval. A slower sweep (every `sweep_interval`) follows
every active run for metrics (node latencies, patch decisions) and the ticket index.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Final

from aobc.api.auth import Principal
from aobc.api.backend import PRIORITIES
from aobc.api.errors import conflict
from aobc.api.hub import Hub
from aobc.api.metrics import Metrics
from aobc.api.pgregistry import PostgresRegistry
from aobc.api.stored import LogSubscription, StoreControlPlane
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.review import ReviewPolicy
from aobc.runtime.stores.config import StoreConfig
from aobc.runtime.stores.postgres import PostgresEventLog
from aobc.runtime.stores.s3 import S3CAS
from aobc.runtime.stores.tiered import TieredCAS

log = logging.getLogger("aobc.serve")

_NOW: Final = "extract(epoch from clock_timestamp())"
_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled"})
FINISHED_MEMORY: Final = 100_000  # runs followed to their end, remembered to not count twice


@dataclass
class DistributedOptions:
    config: StoreConfig
    policy: Policy = DEFAULT_POLICY
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    mode: str = "full"
    search_path: list[str] = field(default_factory=list)
    sse_buffer: int = 1024
    poll_interval: float = 0.05  # the tail of watched runs' logs (SSE latency)
    sweep_interval: float = 1.0  # every active run: metrics, tickets, gauges


class _DeployCAS:
    """Reads as the cluster reads (Postgres `blobs`, then S3); writes to S3, as `aobc deploy`
    does, so what this server stores is found by every process however it reads."""

    def __init__(self, tiered: TieredCAS) -> None:
        self.tiered = tiered

    def put(self, data: bytes) -> str:
        return self.tiered.large.put(data)

    def get(self, digest: str) -> bytes:
        return self.tiered.get(digest)

    def has(self, digest: str) -> bool:
        return self.tiered.has(digest)

    def close(self) -> None:
        self.tiered.close()


class DistributedControlPlane(StoreControlPlane):
    def __init__(self, options: DistributedOptions) -> None:
        options.config.require("postgres", "s3")
        assert options.config.postgres and options.config.s3
        self.options = options
        self.policy = options.policy
        self.review = options.review
        self.sse_buffer = options.sse_buffer
        self.pg = PostgresEventLog(options.config.postgres)
        try:
            self.s3 = S3CAS(options.config.s3)
            self.cas = _DeployCAS(TieredCAS(self.pg, self.s3))
            self.registry = PostgresRegistry(self.pg)
        except BaseException:
            self.pg.close()
            raise
        self.events = self.pg
        self.stores = Stores(self.pg, self.cas)
        self.engine = Engine(
            self.stores,
            EngineOptions(
                mode=options.mode,
                policy=options.policy,
                search_path=list(options.search_path),
                review=options.review,
            ),
        )
        self.metrics = Metrics(self._run_counts)
        self.metrics.workflow_of = self._workflow_of
        self.hub = Hub(self.pg, on_drop=self._on_drop)
        self._init_state()
        self.seen: dict[str, int] = {}  # run -> the last seq passed to `_on_event`
        self.finished: OrderedDict[str, None] = OrderedDict()
        self.started = time.time()
        self.last_sweep = 0.0
        self._tail: asyncio.Task[None] | None = None
        self._ready = False

    # --- lifecycle ------------------------------------------------------------------------

    async def open(self) -> None:
        self.started = time.time()
        self._tail = asyncio.get_running_loop().create_task(self._tail_forever())
        self._ready = True

    async def close(self) -> None:
        self._ready = False
        if self._tail is not None:
            self._tail.cancel()
            await asyncio.gather(self._tail, return_exceptions=True)
        await self.engine.close()
        self.registry.close()
        self.cas.close()
        self.pg.close()

    def readiness(self) -> dict[str, Any]:
        try:
            self.pg._conn().execute("SELECT 1")
            reachable = True
        except Exception:  # any failure is "not ready", with the reason in the log
            log.warning("postgres is not answering", exc_info=True)
            reachable = False
        redacted = self.options.config.redacted()
        return {
            "ready": self._ready and reachable,
            "backend": "distributed",
            "store": redacted["postgres"],
            "s3": redacted["s3"],
        }

    # --- the log tail ---------------------------------------------------------------------

    async def _tail_forever(self) -> None:
        while True:
            await asyncio.sleep(self.options.poll_interval)
            try:
                self.tail()
            except Exception:  # the tail must go on: a store hiccup is logged, not fatal
                log.exception("reading the event log failed")

    def tail(self) -> None:
        """Pass every new event of the watched runs (and, each sweep, of every active run)
        to `_on_event`: SSE channels, metrics, the state cache, the ticket index."""
        now = time.time()
        watched = list(self.hub.channels)
        sweep = now - self.last_sweep >= self.options.sweep_interval
        if not watched and not sweep:
            return
        conn = self.pg._conn()
        columns = "run_id, last_seq, status, created"
        if sweep:
            rows = conn.execute(
                f"SELECT {columns} FROM runs WHERE run_id = ANY(%s)"
                " OR status IN ('running', 'waiting') OR created >= %s",
                ([*watched, *self.seen], self.last_sweep or self.started),
            ).fetchall()
            self.last_sweep = now
        else:
            rows = conn.execute(
                f"SELECT {columns} FROM runs WHERE run_id = ANY(%s)", (watched,)
            ).fetchall()
        for run_id, last_seq, status, created in rows:
            self._advance(str(run_id), int(last_seq), str(status), float(created), watched)
        if sweep:
            self._gauges()

    def _advance(
        self, run_id: str, last_seq: int, status: str, created: float, watched: list[str]
    ) -> None:
        cursor = self.seen.get(run_id)
        if cursor is None:
            # New to us: from its start if it began while we watch (so its node latencies
            # count), else from now (what happened before is not ours to count).
            fresh = created >= self.started and run_id not in self.finished
            cursor = 0 if fresh else last_seq
        if last_seq > cursor:
            for e in self.pg.read(run_id, after=cursor):
                self._on_event(e)
                cursor = e.seq
        if status in _TERMINAL and cursor >= last_seq and run_id not in watched:
            self.seen.pop(run_id, None)
            self.finished[run_id] = None
            if len(self.finished) > FINISHED_MEMORY:
                self.finished.popitem(last=False)
        else:
            self.seen[run_id] = cursor

    def _gauges(self) -> None:
        self.metrics.subscribers.set(self.hub.subscriber_count)
        self.metrics.buffered.set(self.hub.buffered)
        depth = dict.fromkeys(PRIORITIES, 0)
        for priority, n in self.pg._conn().execute(
            "SELECT coalesce(r.labels->>'priority', 'medium'), count(*) FROM runs r"
            " LEFT JOIN run_leases l USING (run_id) WHERE r.status IN ('running', 'waiting')"
            " AND position('/' in r.run_id) = 0"
            f" AND (l.run_id IS NULL OR l.expires < {_NOW}) GROUP BY 1"
        ):
            depth[str(priority)] = depth.get(str(priority), 0) + int(n)
        for p in PRIORITIES:
            self.metrics.queue_depth.labels(p).set(depth[p])

    def _run_counts(self) -> dict[tuple[str, str], int]:
        rows = self.pg._conn().execute(
            "SELECT namespace, status, count(*) FROM runs GROUP BY namespace, status"
        )
        return {(str(ns), str(status)): int(n) for ns, status, n in rows}

    # --- hooks (StoreControlPlane) ---------------------------------------------------------

    def _kick(self, run_id: str, priority: str = "medium") -> None:
        from aobc.runtime.coordinator import notify_new_runs

        # A new run wakes the coordinators at once; for a decision on a run being driven the
        # notification is harmless, and its coordinator reads the log on its next poll.
        notify_new_runs(self.pg._conn(), self.pg.schema, [run_id.split("/", 1)[0]])

    def _leased(self, run_id: str) -> bool:
        """Whether a coordinator holds a live lease on the run (leases are by root run)."""
        row = (
            self.pg._conn()
            .execute(
                f"SELECT 1 FROM run_leases WHERE run_id = %s AND expires >= {_NOW}",
                (run_id.split("/", 1)[0],),
            )
            .fetchone()
        )
        return row is not None

    def _queued(self, run_id: str) -> bool:
        record = self.pg.get_run(run_id)
        return record is not None and record.status == "running" and not self._leased(run_id)

    def _queued_runs(self) -> list[str]:
        rows = self.pg._conn().execute(
            "SELECT r.run_id FROM runs r LEFT JOIN run_leases l USING (run_id)"
            " WHERE r.status IN ('running', 'waiting') AND position('/' in r.run_id) = 0"
            f" AND (l.run_id IS NULL OR l.expires < {_NOW}) ORDER BY r.created"
        )
        return [str(run_id) for (run_id,) in rows]

    def _cancel(self, who: Principal, run_id: str, reason: str) -> str:
        from aobc.runtime.commands import load_state

        state = load_state(self.stores, run_id)
        if state.finished:
            raise conflict(f"run {run_id} already {state.status}")
        data = {"by": who.subject, "reason": reason}
        with self.pg.transaction() as tx:
            # The lease row locked: a coordinator taking the run over waits for this commit,
            # and then reads a log that already says what happened.
            live = tx.execute(
                f"SELECT 1 FROM run_leases WHERE run_id = %s AND expires >= {_NOW} FOR UPDATE",
                (run_id.split("/", 1)[0],),
            )
            tx.append(run_id, [("run.cancel_requested", data)])
            if live:
                return "cancelling"
            tx.append(run_id, [("run.cancelled", data)])
            tx.set_status(run_id, "cancelled")
        return "cancelled"

    async def subscribe(self, who: Principal, run_id: str, after: int) -> LogSubscription:
        sub = await super().subscribe(who, run_id, after)
        if run_id not in self.seen:
            # The tail must hand over every event after the channel's cursor (the backlog
            # before it is read from the log): follow the run from there at the latest.
            record = self.pg.get_run(run_id)
            fresh = record is not None and record.created >= self.started
            fresh = fresh and run_id not in self.finished
            self.seen[run_id] = 0 if fresh else sub.sub.channel.cursor
        return sub
