"""Agent nodes under the coordinator, answered by agent runners outside the cluster.

Real servers (Kafka, Postgres, S3, Redis) and real processes: `aobc coordinator`, `aobc worker`
and `aobc agent-runner`, the runner talking to a local server that speaks the OpenAI protocol.
Where a test needs an answer the reference runner would never give (a duplicate, a late one),
the test plays the runner itself on `agent.jobs`/`agent.results`.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import uuid
from typing import Any

import pytest
from agent_cluster import API_KEY, HERE, TIMEOUT, Cluster, cluster, of_type, wait_until

from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.runtime.agent_protocol import AGENT_JOBS, AGENT_RESULTS
from aobc.runtime.commands import decide_patch
from aobc.runtime.driver import idempotency_key
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.providers import ProviderConfig
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.runtime.stores.kafka import KafkaBus, KafkaSubscription
from aobc.runtime.stores.postgres import PostgresEventLog
from aobc.testing.fakellm import Answer, FakeOpenAI, Recorded

pytestmark = pytest.mark.integration
__all__ = ["cluster"]  # the fixture


WORKFLOW = """
workflow triage {
  input topic: str = "billing"
  output answer = ask
  output after = after
  ask = agent {
    model: "m-1"
    prompt: "Classify ${inputs.topic}"
    output_schema: { type: "object", required: ["label"], properties: { label: { type: "string" } } }
    may_patch: PATCH
    spawn_budget: 1
    timeout: 30s
  }
  after = function "agent_fns:echo" { effect: pure, args: { label: ask.label } }
  ask -> after
}
"""


def workflow(patch: bool = False) -> str:
    return WORKFLOW.replace("PATCH", "true" if patch else "false")


def embedded_run(source: str, llm: FakeOpenAI) -> Any:
    """What the embedded runtime answers for `source` with the same model server."""
    env = {"OPENAI_API_KEY": API_KEY, "AOBC_OPENAI_BASE_URL": llm.url}
    options = EngineOptions(search_path=[str(HERE)], providers=ProviderConfig.from_env(env))
    with EmbeddedStores.memory() as st:
        engine = Engine(Stores(st.events, st.cas), options)

        async def go() -> Any:
            try:
                return await engine.start(lower(load_text(source, "triage.aob")), {})
            finally:
                await engine.close()

        return asyncio.run(go())


def test_an_agent_node_is_answered_by_an_agent_runner_like_the_embedded_runtime(
    cluster: Cluster,
) -> None:
    with FakeOpenAI([Answer({"label": "refund"})] * 2, api_key=API_KEY) as llm:
        embedded = embedded_run(workflow(), llm)
        cluster.coordinator()
        runner = cluster.runner(llm)
        run_id = cluster.start(workflow())
        st = cluster.finished(run_id)
        requests = llm.requests
    assert embedded.status == "succeeded", embedded.error
    assert st.status == "succeeded", st.error
    assert st.output_value == embedded.outputs
    assert embedded.outputs == {
        "answer": {"label": "refund"},
        "after": {"inputs": {"label": "refund"}},
    }
    # The runner called the model through the real OpenAI client, with the rendered prompt,
    # the node's model and schema, and the node's idempotency key.
    local, remote = requests
    assert remote.path == local.path == "/v1/chat/completions"
    assert remote.body == local.body
    assert remote.headers["idempotency-key"] == idempotency_key(run_id, "ask")
    assert any("Classify billing" in str(m.get("content")) for m in remote.body["messages"])
    assert remote.body["response_format"]["json_schema"]["schema"]["required"] == ["label"]
    events = cluster.events(run_id)
    (started,) = [d for d in of_type(events, "node.started") if d["node"] == "ask"]
    assert started["key"] == idempotency_key(run_id, "ask")
    runner.send_signal(signal.SIGTERM)
    assert runner.wait(timeout=TIMEOUT) == 0


def _add(node: dict[str, Any]) -> dict[str, Any]:
    return {
        "reason": f"also {node['id']}",
        "operations": [
            {"op": "add", "path": "/nodes/-", "value": node},
            {"op": "add", "path": "/edges/-", "value": {"from": "ask", "to": node["id"]}},
        ],
    }


NOTED = _add(
    {"id": "noted", "type": "function", "effect": "pure", "fn": "agent_fns:echo",
     "args": {"label": "${ask.label}"}}
)  # fmt: skip
NOTIFY = _add(
    {"id": "notify", "type": "function", "effect": "effectful", "fn": "agent_fns:record",
     "args": {"label": "${ask.label}"}}
)  # fmt: skip


def test_a_patch_proposed_by_a_runner_is_applied_or_held_for_review(cluster: Cluster) -> None:
    def answer(request: Recorded) -> Answer:
        pure = "Classify pure" in json.dumps(request.body)
        return Answer({"output": {"label": "urgent"}, "patch": NOTED if pure else NOTIFY})

    with FakeOpenAI(handler=answer, api_key=API_KEY) as llm:
        cluster.coordinator("--review-agent", "effectful")
        cluster.worker()
        cluster.runner(llm)
        # A patch adding a pure node applies at once, and the node runs in this run.
        applied_run = cluster.start(workflow(patch=True), topic="pure")
        st = cluster.finished(applied_run)
        assert st.status == "succeeded", st.error
        assert st.done.get("noted") is not None
        (applied,) = of_type(cluster.events(applied_run), "patch.applied")
        assert (applied["author_kind"], applied["author"]) == ("agent", "ask")
        assert st.ir == applied["ir"] != st.start_ir
        # A patch adding an effectful node waits for a person; approved, it applies and runs.
        held_run = cluster.start(workflow(patch=True), topic="effect")
        (held,) = wait_until(
            lambda: of_type(cluster.events(held_run), "patch.held"), "the patch to be held"
        )
        assert "notify" in held["reason"]
        assert not cluster.state(held_run).finished
        with PostgresEventLog(cluster.postgres) as log:
            stores = Stores(log, None)  # type: ignore[arg-type]  # decisions touch only the log
            decide_patch(stores, held["patch"]["id"], "approve", "alice", "fine")
        st = cluster.finished(held_run)
    assert st.status == "succeeded", st.error
    assert st.done.get("notify") is not None
    (applied,) = of_type(cluster.events(held_run), "patch.applied")
    assert applied["approved_by"] == "alice"
    effects = (cluster.dir / "effects.txt").read_text().split()
    assert effects == ["notify", idempotency_key(held_run, "notify")]


class PlayRunner:
    """The test as an agent runner: reads agent.jobs, answers on agent.results."""

    def __init__(self, bus: KafkaBus) -> None:
        self.bus = bus
        self.jobs: KafkaSubscription = bus.subscribe(AGENT_JOBS, f"play-{uuid.uuid4().hex[:6]}")

    async def job(self) -> dict[str, Any]:
        return await asyncio.wait_for(anext(self.jobs), TIMEOUT)

    async def answer(self, job: dict[str, Any], output: Any, **extra: Any) -> None:
        message = {
            "v": 1, "type": "agent.result", "run": job["run"], "node": job["node"],
            "item": job["item"], "attempt": job["attempt"], "key": job["key"], "ok": True,
            "output": output, "patch": None, "runner": "test", **extra,
        }  # fmt: skip
        await self.bus.publish(AGENT_RESULTS, job["run"], message)


TIMED = """
workflow late {
  output answer = ask
  ask = agent { model: "m-1", prompt: "hurry", timeout: 1s, retries: 1 }
}
"""


def test_a_missing_or_late_answer_times_out_by_the_node_s_policy(cluster: Cluster) -> None:
    cluster.coordinator("--agent-grace", "0.3")
    bus = cluster.bus()
    try:

        async def play() -> tuple[str, list[dict[str, Any]]]:
            runner = PlayRunner(bus)
            try:
                run_id = await asyncio.to_thread(cluster.start, TIMED)
                first = await runner.job()  # left unanswered
                second = await runner.job()  # the retry: a new job, the same key
                await runner.answer(first, {"late": True})  # attempt 1 was given up on
                return run_id, [first, second]
            finally:
                await runner.jobs.aclose()

        run_id, jobs = asyncio.run(play())
    finally:
        bus.close()
    assert [j["attempt"] for j in jobs] == [1, 2]
    assert {j["key"] for j in jobs} == {idempotency_key(run_id, "ask")}
    for job in jobs:
        assert job["budget"]["timeout_s"] == 1.0
        assert job["deadline"] - time.time() < 1.0
    st = cluster.finished(run_id)
    assert st.status == "failed"
    failures = of_type(cluster.events(run_id), "node.failed")
    # (The final failure carries the attempt count the log had, as in the embedded runtime.)
    assert [(f["kind"], f["final"]) for f in failures] == [("timeout", False), ("timeout", True)]
    assert failures[0]["attempt"] == 1
    assert "timed out after 1s" in failures[-1]["error"]
    assert not of_type(cluster.events(run_id), "node.succeeded")  # the late answer did nothing


TWO = """
workflow two {
  output a = a
  output b = b
  a = agent { model: "m-1", prompt: "first", may_patch: true, spawn_budget: 1 }
  b = agent { model: "m-1", prompt: "second ${a.n}" }
  a -> b
}
"""

SPAWN = _add({"id": "extra", "type": "agent", "model": "m-1", "prompt": "extra"})


def test_a_duplicate_answer_has_no_second_effect(cluster: Cluster) -> None:
    cluster.coordinator()
    bus = cluster.bus()
    try:

        async def play() -> tuple[str, dict[str, Any]]:
            runner = PlayRunner(bus)
            try:
                run_id = await asyncio.to_thread(cluster.start, TWO)
                a = await runner.job()
                await runner.answer(a, {"n": 1})
                # Duplicates: the same answer again, and one with another output and a patch.
                await runner.answer(a, {"n": 1})
                await runner.answer(a, {"n": 999}, patch=SPAWN)
                b = await runner.job()
                # Same partition (keyed by run id): the coordinator reads b's answer after the
                # duplicates, so by the time the run ends it has seen all of them.
                await runner.answer(b, {"done": True})
                return run_id, b
            finally:
                await runner.jobs.aclose()

        run_id, b = asyncio.run(play())
    finally:
        bus.close()
    st = cluster.finished(run_id)
    assert st.status == "succeeded", st.error
    assert st.output_value == {"a": {"n": 1}, "b": {"done": True}}
    assert b["prompt"] == "second 1"
    events = cluster.events(run_id)
    assert [d["node"] for d in of_type(events, "node.succeeded")] == ["a", "b"]
    assert not [e for e in events if e.type.startswith("patch.")]
