"""Anthropic Messages API: structured output through a forced `answer` tool.

The Messages API has no JSON-schema response format, so the answer schema becomes the input
schema of a tool named `answer`, and `tool_choice` makes the model call some tool on every turn
(`any` while the node has tools of its own, else `answer` by name). Calls to the node's tools
run and go back as `tool_result` blocks; the `answer` call's input is the structured answer.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Final

import httpx

from aobc.runtime.providers.answer import AnswerChecker, user_prompt
from aobc.runtime.providers.base import AgentAnswer, AgentRequest, ProviderError
from aobc.runtime.providers.loop import MAX_ROUNDS, Reply, ToolCall, check_tools, converse
from aobc.runtime.providers.tools import ToolRegistry
from aobc.runtime.providers.transport import RetryPolicy, Sleep, Transport

DEFAULT_BASE_URL: Final = "https://api.anthropic.com"
API_KEY_ENV: Final = "ANTHROPIC_API_KEY"
API_VERSION: Final = "2023-06-01"
DEFAULT_MAX_TOKENS: Final = 1024  # the API requires max_tokens
ANSWER_TOOL: Final = "answer"


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _protocol(message: str) -> ProviderError:
    return ProviderError("protocol", f"anthropic: {message}")


class _Messages:
    """One Messages transcript."""

    def __init__(
        self, provider: AnthropicProvider, req: AgentRequest, schema: dict[str, Any]
    ) -> None:
        self.provider = provider
        self.req = req
        self.messages: list[dict[str, Any]] = [{"role": "user", "content": user_prompt(req)}]
        self.last_uses: list[dict[str, Any]] = []  # the last reply's tool_use blocks
        tools: list[dict[str, Any]] = [
            {"name": spec.name, "description": spec.description, "input_schema": spec.parameters}
            for spec in req.tools
        ]
        tools.append(
            {
                "name": ANSWER_TOOL,
                "description": "Give your final answer: call this once, when you are done, "
                "with your answer as its input.",
                "input_schema": schema,
            }
        )
        self.fixed: dict[str, Any] = {
            "model": req.model,
            "max_tokens": req.max_tokens if req.max_tokens is not None else DEFAULT_MAX_TOKENS,
            "tools": tools,
            "tool_choice": {"type": "any"} if req.tools else {"type": "tool", "name": ANSWER_TOOL},
        }
        if req.system:
            self.fixed["system"] = req.system
        if req.temperature is not None:
            self.fixed["temperature"] = req.temperature

    async def ask(self) -> Reply:
        body = await self.provider.transport.post(
            f"{self.provider.base_url}/v1/messages",
            {**self.fixed, "messages": self.messages},
            headers=self.provider.headers(self.req),
            timeout_s=self.req.timeout_s,
        )
        content = body.get("content")
        if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
            raise _protocol("the response has no content blocks")
        usage = body.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        input_tokens, output_tokens = (
            _int(usage.get("input_tokens")),
            _int(usage.get("output_tokens")),
        )
        reply = Reply(
            model=str(body.get("model") or self.req.model),
            usage={
                "input_tokens": input_tokens,
                "output_tokens": output_tokens,
                "total_tokens": input_tokens + output_tokens,
            },
        )
        self.messages.append({"role": "assistant", "content": content})
        self.last_uses = [b for b in content if b.get("type") == "tool_use"]
        for block in self.last_uses:
            if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
                raise _protocol("a tool_use block has no id or name")
            if block["name"] == ANSWER_TOOL:
                # The answer wins over tools called beside it: the model says it is done.
                reply.answered = True
                reply.answer = block.get("input")
            else:
                reply.tool_calls.append(ToolCall(block["id"], block["name"], block.get("input")))
        if not reply.answered and not reply.tool_calls:
            reply.answered = True
            reply.problem = (
                "the answer was cut off at the token limit"
                if body.get("stop_reason") == "max_tokens"
                else f"you did not call the {ANSWER_TOOL!r} tool; give your answer by calling it"
            )
        return reply

    def add_tool_results(self, reply: Reply, results: list[tuple[ToolCall, str]]) -> None:
        self.messages.append(
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": result}
                    for call, result in results
                ],
            }
        )

    def add_correction(self, reply: Reply, message: str) -> None:
        # Every tool_use must be answered by a tool_result in the very next message.
        blocks: list[dict[str, Any]] = [
            {
                "type": "tool_result",
                "tool_use_id": use["id"],
                "is_error": True,
                "content": message
                if use["name"] == ANSWER_TOOL
                else "not run: you answered in the same turn",
            }
            for use in self.last_uses
        ]
        if not blocks:
            blocks.append({"type": "text", "text": message})
        self.messages.append({"role": "user", "content": blocks})


class AnthropicProvider:
    """Agents on Anthropic's Messages API."""

    def __init__(
        self,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        client: httpx.AsyncClient | None = None,
        *,
        tools: ToolRegistry | None = None,
        api_key_env: str = API_KEY_ENV,
        sleep: Sleep = asyncio.sleep,
        retry: RetryPolicy | None = None,
        max_rounds: int = MAX_ROUNDS,
    ) -> None:
        key = api_key if api_key is not None else os.environ.get(api_key_env)
        if not key:
            raise ProviderError("config", f"anthropic: no API key (set {api_key_env})")
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.tools = tools if tools is not None else ToolRegistry()
        self.max_rounds = max_rounds
        self.transport = Transport(
            "anthropic", secret=key, client=client, sleep=sleep, policy=retry
        )

    def __repr__(self) -> str:  # never the key
        return f"AnthropicProvider(base_url={self.base_url!r})"

    def headers(self, req: AgentRequest) -> dict[str, str]:
        headers = {"x-api-key": self._key, "anthropic-version": API_VERSION}
        if req.idempotency_key:
            headers["Idempotency-Key"] = req.idempotency_key
        return headers

    async def complete(self, req: AgentRequest) -> AgentAnswer:
        check_tools(req, self.tools)
        if any(spec.name == ANSWER_TOOL for spec in req.tools):
            raise ProviderError(
                "config", f"anthropic: a tool may not be named {ANSWER_TOOL!r}: the answer uses it"
            )
        checker = AnswerChecker(req)
        messages = _Messages(self, req, checker.schema)
        return await converse(
            "anthropic", req, messages, checker, self.tools, max_rounds=self.max_rounds
        )
