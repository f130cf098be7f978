"""`pushdown-predicates`: let a source that can filter its items do the filtering.

Before:
    orders = http GET "https://shop.example.com/orders?since=${inputs.since}" {
      effect: idempotent
      filter: { param: "where", items: "body.items" }
    }
    big    = function "aobc.stdlib:filter" {
      effect: pure
      args: { items: orders.body.items, where: "item.total > 100" }
    }
    report = function "m:report" { effect: pure, args: { orders: big } }
    orders -> big -> report

After:
    orders = http GET "https://shop.example.com/orders?since=${inputs.since}&where=item.total%20%3E%20100" {
      effect: idempotent
      filter: { param: "where", items: "body.items" }
    }
    report = function "m:report" { effect: pure, args: { orders: orders.body.items } }
    orders -> report

The source's `filter` declares that it applies the expression sent in query parameter
`param` to the item list at path `items` of its output, which is what `aobc.stdlib:filter`
computes. So the filter node goes, and its readers read the source's (now filtered) items.

Legality: the filter's `where` is a literal over `item` alone; its items are exactly the
source's declared item list (a dotted path) and it waits for nothing else; the source is not effectful
(changing an effectful request changes the effect) and is not a batch. No other reader may
see the source's items, its whole output, or its `url` and `headers` (which the parameter
changes): those would see filtered data. The filter's successors take its edges, so nothing
runs earlier or under other conditions, and no work crosses an approval.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar, Final

from aobc.expr import parse_expr, parse_template
from aobc.expr.ast import Attr, Expr, Index, Lit, Var, children, root_names
from aobc.expr.parse import ExprSyntaxError
from aobc.ir import (
    Effect,
    FunctionNode,
    Graph,
    HttpNode,
    MapNode,
    Node,
    Workflow,
)
from aobc.ir.reads import cached_expr, node_exprs, passes_predecessor_outputs
from aobc.passes.analysis import gated_by
from aobc.passes.base import Pass, PassContext
from aobc.passes.subst import ref

FILTER_FN: Final = "aobc.stdlib:filter"
#: Response fields that change with the URL itself, not only the filtered items.
_URL_FIELDS: Final = frozenset({"url", "headers"})

Step = str | int


def steps(e: Expr) -> tuple[str, tuple[Step, ...]] | None:
    """`a.b[0]["c"]` as ("a", ("b", 0, "c")); None when `e` is not such a path."""
    path: list[Step] = []
    while not isinstance(e, Var):
        if isinstance(e, Attr):
            path.append(e.name)
        elif (
            isinstance(e, Index)
            and isinstance(e.index, Lit)
            and isinstance(e.index.value, str | int)
            and not isinstance(e.index.value, bool)
        ):
            path.append(e.index.value)
        else:
            return None
        e = e.obj
    return e.name, tuple(reversed(path))


def uses(e: Expr, name: str) -> Iterator[tuple[Step, ...]]:
    """The longest static path of every use of `name` in `e` (`len(s.body.items)` gives
    ("body", "items"); `s.body.items[i]` too, the index being dynamic)."""
    found = steps(e)
    if found is not None:
        if found[0] == name:
            yield found[1]
        return
    for c in children(e):
        yield from uses(c, name)


def _overlaps(a: tuple[Step, ...], b: tuple[Step, ...]) -> bool:
    """True when one path is a prefix of the other: reading one reads (part of) the other."""
    n = min(len(a), len(b))
    return a[:n] == b[:n]


@dataclass(frozen=True)
class _Push:
    source: HttpNode
    filter: FunctionNode
    where: str
    items: tuple[Step, ...]
    url: str


class Missed(Exception):
    """Why a filter cannot be pushed (the text after "not pushed: ")."""

    def __init__(self, reason: str, *nodes: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.nodes = nodes


def _literal(text: object) -> str | None:
    """The text of a template without holes, else None."""
    if not isinstance(text, str):
        return None
    parts = parse_template(text).parts if "$" in text else (text,)
    return (
        "".join(p for p in parts if isinstance(p, str))
        if all(isinstance(p, str) for p in parts)
        else None
    )


def _source_of(f: FunctionNode, graph: Graph) -> tuple[HttpNode, tuple[Step, ...]] | None:
    """The node whose items `f` filters and the path it reads, when `items` is one path."""
    text = f.args.get("items") if f.args else None
    if not isinstance(text, str) or "$" not in text:
        return None
    single = parse_template(text).single
    found = steps(single) if single is not None else None
    if found is None or found[0] not in graph.nodes:
        return None
    src = graph.nodes[found[0]]
    if not isinstance(src, HttpNode):
        raise Missed(f'"{src.id}" is not an HTTP source that can filter', f.id, src.id)
    return src, found[1]


def _where(f: FunctionNode) -> str:
    where = _literal(f.args.get("where") if f.args else None)
    if where is None:
        raise Missed(f'the "where" of "{f.id}" is computed at run time', f.id)
    try:
        names = root_names(parse_expr(where))
    except ExprSyntaxError as err:
        raise Missed(f'the "where" of "{f.id}" is not an expression: {err}', f.id) from None
    if names - {"item"}:
        outside = ", ".join(sorted(names - {"item"}))
        raise Missed(f'the "where" of "{f.id}" reads {outside}, which the source cannot see', f.id)
    return where


def _check_source(s: HttpNode, f: FunctionNode, path: tuple[Step, ...]) -> tuple[Step, ...]:
    """The source's declared item path, when it can take this filter."""
    if s.filter is None:
        raise Missed(f'"{s.id}" does not declare filter support', f.id, s.id)
    if s.effect is Effect.EFFECTFUL:
        raise Missed(
            f'"{s.id}" is effectful: changing its request would change its effect', f.id, s.id
        )
    if s.requests is not None:
        raise Missed(f'"{s.id}" is a batch', f.id, s.id)
    declared = steps(cached_expr(s.filter["items"]))
    items = (declared[0], *declared[1]) if declared is not None else ()
    if not all(isinstance(p, str) and p.isidentifier() for p in items) or not items:
        # The declaration's meaning is a dotted path (`body.items`), so that is all we trust.
        raise Missed(
            f'"{s.id}" declares its items at {s.filter["items"]}, not a dotted path', f.id, s.id
        )
    if path != items:
        shown = ".".join(str(p) for p in path)
        raise Missed(
            f'"{f.id}" filters {s.id}.{shown}, but "{s.id}" filters its items at {s.filter["items"]}',
            f.id,
            s.id,
        )
    return items


def _check_filter(f: FunctionNode, s: HttpNode, graph: Graph) -> None:
    """The filter's only input is the source's items, and its outputs go where they can."""
    if f.effect is not Effect.PURE:
        raise Missed(f'"{f.id}" is declared {f.effect.value}, not pure', f.id)
    extra = sorted(set(f.args or {}) - {"items", "where"})
    if extra:
        raise Missed(f'"{f.id}" also takes {", ".join(extra)}', f.id)
    for e in graph.preds[f.id]:
        if e.src != s.id:
            raise Missed(f'"{f.id}" also waits for "{e.src}"', f.id, e.src)
        if e.when is not None:
            raise Missed(f'the edge "{s.id}" -> "{f.id}" has a guard', f.id, s.id)
    into = {e.dst: e for e in graph.succs[s.id]}
    for e in graph.succs[f.id]:
        if passes_predecessor_outputs(graph.nodes[e.dst]):
            raise Missed(f'"{e.dst}" takes the whole output of "{f.id}" as its input', f.id, e.dst)
        both = into.get(e.dst)
        if both is not None and (both.when is not None or e.when is not None):
            raise Missed(f'"{e.dst}" follows both "{s.id}" and "{f.id}" under guards', f.id, e.dst)
    # With the source as its only input the filter is behind exactly the source's approvals
    # today; checked all the same, so relaxing the rule above cannot move work across one.
    gates = gated_by(graph)
    if gates[f.id] != gates[s.id]:
        gate = sorted(gates[f.id] ^ gates[s.id])[0]
        raise Missed(f'across approval "{gate}"', f.id, gate)


def _reader_exprs(wf: Workflow) -> Iterator[tuple[str, Expr]]:
    """(reader, expression) for every expression in the workflow that reads a node."""
    for n in wf.nodes:
        for _, e in node_exprs(n):
            yield n.id, e
        if isinstance(n, MapNode):
            for _, e in node_exprs(n.body):
                yield n.id, e
    for edge in wf.edges:
        if edge.when is not None:
            yield f'the guard of "{edge.src}" -> "{edge.dst}"', cached_expr(edge.when)
    for o in wf.outputs:
        yield f'output "{o.name}"', cached_expr(o.expr)


def _check_readers(
    wf: Workflow, graph: Graph, s: HttpNode, f: FunctionNode, items: tuple[Step, ...]
) -> None:
    """Nobody but the filter may see what filtering the source changes."""
    for e in graph.succs[s.id]:
        if e.dst != f.id and passes_predecessor_outputs(graph.nodes[e.dst]):
            raise Missed(f'"{e.dst}" reads the unfiltered items (all of "{s.id}")', f.id, e.dst)
    for reader, expr in _reader_exprs(wf):
        if reader == f.id:
            continue
        for path in uses(expr, s.id):
            if _overlaps(path, items):
                raise Missed(f"{_who(reader, graph)} reads the unfiltered items", f.id, reader)
            if path[:1] and path[0] in _URL_FIELDS:
                raise Missed(
                    f"{_who(reader, graph)} reads {s.id}.{path[0]}, which the pushed filter changes",
                    f.id,
                    reader,
                )


def _who(reader: str, graph: Graph) -> str:
    return f'"{reader}"' if reader in graph.nodes else reader


def filtered_url(s: HttpNode, param: str, where: str) -> str:
    """The source's URL template with `param=where` added to its query."""
    literal = "".join(p for p in parse_template(s.url).parts if isinstance(p, str))
    if "#" in literal:
        raise Missed(f'the URL of "{s.id}" has a fragment', s.id)
    key = urllib.parse.quote(param, safe="")
    query = literal.partition("?")[2]
    if f"?{key}=" in f"?{query}" or f"&{key}=" in query:
        raise Missed(f'"{s.id}" already sets the query parameter "{param}"', s.id)
    sep = "" if s.url.endswith(("?", "&")) else "&" if "?" in literal else "?"
    # quote() leaves no "$", so the result is still a canonical template.
    return f"{s.url}{sep}{key}={urllib.parse.quote(where, safe='')}"


def examine(wf: Workflow, graph: Graph, f: FunctionNode) -> _Push | None:
    """The push for filter node `f`, or None when it filters no node's output; raises
    Missed for every near miss."""
    found = _source_of(f, graph)
    if found is None:
        return None
    s, path = found
    items = _check_source(s, f, path)
    where = _where(f)
    assert s.filter is not None
    url = filtered_url(s, s.filter["param"], where)
    _check_filter(f, s, graph)
    _check_readers(wf, graph, s, f, items)
    return _Push(s, f, where, items, url)


def apply_push(wf: Workflow, push: _Push, ctx: PassContext) -> Workflow:
    rw = ctx.rewriter
    s, f = push.source, push.filter
    wf = rw.replace_node(wf, s.id, dataclasses.replace(s, url=push.url))
    wf = rw.rewrite_reads(wf, {f.id: ref(s.id, *push.items)})
    followers = {e.dst for e in wf.edges if e.src == s.id}
    for i, e in enumerate(wf.edges):
        if e.src == f.id and e.dst not in followers:
            wf = rw.replace_edge(wf, i, dataclasses.replace(e, src=s.id))
    return rw.remove_node(wf, f.id)  # with its edge from the source and any duplicates


def _filters(wf: Workflow) -> list[FunctionNode]:
    return [n for n in wf.nodes if isinstance(n, FunctionNode) and n.fn == FILTER_FN]


@dataclass(frozen=True, kw_only=True)
class PushdownPredicatesPass(Pass):
    """Moves `aobc.stdlib:filter` nodes into the sources that can filter themselves."""

    name: ClassVar[str] = "pushdown-predicates"
    summary: ClassVar[str] = "move a filter into the HTTP source that declares it can filter"

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        while True:
            graph = Graph.of(wf)
            if graph.topo_order() is None:
                return wf  # verify reports the cycle; nothing here is safe to judge
            misses: list[tuple[Node, Missed]] = []
            push = None
            for f in _filters(wf):
                try:
                    push = examine(wf, graph, f)
                except Missed as why:
                    misses.append((f, why))
                    continue
                if push is not None:
                    break
            if push is None:
                break
            wf = self._apply(wf, push, ctx)
        for node, miss in misses:
            ctx.remark(
                self.name,
                "missed",
                "not-pushed",
                miss.nodes,
                f"not pushed: {miss.reason}",
                node.loc,
            )
        return wf

    def _apply(self, wf: Workflow, push: _Push, ctx: PassContext) -> Workflow:
        s, f = push.source, push.filter
        assert s.filter is not None
        ctx.remark(
            self.name,
            "passed",
            "pushed",
            (f.id, s.id),
            f'pushed the filter "{f.id}" ({push.where}) into "{s.id}" as its query parameter '
            f'"{s.filter["param"]}"',
            f.loc,
            where=push.where,
        )
        ctx.count("filters-pushed")
        return apply_push(wf, push, ctx)
