"""RFC 6902 JSON Patch: parsing, atomic copy-on-write application, and diffing.

Documents are plain JSON values (dict, list, str, int, float, bool, None). `apply_ops` never
mutates its input: it shallow-copies only the containers on the paths it changes, so the
result shares every untouched subtree with the input by identity. Callers rely on that to
detect changes cheaply (`new["nodes"][k] is old["nodes"][k]`); the flip side is that the
result must be treated as immutable too, like the input.

Decisions the RFC leaves open:

- `remove` of the whole document (path "") is allowed and leaves `None` (JSON null), as
  fast-json-patch does.
- `move` to its own `from` location is a no-op, but `from` must still exist.
- An array index is an ASCII decimal without sign or leading zero; "-" (past the end) is only
  accepted as the target of an `add` (and of the `add` half of `move`/`copy`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, cast

from aobc import errorcodes
from aobc.diagnostics import Diagnostic
from aobc.errorcodes import ErrorCode
from aobc.errors import PatchError
from aobc.frontend.jsonpointer import (
    PointerSyntaxError,
    array_index,
    format_pointer,
    parse_pointer,
)
from aobc.source import JsonLoc

__all__ = [
    "MISSING",
    "OPS",
    "PatchOp",
    "apply_ops",
    "apply_patch",
    "diff",
    "json_equal",
    "json_type_name",
    "parse_ops",
]


class _Missing:
    """The type of `MISSING`: "no value member", distinct from JSON null (`None`)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"

    def __reduce__(self) -> str:
        # Pickle and deepcopy by name, so `is MISSING` survives both.
        return "MISSING"


MISSING: Final[Any] = _Missing()

OPS: Final = ("add", "remove", "replace", "move", "copy", "test")
_NEEDS_VALUE: Final = frozenset({"add", "replace", "test"})
_NEEDS_FROM: Final = frozenset({"move", "copy"})


@dataclass(frozen=True, slots=True)
class PatchOp:
    """One RFC 6902 operation. `value` is `MISSING` when absent; `None` is JSON null."""

    op: str
    path: str
    value: Any = MISSING
    from_: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The wire form: `{"op", "path"[, "value"][, "from"]}`."""
        out: dict[str, Any] = {"op": self.op, "path": self.path}
        if self.value is not MISSING:
            out["value"] = self.value
        if self.from_ is not None:
            out["from"] = self.from_
        return out

    @staticmethod
    def from_json(raw: object, loc: JsonLoc | None = None) -> PatchOp:
        """Parse one operation object; raises `PatchError` if it is malformed."""
        op, problems = _parse_one(raw, loc if loc is not None else JsonLoc("<patch>", ""))
        if op is None:
            raise PatchError(problems)
        return op

    def describe(self) -> str:
        """A short human form, e.g. `remove /nodes/9` or `move /a to /b`."""
        where = _show(self.path)
        if self.from_ is not None:
            return f"{self.op} {_show(self.from_)} to {where}"
        return f"{self.op} {where}"


# --- JSON helpers ---------------------------------------------------------------------


def json_type_name(v: Any) -> str:
    """The JSON type of a Python value: "object", "array", "string", "number", ..."""
    # bool before int: True is an int to Python but a boolean to JSON.
    if isinstance(v, bool):
        return "boolean"
    if v is None:
        return "null"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, dict):
        return "object"
    if isinstance(v, list):
        return "array"
    return type(v).__name__


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: `True != 1`, `1 == 1.0`, key order ignored, arrays ordered."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict):
        return (
            isinstance(b, dict)
            and len(a) == len(b)
            and all(k in b and json_equal(v, b[k]) for k, v in a.items())
        )
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(map(json_equal, a, b))
    if a is None or b is None:
        return a is b
    return type(a) is type(b) and bool(a == b)


def _strict_equal(a: Any, b: Any) -> bool:
    """Equality that also tells `1` from `1.0`, `True` from `1` and `0.0` from `-0.0`."""
    if a is b:
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return len(a) == len(b) and all(k in b and _strict_equal(v, b[k]) for k, v in a.items())
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_strict_equal, a, b))
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return bool(a == b)


def _show(ptr: str) -> str:
    return ptr if ptr else "the root"


def _preview(v: Any, limit: int = 60) -> str:
    text = json.dumps(v, sort_keys=True, ensure_ascii=False, default=repr)
    return text if len(text) <= limit else text[: limit - 3] + "..."


# --- validation -----------------------------------------------------------------------


def _pointer_problem(name: str, ptr: object, at: JsonLoc) -> Diagnostic | None:
    """What is wrong with the `path`/`from` member `ptr`, or None if it is a valid pointer."""
    if ptr is MISSING:
        return None
    if not isinstance(ptr, str):
        return Diagnostic.error(
            errorcodes.PATCH_OP_INVALID,
            f'"{name}" must be a string (a JSON pointer), not {json_type_name(ptr)}',
            at.child(name),
        )
    try:
        parse_pointer(ptr)
    except PointerSyntaxError as exc:
        return Diagnostic.error(
            errorcodes.PATCH_PATH_INVALID,
            f'"{name}" is not a valid JSON pointer: {exc}',
            at.child(name),
        )
    return None


def _op_name_problem(op: object, at: JsonLoc) -> Diagnostic | None:
    if op is MISSING:
        return Diagnostic.error(errorcodes.PATCH_OP_INVALID, 'operation has no "op" member', at)
    if not isinstance(op, str):
        return Diagnostic.error(
            errorcodes.PATCH_OP_INVALID,
            f'"op" must be a string, not {json_type_name(op)}',
            at.child("op"),
        )
    if op not in OPS:
        known = ", ".join(f'"{o}"' for o in OPS)
        return Diagnostic.error(
            errorcodes.PATCH_OP_INVALID,
            f'unknown operation "{op}" (expected one of {known})',
            at.child("op"),
        )
    return None


def _member_problems(
    op: object, path: object, from_: object, has_value: bool, at: JsonLoc
) -> list[Diagnostic]:
    """Every problem with one operation's members; absent members are `MISSING`."""
    problems = [_op_name_problem(op, at)]
    op = op if isinstance(op, str) else None  # raw JSON may hold an unhashable list here
    if path is MISSING:
        problems.append(
            Diagnostic.error(errorcodes.PATCH_OP_INVALID, 'operation has no "path" member', at)
        )
    problems.append(_pointer_problem("path", path, at))
    if op in _NEEDS_FROM:
        if from_ is MISSING:
            problems.append(
                Diagnostic.error(errorcodes.PATCH_OP_INVALID, f'"{op}" has no "from" member', at)
            )
        problems.append(_pointer_problem("from", from_, at))
    if op in _NEEDS_VALUE and not has_value:
        problems.append(
            Diagnostic.error(errorcodes.PATCH_OP_INVALID, f'"{op}" has no "value" member', at)
        )
    return [p for p in problems if p is not None]


def parse_ops(raw: object, loc: JsonLoc) -> tuple[PatchOp, ...]:
    """Check a decoded JSON Patch document and turn it into `PatchOp`s.

    Every malformed operation is reported, all in one `PatchError`. Members an operation does
    not use (`value` on `remove`, `from` on `add`, unknown names) are ignored, as RFC 6902
    section 4 asks, and dropped from the result.
    """
    if not isinstance(raw, list):
        raise PatchError(
            Diagnostic.error(
                errorcodes.PATCH_SYNTAX,
                f"a JSON patch must be an array of operations, not {json_type_name(raw)}",
                loc,
            )
        )
    ops: list[PatchOp] = []
    problems: list[Diagnostic] = []
    for i, item in enumerate(raw):
        op, found = _parse_one(item, loc.child(i))
        problems.extend(found)
        if op is not None:
            ops.append(op)
    if problems:
        raise PatchError(problems)
    return tuple(ops)


def _parse_one(item: object, at: JsonLoc) -> tuple[PatchOp | None, list[Diagnostic]]:
    """One operation object, or None and what is wrong with it."""
    if not isinstance(item, dict):
        return None, [
            Diagnostic.error(
                errorcodes.PATCH_OP_INVALID,
                f"an operation must be an object, not {json_type_name(item)}",
                at,
            )
        ]
    op, path = item.get("op", MISSING), item.get("path", MISSING)
    from_ = item.get("from", MISSING)
    found = _member_problems(op, path, from_, "value" in item, at)
    if found:
        return None, found
    value = item["value"] if op in _NEEDS_VALUE else MISSING
    return PatchOp(op, path, value, from_ if op in _NEEDS_FROM else None), []


def _check_ops(ops: Sequence[PatchOp], base: JsonLoc) -> list[tuple[tuple[str, ...], ...]]:
    """Validate ops built in code (not via `parse_ops`); returns (path, from) token tuples."""
    problems: list[Diagnostic] = []
    parsed: list[tuple[tuple[str, ...], ...]] = []
    for i, op in enumerate(ops):
        from_ = MISSING if op.from_ is None else op.from_
        found = _member_problems(op.op, op.path, from_, op.value is not MISSING, base.child(i))
        if found:
            problems.extend(found)
            continue
        if op.op in _NEEDS_FROM:
            parsed.append((parse_pointer(op.path), parse_pointer(from_)))
        else:
            parsed.append((parse_pointer(op.path),))
    if problems:
        raise PatchError(problems)
    return parsed


# --- application ----------------------------------------------------------------------

_Container = dict[str, Any] | list[Any]


class _Fail(Exception):
    """An operation does not apply; `apply_ops` adds the location and the note."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class _Ctx:
    """What an operation is doing with a pointer, for error messages."""

    verb: str  # e.g. '"remove" targets'
    tokens: tuple[str, ...]

    def fail(self, code: ErrorCode, why: str) -> _Fail:
        return _Fail(code, f"{self.verb} {_show(format_pointer(self.tokens))}, but {why}")

    def where(self, depth: int) -> str:
        return _show(format_pointer(self.tokens[:depth]))


def _members_hint(node: dict[str, Any]) -> str:
    if not node:
        return "it is empty"
    names = sorted(node)
    shown = ", ".join(f'"{n}"' for n in names[:5])
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return f"it has {shown}{more}"


def _container(node: Any, ctx: _Ctx, depth: int) -> _Container:
    """`node` (found at `ctx.tokens[:depth]`) if it can hold a child, else a failure."""
    if isinstance(node, dict | list):
        return node
    raise ctx.fail(
        errorcodes.PATCH_PATH_MISSING,
        f"{ctx.where(depth)} is {_a(json_type_name(node))}, not an object or array",
    )


def _a(type_name: str) -> str:
    return f"an {type_name}" if type_name[0] in "aeiou" else f"a {type_name}"


def _index(node: list[Any], ctx: _Ctx, depth: int, *, insert: bool) -> int:
    """The index `ctx.tokens[depth]` names in `node`; `insert` allows `len` and "-"."""
    tok = ctx.tokens[depth]
    if tok == "-" and insert:
        return len(node)
    idx = array_index(tok)
    if idx is not None and (idx < len(node) or (idx == len(node) and insert)):
        return idx
    n = len(node)
    size = f"the array at {ctx.where(depth)} has {n} element{'s' * (n != 1)}"
    if tok == "-":
        raise ctx.fail(errorcodes.PATCH_INDEX, f'"-" names no element ({size})')
    if idx is None:
        raise ctx.fail(errorcodes.PATCH_INDEX, f'"{tok}" is not an array index ({size})')
    raise ctx.fail(errorcodes.PATCH_INDEX, size)


def _key(node: _Container, ctx: _Ctx, depth: int) -> str | int:
    """The existing member or element `ctx.tokens[depth]` names in `node`."""
    if isinstance(node, list):
        return _index(node, ctx, depth, insert=False)
    tok = ctx.tokens[depth]
    if tok not in node:
        hint = _members_hint(node)
        raise ctx.fail(
            errorcodes.PATCH_PATH_MISSING,
            f'the object at {ctx.where(depth)} has no member "{tok}" ({hint})',
        )
    return tok


def _get(node: _Container, key: str | int) -> Any:
    # `_key` returns a str for objects and an int for arrays; the casts only tell mypy.
    return node[cast(str, key)] if isinstance(node, dict) else node[cast(int, key)]


def _set(node: _Container, key: str | int, value: Any) -> None:
    if isinstance(node, dict):
        node[cast(str, key)] = value
    else:
        node[cast(int, key)] = value


def _pop(node: _Container, key: str | int) -> Any:
    return node.pop(cast(str, key)) if isinstance(node, dict) else node.pop(cast(int, key))


class _Doc:
    """A document under copy-on-write edits.

    Containers this call copied are "owned" and may be mutated in place; all others (the
    input's, and values taken from operations) are shared and never mutated. Invariant: an
    owned container appears once in the document and all its ancestors are owned too, so
    an unowned container never holds an owned one.
    """

    __slots__ = ("_owned", "root")

    def __init__(self, root: Any) -> None:
        self.root = root
        # id -> object, not a set of ids: holding the object stops its id being reused.
        self._owned: dict[int, object] = {}

    def _own(self, node: _Container) -> _Container:
        if id(node) in self._owned:
            return node
        copy: _Container = dict(node) if isinstance(node, dict) else list(node)
        self._owned[id(copy)] = copy
        return copy

    def get(self, ctx: _Ctx) -> Any:
        """The value `ctx.tokens` names; read-only."""
        node = self.root
        for depth in range(len(ctx.tokens)):
            parent = _container(node, ctx, depth)
            node = _get(parent, _key(parent, ctx, depth))
        return node

    def parent(self, ctx: _Ctx) -> _Container:
        """The owned container that holds (or will hold) the last token of `ctx.tokens`."""
        node = self.root = self._own(_container(self.root, ctx, 0))
        for depth in range(len(ctx.tokens) - 1):
            key = _key(node, ctx, depth)
            child = _container(_get(node, key), ctx, depth + 1)
            owned = self._own(child)
            if owned is not child:
                _set(node, key, owned)
            node = owned
        return node

    def unshare(self, value: Any) -> Any:
        """`value` with its owned containers replaced by fresh unowned copies.

        Used by `copy`: placing an owned container twice would let one later write change
        both places. Unowned parts stay shared; by the invariant they hold nothing owned.
        """
        if not isinstance(value, dict | list) or id(value) not in self._owned:
            return value
        if isinstance(value, dict):
            return {k: self.unshare(v) for k, v in value.items()}
        return [self.unshare(v) for v in value]

    def add(self, ctx: _Ctx, value: Any) -> None:
        if not ctx.tokens:
            self.root = value
            return
        parent = self.parent(ctx)
        if isinstance(parent, dict):
            parent[ctx.tokens[-1]] = value
        else:
            parent.insert(_index(parent, ctx, len(ctx.tokens) - 1, insert=True), value)

    def remove(self, ctx: _Ctx) -> Any:
        if not ctx.tokens:
            old, self.root = self.root, None
            return old
        parent = self.parent(ctx)
        key = _key(parent, ctx, len(ctx.tokens) - 1)
        return _pop(parent, key)

    def replace(self, ctx: _Ctx, value: Any) -> None:
        if not ctx.tokens:
            self.root = value
            return
        parent = self.parent(ctx)
        _set(parent, _key(parent, ctx, len(ctx.tokens) - 1), value)


def _apply_one(doc: _Doc, op: PatchOp, tokens: tuple[tuple[str, ...], ...]) -> None:
    verb = f'"{op.op}" targets'
    target = _Ctx(verb, tokens[0])
    if op.op == "add":
        doc.add(target, op.value)
    elif op.op == "remove":
        doc.remove(target)
    elif op.op == "replace":
        doc.replace(target, op.value)
    elif op.op == "test":
        found = doc.get(target)
        if not json_equal(found, op.value):
            raise _Fail(
                errorcodes.PATCH_TEST_FAILED,
                f'"test" at {_show(op.path)} expected {_describe_value(op.value)}, '
                f"found {_describe_value(found)}",
            )
    else:
        _move_or_copy(doc, op, target, _Ctx(f'"{op.op}" reads', tokens[1]))


def _describe_value(v: Any) -> str:
    return f"{json_type_name(v)} {_preview(v)}"


def _move_or_copy(doc: _Doc, op: PatchOp, target: _Ctx, source: _Ctx) -> None:
    if op.op == "copy":
        doc.add(target, doc.unshare(doc.get(source)))
        return
    if source.tokens == target.tokens:
        doc.get(source)  # a no-op, but "from" must still exist (RFC 6902 section 4.4)
        return
    if target.tokens[: len(source.tokens)] == source.tokens:
        raise _Fail(
            errorcodes.PATCH_MOVE_INTO_CHILD,
            f'"move" from {_show(op.from_ or "")} to {op.path} would move a value into its '
            "own child",
        )
    doc.add(target, doc.remove(source))


def apply_ops(doc: Any, ops: Sequence[PatchOp], loc: JsonLoc | None = None) -> Any:
    """Apply `ops` to `doc` atomically and return the new document.

    `doc` is never mutated; the result shares untouched subtrees with it by identity. On any
    failure a `PatchError` is raised and nothing observable has changed. `loc` is where the
    patch itself lives, for diagnostics (operation `i` is reported at `loc.child(i)`).
    """
    base = loc if loc is not None else JsonLoc("<patch>", "")
    tokens = _check_ops(ops, base)
    state = _Doc(doc)
    for i, (op, toks) in enumerate(zip(ops, tokens, strict=True)):
        try:
            _apply_one(state, op, toks)
        except _Fail as fail:
            note = Diagnostic.note(f'while applying operation {i} ("{op.describe()}")')
            raise PatchError(
                Diagnostic.error(fail.code, fail.message, base.child(i), note)
            ) from None
    return state.root


def apply_patch(doc: Any, raw: object, loc: JsonLoc | None = None) -> Any:
    """Parse a decoded JSON Patch document and apply it: `parse_ops` + `apply_ops`."""
    base = loc if loc is not None else JsonLoc("<patch>", "")
    return apply_ops(doc, parse_ops(raw, base), base)


# --- diff -----------------------------------------------------------------------------


def diff(a: Any, b: Any) -> list[PatchOp]:
    """A small patch turning `a` into `b` exactly: `apply_ops(a, diff(a, b))` is `b`.

    Equal means strictly equal, Python types included (`1` vs `1.0`, `True` vs `1`). Objects
    are diffed member by member; arrays of objects with unique string "id"s (in both `a` and
    `b`) are aligned by id; other arrays by common prefix and suffix. Values in the patch are
    shared with `b`, not copied. The output is deterministic.
    """
    out: list[PatchOp] = []
    _diff(a, b, (), out)
    return out


def _diff(a: Any, b: Any, path: tuple[str | int, ...], out: list[PatchOp]) -> None:
    if a is b:
        return
    if type(a) is dict and type(b) is dict:
        _diff_object(a, b, path, out)
    elif type(a) is list and type(b) is list:
        if _ids(a) is not None and _ids(b) is not None:
            _diff_by_id(a, b, path, out)
        else:
            _diff_array(a, b, path, out)
    elif not _strict_equal(a, b):
        out.append(PatchOp("replace", format_pointer(path), b))


def _diff_object(
    a: dict[str, Any], b: dict[str, Any], path: tuple[str | int, ...], out: list[PatchOp]
) -> None:
    for k in a:
        if k not in b:
            out.append(PatchOp("remove", format_pointer((*path, k))))
    for k, v in b.items():
        if k in a:
            _diff(a[k], v, (*path, k), out)
        else:
            out.append(PatchOp("add", format_pointer((*path, k)), v))


def _ids(items: list[Any]) -> list[str] | None:
    """The "id" of every element, if all are objects with unique string ids."""
    ids: list[str] = []
    for item in items:
        if type(item) is not dict or type(item.get("id")) is not str:
            return None
        ids.append(item["id"])
    return ids if len(set(ids)) == len(ids) else None


def _diff_by_id(
    a: list[Any], b: list[Any], path: tuple[str | int, ...], out: list[PatchOp]
) -> None:
    """Align two id'ed object lists: removes (highest index first), then moves, adds, edits."""
    wanted = {item["id"] for item in b}
    cur: list[Any] = list(a)
    for idx in range(len(a) - 1, -1, -1):
        if a[idx]["id"] not in wanted:
            out.append(PatchOp("remove", format_pointer((*path, idx))))
            del cur[idx]
    cur_ids = [item["id"] for item in cur]
    present = set(cur_ids)
    for j, item in enumerate(b):
        ident = item["id"]
        if j < len(cur_ids) and cur_ids[j] == ident:
            _diff(cur[j], item, (*path, j), out)
        elif ident in present:
            # Everything before j is already in place, so the id can only be further on.
            k = cur_ids.index(ident, j)
            out.append(
                PatchOp("move", format_pointer((*path, j)), from_=format_pointer((*path, k)))
            )
            cur.insert(j, cur.pop(k))
            cur_ids.insert(j, cur_ids.pop(k))
            _diff(cur[j], item, (*path, j), out)
        else:
            out.append(PatchOp("add", format_pointer((*path, j)), item))
            cur.insert(j, item)
            cur_ids.insert(j, ident)


def _diff_array(
    a: list[Any], b: list[Any], path: tuple[str | int, ...], out: list[PatchOp]
) -> None:
    """Trim the common prefix and suffix, pair up the middle, then add or remove the rest."""
    shortest = min(len(a), len(b))
    start = 0
    while start < shortest and _strict_equal(a[start], b[start]):
        start += 1
    tail = 0
    while tail < shortest - start and _strict_equal(a[-1 - tail], b[-1 - tail]):
        tail += 1
    mid_a, mid_b = len(a) - start - tail, len(b) - start - tail
    for k in range(min(mid_a, mid_b)):
        _diff(a[start + k], b[start + k], (*path, start + k), out)
    # Highest index first, so each index still names the element it meant in `a`.
    for idx in range(start + mid_a - 1, start + mid_b - 1, -1):
        out.append(PatchOp("remove", format_pointer((*path, idx))))
    for idx in range(start + mid_a, start + mid_b):
        out.append(PatchOp("add", format_pointer((*path, idx)), b[idx]))
