"""`AgentRunner`: the reference agent runner, answering `agent.jobs` on `agent.results`.

It needs only Kafka and a model provider: runners share one consumer group, so any number of
them split the jobs (`docs/agent-runner-protocol.md` has the messages). For each job:

1. a message that is not a version-1 job goes to the dead-letter topic with the reason;
2. a job whose deadline has passed is dropped unanswered (the coordinator has given up on it
   or is about to, and would ignore the answer);
3. else the node's provider (`runtime/providers`: the real OpenAI and Anthropic clients, or the
   scripted one) answers it within the deadline, running the tools from this runner's own
   registry, and the answer (output and proposed patch) or the error is published to
   `agent.results`, keyed by run id;
4. only once the broker has the answer is the job's offset committed, so a runner that dies
   mid-job leaves it to another (at least once; the coordinator keeps one answer per attempt).

SIGTERM (`stop`): take no more jobs, give the running ones `drain_timeout` seconds, and hand
back the rest (never committed, so delivered again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from aobc.runtime.agent_protocol import (
    AGENT_JOBS,
    AGENT_RESULTS,
    BadMessage,
    answer_message,
    check_job,
    error_message,
    request_of,
)
from aobc.runtime.consume import consume
from aobc.runtime.providers import ProviderConfig, ProviderError, provider_for
from aobc.runtime.stores.kafka import Delivery, KafkaBus, KafkaSubscription
from aobc.runtime.values import ValueError_, check_json

log = logging.getLogger("aobc.agent_runner")


@dataclass
class RunnerOptions:
    group: str = "agent-runners"
    concurrency: int = 4
    drain_timeout: float = 30.0
    name: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")


class AgentRunner:
    """One runner process's work; `serve(stop)` runs it until `stop` is set."""

    def __init__(self, bus: KafkaBus, providers: ProviderConfig, options: RunnerOptions) -> None:
        self.bus = bus
        self.providers = providers
        self.options = options
        self.answered = 0
        self.dropped = 0

    async def serve(self, stop: asyncio.Event) -> None:
        jobs = self.bus.subscribe(AGENT_JOBS, self.options.group, commit="manual")

        async def handle(delivery: Delivery) -> None:
            await self._handle(jobs, delivery)

        try:
            await consume(
                jobs.next_delivery,
                handle,
                stop,
                concurrency=self.options.concurrency,
                drain_timeout=self.options.drain_timeout,
            )
        finally:
            await jobs.aclose()

    async def _handle(self, jobs: KafkaSubscription, delivery: Delivery) -> None:
        job = delivery.message
        try:
            check_job(job)
        except BadMessage as err:
            await jobs.dead_letter(delivery, str(err))
            return
        answer = await self.answer(job)
        if answer is None:
            self.dropped += 1
        else:
            await self.bus.publish(AGENT_RESULTS, str(job["run"]), answer)
            self.answered += 1
        jobs.ack(delivery)  # the answer is in Kafka: the job is done

    async def answer(self, job: Mapping[str, Any]) -> dict[str, Any] | None:
        """The result message for a job, or None: its deadline passed, so no answer."""
        runner = self.options.name
        left = float(job["deadline"]) - time.time()
        if left <= 0:
            log.info("dropped job %s attempt %s: past its deadline", job["key"], job["attempt"])
            return None
        try:
            request = request_of(job, self.providers.tools)
            provider = provider_for(str(job["provider"]), self.providers)
            reply = await asyncio.wait_for(provider.complete(request), left)
            check_json(reply.output)
        except TimeoutError:
            return error_message(job, "timeout", "no answer by the job's deadline", runner)
        except ProviderError as err:
            return error_message(job, err.kind, err.message, runner)
        except ValueError_ as err:
            return error_message(job, "schema", str(err), runner)
        except Exception as err:  # a failed call is the node's failure, not the runner's
            log.exception("job %s failed", job["key"])
            return error_message(job, "runner", f"{type(err).__name__}: {err}", runner)
        return answer_message(job, reply, runner)
