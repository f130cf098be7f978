"""Agent providers end to end: the real clients against local fake OpenAI and Anthropic servers."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from aobc.ir import freeze
from aobc.runtime.providers import (
    PATCH_SCHEMA,
    AgentAnswer,
    AgentRequest,
    AnthropicProvider,
    OpenAIProvider,
    Provider,
    ProviderConfig,
    ProviderError,
    RetryPolicy,
    ScriptedProvider,
    ToolRegistry,
    ToolSpec,
    answer_schema,
    provider_for,
)
from aobc.testing.fakellm import (
    Answer,
    Call,
    FakeAnthropic,
    FakeOpenAI,
    Raw,
    Recorded,
    Status,
    Text,
)

pytestmark = pytest.mark.integration

KEY = "sk-test-SECRET-5f1c2a9e7d"

OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "severity": {"enum": ["low", "high"]},
        "summary": {"type": "string"},
    },
    "required": ["severity", "summary"],
    "additionalProperties": False,
}

GOOD = {"severity": "high", "summary": "disk full on db-1"}
BAD = {"severity": "apocalyptic"}

WORKFLOW = {"name": "incident", "nodes": [{"id": "triage", "kind": "agent"}], "edges": []}

PATCH = {
    "operations": [
        {"op": "add", "path": "/nodes/-", "value": {"id": "page_oncall", "kind": "http"}},
        {"op": "add", "path": "/edges/-", "value": {"from": "triage", "to": "page_oncall"}},
    ],
    "reason": "high severity needs a human",
}

REQUEST = AgentRequest(
    node_id="triage",
    model="test-model",
    prompt="Classify this incident: disk full on db-1",
    system="You triage incidents.",
    output_schema=OUTPUT_SCHEMA,
    max_tokens=300,
    temperature=0.0,
    timeout_s=10.0,
)

SEARCH_SPEC = ToolSpec(
    "search_logs",
    "Search the logs.",
    {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


# --- helpers ----------------------------------------------------------------------------


def run(provider: Provider, req: AgentRequest = REQUEST) -> AgentAnswer:
    return asyncio.run(provider.complete(req))


def failure(provider: Provider, req: AgentRequest = REQUEST) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(provider, req)
    return info.value


class Sleeps:
    """An injected sleep that records the delays it was asked for and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


@dataclass
class Tools:
    registry: ToolRegistry
    calls: list[tuple[str, dict[str, Any]]]


@pytest.fixture
def tools() -> Tools:
    calls: list[tuple[str, dict[str, Any]]] = []

    def search_logs(args: dict[str, Any]) -> dict[str, Any]:
        """Search the logs."""
        calls.append(("search_logs", args))
        return {"hits": [{"host": "db-1", "line": "No space left on device"}]}

    async def count_errors(args: dict[str, Any]) -> int:
        """Count error lines."""
        calls.append(("count_errors", args))
        return 42

    def broken(args: dict[str, Any]) -> None:
        raise RuntimeError("index unavailable")

    registry = ToolRegistry()
    registry.register("search_logs", search_logs, parameters=SEARCH_SPEC.parameters)
    registry.register("count_errors", count_errors)
    registry.register("broken", broken)
    return Tools(registry, calls)


@dataclass(frozen=True)
class Flavor:
    """One HTTP protocol: its fake server and its provider."""

    name: str
    fake: Callable[..., FakeOpenAI | FakeAnthropic]
    provider: Callable[..., OpenAIProvider | AnthropicProvider]

    def make(
        self, fake: FakeOpenAI | FakeAnthropic, *, api_key: str = KEY, **kw: Any
    ) -> OpenAIProvider | AnthropicProvider:
        return self.provider(fake.url, api_key, **kw)


OPENAI = Flavor("openai", FakeOpenAI, OpenAIProvider)
ANTHROPIC = Flavor("anthropic", FakeAnthropic, AnthropicProvider)


@pytest.fixture(params=[OPENAI, ANTHROPIC], ids=lambda f: f.name)
def flavor(request: pytest.FixtureRequest) -> Flavor:
    flavor: Flavor = request.param
    return flavor


def last_message(recorded: Recorded) -> dict[str, Any]:
    message: dict[str, Any] = recorded.body["messages"][-1]
    return message


# --- the answer schema ------------------------------------------------------------------


def test_answer_schema_without_patch_is_the_output_schema() -> None:
    assert answer_schema(REQUEST) == OUTPUT_SCHEMA
    assert answer_schema(replace(REQUEST, output_schema=None)) == {"type": "object"}


def test_answer_schema_accepts_frozen_output_schemas() -> None:
    frozen = replace(REQUEST, output_schema=freeze(OUTPUT_SCHEMA))
    assert answer_schema(frozen) == OUTPUT_SCHEMA


def test_answer_schema_with_patch() -> None:
    schema = answer_schema(replace(REQUEST, may_patch=True, workflow=WORKFLOW))
    assert schema == {
        "type": "object",
        "properties": {
            "output": OUTPUT_SCHEMA,
            "patch": {"anyOf": [{"type": "null"}, PATCH_SCHEMA]},
        },
        "required": ["output", "patch"],
        "additionalProperties": False,
    }
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"output": GOOD, "patch": None})
    assert validator.is_valid({"output": GOOD, "patch": PATCH})
    op: dict[str, Any]
    for op in (
        {"op": "remove", "path": "/nodes/0"},
        {"op": "move", "from": "/nodes/0", "path": "/nodes/1"},
        {"op": "replace", "path": "/nodes/0/prompt", "value": "x"},
        {"op": "test", "path": "/name", "value": "incident"},
        {"op": "add", "path": "/a~1b~0c", "value": None},
    ):
        assert validator.is_valid({"output": GOOD, "patch": {"operations": [op], "reason": "r"}})
    for op in (
        {"op": "add", "path": "/nodes/-"},  # no value
        {"op": "move", "path": "/nodes/1"},  # no from
        {"op": "add", "path": "nodes", "value": 1},  # not a pointer
        {"op": "add", "path": "/a~2", "value": 1},  # bad escape
        {"op": "delete", "path": "/nodes/0"},  # no such op
        {"op": "remove", "path": "/x", "value": 1},  # stray member
    ):
        assert not validator.is_valid(
            {"output": GOOD, "patch": {"operations": [op], "reason": "r"}}
        )
    assert not validator.is_valid({"output": GOOD})  # patch is required, null when none
    assert not validator.is_valid({"output": GOOD, "patch": {"operations": [], "reason": "r"}})
    assert not validator.is_valid({"output": GOOD, "patch": {"operations": PATCH["operations"]}})


def test_answer_schema_wraps_non_object_outputs_and_hoists_defs() -> None:
    schema = answer_schema(
        replace(
            REQUEST,
            output_schema={
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "type": "array",
                "items": {"$ref": "#/$defs/host"},
                "$defs": {"host": {"type": "string"}},
            },
        )
    )
    assert schema == {
        "type": "object",
        "$defs": {"host": {"type": "string"}},
        "properties": {"output": {"type": "array", "items": {"$ref": "#/$defs/host"}}},
        "required": ["output"],
        "additionalProperties": False,
    }
    validator = Draft202012Validator(schema)
    assert validator.is_valid({"output": ["db-1"]})
    assert not validator.is_valid({"output": [1]})


def test_invalid_output_schema_is_a_config_error() -> None:
    provider = ScriptedProvider({"*": [GOOD]})
    error = failure(provider, replace(REQUEST, output_schema={"type": "no-such-type"}))
    assert error.kind == "config"


# --- each HTTP provider end to end ----------------------------------------------------


def test_plain_structured_output(flavor: Flavor) -> None:
    with flavor.fake([Answer(GOOD)]) as fake:
        answer = run(flavor.make(fake))
    assert answer.output == GOOD
    assert answer.patch is None
    assert answer.rounds == 1
    assert answer.model == "test-model"
    assert answer.usage["input_tokens"] > 0
    assert answer.usage["output_tokens"] > 0
    assert (
        answer.usage["total_tokens"] == answer.usage["input_tokens"] + answer.usage["output_tokens"]
    )
    [sent] = fake.requests
    assert sent.body["model"] == "test-model"
    assert sent.body["max_tokens"] == 300
    assert sent.body["temperature"] == 0.0
    if flavor is OPENAI:
        assert sent.path == "/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert sent.body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": OUTPUT_SCHEMA, "strict": False},
        }
        assert "tools" not in sent.body
        assert sent.body["messages"] == [
            {"role": "system", "content": REQUEST.system},
            {"role": "user", "content": REQUEST.prompt},
        ]
    else:
        assert sent.path == "/v1/messages"
        assert sent.headers["x-api-key"] == KEY
        assert sent.headers["anthropic-version"] == "2023-06-01"
        assert sent.body["system"] == REQUEST.system
        assert sent.body["messages"] == [{"role": "user", "content": REQUEST.prompt}]
        [answer_tool] = sent.body["tools"]
        assert answer_tool["name"] == "answer"
        assert answer_tool["input_schema"] == OUTPUT_SCHEMA
        assert sent.body["tool_choice"] == {"type": "tool", "name": "answer"}


def test_optional_fields_are_left_out(flavor: Flavor) -> None:
    req = replace(REQUEST, system=None, max_tokens=None, temperature=None, output_schema=None)
    with flavor.fake([Answer({"anything": [1, 2]})]) as fake:
        answer = run(flavor.make(fake), req)
    assert answer.output == {"anything": [1, 2]}
    [sent] = fake.requests
    assert "temperature" not in sent.body
    assert "system" not in sent.body
    if flavor is OPENAI:
        assert "max_tokens" not in sent.body
        assert [m["role"] for m in sent.body["messages"]] == ["user"]
    else:
        assert sent.body["max_tokens"] == 1024  # required by the Messages API


def test_output_with_a_patch(flavor: Flavor) -> None:
    req = replace(REQUEST, may_patch=True, workflow=WORKFLOW, idempotency_key="run-7:triage:1")
    with flavor.fake([Answer({"output": GOOD, "patch": PATCH})]) as fake:
        answer = run(flavor.make(fake), req)
    assert answer.output == GOOD
    assert answer.patch == PATCH
    [sent] = fake.requests
    assert sent.headers["idempotency-key"] == "run-7:triage:1"
    prompt = sent.body["messages"][-1]["content"]
    assert prompt.startswith(REQUEST.prompt)
    assert json.dumps(WORKFLOW, sort_keys=True) in prompt
    schema = (
        sent.body["response_format"]["json_schema"]["schema"]
        if flavor is OPENAI
        else sent.body["tools"][-1]["input_schema"]
    )
    assert schema == answer_schema(req)


def test_patching_node_may_answer_without_patch(flavor: Flavor) -> None:
    req = replace(REQUEST, may_patch=True, workflow=WORKFLOW)
    with flavor.fake([Answer({"output": GOOD, "patch": None})]) as fake:
        answer = run(flavor.make(fake), req)
    assert (answer.output, answer.patch) == (GOOD, None)


def test_tool_call_loop(flavor: Flavor, tools: Tools) -> None:
    count_spec = tools.registry.specs(["count_errors"])[0]
    req = replace(REQUEST, tools=(SEARCH_SPEC, count_spec))
    script = [
        [Call("search_logs", {"query": "disk"}), Call("count_errors", {"host": "db-1"})],
        Answer(GOOD),
    ]
    with flavor.fake(script) as fake:
        answer = run(flavor.make(fake, tools=tools.registry), req)
    assert answer.output == GOOD
    assert answer.rounds == 2
    assert tools.calls == [("search_logs", {"query": "disk"}), ("count_errors", {"host": "db-1"})]
    first, second = fake.requests
    hits = json.dumps({"hits": [{"host": "db-1", "line": "No space left on device"}]})
    if flavor is OPENAI:
        assert first.body["tools"] == [
            {
                "type": "function",
                "function": {
                    "name": "search_logs",
                    "description": "Search the logs.",
                    "parameters": SEARCH_SPEC.parameters,
                },
            },
            {
                "type": "function",
                "function": {
                    "name": "count_errors",
                    "description": "Count error lines.",
                    "parameters": {"type": "object"},
                },
            },
        ]
        assistant, search_result, count_result = second.body["messages"][-3:]
        ids = [call["id"] for call in assistant["tool_calls"]]
        assert assistant["role"] == "assistant"
        assert search_result == {"role": "tool", "tool_call_id": ids[0], "content": hits}
        assert count_result == {"role": "tool", "tool_call_id": ids[1], "content": "42"}
    else:
        assert [t["name"] for t in first.body["tools"]] == ["search_logs", "count_errors", "answer"]
        assert first.body["tools"][0]["input_schema"] == SEARCH_SPEC.parameters
        assert first.body["tool_choice"] == {"type": "any"}
        assistant, results = second.body["messages"][-2:]
        ids = [block["id"] for block in assistant["content"]]
        assert results == {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": ids[0], "content": hits},
                {"type": "tool_result", "tool_use_id": ids[1], "content": "42"},
            ],
        }


def test_usage_is_summed_over_rounds(flavor: Flavor, tools: Tools) -> None:
    req = replace(REQUEST, tools=(SEARCH_SPEC,))
    with flavor.fake([Call("search_logs", {"query": "disk"}), Answer(GOOD)]) as fake:
        answer = run(flavor.make(fake, tools=tools.registry), req)
    with flavor.fake([Answer(GOOD)]) as single:
        one = run(flavor.make(single))
    assert answer.usage["input_tokens"] > one.usage["input_tokens"]
    assert answer.usage["output_tokens"] > one.usage["output_tokens"]


def test_schema_violation_then_repair(flavor: Flavor) -> None:
    with flavor.fake([Answer(BAD), Answer(GOOD)]) as fake:
        answer = run(flavor.make(fake))
    assert answer.output == GOOD
    assert answer.rounds == 2
    correction = last_message(fake.requests[1])
    assert correction["role"] == "user"
    if flavor is OPENAI:
        assert correction["content"].startswith("your answer did not match the schema: ")
        assert fake.requests[1].body["messages"][-2]["content"] == json.dumps(BAD)
    else:
        [result] = correction["content"]
        assert result["type"] == "tool_result"
        assert result["is_error"] is True
        assert result["content"].startswith("your answer did not match the schema: ")


def test_schema_violation_twice_is_an_error(flavor: Flavor) -> None:
    with flavor.fake([Answer(BAD), Answer({"severity": "low"})]) as fake:
        error = failure(flavor.make(fake))
    assert error.kind == "schema"
    assert "'summary' is a required property" in str(error)
    assert len(fake.requests) == 2


def test_openai_text_that_is_not_json_is_repaired() -> None:
    with FakeOpenAI([Text("Sure! The severity is high."), Answer(GOOD)]) as fake:
        answer = run(OPENAI.make(fake))
    assert answer.output == GOOD
    assert "not valid JSON" in last_message(fake.requests[1])["content"]


def test_openai_fenced_json_is_accepted() -> None:
    with FakeOpenAI([Text("```json\n" + json.dumps(GOOD) + "\n```")]) as fake:
        assert run(OPENAI.make(fake)).output == GOOD


def test_anthropic_text_without_answer_tool_is_repaired() -> None:
    with FakeAnthropic([Text("The severity is high."), Answer(GOOD)]) as fake:
        answer = run(ANTHROPIC.make(fake))
    assert answer.output == GOOD
    [block] = last_message(fake.requests[1])["content"]
    assert block["type"] == "text"
    assert "did not call the 'answer' tool" in block["text"]


def test_retry_after_429_then_success(flavor: Flavor) -> None:
    sleeps = Sleeps()
    with flavor.fake([Status(429, "slow down", retry_after=7), Answer(GOOD)]) as fake:
        answer = run(flavor.make(fake, sleep=sleeps))
    assert answer.output == GOOD
    assert sleeps.delays == [7.0]
    assert len(fake.requests) == 2
    assert answer.rounds == 1  # a retried request is still one model call


def test_server_errors_are_retried_with_backoff(flavor: Flavor) -> None:
    sleeps = Sleeps()
    policy = RetryPolicy(retries=3, backoff_s=1.0)
    with flavor.fake([Status(500), Status(503), Answer(GOOD)]) as fake:
        answer = run(flavor.make(fake, sleep=sleeps, retry=policy))
    assert answer.output == GOOD
    assert len(sleeps.delays) == 2
    assert 0.5 <= sleeps.delays[0] <= 1.0
    assert 1.0 <= sleeps.delays[1] <= 2.0


def test_retries_run_out(flavor: Flavor) -> None:
    sleeps = Sleeps()
    with flavor.fake([Status(500, "boom"), Status(500, "boom again")]) as fake:
        error = failure(flavor.make(fake, sleep=sleeps, retry=RetryPolicy(retries=1)))
    assert error.kind == "http"
    assert "HTTP 500" in str(error)
    assert "boom again" in str(error)
    assert len(sleeps.delays) == 1


def test_retry_after_too_long_fails_at_once(flavor: Flavor) -> None:
    sleeps = Sleeps()
    with flavor.fake([Status(429, "quota", retry_after=3600)]) as fake:
        error = failure(flavor.make(fake, sleep=sleeps))
    assert error.kind == "http"
    assert "3600" in str(error)
    assert sleeps.delays == []


def test_client_errors_are_not_retried(flavor: Flavor) -> None:
    sleeps = Sleeps()
    with flavor.fake([Status(400, "model not found")]) as fake:
        error = failure(flavor.make(fake, sleep=sleeps))
    assert error.kind == "http"
    assert "HTTP 400" in str(error)
    assert "model not found" in str(error)
    assert sleeps.delays == []


def test_unreachable_server_is_an_http_error(flavor: Flavor) -> None:
    # A port bound but not listening refuses connections, and stays ours while the test runs.
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        sleeps = Sleeps()
        url = f"http://127.0.0.1:{held.getsockname()[1]}"
        provider = flavor.provider(url, KEY, sleep=sleeps, retry=RetryPolicy(retries=1))
        error = failure(provider)
    assert error.kind == "http"
    assert "ConnectError" in str(error)
    assert len(sleeps.delays) == 1


def test_malformed_response_is_a_protocol_error(flavor: Flavor) -> None:
    with flavor.fake([Raw({"id": "x", "object": "nonsense"})]) as fake:
        error = failure(flavor.make(fake))
    assert error.kind == "protocol"


def test_missing_api_key_is_a_config_error(flavor: Flavor, monkeypatch: pytest.MonkeyPatch) -> None:
    env = "OPENAI_API_KEY" if flavor is OPENAI else "ANTHROPIC_API_KEY"
    monkeypatch.delenv(env, raising=False)
    with pytest.raises(ProviderError) as info:
        flavor.provider("http://127.0.0.1:9")
    assert info.value.kind == "config"
    assert env in str(info.value)


def test_api_key_from_environment(flavor: Flavor, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY" if flavor is OPENAI else "ANTHROPIC_API_KEY", KEY)
    with flavor.fake([Answer(GOOD)], api_key=KEY) as fake:
        assert run(flavor.provider(fake.url)).output == GOOD


def test_unknown_tool_is_a_config_error(flavor: Flavor, tools: Tools) -> None:
    req = replace(REQUEST, tools=(ToolSpec("page_the_ceo", "Wake the CEO."),))
    with flavor.fake([Answer(GOOD)]) as fake:
        error = failure(flavor.make(fake, tools=tools.registry), req)
    assert error.kind == "config"
    assert "page_the_ceo" in str(error)
    assert fake.requests == []  # found before anything was sent


def test_failing_tool_is_a_tool_error(flavor: Flavor, tools: Tools) -> None:
    req = replace(REQUEST, tools=tools.registry.specs(["broken"]))
    with flavor.fake([Call("broken", {}), Answer(GOOD)]) as fake:
        error = failure(flavor.make(fake, tools=tools.registry), req)
    assert error.kind == "tool"
    assert "index unavailable" in str(error)


def test_tool_the_node_does_not_offer_is_a_tool_error(flavor: Flavor, tools: Tools) -> None:
    req = replace(REQUEST, tools=(SEARCH_SPEC,))
    with flavor.fake([Call("count_errors", {}), Answer(GOOD)]) as fake:
        error = failure(flavor.make(fake, tools=tools.registry), req)
    assert error.kind == "tool"
    assert "count_errors" in str(error)
    assert tools.calls == []


def test_tool_arguments_are_checked(flavor: Flavor, tools: Tools) -> None:
    req = replace(REQUEST, tools=(SEARCH_SPEC,))
    with flavor.fake([Call("search_logs", {"q": "disk"}), Answer(GOOD)]) as fake:
        error = failure(flavor.make(fake, tools=tools.registry), req)
    assert error.kind == "tool"
    assert "'query' is a required property" in str(error)


def test_tool_loop_stops_after_max_rounds(flavor: Flavor, tools: Tools) -> None:
    req = replace(REQUEST, tools=(SEARCH_SPEC,))
    with flavor.fake([Call("search_logs", {"query": str(i)}) for i in range(8)]) as fake:
        error = failure(flavor.make(fake, tools=tools.registry), req)
    assert error.kind == "tool"
    assert "8 model calls" in str(error)
    assert len(fake.requests) == 8


def test_anthropic_rejects_a_tool_named_answer() -> None:
    registry = ToolRegistry()
    registry.register("answer", lambda args: None)
    req = replace(REQUEST, tools=registry.specs(["answer"]))
    with FakeAnthropic([Answer(GOOD)]) as fake:
        error = failure(ANTHROPIC.make(fake, tools=registry), req)
    assert error.kind == "config"


def test_api_key_never_appears_in_errors(flavor: Flavor) -> None:
    # The fake echoes a wrong key whole in its 401, as some servers do.
    with flavor.fake([Answer(GOOD)], api_key="the-right-key") as fake:
        provider = flavor.make(fake)
        error = failure(provider)
    assert error.kind == "http"
    assert "HTTP 401" in str(error)
    assert "[redacted]" in str(error)
    for text in (str(error), repr(error), error.message, repr(provider)):
        assert KEY not in text

    def echo_everything(request: Recorded) -> Status:
        return Status(500, f"upstream saw headers {request.headers}")

    sleeps = Sleeps()
    with flavor.fake(handler=echo_everything) as fake:
        error = failure(flavor.make(fake, sleep=sleeps, retry=RetryPolicy(retries=1)))
    assert error.kind == "http"
    assert KEY not in str(error)


# --- the fakes themselves -----------------------------------------------------------------


def test_fakes_refuse_what_real_servers_refuse(flavor: Flavor) -> None:
    path = "/v1/chat/completions" if flavor is OPENAI else "/v1/messages"
    with flavor.fake([Answer(GOOD)]) as fake, httpx.Client(trust_env=False) as client:
        base = f"http://127.0.0.1:{fake.port}"
        no_auth = client.post(base + path, json={"model": "m", "messages": []})
        assert no_auth.status_code == 401
        auth = {"Authorization": "Bearer k", "x-api-key": "k", "anthropic-version": "2023-06-01"}
        no_messages = client.post(base + path, json={"model": "m"}, headers=auth)
        assert no_messages.status_code == 400
        assert client.post(base + "/elsewhere", json={}, headers=auth).status_code == 404
        # A tool result must answer a tool call.
        if flavor is OPENAI:
            messages: list[dict[str, Any]] = [
                {"role": "user", "content": "hi"},
                {"role": "tool", "tool_call_id": "call_1", "content": "{}"},
            ]
        else:
            messages = [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "toolu_1", "name": "t", "input": {}}],
                },
                {"role": "user", "content": "never mind"},
            ]
        body = {"model": "m", "max_tokens": 5, "messages": messages}
        assert client.post(base + path, json=body, headers=auth).status_code == 400
        assert len(fake.requests) == 4
        assert fake.requests[0].body == {"model": "m", "messages": []}


def test_fake_scripts_per_model(flavor: Flavor) -> None:
    script = {"big-model": [Answer(GOOD)], "*": [Answer({"severity": "low", "summary": "ok"})]}
    with flavor.fake(script) as fake:
        big = run(flavor.make(fake), replace(REQUEST, model="big-model"))
        other = run(flavor.make(fake), replace(REQUEST, model="small-model"))
        error = failure(flavor.make(fake), replace(REQUEST, model="small-model"))
    assert big.output == GOOD
    assert other.output["severity"] == "low"
    assert "no scripted response left" in str(error)


# --- the scripted provider -----------------------------------------------------------------


def test_scripted_answers_in_order_per_node() -> None:
    provider = ScriptedProvider(
        {
            "triage": [GOOD, {"severity": "low", "summary": "second"}],
            "*": [{"severity": "low", "summary": "fallback"}],
        }
    )
    first = run(provider)
    second = run(provider)
    third = run(provider)  # the node's own list is used up: "*" answers
    assert first == AgentAnswer(
        output=GOOD,
        patch=None,
        usage={"input_tokens": 0, "output_tokens": 0, "total_tokens": 0},
        model="test-model",
        rounds=1,
    )
    assert second.output["summary"] == "second"
    assert third.output["summary"] == "fallback"
    error = failure(provider)
    assert error.kind == "config"
    assert "no answer left for node 'triage'" in str(error)


def test_scripted_patch_and_echo() -> None:
    req = replace(REQUEST, may_patch=True, workflow=WORKFLOW, output_schema=None)
    provider = ScriptedProvider(
        {
            "*": [
                {
                    "output": {"seen": {"$echo": "prompt"}, "node": {"$echo": "node_id"}},
                    "patch": PATCH,
                }
            ]
        }
    )
    answer = run(provider, req)
    assert answer.output == {"seen": REQUEST.prompt, "node": "triage"}
    assert answer.patch == PATCH


def test_scripted_answers_are_validated() -> None:
    provider = ScriptedProvider({"triage": [{"severity": "apocalyptic", "summary": "x"}]})
    error = failure(provider)
    assert error.kind == "schema"
    assert "'apocalyptic' is not one of" in str(error)
    patching = ScriptedProvider({"*": [{"output": GOOD, "patch": {"operations": [{"op": "add"}]}}]})
    error = failure(patching, replace(REQUEST, may_patch=True, workflow=WORKFLOW))
    assert error.kind == "schema"


def test_scripted_from_file_through_provider_for(tmp_path: Path) -> None:
    path = tmp_path / "script.json"
    path.write_text(json.dumps({"triage": [GOOD, {"severity": "low", "summary": "again"}]}))
    config = ProviderConfig.from_env({"AOBC_AGENT_SCRIPT": str(path)})
    assert run(provider_for("scripted", config)).output == GOOD
    # One provider per config: the script goes on where it was.
    assert run(provider_for("scripted", config)).output["summary"] == "again"


def test_scripted_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ProviderError) as info:
        ScriptedProvider.from_file(tmp_path / "missing.json")
    assert info.value.kind == "config"
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ProviderError) as info:
        ScriptedProvider.from_file(tmp_path / "list.json")
    assert info.value.kind == "config"
    with pytest.raises(ProviderError) as info:
        provider_for("scripted", ProviderConfig.from_env({}))
    assert info.value.kind == "config"
    with pytest.raises(ProviderError) as info:
        run(ScriptedProvider({"*": [{"output": {"$echo": "workflow"}}]}))
    assert info.value.kind == "config"


# --- configuration --------------------------------------------------------------------------


def test_provider_for_reads_the_environment(flavor: Flavor) -> None:
    with flavor.fake([Answer(GOOD)]) as fake:
        env = {
            "AOBC_OPENAI_BASE_URL": fake.url,
            "AOBC_ANTHROPIC_BASE_URL": fake.url,
            "OPENAI_API_KEY": KEY,
            "ANTHROPIC_API_KEY": KEY,
        }
        config = ProviderConfig.from_env(env)
        assert KEY not in repr(config)
        assert run(provider_for(flavor.name, config)).output == GOOD


def test_provider_config_overrides_and_key_env_names() -> None:
    config = ProviderConfig.from_env(
        {"MY_KEY": "k1", "AOBC_OPENAI_BASE_URL": "http://env"},
        openai_api_key_env="MY_KEY",
        openai_base_url="http://override",
    )
    assert config.openai_api_key == "k1"
    assert config.openai_base_url == "http://override"
    assert config.anthropic_base_url == "https://api.anthropic.com"


def test_unknown_provider_is_a_config_error() -> None:
    with pytest.raises(ProviderError) as info:
        provider_for("gemini", ProviderConfig())
    assert info.value.kind == "config"


def test_missing_key_through_provider_for() -> None:
    with pytest.raises(ProviderError) as info:
        provider_for("anthropic", ProviderConfig.from_env({}, anthropic_api_key_env="NO_SUCH_VAR"))
    assert info.value.kind == "config"
    assert "NO_SUCH_VAR" in str(info.value)


def test_tool_registry_loading() -> None:
    registry = ToolRegistry.load(
        {
            "dump": "json:dumps",
            "hosts": {
                "fn": "os.path:basename",
                "description": "Base name.",
                "parameters": {"type": "object"},
            },
        }
    )
    assert registry.names() == ["dump", "hosts"]
    [dump] = registry.specs(["dump"])
    assert dump.description.startswith("Serialize")
    assert asyncio.run(registry.call("dump", {"a": 1})) == json.dumps('{"a": 1}')
    bad: dict[str, Any]
    for bad in ({"x": "no_such_module_xyz:fn"}, {"x": "json:no_such_fn"}, {"x": "json"}, {"x": {}}):
        with pytest.raises(ProviderError) as info:
            ToolRegistry.load(bad)
        assert info.value.kind == "config"
    with pytest.raises(ProviderError) as info:
        registry.specs(["dump", "nope"])
    assert info.value.kind == "config"
    with pytest.raises(ProviderError) as info:
        registry.register("bad", len, parameters={"type": 5})
    assert info.value.kind == "config"


@pytest.fixture(autouse=True)
def _no_real_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests never reach a real API, whatever the developer's shell holds.
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "AOBC_AGENT_SCRIPT"):
        monkeypatch.delenv(name, raising=False)
