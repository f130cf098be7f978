"""What the optimizer did to a workflow, and why: the model behind `aobc explain`.

`explain(comp, pipeline)` gathers, from one compilation, the workflow before and after the
pass pipeline, every pass run with its timing, every remark, which nodes and edges the
passes added, removed or changed, and the estimated cost before and after. `to_text` and
`to_json_lines` render it; `aobc.explain_html` draws it as a standalone page. The JSON lines
schema is documented in docs/explain.md and versioned by `SCHEMA_VERSION`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, TypeVar

from aobc.driver import Compilation
from aobc.frontend.overlay import Version
from aobc.ir import Edge, Node, Workflow
from aobc.passes.analysis import Cost, cost
from aobc.passes.base import Remark
from aobc.passes.pipeline import PassRun
from aobc.source import Loc

SCHEMA_VERSION: Final = 1

ChangeKind = Literal["added", "removed", "changed"]
EdgeKey = tuple[str, str, str | None]
K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Change:
    """What the optimizer did to one node or edge, net, and the passes that touched it."""

    kind: ChangeKind
    by: tuple[str, ...]


@dataclass
class Explanation:
    file: str
    pipeline: str
    ok: bool
    before: Workflow
    after: Workflow
    runs: list[PassRun]
    remarks: list[Remark]
    nodes: dict[str, Change] = field(default_factory=dict)
    edges: dict[EdgeKey, Change] = field(default_factory=dict)
    cost_before: Cost = field(init=False)
    cost_after: Cost = field(init=False)

    def __post_init__(self) -> None:
        self.cost_before = cost(self.before)
        self.cost_after = cost(self.after)

    def node_loc(self, node_id: str) -> Loc | None:
        for wf in (self.after, self.before):
            n = wf.node(node_id)
            if n is not None and _written(n.loc, wf):
                return n.loc
        return None

    def edge_loc(self, key: EdgeKey) -> Loc | None:
        for wf in (self.after, self.before):
            for e in wf.edges:
                if e.key == key and _written(e.loc, wf):
                    return e.loc
        return None

    def remark_loc(self, r: Remark) -> Loc | None:
        """Where a remark points: its own location, else its first node's."""
        if r.loc is not None:
            return r.loc
        for nid in r.nodes:
            loc = self.node_loc(nid)
            if loc is not None:
                return loc
        return None

    def pass_names(self) -> list[str]:
        """Names of the passes that ran, in first-run order."""
        return list(dict.fromkeys(r.name for r in self.runs))


def _written(loc: Loc | None, wf: Workflow) -> bool:
    """Whether `loc` says where something was written: what a pass added has no place in
    the source, and the overlay may give it the workflow's own location instead."""
    return loc is not None and loc != wf.loc


def _pipeline_start(history: list[Version]) -> int:
    """Index of the version the pipeline started from: after the last non-optimizer patch."""
    start = 0
    for i, v in enumerate(history):
        if v.patch is not None and v.patch.author_kind != "optimizer":
            start = i
    return start


def _nodes(wf: Workflow) -> dict[str, Node]:
    return {n.id: n for n in wf.nodes}


def _edges(wf: Workflow) -> dict[EdgeKey, Edge]:
    return {e.key: e for e in wf.edges}


def _diff(old: Mapping[K, object], new: Mapping[K, object]) -> Iterator[tuple[K, ChangeKind]]:
    """Keys removed, added and changed (nodes and edges compare without locations)."""
    for k in old:
        if k not in new:
            yield k, "removed"
        elif old[k] != new[k]:
            yield k, "changed"
    for k in new:
        if k not in old:
            yield k, "added"


def _touch(touched: dict[K, list[str]], key: K, by: str) -> None:
    seen = touched.setdefault(key, [])
    if by not in seen:
        seen.append(by)


def explain(comp: Compilation, pipeline: str) -> Explanation:
    """The explanation of a compilation that ran `pipeline`."""
    history = comp.overlay.history
    start = _pipeline_start(history)
    before, after = history[start].workflow, comp.overlay.head.workflow
    # Attribute each step to its pass: optimizer patches are authored by the pass spec.
    by_node: dict[str, list[str]] = {}
    by_edge: dict[EdgeKey, list[str]] = {}
    for prev, cur in zip(history[start:], history[start + 1 :], strict=False):
        author = cur.patch.author if cur.patch is not None else "?"
        for nid, _ in _diff(_nodes(prev.workflow), _nodes(cur.workflow)):
            _touch(by_node, nid, author)
        for key, _ in _diff(_edges(prev.workflow), _edges(cur.workflow)):
            _touch(by_edge, key, author)
    result = comp.result
    # A pass in a fixpoint group says the same thing each time round; say it once.
    remarks: dict[tuple[object, ...], Remark] = {}
    for r in result.remarks if result is not None else []:
        remarks.setdefault((r.pass_name, r.kind, r.name, r.nodes, r.message, str(r.loc)), r)
    return Explanation(
        file=comp.loaded.source.name,
        pipeline=pipeline,
        ok=comp.ok,
        before=before,
        after=after,
        runs=list(result.runs) if result is not None else [],
        remarks=list(remarks.values()),
        nodes={
            k: Change(kind, tuple(by_node.get(k, ())))
            for k, kind in _diff(_nodes(before), _nodes(after))
        },
        edges={
            k: Change(kind, tuple(by_edge.get(k, ())))
            for k, kind in _diff(_edges(before), _edges(after))
        },
    )


# --- JSON lines ---------------------------------------------------------------------------


def edge_name(key: EdgeKey) -> str:
    src, dst, label = key
    return f"{src} -[{label}]-> {dst}" if label is not None else f"{src} -> {dst}"


def json_records(ex: Explanation) -> Iterator[dict[str, Any]]:
    """The records of `--output json`, in order (see docs/explain.md)."""
    yield {
        "type": "explain",
        "version": SCHEMA_VERSION,
        "file": ex.file,
        "workflow": ex.after.name,
        "pipeline": ex.pipeline,
        "ok": ex.ok,
    }
    for i, run in enumerate(ex.runs):
        yield {
            "type": "pass",
            "index": i,
            "name": run.name,
            "spec": run.spec,
            "seconds": round(run.seconds, 6),
            "changed": run.changed,
            "skipped": run.skipped,
            "ops": len(run.patch.ops) if run.patch is not None else 0,
            "patch": run.patch.id if run.patch is not None else None,
        }
    for r in ex.remarks:
        rec = r.to_json()
        loc = ex.remark_loc(r)
        rec["loc"] = str(loc) if loc is not None else None
        yield {"type": "remark", **rec}
    for nid, ch in ex.nodes.items():
        loc = ex.node_loc(nid)
        yield {
            "type": "change",
            "target": "node",
            "id": nid,
            "change": ch.kind,
            "by": list(ch.by),
            "loc": str(loc) if loc is not None else None,
        }
    for key, ch in ex.edges.items():
        loc = ex.edge_loc(key)
        yield {
            "type": "change",
            "target": "edge",
            "id": edge_name(key),
            "from": key[0],
            "to": key[1],
            "label": key[2],
            "change": ch.kind,
            "by": list(ch.by),
            "loc": str(loc) if loc is not None else None,
        }
    yield {"type": "cost", "before": ex.cost_before.to_json(), "after": ex.cost_after.to_json()}


def to_json_lines(ex: Explanation) -> str:
    return "".join(json.dumps(rec, default=str) + "\n" for rec in json_records(ex))


# --- text ---------------------------------------------------------------------------------

_COLORS: Final = {
    "passed": "32",
    "missed": "33",
    "analysis": "36",
    "added": "32",
    "removed": "31",
    "changed": "33",
    "head": "1",
    "dim": "2",
    "good": "32",
    "bad": "31",
}
_MARKS: Final = {"added": "+", "removed": "-", "changed": "~"}


@dataclass(frozen=True, slots=True)
class _Style:
    color: bool

    def __call__(self, key: str, text: str) -> str:
        return f"\x1b[{_COLORS[key]}m{text}\x1b[0m" if self.color else text


def _ms(value: float) -> str:
    return f"{value:,.0f} ms" if value >= 10 else f"{value:g} ms"


def _delta(before: float, after: float, style: _Style) -> str:
    if before == after:
        return ""
    pct = f" ({100 * (after - before) / before:+.0f}%)" if before else ""
    return style("good" if after < before else "bad", f"{after - before:+g}{pct}")


def to_text(ex: Explanation, color: bool = False) -> str:
    """A report for people: passes, remarks by pass, changes, and the cost table."""
    s = _Style(color)
    out = [
        s("head", f"explain {ex.after.name}") + f"  ({ex.file})",
        f"pipeline {ex.pipeline}" + ("" if ex.ok else "  " + s("bad", "(failed)")),
        "",
        s("head", "passes"),
    ]
    total = sum(r.seconds for r in ex.runs)
    width = max((len(r.spec) for r in ex.runs), default=0)
    for r in ex.runs:
        if r.skipped:
            status = s("dim", "skipped")
        elif r.patch is not None:
            n = len(r.patch.ops)
            status = s("changed", f"changed ({n} op{'s' if n != 1 else ''})")
        else:
            status = s("dim", "no change")
        out.append(f"  {r.seconds * 1000:8.2f} ms  {r.spec:<{width}}  {status}")
    out.append(f"  {total * 1000:8.2f} ms  total")
    out += _remarks_text(ex, s)
    out += _changes_text(ex, s)
    out += _cost_text(ex, s)
    return "\n".join(out) + "\n"


def _remarks_text(ex: Explanation, s: _Style) -> list[str]:
    out = ["", s("head", "remarks")]
    if not ex.remarks:
        out.append("  (none)")
    for name in [*ex.pass_names(), *{r.pass_name for r in ex.remarks} - set(ex.pass_names())]:
        mine = [r for r in ex.remarks if r.pass_name == name]
        if not mine:
            continue
        out.append(f"  {name}")
        for r in mine:
            loc = ex.remark_loc(r)
            out.append(f"    {s(r.kind, f'{r.kind:<8}')} {r.message}")
            if loc is not None:
                out.append(f"             {s('dim', f'at {loc}')}")
    return out


def _changes_text(ex: Explanation, s: _Style) -> list[str]:
    out = ["", s("head", "changes")]
    if not ex.nodes and not ex.edges:
        out.append("  (none)")
    for nid, ch in ex.nodes.items():
        by = f"  by {', '.join(ch.by)}" if ch.by else ""
        out.append(f"  {s(ch.kind, _MARKS[ch.kind])} node {nid} {ch.kind}{s('dim', by)}")
    for key, ch in ex.edges.items():
        by = f"  by {', '.join(ch.by)}" if ch.by else ""
        out.append(f"  {s(ch.kind, _MARKS[ch.kind])} edge {edge_name(key)} {ch.kind}{s('dim', by)}")
    return out


def _cost_text(ex: Explanation, s: _Style) -> list[str]:
    b, a = ex.cost_before, ex.cost_after
    rows: list[tuple[str, float, float, str, str]] = [
        ("nodes", b.nodes, a.nodes, str(b.nodes), str(a.nodes)),
        ("edges", b.edges, a.edges, str(b.edges), str(a.edges)),
        (
            "critical path (estimated latency)",
            b.critical_path_ms,
            a.critical_path_ms,
            _ms(b.critical_path_ms),
            _ms(a.critical_path_ms),
        ),
        (
            "critical path nodes",
            len(b.critical_path),
            len(a.critical_path),
            str(len(b.critical_path)),
            str(len(a.critical_path)),
        ),
        (
            "HTTP round trips",
            b.http_round_trips,
            a.http_round_trips,
            str(b.http_round_trips),
            str(a.http_round_trips),
        ),
        ("agent calls", b.agents, a.agents, str(b.agents), str(a.agents)),
    ]
    width = max(len(r[0]) for r in rows)
    out = ["", s("head", "cost") + " " * (width - 2) + f"{'before':>12}{'after':>12}"]
    for label, bv, av, bt, at in rows:
        out.append(f"  {label:<{width}}{bt:>12}{at:>12}  {_delta(bv, av, s)}".rstrip())
    out.append(f"  critical path before: {' -> '.join(b.critical_path) or '(empty)'}")
    out.append(f"  critical path after:  {' -> '.join(a.critical_path) or '(empty)'}")
    return out
