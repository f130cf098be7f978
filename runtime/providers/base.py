"""What every model provider takes and gives: `AgentRequest` in, `AgentAnswer` out.

A provider turns one agent node's call into a structured answer. The engine renders the
prompt, picks the tools and, for a node that `may_patch`, hands over the current workflow
document; the provider talks to its model (or its script), runs the tool-call loop, checks the
answer against `answer_schema` and splits it into the output and the proposed patch.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, Protocol, runtime_checkable

DEFAULT_TIMEOUT_S: Final = 600.0  # as the official SDKs: long answers take minutes

ErrorKind = Literal["http", "protocol", "schema", "tool", "config"]


class ProviderError(Exception):
    """An agent call that could not produce a valid answer.

    `kind` says whose fault it is: `http` (the API failed or kept refusing), `protocol` (the
    API answered with something that is not its protocol), `schema` (the model's answer did not
    match the answer schema, even after one repair), `tool` (a tool failed or the loop did not
    end), `config` (missing key, unknown tool or provider, unreadable script).
    Messages never hold an API key.
    """

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind
        self.message = message

    def __str__(self) -> str:
        return f"{self.kind} error: {self.message}"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the model sees it: a name, what it does, and a JSON Schema for its arguments."""

    name: str
    description: str
    parameters: dict[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRequest:
    """One agent node's call, already rendered by the engine."""

    node_id: str
    model: str
    prompt: str
    system: str | None = None
    tools: tuple[ToolSpec, ...] = ()
    output_schema: Mapping[str, Any] | None = None  # plain or frozen (`FrozenDict`)
    may_patch: bool = False
    workflow: dict[str, Any] | None = None  # the current workflow document; only with may_patch
    max_tokens: int | None = None
    temperature: float | None = None
    idempotency_key: str | None = None
    timeout_s: float | None = None  # per HTTP request to the model; None: DEFAULT_TIMEOUT_S


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentAnswer:
    """A validated answer. `patch` is `{"operations": [...], "reason": str}` or None."""

    output: Any
    patch: dict[str, Any] | None
    usage: dict[str, int]  # input_tokens, output_tokens, total_tokens over all rounds
    model: str  # the model that answered, as the API named it
    rounds: int  # model calls made, tool rounds and the repair included


@runtime_checkable
class Provider(Protocol):
    """Anything that can answer an agent request."""

    async def complete(self, req: AgentRequest) -> AgentAnswer: ...
