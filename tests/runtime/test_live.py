"""Agents (through the real provider clients and local protocol servers), HTTP nodes against
a real local server, and live patching of running runs."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from harness import Harness
from httpserver import HttpServer, Reply, echo, sequence

from aobc.policy import Policy
from aobc.runtime.commands import propose
from aobc.runtime.engine import Stores
from aobc.runtime.providers import ProviderConfig
from aobc.testing.fakellm import Answer, FakeAnthropic, FakeOpenAI


def config_for(
    openai: FakeOpenAI | None = None, anthropic: FakeAnthropic | None = None
) -> ProviderConfig:
    env = {"OPENAI_API_KEY": "sk-test", "ANTHROPIC_API_KEY": "sk-ant-test"}
    if openai is not None:
        env["AOBC_OPENAI_BASE_URL"] = openai.url
    if anthropic is not None:
        env["AOBC_ANTHROPIC_BASE_URL"] = anthropic.url
    return ProviderConfig.from_env(env)


AGENT = """
workflow ag {
  input topic: str = "billing"
  output answer = ask
  output after = after
  ask = agent {
    provider: PROVIDER
    model: "m-1"
    prompt: "Classify ${inputs.topic}"
    output_schema: { type: "object", required: ["label"], properties: { label: { type: "string" } } }
    may_patch: PATCH
    spawn_budget: 1
  }
  after = function "wf_functions:echo" { effect: pure, args: { label: ask.label } }
  ask -> after
}
"""


def agent_wf(provider: str = "openai", patch: bool = False) -> str:
    return AGENT.replace("PROVIDER", provider).replace("PATCH", "true" if patch else "false")


def test_openai_agent_structured_output_through_the_real_client(harness: Harness) -> None:
    with FakeOpenAI([Answer({"label": "refund"})], api_key="sk-test") as llm:
        result = harness.run(agent_wf(), providers=config_for(openai=llm))
    assert result.status == "succeeded"
    assert result.outputs["answer"] == {"label": "refund"}
    assert result.outputs["after"]["inputs"] == {"label": "refund"}
    (req,) = llm.requests
    assert req.path.endswith("/chat/completions")
    assert req.body["model"] == "m-1"
    assert req.body["response_format"]["type"] == "json_schema"
    assert any("Classify billing" in str(m.get("content")) for m in req.body["messages"])


def test_anthropic_agent_through_the_real_client(harness: Harness) -> None:
    with FakeAnthropic([Answer({"label": "bug"})], api_key="sk-ant-test") as llm:
        result = harness.run(agent_wf("anthropic"), providers=config_for(anthropic=llm))
    assert result.outputs["answer"] == {"label": "bug"}
    assert llm.requests[0].path == "/v1/messages"


ADD_NOTIFY = {
    "reason": "also tell the team",
    "operations": [
        {
            "op": "add",
            "path": "/nodes/-",
            "value": {
                "id": "notify",
                "type": "function",
                "effect": "effectful",
                "fn": "wf_functions:record",
                "args": {"label": "${ask.label}"},
            },
        },
        {"op": "add", "path": "/edges/-", "value": {"from": "ask", "to": "notify"}},
    ],
}


def test_an_agent_patch_adds_nodes_to_the_running_run(harness: Harness) -> None:
    with FakeOpenAI(
        [Answer({"output": {"label": "urgent"}, "patch": ADD_NOTIFY})], api_key="sk-test"
    ) as llm:
        result = harness.run(agent_wf(patch=True), providers=config_for(openai=llm))
    assert result.status == "succeeded"
    st = harness.state(result.run_id)
    assert st.done.get("notify") is not None  # the node the agent added ran in this run
    (applied,) = harness.events(result.run_id, "patch.applied")
    assert (applied["author_kind"], applied["author"], applied["reason"]) == (
        "agent",
        "ask",
        "also tell the team",
    )
    assert applied["version"] != st.workflow
    assert st.ir == applied["ir"]
    record = harness.stores.events.get_patch(applied["patch"]["id"])
    assert record is not None
    assert record["status"] == "applied"
    # The agent was shown the running workflow's document ("after" is only in the graph).
    assert "after" in json.dumps(llm.requests[0].body)


def test_a_patch_touching_a_node_that_ran_is_refused_and_changes_nothing(harness: Harness) -> None:
    bad = {
        "reason": "rewrite history",
        "operations": [{"op": "replace", "path": "/nodes/0/model", "value": "m-2"}],
    }
    with FakeOpenAI([Answer({"output": {"label": "x"}, "patch": bad})], api_key="sk-test") as llm:
        result = harness.run(agent_wf(patch=True), providers=config_for(openai=llm))
    assert result.status == "succeeded"
    assert result.outputs["after"]["inputs"] == {"label": "x"}
    (refused,) = harness.events(result.run_id, "patch.refused")
    assert refused["diagnostics"][0]["code"] == "patch-touches-executed"
    st = harness.state(result.run_id)
    assert st.patches == []
    assert st.ir == st.start_ir


def test_spawn_budget_is_counted_per_run(harness: Harness) -> None:
    spawn = {
        "reason": "more agents",
        "operations": [
            {
                "op": "add",
                "path": "/nodes/-",
                "value": {"id": f"sub{i}", "type": "agent", "model": "m", "prompt": "p"},
            }
            for i in range(2)
        ],
    }
    with FakeOpenAI([Answer({"output": {"label": "x"}, "patch": spawn})], api_key="sk-test") as llm:
        result = harness.run(agent_wf(patch=True), providers=config_for(openai=llm))
    (refused,) = harness.events(result.run_id, "patch.refused")
    assert {d["code"] for d in refused["diagnostics"]} == {"spawn-budget"}
    assert result.status == "succeeded"


def test_a_human_patch_reaches_a_running_run(harness: Harness) -> None:
    text = """
    workflow h {
      output extra = extra
      ask = approval { approvers: ["ops"] }
      after = function "wf_functions:record" { effect: effectful }
      ask -> after
    }
    """
    engine = harness.engine()
    ir = harness.compile(text)
    stores = Stores(harness.stores.events, harness.stores.cas, harness.dir)
    human = {
        "reason": "count it too",
        "operations": [
            {
                "op": "add",
                "path": "/nodes/-",
                "value": {
                    "id": "extra",
                    "type": "function",
                    "effect": "pure",
                    "fn": "wf_functions:inc",
                    "args": {"x": 41},
                },
            },
        ],
    }

    async def go() -> Any:
        from aobc.runtime.commands import decide

        task = asyncio.create_task(engine.start(ir, {}))
        while not any(e.type == "ticket.opened" for e in harness.seen):
            await asyncio.sleep(0)
        run_id = harness.seen[0].run_id
        propose(stores, run_id, human, "dana")
        while not any(e.type in ("patch.applied", "patch.refused") for e in harness.seen):
            await asyncio.sleep(0)
        ticket = next(e for e in harness.seen if e.type == "ticket.opened").data["ticket"]
        decide(stores, ticket, "approve", "dana", "ok")
        return await task

    result = asyncio.run(go())
    assert result.status == "succeeded"
    assert result.outputs["extra"] == {"value": 42}
    (applied,) = harness.events(result.run_id, "patch.applied")
    assert (applied["author_kind"], applied["author"]) == ("human", "dana")


def test_http_nodes_against_a_real_local_server(harness: Harness) -> None:
    with HttpServer() as srv:
        srv.route("/items", Reply(200, body={"items": [1, 2, 3]}))
        srv.route("/flaky", sequence(Reply(503), Reply(200, body={"ok": True})))
        srv.route("/echo", echo)
        base = srv.url("/").rstrip("/")
        text = f"""
        workflow http_wf {{
          output got = get.body.items
          output posted = post.status
          output flaky = flaky.body
          get = http GET "{base}/items" {{ effect: idempotent }}
          flaky = http GET "{base}/flaky" {{ effect: idempotent, retry: {{ max_attempts: 3, backoff: 1ms }} }}
          post = http POST "{base}/echo" {{ effect: effectful, body: {{ n: get.body.items[0] }} }}
          get -> post
        }}
        """
        host = base.split("//", 1)[1]
        policy = Policy.from_json({"ssrf": {"allow_hosts": [host]}})
        result = harness.run(text, policy=policy)
        assert result.status == "succeeded", result.error
        assert result.outputs == {"got": [1, 2, 3], "posted": 200, "flaky": {"ok": True}}
        (post,) = srv.received("/echo")
        assert json.loads(post.body) == {"n": 1}
        assert post.headers.get("idempotency-key")
        assert len(srv.received("/flaky")) == 2


def test_the_ssrf_guard_holds_at_run_time(harness: Harness) -> None:
    with HttpServer() as srv:
        srv.route("/x", Reply(200, {}, "ok"))
        # The URL is computed at run time, so only the runtime guard can refuse it.
        text = """
        workflow guard {
          input base: str
          get = http GET "${inputs.base}/x" { effect: idempotent }
        }
        """
        result = harness.run(text, {"base": srv.url("/").rstrip("/")})
        assert result.status == "failed"
        assert "loopback" in (result.error or "")
        assert srv.received("/x") == []


@pytest.mark.parametrize("patch", [False, True])
def test_may_patch_only_gives_the_document_when_allowed(harness: Harness, patch: bool) -> None:
    answer = {"output": {"label": "y"}, "patch": None} if patch else {"label": "y"}
    with FakeOpenAI([Answer(answer)], api_key="sk-test") as llm:
        harness.run(agent_wf(patch=patch), providers=config_for(openai=llm))
    body = json.dumps(llm.requests[0].body)
    assert ("nodes" in body) == patch  # the workflow document, quoted inside the prompt


def test_a_batch_sends_its_requests_and_outputs_their_responses_in_order(harness: Harness) -> None:
    with HttpServer() as srv:
        srv.route("/a", Reply(200, body={"n": 1}))
        srv.route("/b", Reply(200, body={"n": 2}))
        base = srv.url("/").rstrip("/")
        text = f"""
        workflow batch_wf {{
          output ns = [both[0].body.n, both[1].body.n]
          both = http BATCH "{base}" {{
            effect: idempotent
            requests: [{{ method: "GET", url: "{base}/a" }}, {{ method: "GET", url: "{base}/b" }}]
          }}
        }}
        """
        policy = Policy.from_json({"ssrf": {"allow_hosts": [base.split("//", 1)[1]]}})
        result = harness.run(text, policy=policy)
        assert result.status == "succeeded", result.error
        assert result.outputs == {"ns": [1, 2]}
        assert len(srv.received("/a")) == len(srv.received("/b")) == 1
