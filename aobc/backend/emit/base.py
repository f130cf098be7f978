"""The emitter base: one `<kind>_emit` method per node kind, found through a dispatch table.

As in sqlglot's generator, a subclass handles a node kind by defining a method named after it
(`http_emit`, `join_emit`, ...). `__init_subclass__` builds each class's table once, so emitting a
node is one dict lookup, and a kind without a method fails loudly instead of vanishing from the
picture.

Emitters render a `Workflow` (not ExecIR) for people and tools: `aobc compile --emit NAME`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, Final
from urllib.parse import urlsplit

from aobc.ir import (
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    Effect,
    FunctionNode,
    HttpNode,
    JoinMode,
    JoinNode,
    MapNode,
    Node,
    NodeKind,
    TimerNode,
    Workflow,
    format_duration,
)

__all__ = [
    "Emitter",
    "UnsupportedNodeError",
    "edge_caption",
    "is_effectful",
    "node_caption",
    "node_detail",
]

#: Longest detail text (an expression, a URL) shown in a node's label before it is cut.
MAX_DETAIL: Final = 48

NodeEmit = Callable[["Emitter", Node], str]


class UnsupportedNodeError(ValueError):
    """An emitter was given a node kind it has no `<kind>_emit` method for."""


class Emitter:
    """Turns a workflow into text. Subclasses set `name` and define `<kind>_emit` methods."""

    name: ClassVar[str] = "base"
    _dispatch: ClassVar[dict[NodeKind, NodeEmit]] = {}

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls._dispatch = cls._build_dispatch()

    @classmethod
    def _build_dispatch(cls) -> dict[NodeKind, NodeEmit]:
        """Node kind -> the class's `<kind>_emit` method, for every kind it defines one."""
        table: dict[NodeKind, NodeEmit] = {}
        for kind in NodeKind:
            method = getattr(cls, f"{kind.value}_emit", None)
            if callable(method):
                table[kind] = method
        return table

    def emit(self, wf: Workflow) -> str:
        """The whole text: `begin`, one statement per node, one per edge, `end`."""
        lines = self.begin(wf)
        lines += [self.emit_node(n) for n in wf.nodes]
        lines += [self.emit_edge(e, wf) for e in wf.edges]
        lines += self.end(wf)
        return "".join(line + "\n" for line in lines)

    def emit_node(self, node: Node) -> str:
        handler = self._dispatch.get(node.KIND)
        if handler is None:
            raise UnsupportedNodeError(
                f"the {self.name} emitter cannot emit {node.KIND.value} node {node.id!r}"
            )
        return handler(self, node)

    def begin(self, wf: Workflow) -> list[str]:
        return []

    def emit_edge(self, edge: Edge, wf: Workflow) -> str:
        raise NotImplementedError(f"the {self.name} emitter does not draw edges")

    def end(self, wf: Workflow) -> list[str]:
        return []


def edge_caption(edge: Edge) -> str | None:
    """What an edge shows: its label, its guard, or both."""
    parts = []
    if edge.label is not None:
        parts.append(edge.label)
    if edge.when is not None:
        parts.append(f"when {edge.when}")
    return " ".join(parts) if parts else None


def _cut(text: str) -> str:
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def _http_target(node: HttpNode) -> str:
    # The host says where a request goes; a templated URL without a static host shows whole.
    host = urlsplit(node.url).netloc
    return f"{node.method} {host or node.url}"


def node_detail(node: Node) -> str:
    """The one-line, kind-specific summary shown under a node's id (may be empty)."""
    detail = ""
    if isinstance(node, HttpNode):
        detail = _http_target(node)
    elif isinstance(node, FunctionNode):
        detail = node.fn
    elif isinstance(node, MapNode):
        detail = f"over {node.over} ({node.body.KIND.value})"
    elif isinstance(node, JoinNode):
        detail = f"{node.n} of m" if node.mode is JoinMode.N_OF_M else node.mode.value
    elif isinstance(node, ConditionNode):
        detail = node.expr
    elif isinstance(node, CompositeNode):
        detail = node.workflow.name
    elif isinstance(node, AgentNode):
        detail = node.model
    elif isinstance(node, ApprovalNode):
        detail = ", ".join(node.approvers)
    elif isinstance(node, TimerNode):
        detail = format_duration(node.duration_ms) if node.duration_ms is not None else ""
        detail = detail or (f"until {node.until}" if node.until is not None else "")
    return _cut(detail)


def node_caption(node: Node) -> list[str]:
    """The lines of a node's label: its id, then its kind and detail."""
    detail = node_detail(node)
    return [node.id, f"{node.KIND.value} {detail}" if detail else node.KIND.value]


def is_effectful(node: Node) -> bool:
    return node.effect is Effect.EFFECTFUL
