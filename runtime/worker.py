"""`Worker`: takes node jobs from Kafka, runs them, and answers through the Postgres outbox.

Workers scale in one consumer group (`PriorityConsumer.for_jobs`: high before medium and low,
without starving them). For each job:

1. if the job's key already has a recorded result (a duplicate delivery, or a job a restarted
   coordinator is still waiting for), that result is sent again and nothing runs;
2. else the node runs with the embedded executors' pieces (function resolution and calling,
   retry policy and backoff, the HTTP client with its SSRF guard), and one statement claims
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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import msgspec

from aobc.backend.aobir import decode
from aobc.canonical import canonical_bytes, sha256_hex
from aobc.runtime.consume import consume
from aobc.runtime.driver import NodeFailure
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.execir import ExecIR
from aobc.runtime.executors.function import FunctionError, NodeContext, call, call_sync
from aobc.runtime.nodes import backoff_s, retry_policy, timeout_s
from aobc.runtime.remote import JOB_VERSION, PRIORITIES, RESULTS_TOPIC
from aobc.runtime.stores.config import StoreConfig
from aobc.runtime.stores.distributed import DistributedStores
from aobc.runtime.stores.kafka import Delivery, KafkaSettings, PriorityConsumer
from aobc.runtime.stores.redis import IR
from aobc.runtime.values import check_json

log = logging.getLogger("aobc.worker")
_decode = msgspec.json.Decoder().decode

T = TypeVar("T")
R = TypeVar("R")

INBOX: str = "aobc.worker"  # the inbox consumer name every worker claims job keys under

# Jobs' answers in one autocommit statement, so one round trip and no BEGIN/COMMIT: claim each
# key in the inbox, record the result, store a small output in the CAS's Postgres tier, and
# queue the `node.results` message; each part only for the keys whose claim won (they come
# back, with the outbox ids in the answers' order), all of it atomically.
_RECORD = """
WITH answer AS (
    SELECT * FROM unnest(
        %(keys)s::text[], %(messages)s::text[], %(digests)s::text[], %(datas)s::bytea[],
        %(runs)s::text[]
    ) WITH ORDINALITY AS a(key, message, digest, data, run, ord)
), claimed AS (
    INSERT INTO inbox (consumer, message_id, time)
    SELECT %(consumer)s, key, %(now)s FROM answer
    ON CONFLICT DO NOTHING RETURNING message_id
), recorded AS (
    INSERT INTO job_results (key, message, created)
    SELECT a.key, a.message, %(now)s FROM answer a JOIN claimed c ON c.message_id = a.key
), blob AS (
    INSERT INTO blobs (digest, data, created)
    SELECT DISTINCT ON (a.digest) a.digest, a.data, %(now)s
    FROM answer a JOIN claimed c ON c.message_id = a.key WHERE a.data IS NOT NULL
    ON CONFLICT (digest) DO NOTHING
), sent AS (
    INSERT INTO outbox (topic, key, payload, created, direct)
    SELECT %(topic)s, a.run, a.message, %(now)s, %(direct)s
    FROM answer a JOIN claimed c ON c.message_id = a.key
    ORDER BY a.ord
    RETURNING id
)
SELECT (SELECT array_agg(message_id) FROM claimed), (SELECT array_agg(id ORDER BY id) FROM sent)
"""


class Batch(Generic[T, R]):
    """Calls `run(items)` once for every item submitted in one turn of the event loop (the
    jobs that reach the same step together share one statement; a lone job waits for
    nothing: the call runs as soon as the loop has run what was ready)."""

    def __init__(self, run: Callable[[list[T]], list[R]]) -> None:
        self._run = run
        self._items: list[T] = []
        self._futures: list[asyncio.Future[R]] = []

    def submit(self, item: T) -> asyncio.Future[R]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._items.append(item)
        self._futures.append(future)
        if len(self._items) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        items, futures = self._items, self._futures
        self._items, self._futures = [], []
        try:
            results = self._run(items)
        except Exception as err:
            for future in futures:
                if not future.done():
                    future.set_exception(err)
            return
        for future, result in zip(futures, results, strict=True):
            if not future.done():
                future.set_result(result)


class BadJob(ValueError):
    """A message on a job topic that is not a job this worker understands."""


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
        self._irs: dict[str, ExecIR] = {}
        self.done = 0
        # Jobs that reach the same step in the same turn of the event loop share a statement.
        self._checks: Batch[str, dict[str, Any] | None] = Batch(self._stored_many)
        self._answers: Batch[tuple[Mapping[str, Any], dict[str, Any]], None] = Batch(
            self._record_many
        )

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
            result = await self.run_job(job)
            if result.get("ok") and self._large(result):
                await asyncio.to_thread(self._put_large, result)  # S3, off this thread
            await self._answers.submit((job, result))
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

    def _large(self, result: dict[str, Any]) -> bool:
        """Encode the output (kept under `_data`); whether it goes to S3."""
        data = result["_data"] = canonical_bytes(result["_value"])
        return len(data) > self.options.inline_limit

    def _put_large(self, result: dict[str, Any]) -> None:
        result["output"] = self.stores.cas.put(result.pop("_data"))
        result.pop("_value", None)

    def _record_many(self, answers: list[tuple[Mapping[str, Any], dict[str, Any]]]) -> list[None]:
        """Answer jobs: claim, record, store small outputs and queue the results, for all of
        them in one statement. A job whose key was claimed already (a duplicate ran at the
        same time and recorded first: the claim waited for its commit) answers as it did."""
        events = self.stores.events
        keys: list[str] = []
        messages: list[str] = []
        digests: list[str | None] = []
        datas: list[bytes | None] = []
        runs: list[str] = []
        again: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
        for job, result in answers:
            key = str(job["key"])
            if key in keys:  # the same job twice in one batch: the second one after
                again.append((job, result))
                continue
            small = None
            if result["ok"] and "output" not in result:
                value = result.pop("_value", None)
                small = result.pop("_data", None) or canonical_bytes(value)
                # Small: in the message, and in the CAS's Postgres tier with the result.
                result["output"] = sha256_hex(small)
                result["value"] = value
            keys.append(key)
            messages.append(canonical_bytes(result).decode("utf-8"))
            digests.append(result.get("output") if small is not None else None)
            datas.append(small)
            runs.append(str(job["run"]))
        row = (
            events._conn()
            .execute(
                _RECORD,
                {
                    "consumer": INBOX,
                    "keys": keys,
                    "messages": messages,
                    "digests": digests,
                    "datas": datas,
                    "runs": runs,
                    "now": time.time(),
                    "topic": RESULTS_TOPIC,
                    "direct": events.publisher is not None,
                },
            )
            .fetchone()
        )
        assert row is not None
        claimed = set(row[0] or ())
        ids = row[1] or []
        won = [i for i, key in enumerate(keys) if key in claimed]
        events.hand_over(
            [(id_, RESULTS_TOPIC, runs[i], messages[i]) for id_, i in zip(ids, won, strict=True)]
        )
        for i, key in enumerate(keys):
            if key not in claimed:
                with events.transaction() as tx:
                    rows = tx.execute("SELECT message FROM job_results WHERE key = %s", (key,))
                    tx.send(RESULTS_TOPIC, runs[i], dict(_decode(rows[0][0])))
        if again:
            self._record_many(again)
        return [None] * len(answers)

    # --- running one job -------------------------------------------------------------------

    def load_ir(self, digest: str) -> ExecIR:
        """The IR by digest: memory, then Redis, then the CAS (then kept in both)."""
        ir = self._irs.get(digest)
        if ir is None:
            data = self.stores.cache.get(IR + digest)
            if data is None:
                data = self.stores.cas.get(digest)
                self.stores.cache.set(IR + digest, data)
            ir = self._irs[digest] = decode(data, f"cas:{digest[:12]}")
        return ir

    async def run_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Run a job; its result message (the output value under `_value`, for `_record`)."""
        result: dict[str, Any] = {
            "v": JOB_VERSION,
            "run": job["run"],
            "node": job["node"],
            "item": job.get("item"),
            "key": job["key"],
            "attempt": job.get("attempt", 1),
            "worker": self.options.name,
            "began": time.time(),
        }
        failures: list[dict[str, Any]] = []
        try:
            if time.time() > float(job["deadline"]):
                raise NodeFailure("the job's reply deadline passed before it ran", "timeout")
            cached = self._irs.get(str(job["ir"]))  # a thread only to fetch it
            ir = (
                cached
                if cached is not None
                else await asyncio.to_thread(self.load_ir, str(job["ir"]))
            )
            cfg = ir.consts[ir.nodes[int(job["index"])].config]
            if job.get("item") is not None:
                cfg = cfg["body"]
            if "inputs_ref" in job:
                inputs = _decode(
                    await asyncio.to_thread(self.stores.cas.get, str(job["inputs_ref"]))
                )
            else:
                inputs = job["inputs"]
            if cfg["type"] == "function":
                value = await self.function(job, cfg, inputs, failures)
            else:
                value = await self.http(job, cfg, inputs)
            check_json(value)
            result.update(ok=True, _value=value)
        except asyncio.CancelledError:
            raise
        except NodeFailure as err:
            result.update(ok=False, error=str(err), kind=err.kind)
        except Exception as err:  # a broken job is the node's failure, not the worker's
            result.update(ok=False, error=f"{type(err).__name__}: {err}", kind="worker")
        result["ended"] = time.time()
        if failures:
            result["failures"] = failures
        return result

    async def function(
        self,
        job: Mapping[str, Any],
        cfg: Mapping[str, Any],
        inputs: Any,
        failures: list[dict[str, Any]],
    ) -> Any:
        """As `NodeExecutors.function`, with the coordinator's rendered inputs. A sync
        function runs in a thread, so that one worker runs `concurrency` of them at once."""
        try:
            fn = self.engine.functions.resolve(cfg["fn"])
        except FunctionError as err:
            raise NodeFailure(str(err), err.kind) from None
        policy = retry_policy(cfg)
        item = job.get("item")

        async def attempts() -> Any:
            for attempt in range(1, policy.max_attempts + 1):
                ctx = NodeContext(str(job["run"]), str(job["node"]), str(job["key"]), attempt, item)
                try:
                    if fn.is_async:
                        return await call(fn, inputs, ctx)
                    return await asyncio.to_thread(call_sync, fn, inputs, ctx)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the function's failure is the node's
                    if attempt == policy.max_attempts:
                        raise NodeFailure(f"{type(err).__name__}: {err}", "function") from None
                    failures.append(
                        {"attempt": attempt, "error": str(err) or type(err).__name__,
                         "kind": type(err).__name__}
                    )  # fmt: skip
                    await asyncio.sleep(backoff_s(policy, attempt))
            raise AssertionError("unreachable")  # pragma: no cover

        limit = timeout_s(cfg)
        if limit is None:
            return await attempts()
        try:
            return await asyncio.wait_for(attempts(), limit)
        except TimeoutError:
            raise NodeFailure(f"timed out after {cfg['timeout']}", "timeout") from None

    async def http(self, job: Mapping[str, Any], cfg: Mapping[str, Any], inputs: Any) -> Any:
        key = str(job["key"])
        if cfg["method"] == "BATCH":
            parts = [
                self._request({**cfg, **req}, rendered, f"{key}/{i}")
                for i, (req, rendered) in enumerate(
                    zip(cfg["requests"], inputs["requests"], strict=True)
                )
            ]
            return list(await asyncio.gather(*parts))
        return await self._request(cfg, inputs, key)

    async def _request(self, cfg: Mapping[str, Any], rendered: Mapping[str, Any], key: str) -> Any:
        from aobc.runtime.executors.http import HttpError, HttpRequest

        limit = timeout_s(cfg)
        req = HttpRequest(
            method=cfg["method"],
            url=str(rendered["url"]),
            headers={k: str(v) for k, v in (rendered.get("headers") or {}).items()},
            body=rendered.get("body"),
            timeout_ms=int(limit * 1000) if limit is not None else None,
            auth=cfg.get("auth"),
        )
        try:
            response = await self.engine.http().request(
                req, retry=retry_policy(cfg), idempotency_key=key, effect=cfg["effect"]
            )
        except HttpError as err:
            raise NodeFailure(str(err), f"http-{err.kind}") from None
        return response.to_output()

    def close(self) -> None:
        relay = self.stores.relay
        if relay is not None:
            # Publish what this worker answered before leaving (another relay would, later).
            with contextlib.suppress(Exception):
                relay.drain(timeout=5.0)
        self.stores.close()


def check_job(job: Mapping[str, Any]) -> None:
    if job.get("v") != JOB_VERSION:
        raise BadJob(f"unknown job version {job.get('v')!r}")
    for name in ("run", "node", "key", "ir", "index", "deadline"):
        if name not in job:
            raise BadJob(f"a job needs {name!r}")
    if "inputs" not in job and "inputs_ref" not in job:
        raise BadJob("a job needs 'inputs' or 'inputs_ref'")


def _outbound(job: Mapping[str, Any], result: dict[str, Any]) -> Any:
    from aobc.runtime.stores.postgres import OutboundMessage

    return OutboundMessage(RESULTS_TOPIC, str(job["run"]), result)
