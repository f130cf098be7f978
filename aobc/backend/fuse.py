"""Fusion: pure, synchronous regions of an ExecIR emitted as one Python function.

The interpreter's inline path already runs a pure synchronous function without a task or
an event, but it still walks the predecessor arrays, checks statuses and builds each inputs
dict in a loop, once per node. A region of such nodes has a fixed shape, so the backend can
write that work out once: straight-line code of direct calls with literal dicts, no loop,
no status check. That is cheaper than even a plain loop over the same functions.

A region is a set of nodes the runtime may run as one call:
- every member is a function the engine may call inline (the caller says which and with
  how many arguments, `arity`) or a `join all` (whose output, once every input ran, is
  its inputs by id), and none has a labelled or guarded outgoing edge, so every edge out
  of a member is taken when it succeeds;
- it is convex: no path leaves it and comes back. So once every outside input is done, the
  whole region can run at once, in topological order, with nothing else in between.

Regions are the weakly connected components of such nodes; a component that is not convex
(say a -> http -> b beside a -> c -> b) is split into single-entry regions, which always
are: every member but the first has all its predecessors inside.

The emitted function, `fused(V, F)`, reads the outside inputs from `V` (the run's values
by node index), calls `F[k]` (the resolved functions, one per distinct function reference,
in `Region.fns` order) with exactly the inputs dict the interpreter would build (the
predecessors' outputs by id, in the IR's predecessor order), and stores each member's
output in `V`. The runtime (`aobc.runtime.fusion`) compiles it once per IR hash.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from aobc.runtime.execir import ExecIR

MIN_SIZE = 2  # a region of one node saves nothing over the interpreter's inline path


@dataclass(frozen=True, slots=True)
class Region:
    members: tuple[int, ...]  # node indices, in topological order
    roots: tuple[int, ...]  # members with no predecessor inside: the first to become ready
    inputs: tuple[int, ...]  # predecessors outside the region, each must be done first
    fns: tuple[str, ...]  # the distinct function references, in the order F holds them
    source: str  # the Python source of `fused(V, F)`


@dataclass(frozen=True, slots=True)
class Candidate:
    """A node that may be fused: its function reference and how many arguments it takes
    (1: its inputs dict; 0: nothing), or no function for a `join all` (`JOIN_ALL`), whose
    output is exactly the inputs dict a function would be given."""

    fn: str | None
    arity: int


JOIN_ALL: Final = Candidate(None, 1)


def regions(
    ir: ExecIR, candidate: Callable[[int], Candidate | None], *, min_size: int = MIN_SIZE
) -> list[Region]:
    """The fusable regions of `ir`, largest first."""
    n = len(ir.nodes)
    cands: list[Candidate | None] = [None] * n
    for i in range(n):
        c = candidate(i)
        if c is not None and _unconditional(ir, i):
            cands[i] = c
    components = _components(ir, cands)
    position = {node: k for k, node in enumerate(ir.topo)}
    out: list[Region] = []
    for comp in components:
        members = sorted(comp, key=position.__getitem__)
        parts = [members] if _convex(ir, set(members)) else _single_entry(ir, members)
        for part in parts:
            if len(part) >= min_size:
                out.append(_region(ir, part, cands))
    out.sort(key=lambda r: -len(r.members))
    return out


def _unconditional(ir: ExecIR, i: int) -> bool:
    """Whether every outgoing edge of node i is taken whenever i succeeds."""
    for k in ir.succ_edges[ir.succ_offsets[i] : ir.succ_offsets[i + 1]]:
        e = ir.edges[k]
        if e.label >= 0 or e.when >= 0:
            return False
    return True


def _components(ir: ExecIR, cands: list[Candidate | None]) -> list[list[int]]:
    parent = list(range(len(cands)))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for i, c in enumerate(cands):
        if c is None:
            continue
        for j in ir.successors(i):
            if cands[j] is not None:
                a, b = find(i), find(j)
                if a != b:
                    parent[a] = b
    groups: dict[int, list[int]] = {}
    for i, c in enumerate(cands):
        if c is not None:
            groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def _convex(ir: ExecIR, members: set[int]) -> bool:
    """No path from the region through an outside node back into it."""
    stack = [j for i in members for j in ir.successors(i) if j not in members]
    seen = set(stack)
    while stack:
        j = stack.pop()
        for k in ir.successors(j):
            if k in members:
                return False
            if k not in seen:
                seen.add(k)
                stack.append(k)
    return True


def _single_entry(ir: ExecIR, members: list[int]) -> list[list[int]]:
    """Split a component (in topological order) into regions where every member but the
    first has all its predecessors in its region."""
    region_of: dict[int, int] = {}
    parts: list[list[int]] = []
    for m in members:
        owners = {region_of.get(p, -1) for p in ir.predecessors(m)}
        if len(owners) == 1 and -1 not in owners:
            r = owners.pop()
        else:
            r = len(parts)
            parts.append([])
        region_of[m] = r
        parts[r].append(m)
    return parts


def _region(ir: ExecIR, members: list[int], cands: list[Candidate | None]) -> Region:
    inside = set(members)
    inputs: list[int] = []
    roots: list[int] = []
    for m in members:
        preds = ir.predecessors(m)
        if not any(p in inside for p in preds):
            roots.append(m)
        for p in preds:
            if p not in inside and p not in inputs:
                inputs.append(p)
    fns: list[str] = []
    for m in members:
        c = cands[m]
        assert c is not None
        if c.fn is not None and c.fn not in fns:
            fns.append(c.fn)
    source = emit(ir, members, cands, fns)
    return Region(tuple(members), tuple(roots), tuple(inputs), tuple(fns), source)


def emit(ir: ExecIR, members: list[int], cands: list[Candidate | None], fns: list[str]) -> str:
    """The source of `fused(V, F)` for `members` (in topological order)."""
    inside = set(members)
    slot = {fn: k for k, fn in enumerate(fns)}
    lines = ["def fused(V, F):"]
    if fns:  # (a region of joins only calls nothing)
        lines.append("    " + ", ".join(f"f{k}" for k in range(len(fns))) + ", = F")
    for p in sorted({p for m in members for p in ir.predecessors(m) if p not in inside}):
        lines.append(f"    v{p} = V[{p}]")
    for m in members:
        c = cands[m]
        assert c is not None
        items = ", ".join(f"{ir.nodes[p].id!r}: v{p}" for p in ir.predecessors(m))
        if c.fn is None:  # a join: its inputs, by id (every one of them ran)
            lines.append(f"    v{m} = {{{items}}}")
            continue
        call = f"f{slot[c.fn]}"
        if c.arity == 0:
            lines.append(f"    v{m} = {call}()")
            continue
        lines.append(f"    v{m} = {call}({{{items}}})")
    # Outputs are stored at the end: a function that raises leaves V as it was, and the
    # interpreter runs the region node by node to say which node failed. A run of
    # consecutive indices is one slice assignment (one C loop, not one store per node).
    for first, last in _runs(sorted(members)):
        if first == last:
            lines.append(f"    V[{first}] = v{first}")
        else:
            values = ", ".join(f"v{m}" for m in range(first, last + 1))
            lines.append(f"    V[{first}:{last + 1}] = ({values},)")
    return "\n".join(lines) + "\n"


def _runs(indices: list[int]) -> list[tuple[int, int]]:
    """Sorted distinct indices as maximal runs of consecutive ones: (first, last) each."""
    out: list[tuple[int, int]] = []
    for i in indices:
        if out and out[-1][1] == i - 1:
            out[-1] = (out[-1][0], i)
        else:
            out.append((i, i))
    return out
