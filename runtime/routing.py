"""Which outgoing edges a finished node takes, and routing rebuilt from a run's history.

The coordinator core (`interp_py` or the Cython `_interp`) counts and decides; this module
supplies what needs the values: a condition's value against edge labels, an approval's
decision, and `when` guards. A node with no labels or guards on its outgoing edges takes
them all, and the core is told so with `None`, its fast path.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from aobc.expr import truthy
from aobc.ir.names import KEYWORDS, is_identifier
from aobc.ir.reach import ELSE_LABEL, label_of
from aobc.runtime import core
from aobc.runtime.env import evaluate
from aobc.runtime.execir import K_APPROVAL, ExecIR


class EdgeTable:
    """Per node: its outgoing edges' labels and guards, precomputed from the IR."""

    __slots__ = ("guarded", "ir", "slots")

    def __init__(self, ir: ExecIR) -> None:
        self.ir = ir
        # slots[i]: (label, when) for each outgoing edge of i in CSR order, or None when no
        # outgoing edge of i has either (then every edge is taken).
        self.slots: list[list[tuple[str | None, str | None]] | None] = []
        for i in range(len(ir.nodes)):
            row = [
                (ir.const(ir.edges[k].label), ir.const(ir.edges[k].when))
                for k in ir.succ_edges[ir.succ_offsets[i] : ir.succ_offsets[i + 1]]
            ]
            self.slots.append(
                row if any(lbl is not None or w is not None for lbl, w in row) else None
            )

    def taken(self, i: int, value: Any, env: Mapping[str, Any]) -> list[bool] | None:
        """For each outgoing edge of i, whether it is taken given i's output `value`."""
        row = self.slots[i]
        if row is None:
            return None
        selector = _selector(self.ir.nodes[i].kind, value)
        labels_hit = [lbl is not None and lbl != ELSE_LABEL and selector == lbl for lbl, _ in row]
        any_hit = any(labels_hit)
        out = []
        for (label, when), hit in zip(row, labels_hit, strict=True):
            if label is None:
                ok = True
            elif label == ELSE_LABEL:
                ok = not any_hit
            else:
                ok = hit
            if ok and when is not None:
                ok = truthy(evaluate(when, env))
            out.append(ok)
        return out


class Plan:
    """What every run of one IR shares: its edge table, node ids and configs, the inline
    functions of its fast path, a template of a fresh run's routing state, and its outputs
    resolved. Built once per IR by `Engine.plan`."""

    __slots__ = (
        "_templates",
        "configs",
        "direct_outputs",
        "edges",
        "fast",
        "fusion",
        "guarded",
        "ids",
        "index",
        "inline",
        "ir",
        "lean",
        "outputs",
        "started",
        "ways",
    )

    def __init__(self, ir: ExecIR) -> None:
        self.ir = ir
        self.edges = EdgeTable(ir)
        self.index = {n.id: i for i, n in enumerate(ir.nodes)}
        self.ids = [n.id for n in ir.nodes]
        self.configs = [ir.consts[n.config] for n in ir.nodes]
        self.guarded = [row is not None for row in self.edges.slots]
        # The fast-path inline functions, by fidelity (see driver.fast_fns); a run with
        # frozen nodes adjusts its own copy.
        self.fast: dict[bool, list[Callable[[dict[str, Any]], Any] | None]] = {}
        self.fusion: Any = None  # aobc.runtime.fusion.Fusion, made on first use
        # Whether every node runs inline, so a run can end without awaiting anything (see
        # `Engine.run_now`); decided by the engine on first use.
        self.inline: bool | None = None
        # Whether every node has a fast-path inline function, so the core alone can run a
        # fast-path run of it (see `Engine.run_now`); decided by the engine on first use.
        self.lean: bool | None = None
        # The `run.started` data of a run with no inputs, and its canonical JSON, by the IR's
        # digest and the run's mode (see `Engine._bare_started`).
        self.started: dict[tuple[str, str], tuple[dict[str, Any], str]] = {}
        # How `Engine.run_now` runs a run, by mode and fusion (see `Engine._way`).
        self.ways: dict[tuple[str, bool], Any] = {}
        # Per output: its name, its expression, and the node it names when it is a plain
        # reference to one (read from the run's values by index, no evaluation), else -1.
        self.outputs: list[tuple[str, str, int]] = []
        for o in ir.outputs:
            text: str = ir.consts[o.expr]
            ref = text in self.index and is_identifier(text) and text not in KEYWORDS
            self.outputs.append((o.name, text, self.index[text] if ref else -1))
        self.direct_outputs = all(ref >= 0 for _, _, ref in self.outputs)
        # A fresh run's routing state and roots, per core implementation (the two cores'
        # states do not mix, and a process may switch cores between runs).
        self._templates: dict[str, tuple[core.Routing, list[int]]] = {}

    def fresh(self) -> tuple[core.Routing, list[int]]:
        """The routing state of a run that has not started, and the nodes ready at once: a
        copy of this plan's template, made by `core.start` once per IR."""
        template = self._templates.get(core.IMPLEMENTATION)
        if template is None:
            template = self._templates[core.IMPLEMENTATION] = core.start(self.ir)
        st, roots = template
        return core.copy(st), list(roots)


def _selector(kind: int, value: Any) -> str:
    """The label a node's output selects: an approval's decision, else the value as a label."""
    if kind == K_APPROVAL and isinstance(value, Mapping):
        return str(value.get("decision"))
    return label_of(value)


def rebuild(
    ir: ExecIR,
    edges: EdgeTable,
    order: list[str],
    index: Mapping[str, int],
    value_of: Callable[[int], Any],
    env: Mapping[str, Any],
) -> tuple[core.Routing, list[int]]:
    """Routing state after the nodes in `order` finished, in that order, on `ir`.

    Returns the state and the nodes ready now. This is how a run resumes after a restart,
    and how it continues on a new IR after a live patch: replaying completions is exact,
    because a patch may not change what already ran.
    """
    st, roots = core.start(ir)
    if not order:
        return st, roots  # a fresh run: skip the scan below (a loop over every node)
    for node_id in order:
        i = index.get(node_id)
        if i is None:
            continue  # removed by a patch before it could run: it no longer matters
        core.complete(st, i, edges.taken(i, value_of(i), env))
    ready = [i for i, s in enumerate(st.status) if s == core.READY]
    return st, ready
