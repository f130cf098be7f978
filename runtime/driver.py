"""Driving one run: ready nodes out, completions in, every state change an event.

The driver keeps the run's state as a fold over its events (`RunState`) and derives routing
from it (`routing.rebuild`), so starting, resuming after a crash, and continuing after a live
patch are the same code path. Its loop:

1. run every ready node: pure synchronous functions inline (no task, no await), everything
   else as an asyncio task;
2. append the events produced so far, in one batch;
3. wait for a task to finish, a timer or ticket deadline, or the next poll of the log for
   decisions, cancellations and patches written by other processes.

Write-ahead rule: an event is appended before anything acts on it. A non-pure node's
`node.started` is durable before it runs, and its `node.succeeded` is durable before its
successors start, so a crash never loses a completion that something downstream saw, and a
node interrupted mid-flight runs again with the same idempotency key.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from typing import TYPE_CHECKING, Any

from aobc.expr import ExprError
from aobc.runtime import core
from aobc.runtime.env import RunEnv, evaluate
from aobc.runtime.execir import (
    E_PURE,
    K_APPROVAL,
    K_CONDITION,
    K_FUNCTION,
    K_JOIN,
    K_TIMER,
    ExecIR,
    ExecNode,
)
from aobc.runtime.executors.function import NodeContext, call_sync
from aobc.runtime.routing import Plan, rebuild
from aobc.runtime.state import RunState
from aobc.runtime.stores.base import Conflict, Event
from aobc.runtime.values import SMALL, ValueError_, Values, check_json

if TYPE_CHECKING:
    from aobc.runtime.engine import Engine

#: A node's function as the core calls it inline: its inputs (predecessor id -> output) in,
#: its output out.
FastFn = Callable[[dict[str, Any]], Any]


class NodeFailure(Exception):
    """A node failed for good (after its retries); the run fails with it."""

    def __init__(self, message: str, kind: str = "error") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class RunResult:
    run_id: str
    status: str
    outputs: Any = None
    error: str | None = None
    waiting: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"run": self.run_id, "status": self.status}
        if self.status == "succeeded":
            out["outputs"] = self.outputs
        if self.error:
            out["error"] = self.error
        if self.waiting:
            out["waiting"] = self.waiting
        return out


def idempotency_key(run_id: str, node_id: str, item: int | None = None) -> str:
    """The same for every attempt of the same logical call, and different across runs."""
    raw = f"{run_id}\x00{node_id}" + ("" if item is None else f"\x00{item}")
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def fast_fns(engine: Engine, plan: Plan, full: bool) -> list[FastFn | None]:
    """The functions the core may call inline for the plan's nodes, by fidelity: made once
    per plan (see `fast_fn`)."""
    fns = plan.fast.get(full)
    if fns is None:
        ir = plan.ir
        fns = plan.fast[full] = [
            fast_fn(engine, node, cfg, full)
            for node, cfg in zip(ir.nodes, plan.configs, strict=True)
        ]
    return fns


def fast_fn(engine: Engine, node: ExecNode, cfg: dict[str, Any], full: bool) -> FastFn | None:
    """The function the core may call inline for `node`, with no event and no task.

    Only in fast-path runs, for pure synchronous functions that take their predecessors'
    outputs (no `args` to render), run once (no retries), are not memoized or frozen, and
    take at most their inputs (no context to build). Everything else goes through
    `RunDriver.start_node`.
    """
    if (
        full
        or node.kind != K_FUNCTION
        or node.effect != E_PURE
        or node.max_attempts > 1
        or "args" in cfg
        or "cache" in cfg
        or not engine.inline_ok(cfg)
    ):
        return None
    fn = engine.functions.resolve(cfg["fn"])
    if fn.arity == 2:
        return None
    if fn.arity == 0:
        call = fn.fn
        return lambda _inputs: call()
    return fn.fn


def failure_data(
    node_id: str, err: BaseException, attempt: int, *, final: bool, full: bool
) -> dict[str, Any]:
    """The data of a `node.failed` event (`full`: the run logs every state change)."""
    kind = getattr(err, "kind", type(err).__name__)
    message = str(err) or type(err).__name__
    data = {"node": node_id, "attempt": attempt, "error": message, "kind": kind, "final": final}
    if final and not isinstance(err, NodeFailure | ExprError | ValueError_) and full:
        data["trace"] = "".join(traceback.format_exception_only(type(err), err)).strip()
    return data


def failed(
    node_id: str, err: BaseException, attempt: int, full: bool
) -> list[tuple[str, dict[str, Any]]]:
    """The events of a run failing with its node: the node's final `node.failed`, then
    `run.failed`."""
    return [
        ("node.failed", failure_data(node_id, err, attempt, final=True, full=full)),
        ("run.failed", {"error": f'node "{node_id}" failed: {err}', "node": node_id}),
    ]


def succeeded_json(digest: str, outputs: bytes) -> str:
    """The canonical JSON of `run.succeeded`'s data, {"outputs": digest, "value": value},
    from the value's canonical JSON `outputs`: what `canonical_bytes` gives for the data
    (keys sorted, no spaces), without encoding the value a second time."""
    hit = _SUCCEEDED.get(digest)
    if hit is not None and hit[0] == outputs:
        return hit[1]
    # A digest is hex: letters and digits need no escaping (`encode_basestring` would
    # escape quotes, backslashes and control characters only).
    quoted = f'"{digest}"' if digest.isalnum() else encode_basestring(digest)
    text = f'{{"outputs":{quoted},"value":{outputs.decode("utf-8")}}}'
    if len(outputs) <= SMALL:  # runs of one workflow often end with the same small outputs
        if len(_SUCCEEDED) >= 4096:
            _SUCCEEDED.clear()  # (clear, not evict one: safe with threads, and rare)
        _SUCCEEDED[digest] = (outputs, text)
    return text


_SUCCEEDED: dict[str, tuple[bytes, str]] = {}  # by digest, for small outputs: (them, the text)


def ending(
    routing: core.Routing,
    ir: ExecIR,
    outputs: list[tuple[str, str, int]],
    values: list[Any],
    env: RunEnv,
    store: Values,
) -> tuple[str, dict[str, Any], bytes | None]:
    """The event that ends a run in which no node can run any more: `run.succeeded` with
    its outputs, which go to `store`, or `run.failed` if some node never finished or an
    output expression fails; and the outputs' canonical JSON, as stored (None for
    `run.failed`). `outputs` as `Plan.outputs`; `values` by node index."""
    # `settled` is the core's own loop; routing never marks a node FAILED (a failure
    # ends the run instead), so settled means every node is done or skipped.
    stuck = (
        []
        if core.settled(routing)
        else [
            n.id
            for i, n in enumerate(ir.nodes)
            if routing.status[i] not in (core.DONE, core.SKIPPED)
        ]
    )
    if stuck:
        # Nothing is running or waiting, yet these nodes never finished: a bug, and the run
        # must not claim success over it.
        error = f"internal: nodes {', '.join(stuck)} never finished"
        return "run.failed", {"error": error, "node": None}, None
    result = {}
    for name, expr, ref in outputs:
        if ref >= 0:
            result[name] = values[ref]  # a plain node reference, resolved by the plan
            continue
        try:
            result[name] = evaluate(expr, env)
        except ExprError as err:
            return "run.failed", {"error": f'output "{name}": {err}', "node": None}, None
    digest, data = store.put_json(result)
    return "run.succeeded", {"outputs": digest, "value": result}, data


class RunDriver:
    """Drives one run to a terminal state (or to waiting on humans)."""

    # A driver is made per run, on the hot path of a short one (`Engine.run_now`): slots make
    # it and its attributes cheaper, and its attributes are all declared here.
    __slots__ = (
        "_results",
        "atomic",
        "configs",
        "edges",
        "engine",
        "env",
        "events",
        "fast_fns",
        "final_status",
        "full",
        "fusion",
        "guarded",
        "ids",
        "index",
        "ir",
        "marked_waiting",
        "memo_pending",
        "outputs",
        "pending",
        "ready",
        "routing",
        "state",
        "tasks",
        "unfused",
        "values",
    )

    def __init__(self, engine: Engine, state: RunState, ir: ExecIR) -> None:
        self.engine = engine
        self.events = engine.stores.events
        self.state = state
        self.full = state.mode != "fast"
        self.pending: list[tuple[str, dict[str, Any]]] = []
        # The run's final status, written by the next flush in the transaction that appends
        # its last event when the store can (`append_ending`), else right after it.
        self.final_status: str | None = None
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self._results: asyncio.Queue[tuple[str, Any, BaseException | None]] | None = None
        self.values: list[Any] = []
        self.memo_pending: dict[str, str] = {}
        self.unfused: set[Any] = set()  # fused regions this run runs node by node instead
        # True while `run_now` drives a run the store does not hold yet: nothing is written
        # until the run ends, and then all of it at once (see `Engine.run_now`).
        self.atomic = False
        self.marked_waiting = False  # what `mark_waiting` last wrote: "waiting" (or not)
        self.ir: ExecIR = ir
        self.set_ir(ir)

    @property
    def results(self) -> asyncio.Queue[tuple[str, Any, BaseException | None]]:
        """Where tasks report their outcome; made on first use (a run of inline nodes only
        never needs one)."""
        if self._results is None:
            self._results = asyncio.Queue()
        return self._results

    # --- IR and routing -------------------------------------------------------------

    def set_ir(self, ir: ExecIR) -> None:
        """Switch to `ir` (the start, or a live patch) and rebuild routing from history."""
        state = self.state
        if self.values:
            old_values = {n.id: v for n, v in zip(self.ir.nodes, self.values, strict=True)}
        else:
            old_values = {}
        self.ir = ir
        plan = self.engine.plan(ir)
        self.index = plan.index
        self.configs = plan.configs
        self.edges = plan.edges
        self.ids = plan.ids
        self.values = (
            [old_values.get(n) for n in plan.ids] if old_values else [None] * len(plan.ids)
        )
        self.env = RunEnv(self.index, self.values, state.inputs)
        if state.done:
            for node_id, digest in state.done.items():
                i = self.index.get(node_id)
                if i is not None and digest is not None and self.values[i] is None:
                    self.values[i] = self.engine.values.get(digest)
        if state.order:
            self.routing, ready = rebuild(
                ir, self.edges, state.order, self.index, self.values.__getitem__, self.env
            )
        else:
            self.routing, ready = plan.fresh()  # nothing ran yet: the plan's template
        self.outputs = plan.outputs
        if self.tasks:
            # Nodes with a task in flight keep running across a switch of IR. A node the log
            # says started but that has no task was interrupted (a crash): it stays ready, and
            # runs again with the same idempotency key.
            status = self.routing.status
            for node_id in self.tasks:
                i = self.index.get(node_id)
                if i is not None and status[i] == core.READY:
                    status[i] = core.RUNNING
            self.ready = [i for i in ready if status[i] == core.READY]
        else:
            self.ready = ready  # READY, all of them: no task took one
        self.guarded = plan.guarded
        fast = fast_fns(self.engine, plan, self.full)
        if state.frozen:
            fast = [None if self.ids[i] in state.frozen else f for i, f in enumerate(fast)]
        self.fast_fns = fast
        self.fusion = self.engine.plan_fusion(plan)

    # --- events -----------------------------------------------------------------------

    def emit(self, etype: str, data: dict[str, Any]) -> None:
        """Apply an event to the state now and queue it for the next append."""
        self.state.apply(etype, data)
        self.pending.append((etype, data))

    def flush(self) -> None:
        """Append the queued events in one transaction (the write-ahead point)."""
        if self.atomic:
            return  # the run is recorded whole when it ends, with every queued event
        status, self.final_status = self.final_status, None
        if not self.pending:
            if status is not None:
                self.events.set_status(self.state.run_id, status)
            return
        batch, self.pending = self.pending, []
        ending = getattr(self.events, "append_ending", None) if status is not None else None
        while True:
            try:
                if ending is not None:
                    stored = ending(
                        self.state.run_id, batch, status, expect_seq=self.state.last_seq
                    )
                else:
                    stored = self.events.append(
                        self.state.run_id, batch, expect_seq=self.state.last_seq
                    )
                break
            except Conflict:
                # Another process (a human's decision, a cancel) appended first: fold its
                # events in, then append ours after them.
                self.absorb_external()
        if status is not None and ending is None:
            self.events.set_status(self.state.run_id, status)
        self.state.last_seq = stored[-1].seq
        for e in stored:
            self.engine.notify(e)

    def absorb_external(self) -> None:
        for e in self.events.read(self.state.run_id, after=self.state.last_seq):
            self.state.apply_event(e)
            self.engine.notify(e)
            self.on_external(e)

    def on_external(self, e: Event) -> None:
        if e.type == "ticket.decided":
            self.engine.waits.decided(self, e.data["ticket"])
        elif e.type == "patch.proposed":
            # Proposed from outside (a person, or an agent through the API): this driver
            # validates and applies it. An agent node's own patches never arrive this way.
            self.engine.live.apply(self, e.data["patch"], source=e.data.get("source", "human"))
        elif e.type == "patch.approved":
            self.apply_approved(e.data["patch"])

    def apply_approved(self, patch_id: str) -> None:
        held = self.state.held.get(patch_id)
        if held is not None and "approval" in held:
            self.engine.live.apply(
                self, held["patch"], source=held.get("source", "human"), approval=held["approval"]
            )

    def held_open(self) -> bool:
        """Whether a held patch still waits for a person's decision."""
        return any("approval" not in h for h in self.state.held.values())

    def end_status(self, status: str) -> None:
        """Set the run's status as it ends: in the store now, or, for a run recorded whole
        when it ends (`atomic`), with its events."""
        if self.atomic:
            self.final_status = status
        else:
            self.events.set_status(self.state.run_id, status)

    # --- the loop -----------------------------------------------------------------------

    def run_now(self) -> None:
        """What `drive` does for a fresh run whose every node runs inline (a pure
        synchronous function, a condition or a join): run them all, then finish; no await,
        no task, no wait. Nothing is written meanwhile (`atomic`): the events stay queued in
        `pending` and the status in `final_status`, for the caller to record the run whole
        (`Engine.run_now`). Nobody outside can have appended to a run the store does not hold
        yet, so the checks `drive` makes between steps for cancels, decisions and live
        patches have nothing to find."""
        self.atomic = True
        self.dispatch()
        if self.state.finished:
            return
        if self.tasks or self.ready:
            raise RuntimeError(f"run {self.state.run_id}: a node did not run inline")
        self.finish()

    async def drive(self) -> RunResult:
        self.engine.waits.rearm(self)
        for proposal in list(self.state.proposals):
            self.engine.live.apply(self, proposal["patch"], source=proposal.get("source", "human"))
        for patch_id in list(self.state.held):
            self.apply_approved(patch_id)  # approved while nobody drove the run
        while not self.state.finished:
            if self.state.cancel is not None:
                await self.cancel_all()
                break
            self.dispatch()
            self.flush()
            if self.state.finished:
                break
            idle = not self.tasks and not self.ready and self.engine.waits.idle(self)
            if idle and not self.state.held:
                self.finish()
                self.flush()
                break
            if not self.engine.options.wait_for_humans and self.only_waiting_for_humans():
                self.flush()
                return self.result("waiting")
            if self.engine.options.mark_waiting:
                self.mark_waiting(self.only_waiting_for_humans())
            await self.wait()
        await self.cancel_tasks()
        self.flush()
        return self.result(self.state.status)

    def mark_waiting(self, waiting: bool) -> None:
        """Keep the run's record saying "waiting" while only people can move it on
        (`EngineOptions.mark_waiting`): one write when that changes."""
        if waiting != self.marked_waiting:
            self.marked_waiting = waiting
            self.events.set_status(self.state.run_id, "waiting" if waiting else "running")

    def only_waiting_for_humans(self) -> bool:
        if self.tasks or self.ready:
            return False
        waits = self.engine.waits
        return waits.only_tickets(self) or (self.held_open() and waits.idle(self))

    async def wait(self) -> None:
        timeout = min(self.engine.options.poll_interval, self.engine.waits.next_deadline_in(self))
        try:
            done_id, value, error = await asyncio.wait_for(
                self.results.get(), timeout=max(timeout, 0)
            )
        except TimeoutError:
            self.absorb_external()
            self.engine.waits.tick(self)
            return
        self.tasks.pop(done_id, None)
        self.on_done(done_id, value, error)
        while not self.results.empty():
            done_id, value, error = self.results.get_nowait()
            self.tasks.pop(done_id, None)
            self.on_done(done_id, value, error)

    def on_done(self, node_id: str, value: Any, error: BaseException | None) -> None:
        i = self.index.get(node_id)
        if i is None or self.state.finished:
            return
        if error is not None:
            self.fail(node_id, error)
            return
        from aobc.runtime.nodes import AgentOutcome

        memo_key = self.memo_pending.pop(node_id, None)
        if isinstance(value, AgentOutcome):
            if value.patch is None:
                self.succeed(i, value.output)
                return
            # Record the answer first, then let the patch change the graph: the patch may
            # add successors to this very node, which the rebuilt routing then makes ready.
            self.succeed(i, value.output, route=False)
            self.engine.live.apply(self, value.patch, source=f"agent:{node_id}")
            j = self.index.get(node_id)  # positions change when the patch was applied
            if j is not None and self.routing.status[j] != core.DONE:
                self.route(j, value.output)  # the patch was refused: route on the old graph
            return
        self.succeed(i, value, memo_key=memo_key)

    # --- dispatch ------------------------------------------------------------------------

    def _taken(self, i: int, value: Any) -> list[bool] | None:
        return self.edges.taken(i, value, self.env)

    def dispatch(self) -> None:
        """Run every ready node, smallest index first (`core.drain`, which says why): the
        core runs what it can inline and hands each other node to `_start` when its turn
        comes. Fused regions run whenever their roots are ready (running pure nodes that
        succeed early changes nothing the order promises)."""
        if not self.ready or self.state.finished:
            return
        if self.fusion is not None:
            self.fusion.run_ready(self)
            if self.state.finished:
                return  # a region's output failed the run
        try:
            core.drain(
                self.routing, self.ready, self.fast_fns, self.ids, self.values,
                self.state.done, self.state.order, self.guarded, self._taken, self._start,
            )  # fmt: skip
        except Exception as err:
            if self.routing.current < 0:
                raise  # not a workflow function: the engine's own error
            # A workflow function failing is data, not a crash.
            self.fail(self.ids[self.routing.current], err)

    def _start(self, i: int) -> bool:
        """`core.drain`'s turn for node i, which it does not run inline; True when the run
        has ended."""
        self.start_node(i)
        if self.state.finished:
            return True  # a node failed the run: nothing more starts, nothing is logged
        if self.fusion is not None and self.ready:
            self.fusion.run_ready(self)  # `ready` holds only what node i readied
        return self.state.finished

    def start_node(self, i: int) -> None:
        node = self.ir.nodes[i]
        node_id = node.id
        frozen = self.state.frozen.get(node_id)
        if frozen is not None:
            self.succeed(i, self.engine.values.get(frozen), frozen=frozen)
            return
        kind = node.kind
        try:
            if kind == K_JOIN:
                self.succeed(i, self.join_output(i))
            elif kind == K_CONDITION:
                self.succeed(i, evaluate(self.configs[i]["expr"], self.env))
            elif (
                kind == K_FUNCTION
                and node.effect == E_PURE
                and self.engine.inline_ok(self.configs[i])
            ):
                self.run_inline(i)
            elif kind == K_TIMER or kind == K_APPROVAL:
                self.engine.waits.start(self, i)
            else:
                self.spawn(i)
        except (ExprError, ValueError_, NodeFailure) as err:
            self.fail(node_id, err)

    def join_output(self, i: int) -> dict[str, Any]:
        """A join's output: the outputs of its inputs that ran, by node id."""
        out = {}
        for p in self.ir.predecessors(i):
            if self.routing.status[p] == core.DONE:
                out[self.ir.nodes[p].id] = self.values[p]
        return out

    def inputs_for(self, i: int) -> dict[str, Any]:
        """A function's inputs: its rendered `args`, or its predecessors' outputs by id."""
        args = self.configs[i].get("args")
        if args is not None:
            from aobc.runtime.env import render

            rendered: dict[str, Any] = render(args, self.env)
            return rendered
        return self.join_output(i)

    def context(self, i: int, attempt: int = 1, item: int | None = None) -> NodeContext:
        node_id = self.ir.nodes[i].id
        return NodeContext(
            self.state.run_id, node_id, idempotency_key(self.state.run_id, node_id, item), attempt
        )

    def run_inline(self, i: int) -> None:
        """A pure synchronous function: called right here, no task, no event before it."""
        cfg = self.configs[i]
        fn = self.engine.functions.resolve(cfg["fn"])
        if fn.is_async:
            self.spawn(i)
            return
        inputs = self.inputs_for(i)
        memo_key = self.memo(i, inputs)
        if memo_key is not None:
            cached = self.engine.memo_lookup(memo_key)
            if cached is not None:
                self.succeed(i, self.engine.values.get(cached), output=cached, cached=True)
                return
        attempts = self.ir.nodes[i].max_attempts
        for attempt in range(1, attempts + 1):
            try:
                # Most pure functions take only their inputs: build a context only if asked.
                ctx = self.context(i, attempt) if fn.arity == 2 else None
                value = call_sync(fn, inputs, ctx)  # type: ignore[arg-type]
                break
            except Exception as err:  # a workflow function failing is data, not a crash
                if attempt == attempts:
                    self.fail(self.ir.nodes[i].id, err)
                    return
                self.emit(
                    "node.failed", self.failure_data(self.ir.nodes[i].id, err, attempt, final=False)
                )
        self.succeed(i, value, memo_key=memo_key)

    def memo(self, i: int, inputs: Any) -> str | None:
        """The memo key of a pure node, or None: no memo.

        Full-fidelity runs memoize every pure node; fast-path runs only those cache-mark
        marked (`cache` in their config), where a lookup is known to pay. Replays never
        read the memo: they are there to see what the code does now.
        """
        if self.state.replay is not None or not (self.full or "cache" in self.configs[i]):
            return None
        return self.engine.memo_key(self.ir.nodes[i], inputs)

    def memo_inputs(self, i: int) -> Any:
        """What a pure task node's output depends on besides its config, or None."""
        cfg = self.configs[i]
        if cfg["type"] == "function":
            return self.inputs_for(i)
        if cfg["type"] == "http":
            from aobc.runtime.env import render

            return render({k: cfg.get(k) for k in ("method", "url", "headers", "body")}, self.env)
        return None

    def spawn(self, i: int) -> None:
        node = self.ir.nodes[i]
        node_id = node.id
        if node.effect == E_PURE:
            inputs = self.memo_inputs(i)
            key = self.memo(i, inputs) if inputs is not None else None
            if key is not None:
                cached = self.engine.memo_lookup(key)
                if cached is not None:
                    self.succeed(i, self.engine.values.get(cached), output=cached, cached=True)
                    return
                self.memo_pending[node_id] = key
        if node.effect != E_PURE or self.full:
            # A node interrupted by a crash starts again as a new attempt with the same key.
            attempt = self.state.attempts.get(node_id, 0) + 1
            key = idempotency_key(self.state.run_id, node_id)
            self.emit("node.started", {"node": node_id, "attempt": attempt, "key": key})
            self.engine.nodes.starting(self, i, attempt)
            # Write-ahead: the start of an effect is durable before the effect happens. (A
            # remote executor's job leaves in the transaction of the loop's next flush, which
            # is then soon enough: see NodeExecutors.batches_writes.)
            if not self.engine.nodes.batches_writes:
                self.flush()
        # The coroutine is made inside the task, so a task cancelled before it starts leaves
        # no never-awaited coroutine behind.
        task = asyncio.get_running_loop().create_task(self._guard(node_id, i))
        self.tasks[node_id] = task

    async def _guard(self, node_id: str, i: int) -> None:
        try:
            value = await self.engine.nodes.execute(self, i)
        except asyncio.CancelledError:
            raise
        except BaseException as err:  # reported as the node's failure
            await self.results.put((node_id, None, err))
            return
        await self.results.put((node_id, value, None))

    # --- completion ---------------------------------------------------------------------

    def succeed(
        self,
        i: int,
        value: Any,
        *,
        output: str | None = None,
        cached: bool = False,
        frozen: str | None = None,
        memo_key: str | None = None,
        extra: dict[str, Any] | None = None,
        route: bool = True,
    ) -> None:
        node = self.ir.nodes[i]
        persist = self.full or node.effect != E_PURE or frozen is not None
        if (persist or memo_key is not None) and output is None:
            output = self.engine.values.put(value)
            if memo_key is not None:
                self.engine.memo_store(memo_key, output)
        elif not persist:
            check_json(value)  # still refuse non-JSON outputs in fast mode
        self.values[i] = value
        if persist:
            data: dict[str, Any] = {"node": node.id, "output": output}
            if cached:
                data["cached"] = True
            if frozen is not None:
                data["frozen"] = True
            if extra:
                data.update(extra)
            self.emit("node.succeeded", data)
            if node.effect != E_PURE and not self.engine.nodes.batches_writes:
                self.flush()  # successors of an effect start only once it is durable
        else:
            # Fast path: a pure node's completion is not logged; a restart reruns it.
            self.state.done[node.id] = None
            self.state.order.append(node.id)
        if route:
            self.route(i, value)

    def route(self, i: int, value: Any) -> None:
        taken = self.edges.taken(i, value, self.env)
        ready, skipped = core.complete(self.routing, i, taken)
        if self.full:
            for s in skipped:
                self.emit("node.skipped", {"node": self.ir.nodes[s].id})
        self.ready.extend(ready)

    def failure_data(
        self, node_id: str, err: BaseException, attempt: int, *, final: bool
    ) -> dict[str, Any]:
        return failure_data(node_id, err, attempt, final=final, full=self.full)

    def fail(self, node_id: str, err: BaseException) -> None:
        for etype, data in failed(node_id, err, self.state.attempts.get(node_id, 1), self.full):
            self.emit(etype, data)
        self.end_status("failed")

    def finish(self) -> None:
        etype, data, _ = ending(
            self.routing, self.ir, self.outputs, self.values, self.env, self.engine.values
        )
        self.emit(etype, data)
        if etype == "run.succeeded":
            self.final_status = "succeeded"  # with the event, by the flush that follows
        else:
            self.end_status("failed")

    async def cancel_tasks(self) -> None:
        for t in self.tasks.values():
            t.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks.values(), return_exceptions=True)
        self.tasks.clear()

    async def cancel_all(self) -> None:
        await self.cancel_tasks()
        req = self.state.cancel or {}
        self.emit(
            "run.cancelled", {"by": req.get("by", "unknown"), "reason": req.get("reason", "")}
        )
        self.events.set_status(self.state.run_id, "cancelled")

    def result(self, status: str) -> RunResult:
        if status == "waiting":
            self.events.set_status(self.state.run_id, "waiting")
        waiting = [t.to_json() for t in self.state.tickets.values() if t.open]
        return RunResult(
            self.state.run_id, status, self.state.output_value, self.state.error, waiting
        )


def now() -> float:
    return time.time()


Clock = Callable[[], float]
