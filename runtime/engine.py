"""The embedded engine: starts, resumes and drives runs in this process, on one store.

`Engine` owns what every run shares (stores, the function resolver, the HTTP client, LLM
providers, the IR cache) and hands each run to a `RunDriver`. Commands that come from other
processes (`aobc approve`, `aobc cancel`, `aobc patch propose`) are events appended to the
run's log; a driving engine notices them by polling the log, and a run nobody drives picks
them up when it is resumed.

A run whose every node runs inline (pure synchronous functions, conditions, joins) has nothing
to await, so `start` runs it to its end at once and records it whole, in one write
(`run_now`): the same events as a driven run, one transaction (and one fsync) instead of three.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import msgspec

from aobc import errorcodes as ec
from aobc.backend.aobir import decode, encode, ir_hash
from aobc.backend.lower import lower
from aobc.canonical import canonical_bytes, content_hash, sha256_hex
from aobc.diagnostics import Diagnostic
from aobc.errors import ExecutionError
from aobc.frontend.schema import JsonSourceMap, load_document
from aobc.policy import DEFAULT_POLICY, Policy
from aobc.runtime import core
from aobc.runtime.driver import (
    RunDriver,
    RunResult,
    ending,
    failed,
    fast_fns,
    succeeded_json,
)
from aobc.runtime.env import RunEnv
from aobc.runtime.execir import E_PURE, K_CONDITION, K_FUNCTION, K_JOIN, ExecIR, ExecNode
from aobc.runtime.executors.function import FunctionResolver
from aobc.runtime.fusion import Fused, Fusion
from aobc.runtime.groupcommit import GroupCommit
from aobc.runtime.live import Live
from aobc.runtime.locks import RunLock
from aobc.runtime.nodes import NodeExecutors
from aobc.runtime.routing import Plan
from aobc.runtime.state import RunState
from aobc.runtime.stores.base import CAS, Event, EventLog, RunRecord
from aobc.runtime.values import Values
from aobc.runtime.waits import Waits
from aobc.source import JsonLoc

_decode = msgspec.json.Decoder().decode

#: How a run `Engine.run_now` ran ended: its status, its events after `run.started` (type,
#: data, and the data's canonical JSON when it is at hand, else None), its outputs and its
#: error.
_Ended = tuple[str, list[tuple[str, dict[str, Any], str | None]], Any, str | None]


#: What a declared input of each type must be an instance of (bools aside: see `check_inputs`).
_INPUT_TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "list": list,
    "dict": dict,
}


#: Run ids made ahead, from one read of the OS's randomness per block (`_new_run_id`).
_RUN_IDS: deque[str] = deque()
# A forked child must not hand out the ids its parent may hand out too.
os.register_at_fork(after_in_child=_RUN_IDS.clear)


def _new_run_id() -> str:
    """A new run id: "r-" and 16 random hex digits (8 bytes from `os.urandom`), as
    uuid4().hex[:16] gave. The bytes are read 256 ids at a time: a system call per id
    costs more than the rest of a small run's bookkeeping. (`popleft` and `extend` are
    atomic: threads may share the ids, and two refilling at once only make more.)"""
    try:
        return _RUN_IDS.popleft()
    except IndexError:
        block = os.urandom(8 * 256).hex()
        _RUN_IDS.extend([f"r-{block[k : k + 16]}" for k in range(16, len(block), 16)])
        return f"r-{block[:16]}"


# How `Engine.run_now` runs a run (see `Engine._way`), besides a fused region's call.
_LEAN: Final = "lean"
_DRIVEN: Final = "driven"
_UNDECIDED: Final = object()


def _json_copy(value: Any) -> Any:
    """`value` as it comes back from a store: decoded from its canonical JSON."""
    return _decode(canonical_bytes(value))


@dataclass
class EngineOptions:
    """How runs execute. Defaults suit `aobc run` on a terminal."""

    mode: str = "full"  # "full": every state change logged; "fast": the minimum
    policy: Policy = DEFAULT_POLICY
    clock: Callable[[], float] = time.time
    poll_interval: float = 0.05  # seconds between looks at the log for outside commands
    wait_for_humans: bool = True  # False: return "waiting" when only approvals are left
    # With wait_for_humans: the run's record says "waiting" while only people can move it on,
    # and "running" again once it moves (a coordinator, which keeps such runs driven).
    mark_waiting: bool = False
    search_path: Sequence[str] = ()  # where function modules are imported from
    providers: Any = None  # aobc.runtime.providers.ProviderConfig
    secrets: Any = None  # aobc.runtime.executors.http.Secrets
    on_event: Callable[[Event], None] | None = None
    review: Any = None  # aobc.runtime.review.ReviewPolicy: live patches that wait for a person
    fuse: bool = True  # run pure inline regions as one generated function (runtime/fusion.py)


@dataclass
class Host:
    """What the process driving runs tells them; shared by an engine and its children."""

    #: Set before cancelling the drivers at shutdown: a cancelled run then stays resumable
    #: instead of being logged as cancelled.
    detaching: bool = False


@dataclass
class Stores:
    """The stores one engine uses; `dir` is set for the on-disk embedded store."""

    events: EventLog
    cas: CAS
    dir: Path | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class Engine:
    def __init__(self, stores: Stores, options: EngineOptions | None = None) -> None:
        self.stores = stores
        self.options = options or EngineOptions()
        self.values = Values(stores.cas)
        self.functions = FunctionResolver(self.options.search_path)
        self.nodes = NodeExecutors(self)
        self.waits = Waits(self)
        self.live = Live(self)
        self._irs: dict[str, ExecIR] = {}
        # Per IR object (kept alive by `_irs`, so its id stays its own): its CAS digest once
        # stored, and the routing tables every run of it shares. A run of a cached IR then
        # pays nothing to encode, store or analyse it again.
        self._stored: dict[int, str] = {}
        self._plans: dict[int, Plan] = {}
        # Durable SQLite: runs recorded whole are written together, once per loop turn
        # (runtime/groupcommit.py); None where a write is cheap or cannot be grouped.
        self.group: GroupCommit | None = None
        if getattr(stores.events, "durable", False):
            write_many = getattr(stores.events, "create_finished_many", None)
            if write_many is not None:
                self.group = GroupCommit(write_many)
        self._http: Any = None
        self._providers: dict[str, Any] = {}
        self._inline: dict[str, bool] = {}
        self.host = Host()

    # --- shared services ------------------------------------------------------------------

    def notify(self, event: Event) -> None:
        if self.options.on_event is not None:
            self.options.on_event(event)

    def listening(self) -> bool:
        """Whether `notify` does anything with an event: a run nobody listens to need not
        have its stored events handed back (see `run_now`)."""
        notify = self.notify  # overridden by a subclass, or on this very engine: listened to
        return (
            self.options.on_event is not None
            or getattr(notify, "__func__", notify) is not Engine.notify
        )

    def http(self) -> Any:
        if self._http is None:
            from aobc.runtime.executors.http import HttpClient, Secrets

            self._http = HttpClient(
                self.options.policy.ssrf, secrets=self.options.secrets or Secrets()
            )
        return self._http

    def provider(self, name: str) -> Any:
        if name not in self._providers:
            from aobc.runtime.providers import ProviderConfig, provider_for

            self._providers[name] = provider_for(
                name, self.options.providers or ProviderConfig.from_env()
            )
        return self._providers[name]

    def tool_specs(self, names: Sequence[str]) -> tuple[Any, ...]:
        if not names:
            return ()
        from aobc.runtime.providers import ProviderConfig

        config = self.options.providers or ProviderConfig.from_env()
        return tuple(config.tools.spec(n) for n in names)

    def inline_ok(self, cfg: Mapping[str, Any]) -> bool:
        """True for a synchronous function, which a pure node may call inline."""
        ref = cfg["fn"]
        ok = self._inline.get(ref)
        if ok is None:
            try:
                ok = not self.functions.resolve(ref).is_async
            except Exception:  # resolution errors surface when the node runs as a task
                ok = False
            self._inline[ref] = ok
        return ok

    def memo_key(self, node: ExecNode, inputs: Any) -> str | None:
        """Where a pure node's output is memoized: its config and its inputs' hash."""
        if node.effect != E_PURE:
            return None
        return sha256_hex(node.config_hash.encode() + b"\x00" + canonical_bytes(inputs))

    def memo_lookup(self, key: str) -> str | None:
        digest = self.stores.events.memo_get(key)
        return digest if digest is not None and self.stores.cas.has(digest) else None

    def memo_store(self, key: str, digest: str) -> None:
        self.stores.events.memo_put(key, digest)

    # --- IR ---------------------------------------------------------------------------------

    def store_ir(self, ir: ExecIR, name: str) -> str:
        digest = self._stored.get(id(ir))
        if digest is not None and self._irs.get(digest) is ir:
            return digest  # this engine stored this very IR already (CAS and artifact too)
        data = encode(ir)
        digest = self.stores.cas.put(data)
        self._irs[digest] = ir
        self._stored[id(ir)] = digest
        self.stores.events.put_artifact(
            "ir", digest, name, {"workflow": ir.workflow_hash, "ir_id": ir_hash(ir)}
        )
        return digest

    def load_ir(self, digest: str) -> ExecIR:
        ir = self._irs.get(digest)
        if ir is None:
            ir = decode(self.stores.cas.get(digest), f"cas:{digest[:12]}")
            self._irs[digest] = ir
            self._stored[id(ir)] = digest
        return ir

    def plan(self, ir: ExecIR) -> Plan:
        """The routing tables of `ir`, built once per IR."""
        plan = self._plans.get(id(ir))
        if plan is None or plan.ir is not ir:
            plan = Plan(ir)
            if any(known is ir for known in self._irs.values()):
                self._plans[id(ir)] = plan  # only IRs `_irs` keeps alive: ids stay unique
        return plan

    def fusion(self, ir: ExecIR) -> Fusion | None:
        """The fused regions of `ir`, or None: no region (or fusion turned off)."""
        return self.plan_fusion(self.plan(ir))

    def plan_fusion(self, plan: Plan) -> Fusion | None:
        """`fusion` of the plan's IR."""
        if not self.options.fuse:
            return None
        ir = plan.ir
        if plan.fusion is None:
            plan.fusion = Fusion(self, ir)
        fusion: Fusion = plan.fusion
        return fusion if fusion.count else None

    def compile_document(self, doc: Mapping[str, Any]) -> ExecIR:
        """The IR of a sub-workflow given as a document (a map body's composite)."""
        key = content_hash(doc)
        ir = self._irs.get(key)
        if ir is None:
            diags: list[Diagnostic] = []
            wf = load_document(dict(doc), JsonSourceMap("sub-workflow"), diags)
            if wf is None:
                raise ExecutionError(diags)
            ir = self._irs[key] = lower(wf)
        return ir

    # --- runs ---------------------------------------------------------------------------------

    def check_inputs(self, ir: ExecIR, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Inputs with defaults filled in; ExecutionError naming every problem."""
        out = dict(inputs)
        if not out and not ir.inputs:
            return out  # nothing given, nothing declared: nothing to check
        problems = []
        if inputs:
            declared = {d.name for d in ir.inputs}
            for name in inputs:
                if name not in declared:
                    problems.append(f'input "{name}" is not declared by workflow "{ir.name}"')
        for d in ir.inputs:
            if d.name not in out:
                if d.required:
                    problems.append(f'input "{d.name}" ({d.type}) is required')
                else:
                    out[d.name] = d.default
                continue
            want = _INPUT_TYPES.get(d.type)
            value = out[d.name]
            bad_bool = isinstance(value, bool) and d.type in ("int", "float")
            if want is not None and (not isinstance(value, want) or bad_bool):
                problems.append(f'input "{d.name}" must be {d.type}, got {type(value).__name__}')
        if problems:
            raise ExecutionError(
                [Diagnostic.error(ec.INVALID_VALUE, p, JsonLoc("<inputs>", "")) for p in problems]
            )
        return out

    def create(
        self,
        ir: ExecIR,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        parent: str | None = None,
        frozen: Mapping[str, str] | None = None,
        replay: Mapping[str, Any] | None = None,
        search_path: Sequence[str] | None = None,
        namespace: str | None = None,
        labels: Mapping[str, Any] | None = None,
    ) -> list[Event]:
        """Record a new run (IR, checked inputs, `run.started`) without driving it.

        A control plane creates runs here and drives them later with `resume`. With an
        idempotency key that already names a run in the namespace, nothing is created and
        that run's first events come back (tell the cases apart by their `run_id`).
        `labels` are kept on the run's record and in `run.started` (who started it, its
        priority...).
        """
        digest = self.store_ir(ir, ir.name)
        started = self._started(
            ir,
            digest,
            self.check_inputs(ir, inputs or {}),
            parent=parent,
            frozen=frozen,
            replay=replay,
            search_path=search_path,
            namespace=namespace,
            labels=labels,
        )
        now = self.options.clock()
        record = RunRecord(
            run_id or _new_run_id(), ir.name, digest, "running", now, now, started["namespace"],
            parent, idempotency_key, dict(labels or {}),
        )  # fmt: skip
        first = self.stores.events.create_run(record, [("run.started", started)])
        for e in first:
            self.notify(e)
        return first

    def _started(
        self,
        ir: ExecIR,
        digest: str,
        values: dict[str, Any],
        *,
        parent: str | None = None,
        frozen: Mapping[str, str] | None = None,
        replay: Mapping[str, Any] | None = None,
        search_path: Sequence[str] | None = None,
        namespace: str | None = None,
        labels: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The `run.started` data of a new run of `ir` (stored as `digest`) on `values`."""
        ns = namespace or ir.namespace
        started: dict[str, Any] = {
            "name": ir.name,
            "namespace": ns,
            "workflow": ir.workflow_hash,
            "version": ir.workflow_hash,
            "ir": digest,
            "inputs": values,
            "mode": self.options.mode,
        }
        paths = self.options.search_path if search_path is None else search_path
        if paths:
            # Where this run's functions come from, so a resume in another directory finds them.
            started["search_path"] = [str(Path(p).resolve()) for p in paths]
        if parent is not None:
            started["parent"] = parent
        if frozen:
            started["frozen"] = dict(frozen)
        if replay:
            started["replay"] = dict(replay)
        if labels:
            started["labels"] = dict(labels)
        return started

    async def start(
        self,
        ir: ExecIR,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        idempotency_key: str | None = None,
        parent: str | None = None,
        frozen: Mapping[str, str] | None = None,
        replay: Mapping[str, Any] | None = None,
        search_path: Sequence[str] | None = None,
    ) -> RunResult:
        if idempotency_key is None and not frozen and not replay:
            # (A key may name an older run to return instead, and a replay reads the store:
            # those are created, then driven.)
            group = self.group
            if group is None:
                done = self.run_now(
                    ir, inputs, run_id=run_id, parent=parent, search_path=search_path
                )
                if done is not None:
                    return done
            else:
                # Its write joins the others of this loop turn; it returns once committed.
                writes: list[asyncio.Future[list[Event]]] = []
                done = self.run_now(
                    ir, inputs, run_id=run_id, parent=parent, search_path=search_path,
                    write=lambda record, log: writes.append(group.submit(record, log)),
                )  # fmt: skip
                if done is not None:
                    for e in await writes[0]:
                        self.notify(e)
                    return done
        first = self.create(
            ir,
            inputs,
            run_id=run_id,
            idempotency_key=idempotency_key,
            parent=parent,
            frozen=frozen,
            replay=replay,
            search_path=search_path,
        )
        if idempotency_key is None:
            # Just created, so its log is `first` and its record already says "running".
            return await self.resume(first[0].run_id, created=first)
        return await self.resume(first[0].run_id)  # maybe an older run: read its whole log

    def runs_inline(self, plan: Plan) -> bool:
        """Whether every node of the plan's IR runs inline: a pure synchronous function, a
        condition or a join (what `RunDriver.start_node` runs without a task or a wait)."""
        if plan.inline is None:
            plan.inline = all(
                node.kind in (K_CONDITION, K_JOIN)
                or (node.kind == K_FUNCTION and node.effect == E_PURE and self.inline_ok(cfg))
                for node, cfg in zip(plan.ir.nodes, plan.configs, strict=True)
            )
        return plan.inline

    def run_now(
        self,
        ir: ExecIR,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        parent: str | None = None,
        search_path: Sequence[str] | None = None,
        write: Callable[[RunRecord, list[tuple[str, dict[str, Any]]]], None] | None = None,
    ) -> RunResult | None:
        """Run `ir` to its end right here, and record the run whole in one write: its record
        with its final status, and its whole log. None, having recorded nothing but the IR,
        unless every node runs inline and the event log can record a run whole
        (`create_finished`); the caller then creates the run and drives it.

        The events, their order and data, the outputs put in the CAS and the result are what
        `create` and `resume` give: `RunDriver.run_now` runs the same code, without writing
        until the end. The difference is when the run becomes visible: only once it has
        ended, so nobody outside can cancel, decide or patch it meanwhile (there is no
        meanwhile to speak of: nothing awaits), and a crash before the write leaves no trace
        of it (it ran pure functions only, which a new start runs again). In durable mode
        the write is the run's one fsync. `write`: hand the record and log to it instead
        (`start` with group commit: several runs' writes in one transaction).
        """
        create_finished = getattr(self.stores.events, "create_finished", None)
        if create_finished is None:
            return None
        digest = self.store_ir(ir, ir.name)
        # (No inputs given and none declared, the common case: nothing to check.)
        values = self.check_inputs(ir, inputs or {}) if inputs or ir.inputs else {}
        created = self.options.clock()
        plan = self.plan(ir)
        paths = self.options.search_path if search_path is None else search_path
        started_json: str | None = None
        if values or parent is not None or paths:
            started = self._started(ir, digest, values, parent=parent, search_path=search_path)
            if "search_path" in started:
                # As `resume` does before driving: the functions may come from there.
                self.functions.add_paths(started["search_path"])
        else:
            bare = plan.started.get((digest, self.options.mode))
            started, started_json = bare if bare is not None else self._bare_started(plan, digest)
        way = self._way(plan)
        if way is None:
            return None
        run_id = run_id or _new_run_id()
        if way == _LEAN:
            ended = self._run_lean(plan, values)
        elif isinstance(way, Fused):
            whole = self._run_whole(plan, way)
            # None: it raised, and the driver runs it again, node by node.
            ended = whole or self._run_driven(ir, run_id, started, values, way)
        else:
            ended = self._run_driven(ir, run_id, started, values, None)
        status, events, output_value, error = ended
        record = RunRecord(
            run_id, ir.name, digest, status, created, time.time(), started["namespace"], parent
        )
        # Nobody would see the stored events: a log that can skip handing them back does,
        # and takes the JSON of the data already encoded.
        record_finished = (
            None if self.listening() else getattr(self.stores.events, "record_finished", None)
        )
        if write is not None:  # the caller writes it (and notifies)
            write(record, [("run.started", started), *((t, d) for t, d, _ in events)])
        elif record_finished is not None:
            record_finished(record, [("run.started", started, started_json), *events])
        else:
            log = [("run.started", started), *((t, d) for t, d, _ in events)]
            stored: list[Event] = create_finished(record, log)
            for e in stored:
                self.notify(e)
        return RunResult(run_id, status, output_value, error)

    def _bare_started(self, plan: Plan, digest: str) -> tuple[dict[str, Any], str]:
        """The `run.started` data of a run of the plan's IR (stored as `digest`) with no
        inputs, parent or search path, and its canonical JSON: the same for every such run
        (in this engine's mode), so made once per plan. The data is shared by those runs:
        what reads it copies it (the log encodes it, a driven run's state gets its own)."""
        key = (digest, self.options.mode)
        hit = plan.started.get(key)
        if hit is None:
            started = self._started(plan.ir, digest, {}, search_path=())
            hit = plan.started[key] = (started, canonical_bytes(started).decode("utf-8"))
        return hit

    def _way(self, plan: Plan) -> Fused | str | None:
        """How `run_now` runs a run of the plan's IR: not at all (None: a node must be
        awaited), as the one fused region that is the whole run (`_run_whole`), as the
        core's drain of every node (`_LEAN`: `_run_lean`), or by the driver (`_DRIVEN`).
        Decided once per plan, mode and fusion (plans are shared by child engines)."""
        key = (self.options.mode, self.options.fuse)
        way = plan.ways.get(key, _UNDECIDED)
        if way is _UNDECIDED:
            if not self.runs_inline(plan):
                way = None
            else:
                way = self._whole(plan) or (_LEAN if self._lean(plan) else _DRIVEN)
            plan.ways[key] = way
        return way  # type: ignore[no-any-return]

    def _whole(self, plan: Plan) -> Fused | None:
        """The fused region that is the whole of a fast-path run of the plan's IR, if there
        is one: then the region's call is the run (see `_run_whole`)."""
        if self.options.mode != "fast" or not plan.direct_outputs:
            return None
        fusion = self.plan_fusion(plan)
        return fusion.whole if fusion is not None else None

    def _run_whole(self, plan: Plan, whole: Fused) -> _Ended | None:
        """A fast-path run whose every node is in one fused region and whose every output
        names a node: the region's call, then what `RunDriver.finish` records. What the
        driver would do besides (routing, the state's record of done nodes) nobody sees
        once the run has ended. None if a member raised: the driver then runs the members
        one by one, to say which node failed (`_run_driven`)."""
        out: list[Any] = [None] * len(plan.ids)
        try:
            whole.call(out, whole.fns)
        except Exception:  # a workflow function failing: the driver reports it
            return None
        outputs = {name: out[ref] for name, _, ref in plan.outputs}
        digest, data = self.values.put_json(outputs)
        succeeded = {"outputs": digest, "value": outputs}
        return (
            "succeeded",
            [("run.succeeded", succeeded, succeeded_json(digest, data))],
            outputs,
            None,
        )

    def _lean(self, plan: Plan) -> bool:
        """Whether a fast-path run of the plan's IR is the core's `drain` of every node
        (see `_run_lean`): no fused region, and an inline function for every node."""
        if self.options.mode != "fast" or self.plan_fusion(plan) is not None:
            return False
        if plan.lean is None:
            plan.lean = all(f is not None for f in fast_fns(self, plan, False))
        return plan.lean

    def _run_lean(self, plan: Plan, values: dict[str, Any]) -> _Ended:
        """A fast-path run whose every node has an inline function, with no fused region:
        what the driver does for it (`RunDriver.run_now`: `dispatch` runs the core's `drain`
        over every node, then `finish` records how the run ended), without a driver or a
        RunState. What those keep besides (the nodes done, in order) nobody reads once the
        run has ended, and making them costs more than a small run's nodes do."""
        fns = plan.fast[False]
        routing, ready = plan.fresh()
        out: list[Any] = [None] * len(fns)
        # The inputs as the driver's state holds them: its own copy (see `_run_driven`).
        env = RunEnv(plan.index, out, _json_copy(values) if values else {})
        taken = plan.edges.taken
        try:
            core.drain(
                routing, ready, fns, plan.ids, out, {}, [], plan.guarded,
                lambda i, value: taken(i, value, env), _not_inline,
            )  # fmt: skip
        except Exception as err:
            if routing.current < 0:
                raise  # not a workflow function: the engine's own error
            # A workflow function failing is data, not a crash. As `RunDriver.fail` logs it,
            # on a fresh state: the node's first attempt.
            events = failed(plan.ids[routing.current], err, 1, False)
            return "failed", [(t, d, None) for t, d in events], None, events[-1][1]["error"]
        etype, data, raw = ending(routing, plan.ir, plan.outputs, out, env, self.values)
        if raw is not None:  # run.succeeded
            text = succeeded_json(data["outputs"], raw)
            return "succeeded", [(etype, data, text)], data["value"], None
        return "failed", [(etype, data, None)], None, data["error"]

    def _run_driven(
        self,
        ir: ExecIR,
        run_id: str,
        started: dict[str, Any],
        values: dict[str, Any],
        raised: Fused | None,
    ) -> _Ended:
        """A run of inline nodes by the driver, to its end and with nothing written yet
        (`RunDriver.run_now`). `raised`: a fused region that raised already, which the
        driver then runs node by node at once, as it does after a region raised."""
        state = RunState(run_id)
        # The state gets its own copy of the inputs, as the JSON round trip of the store gives
        # a driven run (and a node cannot change what `run.started` records).
        state.apply("run.started", {**started, "inputs": _json_copy(values) if values else {}})
        driver = RunDriver(self, state, ir)
        if raised is not None:
            driver.unfused.add(raised)
        driver.run_now()
        if driver.final_status is None:
            raise RuntimeError(f"run {run_id} ended without a status")
        events: list[tuple[str, dict[str, Any], str | None]] = [
            (t, d, None) for t, d in driver.pending
        ]
        return driver.final_status, events, state.output_value, state.error

    async def resume(self, run_id: str, *, created: list[Event] | None = None) -> RunResult:
        """Drive a run from wherever its log says it is (`created`: the whole log of a run
        this engine has just created)."""
        events = created if created is not None else self.stores.events.read(run_id)
        if not events:
            raise ExecutionError(
                Diagnostic.error(ec.INVALID_VALUE, f"no run {run_id}", JsonLoc("<runs>", ""))
            )
        state = RunState.fold(run_id, events)
        self.functions.add_paths(events[0].data.get("search_path", []))
        if state.finished:
            return RunResult(run_id, state.status, state.output_value, state.error)
        lock = RunLock(self.stores.dir, run_id) if self.stores.dir is not None else None
        if lock is not None and not lock.try_acquire():
            raise ExecutionError(
                Diagnostic.error(
                    ec.INVALID_VALUE,
                    f"run {run_id} is being driven by another process",
                    JsonLoc("<runs>", ""),
                )
            )
        try:
            if created is None:
                record = self.stores.events.get_run(run_id)
                if record is not None and record.status != "running":
                    self.stores.events.set_status(run_id, "running")
            driver = RunDriver(self, state, self.load_ir(state.ir))
            try:
                return await driver.drive()
            except asyncio.CancelledError:
                if self.host.detaching:
                    # The hosting process is going away, not the run: leave the log as a
                    # crash would, so the next process resumes the run where it stopped.
                    await driver.cancel_tasks()
                    driver.flush()
                    raise
                # A parent run was cancelled: say so in this run's log before unwinding.
                driver.emit("run.cancelled", {"by": "parent", "reason": "the parent run stopped"})
                driver.flush()
                self.stores.events.set_status(run_id, "cancelled")
                raise
        finally:
            if lock is not None:
                lock.release()

    async def run_child(
        self, parent: RunDriver, child_id: str, ir: ExecIR, inputs: Mapping[str, Any]
    ) -> RunResult:
        """A sub-workflow run: started once, resumed after a restart, never run twice."""
        existing = self.stores.events.read(child_id, limit=1)
        if existing:
            return await self.resume(child_id)
        child = Engine(self.stores, self._child_options())
        child._irs = self._irs
        child._stored = self._stored
        child._plans = self._plans
        child._http = self._http
        child._providers = self._providers
        child.host = self.host
        if self.nodes.serves_children:  # a coordinator's children's jobs go to workers too
            child.nodes = self.nodes
        return await child.start(ir, inputs, run_id=child_id, parent=parent.state.run_id)

    def _child_options(self) -> EngineOptions:
        import dataclasses

        return dataclasses.replace(self.options, wait_for_humans=True)

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None


def _not_inline(i: int) -> bool:
    """`core.drain`'s hand-off in a lean run, where every node runs inline: never called."""
    raise RuntimeError(f"node {i} of a lean run has no inline function")
