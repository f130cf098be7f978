"""OpenAI-compatible Chat Completions: structured output through `response_format`.

`POST {base_url}/chat/completions` with the answer schema as a JSON-schema response format
(`strict: false`, since strict mode rejects ordinary schemas: optional properties, `oneOf`...),
the node's tools as function tools, and a tool-call loop: while the reply has `tool_calls`, the
tools run and their results go back as `tool` messages. The final reply's `content` is the
answer, as JSON text.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any, Final

import httpx

from aobc.runtime.providers.answer import AnswerChecker, parse_json, user_prompt
from aobc.runtime.providers.base import AgentAnswer, AgentRequest, ProviderError
from aobc.runtime.providers.loop import MAX_ROUNDS, Reply, ToolCall, check_tools, converse
from aobc.runtime.providers.tools import ToolRegistry
from aobc.runtime.providers.transport import RetryPolicy, Sleep, Transport

DEFAULT_BASE_URL: Final = "https://api.openai.com/v1"
API_KEY_ENV: Final = "OPENAI_API_KEY"


def _int(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _protocol(message: str) -> ProviderError:
    return ProviderError("protocol", f"openai: {message}")


class _Chat:
    """One Chat Completions transcript."""

    def __init__(self, provider: OpenAIProvider, req: AgentRequest, schema: dict[str, Any]) -> None:
        self.provider = provider
        self.req = req
        self.messages: list[dict[str, Any]] = []
        if req.system:
            self.messages.append({"role": "system", "content": req.system})
        self.messages.append({"role": "user", "content": user_prompt(req)})
        self.fixed: dict[str, Any] = {
            "model": req.model,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "answer", "schema": schema, "strict": False},
            },
        }
        if req.tools:
            self.fixed["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": spec.name,
                        "description": spec.description,
                        "parameters": spec.parameters,
                    },
                }
                for spec in req.tools
            ]
        if req.max_tokens is not None:
            self.fixed["max_tokens"] = req.max_tokens
        if req.temperature is not None:
            self.fixed["temperature"] = req.temperature

    async def ask(self) -> Reply:
        body = await self.provider.transport.post(
            f"{self.provider.base_url}/chat/completions",
            {**self.fixed, "messages": self.messages},
            headers=self.provider.headers(self.req),
            timeout_s=self.req.timeout_s,
        )
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            raise _protocol("the response has no choices")
        message = choices[0].get("message")
        if not isinstance(message, dict):
            raise _protocol("the response's first choice has no message")
        if message.get("refusal"):
            raise _protocol(f"the model refused: {str(message['refusal'])[:500]}")
        usage = body.get("usage")
        if not isinstance(usage, dict):
            usage = {}
        reply = Reply(
            model=str(body.get("model") or self.req.model),
            usage={
                "input_tokens": _int(usage.get("prompt_tokens")),
                "output_tokens": _int(usage.get("completion_tokens")),
                "total_tokens": _int(usage.get("total_tokens")),
            },
        )
        raw_calls = message.get("tool_calls") or []
        kept: dict[str, Any] = {"role": "assistant", "content": message.get("content")}
        if raw_calls:
            kept["tool_calls"] = raw_calls
            reply.tool_calls = [self._call(raw) for raw in raw_calls]
        self.messages.append(kept)
        if not reply.tool_calls:
            reply.answered = True
            reply.answer, reply.problem = parse_json(message.get("content"))
            if reply.problem is not None and choices[0].get("finish_reason") == "length":
                reply.problem = "the answer was cut off at the token limit"
        return reply

    def _call(self, raw: Any) -> ToolCall:
        function = raw.get("function") if isinstance(raw, dict) else None
        if not isinstance(function, dict) or not isinstance(raw.get("id"), str):
            raise _protocol("a tool call has no id or function")
        name = str(function.get("name"))
        try:
            arguments = json.loads(function.get("arguments") or "{}")
        except (TypeError, ValueError):
            raise ProviderError(
                "tool", f"openai: the arguments of a call to tool {name!r} are not JSON"
            ) from None
        return ToolCall(raw["id"], name, arguments)

    def add_tool_results(self, reply: Reply, results: list[tuple[ToolCall, str]]) -> None:
        for call, result in results:
            self.messages.append({"role": "tool", "tool_call_id": call.id, "content": result})

    def add_correction(self, reply: Reply, message: str) -> None:
        self.messages.append({"role": "user", "content": message})


class OpenAIProvider:
    """Agents on OpenAI, or on any server speaking its Chat Completions API."""

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
            raise ProviderError("config", f"openai: no API key (set {api_key_env})")
        self.base_url = base_url.rstrip("/")
        self._key = key
        self.tools = tools if tools is not None else ToolRegistry()
        self.max_rounds = max_rounds
        self.transport = Transport("openai", secret=key, client=client, sleep=sleep, policy=retry)

    def __repr__(self) -> str:  # never the key
        return f"OpenAIProvider(base_url={self.base_url!r})"

    def headers(self, req: AgentRequest) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self._key}"}
        if req.idempotency_key:
            headers["Idempotency-Key"] = req.idempotency_key
        return headers

    async def complete(self, req: AgentRequest) -> AgentAnswer:
        check_tools(req, self.tools)
        checker = AnswerChecker(req)
        chat = _Chat(self, req, checker.schema)
        return await converse("openai", req, chat, checker, self.tools, max_rounds=self.max_rounds)
