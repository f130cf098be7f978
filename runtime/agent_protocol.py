"""The agent-runner protocol: the `agent.jobs` and `agent.results` messages (version 1).

An agent node under the coordinator is not called from the cluster: its job goes out on
`agent.jobs` and a runner, wherever it runs, answers on `agent.results`
(docs/agent-runner-protocol.md is the full description, for runners in any language). This
module holds what both sides share: the topic names, the version, the checks of each
message's shape, and the conversions between messages and the provider types.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

from aobc.runtime.providers.base import AgentAnswer, AgentRequest, ProviderError, ToolSpec
from aobc.runtime.providers.tools import ToolRegistry

AGENT_JOBS: Final = "agent.jobs"
AGENT_RESULTS: Final = "agent.results"
VERSION: Final = 1
JOB_TYPE: Final = "agent.job"
RESULT_TYPE: Final = "agent.result"

#: What a job must hold (the rest may be absent or null).
JOB_FIELDS: Final = ("run", "node", "attempt", "key", "deadline", "provider", "model", "prompt")
#: Error kinds a runner may answer with: the providers' own, plus the protocol's.
ERROR_KINDS: Final = frozenset(
    {"http", "protocol", "schema", "tool", "config", "timeout", "runner"}
)


class BadMessage(ValueError):
    """A message on an agent topic that does not follow this protocol."""


def check_job(job: Any) -> None:
    """Raise BadMessage unless `job` has the shape of an `agent.jobs` message."""
    if not isinstance(job, Mapping):
        raise BadMessage("an agent job is a JSON object")
    if job.get("v") != VERSION:
        raise BadMessage(f"unknown agent job version {job.get('v')!r} (this runner speaks 1)")
    missing = [name for name in JOB_FIELDS if job.get(name) is None]
    if missing:
        raise BadMessage(f"an agent job needs {', '.join(missing)}")
    if not isinstance(job["deadline"], int | float) or isinstance(job["deadline"], bool):
        raise BadMessage("'deadline' is epoch seconds")
    if not isinstance(job.get("tools", []), list):
        raise BadMessage("'tools' is a list")


def check_result(result: Any) -> None:
    """Raise BadMessage unless `result` has the shape of an `agent.results` message."""
    if not isinstance(result, Mapping):
        raise BadMessage("an agent result is a JSON object")
    if result.get("v") != VERSION:
        raise BadMessage(f"unknown agent result version {result.get('v')!r}")
    for name in ("run", "node", "key", "attempt", "ok"):
        if name not in result:
            raise BadMessage(f"an agent result needs {name!r}")
    if result["ok"] is True:
        if "output" not in result:
            raise BadMessage("an answer (ok: true) needs 'output'")
    elif result["ok"] is False:
        if not isinstance(result.get("error"), str):
            raise BadMessage("an error (ok: false) needs 'error', a string")
    else:
        raise BadMessage("'ok' is true or false")


def request_of(job: Mapping[str, Any], tools: ToolRegistry) -> AgentRequest:
    """The provider request a job asks for. The runner's own registry runs the tools, so its
    specs win over the job's (a coordinator may not know a tool's schema); an unknown tool is a
    config error, answered as such."""
    specs: list[ToolSpec] = []
    for entry in job.get("tools") or ():
        name = entry.get("name") if isinstance(entry, Mapping) else entry
        if not isinstance(name, str):
            raise ProviderError("config", "a tool in the job has no name")
        specs.append(tools.spec(name))
    budget = job.get("budget") or {}
    remaining = float(job["deadline"]) - time.time()
    limit = budget.get("timeout_s")
    per_call = min(remaining, float(limit)) if isinstance(limit, int | float) else remaining
    return AgentRequest(
        node_id=str(job["node"]),
        model=str(job["model"]),
        prompt=str(job["prompt"]),
        system=None if job.get("system") is None else str(job["system"]),
        tools=tuple(specs),
        output_schema=job.get("output_schema"),
        may_patch=bool(job.get("may_patch")),
        workflow=job.get("workflow") if job.get("may_patch") else None,
        max_tokens=budget.get("max_tokens"),
        temperature=job.get("temperature"),
        idempotency_key=str(job["key"]),
        timeout_s=max(per_call, 0.001),
    )


def _head(job: Mapping[str, Any], runner: str) -> dict[str, Any]:
    return {
        "v": VERSION,
        "type": RESULT_TYPE,
        "run": job["run"],
        "node": job["node"],
        "item": job.get("item"),
        "attempt": job["attempt"],
        "key": job["key"],
        "runner": runner,
        "answered": time.time(),
    }


def answer_message(job: Mapping[str, Any], answer: AgentAnswer, runner: str) -> dict[str, Any]:
    """The `agent.results` message for a valid answer."""
    return {
        **_head(job, runner),
        "ok": True,
        "output": answer.output,
        "patch": answer.patch,
        "usage": dict(answer.usage),
        "model": answer.model,
        "rounds": answer.rounds,
    }


def error_message(job: Mapping[str, Any], kind: str, error: str, runner: str) -> dict[str, Any]:
    """The `agent.results` message for a job that could not be answered."""
    return {**_head(job, runner), "ok": False, "kind": kind, "error": error}
