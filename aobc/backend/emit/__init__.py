"""Emitters: a workflow as JSON, Graphviz DOT or a Mermaid flowchart (`aobc compile --emit`)."""

from __future__ import annotations

from typing import Final

from aobc.backend.emit.base import Emitter, UnsupportedNodeError
from aobc.backend.emit.dot import DotEmitter
from aobc.backend.emit.json import JsonEmitter
from aobc.backend.emit.mermaid import MermaidEmitter

__all__ = [
    "EMITTERS",
    "DotEmitter",
    "Emitter",
    "JsonEmitter",
    "MermaidEmitter",
    "UnsupportedNodeError",
    "emitter_names",
    "get_emitter",
]

#: Emitter classes by the name `--emit` takes.
EMITTERS: Final[dict[str, type[Emitter]]] = {
    cls.name: cls for cls in (JsonEmitter, DotEmitter, MermaidEmitter)
}


def emitter_names() -> list[str]:
    return sorted(EMITTERS)


def get_emitter(name: str) -> Emitter:
    """A new emitter for `name`; `KeyError` listing the known names when there is none."""
    cls = EMITTERS.get(name)
    if cls is None:
        raise KeyError(f"unknown emitter {name!r}; known emitters: {', '.join(emitter_names())}")
    return cls()
