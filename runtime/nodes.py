"""Executing the nodes that run as tasks: functions, HTTP, agents, maps and sub-workflows.

Each kind takes the node's canonical config and the expression environment, so the same code
runs a top-level node and a map's body for one item. Timers and approvals are not here: they
wait on the clock and on people, durably (see `waits.py`); joins and conditions are
computed by the driver itself.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aobc.ir import RetryPolicy, parse_duration
from aobc.runtime.driver import NodeFailure, idempotency_key
from aobc.runtime.env import RunEnv, evaluate, render
from aobc.runtime.executors.function import FunctionError, NodeContext, call
from aobc.runtime.values import check_json

if TYPE_CHECKING:
    from aobc.runtime.driver import RunDriver
    from aobc.runtime.engine import Engine


@dataclass(frozen=True, slots=True)
class AgentOutcome:
    """An agent's answer: its output, and the patch it proposes (or None)."""

    output: Any
    patch: dict[str, Any] | None


def retry_policy(cfg: Mapping[str, Any]) -> RetryPolicy:
    """The retry policy written in a node's canonical config (`retries` or `retry`)."""
    if "retries" in cfg:
        return RetryPolicy(max_attempts=int(cfg["retries"]) + 1)
    spec = cfg.get("retry")
    if not isinstance(spec, Mapping):
        return RetryPolicy()

    def ms(key: str, default: int) -> int:
        value = spec.get(key)
        parsed = parse_duration(value) if isinstance(value, str) else None
        return parsed if parsed is not None else default

    return RetryPolicy(
        max_attempts=int(spec.get("max_attempts", 1)),
        backoff_ms=ms("backoff", 1000),
        max_backoff_ms=ms("max_backoff", 30_000),
        multiplier=float(spec.get("multiplier", 2.0)),
    )


def backoff_s(policy: RetryPolicy, attempt: int) -> float:
    """Full-jitter exponential backoff before attempt `attempt + 1`."""
    cap = min(policy.max_backoff_ms, policy.backoff_ms * policy.multiplier ** (attempt - 1))
    return random.uniform(0, cap) / 1000.0


def timeout_s(cfg: Mapping[str, Any]) -> float | None:
    value = cfg.get("timeout")
    ms = parse_duration(value) if isinstance(value, str) else None
    return ms / 1000.0 if ms is not None else None


class NodeExecutors:
    #: True for an executor whose effects all leave through the event log's own
    #: transactions (runtime/remote.py: jobs in the Postgres outbox): the driver may then
    #: append a node's start and an effect's completion with the loop's next batch instead
    #: of at once, because no effect can begin before that batch commits.
    batches_writes: bool = False
    #: True for an executor that also runs the nodes of sub-workflow runs (their engines use
    #: it instead of their own): a coordinator's, which sends their jobs to workers.
    serves_children: bool = False

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def starting(self, d: RunDriver, i: int, attempt: int) -> None:
        """Called when node i's `node.started` is queued, before it is appended: a remote
        executor queues the node's job to be written in the same transaction."""

    async def execute(self, d: RunDriver, i: int) -> Any:
        node = d.ir.nodes[i]
        cfg = d.configs[i]
        sub = d.ir.subs[node.sub] if node.sub >= 0 else None
        return await self.run_spec(d, node.id, cfg, d.env, None, sub)

    async def run_spec(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        sub: Any = None,
    ) -> Any:
        kind = cfg["type"]
        key = idempotency_key(d.state.run_id, node_id, item)
        coro: Awaitable[Any]
        if kind == "function":
            coro = self.function(d, node_id, cfg, env, key, item)
        elif kind == "http":
            coro = self.http(cfg, env, key)
        elif kind == "agent":
            coro = self.agent(d, node_id, cfg, env, key)
        elif kind == "map":
            coro = self.map(d, node_id, cfg, env)
        elif kind == "composite":
            coro = self.composite(d, node_id, cfg, env, item, sub)
        elif kind == "timer":
            coro = self.sleep(cfg, env)
        else:
            raise NodeFailure(f"a {kind} node cannot run here")
        # HTTP bounds each attempt itself; maps and sub-workflows bound their parts.
        limit = timeout_s(cfg) if kind not in ("http", "map", "composite") else None
        if limit is None:
            return await coro
        try:
            return await asyncio.wait_for(coro, limit)
        except TimeoutError:
            raise NodeFailure(f"timed out after {cfg['timeout']}", "timeout") from None

    # --- kinds ---------------------------------------------------------------------------

    async def function(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        key: str,
        item: int | None,
    ) -> Any:
        try:
            fn = self.engine.functions.resolve(cfg["fn"])
        except FunctionError as err:
            raise NodeFailure(str(err), err.kind) from None
        args = cfg.get("args")
        if args is not None:
            inputs = render(args, env)
        elif item is not None:
            inputs = {"item": env["item"]}
        else:
            inputs = d.join_output(d.index[node_id])
        policy = retry_policy(cfg)
        for attempt in range(1, policy.max_attempts + 1):
            ctx = NodeContext(d.state.run_id, node_id, key, attempt, item)
            try:
                value = await call(fn, inputs, ctx)
                check_json(value)
                return value
            except asyncio.CancelledError:
                raise
            except Exception as err:  # the function's failure is the node's, not ours
                if attempt == policy.max_attempts:
                    raise NodeFailure(f"{type(err).__name__}: {err}", "function") from None
                d.emit("node.failed", d.failure_data(node_id, err, attempt, final=False))
                await asyncio.sleep(backoff_s(policy, attempt))
        raise AssertionError("unreachable")  # pragma: no cover

    async def http(self, cfg: Mapping[str, Any], env: RunEnv, key: str) -> Any:
        if cfg["method"] == "BATCH":
            # A coalesced batch: its requests go out together; its output is their responses,
            # in order, so each former node's consumers read their element.
            parts = [
                self._one_request({**cfg, **req}, env, f"{key}/{i}")
                for i, req in enumerate(cfg["requests"])
            ]
            return list(await asyncio.gather(*parts))
        return await self._one_request(cfg, env, key)

    async def _one_request(self, cfg: Mapping[str, Any], env: RunEnv, key: str) -> Any:
        from aobc.runtime.executors.http import HttpError, HttpRequest

        limit = timeout_s(cfg)
        req = HttpRequest(
            method=cfg["method"],
            url=str(render(cfg["url"], env)),
            headers={k: str(v) for k, v in render(cfg.get("headers", {}), env).items()},
            body=render(cfg.get("body"), env),
            timeout_ms=int(limit * 1000) if limit is not None else None,
            auth=cfg.get("auth"),
        )
        try:
            response = await self.engine.http().request(
                req, retry=retry_policy(cfg), idempotency_key=key, effect=cfg["effect"]
            )
        except HttpError as err:
            raise NodeFailure(str(err), f"http-{err.kind}") from None
        return response.to_output()

    async def agent(
        self, d: RunDriver, node_id: str, cfg: Mapping[str, Any], env: RunEnv, key: str
    ) -> AgentOutcome:
        from aobc.runtime.providers.base import AgentRequest, ProviderError

        may_patch = bool(cfg.get("may_patch"))
        limit = timeout_s(cfg)
        req = AgentRequest(
            node_id=node_id,
            model=cfg["model"],
            prompt=str(render(cfg["prompt"], env)),
            system=str(render(cfg["system"], env)) if cfg.get("system") is not None else None,
            tools=self.engine.tool_specs(cfg.get("tools", [])),
            output_schema=cfg.get("output_schema"),
            may_patch=may_patch,
            workflow=self.engine.live.document(d) if may_patch else None,
            max_tokens=cfg.get("max_tokens"),
            temperature=cfg.get("temperature"),
            idempotency_key=key,
            timeout_s=limit,
        )
        try:
            answer = await self.engine.provider(cfg.get("provider", "openai")).complete(req)
        except ProviderError as err:
            raise NodeFailure(str(err), f"agent-{err.kind}") from None
        check_json(answer.output)
        return AgentOutcome(answer.output, answer.patch if may_patch else None)

    async def map(
        self, d: RunDriver, node_id: str, cfg: Mapping[str, Any], env: RunEnv
    ) -> list[Any]:
        items = evaluate(cfg["over"], env)
        if not isinstance(items, list):
            raise NodeFailure(
                f'map "{node_id}" must iterate over a list, got {type(items).__name__}', "map"
            )
        body: Mapping[str, Any] = cfg["body"]
        done = d.state.map_items.get(node_id, {})
        results: list[Any] = [None] * len(items)
        gate = asyncio.Semaphore(int(cfg.get("concurrency", 8)))
        log_items = d.full or body.get("effect") != "pure"

        async def one(index: int, item: Any) -> None:
            if index in done:
                results[index] = self.engine.values.get(done[index])
                return
            async with gate:
                value = await self.run_spec(d, node_id, body, env.with_item(item), index, None)
            if isinstance(value, AgentOutcome):
                value = value.output  # a map body's agent may not patch the run
            results[index] = value
            if log_items:
                d.emit(
                    "map.item",
                    {"node": node_id, "index": index, "output": self.engine.values.put(value)},
                )
                if body.get("effect") != "pure":
                    d.flush()

        await asyncio.gather(*(one(k, it) for k, it in enumerate(items)))
        return results

    async def composite(
        self,
        d: RunDriver,
        node_id: str,
        cfg: Mapping[str, Any],
        env: RunEnv,
        item: int | None,
        sub: Any,
    ) -> Any:
        if sub is None:
            sub = self.engine.compile_document(cfg["workflow"])
        inputs = render(cfg.get("args") or {}, env)
        child_id = f"{d.state.run_id}/{node_id}" + (f"[{item}]" if item is not None else "")
        result = await self.engine.run_child(d, child_id, sub, inputs)
        if result.status != "succeeded":
            raise NodeFailure(
                f"sub-workflow run {child_id} {result.status}: {result.error or ''}".strip(),
                "composite",
            )
        return result.outputs

    async def sleep(self, cfg: Mapping[str, Any], env: RunEnv) -> Any:
        """A timer inside a map body: a plain sleep (top-level timers are durable)."""
        ms = parse_duration(cfg["duration"]) if "duration" in cfg else None
        if ms is None:
            raise NodeFailure("a timer in a map body needs a duration", "timer")
        await asyncio.sleep(ms / 1000)
        return {"slept_ms": ms}
