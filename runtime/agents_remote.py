"""Agent nodes answered by agent runners: the coordinator's side of `agent.jobs`/`agent.results`.

Under the coordinator, an agent node's LLM call runs outside the cluster, in an agent runner
(`aobc agent-runner`, or one written from docs/agent-runner-protocol.md). `RemoteAgents` is
what `RemoteNodes` hands agent nodes to:

- **Dispatch, write-ahead.** A top-level agent node's job is queued with its `node.started`,
  so the job and the start commit in one transaction and leave through the outbox (as
  function jobs do). A map body's agent sends its job on its own. The job carries the rendered
  prompt, the tools, the output schema (and the exact answer schema), the budget, the
  idempotency key, the attempt and a reply deadline.
- **Answers.** Every coordinator reads `agent.results` in its own group and keeps the answers
  its nodes wait for: one whose key and attempt match a waiting node. Anything else (a
  duplicate, an answer to an attempt given up on, another coordinator's) is ignored, so a
  duplicate answer has no second effect.
- **Checking.** An answer is checked against the same answer schema the embedded providers
  check their model's answer with; a bad answer fails the attempt (`agent-schema`), and a
  proposed patch then goes the embedded way: validated, applied, refused or held for review
  (the driver's `AgentOutcome` handling).
- **Deadlines.** An attempt that has no answer by its deadline (the node's `timeout`, else
  `reply_deadline`) plus `grace` fails with kind `timeout`. A failed attempt is retried by the
  node's retry policy, with backoff, as a new job (attempt + 1, same idempotency key); the
  last failure fails the node, and the run, like the embedded runtime.

A coordinator that restarts mid-call re-issues the job as the next attempt (its log says the
node started and never finished); the old attempt's answer, if one comes, is ignored.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aobc.ir import thaw
from aobc.runtime.agent_protocol import (
    AGENT_JOBS,
    AGENT_RESULTS,
    JOB_TYPE,
    VERSION,
    BadMessage,
    check_result,
)
from aobc.runtime.driver import NodeFailure, idempotency_key
from aobc.runtime.env import RunEnv, render
from aobc.runtime.nodes import AgentOutcome, backoff_s, retry_policy, timeout_s
from aobc.runtime.providers.answer import AnswerChecker, answer_schema
from aobc.runtime.providers.base import AgentRequest, ProviderError
from aobc.runtime.providers.loop import MAX_ROUNDS
from aobc.runtime.stores.postgres import OutboundMessage
from aobc.runtime.values import ValueError_, check_json

if TYPE_CHECKING:
    from aobc.runtime.driver import RunDriver
    from aobc.runtime.engine import Engine
    from aobc.runtime.remote import CoordinatorLog
    from aobc.runtime.stores.kafka import KafkaBus, KafkaSubscription

log = logging.getLogger("aobc.agents")


@dataclass
class AgentOptions:
    # Seconds an attempt of an agent node with no `timeout` may take: the providers' own
    # default per request (runtime/providers/base.py), since a runner calls one.
    reply_deadline: float = 600.0
    grace: float = 2.0  # after the deadline, for an answer in transit


@dataclass
class _Waiting:
    run: str
    attempt: int
    deadline: float
    future: asyncio.Future[dict[str, Any]]


class RemoteAgents:
    """Agent nodes for one coordinator; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        log_: CoordinatorLog,
        bus: KafkaBus,
        group: str,
        options: AgentOptions,
    ) -> None:
        self.engine = engine
        self.log = log_
        self.options = options
        # Joined now, so the group has its partitions by the time the first answer comes.
        self.subscription: KafkaSubscription = bus.subscribe(AGENT_RESULTS, group)
        self.waiting: dict[str, _Waiting] = {}  # idempotency key -> the attempt waited for
        self.ignored = 0  # answers nobody waited for (duplicates, late ones, others')
        self._reader: asyncio.Task[None] | None = None

    # --- answers ------------------------------------------------------------------------

    def resolve(self, message: Any) -> bool:
        """Hand an answer to the attempt waiting for it; False (ignored) otherwise."""
        try:
            check_result(message)
        except BadMessage as err:
            log.warning("ignored a malformed agent result: %s", err)
            self.ignored += 1
            return False
        waiting = self.waiting.get(str(message["key"]))
        if waiting is None or waiting.attempt != message["attempt"] or waiting.future.done():
            self.ignored += 1
            log.info(
                "ignored an agent result for %s attempt %s", message["key"], message["attempt"]
            )
            return False
        waiting.future.set_result(dict(message))
        return True

    async def _read(self) -> None:
        async for message in self.subscription:
            self.resolve(message)

    def _listen(self) -> None:
        if self._reader is None or self._reader.done():
            if self._reader is not None and not self._reader.cancelled():
                error = self._reader.exception()
                if error is not None:
                    log.error("reading agent results failed: %s", error)
            self._reader = asyncio.get_running_loop().create_task(self._read())

    def abandon(self, run_id: str) -> None:
        """Stop waiting for the answers of a run this coordinator no longer drives."""
        for key, waiting in list(self.waiting.items()):
            if waiting.run.split("/", 1)[0] == run_id:
                del self.waiting[key]
                waiting.future.cancel()

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        await self.subscription.aclose()

    # --- jobs -----------------------------------------------------------------------------

    def starting(self, d: RunDriver, i: int, attempt: int) -> None:
        """Queue node i's job to commit with its `node.started`."""
        node_id = d.ir.nodes[i].id
        cfg = d.configs[i]
        key = idempotency_key(d.state.run_id, node_id)
        try:
            job = self.job(d, node_id, cfg, d.env, None, attempt, key)
        except NodeFailure:
            return  # `run` builds it again and fails the node with the reason
        self._listen()
        self._wait(d.state.run_id, key, job)
        self.log.queue(d.state.run_id, OutboundMessage(AGENT_JOBS, d.state.run_id, job))

    async def _send(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        attempt: int,
        key: str,
    ) -> _Waiting:
        """Send a job on its own (a map item's, or a retry)."""
        job = self.job(d, node_id, cfg, env, item, attempt, key)
        self._listen()
        waiting = self._wait(d.state.run_id, key, job)
        message = OutboundMessage(AGENT_JOBS, d.state.run_id, job)
        await asyncio.to_thread(self.log.send, [message])
        return waiting

    def _wait(self, run_id: str, key: str, job: Mapping[str, Any]) -> _Waiting:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(run_id, int(job["attempt"]), float(job["deadline"]), future)
        self.waiting[key] = waiting
        return waiting

    async def run(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
    ) -> AgentOutcome:
        """The node's answer, over its attempts; NodeFailure when the last one fails."""
        key = idempotency_key(d.state.run_id, node_id, item)
        policy = retry_policy(cfg)
        waiting = self.waiting.get(key)
        if waiting is None or waiting.future.done():
            first = max(1, d.state.attempts.get(node_id, 1)) if item is None else 1
            waiting = await self._send(d, node_id, cfg, env, item, first, key)
        for n in range(1, policy.max_attempts + 1):
            try:
                left = waiting.deadline + self.options.grace - time.time()
                answer = await asyncio.wait_for(waiting.future, max(left, 0.0))
                return self.outcome(cfg, answer)
            except TimeoutError:
                failure = NodeFailure(self._late(cfg, waiting), "timeout")
            except NodeFailure as err:
                failure = err
            finally:
                if self.waiting.get(key) is waiting:
                    del self.waiting[key]  # later answers to this attempt are ignored
            if n == policy.max_attempts:
                raise failure
            d.emit(
                "node.failed",
                {"node": node_id, "attempt": waiting.attempt, "error": str(failure),
                 "kind": failure.kind, "final": False},
            )  # fmt: skip
            await asyncio.sleep(backoff_s(policy, n))
            waiting = await self._send(d, node_id, cfg, env, item, waiting.attempt + 1, key)
        raise AssertionError("unreachable")  # pragma: no cover

    def _late(self, cfg: Mapping[str, Any], waiting: _Waiting) -> str:
        if cfg.get("timeout") is not None:
            return f"timed out after {cfg['timeout']} (no agent runner answered)"
        return f"no agent runner answered attempt {waiting.attempt} by its deadline"

    def job(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        attempt: int,
        key: str,
    ) -> dict[str, Any]:
        """The `agent.jobs` message for one attempt (docs/agent-runner-protocol.md)."""
        may_patch = bool(cfg.get("may_patch"))
        limit = timeout_s(cfg)
        wait = limit if limit is not None else self.options.reply_deadline
        output_schema = thaw(cfg["output_schema"]) if cfg.get("output_schema") else None
        try:
            request = self._request(d, node_id, cfg, env, may_patch, output_schema)
            schema = answer_schema(request)
        except ProviderError as err:
            raise NodeFailure(str(err), f"agent-{err.kind}") from None
        return {
            "v": VERSION,
            "type": JOB_TYPE,
            "run": d.state.run_id,
            "node": node_id,
            "item": item,
            "attempt": attempt,
            "key": key,
            "deadline": time.time() + wait,
            "provider": cfg.get("provider", "openai"),
            "model": cfg["model"],
            "system": request.system,
            "prompt": request.prompt,
            "tools": [self._tool(name) for name in cfg.get("tools", ())],
            "output_schema": output_schema,
            "answer_schema": schema,
            "may_patch": may_patch,
            "workflow": request.workflow,
            "temperature": cfg.get("temperature"),
            "budget": {
                "timeout_s": wait,
                "max_tokens": cfg.get("max_tokens"),
                "max_rounds": MAX_ROUNDS,
                "spawn": int(cfg.get("spawn_budget", 0)),
            },
        }

    def _request(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        may_patch: bool,
        output_schema: dict[str, Any] | None,
    ) -> AgentRequest:
        return AgentRequest(
            node_id=node_id,
            model=str(cfg["model"]),
            prompt=str(render(cfg["prompt"], env)),
            system=str(render(cfg["system"], env)) if cfg.get("system") is not None else None,
            output_schema=output_schema,
            may_patch=may_patch,
            workflow=self.engine.live.document(d) if may_patch else None,
        )

    def _tool(self, name: str) -> dict[str, Any]:
        """A tool as the job names it: with its description and schema when this coordinator
        knows them (the runner that runs it knows them in any case)."""
        try:
            (spec,) = self.engine.tool_specs([name])
        except ProviderError:
            return {"name": name, "description": None, "parameters": None}
        return {"name": spec.name, "description": spec.description, "parameters": spec.parameters}

    def outcome(self, cfg: Mapping[str, Any], answer: Mapping[str, Any]) -> AgentOutcome:
        """A runner's answer as the embedded agent executor's outcome, or NodeFailure."""
        if not answer["ok"]:
            kind = str(answer.get("kind") or "runner")
            if kind == "timeout":
                raise NodeFailure(f"agent runner: {answer['error']}", "timeout")
            raise NodeFailure(f"{kind} error: {answer['error']}", f"agent-{kind}")
        may_patch = bool(cfg.get("may_patch"))
        output, patch = answer["output"], answer.get("patch")
        if patch is not None and not may_patch:
            raise NodeFailure(
                "protocol error: the runner proposed a patch for a node without may_patch",
                "agent-protocol",
            )
        schema = thaw(cfg["output_schema"]) if cfg.get("output_schema") else None
        checker = AnswerChecker(
            AgentRequest(node_id="", model="", prompt="", output_schema=schema, may_patch=may_patch)
        )
        document: Any = (
            {"output": output, "patch": patch}
            if may_patch
            else {"output": output}
            if checker.wrapped
            else output
        )
        problem = checker.problem(document)
        if problem is not None:
            raise NodeFailure(
                f"schema error: the runner's answer does not match the schema: {problem}",
                "agent-schema",
            )
        try:
            check_json(output)
        except ValueError_ as err:
            raise NodeFailure(str(err), "agent-schema") from None
        return AgentOutcome(output, patch if may_patch else None)
