"""The workflow document an IR was lowered from, rebuilt from the IR alone.

A run started from a `.aobir` file can still be patched live: patches address the workflow
document, and the IR carries everything needed to rebuild it exactly (checked against the
workflow hash the IR records).
"""

from __future__ import annotations

from typing import Any

from aobc.backend.lower import COMPOSITE_HASH_KEY
from aobc.canonical import content_hash
from aobc.runtime.execir import ExecIR


def _node_document(ir: ExecIR, config: int, sub: int) -> dict[str, Any]:
    """A node's document; a composite gets its sub-workflow back where its hash stood."""
    doc: dict[str, Any] = ir.consts[config]
    if sub < 0:
        return doc
    sub_doc = document_of(ir.subs[sub])
    return {
        ("workflow" if k == COMPOSITE_HASH_KEY else k): (sub_doc if k == COMPOSITE_HASH_KEY else v)
        for k, v in doc.items()
    }


def document_of(ir: ExecIR) -> dict[str, Any]:
    """The canonical workflow document of `ir`; ValueError if it does not match its hash."""
    doc: dict[str, Any] = {"name": ir.name}
    if ir.namespace != "default":
        doc["namespace"] = ir.namespace
    if ir.description is not None:
        doc["description"] = ir.description
    if ir.inputs:
        inputs: dict[str, Any] = {}
        for d in ir.inputs:
            spec: dict[str, Any] = {"type": d.type}
            if not d.required:
                spec["default"] = d.default
            inputs[d.name] = spec
        doc["inputs"] = inputs
    if ir.outputs:
        doc["outputs"] = {o.name: ir.consts[o.expr] for o in ir.outputs}
    doc["nodes"] = [_node_document(ir, n.config, n.sub) for n in ir.nodes]
    edges = []
    for e in ir.edges:
        edge: dict[str, Any] = {"from": ir.nodes[e.src].id, "to": ir.nodes[e.dst].id}
        if e.label >= 0:
            edge["label"] = ir.consts[e.label]
        if e.when >= 0:
            edge["when"] = ir.consts[e.when]
        edges.append(edge)
    doc["edges"] = edges
    if content_hash(doc) != ir.workflow_hash:
        raise ValueError(f"IR of workflow {ir.name!r} does not rebuild its workflow document")
    return doc
