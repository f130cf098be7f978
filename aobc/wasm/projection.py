"""The graph a plugin sees: a projection of the workflow holding only the fields it reads.

Nodes, edges and outputs keep their document order, so `nodes[i]` is `/nodes/i` of the
patchable document. Every node has `id`, `type` and `effect`, every edge `from` and `to`,
every output `name`; the rest is what the manifest's `reads` asks for:

- `node.doc`: the node's whole canonical document, as `doc`; `node.<field>`: one field of
  it, beside `id`;
- `node.loc`: where the node was written (text, as remarks print it), or null;
- `node.reads`: the names its expressions read (a map's body included), sorted;
- `node.refs`: every name reference in its expressions and templates, as
  `[pointer, name, start, end]`: the string at `pointer` (relative to the node's document)
  holds `name` at UTF-8 byte offsets `start..end`, so a plugin renames a read without
  parsing the expression language (strings in canonical spelling, references in order);
- `node.branch`: for a condition whose expression is a constant, the label it selects;
- `edge.label`, `edge.when`; `edge.guard`: the truth of a constant guard;
  `edge.refs`: `[name, start, end]` references in `when`;
- `output.expr`, `output.reads`, `output.refs`; `inputs`: the workflow's input names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final

from aobc.backend.serialize import node_document
from aobc.expr import parse_template, template_source, to_source
from aobc.expr.ast import Expr, Lit, Var, root_names
from aobc.expr.template import Template
from aobc.ir import ConditionNode, MapNode, Workflow
from aobc.ir.reach import label_of
from aobc.ir.reads import cached_expr, node_reads

NODE_FACTS: Final = ("node.doc", "node.loc", "node.reads", "node.refs", "node.branch")
EDGE_FIELDS: Final = ("edge.label", "edge.when", "edge.guard", "edge.refs")
OUTPUT_FIELDS: Final = ("output.expr", "output.reads", "output.refs")
FIELDS: Final = (*NODE_FACTS, *EDGE_FIELDS, *OUTPUT_FIELDS, "inputs")
#: What a plugin without a manifest gets: everything.
ALL_FIELDS: Final = FIELDS
_DOC_FIELD: Final = re.compile(r"node\.[a-z_]+")

#: Node fields whose strings are templates, and fields that are plain expressions (the
#: same split as `aobc.passes.subst`, which rewrites them for native passes).
TEMPLATE_FIELDS: Final = frozenset(
    ("url", "headers", "body", "args", "prompt", "system", "message", "until", "requests")
)
EXPR_FIELDS: Final = frozenset(("over", "expr"))
_MARKS: Final = (("\ue000", "\ue001"), ("\ue002", "\ue003"), ("\U000f0000", "\U000f0001"))

Ref = tuple[str, int, int]


def is_field(name: str) -> bool:
    """True when `name` is something a manifest may list in `reads`."""
    return name in FIELDS or (_DOC_FIELD.fullmatch(name) is not None and name not in NODE_FACTS)


class _Marked(Mapping[str, Expr]):
    """Every name maps to itself between two marker characters (see `_refs`)."""

    def __init__(self, start: str, end: str) -> None:
        self.start, self.end = start, end

    def __getitem__(self, name: str) -> Expr:
        return Var(f"{self.start}{name}{self.end}")

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


def _refs(text: str, printed: Any) -> list[Ref] | None:
    """Where each name is read in `text`, found by printing it with every name marked.

    Printing is the canonical printer's job, so offsets come from the same code that spells
    the text; `printed(marks)` prints with those marks. None if `text` is not canonical.
    """
    from aobc.passes.subst import subst_expr

    for start, end in _MARKS:
        if start in text or end in text:
            continue
        names = _Marked(start, end)
        marked = printed(lambda e, m=names: subst_expr(e, m))
        out: list[Ref] = []
        plain: list[str] = []
        pos = shift = 0
        while (i := marked.find(start, pos)) >= 0:
            j = marked.index(end, i)
            plain.append(marked[pos:i])
            name = marked[i + 1 : j]
            at = i - shift
            out.append((name, at, at + len(name)))
            plain.append(name)
            shift += 2
            pos = j + 1
        plain.append(marked[pos:])
        if "".join(plain) != text:
            return None
        if not text.isascii():
            out = [(n, _byte(text, s), _byte(text, e)) for n, s, e in out]
        return out
    return None


def _byte(text: str, offset: int) -> int:
    return len(text[:offset].encode("utf-8"))


def expr_refs(text: str) -> list[Ref]:
    """Name references in an expression (canonical text), with UTF-8 byte offsets."""
    e = cached_expr(text)
    return _refs(text, lambda sub: to_source(sub(e))) or []


def template_refs(text: str) -> list[Ref]:
    """Name references in the holes of a template (canonical text)."""
    if "$" not in text:
        return []
    tpl = parse_template(text)

    def printed(sub: Any) -> str:
        return template_source(
            Template(tuple(p if isinstance(p, str) else sub(p) for p in tpl.parts))
        )

    return _refs(text, printed) or []


def _esc(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _template_value_refs(value: Any, ptr: str, out: list[list[Any]]) -> None:
    if isinstance(value, str):
        out.extend([ptr, *r] for r in template_refs(value))
    elif isinstance(value, dict):
        for k, v in value.items():
            _template_value_refs(v, f"{ptr}/{_esc(k)}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _template_value_refs(v, f"{ptr}/{i}", out)


def document_refs(doc: Mapping[str, Any], ptr: str = "") -> list[list[Any]]:
    """`node.refs` of a node document, in document order."""
    out: list[list[Any]] = []
    for key, value in doc.items():
        where = f"{ptr}/{_esc(key)}"
        if key == "body" and doc.get("type") == "map" and isinstance(value, dict):
            out.extend(document_refs(value, where))
        elif key in TEMPLATE_FIELDS:
            _template_value_refs(value, where, out)
        elif key in EXPR_FIELDS and isinstance(value, str):
            out.extend([where, *r] for r in expr_refs(value))
    return out


def _constant(text: str) -> tuple[bool, Any]:
    e = cached_expr(text)
    return (True, e.value) if isinstance(e, Lit) else (False, None)


def project(wf: Workflow, reads: Iterable[str]) -> dict[str, Any]:  # noqa: C901 - one arm per field
    """The `graph` member of a plugin's input."""
    want = frozenset(reads)
    whole = "node.doc" in want
    fields = [r[5:] for r in want if r.startswith("node.") and r not in NODE_FACTS]
    need_doc = whole or bool(fields) or "node.refs" in want
    nodes: list[dict[str, Any]] = []
    for n in wf.nodes:
        doc = node_document(n) if need_doc else None
        item: dict[str, Any] = {"id": n.id, "type": n.KIND.value, "effect": n.effect.value}
        if doc is not None:
            for f in fields:
                if f in doc:
                    item[f] = doc[f]
            if whole:
                item["doc"] = doc
        if "node.loc" in want:
            item["loc"] = str(n.loc) if n.loc is not None else None
        if "node.reads" in want:
            names = node_reads(n) | (node_reads(n.body) if isinstance(n, MapNode) else set())
            item["reads"] = sorted(names)
        if "node.refs" in want and doc is not None:
            item["refs"] = document_refs(doc)
        if "node.branch" in want and isinstance(n, ConditionNode):
            const, value = _constant(n.expr)
            if const:
                item["branch"] = label_of(value)
        nodes.append(item)
    edges: list[dict[str, Any]] = []
    for e in wf.edges:
        edge: dict[str, Any] = {"from": e.src, "to": e.dst}
        if "edge.label" in want and e.label is not None:
            edge["label"] = e.label
        if e.when is not None:
            if "edge.when" in want:
                edge["when"] = e.when
            if "edge.guard" in want:
                const, value = _constant(e.when)
                if const:
                    edge["guard"] = bool(value)
            if "edge.refs" in want:
                edge["refs"] = [list(r) for r in expr_refs(e.when)]
        edges.append(edge)
    outputs: list[dict[str, Any]] = []
    for o in wf.outputs:
        out: dict[str, Any] = {"name": o.name}
        if "output.expr" in want:
            out["expr"] = o.expr
        if "output.reads" in want:
            out["reads"] = sorted(root_names(cached_expr(o.expr)))
        if "output.refs" in want:
            out["refs"] = [list(r) for r in expr_refs(o.expr)]
        outputs.append(out)
    graph: dict[str, Any] = {"name": wf.name, "nodes": nodes, "edges": edges, "outputs": outputs}
    if "inputs" in want:
        graph["inputs"] = [d.name for d in wf.inputs]
    return graph
