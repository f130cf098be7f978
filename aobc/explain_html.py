"""`aobc explain --html`: one standalone page, both graphs drawn, no external resources.

The graphs are laid out here, Sugiyama style and small: nodes go in layers by their longest
path from a root, edges that skip layers get bend points in the layers they cross, a few
barycenter sweeps order each layer to cut crossings, and a few more pull each node towards
its neighbours. That is enough for workflows of tens of nodes, which is what people read.
"""

from __future__ import annotations

import functools
import html
import itertools
from dataclasses import dataclass, field
from typing import Final

from aobc.explain import EdgeKey, Explanation, edge_name
from aobc.ir import ApprovalNode, Edge, Graph, HttpNode, JoinNode, Node, Workflow
from aobc.passes.analysis import Cost, node_cost_ms

NODE_W: Final = 200
NODE_H: Final = 46
DUMMY_W: Final = 16  # the width a bend point takes in its layer
H_GAP: Final = 28
V_GAP: Final = 62
MARGIN: Final = 24
_ARROW: Final = " \u2192 "

KIND_FILL: Final = {
    "http": "#e3f2fd",
    "function": "#eef6e4",
    "agent": "#f3e5f5",
    "approval": "#fff1dc",
    "timer": "#eceff1",
    "condition": "#fffbe0",
    "join": "#f4f4f4",
    "map": "#e0f5f5",
    "composite": "#e8eaf6",
}


@dataclass
class _Slot:
    """A node, or a bend point of a long edge (`node` None), in a layer."""

    key: str
    layer: int
    width: float
    node: Node | None = None
    x: float = 0.0  # centre


@dataclass
class Layout:
    width: float
    height: float
    slots: dict[str, _Slot] = field(default_factory=dict)
    #: Each edge with the points its path goes through, source first.
    routes: list[tuple[Edge, list[tuple[float, float]]]] = field(default_factory=list)

    def y(self, layer: int) -> float:
        return MARGIN + layer * (NODE_H + V_GAP) + NODE_H / 2


def _layers(graph: Graph) -> dict[str, int]:
    """Longest path from a root; a graph with a cycle falls back to declaration order."""
    order = graph.topo_order()
    if order is None:
        return {nid: i for i, nid in enumerate(graph.nodes)}
    layer: dict[str, int] = {}
    for nid in order:
        layer[nid] = max((layer[e.src] + 1 for e in graph.preds[nid]), default=0)
    return layer


def layout(wf: Workflow) -> Layout:
    graph = Graph.of(wf)
    layer_of = _layers(graph)
    rows: list[list[_Slot]] = [[] for _ in range(max(layer_of.values(), default=-1) + 1)]
    slots: dict[str, _Slot] = {}
    for nid, node in graph.nodes.items():
        slot = _Slot(nid, layer_of[nid], NODE_W, node)
        slots[nid] = slot
        rows[slot.layer].append(slot)
    # Links between slots in adjacent layers; a long edge becomes a chain of bend points.
    chains: list[tuple[Edge, list[str]]] = []
    up: dict[str, list[str]] = {k: [] for k in slots}
    down: dict[str, list[str]] = {k: [] for k in slots}
    for i, e in enumerate(wf.edges):
        if e.src not in slots or e.dst not in slots:
            continue
        chain = [e.src]
        lo, hi = layer_of[e.src], layer_of[e.dst]
        for layer in range(lo + 1, hi):
            key = f"\0{i}:{layer}"
            slots[key] = _Slot(key, layer, DUMMY_W)
            rows[layer].append(slots[key])
            up[key], down[key] = [], []
            chain.append(key)
        chain.append(e.dst)
        for a, b in itertools.pairwise(chain):
            down[a].append(b)
            up[b].append(a)
        chains.append((e, chain))
    _place(rows, slots, up, down)
    width = max((s.x + s.width / 2 for s in slots.values()), default=0) + MARGIN
    out = Layout(width=max(width, NODE_W + 2 * MARGIN), height=0, slots=slots)
    out.height = out.y(len(rows) - 1) + NODE_H / 2 + MARGIN if rows else 2 * MARGIN
    for e, chain in chains:
        out.routes.append((e, [(slots[k].x, out.y(slots[k].layer)) for k in chain]))
    _spread_ports(out.routes)
    return out


def _spread_ports(routes: list[tuple[Edge, list[tuple[float, float]]]]) -> None:
    """Edges leave a node's bottom and enter its top side by side, in the order of where
    they go or come from, rather than all at its centre."""
    leaving: dict[str, list[list[tuple[float, float]]]] = {}
    entering: dict[str, list[list[tuple[float, float]]]] = {}
    for e, points in routes:
        leaving.setdefault(e.src, []).append(points)
        entering.setdefault(e.dst, []).append(points)
    for groups, end, towards in ((leaving, 0, 1), (entering, -1, -2)):
        for paths in groups.values():
            paths.sort(key=functools.partial(_x_at, towards))
            step = min(22.0, (NODE_W - 48) / max(len(paths) - 1, 1))
            for i, p in enumerate(paths):
                x, y = p[end]
                p[end] = (x + (i - (len(paths) - 1) / 2) * step, y)


def _x_at(index: int, points: list[tuple[float, float]]) -> float:
    return points[index][0]


def _wanted(want: dict[str, float], slot: _Slot) -> float:
    return want[slot.key]


def _pack(row: list[_Slot], want: dict[str, float]) -> None:
    """Put a layer's slots, in order, as near their wanted centres as separation allows."""
    x = float("-inf")
    for s in row:
        lo = x + (H_GAP + s.width / 2 if x != float("-inf") else 0)
        s.x = max(want.get(s.key, s.x), lo)
        x = s.x + s.width / 2
    if row:  # the forward pass only pushes right: shift the row back onto its wishes
        shift = sum(want.get(s.key, s.x) - s.x for s in row) / len(row)
        for s in row:
            s.x += shift


def _place(
    rows: list[list[_Slot]],
    slots: dict[str, _Slot],
    up: dict[str, list[str]],
    down: dict[str, list[str]],
) -> None:
    for row in rows:
        _pack(row, {s.key: i * (NODE_W + H_GAP) for i, s in enumerate(row)})

    def mean(keys: list[str], fallback: float) -> float:
        return sum(slots[k].x for k in keys) / len(keys) if keys else fallback

    for sweep in range(8):
        sequence = range(1, len(rows)) if sweep % 2 == 0 else range(len(rows) - 2, -1, -1)
        links = up if sweep % 2 == 0 else down
        for i in sequence:
            want = {s.key: mean(links[s.key], s.x) for s in rows[i]}
            if sweep < 4:  # first order the layer, then only straighten
                rows[i].sort(key=functools.partial(_wanted, want))
            _pack(rows[i], want)
    left = min((s.x - s.width / 2 for s in slots.values()), default=0.0)
    for s in slots.values():
        s.x += MARGIN - left


# --- drawing ------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _kind_text(n: Node) -> str:
    if isinstance(n, HttpNode):
        return f"http {n.method}"
    if isinstance(n, JoinNode):
        return f"join {n.mode.value}"
    return n.KIND.value


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _ms(value: float) -> str:
    if value >= 60_000:
        return f"{value / 60_000:.1f} min"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    return f"{value:g} ms"


def svg_graph(ex: Explanation, which: str, width: float | None = None) -> str:
    """The `before` or `after` graph as inline SVG, changes and the critical path marked.

    With `width`, the drawing is centred in that width, so that two graphs drawn with the
    same width scale alike when the page is narrower than they are."""
    wf = ex.before if which == "before" else ex.after
    crit = (ex.cost_before if which == "before" else ex.cost_after).critical_path
    crit_edges = set(itertools.pairwise(crit))
    lay = layout(wf)
    w = max(width or 0.0, lay.width)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="graph" data-graph="{which}" '
        f'width="{w:.0f}" height="{lay.height:.0f}" viewBox="0 0 {w:.0f} {lay.height:.0f}" '
        f'role="img" aria-label="the workflow {_e(which)} optimization">',
        "<defs>",
    ]
    for name, colour in _ARROWS.items():
        out.append(
            f'<marker id="{which}-arrow-{name}" viewBox="0 0 10 10" refX="9" refY="5" '
            f'markerUnits="userSpaceOnUse" markerWidth="9" markerHeight="9" orient="auto">'
            f'<path d="M0,0 L10,5 L0,10 z" fill="{colour}"/></marker>'
        )
    out.append(f'</defs><g transform="translate({(w - lay.width) / 2:.1f},0)">')
    for e, points in lay.routes:
        out.append(_edge_svg(ex, which, e, points, (e.src, e.dst) in crit_edges))
    for slot in lay.slots.values():
        if slot.node is not None:
            out.append(_node_svg(ex, which, slot, slot.node.id in crit))
    out.append("</g></svg>")
    return "\n".join(out)


_ARROWS: Final = {
    "plain": "#78818c",
    "crit": "#1f5fbf",
    "added": "#1b873f",
    "removed": "#c62828",
    "changed": "#d9730d",
}


def _change_class(ex: Explanation, which: str, kind: str | None) -> str | None:
    """Removed things show on the before graph, added ones on the after graph."""
    if kind == "changed" or (kind == "removed" and which == "before"):
        return kind
    if kind == "added" and which == "after":
        return kind
    return None


def _path(points: list[tuple[float, float]]) -> str:
    (x0, y0), rest = points[0], points[1:]
    d = [f"M{x0:.1f},{y0 + NODE_H / 2:.1f}"]
    prev = (x0, y0 + NODE_H / 2)
    for i, (x, y) in enumerate(rest):
        end_y = y - NODE_H / 2 if i == len(rest) - 1 else y
        mid = (prev[1] + end_y) / 2
        d.append(f"C{prev[0]:.1f},{mid:.1f} {x:.1f},{mid:.1f} {x:.1f},{end_y:.1f}")
        if i < len(rest) - 1:  # through the bend point's layer, straight down
            d.append(f"L{x:.1f},{y + NODE_H / 2:.1f}")
            prev = (x, y + NODE_H / 2)
    return " ".join(d)


def _edge_svg(
    ex: Explanation, which: str, e: Edge, points: list[tuple[float, float]], crit: bool
) -> str:
    change = ex.edges.get(e.key)
    cls = _change_class(ex, which, change.kind if change else None)
    arrow = cls or ("crit" if crit else "plain")
    classes = " ".join(c for c in ("edge", cls, "crit" if crit else None) if c)
    label = e.label if e.label is not None else (f"when {e.when}" if e.when else None)
    title = edge_name(e.key) + (f" when {e.when}" if e.when else "")
    if change is not None:
        title += f" ({change.kind} by {', '.join(change.by) or '?'})"
    parts = [
        f'<g class="{classes}" data-edge="{_e(edge_name(e.key))}"><title>{_e(title)}</title>',
        f'<path d="{_path(points)}" marker-end="url(#{which}-arrow-{arrow})"/>',
    ]
    if label:
        (x0, y0), (x1, y1) = points[0], points[1]
        mx, my = (x0 + x1) / 2, (y0 + NODE_H / 2 + y1 - NODE_H / 2) / 2
        text = _short(label, 22)
        w = 6.4 * len(text) + 8
        parts.append(
            f'<rect class="label-bg" x="{mx - w / 2:.1f}" y="{my - 8:.1f}" width="{w:.1f}" height="16" rx="3"/>'
            f'<text class="label" x="{mx:.1f}" y="{my + 4:.1f}">{_e(text)}</text>'
        )
    parts.append("</g>")
    return "".join(parts)


def _node_svg(ex: Explanation, which: str, slot: _Slot, crit: bool) -> str:
    n = slot.node
    assert n is not None
    change = ex.nodes.get(n.id)
    cls = _change_class(ex, which, change.kind if change else None)
    classes = " ".join(
        c for c in ("node", f"kind-{n.KIND.value}", cls, "crit" if crit else None) if c
    )
    x, y = slot.x - NODE_W / 2, MARGIN + slot.layer * (NODE_H + V_GAP)
    loc = ex.node_loc(n.id)
    title = f"{n.id}: {_kind_text(n)}, {n.effect.value}, ~{_ms(node_cost_ms(n))}"
    if loc is not None:
        title += f"\n{loc}"
    if change is not None:
        title += f"\n{change.kind} by {', '.join(change.by) or '?'}"
    if isinstance(n, ApprovalNode):
        title += f"\napprovers: {', '.join(n.approvers)}"
    sub = f"{_kind_text(n)} \u00b7 {n.effect.value}"
    cost_text = _ms(node_cost_ms(n))
    room = int((NODE_W - 30 - 6.2 * len(cost_text)) / 6.3)  # characters left beside the cost
    badge = {"added": "+", "removed": "\u2212", "changed": "~"}.get(cls or "", "")
    return (
        f'<g class="{classes}" data-node="{_e(n.id)}"><title>{_e(title)}</title>'
        f'<rect x="{x:.1f}" y="{y:.1f}" width="{NODE_W}" height="{NODE_H}" rx="7" '
        f'fill="{KIND_FILL.get(n.KIND.value, "#fff")}"/>'
        + (
            f'<rect class="crit-bar" x="{x:.1f}" y="{y + 6:.1f}" width="4" height="{NODE_H - 12}" rx="2"/>'
            if crit
            else ""
        )
        + f'<text class="id" x="{x + 12:.1f}" y="{y + 19:.1f}">{_e(_short(n.id, 20))}</text>'
        f'<text class="sub" x="{x + 12:.1f}" y="{y + 36:.1f}">{_e(_short(sub, room))}</text>'
        + (
            f'<text class="badge" x="{x + NODE_W - 10:.1f}" y="{y + 19:.1f}">{badge}</text>'
            if badge
            else ""
        )
        + f'<text class="cost" x="{x + NODE_W - 10:.1f}" y="{y + 36:.1f}">{_e(cost_text)}</text>'
        "</g>"
    )


# --- the page -----------------------------------------------------------------------------

_CSS: Final = """
:root { --fg: #1d2430; --muted: #5d6775; --line: #d9dee5; --bg: #f7f8fa; --added: #1b873f;
  --removed: #c62828; --changed: #d9730d; --crit: #1f5fbf; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
  color: var(--fg); background: var(--bg); }
main { max-width: 1500px; margin: 0 auto; padding: 20px 28px 48px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 28px 0 10px; }
code, .mono, td.loc { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12.5px; }
.meta { color: var(--muted); }
.status-ok { color: var(--added); font-weight: 600; }
.status-failed { color: var(--removed); font-weight: 600; }
.cards { display: flex; flex-wrap: wrap; gap: 12px; margin-top: 16px; }
.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 170px; }
.card .k { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 20px; font-weight: 600; }
.card .d { font-size: 12px; }
.better { color: var(--added); } .worse { color: var(--removed); } .same { color: var(--muted); }
.graphs { display: flex; flex-wrap: wrap; gap: 16px; align-items: flex-start; }
figure { margin: 0; background: #fff; border: 1px solid var(--line); border-radius: 8px;
  padding: 10px; flex: 1 1 520px; overflow-x: auto; }
figcaption { font-weight: 600; margin-bottom: 6px; }
figcaption span { font-weight: 400; color: var(--muted); }
svg.graph { max-width: 100%; height: auto; display: block; margin: 0 auto; }
svg .node rect { stroke: #9aa4b1; stroke-width: 1.2; }
svg .node text.id { font: 600 13px ui-monospace, Menlo, Consolas, monospace; fill: var(--fg); }
svg .node text.sub { font: 11.5px system-ui, sans-serif; fill: var(--muted); }
svg .node text.cost { font: 11px system-ui, sans-serif; fill: var(--muted); text-anchor: end; }
svg .node text.badge { font: 700 14px system-ui, sans-serif; text-anchor: end; }
svg .node .crit-bar { fill: var(--crit); stroke: none; }
svg .node.added > rect:first-of-type { stroke: var(--added); stroke-width: 3; }
svg .node.added text.badge { fill: var(--added); }
svg .node.changed > rect:first-of-type { stroke: var(--changed); stroke-width: 3; }
svg .node.changed text.badge { fill: var(--changed); }
svg .node.removed > rect:first-of-type { stroke: var(--removed); stroke-width: 2.5; stroke-dasharray: 6 4; }
svg .node.removed { opacity: .7; }
svg .node.removed text.badge { fill: var(--removed); }
svg .edge path { fill: none; stroke: #78818c; stroke-width: 1.4; }
svg .edge.crit path { stroke: var(--crit); stroke-width: 2.4; }
svg .edge.added path { stroke: var(--added); stroke-width: 2.6; }
svg .edge.changed path { stroke: var(--changed); stroke-width: 2.6; }
svg .edge.removed path { stroke: var(--removed); stroke-width: 2.4; stroke-dasharray: 6 4; }
svg .label-bg { fill: #fff; stroke: var(--line); }
svg .label { font: 11px ui-monospace, Menlo, Consolas, monospace; fill: var(--muted); text-anchor: middle; }
.legend { display: flex; flex-wrap: wrap; gap: 16px; color: var(--muted); font-size: 12.5px; margin: 4px 0 10px; }
.legend i { display: inline-block; width: 22px; height: 12px; border-radius: 3px; vertical-align: -1px;
  margin-right: 5px; background: #fff; border: 2px solid; }
.legend .l-added { border-color: var(--added); }
.legend .l-removed { border-color: var(--removed); border-style: dashed; }
.legend .l-changed { border-color: var(--changed); }
.legend .l-crit { border: 0; background: var(--crit); height: 4px; vertical-align: 3px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line);
  border-radius: 8px; overflow: hidden; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: #eef1f5; font-weight: 600; font-size: 12.5px; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.kind { display: inline-block; padding: 1px 7px; border-radius: 9px; font-size: 12px; font-weight: 600; }
.kind-passed, .kind-added { background: #e3f4e8; color: var(--added); }
.kind-missed, .kind-changed { background: #fdf0e1; color: #a35200; }
.kind-analysis { background: #e4eefb; color: var(--crit); }
.kind-removed { background: #fbe5e5; color: var(--removed); }
td.timing { width: 30%; }
.bar { height: 8px; background: #c9d6ea; border-radius: 4px; min-width: 2px; }
.none { color: var(--muted); font-style: italic; }
"""


def _delta_html(before: float, after: float, unit: str = "") -> str:
    if before == after:
        return '<span class="same">unchanged</span>'
    pct = f" ({100 * (after - before) / before:+.0f}%)" if before else ""
    cls = "better" if after < before else "worse"
    return f'<span class="{cls}">{after - before:+g}{unit}{pct}</span>'


def _cards(ex: Explanation) -> str:
    b, a = ex.cost_before, ex.cost_after
    cards = [
        (
            "estimated latency",
            _ms(b.critical_path_ms),
            _ms(a.critical_path_ms),
            b.critical_path_ms,
            a.critical_path_ms,
            " ms",
        ),
        ("nodes", str(b.nodes), str(a.nodes), b.nodes, a.nodes, ""),
        ("edges", str(b.edges), str(a.edges), b.edges, a.edges, ""),
        (
            "critical path nodes",
            str(len(b.critical_path)),
            str(len(a.critical_path)),
            len(b.critical_path),
            len(a.critical_path),
            "",
        ),
        (
            "HTTP round trips",
            str(b.http_round_trips),
            str(a.http_round_trips),
            b.http_round_trips,
            a.http_round_trips,
            "",
        ),
        ("agent calls", str(b.agents), str(a.agents), b.agents, a.agents, ""),
    ]
    out = ['<div class="cards" id="cost">']
    for label, bt, at, bv, av, unit in cards:
        out.append(
            f'<div class="card"><div class="k">{_e(label)}</div>'
            f'<div class="v">{_e(bt)} \u2192 {_e(at)}</div>'
            f'<div class="d">{_delta_html(float(bv), float(av), unit)}</div></div>'
        )
    out.append("</div>")
    return "".join(out)


def _cost_table(name: str, c: Cost) -> str:
    path = _ARROW.join(c.critical_path) or "(empty)"
    return f'<p class="meta">critical path {name}: <code>{_e(path)}</code></p>'


def _row(*cells: str, cls: str = "") -> str:
    """A table row; each cell is HTML, or `_cell(class, html)` for a cell with a class."""
    out = []
    for c in cells:
        klass, _, body = c.rpartition("\x00")
        out.append(f'<td class="{klass}">{body}</td>' if klass else f"<td>{body}</td>")
    return (
        f'<tr class="{cls}">' + "".join(out) + "</tr>" if cls else "<tr>" + "".join(out) + "</tr>"
    )


def _cell(klass: str, body: str) -> str:
    return f"{klass}\x00{body}"


def _badge(kind: str) -> str:
    return f'<span class="kind kind-{kind}">{kind}</span>'


def _table(ident: str, heads: list[str], rows: list[str], numeric: tuple[str, ...] = ()) -> str:
    head = "".join(f'<th class="num">{h}</th>' if h in numeric else f"<th>{h}</th>" for h in heads)
    return (
        f'<table id="{ident}"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
    )


def _passes_table(ex: Explanation) -> str:
    longest = max((r.seconds for r in ex.runs), default=0.0) or 1.0
    rows = []
    for r in ex.runs:
        status = "skipped" if r.skipped else ("changed" if r.patch is not None else "no change")
        ops = len(r.patch.ops) if r.patch is not None else 0
        bar = f'<div class="bar" style="width:{100 * r.seconds / longest:.1f}%"></div>'
        rows.append(
            _row(
                f"<code>{_e(r.spec)}</code>",
                status,
                _cell("num", str(ops)),
                _cell("num", f"{r.seconds * 1000:.2f} ms"),
                _cell("timing", bar),
            )
        )
    total = sum(r.seconds for r in ex.runs)
    rows.append(
        _row(
            "<strong>total</strong>",
            "",
            "",
            _cell("num", f"<strong>{total * 1000:.2f} ms</strong>"),
            "",
        )
    )
    return _table("passes", ["pass", "result", "ops", "time", ""], rows, numeric=("ops", "time"))


def _remarks_table(ex: Explanation) -> str:
    if not ex.remarks:
        return '<p class="none">No pass made a remark.</p>'
    rows = []
    for r in ex.remarks:
        loc = ex.remark_loc(r)
        rows.append(
            _row(
                f"<code>{_e(r.pass_name)}</code>",
                _badge(r.kind),
                _e(r.message),
                _cell("loc", _e(loc) if loc is not None else ""),
                cls=f"remark {r.kind}",
            )
        )
    return _table("remarks", ["pass", "kind", "what and why", "where"], rows)


def _changes_table(ex: Explanation) -> str:
    items: list[tuple[str, str, str, tuple[str, ...], object]] = [
        ("node", nid, ch.kind, ch.by, ex.node_loc(nid)) for nid, ch in ex.nodes.items()
    ]
    items += [("edge", edge_name(k), ch.kind, ch.by, ex.edge_loc(k)) for k, ch in ex.edges.items()]
    if not items:
        return '<p class="none">The optimizer changed nothing.</p>'
    rows = [
        _row(
            what,
            f"<code>{_e(name)}</code>",
            _badge(kind),
            f"<code>{_e(', '.join(by))}</code>",
            _cell("loc", _e(loc) if loc is not None else ""),
            cls=f"change {what}",
        )
        for what, name, kind, by, loc in items
    ]
    return _table("changes", ["what", "id", "change", "by", "where"], rows)


def to_html(ex: Explanation) -> str:
    title = f"aobc explain: {ex.after.name}"
    status = (
        '<span class="status-ok">ok</span>'
        if ex.ok
        else '<span class="status-failed">failed</span>'
    )
    legend = (
        '<div class="legend"><span><i class="l-added"></i>added</span>'
        '<span><i class="l-removed"></i>removed</span><span><i class="l-changed"></i>changed</span>'
        '<span><i class="l-crit"></i>critical path</span></div>'
    )
    b, a = ex.cost_before, ex.cost_after
    width = max(layout(ex.before).width, layout(ex.after).width)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{_e(ex.after.name)}</h1>
<div class="meta"><code>{_e(ex.file)}</code> &middot; pipeline <code>{_e(ex.pipeline)}</code> &middot; {status}</div>
{_cards(ex)}
<h2>Graph before and after</h2>
{legend}
<div class="graphs">
<figure><figcaption>before <span>{b.nodes} nodes, {b.edges} edges, ~{_e(_ms(b.critical_path_ms))}</span></figcaption>
{svg_graph(ex, "before", width)}
{_cost_table("before", b)}</figure>
<figure><figcaption>after <span>{a.nodes} nodes, {a.edges} edges, ~{_e(_ms(a.critical_path_ms))}</span></figcaption>
{svg_graph(ex, "after", width)}
{_cost_table("after", a)}</figure>
</div>
<h2>Remarks</h2>
{_remarks_table(ex)}
<h2>Changes</h2>
{_changes_table(ex)}
<h2>Passes</h2>
{_passes_table(ex)}
</main>
</body>
</html>
"""


__all__ = ["EdgeKey", "Layout", "layout", "svg_graph", "to_html"]
