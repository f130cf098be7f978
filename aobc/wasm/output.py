"""A plugin's input and output documents: encoding the one, checking the other.

Input:  {"abi": 1, "options": {...}, "graph": {...}}                  (UTF-8 JSON)
Output: {"patch": [RFC 6902 ops], "remarks": [...], "stats": {...}}   (UTF-8 JSON)

Remarks have the schema of `Remark.to_json` (`pass` may be left out: the host names the
pass itself, so a plugin cannot speak for another). Stats are counters: name -> integer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, get_args

from aobc.diagnostics import Diagnostic
from aobc.errors import PatchError
from aobc.frontend.jsonpatch import PatchOp, parse_ops
from aobc.passes.base import Remark, RemarkKind
from aobc.source import JsonLoc, Loc
from aobc.wasm.abi import ABI_VERSION

_KINDS: Final = get_args(RemarkKind)
_REMARK_KEYS: Final = frozenset({"pass", "kind", "name", "nodes", "loc", "message", "args"})


class OutputError(Exception):
    """The output is not what the ABI says; `notes` point into it."""

    def __init__(self, message: str, notes: tuple[Diagnostic, ...] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.notes = notes


@dataclass(frozen=True, slots=True)
class PluginOutput:
    ops: tuple[PatchOp, ...]
    remarks: tuple[dict[str, Any], ...] = ()
    stats: dict[str, int] = field(default_factory=dict)


def encode_input(options: Mapping[str, Any], graph: Mapping[str, Any]) -> bytes:
    doc = {"abi": ABI_VERSION, "options": dict(options), "graph": graph}
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def parse_output(data: bytes, where: str) -> PluginOutput:
    """Check an output document; raises OutputError saying what is wrong, and where."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise OutputError(f"its output is not UTF-8 ({err.reason} at byte {err.start})") from None
    except ValueError as err:
        preview = data[:60].decode("utf-8", "replace")
        raise OutputError(f"its output is not JSON ({err}): {preview!r}") from None
    if not isinstance(doc, dict):
        raise OutputError('its output must be an object with "patch", "remarks" and "stats"')
    unknown = sorted(set(doc) - {"patch", "remarks", "stats"})
    if unknown:
        raise OutputError(f'its output has an unknown member "{unknown[0]}"')
    try:
        ops = parse_ops(doc.get("patch", []), JsonLoc(where, "/patch"))
    except PatchError as err:
        raise OutputError(
            "its patch is not a valid RFC 6902 patch", tuple(err.diagnostics)
        ) from None
    remarks = doc.get("remarks", [])
    if not isinstance(remarks, list):
        raise OutputError("its remarks must be an array")
    for i, r in enumerate(remarks):
        problem = _remark_problem(r)
        if problem:
            raise OutputError(f"its remark {i} {problem}")
    stats = doc.get("stats", {})
    if not isinstance(stats, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in stats.values()
    ):
        raise OutputError("its stats must be an object of integer counters")
    return PluginOutput(ops, tuple(remarks), stats)


def _remark_problem(r: Any) -> str | None:
    if not isinstance(r, dict):
        return "is not an object"
    extra = sorted(set(r) - _REMARK_KEYS)
    if extra:
        return f'has an unknown member "{extra[0]}"'
    if r.get("kind") not in _KINDS:
        return f"has kind {r.get('kind')!r}, not one of {', '.join(_KINDS)}"
    for key in ("name", "message"):
        if not isinstance(r.get(key), str):
            return f'needs a string "{key}"'
    nodes = r.get("nodes", [])
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        return '"nodes" must be an array of node ids'
    if r.get("loc") is not None and not isinstance(r.get("loc"), str):
        return '"loc" must be a string or null'
    if not isinstance(r.get("args", {}), dict):
        return '"args" must be an object'
    return None


def to_remark(raw: Mapping[str, Any], pass_name: str, locs: Mapping[str, Loc]) -> Remark:
    """A checked remark as a `Remark` of `pass_name`; its loc text is mapped back to the
    location it was projected from."""
    text = raw.get("loc")
    loc: Loc | None = None
    if isinstance(text, str):
        loc = locs.get(text)
        if loc is None and "#" in text:
            file, _, pointer = text.partition("#")
            loc = JsonLoc(file, pointer)
    return Remark(
        pass_name=pass_name,
        kind=raw["kind"],
        name=raw["name"],
        nodes=tuple(raw.get("nodes", ())),
        message=raw["message"],
        loc=loc,
        args=tuple(raw.get("args", {}).items()),
    )
