"""Mermaid flowcharts: `aobc compile --emit mermaid`, for Markdown that renders diagrams.

Node ids are mapped to Mermaid-safe names (`n_<id>`) because bare words such as `end`, `graph`
or `class` are Mermaid syntax; the real id is the first line of the label. Every label is
quoted, with `"`, `<`, `>` and `#` written as Mermaid entity codes, so no id, URL or expression
can end a label early. Kinds get a shape and a colour class, effectful nodes an extra
`effectful` class with a thick border, and guarded edges are dotted.
"""

from __future__ import annotations

import json
from typing import ClassVar, Final

from aobc.backend.emit.base import Emitter, edge_caption, is_effectful, node_caption
from aobc.ir import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    FunctionNode,
    HttpNode,
    JoinNode,
    MapNode,
    Node,
    NodeKind,
    TimerNode,
    Workflow,
    is_identifier,
)

__all__ = ["MermaidEmitter", "mermaid_id", "mermaid_text"]

#: Fill colours per kind, the same palette as the DOT emitter.
_FILLS: Final = {
    NodeKind.HTTP: "#dae8fc",
    NodeKind.FUNCTION: "#d5e8d4",
    NodeKind.MAP: "#e1d5e7",
    NodeKind.JOIN: "#f5f5f5",
    NodeKind.CONDITION: "#fff2cc",
    NodeKind.COMPOSITE: "#e6e6e6",
    NodeKind.AGENT: "#ffe6cc",
    NodeKind.APPROVAL: "#f8cecc",
    NodeKind.TIMER: "#d0e0e3",
}

# `#` first: the entity codes below contain it.
_ENTITIES: Final = (("#", "#35;"), ('"', "#quot;"), ("<", "#lt;"), (">", "#gt;"))


def mermaid_text(text: str) -> str:
    """`text` safe inside a quoted Mermaid label; line breaks become `<br/>`."""
    for raw, code in _ENTITIES:
        text = text.replace(raw, code)
    return text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "<br/>")


def mermaid_id(node_id: str) -> str:
    """A Mermaid node name for `node_id`: distinct ids always give distinct names.

    Identifiers become `n_<id>`; anything else (only an unverified workflow has such ids)
    becomes `x_` and its characters, with each one outside [A-Za-z0-9] as `_<hex>_`.
    """
    if is_identifier(node_id):
        return "n_" + node_id
    return "x_" + "".join(c if c.isascii() and c.isalnum() else f"_{ord(c):x}_" for c in node_id)


class MermaidEmitter(Emitter):
    name: ClassVar[str] = "mermaid"

    def begin(self, wf: Workflow) -> list[str]:
        title = wf.name if wf.namespace == "default" else f"{wf.namespace}/{wf.name}"
        return [
            "---",
            f"title: {json.dumps(title, ensure_ascii=False)}",  # a JSON string is valid YAML
            "---",
            "flowchart TD",
        ]

    def end(self, wf: Workflow) -> list[str]:
        # Class names are prefixed so none can collide with Mermaid syntax words.
        out = [f"  classDef kind_{k.value} fill:{fill},stroke:#666" for k, fill in _FILLS.items()]
        out.append("  classDef effectful stroke:#000,stroke-width:3px")
        # One `class` line per kind present, in NodeKind order, so the text is deterministic.
        for kind in NodeKind:
            ids = [mermaid_id(n.id) for n in wf.nodes if n.KIND is kind]
            if ids:
                out.append(f"  class {','.join(ids)} kind_{kind.value}")
        effectful = [mermaid_id(n.id) for n in wf.nodes if is_effectful(n)]
        if effectful:
            out.append(f"  class {','.join(effectful)} effectful")
        return out

    def emit_edge(self, edge: Edge, wf: Workflow) -> str:
        arrow = "-.->" if edge.when is not None else "-->"
        caption = edge_caption(edge)
        label = f'|"{mermaid_text(caption)}"|' if caption is not None else ""
        return f"  {mermaid_id(edge.src)} {arrow}{label} {mermaid_id(edge.dst)}"

    def _node(self, node: Node, opening: str, closing: str) -> str:
        label = mermaid_text("\n".join(node_caption(node)))
        return f'  {mermaid_id(node.id)}{opening}"{label}"{closing}'

    def http_emit(self, node: HttpNode) -> str:
        return self._node(node, "[", "]")

    def function_emit(self, node: FunctionNode) -> str:
        return self._node(node, "(", ")")

    def map_emit(self, node: MapNode) -> str:
        return self._node(node, "[[", "]]")

    def join_emit(self, node: JoinNode) -> str:
        return self._node(node, "((", "))")

    def condition_emit(self, node: ConditionNode) -> str:
        return self._node(node, "{", "}")

    def composite_emit(self, node: CompositeNode) -> str:
        return self._node(node, "[/", "/]")

    def agent_emit(self, node: AgentNode) -> str:
        return self._node(node, "{{", "}}")

    def approval_emit(self, node: ApprovalNode) -> str:
        return self._node(node, ">", "]")

    def timer_emit(self, node: TimerNode) -> str:
        return self._node(node, "([", "])")
