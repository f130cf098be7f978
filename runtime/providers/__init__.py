"""Model providers for agent nodes: OpenAI-compatible, Anthropic, and scripted.

    config = ProviderConfig.from_env(tools=ToolRegistry.load({"search": "ops.tools:search"}))
    answer = await provider_for(node.provider, config).complete(request)

`from_env` reads `AOBC_OPENAI_BASE_URL`, `AOBC_ANTHROPIC_BASE_URL`, `AOBC_AGENT_SCRIPT` and the
API keys (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, or other variables named in the config);
keyword arguments override them. A config hands out one provider per name, so a scripted
provider's answers are consumed in order across calls.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from aobc.runtime.providers import anthropic, openai
from aobc.runtime.providers.answer import PATCH_SCHEMA, AnswerChecker, answer_schema
from aobc.runtime.providers.anthropic import AnthropicProvider
from aobc.runtime.providers.base import (
    AgentAnswer,
    AgentRequest,
    ErrorKind,
    Provider,
    ProviderError,
    ToolSpec,
)
from aobc.runtime.providers.openai import OpenAIProvider
from aobc.runtime.providers.scripted import ScriptedProvider
from aobc.runtime.providers.tools import ToolRegistry
from aobc.runtime.providers.transport import RetryPolicy, Sleep

__all__ = [
    "PATCH_SCHEMA",
    "AgentAnswer",
    "AgentRequest",
    "AnswerChecker",
    "AnthropicProvider",
    "ErrorKind",
    "OpenAIProvider",
    "Provider",
    "ProviderConfig",
    "ProviderError",
    "RetryPolicy",
    "ScriptedProvider",
    "ToolRegistry",
    "ToolSpec",
    "answer_schema",
    "provider_for",
]

PROVIDERS = ("openai", "anthropic", "scripted")


@dataclass(frozen=True, slots=True, kw_only=True)
class ProviderConfig:
    """Where the providers are and how they authenticate. Keys never show in its repr."""

    openai_base_url: str = openai.DEFAULT_BASE_URL
    anthropic_base_url: str = anthropic.DEFAULT_BASE_URL
    openai_api_key: str | None = field(default=None, repr=False)
    anthropic_api_key: str | None = field(default=None, repr=False)
    openai_api_key_env: str = openai.API_KEY_ENV
    anthropic_api_key_env: str = anthropic.API_KEY_ENV
    script_path: str | None = None  # a JSON script for the scripted provider
    script: Mapping[str, Sequence[Any]] | None = None  # or the script itself
    tools: ToolRegistry = field(default_factory=ToolRegistry)
    client: httpx.AsyncClient | None = None  # shared by the HTTP providers when given
    sleep: Sleep | None = None  # between retries; asyncio.sleep when None
    retry: RetryPolicy | None = None
    cache: dict[str, Provider] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> ProviderConfig:
        """A config from the environment (`os.environ` unless `env`), then `overrides`."""
        env = os.environ if env is None else env
        base = cls(**{k: v for k, v in overrides.items() if k.endswith("_api_key_env")})
        found: dict[str, Any] = {
            "openai_api_key": env.get(base.openai_api_key_env),
            "anthropic_api_key": env.get(base.anthropic_api_key_env),
        }
        if "AOBC_OPENAI_BASE_URL" in env:
            found["openai_base_url"] = env["AOBC_OPENAI_BASE_URL"]
        if "AOBC_ANTHROPIC_BASE_URL" in env:
            found["anthropic_base_url"] = env["AOBC_ANTHROPIC_BASE_URL"]
        if env.get("AOBC_AGENT_SCRIPT"):
            found["script_path"] = env["AOBC_AGENT_SCRIPT"]
        return dataclasses.replace(base, **{**found, **overrides})

    def with_script(self, path: str | Path) -> ProviderConfig:
        """This config with the scripted provider reading `path` (replacing any inline script)."""
        return dataclasses.replace(self, script_path=str(path), script=None, cache={})

    def with_tools(self, tools: ToolRegistry) -> ProviderConfig:
        """This config with another tool registry."""
        return dataclasses.replace(self, tools=tools, cache={})


def _make(name: str, config: ProviderConfig) -> Provider:
    extra: dict[str, Any] = {"tools": config.tools, "retry": config.retry}
    if config.sleep is not None:
        extra["sleep"] = config.sleep
    if name == "openai":
        return OpenAIProvider(
            config.openai_base_url,
            config.openai_api_key,
            config.client,
            api_key_env=config.openai_api_key_env,
            **extra,
        )
    if name == "anthropic":
        return AnthropicProvider(
            config.anthropic_base_url,
            config.anthropic_api_key,
            config.client,
            api_key_env=config.anthropic_api_key_env,
            **extra,
        )
    if name == "scripted":
        if config.script is not None:
            return ScriptedProvider(config.script)
        if config.script_path:
            return ScriptedProvider.from_file(config.script_path)
        raise ProviderError("config", "scripted: no script (set AOBC_AGENT_SCRIPT)")
    raise ProviderError("config", f"unknown provider {name!r} (one of {', '.join(PROVIDERS)})")


def provider_for(name: str, config: ProviderConfig) -> Provider:
    """The provider called `name` ("openai" | "anthropic" | "scripted"), one per config."""
    provider = config.cache.get(name)
    if provider is None:
        provider = config.cache[name] = _make(name, config)
    return provider
