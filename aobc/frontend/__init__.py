"""Frontends: the DSL parser, the JSON loader and the overlay engine.

`load(path)` reads a workflow written in either form and returns its IR, or raises a
`FrontendError` carrying every diagnostic found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import FrontendError
from aobc.frontend.dsl import parse_dsl
from aobc.frontend.json_loader import depth_of, parse_json
from aobc.frontend.schema import JsonSourceMap, SourceMap, load_partial
from aobc.ir import Workflow, is_identifier
from aobc.policy import DEFAULT_POLICY, Limits, Policy
from aobc.source import JsonLoc, SourceFile


@dataclass(frozen=True, slots=True)
class Loaded:
    """A workflow with the source it came from and any warnings found while loading."""

    workflow: Workflow
    source: SourceFile
    warnings: tuple[Diagnostic, ...] = ()


def read_source(path: str | Path) -> SourceFile:
    """The text of a file, or a FrontendError saying why it cannot be read."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as err:
        reason = err.strerror or str(err)
        raise FrontendError(
            Diagnostic.error(
                ec.IO_ERROR, f"cannot read {str(p)!r}: {reason.lower()}", JsonLoc(str(p), "")
            )
        ) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise FrontendError(
            Diagnostic.error(
                ec.ENCODING, f"{p} is not UTF-8 (byte {err.start})", JsonLoc(str(p), "")
            )
        ) from None
    return SourceFile.of(str(p), text)


def is_json_source(src: SourceFile) -> bool:
    if src.name.endswith(".json"):
        return True
    if src.name.endswith(".aob"):
        return False
    return src.text.lstrip().startswith("{")


def default_name(path: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_]", "_", Path(path).stem)
    return stem if is_identifier(stem) else "main"


def check_document_limits(doc: Any, smap: SourceMap, limits: Limits) -> list[Diagnostic]:
    """Node and edge counts against the limits, before any expensive work on them."""
    out = []
    if isinstance(doc, dict):
        for key, limit in (("nodes", limits.max_nodes), ("edges", limits.max_edges)):
            items = doc.get(key)
            if isinstance(items, list) and len(items) > limit:
                out.append(
                    Diagnostic.error(
                        ec.SIZE_LIMIT,
                        f"workflow has {len(items)} {key}; the limit is {limit}",
                        smap.loc(f"/{key}"),
                    )
                )
    return out


def parse_source(src: SourceFile, policy: Policy = DEFAULT_POLICY) -> tuple[Any, SourceMap]:
    """The workflow document of a source, before schema checks; raises FrontendError."""
    diags: list[Diagnostic] = []
    if is_json_source(src):
        ok, doc = parse_json(src, policy.limits, diags)
        smap: SourceMap = JsonSourceMap(src.name)
    else:
        size = len(src.text.encode("utf-8"))
        if size > policy.limits.max_bytes:
            raise FrontendError(
                Diagnostic.error(
                    ec.SIZE_LIMIT,
                    f"input is {size} bytes; the limit is {policy.limits.max_bytes}",
                    JsonLoc(src.name, ""),
                )
            )
        doc, smap = parse_dsl(src, diags)
        ok = doc is not None
        depth = depth_of(doc) if ok else 0
        if depth > policy.limits.max_depth:
            diags.append(
                Diagnostic.error(
                    ec.SIZE_LIMIT,
                    f"workflow is nested {depth} levels deep; the limit is {policy.limits.max_depth}",
                    smap.loc(""),
                )
            )
            ok = False
    diags.extend(check_document_limits(doc, smap, policy.limits) if ok else ())
    if diags:
        raise FrontendError(diags)
    return doc, smap


def load_source(src: SourceFile, policy: Policy = DEFAULT_POLICY) -> Loaded:
    """Parse and schema-check a source; raises FrontendError with every problem found.

    When nodes fail the schema, the rest of the workflow is still verified (ignoring the
    dropped nodes), so graph problems are reported in the same go as field problems.
    """
    doc, smap = parse_source(src, policy)
    diags: list[Diagnostic] = []
    wf, dropped = load_partial(doc, smap, diags, default_name(src.name))
    if any(d.is_error for d in diags) or wf is None:
        if wf is not None:
            from aobc.passes.verify import verify

            diags.extend(verify(wf, policy, dropped=dropped))
        raise FrontendError(diags or [Diagnostic.error(ec.INTERNAL, "workflow did not load")])
    return Loaded(wf, src, tuple(diags))


def load(path: str | Path, policy: Policy = DEFAULT_POLICY) -> Loaded:
    """Read and load a workflow file, DSL or JSON."""
    return load_source(read_source(path), policy)


def load_text(text: str, name: str = "<input>.aob", policy: Policy = DEFAULT_POLICY) -> Workflow:
    """Load a workflow from text; the name's suffix picks the form."""
    return load_source(SourceFile.of(name, text), policy).workflow
