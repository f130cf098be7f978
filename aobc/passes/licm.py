"""`licm`: hoist work that does not depend on the item out of a map's body.

Before:
    input cfg: dict
    docs = map list.body.objects {
      body: composite workflow each {
        input doc: dict
        input cfg: dict
        output text = clean.text
        rules = function "m:compile_rules" { effect: pure, args: { cfg: inputs.cfg } }
        clean = function "m:clean" { effect: pure, args: { doc: inputs.doc, rules: rules.value } }
        rules -> clean
      } { args: { doc: "${item}", cfg: inputs.cfg } }
    }
    list -> docs

After:
    docs_rules = function "m:compile_rules" { effect: pure, args: { cfg: inputs.cfg } }
    docs = map list.body.objects {
      body: composite workflow each {
        input doc: dict
        input cfg: dict
        input rules: any
        output text = clean.text
        clean = function "m:clean" { effect: pure, args: { doc: inputs.doc, rules: inputs.rules.value } }
      } { args: { doc: "${item}", cfg: inputs.cfg, rules: docs_rules } }
    }
    list -> docs_rules -> docs
    list -> docs

Scoping: a composite body's sub-workflow sees only its own inputs, which the composite's
`args` fill in from the outer scope, where `item` is bound. A sub-workflow node is
item-independent when every input it reads is passed an expression without `item` and every
node it reads or runs after is item-independent. Such a node, when it is also hoistable, is
moved to the outer workflow as `<map>_<node>`: each `inputs.x` it reads becomes the
expression the composite passes as `x`, and the body receives its value through a new input
named after it (its readers in the body now read `inputs.<node>`).

Placement: a hoisted node with no hoisted predecessor gets a copy of every edge into the map
(same sources, labels and guards), so it runs exactly when the map runs, behind the same
approvals, and everything it reads (which the map's body read) is upstream of it. Hoisted
nodes keep the edges among themselves, and edges go from them to the map.

Legality: only pure nodes are hoisted. An effectful or idempotent node runs once per item,
and hoisting would change how often it runs; agents (a sampled answer, and a moved agent
counts against agent budgets), approvals and timers (which wait once per item) stay, as do
nodes that contain them. A node that takes its predecessors' outputs (a function without
`args`, a join) stays: outside the body its predecessors differ. A node with a labelled or
guarded outgoing edge decides a branch of the body and stays, as does one whose successor
takes its predecessors' outputs (it would lose an input). Nodes downstream of an approval in
the body are never hoisted, since they run after a node that stays.

A hoisted node loses its cache mark, whose key named the body's inputs: cache-mark, run
after licm, marks it again in the outer scope.

Speculation: a hoisted node now runs once even when the list is empty. That is only
observable when the node fails, and a pure node's failure is treated as undefined behaviour:
the optimized run may fail where the original, which never ran the node, succeeded. The
translation validator does not excuse this (it excuses only failures of the original), so
the pass is validated on worlds where pure work does not fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from aobc.backend.serialize import edge_document, node_document, to_document
from aobc.expr import parse_expr, parse_template, template_source, to_source
from aobc.expr.ast import (
    Attr,
    DictExpr,
    Expr,
    ListExpr,
    Lit,
    Var,
    ref_name,
    root_names,
    root_refs,
)
from aobc.expr.template import Template
from aobc.frontend.schema import load_node
from aobc.ir import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    Edge,
    Effect,
    Graph,
    MapNode,
    Node,
    TimerNode,
    Workflow,
    walk_nodes,
)
from aobc.ir.reads import cached_expr, cached_template_exprs, node_exprs, passes_predecessor_outputs
from aobc.passes.analysis import reads
from aobc.passes.base import Pass, PassContext
from aobc.passes.subst import EXPR_FIELDS, TEMPLATE_FIELDS, subst_expr_text, subst_node_document

_ITEM: Final = "item"
_INPUTS: Final = "inputs"


# --- expressions ------------------------------------------------------------------------


def arg_expr(value: Any) -> Expr | None:
    """An expression with the value the template `value` renders to, or None when there is
    none (text with holes renders values into a string, which no expression spells)."""
    if isinstance(value, str):
        if "$" not in value:
            return Lit(value)
        tpl = parse_template(value)
        if tpl.single is not None:
            return tpl.single
        if not tpl.exprs:
            return Lit("".join(p for p in tpl.parts if isinstance(p, str)))
        return None
    if isinstance(value, Mapping):
        items = [(str(k), arg_expr(v)) for k, v in value.items()]
        if any(e is None for _, e in items):
            return None
        return DictExpr(tuple((k, e) for k, e in items if e is not None))
    if isinstance(value, list | tuple):
        parts = [arg_expr(v) for v in value]
        if any(e is None for e in parts):
            return None
        return ListExpr(tuple(e for e in parts if e is not None))
    return Lit(value)


def _template_names(value: Any) -> set[str]:
    """Root names the holes of a JSON template value read."""
    if isinstance(value, str):
        return {n for e in cached_template_exprs(value) for n in root_names(e)}
    if isinstance(value, Mapping):
        return {n for v in value.values() for n in _template_names(v)}
    if isinstance(value, list | tuple):
        return {n for v in value for n in _template_names(v)}
    return set()


def map_expr(e: Expr, f: Callable[[Expr], Expr | None]) -> Expr:
    """`e` rebuilt bottom-up after replacing each sub-expression for which `f` answers."""
    hit = f(e)
    if hit is not None:
        return hit
    changes: dict[str, Any] = {}
    for fld in dataclasses.fields(e):
        v = getattr(e, fld.name)
        if isinstance(v, tuple):
            changes[fld.name] = tuple(
                (x[0], map_expr(x[1], f)) if isinstance(x, tuple) else map_expr(x, f) for x in v
            )
        elif not isinstance(v, str | int | float | bool | type(None)):
            changes[fld.name] = map_expr(v, f)
    return dataclasses.replace(e, **changes) if changes else e


def _map_document(doc: dict[str, Any], f: Callable[[Expr], Expr | None]) -> dict[str, Any]:
    """A node document with `f` applied to every expression it (and a map body) evaluates."""

    def templates(value: Any) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value
            parts = parse_template(value).parts
            return template_source(
                Template(tuple(p if isinstance(p, str) else map_expr(p, f) for p in parts))
            )
        if isinstance(value, dict):
            return {k: templates(v) for k, v in value.items()}
        if isinstance(value, list):
            return [templates(v) for v in value]
        return value

    out = dict(doc)
    for key in TEMPLATE_FIELDS:
        if key in out:
            out[key] = templates(out[key])
    for key in EXPR_FIELDS:
        if key in out:
            out[key] = to_source(map_expr(parse_expr(out[key]), f))
    if doc.get("type") == "map" and isinstance(doc.get("body"), dict):
        out["body"] = _map_document(doc["body"], f)
    return out


def _refs(n: Node) -> Iterator[Var | Attr]:
    """Every free-name use of a node (its map body's too, where `item` is the body's own)."""
    nodes = (n, n.body) if isinstance(n, MapNode) else (n,)
    for x in nodes:
        for _, e in node_exprs(x):
            yield from root_refs(e)


# --- the plan -----------------------------------------------------------------------------


@dataclass
class Plan:
    """What licm does to one map: which body nodes move out, and which stay and why."""

    map_id: str
    hoisted: list[str] = field(default_factory=list)  # body node ids, in the body's order
    missed: list[tuple[str, str]] = field(default_factory=list)  # (body node id, why)


def _kind_blocker(n: Node) -> str | None:
    """Why a node may not run once for all items, judged on what it is."""
    if n.effect is Effect.EFFECTFUL:
        return "node is effectful"
    if n.effect is Effect.IDEMPOTENT:
        return "node is idempotent, and hoisting would change how often it runs"
    for inner in walk_nodes((n,)):
        what = "node is" if inner is n else f'it runs {inner.KIND.value} "{inner.id}", which is'
        if isinstance(inner, AgentNode):
            return f"{what} an agent, whose answer is sampled, not computed"
        if isinstance(inner, ApprovalNode):
            return f"{what} an approval, a decision per item"
        if isinstance(inner, TimerNode):
            return f"{what} a timer, which waits once per item"
    if passes_predecessor_outputs(n):
        return "it takes its predecessors' outputs, which differ outside the body"
    return None


def _input_blocker(inputs_read: set[str], bare: bool, args: Mapping[str, Any]) -> str | None:
    """Why what a node reads of the body's inputs has no expression outside the body."""
    if bare:
        return "it reads all of the body's inputs"
    for name in sorted(inputs_read):
        if name not in args:
            return f'it reads input "{name}", which the composite does not pass'
        if arg_expr(args[name]) is None:
            return f'input "{name}" is passed as text with holes, which no expression spells'
    return None


def _edge_blocker(n: Node, sub: Graph) -> str | None:
    """Why a node's place in the body's control flow keeps it there."""
    for e in sub.succs[n.id]:
        if e.label is not None or e.when is not None:
            return f'its edge to "{e.dst}" is conditional: it decides a branch of the body'
        if passes_predecessor_outputs(sub.nodes[e.dst]):
            return f'its successor "{e.dst}" takes its predecessors\' outputs'
    return None


def _body_reads(n: Node, sub: Graph) -> tuple[set[str], bool, set[str]]:
    """(inputs read by name, whether all of `inputs` is read, body nodes it depends on)."""
    inputs_read: set[str] = set()
    bare = False
    deps = {e.src for e in sub.preds[n.id]}
    for r in _refs(n):
        name = ref_name(r)
        if name == _INPUTS:
            if isinstance(r, Attr):
                inputs_read.add(r.name)
            else:
                bare = True
        elif name in sub.nodes:
            deps.add(name)
    return inputs_read, bare, deps


def plan(m: MapNode) -> Plan:
    """Which nodes of a composite body's sub-workflow can leave the map, and why others stay."""
    out = Plan(m.id)
    body = m.body
    if not isinstance(body, CompositeNode):
        return out
    args: Mapping[str, Any] = body.args or {}
    per_item = {name for name, v in args.items() if _ITEM in _template_names(v)}
    sub = Graph.of(body.workflow)
    order = sub.topo_order()
    if order is None or len(sub.nodes) != len(body.workflow.nodes):
        return out  # a cycle or a repeated id: verify reports it; nothing here is safe
    state: dict[str, str] = {}  # "item" | "stays" | "hoist"
    for nid in order:
        n = sub.nodes[nid]
        inputs_read, bare, deps = _body_reads(n, sub)
        if (
            (bare and per_item)
            or inputs_read & per_item
            or any(state.get(d) == _ITEM for d in deps)
        ):
            state[nid] = _ITEM
            continue
        stays = sorted(d for d in deps if state.get(d) != "hoist")
        why = (
            _kind_blocker(n)
            or _input_blocker(inputs_read, bare, args)
            or _edge_blocker(n, sub)
            or (f'it runs after "{stays[0]}", which stays in the body' if stays else None)
        )
        state[nid] = "stays" if why else "hoist"
        if why:
            out.missed.append((nid, why))
        else:
            out.hoisted.append(nid)
    order_index = {n.id: i for i, n in enumerate(body.workflow.nodes)}
    out.hoisted.sort(key=order_index.__getitem__)
    return out


# --- the rewrite --------------------------------------------------------------------------


def _fresh(name: str, taken: set[str]) -> str:
    out, k = name, 2
    while out in taken:
        out, k = f"{name}_{k}", k + 1
    taken.add(out)
    return out


def _outer_nodes(m: MapNode, p: Plan, outer: Mapping[str, str]) -> list[Node]:
    """The hoisted nodes as outer-workflow nodes: inputs read become the expressions the
    composite passes, reads of hoisted nodes their outer ids."""
    body = m.body
    assert isinstance(body, CompositeNode)
    arg_exprs = {name: arg_expr(v) for name, v in (body.args or {}).items()}

    def to_outer(e: Expr) -> Expr | None:
        if isinstance(e, Attr) and isinstance(e.obj, Var) and e.obj.name == _INPUTS:
            return arg_exprs[e.name]
        if isinstance(e, Var) and e.name in outer:
            return Var(outer[e.name])
        return None

    sub = Graph.of(body.workflow)
    out = []
    for nid in p.hoisted:
        doc = _map_document(node_document(sub.nodes[nid]), to_outer)
        doc["id"] = outer[nid]
        doc.pop("cache", None)  # its key names the body's inputs; cache-mark re-derives it
        out.append(load_node(doc))
    return out


def _slim_map(m: MapNode, p: Plan, outer: Mapping[str, str]) -> Node:
    """The map without the hoisted nodes in its body, which now receives, through a new
    input named after each, the hoisted values it still reads."""
    body = m.body
    assert isinstance(body, CompositeNode)
    sub = body.workflow
    moved = set(p.hoisted)
    kept = [n for n in sub.nodes if n.id not in moved]
    kept_edges = [e for e in sub.edges if e.src not in moved and e.dst not in moved]
    read: set[str] = set()
    for n in kept:
        read |= reads(n)
    for e in kept_edges:
        read |= root_names(cached_expr(e.when)) if e.when is not None else set()
    for o in sub.outputs:
        read |= root_names(cached_expr(o.expr))
    input_names = {i.name for i in sub.inputs}
    passed = {nid: _fresh(nid, input_names) for nid in p.hoisted if nid in read}
    rename = {nid: Attr(Var(_INPUTS), name) for nid, name in passed.items()}

    sub_doc = to_document(sub)
    sub_doc["nodes"] = [subst_node_document(node_document(n), rename) for n in kept]
    sub_doc["edges"] = [edge_document(e) for e in kept_edges]
    for d in sub_doc["edges"]:
        if "when" in d:
            d["when"] = subst_expr_text(d["when"], rename)
    sub_doc["inputs"] = {
        **sub_doc.get("inputs", {}),
        **{name: {"type": "any"} for name in passed.values()},
    }
    if sub.outputs:
        sub_doc["outputs"] = {o.name: subst_expr_text(o.expr, rename) for o in sub.outputs}
    map_doc = node_document(m)
    args = {**map_doc["body"].get("args", {})}
    args.update({name: "${" + outer[nid] + "}" for nid, name in passed.items()})
    map_doc["body"] = {**map_doc["body"], "workflow": sub_doc, "args": args}
    return load_node(map_doc)


def hoist(wf: Workflow, ctx: PassContext, m: MapNode, p: Plan) -> tuple[Workflow, dict[str, str]]:
    """Apply a plan: the slimmer map, the hoisted nodes and their edges. Returns the new
    workflow and the outer id of each hoisted body node."""
    assert isinstance(m.body, CompositeNode)
    sub = Graph.of(m.body.workflow)
    moved = set(p.hoisted)
    taken = {n.id for n in wf.nodes}
    outer = {nid: _fresh(f"{m.id}_{nid}", taken) for nid in p.hoisted}
    incoming = list(Graph.of(wf).preds[m.id])
    wf = ctx.rewriter.replace_node(wf, m.id, _slim_map(m, p, outer))
    for node in _outer_nodes(m, p, outer):
        wf = ctx.rewriter.add_node(wf, node)
    for nid in p.hoisted:
        inner = [e for e in sub.preds[nid] if e.src in moved]
        for e in inner:
            wf = ctx.rewriter.add_edge(wf, Edge(src=outer[e.src], dst=outer[nid]))
        if not inner:
            for e in incoming:  # a copy of each edge into the map: it runs when the map runs
                wf = ctx.rewriter.add_edge(
                    wf, Edge(src=e.src, dst=outer[nid], label=e.label, when=e.when)
                )
    for nid in p.hoisted:
        # Every hoisted node reaches a hoisted sink, so edges from the sinks order them all
        # before the map.
        if not any(e.dst in moved for e in sub.succs[nid]):
            wf = ctx.rewriter.add_edge(wf, Edge(src=outer[nid], dst=m.id))
    return wf, outer


@dataclass(frozen=True, kw_only=True)
class LicmPass(Pass):
    """Hoists item-independent pure work out of map bodies."""

    name: ClassVar[str] = "licm"
    summary: ClassVar[str] = "hoist pure work that does not depend on the item out of map bodies"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        graph = Graph.of(wf)
        if graph.topo_order() is None or len(graph.nodes) != len(wf.nodes):
            return wf  # verify reports the cycle or repeated id; nothing here is safe to judge
        for m in [n for n in wf.nodes if isinstance(n, MapNode)]:
            p = plan(m)
            inner = (
                {n.id: n for n in m.body.workflow.nodes}
                if isinstance(m.body, CompositeNode)
                else {}
            )
            for nid, why in p.missed:
                ctx.remark(
                    self.name,
                    "missed",
                    "stays",
                    (m.id, nid),
                    f"not hoisted: {why}",
                    inner[nid].loc if nid in inner else m.loc,
                )
            if not p.hoisted:
                continue
            wf, outer = hoist(wf, ctx, m, p)
            for nid in p.hoisted:
                ctx.remark(
                    self.name,
                    "passed",
                    "hoisted",
                    (m.id, outer[nid]),
                    f'hoisted "{nid}" out of map "{m.id}" as "{outer[nid]}": it does not '
                    "depend on the item, so it runs once instead of once per item",
                    m.loc,
                )
                ctx.count("nodes-hoisted")
        return wf
