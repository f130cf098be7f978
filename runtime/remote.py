"""Running nodes on workers: the coordinator's side of the job and result messages.

`RemoteNodes` is the coordinator's `engine.nodes`: the same driver and interpreter as the
embedded runtime, except that a `function` or `http` node the driver would run as a task
becomes a job on `node.jobs.{priority}`, answered on `node.results`. Inline pure nodes,
conditions, joins, timers, approvals, and the orchestration of maps and sub-workflows stay
in the coordinator.

Write-ahead, through the outbox: `starting()` queues a node's job on `CoordinatorLog`, whose
next append writes it in the same statement as the node's `node.started` (with the lease
check: `PostgresEventLog.append_leased`), and produces it as soon as that commits. So a job exists
exactly when its start is durable; a coordinator that dies after the commit leaves a job that
Kafka still delivers, and one that dies before leaves neither.

A job (`v` 1):

    {"v": 1, "run": RUN, "node": NODE, "item": null | INDEX, "index": NODE_INDEX,
     "ir": IR_DIGEST, "kind": "function" | "http", "attempt": N, "key": IDEMPOTENCY_KEY,
     "inputs": {...} | "inputs_ref": CAS_DIGEST, "deadline": EPOCH_SECONDS}

`inputs` are the values the node reads, rendered by the coordinator (a function's inputs
dict; an http node's `url`, `headers` and `body`, or its `requests` for a batch); above
`inline_limit` bytes they go to the CAS and only the digest travels. A result:

    {"v": 1, "run", "node", "item", "key", "attempt", "ok": true, "output": DIGEST,
     "value": ... (only when small), "failures": [{attempt, error, kind}], "began", "ended"}
    {"v": 1, ..., "ok": false, "error": MESSAGE, "kind": KIND, "failures": [...]}
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import msgspec

from aobc.canonical import canonical_bytes, sha256_hex
from aobc.runtime.driver import NodeFailure, idempotency_key
from aobc.runtime.env import RunEnv, render
from aobc.runtime.nodes import NodeExecutors, timeout_s
from aobc.runtime.stores.base import CAS, Event
from aobc.runtime.stores.postgres import OutboundMessage, PostgresEventLog

if TYPE_CHECKING:
    from aobc.runtime.agents_remote import RemoteAgents
    from aobc.runtime.driver import RunDriver
    from aobc.runtime.eager import EagerJobs
    from aobc.runtime.engine import Engine

#: Node kinds that run on workers.
REMOTE_KINDS: Final = frozenset({"function", "http"})
RESULTS_TOPIC: Final = "node.results"
PRIORITIES: Final = ("high", "medium", "low")
JOB_VERSION: Final = 1
#: The inbox consumer under which the jobs sent without a start event of their own are claimed.
SENT: Final = "aobc.sent"
_decode = msgspec.json.Decoder().decode


def job_topic(priority: str) -> str:
    return f"node.jobs.{priority}"


class LeaseLost(RuntimeError):
    """This coordinator no longer owns the run it tried to write to (another took it)."""


def root_run(run_id: str) -> str:
    """The top-level run a (sub-workflow) run belongs to: its lease covers them all."""
    return run_id.split("/", 1)[0]


class CoordinatorLog(PostgresEventLog):
    """The coordinator's event log: appends are fenced by the run's lease, and carry the
    messages queued for their run in the same transaction."""

    def __init__(self, url: str, owner: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.owner = owner
        self.leases: dict[str, int] = {}  # root run id -> the epoch of our lease on it
        self._outgoing: dict[str, list[OutboundMessage]] = {}
        self.eager: EagerJobs | None = None  # the jobs this coordinator runs itself

    def queue(self, run_id: str, message: OutboundMessage) -> None:
        """Send `message` with the next append to `run_id`."""
        self._outgoing.setdefault(run_id, []).append(message)

    def append(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        *,
        expect_seq: int | None = None,
        messages: Sequence[OutboundMessage] = (),
        status: str | None = None,
    ) -> list[Event]:
        root = root_run(run_id)
        epoch = self.leases.get(root)
        if epoch is None:
            raise LeaseLost(f"run {root} is not leased by {self.owner}")
        pending = self._outgoing.get(run_id, [])
        sent = len(pending)
        # One statement: the lease check (FOR SHARE: a takeover, which updates the row, waits
        # for this commit, and an append after a takeover finds a new epoch and writes
        # nothing), the events and the queued messages.
        stored = self.append_leased(
            run_id,
            events,
            lease=(root, self.owner, epoch),
            expect_seq=expect_seq,
            messages=[*pending[:sent], *messages],
            status=status,
        )
        if stored is None:
            raise LeaseLost(f"run {root}: lease epoch {epoch} of {self.owner} was taken")
        del pending[:sent]  # only once committed: a Conflict keeps them for the retry
        if not pending:
            self._outgoing.pop(run_id, None)
        return stored

    def set_status(self, run_id: str, status: str) -> None:
        """Fenced like an append: written only under our lease. "running" and "waiting" (which
        a driver writes as it goes) never replace a final status."""
        root = root_run(run_id)
        epoch = self.leases.get(root)
        if epoch is None:
            raise LeaseLost(f"run {root} is not leased by {self.owner}")
        guard = " AND status IN ('running', 'waiting')" if status in ("running", "waiting") else ""
        cursor = self._conn().execute(
            "UPDATE runs SET status = %s, updated = %s WHERE run_id = %s AND EXISTS ("
            " SELECT 1 FROM run_leases WHERE run_id = %s AND owner = %s AND epoch = %s"
            f" FOR SHARE){guard}",
            (status, time.time(), run_id, root, self.owner, epoch),
        )
        if cursor.rowcount == 0 and not guard:
            raise LeaseLost(f"run {root}: lease epoch {epoch} of {self.owner} was taken")

    def append_ending(
        self,
        run_id: str,
        events: Sequence[tuple[str, dict[str, Any]]],
        status: str,
        *,
        expect_seq: int | None = None,
    ) -> list[Event]:
        """`append`, setting the run's (final) status in the same statement."""
        return self.append(run_id, events, expect_seq=expect_seq, status=status)

    def kept(self, held: Sequence[tuple[OutboundMessage, int]]) -> None:
        if self.eager is None:
            raise RuntimeError("a held message without eager jobs to run it")
        self.eager.kept(held)

    def stored_result(self, key: str) -> dict[str, Any] | None:
        """The result a worker recorded for this job key, if any."""
        row = self._conn().execute("SELECT message FROM job_results WHERE key = %s", (key,))
        found = row.fetchone()
        return None if found is None else dict(_decode(found[0]))


class KnownCAS:
    """A CAS that skips putting what a worker already stored (its result carried the digest):
    the driver stores every persisted output, and on S3 each put is a round trip."""

    def __init__(self, inner: CAS, size: int = 65536) -> None:
        self.inner = inner
        self._known: dict[str, None] = {}
        self._size = size

    def learn(self, digest: str) -> None:
        if len(self._known) >= self._size:
            self._known.pop(next(iter(self._known)))
        self._known[digest] = None

    def put(self, data: bytes) -> str:
        digest = sha256_hex(data)
        if digest in self._known:
            return digest
        self.inner.put(data)
        self.learn(digest)
        return digest

    def get(self, digest: str) -> bytes:
        return self.inner.get(digest)

    def has(self, digest: str) -> bool:
        return digest in self._known or self.inner.has(digest)


@dataclass
class RemoteOptions:
    priority: str = "medium"  # when the run's labels do not say
    inline_limit: int = 16 * 1024  # bytes of inputs (or an output) that travel in a message
    reply_deadline: float = 3600.0  # seconds for a node with no timeout of its own
    grace: float = 5.0  # after the deadline, before the coordinator gives up on a reply


class RemoteNodes(NodeExecutors):
    """`engine.nodes` for a coordinator; see the module docstring."""

    batches_writes = True
    serves_children = True

    def __init__(
        self, engine: Engine, log: CoordinatorLog, cas: KnownCAS, options: RemoteOptions
    ) -> None:
        super().__init__(engine)
        self.log = log
        self.cas = cas
        self.options = options
        self.priorities: dict[str, str] = {}  # root run id -> its priority label
        # Job key -> (run id, future of its result). Registered before the job can be
        # published, so a result never arrives before its waiter.
        self.waiters: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        # Agent nodes go to agent runners through this (runtime/agents_remote.py); None: they
        # run here, in the coordinator.
        self.agents: RemoteAgents | None = None

    # --- results ------------------------------------------------------------------------

    def resolve(self, result: Mapping[str, Any]) -> bool:
        """Hand a result to the node waiting for it; False if none waits (a duplicate, a
        result of another coordinator's run, or an old one)."""
        entry = self.waiters.pop(str(result.get("key")), None)
        if entry is None or entry[1].done():
            return False
        entry[1].set_result(dict(result))
        return True

    def abandon(self, run_id: str) -> None:
        """Stop waiting for the results of a run this coordinator no longer drives."""
        if self.agents is not None:
            self.agents.abandon(run_id)
        if self.log.eager is not None:
            self.log.eager.abandon(run_id)
        for key, (run, future) in list(self.waiters.items()):
            if root_run(run) == run_id:
                del self.waiters[key]
                future.cancel()

    # --- jobs -------------------------------------------------------------------------------

    def starting(self, d: RunDriver, i: int, attempt: int) -> None:
        cfg = d.configs[i]
        if cfg["type"] == "agent" and self.agents is not None:
            self.agents.starting(d, i, attempt)
            return
        if cfg["type"] not in REMOTE_KINDS:
            return
        run_id = d.state.run_id
        node_id = d.ir.nodes[i].id
        key = idempotency_key(run_id, node_id)
        future = self._wait_for(run_id, key)
        if attempt > 1:
            # Started before, by a coordinator that stopped: that start's job is durable
            # (it went out with it), so it is answered; never issue it twice. Its answer may
            # already be recorded, and consumed by the coordinator that stopped.
            stored = self.log.stored_result(key)
            if stored is not None:
                self.resolve(stored)
            return
        job = self._job(d, node_id, cfg, d.env, None, i, attempt, key)
        message = OutboundMessage(self._topic(run_id), run_id, job)
        eager = self.log.eager
        if eager is not None:
            held = OutboundMessage(message.topic, run_id, job, held=True)
            if eager.take(held):
                message = held
        self.log.queue(run_id, message)
        del future

    async def run_spec(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        sub: Any = None,
    ) -> Any:
        if cfg["type"] == "agent" and self.agents is not None:
            return await self.agents.run(d, node_id, cfg, env, item)
        if cfg["type"] not in REMOTE_KINDS:
            return await super().run_spec(d, node_id, cfg, env, item, sub)
        run_id = d.state.run_id
        key = idempotency_key(run_id, node_id, item)
        eager = self.log.eager
        if eager is not None and eager.has(key):
            self.waiters.pop(key, None)  # answered here, not on node.results
            return self._outcome(d, node_id, await eager.run(key))
        entry = self.waiters.get(key)
        if entry is None:
            # Not started through `starting` (a map's item, a fast-path pure node): its job
            # goes out on its own. Its driver appended the map's start before this task ran.
            future = self._wait_for(run_id, key)
            attempt = max(1, d.state.attempts.get(node_id, 1))
            job = self._job(d, node_id, cfg, env, item, d.index[node_id], attempt, key)
            message = OutboundMessage(self._topic(run_id), run_id, job)
            if not await asyncio.to_thread(self._send_once, key, message):
                # Sent before this coordinator restarted: that job is answered (or being
                # answered); sending it again would run its effect a second time.
                stored = await asyncio.to_thread(self.log.stored_result, key)
                if stored is not None:
                    self.resolve(stored)
        else:
            future = entry[1]
        limit = timeout_s(cfg)
        wait = (limit if limit is not None else self.options.reply_deadline) + self.options.grace
        try:
            result = await asyncio.wait_for(future, wait)
        except TimeoutError:
            self.waiters.pop(key, None)
            raise NodeFailure(f"no worker answered within {wait:.0f} s", "timeout") from None
        return self._outcome(d, node_id, result)

    def _send_once(self, key: str, message: OutboundMessage) -> bool:
        """Queue a job whose start has no event of its own (a map's item) unless one with its
        key was queued before: False then. The claim (in the inbox, under `SENT`) commits
        with the job's outbox row, so a job exists exactly when its claim does."""
        with self.log.transaction() as tx:
            if not tx.claim(SENT, key):
                return False
            tx.send(message.topic, message.key, message.message)
        return True

    def _wait_for(self, run_id: str, key: str) -> asyncio.Future[dict[str, Any]]:
        entry = self.waiters.get(key)
        if entry is not None and not entry[1].done():
            return entry[1]
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiters[key] = (run_id, future)
        return future

    def _topic(self, run_id: str) -> str:
        return job_topic(self.priorities.get(root_run(run_id), self.options.priority))

    def _job(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        index: int,
        attempt: int,
        key: str,
    ) -> dict[str, Any]:
        limit = timeout_s(cfg)
        job: dict[str, Any] = {
            "v": JOB_VERSION,
            "run": d.state.run_id,
            "node": node_id,
            "item": item,
            "index": index,
            "ir": self.engine.store_ir(d.ir, d.ir.name),
            "kind": cfg["type"],
            "attempt": attempt,
            "key": key,
            "deadline": time.time() + (limit if limit is not None else self.options.reply_deadline),
        }
        inputs = job_inputs(d, cfg, env, item, index)
        data = canonical_bytes(inputs)
        if len(data) > self.options.inline_limit:
            job["inputs_ref"] = self.cas.put(data)  # large values never travel through Kafka
        else:
            job["inputs"] = inputs
        return job

    def _outcome(self, d: RunDriver, node_id: str, result: Mapping[str, Any]) -> Any:
        for failure in result.get("failures", ()):
            d.emit(
                "node.failed",
                {
                    "node": node_id,
                    "attempt": failure.get("attempt", 1),
                    "error": failure.get("error", ""),
                    "kind": failure.get("kind", "error"),
                    "final": False,
                },
            )
        if not result.get("ok"):
            raise NodeFailure(
                str(result.get("error", "the worker failed")), result.get("kind", "error")
            )
        digest = str(result["output"])
        self.cas.learn(digest)
        return result["value"] if "value" in result else self.engine.values.get(digest)


def job_inputs(
    d: RunDriver, cfg: Mapping[str, Any], env: RunEnv, item: int | None, index: int
) -> Any:
    """The values a node reads, rendered here so that a worker needs no run state."""
    if cfg["type"] == "function":
        args = cfg.get("args")
        if args is not None:
            return render(args, env)
        if item is not None:
            return {"item": env["item"]}
        return d.join_output(index)
    if cfg["method"] == "BATCH":
        return {
            "requests": [
                render({k: {**cfg, **req}.get(k) for k in ("url", "headers", "body")}, env)
                for req in cfg["requests"]
            ]
        }
    return render({k: cfg.get(k) for k in ("url", "headers", "body")}, env)
