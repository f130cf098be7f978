"""Graphviz DOT: `aobc compile --emit dot`, for `dot -Tsvg`.

Each node kind has its own shape and fill colour; effectful nodes (the ones that must run exactly
once) are drawn bold. Labels show the id, the kind and what the node calls; edges show their
branch label and guard, guarded edges dashed. Every id and string is quoted, so any id is safe.
"""

from __future__ import annotations

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
    TimerNode,
    Workflow,
)

__all__ = ["DotEmitter", "dot_quote"]

_FONT: Final = "Helvetica"


def dot_quote(text: str) -> str:
    """`text` as a DOT double-quoted string.

    Backslashes are doubled so that Graphviz's label escapes (`\\n`, `\\l`, ...) cannot be
    smuggled in by an id or expression, quotes are escaped, and line breaks become `\\n`.
    """
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n") + '"'


class DotEmitter(Emitter):
    name: ClassVar[str] = "dot"

    def begin(self, wf: Workflow) -> list[str]:
        title = wf.name if wf.namespace == "default" else f"{wf.namespace}/{wf.name}"
        return [
            f"digraph {dot_quote(wf.name)} {{",
            f'  graph [rankdir=TB, label={dot_quote(title)}, labelloc=t, fontname="{_FONT}"];',
            f'  node [fontname="{_FONT}", fontsize=11, style=filled];',
            f'  edge [fontname="{_FONT}", fontsize=10];',
        ]

    def end(self, wf: Workflow) -> list[str]:
        return ["}"]

    def emit_edge(self, edge: Edge, wf: Workflow) -> str:
        attrs = []
        caption = edge_caption(edge)
        if caption is not None:
            attrs.append(f"label={dot_quote(caption)}")
        if edge.when is not None:
            attrs.append("style=dashed")
        tail = f" [{', '.join(attrs)}]" if attrs else ""
        return f"  {dot_quote(edge.src)} -> {dot_quote(edge.dst)}{tail};"

    def _node(self, node: Node, shape: str, fill: str, *, rounded: bool = False) -> str:
        style = ["filled"]
        if rounded:
            style.append("rounded")
        attrs = [
            f"label={dot_quote(chr(10).join(node_caption(node)))}",
            f"shape={shape}",
            f'fillcolor="{fill}"',
        ]
        if is_effectful(node):
            style.append("bold")
            attrs.append("penwidth=2")
        attrs.append(f'style="{",".join(style)}"')
        return f"  {dot_quote(node.id)} [{', '.join(attrs)}];"

    def http_emit(self, node: HttpNode) -> str:
        return self._node(node, "box", "#dae8fc")

    def function_emit(self, node: FunctionNode) -> str:
        return self._node(node, "box", "#d5e8d4", rounded=True)

    def map_emit(self, node: MapNode) -> str:
        return self._node(node, "box3d", "#e1d5e7")

    def join_emit(self, node: JoinNode) -> str:
        return self._node(node, "invhouse", "#f5f5f5")

    def condition_emit(self, node: ConditionNode) -> str:
        return self._node(node, "diamond", "#fff2cc")

    def composite_emit(self, node: CompositeNode) -> str:
        return self._node(node, "component", "#e6e6e6")

    def agent_emit(self, node: AgentNode) -> str:
        return self._node(node, "hexagon", "#ffe6cc")

    def approval_emit(self, node: ApprovalNode) -> str:
        return self._node(node, "octagon", "#f8cecc")

    def timer_emit(self, node: TimerNode) -> str:
        return self._node(node, "ellipse", "#d0e0e3")
