"""Lowering: a verified `Workflow` to the flat, integer-indexed `ExecIR` the runtime executes.

Nodes are numbered in declaration order, edges keep their declaration order, and everything
free-form goes into one constant pool deduplicated by canonical bytes in first-use order. So
lowering is a pure function of the workflow (and the origins map): the same input always gives
an equal `ExecIR` and identical `.aobir` bytes.

A node's `config` is its canonical document (`node_document`), except that a composite's
"workflow" member is replaced by `"workflow_hash": <the sub-workflow's content hash>`: the
sub-workflow is lowered on its own into `ExecIR.subs[node.sub]`, and the hash keeps the node's
`config_hash` (its share of cache keys) changing whenever the sub-workflow changes.

Lowering may assume a verified workflow, but it refuses, with `ValueError`, the inputs that would
otherwise give a malformed program: duplicate node ids, edges to undeclared nodes, and cycles.

Everything here is linear in the size of the workflow (one canonical encoding and one sha256
per node, counting sorts for the CSR arrays), so 10,000 nodes lower in a few tens of ms.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aobc.backend.serialize import to_document
from aobc.canonical import canonical_bytes, content_hash
from aobc.ir import (
    NODE_CLASSES,
    CompositeNode,
    Effect,
    Graph,
    JoinMode,
    JoinNode,
    Node,
    Priority,
    Workflow,
    thaw,
)
from aobc.runtime.execir import (
    EFFECTS,
    FORMAT_VERSION,
    J_ALL,
    JOIN_MODES,
    KINDS,
    PRIORITIES,
    ExecEdge,
    ExecInput,
    ExecIR,
    ExecNode,
    ExecOutput,
)

__all__ = ["COMPOSITE_HASH_KEY", "csr", "lower", "topo_order"]

# Codes matched to the IR enums by their string values, so the IR enums and the ExecIR code
# tables stay two independent lists and a member missing from one fails at import, not with a
# wrong number. Keyed by member (and kinds by class) because `Enum.value` is slow in a hot loop.
_KIND_CODE: Final[dict[type[Node], int]] = {
    cls: KINDS.index(kind.value) for kind, cls in NODE_CLASSES.items()
}
_EFFECT_CODE: Final = {e: EFFECTS.index(e.value) for e in Effect}
_PRIORITY_CODE: Final = {p: PRIORITIES.index(p.value) for p in Priority}
_JOIN_CODE: Final = {m: JOIN_MODES.index(m.value) for m in JoinMode}

#: The member that stands in for a composite's "workflow" in its config: the sub-workflow's
#: content hash. The sub-workflow itself is lowered into `ExecIR.subs`, but the hash keeps the
#: node's `config_hash` (its share of cache keys) changing whenever the sub-workflow does.
COMPOSITE_HASH_KEY: Final = "workflow_hash"


class _ConstPool:
    """Constants deduplicated by canonical bytes, numbered in first-use order."""

    __slots__ = ("_by_bytes", "_by_str", "values")

    def __init__(self) -> None:
        self.values: list[Any] = []
        self._by_bytes: dict[bytes, int] = {}
        # Strings (labels, guards, exprs, patch ids) skip the JSON encoder: the canonical bytes
        # of a string never equal those of a non-string, so a separate table is equivalent.
        self._by_str: dict[str, int] = {}

    def add(self, value: Any, data: bytes | None = None) -> int:
        """The index of `value`; `data` is its canonical bytes when the caller has them."""
        if isinstance(value, str):
            found = self._by_str.get(value)
            if found is None:
                found = self._by_str[value] = len(self.values)
                self.values.append(value)
            return found
        key = canonical_bytes(value) if data is None else data
        found = self._by_bytes.get(key)
        if found is None:
            found = self._by_bytes[key] = len(self.values)
            self.values.append(value)
        return found

    def opt(self, value: str | None) -> int:
        return -1 if value is None else self.add(value)


def csr(
    n: int, heads: Sequence[int], tails: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """Adjacency of `n` nodes in CSR form: edge k goes from `heads[k]` to `tails[k]`.

    Returns (offsets, targets, edge ids); the row of node i is `offsets[i]:offsets[i+1]`, with its
    edges in increasing edge order (a counting sort, so linear and stable).
    """
    offsets = [0] * (n + 1)
    for h in heads:
        offsets[h + 1] += 1
    for i in range(n):
        offsets[i + 1] += offsets[i]
    fill = offsets[:-1]
    targets = [0] * len(heads)
    edge_ids = [0] * len(heads)
    for k, h in enumerate(heads):
        p = fill[h]
        targets[p] = tails[k]
        edge_ids[p] = k
        fill[h] = p + 1
    return offsets, targets, edge_ids


def topo_order(
    succ_offsets: Sequence[int], succ_targets: Sequence[int], pred_counts: Sequence[int]
) -> list[int]:
    """Kahn's order, stable in declaration order, with `Graph.topo_order`'s tie-breaking.

    Shorter than the node count when the graph has a cycle.
    """
    indeg = list(pred_counts)
    ready = [i for i, d in enumerate(indeg) if d == 0]
    ready.reverse()
    out: list[int] = []
    while ready:
        i = ready.pop()
        out.append(i)
        fresh: list[int] = []
        for k in range(succ_offsets[i], succ_offsets[i + 1]):
            t = succ_targets[k]
            indeg[t] -= 1
            if indeg[t] == 0:
                fresh.append(t)
        fresh.reverse()
        ready.extend(fresh)
    return out


def _node_index(wf: Workflow) -> dict[str, int]:
    index: dict[str, int] = {}
    for i, n in enumerate(wf.nodes):
        if index.setdefault(n.id, i) != i:
            raise ValueError(
                f"cannot lower workflow {wf.name!r}: node id {n.id!r} is declared twice"
            )
    return index


def _edge_ends(wf: Workflow, index: Mapping[str, int]) -> tuple[list[int], list[int]]:
    heads: list[int] = []
    tails: list[int] = []
    for e in wf.edges:
        s = index.get(e.src)
        d = index.get(e.dst)
        if s is None or d is None:
            missing = e.src if s is None else e.dst
            raise ValueError(
                f"cannot lower workflow {wf.name!r}: edge {e.src!r} -> {e.dst!r} names "
                f"undeclared node {missing!r}"
            )
        heads.append(s)
        tails.append(d)
    return heads, tails


def _composite_config(doc: dict[str, Any], sub_hash: str) -> dict[str, Any]:
    """The composite's document with its "workflow" member replaced by the sub-workflow hash."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key == "workflow":
            out[COMPOSITE_HASH_KEY] = sub_hash  # in the same place, so key order stays readable
        else:
            out[key] = value
    return out


class LowerCache:
    """Per-node lowering results, kept across recompiles of successive versions.

    Keyed by the identity of a node's canonical document: versions produced by patches share
    the documents of the nodes they did not touch, so recompiling after a one-node patch
    re-encodes one node. An entry holds the document itself, so an `id()` is never confused
    with that of a later object.
    """

    def __init__(self) -> None:
        self.entries: dict[int, tuple[Any, dict[str, Any], bytes, str, ExecIR | None]] = {}

    def get(
        self, node: Node, doc: dict[str, Any]
    ) -> tuple[dict[str, Any], bytes, str, ExecIR | None]:
        hit = self.entries.get(id(doc))
        if hit is not None and hit[0] is doc:
            return hit[1], hit[2], hit[3], hit[4]
        sub_ir = None
        config = doc
        if isinstance(node, CompositeNode):
            sub_ir = lower(node.workflow)
            config = _composite_config(doc, sub_ir.workflow_hash)
        data = canonical_bytes(config)
        sha = hashlib.sha256(data).hexdigest()
        if len(self.entries) > 200_000:
            self.entries.clear()
        self.entries[id(doc)] = (doc, config, data, sha, sub_ir)
        return config, data, sha, sub_ir


def _lower_node(
    node: Node,
    config: dict[str, Any],
    pool: _ConstPool,
    subs: list[ExecIR],
    origins: Mapping[str, str | None] | None,
    cache: LowerCache,
) -> ExecNode:
    sub = -1
    config, data, sha, sub_ir = cache.get(node, config)
    if sub_ir is not None:
        sub = len(subs)
        subs.append(sub_ir)
    join_mode, join_n = J_ALL, 0
    if isinstance(node, JoinNode):
        join_mode = _JOIN_CODE[node.mode]
        # Verification reads a missing n of n_of_m as 1; lowering keeps that meaning.
        join_n = (node.n or 1) if node.mode is JoinMode.N_OF_M else 0
    return ExecNode(
        id=node.id,
        kind=_KIND_CODE[type(node)],
        effect=_EFFECT_CODE[node.effect],
        priority=_PRIORITY_CODE[node.priority],
        join_mode=join_mode,
        join_n=join_n,
        timeout_ms=-1 if node.timeout_ms is None else node.timeout_ms,
        max_attempts=node.retry.max_attempts,
        config=pool.add(config, data),
        config_hash=sha,
        origin=pool.opt(origins.get(node.id) if origins is not None else None),
        sub=sub,
    )


def lower(
    wf: Workflow,
    origins: Mapping[str, str | None] | None = None,
    *,
    document: dict[str, Any] | None = None,
    workflow_hash: str | None = None,
    cache: LowerCache | None = None,
) -> ExecIR:
    """The ExecIR of `wf`.

    `origins` maps a node id to the id of the patch that introduced or last changed it (None or
    absent: the base). It covers top-level nodes only: a patch to a node inside a sub-workflow
    changes the composite's document, so the composite carries that origin.

    A caller that already holds the canonical document of `wf` and its hash (a materialized
    overlay version does) passes them, with a `LowerCache`, to recompile incrementally.
    """
    index = _node_index(wf)
    heads, tails = _edge_ends(wf, index)
    n = len(wf.nodes)
    succ_offsets, succ_targets, succ_edges = csr(n, heads, tails)
    pred_offsets, pred_sources, pred_edges = csr(n, tails, heads)
    pred_counts = [pred_offsets[i + 1] - pred_offsets[i] for i in range(n)]
    topo = topo_order(succ_offsets, succ_targets, pred_counts)
    if len(topo) != n:
        cycle = Graph.of(wf).find_cycle() or []
        raise ValueError(f"cannot lower workflow {wf.name!r}: it has a cycle: {' -> '.join(cycle)}")

    # One to_document serves both the workflow hash and every node's config, so each node's
    # document is built once. The hash is taken before composites' documents are rewritten.
    doc = to_document(wf) if document is None else document
    whash = content_hash(doc) if workflow_hash is None else workflow_hash
    node_docs: list[dict[str, Any]] = doc["nodes"]

    pool = _ConstPool()
    subs: list[ExecIR] = []
    cache = cache if cache is not None else LowerCache()
    nodes = [
        _lower_node(node, config, pool, subs, origins, cache)
        for node, config in zip(wf.nodes, node_docs, strict=True)
    ]
    edges = [
        ExecEdge(src=heads[k], dst=tails[k], label=pool.opt(e.label), when=pool.opt(e.when))
        for k, e in enumerate(wf.edges)
    ]
    inputs = [
        ExecInput(name=d.name, type=d.type.value, required=d.required, default=thaw(d.default))
        for d in wf.inputs
    ]
    outputs = [ExecOutput(name=d.name, expr=pool.add(d.expr)) for d in wf.outputs]
    return ExecIR(
        name=wf.name,
        namespace=wf.namespace,
        workflow_hash=whash,
        nodes=nodes,
        edges=edges,
        succ_offsets=succ_offsets,
        succ_targets=succ_targets,
        succ_edges=succ_edges,
        pred_offsets=pred_offsets,
        pred_sources=pred_sources,
        pred_edges=pred_edges,
        pred_counts=pred_counts,
        roots=[i for i, c in enumerate(pred_counts) if c == 0],
        topo=topo,
        inputs=inputs,
        outputs=outputs,
        consts=pool.values,
        subs=subs,
        format=FORMAT_VERSION,
        description=wf.description,
    )
