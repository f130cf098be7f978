"""The coordinator's core, in pure Python: completion in, next ready nodes out.

This is the reference implementation (the oracle) of the routing rules; `_interp.pyx` is the
accelerated twin with identical behaviour. Both are pure functions of the IR's arrays and a
run's routing state: no I/O, no clock, no randomness, so a run's state can always be rebuilt
by replaying its completions, and the two implementations can be tested against each other.

Routing rules, for an edge from a resolved node to its target:
- the edge is *taken* when its source succeeded and its label and guard select it (the caller
  decides that, see `taken` below); a skipped source takes none of its edges;
- a plain node runs once every input edge is resolved and all were taken; one untaken input
  means it can never run, so it is skipped at once and its own edges resolve as untaken;
- `join all` runs once every input is resolved, if at least one was taken;
- `join any` runs on its first taken input, later arrivals are ignored;
- `join N` (n of m) runs when n inputs were taken, and is skipped as soon as too few remain.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from typing import Any

from aobc.runtime.execir import J_ALL, J_ANY, K_JOIN, ExecIR

PENDING, READY, RUNNING, DONE, SKIPPED, FAILED = range(6)
STATUS_NAMES = ("pending", "ready", "running", "done", "skipped", "failed")


class Routing:
    """Mutable routing state of one run on one IR: a status and two counters per node."""

    __slots__ = (
        "arrived",
        "current",
        "is_join",
        "join_mode",
        "join_n",
        "pred_counts",
        "pred_offsets",
        "pred_sources",
        "status",
        "succ_offsets",
        "succ_targets",
        "taken",
    )

    def __init__(self, ir: ExecIR) -> None:
        n = len(ir.nodes)
        self.status = [PENDING] * n
        self.arrived = [0] * n
        self.taken = [0] * n
        self.current = -1  # the node `drain` is running, so a failure can be attributed
        # Flat copies of what routing reads, so the hot loop touches lists only.
        self.succ_offsets = ir.succ_offsets
        self.succ_targets = ir.succ_targets
        self.pred_offsets = ir.pred_offsets
        self.pred_sources = ir.pred_sources
        self.pred_counts = ir.pred_counts
        self.is_join = [node.kind == K_JOIN for node in ir.nodes]
        self.join_mode = [node.join_mode for node in ir.nodes]
        self.join_n = [node.join_n for node in ir.nodes]


def start(ir: ExecIR) -> tuple[Routing, list[int]]:
    """A fresh routing state and the nodes ready at the start (the roots)."""
    st = Routing(ir)
    ready = list(ir.roots)
    for i in ready:
        st.status[i] = READY
    return st, ready


def _arrive(  # noqa: C901 - the routing rules, one branch each, kept in one place to read
    st: Routing, j: int, took: bool, ready: list[int], skipped: list[int]
) -> None:
    """Resolve one input edge of node j; record j in `ready` or `skipped` if that decides it."""
    st.arrived[j] += 1
    if took:
        st.taken[j] += 1
    if st.status[j] != PENDING:
        return  # already decided (a join that fired, or a node skipped by an earlier input)
    m = st.pred_counts[j]
    if not st.is_join[j]:
        if not took:
            st.status[j] = SKIPPED
            skipped.append(j)
        elif st.arrived[j] == m:
            st.status[j] = READY
            ready.append(j)
        return
    mode = st.join_mode[j]
    if mode == J_ALL:
        if st.arrived[j] == m:
            if st.taken[j] > 0:
                st.status[j] = READY
                ready.append(j)
            else:
                st.status[j] = SKIPPED
                skipped.append(j)
    elif mode == J_ANY:
        if took:
            st.status[j] = READY
            ready.append(j)
        elif st.arrived[j] == m:
            st.status[j] = SKIPPED
            skipped.append(j)
    else:
        need = st.join_n[j]
        if st.taken[j] >= need:
            st.status[j] = READY
            ready.append(j)
        elif st.taken[j] + (m - st.arrived[j]) < need:
            st.status[j] = SKIPPED
            skipped.append(j)


def _propagate_skips(st: Routing, start_at: int, ready: list[int], skipped: list[int]) -> None:
    """Resolve, as untaken, every edge out of the skipped nodes from `start_at` on."""
    k = start_at
    while k < len(skipped):
        i = skipped[k]
        k += 1
        for s in range(st.succ_offsets[i], st.succ_offsets[i + 1]):
            _arrive(st, st.succ_targets[s], False, ready, skipped)


def complete(st: Routing, i: int, taken: Sequence[bool] | None) -> tuple[list[int], list[int]]:
    """Node i succeeded. Resolve its outgoing edges and return (newly ready, newly skipped).

    `taken[s]` says whether the s-th outgoing edge of i (in CSR order) was taken; None means
    all were (no labels or guards to evaluate), which is the common, fast case.
    """
    st.status[i] = DONE
    ready: list[int] = []
    skipped: list[int] = []
    first = st.succ_offsets[i]
    for s in range(first, st.succ_offsets[i + 1]):
        _arrive(
            st,
            st.succ_targets[s],
            True if taken is None else bool(taken[s - first]),
            ready,
            skipped,
        )
    _propagate_skips(st, 0, ready, skipped)
    return ready, skipped


def complete_many(st: Routing, members: Sequence[int]) -> list[int]:
    """Nodes `members`, in topological order, all succeeded and took every outgoing edge (a
    fused region, run as one call). Returns the nodes newly ready outside them.

    The same as `complete(st, i, None)` for each member in order, keeping the ready nodes
    that are still READY at the end (a member made ready by an earlier one is then done).
    """
    ready: list[int] = []
    for i in members:
        new, _ = complete(st, i, None)
        ready.extend(new)
    return [j for j in ready if st.status[j] == READY]


class Region:
    """A fused region's routing, precomputed once per IR so a run completes it as one unit.

    `members` in topological order; `roots` the members with no predecessor inside, `rest`
    the others; `inputs` the predecessors outside (each once); `inner[k]` how many edges
    into `members[k]` come from inside; `outer` the targets of the edges from members to
    outside nodes, in member order then CSR order (a target once per edge).
    """

    __slots__ = ("inner", "inputs", "members", "n", "outer", "rest", "roots")

    def __init__(self, ir: ExecIR, members: Sequence[int]) -> None:
        n = len(ir.nodes)
        self.n = n
        self.members = [int(m) for m in members]
        inside = set(self.members)
        if len(inside) != len(self.members) or any(m < 0 or m >= n for m in inside):
            raise ValueError("a region's members must be distinct node indices")
        offsets, sources = ir.pred_offsets, ir.pred_sources
        self.inner: list[int] = []
        self.roots: list[int] = []
        self.rest: list[int] = []
        self.inputs: list[int] = []
        for m in self.members:
            preds = sources[offsets[m] : offsets[m + 1]]
            k = sum(1 for p in preds if p in inside)
            self.inner.append(k)
            (self.rest if k else self.roots).append(m)
            for p in preds:
                if p not in inside and p not in self.inputs:
                    self.inputs.append(p)
        succ_offsets, targets = ir.succ_offsets, ir.succ_targets
        self.outer = [
            t
            for m in self.members
            for t in targets[succ_offsets[m] : succ_offsets[m + 1]]
            if t not in inside
        ]


def _check_region(st: Routing, region: Region) -> None:
    if region.n != len(st.status):
        raise ValueError(f"a region of a {region.n}-node IR used on {len(st.status)} nodes")


def region_ready(st: Routing, region: Region) -> bool:
    """Whether the region may run now as one call: every input done, every root ready, and
    no other member decided yet (an untaken edge from an input skips a member)."""
    _check_region(st, region)
    status = st.status
    return (
        all(status[p] == DONE for p in region.inputs)
        and all(status[r] == READY for r in region.roots)
        and all(status[m] == PENDING for m in region.rest)
    )


def complete_region(st: Routing, region: Region) -> list[int]:
    """Every member of `region` succeeded and took every outgoing edge: the same state and
    result as `complete_many(st, region.members)`, set in bulk (members DONE, their counters
    raised by their inside edges) with only the edges that leave the region routed."""
    _check_region(st, region)
    status, arrived, taken = st.status, st.arrived, st.taken
    for m, k in zip(region.members, region.inner, strict=True):
        status[m] = DONE
        arrived[m] += k
        taken[m] += k
    ready: list[int] = []
    skipped: list[int] = []
    for t in region.outer:
        _arrive(st, t, True, ready, skipped)
    _propagate_skips(st, 0, ready, skipped)  # taken edges skip nothing; kept for the rule
    return [j for j in ready if status[j] == READY]


def copy(st: Routing) -> Routing:
    """A new routing state equal to `st` (a run starts from its plan's template)."""
    new = Routing.__new__(Routing)
    for name in Routing.__slots__:
        setattr(new, name, getattr(st, name))  # the IR's arrays: read-only, shared
    new.status = list(st.status)
    new.arrived = list(st.arrived)
    new.taken = list(st.taken)
    return new


def skip(st: Routing, i: int) -> tuple[list[int], list[int]]:
    """Node i will not run (its run was told so): resolve its edges as untaken."""
    ready: list[int] = []
    skipped = [i]
    st.status[i] = SKIPPED
    _propagate_skips(st, 0, ready, skipped)
    return ready, skipped[1:]


def settled(st: Routing) -> bool:
    """True when no node can run any more: every node is done, skipped or failed."""
    return all(s in (DONE, SKIPPED, FAILED) for s in st.status)


def drain(
    st: Routing,
    ready: list[int],
    fns: Sequence[Callable[[dict[str, Any]], Any] | None],
    ids: Sequence[str],
    values: list[Any],
    done: dict[str, str | None],
    order: list[str],
    guarded: Sequence[bool],
    taken_of: Callable[[int, Any], list[bool] | None],
    start_node: Callable[[int], bool],
) -> None:
    """Run the ready nodes, smallest index first, until none is ready or `start_node` says
    the run has ended.

    `ready` is a bag of node indices (entries no longer READY are passed over). The node run
    next is always the smallest READY one, whoever readied it; except a join that fires on
    some of its inputs (`any`, `n of m`), which runs the moment it fires (`_admit`): pure and
    unable to fail, it changes nothing below by running early. Node indices are a topological
    order (the source order where the graph leaves a choice), so among the nodes that can run
    at once the run is in a fixed order, and of two failing nodes the run reports the one that
    comes first. That order does not depend on which nodes run inline, nor on whether some of
    them ran early as one fused call (a node that succeeds early only readies its successors
    early; every node picked here is still the smallest ready one), so fusion and the fast
    and full-fidelity modes fail at the same node. (A node with a task ends when it ends: the
    order holds among the nodes that run synchronously.)

    A node runs inline when `fns[i]` is a callable: a pure, synchronous function that takes
    its predecessors' outputs by id, as the driver decided. It is called right here, its
    output stored in `values`, its completion recorded in `done` and `order`, and its
    successors routed (asking `taken_of` only for nodes whose edges carry labels or guards).
    Every other node is marked RUNNING and handed to `start_node(i)`, which starts it (and may
    complete it, readying more nodes by appending them to `ready`); it returns True when the
    run has ended, which stops the drain.

    If a function raises, the exception propagates with `st.current` naming the node (it is
    -1 when `start_node` raised), and `ready` holds what was still to run.
    """
    heap: list[int] = []
    status = st.status
    offsets = st.pred_offsets
    sources = st.pred_sources
    try:
        if _admit(st, heap, ready, start_node):
            return
        while heap:
            i = heapq.heappop(heap)
            if status[i] != READY:
                continue
            status[i] = RUNNING
            fn = fns[i]
            if fn is None:
                st.current = -1
                if start_node(i) or _admit(st, heap, ready, start_node):
                    break
                continue
            st.current = i
            inputs = {
                ids[p]: values[p] for p in sources[offsets[i] : offsets[i + 1]] if status[p] == DONE
            }
            value = fn(inputs)
            values[i] = value
            done[ids[i]] = None
            order.append(ids[i])
            new, _ = complete(st, i, taken_of(i, value) if guarded[i] else None)
            for k, j in enumerate(new):
                if status[j] == READY and st.is_join[j] and st.join_mode[j] != J_ALL:
                    ready.extend(new[k:])  # (rare) a join that fires at once: `_admit`
                    break
                heapq.heappush(heap, j)
            if ready and _admit(st, heap, ready, start_node):
                break
        st.current = -1
    finally:
        ready.extend(heap)


def _admit(
    st: Routing, heap: list[int], ready: list[int], start_node: Callable[[int], bool]
) -> bool:
    """Move the newly ready nodes of `ready`, in order, onto the heap; except that a join
    that fires on some of its inputs (`any`, `n of m`) is started at once, so that it sees
    the inputs that had arrived when it fired and no later one (whatever index it has). What
    starting it readies is admitted in turn. True when `start_node` said the run has ended;
    whatever was not admitted is then on the heap, as it is when `start_node` raises."""
    items = list(ready)
    del ready[:]
    k = 0
    try:
        while k < len(items):
            j = items[k]
            k += 1
            if st.status[j] == READY and st.is_join[j] and st.join_mode[j] != J_ALL:
                st.status[j] = RUNNING
                st.current = -1
                stop = start_node(j)  # it appends what it readies to `ready`
                items.extend(ready)
                del ready[:]
                if stop:
                    return True
            else:
                heapq.heappush(heap, j)
    finally:
        heap.extend(items[k:])  # not admitted (none, unless it stopped or raised)
    return False
