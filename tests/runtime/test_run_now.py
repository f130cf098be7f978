"""Runs recorded whole (`Engine.run_now`): a run whose every node runs inline (pure
synchronous functions, conditions, joins) ends without awaiting anything and is written in
one go, its record already final. It must log exactly what creating the run and driving it
(`Engine.create`, then `Engine.resume`) logs: the same events with the same data in the same
order, the same outputs in the CAS, the same result, the same calls in the same order. Any
other run falls back to that general path.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import wf_functions
from harness import HERE
from hypothesis import given, settings
from hypothesis import strategies as st

from aobc.backend.lower import lower
from aobc.canonical import canonical_bytes
from aobc.errors import ExecutionError
from aobc.frontend import load_text
from aobc.ir import (
    ConditionNode,
    Edge,
    Effect,
    FrozenDict,
    FunctionNode,
    InputDecl,
    JoinMode,
    JoinNode,
    Node,
    OutputDecl,
    RetryPolicy,
    ValueType,
    Workflow,
)
from aobc.runtime.driver import RunResult, succeeded_json
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.execir import ExecIR
from aobc.runtime.stores.base import Conflict, Event, EventLog
from aobc.runtime.stores.embedded import EmbeddedStores
from aobc.runtime.stores.memory import MemoryEventLog
from aobc.runtime.stores.sqlite import SqliteEventLog
from aobc.runtime.values import ValueError_

# --- the two paths -------------------------------------------------------------------------


@dataclass
class Outcome:
    """Everything a run left behind that does not depend on its id or the time."""

    status: str
    outputs: Any
    error: str | None
    events: list[tuple[int, str, dict[str, Any]]]  # (seq, type, data) as stored
    notified: list[tuple[int, str, dict[str, Any]]]  # what `on_event` saw, in order
    record: tuple[Any, ...]  # the run record without its id and times
    steps: list[dict[str, Any]]  # the inputs of every `step` call, in order
    missing: list[str]  # output digests the events name and the CAS does not hold


def _engine(
    stores: EmbeddedStores, seen: list[Event], listen: bool = True, **options: Any
) -> Engine:
    """An engine whose `on_event` notes every event in `seen`; with `listen` False, an engine
    nobody listens to (which a run recorded whole need not hand its stored events back)."""
    options.setdefault("search_path", [str(HERE)])
    return Engine(
        Stores(stores.events, stores.cas, stores.dir),
        EngineOptions(on_event=seen.append if listen else None, **options),
    )


def _outcome(stores: EmbeddedStores, result: RunResult, seen: list[Event]) -> Outcome:
    events = stores.events.read(result.run_id)
    record = stores.events.get_run(result.run_id)
    assert record is not None
    assert record.created <= record.updated
    digests = [e.data["output"] for e in events if e.data.get("output")]
    digests += [e.data["outputs"] for e in events if e.type == "run.succeeded"]
    return Outcome(
        result.status,
        result.outputs,
        result.error,
        [(e.seq, e.type, e.data) for e in events],
        [(e.seq, e.type, e.data) for e in seen],
        (record.status, record.workflow, record.ir_hash, record.namespace, record.parent,
         record.idempotency_key, record.labels),
        [],
        [d for d in digests if not stores.cas.has(d)],
    )  # fmt: skip


def recorded_whole(
    stores: EmbeddedStores, ir: ExecIR, inputs: dict[str, Any], **options: Any
) -> Outcome:
    """The run through `Engine.run_now`, which must take it."""
    seen: list[Event] = []
    engine = _engine(stores, seen, **options)
    assert engine.listening() == (engine.options.on_event is not None)
    before = len(wf_functions.STEPS)
    result = engine.run_now(ir, inputs)
    assert result is not None, "run_now did not take a run of inline nodes"
    outcome = _outcome(stores, result, seen)
    outcome.steps = wf_functions.STEPS[before:]
    return outcome


def driven(stores: EmbeddedStores, ir: ExecIR, inputs: dict[str, Any], **options: Any) -> Outcome:
    """The run created, then driven by the driver's loop: the general path."""
    seen: list[Event] = []
    engine = _engine(stores, seen, **options)
    before = len(wf_functions.STEPS)

    async def go() -> RunResult:
        try:
            first = engine.create(ir, inputs)
            return await engine.resume(first[0].run_id, created=first)
        finally:
            await engine.close()

    result = asyncio.run(go())
    outcome = _outcome(stores, result, seen)
    outcome.steps = wf_functions.STEPS[before:]
    return outcome


def _same(a: Callable[[], Outcome], b: Callable[[], Outcome]) -> Outcome | str:
    """Both outcomes, which must be equal; or the same exception from both, named."""

    def either(run: Callable[[], Outcome]) -> Outcome | str:
        try:
            return run()
        except Exception as err:  # e.g. a fast run's workflow output JSON cannot carry
            return f"{type(err).__name__}: {err}"

    first = either(a)
    assert either(b) == first
    return first


# --- generated workflows -------------------------------------------------------------------

NUMERIC = ("step", "args", "retry", "cached")


def _node(draw: st.DrawFn, nid: str, kind: str, parents: int, numeric: list[int]) -> Node:
    """A node of `kind`; `numeric`: its parents whose outputs are numbers."""
    if kind == "join":
        mode = draw(st.sampled_from(list(JoinMode)))
        k = draw(st.integers(1, parents)) if mode is JoinMode.N_OF_M else None
        return JoinNode(id=nid, effect=Effect.PURE, mode=mode, n=k)
    if kind == "condition":
        expr = (
            f"n{draw(st.sampled_from(numeric))} > {draw(st.integers(0, 96))}"
            if numeric
            else "inputs.x > 4"
        )
        return ConditionNode(id=nid, effect=Effect.PURE, expr=expr)
    fn = {"boom": "wf_functions:boom", "bad": "wf_functions:not_json"}.get(
        kind, "wf_functions:step"
    )
    extra: dict[str, Any] = {}
    if kind == "args":
        ref = f"${{n{draw(st.sampled_from(numeric))}}}" if numeric else "${inputs.x}"
        extra["args"] = FrozenDict({"a": ref})
    elif kind == "retry":
        extra["retry"] = RetryPolicy(max_attempts=2, backoff_ms=0)
    elif kind == "cached":
        extra["cache"] = FrozenDict({"key": ()})
    return FunctionNode(id=nid, effect=Effect.PURE, fn=fn, **extra)


@st.composite
def inline_workflows(draw: st.DrawFn) -> tuple[Workflow, dict[str, Any]]:
    """DAGs of inline nodes only: pure `step` functions (fusable), functions with `args`
    reading a parent or the inputs, with retries or cache-marked (which run on the driver's
    path), joins, conditions with labelled branches, guarded edges; rarely a function that
    raises or returns what JSON cannot carry. Outputs name nodes or compute on them."""
    n = draw(st.integers(1, 9))
    # A third are pipelines of `step` with plain edges, which fuse into one region, and now
    # and then one of them fails or returns what JSON cannot carry. Some others are DAGs of
    # such functions only, with guarded edges, which need no driver on the fast path.
    shape = draw(st.integers(0, 5))
    pipeline = shape <= 1
    plain = shape == 2
    kinds: list[str] = []
    nodes: list[Node] = []
    edges: list[Edge] = []
    for i in range(n):
        if pipeline:
            parents = [i - 1] if i else []
            kind = draw(st.sampled_from(["step"] * 12 + ["boom", "bad"]))
        else:
            parents = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
            other = ["boom", "bad"] if plain else ["args", "retry", "cached", "join", "condition"]
            kind = draw(st.sampled_from(["step"] * 8 + other + ["boom", "bad"]))
        if kind == "join" and len(parents) < 2:
            kind = "step"
        numeric = [p for p in parents if kinds[p] in NUMERIC]
        nodes.append(_node(draw, f"n{i}", kind, len(parents), numeric))
        kinds.append(kind)
        for p in parents:
            label = when = None
            if kinds[p] == "condition":
                label = draw(st.sampled_from(["true", "false", "else", None]))
            elif kinds[p] in NUMERIC and not pipeline and draw(st.integers(0, 3)) == 0:
                when = f"n{p} > {draw(st.integers(0, 96))}"
            edges.append(Edge(src=f"n{p}", dst=f"n{i}", label=label, when=when))
    outputs = [OutputDecl(name="last", expr=f"n{n - 1}")]
    if draw(st.booleans()):
        k = draw(st.integers(0, n - 1))
        computed = kinds[k] in NUMERIC and not pipeline  # a pipeline's outputs name nodes
        outputs.append(OutputDecl(name="more", expr=f"n{k} + 1" if computed else f"n{k}"))
    wf = Workflow(
        name="now",
        nodes=tuple(nodes),
        edges=tuple(edges),
        inputs=(InputDecl(name="x", type=ValueType.INT, default=3, required=False),),
        outputs=tuple(outputs),
    )
    return wf, draw(st.sampled_from([{}, {"x": 5}]))


@pytest.mark.parametrize("listen", [True, False], ids=["listened", "unheard"])
@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "unfused"])
@pytest.mark.parametrize("mode", ["fast", "full"])
@given(case=inline_workflows())
@settings(max_examples=150)
def test_a_run_recorded_whole_logs_what_a_driven_run_logs(
    mode: str, fuse: bool, listen: bool, case: tuple[Workflow, dict[str, Any]]
) -> None:
    # Unheard (no `on_event`), the memory log records the run without handing its events
    # back (`record_finished`), taking the JSON the engine has at hand: what it stores
    # must still read back as the driven run's log. (Its engine has no search path: a run
    # with no inputs then starts with the data every such run shares.)
    wf, inputs = case
    ir = lower(wf)
    opts: dict[str, Any] = {"mode": mode, "fuse": fuse, "listen": listen}
    if not listen:
        opts["search_path"] = []
    outcome = _same(
        lambda: recorded_whole(EmbeddedStores.memory(), ir, inputs, **opts),
        lambda: driven(EmbeddedStores.memory(), ir, inputs, **opts),
    )
    if isinstance(outcome, str):
        # Only a fast run's workflow output that JSON cannot carry escapes as an exception
        # (from both paths alike); every other failure is the run's.
        assert mode == "fast" and "not JSON" in outcome, outcome
        return
    assert outcome.status in ("succeeded", "failed"), outcome.error
    assert outcome.events[0][1] == "run.started"
    assert outcome.events[-1][1] == f"run.{outcome.status}"
    assert outcome.notified == (outcome.events if listen else [])
    assert outcome.missing == []


def test_the_generated_workflows_reach_every_way_through() -> None:
    # So that the property above is not vacuous: generated runs succeed and fail, some are
    # one fused region, which a fast run calls as the whole run, and some have no fused
    # region (unfused) and an inline function for every node, which a fast run hands to
    # the core whole (`Engine._run_lean`), and which also succeed, fail, and take guarded
    # edges.
    seen: set[str] = set()

    @settings(max_examples=100, database=None, derandomize=True)
    @given(case=inline_workflows())
    def look(case: tuple[Workflow, dict[str, Any]]) -> None:
        wf, inputs = case
        ir = lower(wf)
        engine = _engine(EmbeddedStores.memory(), [], mode="fast")
        engine.store_ir(ir, "now")
        fusion = engine.fusion(ir)
        if fusion is not None and fusion.whole is not None and engine.plan(ir).direct_outputs:
            seen.add("whole")
        try:
            result = engine.run_now(ir, inputs)
        except ValueError_:  # a fast run's workflow output JSON cannot carry
            seen.add("raised")
            return
        assert result is not None
        seen.add(result.status)
        unfused = _engine(EmbeddedStores.memory(), [], mode="fast", fuse=False)
        if unfused._lean(unfused.plan(ir)):
            lean = unfused.run_now(ir, inputs)
            assert lean is not None and lean.status == result.status
            seen.add(f"lean {lean.status}")
            if any(e.when is not None for e in wf.edges):
                seen.add("lean guarded")

    look()
    assert {"whole", "succeeded", "failed", "raised"} <= seen
    assert {"lean succeeded", "lean failed", "lean guarded"} <= seen


# --- the same on SQLite ------------------------------------------------------------------

CHAIN = """
workflow chain {
  output o = c
  a = function "wf_functions:step" { effect: pure }
  b = function "wf_functions:step" { effect: pure }
  c = function "wf_functions:step" { effect: pure }
  a -> b -> c
}
"""

BRANCHY = """
workflow branchy {
  input x: int = 3
  output o = j
  output p = hi.value
  a = function "wf_functions:step" { effect: pure }
  big = condition "a > 0"
  hi = function "wf_functions:inc" { effect: pure, args: { x: inputs.x } }
  lo = function "wf_functions:step" { effect: pure }
  j = join any
  a -> big
  big -[true]-> hi
  big -[false]-> lo
  hi -> j
  lo -> j
}
"""

FAILING = """
workflow failing {
  output o = c
  a = function "wf_functions:step" { effect: pure }
  b = function "wf_functions:boom" { effect: pure }
  c = function "wf_functions:step" { effect: pure }
  a -> b -> c
}
"""


@pytest.mark.parametrize("durable", [False, True], ids=["normal", "durable"])
@pytest.mark.parametrize("mode", ["fast", "full"])
@pytest.mark.parametrize("source", [CHAIN, BRANCHY, FAILING], ids=["chain", "branchy", "failing"])
def test_on_sqlite_a_run_recorded_whole_is_a_driven_run(
    tmp_path: Path, source: str, mode: str, durable: bool
) -> None:
    ir = lower(load_text(source, "w.aob"))
    whole = EmbeddedStores.open(tmp_path / "whole", durable=durable)
    drove = EmbeddedStores.open(tmp_path / "drove", durable=durable)
    try:
        outcome = _same(
            lambda: recorded_whole(whole, ir, {}, mode=mode),
            lambda: driven(drove, ir, {}, mode=mode),
        )
    finally:
        whole.close()
        drove.close()
    assert isinstance(outcome, Outcome), outcome
    assert outcome.status == ("failed" if source is FAILING else "succeeded")
    assert outcome.missing == []
    # Committed: another connection (a new store on the same files) reads it all back.
    with EmbeddedStores.open(tmp_path / "whole") as again:
        (record,) = again.events.list_runs()
        assert record.status == outcome.status
        assert [(e.seq, e.type, e.data) for e in again.events.read(record.run_id)] == (
            outcome.events
        )


# --- when it applies -------------------------------------------------------------------------


def _record_statuses(stores: EmbeddedStores) -> tuple[list[str], Engine]:
    """An engine whose `on_event` notes the run's stored status at each event it reports."""
    statuses: list[str] = []
    events = stores.events

    def note(e: Event) -> None:
        record = events.get_run(e.run_id)
        statuses.append(record.status if record is not None else "absent")

    engine = Engine(
        Stores(stores.events, stores.cas, stores.dir),
        EngineOptions(search_path=[str(HERE)], on_event=note),
    )
    return statuses, engine


def _start(engine: Engine, ir: ExecIR, **kw: Any) -> RunResult:
    async def go() -> RunResult:
        try:
            return await engine.start(ir, {}, **kw)
        finally:
            await engine.close()

    return asyncio.run(go())


def test_start_records_a_run_of_inline_nodes_whole(tmp_path: Path) -> None:
    with EmbeddedStores.open(tmp_path / "s") as stores:
        statuses, engine = _record_statuses(stores)
        result = _start(engine, lower(load_text(CHAIN, "w.aob")))
        assert result.status == "succeeded"
        # Reported only once written, and written with its final status.
        assert statuses == ["succeeded"] * len(stores.events.read(result.run_id)) != []


EFFECT = """
workflow effect {
  output o = b
  a = function "wf_functions:step" { effect: pure }
  b = function "wf_functions:record" { effect: effectful }
  a -> b
}
"""

ASYNC = """
workflow slow {
  output o = a
  a = function "wf_functions:slow_double" { effect: pure, args: { x: 2 } }
}
"""

TIMER = """
workflow nap {
  output o = b
  a = timer 1ms
  b = function "wf_functions:step" { effect: pure }
  a -> b
}
"""


@pytest.mark.parametrize(
    "source", [EFFECT, ASYNC, TIMER], ids=["an effect", "an async function", "a timer"]
)
def test_a_run_that_must_await_is_created_then_driven(tmp_path: Path, source: str) -> None:
    ir = lower(load_text(source, "w.aob"))
    with EmbeddedStores.open(tmp_path / "s") as stores:
        statuses, engine = _record_statuses(stores)
        assert engine.run_now(ir, {}) is None
        assert stores.events.list_runs() == []  # it wrote no run
        result = _start(engine, ir)
        assert result.status == "succeeded", result.error
        assert statuses[0] == "running"  # `run.started` was written (and reported) first
        assert statuses[-1] == "succeeded"


def test_an_idempotency_key_takes_the_general_path(tmp_path: Path) -> None:
    ir = lower(load_text(CHAIN, "w.aob"))
    with EmbeddedStores.open(tmp_path / "s") as stores:
        statuses, engine = _record_statuses(stores)
        first = _start(engine, ir, idempotency_key="k")
        assert statuses[0] == "running"
        again = _start(engine, ir, idempotency_key="k")
        assert again.run_id == first.run_id and again.outputs == first.outputs
        assert len(stores.events.list_runs()) == 1


class _PlainLog(MemoryEventLog):
    """An event log without `create_finished`, as the distributed ones are."""

    create_finished = None  # type: ignore[assignment]


def test_a_log_that_cannot_record_a_run_whole_gets_it_created_then_driven() -> None:
    log = _PlainLog()
    stores = EmbeddedStores.memory()
    stores.events = log
    seen: list[Event] = []
    engine = _engine(stores, seen)
    ir = lower(load_text(CHAIN, "w.aob"))
    assert engine.run_now(ir, {}) is None
    assert isinstance(log, EventLog)
    result = _start(engine, ir)
    assert result.status == "succeeded"
    assert [e.type for e in log.read(result.run_id)][-1] == "run.succeeded"


def test_a_run_id_that_is_taken_is_refused_and_the_run_left_alone(tmp_path: Path) -> None:
    ir = lower(load_text(CHAIN, "w.aob"))
    with EmbeddedStores.open(tmp_path / "s") as stores:
        _, engine = _record_statuses(stores)
        first = _start(engine, ir, run_id="r-taken")
        before = stores.events.read("r-taken")
        with pytest.raises(Conflict):
            _start(engine, ir, run_id="r-taken")
        assert stores.events.read("r-taken") == before
        assert first.status == "succeeded"


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner)
    | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)  # fmt: skip


@given(value=JSON, digest=st.text(max_size=70))
def test_the_json_of_run_succeeded_is_its_canonical_json(value: Any, digest: str) -> None:
    # The engine hands a log that can take it the JSON of `run.succeeded` made from the
    # outputs' JSON (which the CAS got), rather than encoding them again: the same bytes.
    data = {"outputs": digest, "value": value}
    assert succeeded_json(digest, canonical_bytes(value)) == canonical_bytes(data).decode()


@pytest.mark.parametrize("name", ["chain", '\u00e9t\u00e9 "quoted"\n'])
def test_a_run_with_no_inputs_starts_with_the_data_every_such_run_shares(name: str) -> None:
    # Made once per IR and mode, with its canonical JSON, which an unheard run hands the log.
    ir = msgspec.structs.replace(lower(load_text(CHAIN, "w.aob")), name=name)
    stores = EmbeddedStores.memory()
    engine = _engine(stores, [], listen=False, mode="fast", search_path=[])
    digest = engine.store_ir(ir, ir.name)
    started, text = engine._bare_started(engine.plan(ir), digest)
    assert started == engine._started(ir, digest, {}) and "search_path" not in started
    assert text == canonical_bytes(started).decode()
    runs = [engine.run_now(ir, {}) for _ in range(2)]
    assert engine._bare_started(engine.plan(ir), digest)[0] is started
    for result in runs:
        assert result is not None and result.status == "succeeded"
        (first, *_) = stores.events.read(result.run_id)
        assert first.type == "run.started" and first.data == started
    # A full-fidelity engine on the same IR starts its runs with its own mode.
    full = _engine(stores, [], listen=False, mode="full", search_path=[])
    assert full._bare_started(full.plan(ir), digest)[0]["mode"] == "full"


def test_an_engine_whose_notify_is_replaced_is_told_every_event() -> None:
    # Not only `on_event`: a subclass's `notify`, or one set on the engine, listens too.
    seen: list[Event] = []

    class Told(Engine):
        def notify(self, event: Event) -> None:
            seen.append(event)

    ir = lower(load_text(CHAIN, "w.aob"))
    stores = EmbeddedStores.memory()
    told = Told(Stores(stores.events, stores.cas), EngineOptions(mode="fast"))
    plain = Engine(Stores(stores.events, stores.cas), EngineOptions(mode="fast"))
    plain.notify = seen.append  # type: ignore[method-assign]
    for engine in (told, plain):
        assert engine.listening()
        result = engine.run_now(ir, {})
        assert result is not None
        assert [(e.run_id, e.type) for e in seen] == [
            (result.run_id, "run.started"),
            (result.run_id, "run.succeeded"),
        ]
        assert seen == stores.events.read(result.run_id)
        seen.clear()
    assert not Engine(Stores(stores.events, stores.cas)).listening()


@pytest.mark.parametrize("inputs", [None, {}])
def test_a_run_given_no_inputs_gets_the_defaults(inputs: dict[str, Any] | None) -> None:
    ir = lower(load_text(BRANCHY, "w.aob"))
    stores = EmbeddedStores.memory()
    result = _engine(stores, [], listen=False, search_path=[]).run_now(ir, inputs)
    assert result is not None and result.status == "succeeded", result
    assert stores.events.read(result.run_id)[0].data["inputs"] == {"x": 3}
    with pytest.raises(ExecutionError):  # and one that needs inputs is refused without
        _engine(stores, []).run_now(lower(load_text(NEEDS, "w.aob")), inputs)


NEEDS = """
workflow needs {
  input x: int
  output o = a
  a = function "wf_functions:step" { effect: pure }
}
"""


@pytest.mark.parametrize("log", ["memory", "sqlite"])
def test_create_finished_records_a_run_whole(tmp_path: Path, log: str) -> None:
    from aobc.runtime.stores.base import RunRecord

    events: Any = MemoryEventLog() if log == "memory" else SqliteEventLog(tmp_path / "events.db")
    try:
        record = RunRecord("r", "wf", "ir1", "succeeded", 1.0, 2.0, "ns", "p", "k", {"a": 1})
        stored = events.create_finished(
            record, [("run.started", {"x": (1, 2)}), ("run.succeeded", {"value": 3})]
        )
        assert [(e.seq, e.type, e.data) for e in stored] == [
            (1, "run.started", {"x": [1, 2]}),  # what `read` gives: JSON
            (2, "run.succeeded", {"value": 3}),
        ]
        assert events.read("r") == stored
        assert events.get_run("r") == record
        assert events.find_run("k", namespace="ns") == record
        assert [r.run_id for r in events.list_runs(status="succeeded")] == ["r"]
        # The same key returns the run's first event (its `run.started`), as for create_run.
        again = events.create_run(
            RunRecord("r2", "wf", "ir1", "running", 3.0, 3.0, "ns", None, "k"), []
        )
        assert again == stored[:1]
        with pytest.raises(Conflict):
            events.create_finished(record, [("run.started", {})])  # the id is taken
        other = RunRecord("r3", "wf", "ir1", "failed", 1.0, 2.0, "ns", None, "k")
        with pytest.raises(Conflict):
            events.create_finished(other, [("run.started", {})])  # the key is taken
        assert events.get_run("r3") is None and events.read("r3") == []
        with pytest.raises((TypeError, ValueError)):
            events.create_finished(
                RunRecord("r4", "wf", "ir1", "failed", 1.0, 2.0), [("run.started", {"x": {1}})]
            )
        assert events.get_run("r4") is None  # a bad event writes nothing
    finally:
        events.close()


def test_record_finished_records_a_run_whole_taking_the_json_it_is_given() -> None:
    from aobc.runtime.stores.base import RunRecord

    events = MemoryEventLog()
    record = RunRecord("r", "wf", "ir1", "succeeded", 1.0, 2.0, "ns", None, "k", {"a": 1})
    given = canonical_bytes({"value": [1.5, "\u00e9"]}).decode()
    events.record_finished(
        record,
        [("run.started", {"x": (1, 2)}, None), ("run.succeeded", {"ignored": 0}, given)],
    )
    assert [(e.seq, e.type, e.data) for e in events.read("r")] == [
        (1, "run.started", {"x": [1, 2]}),  # encoded by the log: JSON, as `read` gives it
        (2, "run.succeeded", {"value": [1.5, "\u00e9"]}),  # stored as given
    ]
    assert events.get_run("r") == record
    assert events.find_run("k", namespace="ns") == record
    with pytest.raises(Conflict):
        events.record_finished(record, [("run.started", {}, None)])  # the id is taken
    other = RunRecord("r3", "wf", "ir1", "failed", 1.0, 2.0, "ns", None, "k")
    with pytest.raises(Conflict):
        events.record_finished(other, [("run.started", {}, None)])  # the key is taken
    bad = RunRecord("r4", "wf", "ir1", "failed", 1.0, 2.0)
    with pytest.raises((TypeError, ValueError)):
        events.record_finished(bad, [("run.started", {"x": {1}}, None)])
    assert events.get_run("r3") is None and events.get_run("r4") is None
    assert events.read("r4") == []  # a bad event writes nothing


# --- a crash before the write -----------------------------------------------------------------

DIES = """
workflow dies {
  output o = c
  a = function "wf_functions:step" { effect: pure }
  b = function "wf_functions:die_if_told" { effect: pure }
  c = function "wf_functions:step" { effect: pure }
  a -> b -> c
}
"""

_RUN = """
import asyncio, sys
from aobc.backend.lower import lower
from aobc.frontend import load_text
from aobc.runtime.engine import Engine, EngineOptions, Stores
from aobc.runtime.stores.embedded import EmbeddedStores

stores = EmbeddedStores.open(sys.argv[1], durable=True)
engine = Engine(
    Stores(stores.events, stores.cas, stores.dir),
    EngineOptions(mode="full", search_path=[sys.argv[2]]),
)
result = asyncio.run(engine.start(lower(load_text(sys.argv[3], "w.aob")), {}))
print(result.status)
"""


def test_a_crash_in_the_middle_of_a_run_leaves_no_trace_and_a_new_start_runs_it(
    tmp_path: Path,
) -> None:
    store = tmp_path / "s"

    def run(die: bool) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "WF_DIE"}
        if die:
            env["WF_DIE"] = "1"
        return subprocess.run(
            [sys.executable, "-c", _RUN, str(store), str(HERE), DIES],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    killed = run(die=True)
    assert killed.returncode == -9, killed.stderr
    with EmbeddedStores.open(store) as stores:
        assert stores.events.list_runs() == []  # nothing half-written: no run at all
    done = run(die=False)
    assert done.returncode == 0 and done.stdout.strip() == "succeeded", done.stderr
    with EmbeddedStores.open(store) as stores:
        (record,) = stores.events.list_runs()
        assert record.status == "succeeded"
        types = [e.type for e in stores.events.read(record.run_id)]
        assert types == ["run.started"] + ["node.succeeded"] * 3 + ["run.succeeded"]
