"""ExecIR: the flat, integer-indexed program that the interpreters execute.

`aobc.backend.lower` produces it from a verified Workflow; `aobc.backend.aobir` stores it in
a `.aobir` file. Nodes are numbered 0..n-1 in declaration order. Successors are in CSR form:
the successors of node i are `succ_targets[succ_offsets[i]:succ_offsets[i+1]]`, and the edge
that leads there is `edges[succ_edges[k]]` for the same k. Everything free-form (node
configuration, labels, guard expressions, output expressions) lives in the constant pool
`consts` and is referred to by index; -1 means "none".

Both the pure-Python and the Cython interpreter read exactly these fields; the arrays are
plain lists of ints here and become typed arrays when a run loads them.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

FORMAT_VERSION: Final = 1

#: Integer codes, in the order of the IR enums; stable across versions of the format.
KINDS: Final = (
    "http",
    "function",
    "map",
    "join",
    "condition",
    "composite",
    "agent",
    "approval",
    "timer",
)
EFFECTS: Final = ("pure", "idempotent", "effectful")
PRIORITIES: Final = ("high", "medium", "low")
JOIN_MODES: Final = ("all", "any", "n_of_m")

K_HTTP, K_FUNCTION, K_MAP, K_JOIN, K_CONDITION, K_COMPOSITE, K_AGENT, K_APPROVAL, K_TIMER = range(9)
E_PURE, E_IDEMPOTENT, E_EFFECTFUL = range(3)
J_ALL, J_ANY, J_N_OF_M = range(3)


class ExecNode(msgspec.Struct, frozen=True, array_like=True):
    """One node. `config` indexes the node's canonical document in the constant pool."""

    id: str
    kind: int
    effect: int
    priority: int
    join_mode: int  # J_ALL for every non-join node: it needs all its inputs
    join_n: int  # inputs a join waits for (n of m); 0 when not n_of_m
    timeout_ms: int  # -1: none
    max_attempts: int
    config: int  # the node's canonical document; a composite's holds "workflow_hash" instead
    config_hash: str  # sha256 of the canonical config: the node's share of its cache key
    origin: int  # const index of the patch id that introduced or last changed it; -1: base
    sub: int  # composite: index into ExecIR.subs; -1 otherwise


class ExecEdge(msgspec.Struct, frozen=True, array_like=True):
    src: int
    dst: int
    label: int  # const index of the label string, or -1
    when: int  # const index of the guard expression text, or -1


class ExecInput(msgspec.Struct, frozen=True, array_like=True):
    name: str
    type: str
    required: bool
    default: Any


class ExecOutput(msgspec.Struct, frozen=True, array_like=True):
    name: str
    expr: int  # const index of the expression text


class ExecIR(msgspec.Struct, frozen=True):
    """A compiled workflow."""

    name: str
    namespace: str
    workflow_hash: str  # content hash of the materialized workflow document
    nodes: list[ExecNode]
    edges: list[ExecEdge]
    succ_offsets: list[int]
    succ_targets: list[int]
    succ_edges: list[int]
    pred_offsets: list[int]
    pred_sources: list[int]
    pred_edges: list[int]
    pred_counts: list[int]
    roots: list[int]
    topo: list[int]
    inputs: list[ExecInput]
    outputs: list[ExecOutput]
    consts: list[Any]
    subs: list[ExecIR] = []
    format: int = FORMAT_VERSION
    description: str | None = None

    def const(self, i: int) -> Any:
        return None if i < 0 else self.consts[i]

    def node_index(self, node_id: str) -> int:
        for i, n in enumerate(self.nodes):
            if n.id == node_id:
                return i
        raise KeyError(node_id)

    def successors(self, i: int) -> list[int]:
        return self.succ_targets[self.succ_offsets[i] : self.succ_offsets[i + 1]]

    def predecessors(self, i: int) -> list[int]:
        return self.pred_sources[self.pred_offsets[i] : self.pred_offsets[i + 1]]
