"""The text form of an ExecIR: what `aobc show FILE.aobir` prints and golden tests compare.

One section per part of the IR, always in the same order and always present (empty ones say
`(none)`), so diffs of two compiles line up. Nodes are `%i`, edges `eK`, constants `#c`, exactly
the indices the runtime uses; names and expressions ride along for people. Example:

    aobir format 1
    workflow w  namespace default
    hash sha256:18e3867addef0a47d8e393bcbfb871664f5290cbce825bd4372f812812f63f9b
    inputs
      n: int required
    outputs
      r = b.x  (#8)
    nodes
      %0  a  function   pure        medium  config #0 293dcb670cbe  preds 0  -> %1 %3
      %1  b  http       idempotent  medium  config #1 5b3f0431ad6e  preds 1  -> %2 %4  timeout 10s
      ...
      %4  d  join       pure        medium  config #5 28c0564490e1  preds 2  -> (none)  join any
    edges
      e0  %0 a -> %1 b
      e3  %2 c -> %4 d  [approved]
      e4  %1 b -> %4 d  when b.ok
    roots %0
    topo %0 %1 %2 %4 %3
    consts
      #0 {"effect":"pure","fn":"m:f","id":"a","type":"function"}
      ...
    subs
      sub 0  (node %3 s)
        aobir format 1
        ...

Node lines: index, id, kind, effect, priority, config constant and the first 12 hex digits of
its hash, predecessor count, successors; then only what differs from the default: `join MODE
[N]`, `timeout`, `attempts`, `origin #c PATCH`, `sub S`. Column widths are computed per table.

Constants are shown as canonical JSON, one per line. Everything the runtime reads is in the
text or follows from it (the CSR arrays from the edge list), except the full config hashes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, Final

from aobc.canonical import canonical_bytes
from aobc.ir import format_duration
from aobc.runtime.execir import (
    EFFECTS,
    J_ALL,
    J_N_OF_M,
    JOIN_MODES,
    K_JOIN,
    KINDS,
    PRIORITIES,
    ExecIR,
    ExecNode,
)

__all__ = ["ir_to_text"]

_INDENT: Final = "  "
#: Longest id that still widens the id column; longer ids just push their own line out.
_MAX_ID_WIDTH: Final = 24
_PLAIN_LABEL: Final = re.compile(r"[A-Za-z0-9_.:-]+")


def ir_to_text(ir: ExecIR) -> str:
    """The text form of `ir` (and its subs, indented), ending in a newline."""
    return "".join(line + "\n" for line in _lines(ir))


def _lines(ir: ExecIR) -> list[str]:
    out = [
        f"aobir format {ir.format}",
        f"workflow {ir.name}  namespace {ir.namespace}",
        f"hash {ir.workflow_hash}",
    ]
    out += _section(
        "inputs", [_input_line(d.name, d.type, d.required, d.default) for d in ir.inputs]
    )
    out += _section("outputs", [f"{o.name} = {_text(ir, o.expr)}  (#{o.expr})" for o in ir.outputs])
    out += _section("nodes", _node_lines(ir))
    out += _section("edges", _edge_lines(ir))
    out.append("roots " + _refs(ir.roots))
    out.append("topo " + _refs(ir.topo))
    out += _section("consts", [f"#{i} {_json(v)}" for i, v in enumerate(ir.consts)])
    subs: list[str] = []
    owners = {nd.sub: (i, nd.id) for i, nd in enumerate(ir.nodes) if nd.sub >= 0}
    for s, sub in enumerate(ir.subs):
        owner = owners.get(s)
        subs.append(f"sub {s}" + (f"  (node %{owner[0]} {owner[1]})" if owner else ""))
        subs += [_INDENT + line for line in _lines(sub)]
    out += _section("subs", subs)
    return out


def _section(title: str, lines: Sequence[str]) -> list[str]:
    return [title, *(_INDENT + line for line in (lines or ["(none)"]))]


def _refs(indices: Sequence[int]) -> str:
    return " ".join(f"%{i}" for i in indices) if indices else "(none)"


def _json(value: Any) -> str:
    try:
        return canonical_bytes(value).decode("utf-8")
    except (TypeError, ValueError, RecursionError):  # only an unvalidated IR gets here
        return repr(value)


def _const(ir: ExecIR, index: int) -> Any:
    return ir.consts[index] if 0 <= index < len(ir.consts) else None


def _text(ir: ExecIR, index: int) -> str:
    """A string constant as written (an expression, a patch id), or its JSON otherwise.

    Strings that would break the one-item-per-line layout (newlines, control characters) are
    shown as JSON strings too, so every line stays parseable by eye and by diff.
    """
    value = _const(ir, index)
    if isinstance(value, str) and value.isprintable() and value.strip() == value and value:
        return value
    return _json(value)


def _name(names: Sequence[str], code: int) -> str:
    return names[code] if 0 <= code < len(names) else f"?{code}"


def _input_line(name: str, type_: str, required: bool, default: Any) -> str:
    return f"{name}: {type_} " + ("required" if required else f"default {_json(default)}")


def _node_lines(ir: ExecIR) -> list[str]:
    nodes = ir.nodes
    # Column widths over the whole table, so the fixed fields line up and diffs stay narrow.
    w_idx = max((len(str(i)) for i in range(len(nodes))), default=1) + 1
    w_id = min(max((len(nd.id) for nd in nodes), default=0), _MAX_ID_WIDTH)
    w_kind = max(len(k) for k in KINDS)
    w_eff = max(len(e) for e in EFFECTS)
    w_pri = max(len(p) for p in PRIORITIES)
    out = []
    for i, nd in enumerate(nodes):
        succs = ir.succ_targets[ir.succ_offsets[i] : ir.succ_offsets[i + 1]]
        fields = [
            f"%{i}".ljust(w_idx),
            nd.id.ljust(w_id),
            _name(KINDS, nd.kind).ljust(w_kind),
            _name(EFFECTS, nd.effect).ljust(w_eff),
            _name(PRIORITIES, nd.priority).ljust(w_pri),
            f"config #{nd.config} {nd.config_hash[:12]}",
            f"preds {ir.pred_counts[i] if i < len(ir.pred_counts) else '?'}",
            "-> " + _refs(succs),
            *_node_extras(ir, nd),
        ]
        out.append("  ".join(fields))
    return out


def _node_extras(ir: ExecIR, nd: ExecNode) -> list[str]:
    """The fields that are only shown when they say something."""
    extras = []
    if nd.kind == K_JOIN or nd.join_mode != J_ALL:
        mode = _name(JOIN_MODES, nd.join_mode)
        extras.append(f"join {mode} {nd.join_n}" if nd.join_mode == J_N_OF_M else f"join {mode}")
    if nd.timeout_ms >= 0:
        extras.append(f"timeout {format_duration(nd.timeout_ms)}")
    if nd.max_attempts != 1:
        extras.append(f"attempts {nd.max_attempts}")
    if nd.origin >= 0:
        extras.append(f"origin #{nd.origin} {_text(ir, nd.origin)}")
    if nd.sub >= 0:
        extras.append(f"sub {nd.sub}")
    return extras


def _edge_lines(ir: ExecIR) -> list[str]:
    n = len(ir.nodes)

    def end(i: int) -> str:
        return f"%{i} {ir.nodes[i].id}" if 0 <= i < n else f"%{i}"

    width = len(f"e{len(ir.edges) - 1}")
    out = []
    for k, e in enumerate(ir.edges):
        line = f"{f'e{k}':<{width}}  {end(e.src)} -> {end(e.dst)}"
        if e.label >= 0:
            label = _text(ir, e.label)
            shown = (
                label if _PLAIN_LABEL.fullmatch(label) else json.dumps(label, ensure_ascii=False)
            )
            line += f"  [{shown}]"
        if e.when >= 0:
            line += f"  when {_text(ir, e.when)}"
        out.append(line)
    return out
