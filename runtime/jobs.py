"""`JobRunner`: runs one node job (runtime/remote.py's message) and makes its result message.

Shared by the places that execute jobs: a `Worker` (jobs from Kafka) and a coordinator's eager
slots (runtime/eager.py: jobs it runs itself). The node runs with the embedded executors'
pieces: function resolution and calling, the retry policy and its backoff, the HTTP client
with its SSRF guard and idempotency key. Recording the result is the caller's business.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from aobc.backend.aobir import decode
from aobc.runtime.driver import NodeFailure
from aobc.runtime.engine import Engine
from aobc.runtime.execir import ExecIR
from aobc.runtime.executors.function import FunctionError, NodeContext, call, call_sync
from aobc.runtime.nodes import backoff_s, retry_policy, timeout_s
from aobc.runtime.remote import JOB_VERSION
from aobc.runtime.stores.base import CAS, Cache
from aobc.runtime.stores.redis import IR
from aobc.runtime.values import check_json

_decode = msgspec.json.Decoder().decode


class BadJob(ValueError):
    """A message on a job topic that is not a job this process understands."""


def check_job(job: Mapping[str, Any]) -> None:
    if job.get("v") != JOB_VERSION:
        raise BadJob(f"unknown job version {job.get('v')!r}")
    for name in ("run", "node", "key", "ir", "index", "deadline"):
        if name not in job:
            raise BadJob(f"a job needs {name!r}")
    if "inputs" not in job and "inputs_ref" not in job:
        raise BadJob("a job needs 'inputs' or 'inputs_ref'")


class JobRunner:
    """Runs jobs for one process: `engine` gives the functions, the HTTP client and the
    policy; IRs come by digest from memory, then `cache`, then `cas`."""

    def __init__(self, engine: Engine, cas: CAS, cache: Cache | None, name: str) -> None:
        self.engine = engine
        self.cas = cas
        self.cache = cache
        self.name = name
        self._irs: dict[str, ExecIR] = {}

    def know_ir(self, digest: str, ir: ExecIR) -> None:
        """An IR this process holds already (a coordinator's own runs)."""
        self._irs[digest] = ir

    def load_ir(self, digest: str) -> ExecIR:
        """The IR by digest: memory, then Redis, then the CAS (then kept in both)."""
        ir = self._irs.get(digest)
        if ir is None:
            data = self.cache.get(IR + digest) if self.cache is not None else None
            if data is None:
                data = self.cas.get(digest)
                if self.cache is not None:
                    self.cache.set(IR + digest, data)
            ir = self._irs[digest] = decode(data, f"cas:{digest[:12]}")
        return ir

    async def run_job(self, job: Mapping[str, Any]) -> dict[str, Any]:
        """Run a job; its result message (the output value under `_value`, for `_record`)."""
        result: dict[str, Any] = {
            "v": JOB_VERSION,
            "run": job["run"],
            "node": job["node"],
            "item": job.get("item"),
            "key": job["key"],
            "attempt": job.get("attempt", 1),
            "worker": self.name,
            "began": time.time(),
        }
        failures: list[dict[str, Any]] = []
        try:
            if time.time() > float(job["deadline"]):
                raise NodeFailure("the job's reply deadline passed before it ran", "timeout")
            cached = self._irs.get(str(job["ir"]))  # a thread only to fetch it
            ir = (
                cached
                if cached is not None
                else await asyncio.to_thread(self.load_ir, str(job["ir"]))
            )
            cfg = ir.consts[ir.nodes[int(job["index"])].config]
            if job.get("item") is not None:
                cfg = cfg["body"]
            if "inputs_ref" in job:
                inputs = _decode(await asyncio.to_thread(self.cas.get, str(job["inputs_ref"])))
            else:
                inputs = job["inputs"]
            if cfg["type"] == "function":
                value = await self.function(job, cfg, inputs, failures)
            else:
                value = await self.http(job, cfg, inputs)
            check_json(value)
            result.update(ok=True, _value=value)
        except asyncio.CancelledError:
            raise
        except NodeFailure as err:
            result.update(ok=False, error=str(err), kind=err.kind)
        except Exception as err:  # a broken job is the node's failure, not the worker's
            result.update(ok=False, error=f"{type(err).__name__}: {err}", kind="worker")
        result["ended"] = time.time()
        if failures:
            result["failures"] = failures
        return result

    async def function(
        self,
        job: Mapping[str, Any],
        cfg: Mapping[str, Any],
        inputs: Any,
        failures: list[dict[str, Any]],
    ) -> Any:
        """As `NodeExecutors.function`, with the coordinator's rendered inputs. A sync
        function runs in a thread, so that one worker runs `concurrency` of them at once."""
        try:
            fn = self.engine.functions.resolve(cfg["fn"])
        except FunctionError as err:
            raise NodeFailure(str(err), err.kind) from None
        policy = retry_policy(cfg)
        item = job.get("item")

        async def attempts() -> Any:
            for attempt in range(1, policy.max_attempts + 1):
                ctx = NodeContext(str(job["run"]), str(job["node"]), str(job["key"]), attempt, item)
                try:
                    if fn.is_async:
                        return await call(fn, inputs, ctx)
                    return await asyncio.to_thread(call_sync, fn, inputs, ctx)
                except asyncio.CancelledError:
                    raise
                except Exception as err:  # the function's failure is the node's
                    if attempt == policy.max_attempts:
                        raise NodeFailure(f"{type(err).__name__}: {err}", "function") from None
                    failures.append(
                        {"attempt": attempt, "error": str(err) or type(err).__name__,
                         "kind": type(err).__name__}
                    )  # fmt: skip
                    await asyncio.sleep(backoff_s(policy, attempt))
            raise AssertionError("unreachable")  # pragma: no cover

        limit = timeout_s(cfg)
        if limit is None:
            return await attempts()
        try:
            return await asyncio.wait_for(attempts(), limit)
        except TimeoutError:
            raise NodeFailure(f"timed out after {cfg['timeout']}", "timeout") from None

    async def http(self, job: Mapping[str, Any], cfg: Mapping[str, Any], inputs: Any) -> Any:
        key = str(job["key"])
        if cfg["method"] == "BATCH":
            parts = [
                self._request({**cfg, **req}, rendered, f"{key}/{i}")
                for i, (req, rendered) in enumerate(
                    zip(cfg["requests"], inputs["requests"], strict=True)
                )
            ]
            return list(await asyncio.gather(*parts))
        return await self._request(cfg, inputs, key)

    async def _request(self, cfg: Mapping[str, Any], rendered: Mapping[str, Any], key: str) -> Any:
        from aobc.runtime.executors.http import HttpError, HttpRequest

        limit = timeout_s(cfg)
        req = HttpRequest(
            method=cfg["method"],
            url=str(rendered["url"]),
            headers={k: str(v) for k, v in (rendered.get("headers") or {}).items()},
            body=rendered.get("body"),
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
