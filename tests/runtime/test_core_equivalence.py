"""The compiled coordinator core (`_interp`) behaves exactly as the reference (`interp_py`).

Three levels: the routing rules of `test_coordinator` on each implementation; both cores
driven in lockstep on the same graphs, compared call by call (`complete`, `skip`, `drain`,
including a function or a `taken` row that raises mid-way); and whole workflows run by the
engine on each core, compared event by event, in fast and full mode.

The compiled core must be built wherever these tests run: its absence fails them, unless
`AOBC_PUREPYTHON` is set (a deliberately pure-Python environment).
"""

from __future__ import annotations

import asyncio
import importlib
import os
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import wf_functions
from harness import Harness
from hypothesis import given, settings
from hypothesis import strategies as st
from test_coordinator import graphs, ir_of, oracle

from aobc.backend.lower import lower
from aobc.ir import (
    ConditionNode,
    Edge,
    Effect,
    FrozenDict,
    FunctionNode,
    JoinMode,
    JoinNode,
    Node,
    OutputDecl,
    RetryPolicy,
    Workflow,
)
from aobc.runtime import core, interp_py
from aobc.runtime.driver import RunResult
from aobc.runtime.execir import J_ALL, K_JOIN, ExecIR
from aobc.runtime.stores.embedded import EmbeddedStores

IMPLS = ("python", "cython")
Case = tuple[ExecIR, dict[tuple[int, int], bool], int]


def compiled() -> ModuleType:
    """The Cython core; a test that needs it fails (never skips) if it was not built."""
    try:
        return importlib.import_module("aobc.runtime._interp")
    except ImportError as err:
        if os.environ.get("AOBC_PUREPYTHON"):
            pytest.skip("AOBC_PUREPYTHON is set and the compiled core is not built")
        pytest.fail(
            f"the compiled core aobc.runtime._interp does not import ({err}): build it with "
            "`./dev setup` (needs Cython and a C compiler), or set AOBC_PUREPYTHON=1 to test "
            "the pure-Python core alone",
            pytrace=False,
        )


def impl(name: str) -> ModuleType:
    return interp_py if name == "python" else compiled()


# --- the routing rules, on each implementation ---------------------------------------------


def completion_order(mod: ModuleType, case: Case) -> list[int]:
    """The final statuses after completing ready nodes in a seeded random order."""
    ir, taken, seed = case
    rng = random.Random(seed)
    state, ready = mod.start(ir)
    while ready:
        i = ready.pop(rng.randrange(len(ready)))
        new, _ = mod.complete(state, i, [taken.get((i, j), True) for j in ir.successors(i)])
        ready.extend(new)
    return list(state.status)


@pytest.mark.parametrize("name", IMPLS)
@given(case=graphs())
@settings(max_examples=200)
def test_any_completion_order_matches_the_rules(name: str, case: Case) -> None:
    ir, taken, _ = case
    assert completion_order(impl(name), case) == oracle(ir, taken)


@pytest.mark.parametrize("name", IMPLS)
def test_skips_propagate_through_plain_nodes_and_stop_at_joins(name: str) -> None:
    mod = impl(name)
    ir = ir_of(
        """
        workflow s {
          c = condition true
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          after_b = function "m:c" { effect: pure }
          j = join any
          c -[true]-> a -> j
          c -[false]-> b -> after_b -> j
        }
        """
    )
    state, ready = mod.start(ir)
    idx = {n.id: i for i, n in enumerate(ir.nodes)}
    assert ready == [idx["c"]]
    new, skipped = mod.complete(state, idx["c"], [True, False])
    assert new == [idx["a"]]
    assert sorted(skipped) == sorted([idx["b"], idx["after_b"]])
    assert state.status[idx["j"]] == mod.PENDING
    new, _ = mod.complete(state, idx["a"], None)
    assert new == [idx["j"]]
    assert not mod.settled(state)
    mod.complete(state, idx["j"], None)
    assert mod.settled(state)


@pytest.mark.parametrize("name", IMPLS)
def test_n_of_m_is_skipped_as_soon_as_too_few_can_arrive(name: str) -> None:
    mod = impl(name)
    ir = ir_of(
        """
        workflow n {
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          c = function "m:c" { effect: pure }
          two = join 2
          a -> two
          b -> two
          c -> two
        }
        """
    )
    state, _ = mod.start(ir)
    idx = {n.id: i for i, n in enumerate(ir.nodes)}
    assert mod.skip(state, idx["a"]) == ([], [])
    assert state.status[idx["two"]] == mod.PENDING
    assert mod.skip(state, idx["b"]) == ([], [idx["two"]])


@pytest.mark.parametrize("name", IMPLS)
def test_status_is_read_and_written_by_index_as_the_driver_does(name: str) -> None:
    mod = impl(name)
    ir = ir_of('workflow w { a = function "m:a" { effect: pure } }')
    state, _ = mod.start(ir)
    assert state.status == [mod.READY]
    state.status[0] = mod.RUNNING
    assert state.status[0] == mod.RUNNING
    assert state.status[-1] == mod.RUNNING
    assert [i for i, s in enumerate(state.status) if s == mod.RUNNING] == [0]
    assert len(state.status) == 1
    assert list(state.arrived) == [0] and list(state.taken) == [0]
    assert state.current == -1
    with pytest.raises(IndexError):
        state.status[1] = mod.DONE
    with pytest.raises(IndexError):
        mod.complete(state, 1, None)  # a node that does not exist
    assert not mod.settled(state)


def test_the_constants_are_the_reference_ones() -> None:
    mod = compiled()
    for name in ("PENDING", "READY", "RUNNING", "DONE", "SKIPPED", "FAILED", "STATUS_NAMES"):
        assert getattr(mod, name) == getattr(interp_py, name), name


# --- both cores in lockstep ---------------------------------------------------------------


def snapshot(state: Any) -> tuple[list[int], list[int], list[int], int]:
    return list(state.status), list(state.arrived), list(state.taken), state.current


@given(case=graphs(), skips=st.sets(st.integers(0, 13), max_size=3))
@settings(max_examples=200)
def test_complete_and_skip_agree_call_by_call(case: Case, skips: set[int]) -> None:
    """Same graph, same order, some nodes told to skip: every return and state the same."""
    ir, taken, seed = case
    cy = compiled()
    rng = random.Random(seed)
    (a, ready_a), (b, ready_b) = interp_py.start(ir), cy.start(ir)
    assert ready_a == ready_b and snapshot(a) == snapshot(b)
    ready = ready_a
    while ready:
        i = ready.pop(rng.randrange(len(ready)))
        if i in skips:
            got_a, got_b = interp_py.skip(a, i), cy.skip(b, i)
        else:
            row = [taken.get((i, j), True) for j in ir.successors(i)]
            row_or_none = None if all(row) and rng.random() < 0.5 else row
            got_a, got_b = interp_py.complete(a, i, row_or_none), cy.complete(b, i, row_or_none)
        assert got_a == got_b
        assert snapshot(a) == snapshot(b)
        ready.extend(got_a[0])
    assert interp_py.settled(a) == cy.settled(b)


def region_case(mod: ModuleType, case: Case) -> Any:
    """Complete some nodes outside a seeded random region, then complete the region in bulk
    (`complete_region`) and member by member (`complete_many`), each on its own `copy`."""
    ir, taken, seed = case
    rng = random.Random(seed)
    members = [i for i in ir.topo if rng.random() < 0.5]
    state, ready = mod.start(ir)
    for _ in range(rng.randrange(len(ir.nodes) + 1)):
        outside = [i for i in ready if i not in members]
        if not outside:
            break
        i = outside[rng.randrange(len(outside))]
        ready.remove(i)
        new, _ = mod.complete(state, i, [taken.get((i, j), True) for j in ir.successors(i)])
        ready.extend(new)
    before = snapshot(state)
    region = mod.Region(ir, members)
    ok = mod.region_ready(state, region)
    bulk_state, many_state = mod.copy(state), mod.copy(state)
    assert snapshot(bulk_state) == before
    bulk = mod.complete_region(bulk_state, region)
    many = mod.complete_many(many_state, members)
    assert bulk == many
    assert snapshot(bulk_state) == snapshot(many_state)
    assert snapshot(state) == before  # a copy shares nothing that changes
    fields = ("members", "inner", "roots", "rest", "inputs", "outer")
    return ok, bulk, snapshot(bulk_state), [list(getattr(region, f)) for f in fields]


@given(case=graphs())
@settings(max_examples=200)
def test_a_region_completes_in_bulk_exactly_as_member_by_member(case: Case) -> None:
    """The fused region's bulk completion is `complete_many`, on both cores, and the cores
    agree on the region's tables and on whether it may run."""
    assert region_case(interp_py, case) == region_case(compiled(), case)


def test_region_ready_wants_inputs_done_roots_ready_and_the_rest_pending() -> None:
    ir = ir_of(
        """
        workflow w {
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          c = function "m:c" { effect: pure }
          d = function "m:d" { effect: pure }
          a -> b
          b -> c
          a -> c
          c -> d
        }
        """
    )
    idx = {n.id: k for k, n in enumerate(ir.nodes)}
    small = ir_of('workflow v {\n  x = function "m:x" { effect: pure }\n}')
    for mod in (interp_py, compiled()):
        state, _ = mod.start(ir)
        region = mod.Region(ir, [idx["b"], idx["c"]])
        assert list(region.inputs) == [idx["a"]] and list(region.outer) == [idx["d"]]
        assert not mod.region_ready(state, region)  # a has not run
        mod.complete(state, idx["a"], None)
        assert mod.region_ready(state, region)
        assert mod.complete_region(state, region) == [idx["d"]]
        assert not mod.region_ready(state, region)  # done: never twice
        state, _ = mod.start(ir)
        mod.complete(state, idx["a"], [True, False])  # a -> c untaken: c is skipped
        assert not mod.region_ready(state, region)
        with pytest.raises(ValueError, match="region of a 4-node IR"):
            mod.complete_region(mod.start(small)[0], region)
        with pytest.raises(ValueError, match="distinct node indices"):
            mod.Region(ir, [idx["b"], idx["b"]])


def drive(mod: ModuleType, case: Case, inline_p: float, fail: tuple[str, int] | None) -> Any:
    """Drive `mod` as the driver does: drain, with the nodes it hands back completed by the
    callback (which readies their successors by appending them to `ready`).

    Nodes run inline with probability `inline_p`; `fail` makes one node's function raise
    ("fn", i), its `taken` row too short, so `complete` raises mid-way ("taken", i), the
    callback raise on it ("start", i), or the callback end the run after it ("stop", i).
    Every node is checked to run when no smaller one is ready. Returns everything
    observable, to compare between implementations.
    """
    ir, taken, seed = case
    rng = random.Random(seed)
    n = len(ir.nodes)
    inline = [rng.random() < inline_p for _ in range(n)]
    guarded = [rng.random() < 0.5 for _ in range(n)]
    calls: list[tuple[int, dict[str, Any]]] = []
    trace: list[Any] = []

    def smallest_first(i: int) -> None:
        node = ir.nodes[i]
        if node.kind == K_JOIN and node.join_mode != J_ALL:
            return  # it fires on some inputs and runs at once, whatever its index (`_admit`)
        early = [j for j in range(i) if state.status[j] == mod.READY]
        assert not early, f"node {i} ran while {early} were ready"

    def make(i: int) -> Callable[[dict[str, Any]], Any]:
        def fn(inputs: dict[str, Any]) -> Any:
            smallest_first(i)
            calls.append((i, dict(inputs)))
            if fail == ("fn", i):
                raise RuntimeError(f"node {i} failed")
            return i * 10 + len(inputs)

        return fn

    def taken_of(i: int, value: Any) -> list[bool] | None:
        row = [taken.get((i, j), True) for j in ir.successors(i)]
        return row[:-1] if fail == ("taken", i) else row

    def start_node(i: int) -> bool:
        smallest_first(i)
        trace.append(("start", i, list(ready), snapshot(state)))
        if fail == ("start", i):
            ready.append(i)  # something readied before the callback raised stays
            raise RuntimeError(f"starting {i} failed")
        new, skipped = mod.complete(state, i, taken_of(i, None) if guarded[i] else None)
        trace.append(("completed", i, sorted(new), skipped))
        ready.extend(new)
        return fail == ("stop", i)

    fns = [make(i) if inline[i] else None for i in range(n)]
    ids = [node.id for node in ir.nodes]
    values: list[Any] = [None] * n
    done: dict[str, str | None] = {}
    order: list[str] = []
    state, ready = mod.start(ir)
    try:
        mod.drain(state, ready, fns, ids, values, done, order, guarded, taken_of, start_node)
        trace.append(("drained", state.current, sorted(ready), snapshot(state)))
    except (RuntimeError, IndexError) as err:
        trace.append(
            ("raised", type(err).__name__, str(err), state.current, sorted(ready), snapshot(state))
        )
    return trace, calls, values, list(done.items()), order, snapshot(state), mod.settled(state)


@given(
    case=graphs(),
    inline_p=st.sampled_from([0.0, 0.5, 0.9, 1.0]),
    fail=st.none()
    | st.tuples(st.sampled_from(["fn", "taken", "start", "stop"]), st.integers(0, 13)),
)
@settings(max_examples=300)
def test_drain_agrees_step_by_step(
    case: Case, inline_p: float, fail: tuple[str, int] | None
) -> None:
    """Both cores run the same nodes in the same order (smallest ready index first), call
    back at the same points with the same state, and stop or raise alike."""
    assert drive(interp_py, case, inline_p, fail) == drive(compiled(), case, inline_p, fail)


@st.composite
def wide_graphs(draw: st.DrawFn) -> Case:
    """A root, k > 16 children (more than a C stack holds inline, so they grow), and joins
    of random modes over random subsets of them."""
    k = draw(st.integers(17, 48))
    nodes: list[Any] = [FunctionNode(id="r", effect=Effect.PURE, fn="m:f")]
    nodes += [FunctionNode(id=f"c{i}", effect=Effect.PURE, fn="m:f") for i in range(k)]
    edges = [Edge(src="r", dst=f"c{i}") for i in range(k)]
    for j in range(draw(st.integers(1, 3))):
        parents = sorted(draw(st.sets(st.integers(0, k - 1), min_size=2, max_size=k)))
        mode = draw(st.sampled_from(list(JoinMode)))
        n = draw(st.integers(1, len(parents))) if mode is JoinMode.N_OF_M else None
        nodes.append(JoinNode(id=f"j{j}", effect=Effect.PURE, mode=mode, n=n))
        edges += [Edge(src=f"c{p}", dst=f"j{j}") for p in parents]
    ir = lower(Workflow(name="w", nodes=tuple(nodes), edges=tuple(edges)))
    taken = {(e.src, e.dst): draw(st.booleans()) for e in ir.edges}
    return ir, taken, draw(st.integers(0, 2**16))


@given(
    case=wide_graphs(),
    inline_p=st.sampled_from([0.0, 0.5, 1.0]),
    fail=st.none() | st.tuples(st.sampled_from(["fn", "start", "stop"]), st.integers(0, 50)),
)
@settings(max_examples=60)
def test_wide_graphs_agree_and_follow_the_rules(
    case: Case, inline_p: float, fail: tuple[str, int] | None
) -> None:
    ir, taken, _ = case
    assert drive(interp_py, case, inline_p, fail) == drive(compiled(), case, inline_p, fail)
    for mod in (interp_py, compiled()):
        assert completion_order(mod, case) == oracle(ir, taken)


def test_drain_refuses_indices_and_sequences_out_of_range_without_crashing() -> None:
    """Bounds checks are off for the C arrays, so what comes from outside must be checked."""
    cy = compiled()
    ir = ir_of(
        """
        workflow w {
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          a -> b
        }
        """
    )

    def stop(i: int) -> bool:
        return True

    def readies_a_stranger(i: int) -> bool:
        ready.append(7)  # no such node
        return False

    for mod in (interp_py, cy):
        state, ready = mod.start(ir)
        fns: list[Any] = [None, None]
        args = (["a", "b"], [None, None], {}, [], [0, 0], None)
        with pytest.raises(IndexError):
            mod.drain(state, [5], fns, *args, stop)
        with pytest.raises(IndexError):  # fns shorter than the graph
            mod.drain(state, ready, [], *args, stop)
        state, ready = mod.start(ir)
        with pytest.raises(IndexError):  # an index from the callback is checked too
            mod.drain(state, ready, fns, *args, readies_a_stranger)
        with pytest.raises(IndexError):
            mod.skip(state, 2)
    state, _ = cy.start(ir)
    with pytest.raises(IndexError):
        cy.complete(state, -1, None)  # the reference would wrap around; never used
    with pytest.raises(TypeError):
        state.arrived[0] = 3  # only the status is writable
    with pytest.raises(TypeError):
        state.status[0:1] = [1]  # fixed length


def test_an_inconsistent_ir_is_refused_when_the_state_is_made() -> None:
    cy = compiled()
    ir = ir_of(
        """
        workflow w {
          a = function "m:a" { effect: pure }
          b = function "m:b" { effect: pure }
          a -> b
        }
        """
    )
    for bad in (
        {"succ_targets": [7]},
        {"succ_offsets": [0, 1]},
        {"pred_offsets": [0, 0, 9]},
        {"pred_counts": [0]},
    ):
        broken = ExecIR(**{f: getattr(ir, f) for f in ir.__struct_fields__} | bad)
        with pytest.raises(ValueError, match="ExecIR"):
            cy.Routing(broken)


# --- whole workflows on the engine, on each core -------------------------------------------


@contextmanager
def core_in_use(name: str) -> Iterator[None]:
    """Run the engine on one implementation (driver and routing look functions up on core)."""
    before = core.IMPLEMENTATION
    if name == "cython":
        compiled()  # fail clearly when it was not built
    core.use(name)
    try:
        yield
    finally:
        core.use(before)


NUMERIC = ("step", "step_args", "step_retry")


@st.composite
def workflows(draw: st.DrawFn) -> Workflow:
    """DAGs of pure `step` functions (inline, or on the driver's path: with `args`, or with
    retries), joins, conditions with labelled branches, guarded edges, and rarely a function
    that raises. Every expression reads a parent that returns a number."""
    n = draw(st.integers(1, 12))
    kinds: list[str] = []
    nodes: list[Node] = []
    edges: list[Edge] = []
    for i in range(n):
        parents = sorted(draw(st.sets(st.integers(0, i - 1), max_size=3))) if i else []
        kind = draw(
            st.sampled_from(["step"] * 6 + ["step_args", "step_retry", "join", "condition", "boom"])
        )
        if kind == "join" and len(parents) < 2:
            kind = "step"
        numeric = [p for p in parents if kinds[p] in NUMERIC]
        nid = f"n{i}"
        if kind == "join":
            mode = draw(st.sampled_from(list(JoinMode)))
            k = draw(st.integers(1, len(parents))) if mode is JoinMode.N_OF_M else None
            nodes.append(JoinNode(id=nid, effect=Effect.PURE, mode=mode, n=k))
        elif kind == "condition":
            expr = (
                f"n{draw(st.sampled_from(numeric))} > {draw(st.integers(0, 96))}"
                if numeric
                else draw(st.sampled_from(["true", "false"]))
            )
            nodes.append(ConditionNode(id=nid, effect=Effect.PURE, expr=expr))
        else:
            fn = "wf_functions:boom" if kind == "boom" else "wf_functions:step"
            args = None
            if kind == "step_args":
                ref = f"${{n{draw(st.sampled_from(numeric))}}}" if numeric else 5
                args = FrozenDict({"a": ref})
            retry = RetryPolicy(max_attempts=2, backoff_ms=0) if kind == "step_retry" else None
            extra: dict[str, Any] = {"retry": retry} if retry else {}
            nodes.append(FunctionNode(id=nid, effect=Effect.PURE, fn=fn, args=args, **extra))
        kinds.append(kind)
        for p in parents:
            label = when = None
            if kinds[p] == "condition":
                label = draw(st.sampled_from(["true", "false", "else", None]))
            elif kinds[p] in NUMERIC and draw(st.integers(0, 3)) == 0:
                when = f"n{p} > {draw(st.integers(0, 96))}"
            edges.append(Edge(src=f"n{p}", dst=nid, label=label, when=when))
    outputs = (OutputDecl(name="last", expr=f"n{n - 1}"),)
    return Workflow(name="eq", nodes=tuple(nodes), edges=tuple(edges), outputs=outputs)


def run_on(name: str, ir: ExecIR, mode: str, store_dir: Path) -> Any:
    """One run on a fresh store with a fixed run id and clock: everything it logged."""
    wf_functions.STEPS.clear()
    stores = EmbeddedStores.memory()
    harness = Harness(store_dir, stores)
    engine = harness.engine(mode=mode, clock=lambda: 1_000_000.0)

    async def go() -> RunResult:
        try:
            return await engine.start(ir, {}, run_id="r-equivalence")
        finally:
            await engine.close()

    with core_in_use(name):
        assert core.IMPLEMENTATION == name
        result = asyncio.run(go())
    events = [(e.type, e.data) for e in stores.events.read(result.run_id)]
    steps = list(wf_functions.STEPS)
    return result.status, result.outputs, result.error, events, steps


@pytest.mark.parametrize("mode", ["fast", "full"])
@given(wf=workflows())
@settings(max_examples=60)
def test_the_engine_logs_the_same_run_on_both_cores(
    mode: str, wf: Workflow, tmp_path_factory: pytest.TempPathFactory
) -> None:
    ir = lower(wf)
    store_dir = tmp_path_factory.mktemp("eq")
    python = run_on("python", ir, mode, store_dir)
    cython = run_on("cython", ir, mode, store_dir)
    assert python == cython
    status, _, error, events, _ = python
    assert status in ("succeeded", "failed"), error
    assert events[0][0] == "run.started"


def test_use_switches_the_core_the_driver_calls() -> None:
    from aobc.runtime import driver, routing

    assert driver.core is core and routing.core is core
    with core_in_use("cython"):
        assert core.drain is compiled().drain
    with core_in_use("python"):
        assert core.drain is interp_py.drain
