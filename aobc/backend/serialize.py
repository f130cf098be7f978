"""IR to the canonical workflow document: the form that patches address and hashes cover.

The inverse of `aobc.frontend.schema`: `load_document(to_document(wf)) == wf` for every valid
workflow. Fields at their default are left out, so documents stay what an author would write;
`effect` is always written, because every rewrite's legality depends on it. Key order here is
for people (id, type, effect first); `canonical_bytes` sorts keys for hashing.
"""

from __future__ import annotations

from typing import Any

from aobc.canonical import canonical_bytes, content_hash
from aobc.ir import (
    NO_RETRY,
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    FunctionNode,
    HttpNode,
    JoinMode,
    JoinNode,
    MapNode,
    Node,
    OnTimeout,
    Priority,
    RetryPolicy,
    TimerNode,
    Workflow,
    format_duration,
    thaw,
)


def retry_document(r: RetryPolicy) -> dict[str, Any] | int:
    """`retries: N` when only the attempt count differs from the default, else the object."""
    default = NO_RETRY
    if (r.backoff_ms, r.max_backoff_ms, r.multiplier) == (
        default.backoff_ms,
        default.max_backoff_ms,
        default.multiplier,
    ):
        return r.max_attempts - 1
    out: dict[str, Any] = {"max_attempts": r.max_attempts}
    if r.backoff_ms != default.backoff_ms:
        out["backoff"] = format_duration(r.backoff_ms)
    if r.max_backoff_ms != default.max_backoff_ms:
        out["max_backoff"] = format_duration(r.max_backoff_ms)
    if r.multiplier != default.multiplier:
        out["multiplier"] = r.multiplier
    return out


def _kind_fields(n: Node, out: dict[str, Any]) -> None:  # noqa: C901 - one arm per kind
    if isinstance(n, HttpNode):
        out["method"] = n.method
        out["url"] = n.url
        if n.headers:
            out["headers"] = dict(n.headers)
        if n.body is not None:
            out["body"] = thaw(n.body)
        if n.batchable:
            out["batchable"] = True
        if n.auth is not None:
            out["auth"] = n.auth
        if n.requests is not None:
            out["requests"] = [thaw(r) for r in n.requests]
        if n.filter is not None:
            out["filter"] = dict(n.filter)
    elif isinstance(n, FunctionNode):
        out["fn"] = n.fn
        if n.args is not None:
            out["args"] = thaw(n.args)
    elif isinstance(n, MapNode):
        out["over"] = n.over
        out["body"] = node_document(n.body, with_id=False)
        if n.concurrency != 8:
            out["concurrency"] = n.concurrency
    elif isinstance(n, JoinNode):
        if n.mode is not JoinMode.ALL:
            out["mode"] = n.mode.value
        if n.n is not None:
            out["n"] = n.n
    elif isinstance(n, ConditionNode):
        out["expr"] = n.expr
    elif isinstance(n, CompositeNode):
        out["workflow"] = to_document(n.workflow)
        if n.args is not None:
            out["args"] = thaw(n.args)
    elif isinstance(n, AgentNode):
        _agent_fields(n, out)
    elif isinstance(n, ApprovalNode):
        out["approvers"] = list(n.approvers)
        if n.escalate:
            out["escalate"] = list(n.escalate)
        if n.on_timeout is not OnTimeout.REJECT:
            out["on_timeout"] = n.on_timeout.value
        if n.message is not None:
            out["message"] = n.message
    elif isinstance(n, TimerNode):
        if n.duration_ms is not None:
            out["duration"] = format_duration(n.duration_ms)
        if n.until is not None:
            out["until"] = n.until


def _agent_fields(n: AgentNode, out: dict[str, Any]) -> None:
    out["model"] = n.model
    out["prompt"] = n.prompt
    if n.provider != "openai":
        out["provider"] = n.provider
    if n.system is not None:
        out["system"] = n.system
    if n.tools:
        out["tools"] = list(n.tools)
    if n.output_schema is not None:
        out["output_schema"] = thaw(n.output_schema)
    if n.may_patch:
        out["may_patch"] = True
    if n.spawn_budget:
        out["spawn_budget"] = n.spawn_budget
    if n.max_tokens is not None:
        out["max_tokens"] = n.max_tokens
    if n.temperature is not None:
        out["temperature"] = n.temperature


def node_document(n: Node, *, with_id: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if with_id:
        out["id"] = n.id
    out["type"] = n.KIND.value
    out["effect"] = n.effect.value
    _kind_fields(n, out)
    if n.priority is not Priority.MEDIUM:
        out["priority"] = n.priority.value
    if n.timeout_ms is not None:
        out["timeout"] = format_duration(n.timeout_ms)
    if n.retry != NO_RETRY:
        retry = retry_document(n.retry)
        out["retries" if isinstance(retry, int) else "retry"] = retry
    if n.cost_ms is not None:
        out["cost"] = format_duration(n.cost_ms)
    if n.cache is not None:
        out["cache"] = thaw(n.cache)
    return out


def edge_document(e: Edge) -> dict[str, Any]:
    out: dict[str, Any] = {"from": e.src, "to": e.dst}
    if e.label is not None:
        out["label"] = e.label
    if e.when is not None:
        out["when"] = e.when
    return out


def to_document(wf: Workflow) -> dict[str, Any]:
    """The canonical document of a workflow."""
    out: dict[str, Any] = {"name": wf.name}
    if wf.namespace != "default":
        out["namespace"] = wf.namespace
    if wf.description is not None:
        out["description"] = wf.description
    if wf.inputs:
        inputs: dict[str, Any] = {}
        for d in wf.inputs:
            spec: dict[str, Any] = {"type": d.type.value}
            if not d.required:
                spec["default"] = thaw(d.default)
            inputs[d.name] = spec
        out["inputs"] = inputs
    if wf.outputs:
        out["outputs"] = {d.name: d.expr for d in wf.outputs}
    out["nodes"] = [node_document(n) for n in wf.nodes]
    out["edges"] = [edge_document(e) for e in wf.edges]
    return out


def workflow_bytes(wf: Workflow) -> bytes:
    return canonical_bytes(to_document(wf))


def workflow_hash(wf: Workflow) -> str:
    """The content hash that names a workflow version."""
    return content_hash(to_document(wf))
