"""The conversation every HTTP provider runs: tool rounds, one schema repair, then the answer.

Providers differ only in how a transcript is sent and read, so each implements `Conversation`
(ask the model; append tool results; append a correction) and `converse` drives it the same
way for all: run the tools the model calls, check its answer, give it one chance to repair an
answer that does not match the schema, and stop after `max_rounds` model calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from aobc.runtime.providers.answer import REPAIR_PREFIX, AnswerChecker
from aobc.runtime.providers.base import AgentAnswer, AgentRequest, ProviderError
from aobc.runtime.providers.tools import ToolRegistry

MAX_ROUNDS = 8


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: Any  # parsed JSON


@dataclass(slots=True, kw_only=True)
class Reply:
    """One model turn, read out of its protocol."""

    model: str
    usage: dict[str, int]
    tool_calls: list[ToolCall] = field(default_factory=list)
    answered: bool = False  # the model gave its final answer (maybe an invalid one)
    answer: Any = None
    problem: str | None = None  # why the answer is unusable before any schema check


class Conversation(Protocol):
    async def ask(self) -> Reply:
        """Send the transcript so far; the model's reply (kept in the transcript)."""
        ...

    def add_tool_results(self, reply: Reply, results: list[tuple[ToolCall, str]]) -> None:
        """Answer the reply's tool calls with their JSON results."""
        ...

    def add_correction(self, reply: Reply, message: str) -> None:
        """Tell the model its reply was not an acceptable answer."""
        ...


def _add_usage(total: dict[str, int], usage: dict[str, int]) -> None:
    for key, value in usage.items():
        total[key] = total.get(key, 0) + value


def check_tools(req: AgentRequest, tools: ToolRegistry) -> None:
    """Every tool the request offers must be runnable, or nothing is sent."""
    missing = [spec.name for spec in req.tools if spec.name not in tools]
    if missing:
        known = ", ".join(tools.names()) or "none"
        raise ProviderError(
            "config",
            f"node {req.node_id!r} uses unknown tool(s) {', '.join(missing)} (registered: {known})",
        )


async def converse(
    name: str,
    req: AgentRequest,
    conversation: Conversation,
    checker: AnswerChecker,
    tools: ToolRegistry,
    *,
    max_rounds: int = MAX_ROUNDS,
) -> AgentAnswer:
    """Drive `conversation` to a valid answer."""
    offered = {spec.name for spec in req.tools}
    usage: dict[str, int] = {"input_tokens": 0, "output_tokens": 0, "total_tokens": 0}
    repaired = False
    for rounds in range(1, max_rounds + 1):
        reply = await conversation.ask()
        _add_usage(usage, reply.usage)
        if not reply.answered and reply.tool_calls:
            results = []
            for call in reply.tool_calls:
                if call.name not in offered:
                    raise ProviderError(
                        "tool",
                        f"{name}: the model called tool {call.name!r}, which node "
                        f"{req.node_id!r} does not offer",
                    )
                results.append((call, await tools.call(call.name, call.arguments)))
            conversation.add_tool_results(reply, results)
            continue
        problem = reply.problem if reply.problem is not None else checker.problem(reply.answer)
        if problem is None:
            output, patch = checker.split(reply.answer)
            return AgentAnswer(
                output=output, patch=patch, usage=usage, model=reply.model, rounds=rounds
            )
        if repaired:
            raise ProviderError(
                "schema",
                f"{name}: node {req.node_id!r}: the answer did not match the schema after one "
                f"repair: {problem}",
            )
        repaired = True
        conversation.add_correction(reply, REPAIR_PREFIX + problem)
    raise ProviderError(
        "tool", f"{name}: node {req.node_id!r}: no answer after {max_rounds} model calls"
    )
