"""Rebasing patches, and what a patch touches.

A patch addresses nodes and edges by position (`/nodes/3/url`). Written against version W
and applied to a later head H, positions may have moved. Rebasing re-anchors every operation
by identity: the node at `/nodes/3` in W is node "fetch"; in H, "fetch" is at `/nodes/5`, so
the operation becomes `/nodes/5/url`. Operations are translated one at a time while both
documents advance in step, so positions shifted by earlier operations of the same patch stay
right. A patch conflicts, and is refused, when what it touches changed between W and H, or no
longer exists there.

When W is unknown, only a patch that addresses nothing by position (appends with `/-`,
object members like `/outputs/x`) can be applied, as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import PatchError
from aobc.frontend.jsonpatch import PatchOp, apply_ops, json_equal
from aobc.frontend.jsonpointer import (
    PointerLookupError,
    PointerSyntaxError,
    format_pointer,
    parse_pointer,
    resolve,
)

EdgeKey = tuple[Any, Any, Any]


@dataclass(slots=True)
class TouchSet:
    nodes: set[str] = field(default_factory=set)
    edges: set[EdgeKey] = field(default_factory=set)


@dataclass(slots=True)
class Touched:
    """Node ids and edge keys a patch touched, each with the last operation that did."""

    nodes: dict[str, int] = field(default_factory=dict)
    edges: dict[EdgeKey, int] = field(default_factory=dict)

    def add(self, ts: TouchSet, op_index: int) -> None:
        for n in ts.nodes:
            self.nodes[n] = op_index
        for e in ts.edges:
            self.edges[e] = op_index


def _edge_key(v: Any) -> EdgeKey | None:
    if isinstance(v, dict):
        return (v.get("from"), v.get("to"), v.get("label"))
    return None


def _tokens(ptr: str | None) -> tuple[str, ...] | None:
    if ptr is None:
        return None
    try:
        return parse_pointer(ptr)
    except PointerSyntaxError:
        return None


def _ids_in(items: Any, key: str) -> list[Any]:
    if not isinstance(items, list):
        return []
    if key == "nodes":
        return [x.get("id") for x in items if isinstance(x, dict) and isinstance(x.get("id"), str)]
    return [k for k in (_edge_key(x) for x in items) if k is not None]


def _touch_path(
    tokens: tuple[str, ...], doc: Any, value: Any, inserting: bool, out: TouchSet
) -> None:
    """Record what writing `value` at `tokens` (on `doc`, before the write) touches."""
    if not tokens:  # the whole document: everything before and after
        for key in ("nodes", "edges"):
            before = doc.get(key) if isinstance(doc, dict) else None
            after = value.get(key) if isinstance(value, dict) else None
            for ident in _ids_in(before, key) + _ids_in(after, key):
                _add(out, key, ident)
        return
    key = tokens[0]
    if key not in ("nodes", "edges"):
        return
    items = doc.get(key) if isinstance(doc, dict) else None
    if len(tokens) == 1:  # the whole list
        for ident in _ids_in(items, key) + _ids_in(value, key):
            _add(out, key, ident)
        return
    _touch_item(key, tokens, items, value, inserting, out)


def _touch_item(
    key: str, tokens: tuple[str, ...], items: Any, value: Any, inserting: bool, out: TouchSet
) -> None:
    whole = len(tokens) == 2
    if not (whole and inserting) and tokens[1].isdigit():
        # The item already at that position is changed or replaced.
        if isinstance(items, list) and int(tokens[1]) < len(items):
            existing = _ident(key, items[int(tokens[1])])
            if existing is not None:
                _add(out, key, existing)
    if whole:  # the item being put there (inserted, or the replacement)
        new = _ident(key, value)
        if new is not None:
            _add(out, key, new)


def _ident(key: str, item: Any) -> Any:
    if key == "nodes":
        nid = item.get("id") if isinstance(item, dict) else None
        return nid if isinstance(nid, str) else None
    return _edge_key(item)


def _add(out: TouchSet, key: str, ident: Any) -> None:
    (out.nodes if key == "nodes" else out.edges).add(ident)


def touched_by(op: PatchOp, doc: Any) -> TouchSet:
    """The nodes and edges an operation adds, changes or removes, judged on `doc` before it."""
    out = TouchSet()
    path = _tokens(op.path)
    if op.op == "test" or path is None:
        return out
    value = op.value
    if op.op in ("move", "copy"):
        src = _tokens(op.from_)
        if src is None:
            return out
        try:
            value = resolve(doc, src)
        except PointerLookupError:
            return out
        if op.op == "move":
            _touch_path(src, doc, None, False, out)
    _touch_path(path, doc, value, op.op in ("add", "move", "copy"), out)
    return out


# --- rebasing ---------------------------------------------------------------------------


def _conflict(message: str, op_index: int, patch: Any) -> PatchError:
    return PatchError(Diagnostic.error(ec.PATCH_CONFLICT, message, patch.op_loc(op_index)))


def _position_dependent(tokens: tuple[str, ...] | None) -> bool:
    return (
        tokens is not None
        and len(tokens) >= 2
        and tokens[0] in ("nodes", "edges")
        and tokens[1] != "-"
    )


def _find(items: list[Any], key: str, ident: Any) -> int | None:
    for j, x in enumerate(items):
        if _ident(key, x) == ident:
            return j
    return None


def _translate(ptr: str, written: Any, head: Any, inserting: bool, i: int, patch: Any) -> str:
    tokens = parse_pointer(ptr)
    if not tokens:
        if not json_equal(written, head):
            raise _conflict(
                "patch replaces the whole workflow, which changed since its base", i, patch
            )
        return ptr
    key = tokens[0]
    if key in ("nodes", "edges") and len(tokens) >= 2 and tokens[1] != "-":
        return _translate_item(tokens, written, head, inserting, i, patch)
    try:
        w_val = resolve(written, tokens)
        w_has = True
    except PointerLookupError:
        w_val, w_has = None, False
    try:
        h_val = resolve(head, tokens)
        h_has = True
    except PointerLookupError:
        h_val, h_has = None, False
    if w_has != h_has or (w_has and not json_equal(w_val, h_val)):
        raise _conflict(f"{ptr} changed since the patch's base", i, patch)
    return ptr


def _translate_item(
    tokens: tuple[str, ...], written: Any, head: Any, inserting: bool, i: int, patch: Any
) -> str:
    key = tokens[0]
    w_items = written.get(key) if isinstance(written, dict) else None
    h_items = head.get(key) if isinstance(head, dict) else None
    if not isinstance(w_items, list) or not isinstance(h_items, list) or not tokens[1].isdigit():
        raise _conflict(f"cannot re-anchor {format_pointer(tokens)}", i, patch)
    pos = int(tokens[1])
    what = "node" if key == "nodes" else "edge"
    if inserting and len(tokens) == 2 and pos == len(w_items):
        return format_pointer([key, str(len(h_items))])
    if pos >= len(w_items):
        raise _conflict(f"{format_pointer(tokens)} does not exist in the patch's base", i, patch)
    ident = _ident(key, w_items[pos])
    j = _find(h_items, key, ident) if ident is not None else None
    if j is None:
        raise _conflict(f"{what} {_show(ident)} no longer exists", i, patch)
    modifying = len(tokens) > 2 or not inserting
    if modifying and not json_equal(w_items[pos], h_items[j]):
        raise _conflict(f"{what} {_show(ident)} changed since the patch's base", i, patch)
    return format_pointer([key, str(j), *tokens[2:]])


def _show(ident: Any) -> str:
    if isinstance(ident, tuple):
        return f'"{ident[0]}" -> "{ident[1]}"'
    return f'"{ident}"'


def rebase_ops(patch: Any, written: Any | None, head: Any) -> tuple[PatchOp, ...]:
    """The patch's operations re-anchored from the version it was written against to `head`."""
    if written is None:
        for i, op in enumerate(patch.ops):
            if _position_dependent(_tokens(op.path)) or _position_dependent(_tokens(op.from_)):
                raise PatchError(
                    Diagnostic.error(
                        ec.PATCH_BASE_UNKNOWN,
                        f"patch was written against {patch.base}, which is not a known version, and it "
                        f"addresses {op.path} by position; write it against the current version",
                        patch.op_loc(i),
                    )
                )
        return tuple(patch.ops)
    out: list[PatchOp] = []
    w, h = written, head
    for i, op in enumerate(patch.ops):
        inserting = op.op in ("add", "move", "copy")
        path = _translate(op.path, w, h, inserting, i, patch)
        src = _translate(op.from_, w, h, False, i, patch) if op.from_ is not None else None
        moved = PatchOp(op.op, path, op.value, src)
        try:
            w = apply_ops(w, [op])
            h = apply_ops(h, [moved])
        except PatchError:
            raise _conflict(f"{op.describe()} no longer applies", i, patch) from None
        out.append(moved)
    return tuple(out)
