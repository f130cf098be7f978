"""Canonical DSL text for any workflow (`aobc fmt`).

Printing is driven by the canonical document, so whatever form a workflow was written in,
it prints the same way, and the printed text parses back to an equal workflow:
`load_text(to_dsl(wf)) == wf`. Edges that continue one another print as chains.
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from aobc.backend.serialize import to_document
from aobc.expr import parse_template
from aobc.expr.ast import is_path, to_source
from aobc.ir import KEYWORDS, Workflow, is_identifier

_WIDTH: Final = 100
_INDENT: Final = "  "
_DURATION_FIELDS: Final = frozenset({"timeout", "duration", "backoff", "max_backoff", "cost"})
_SYMBOL_FIELDS: Final = frozenset({"effect", "priority", "on_timeout", "mode", "provider"})
#: Fields printed before the config block, per kind.
_POSITIONAL: Final = {
    "http": ("method", "url"),
    "function": ("fn",),
    "map": ("over",),
    "condition": ("expr",),
    "composite": ("workflow",),
}


def _bare_ok(s: str) -> bool:
    return is_identifier(s) and s not in KEYWORDS


def string(s: str) -> str:
    """A string literal; multi-line text reads better triple-quoted."""
    if "\n" in s and '"""' not in s and "\\" not in s and not s.endswith('"') and "\r" not in s:
        return '"""' + s + '"""'
    return json.dumps(s, ensure_ascii=False)


def _ref(s: str) -> str | None:
    """`a.b[0]` when `s` is exactly one template hole holding a path with a step."""
    if not (s.startswith("${") and s.endswith("}")):
        return None
    try:
        single = parse_template(s).single
    except ValueError:
        return None
    if single is None or not is_path(single) or type(single).__name__ == "Var":
        return None
    return to_source(single)


def value(v: Any, key: str = "", indent: int = 1) -> str:
    """A config value in DSL syntax."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError("non-finite number")
        return repr(v)
    if isinstance(v, str):
        if key in _DURATION_FIELDS or (key in _SYMBOL_FIELDS and _bare_ok(v)):
            return v
        ref = _ref(v)
        return ref if ref is not None else string(v)
    if isinstance(v, list):
        items = [value(x, "", indent + 1) for x in v]
        flat = "[" + ", ".join(items) + "]"
        if "\n" not in flat and len(flat) + indent * 2 <= _WIDTH - 20:
            return flat
        # Too long for one line (a batch's requests, long lists): one item per line.
        pad = _INDENT * (indent + 1)
        return "[\n" + "".join(f"{pad}{item},\n" for item in items) + _INDENT * indent + "]"
    if isinstance(v, dict):
        return _object(v, indent)
    raise TypeError(f"cannot print {type(v).__name__}")


def _key(k: str) -> str:
    return k if _bare_ok(k) else json.dumps(k, ensure_ascii=False)


def _object(d: dict[str, Any], indent: int, *, map_config: bool = False, used: int = 0) -> str:
    """An object, on one line when it fits after the `used` columns before it."""
    if not d:
        return "{}"
    entries = [
        f"{_key(k)}: {_node_spec(v, indent + 1) if map_config and k == 'body' else value(v, k, indent + 1)}"
        for k, v in d.items()
    ]
    flat = "{ " + ", ".join(entries) + " }"
    if "\n" not in flat and max(used, indent * 2) + len(flat) <= _WIDTH:
        return flat
    pad = _INDENT * (indent + 1)
    return "{\n" + "".join(f"{pad}{e}\n" for e in entries) + _INDENT * indent + "}"


def _node_spec(doc: dict[str, Any], indent: int, used: int = 0) -> str:
    kind = doc["type"]
    head = [kind]
    skip = {"id", "type"}
    for name in _POSITIONAL.get(kind, ()):
        skip.add(name)
        head.append(_positional(kind, name, doc[name], indent))
    if kind == "join":
        head.append(str(doc["n"]) if "n" in doc else doc.get("mode", "all"))
        skip.update(("mode", "n"))
    if kind == "timer":
        if "duration" in doc:
            head.append(doc["duration"])
        elif "until" in doc:
            head.append("until " + value(doc["until"], "until", indent))
        skip.update(("duration", "until"))
    if doc.get("effect") == _implied_effect(doc):
        skip.add("effect")
    config = {k: v for k, v in doc.items() if k not in skip}
    text = " ".join(head)
    if not config:
        return text
    block = _object(config, indent, map_config=kind == "map", used=used + len(text) + 1)
    return f"{text} {block}"


_EFFECT_RANK: Final = {"pure": 0, "idempotent": 1, "effectful": 2}


def _implied_effect(doc: dict[str, Any]) -> str | None:
    """The effect the loader gives a node of this kind that declares none (None: required)."""
    kind = doc["type"]
    if kind in ("join", "condition", "timer"):
        return "pure"
    if kind == "approval":
        return "effectful"
    if kind == "agent":
        return "idempotent"
    if kind == "map":
        return str(doc["body"]["effect"])
    if kind == "composite":
        effects = [n["effect"] for n in doc["workflow"]["nodes"]]
        return max(effects, key=_EFFECT_RANK.__getitem__, default="pure")
    return None


def _positional(kind: str, name: str, v: Any, indent: int) -> str:
    if name in ("over", "expr"):
        return str(v)
    if name == "method":
        return str(v)
    if name == "workflow":
        return _workflow(v, indent)
    return value(v, name, indent)


def _label(label: str) -> str:
    return (
        label
        if _bare_ok(label) or label in ("true", "false")
        else json.dumps(label, ensure_ascii=False)
    )


def _arrow(edge: dict[str, Any]) -> str:
    label, when = edge.get("label"), edge.get("when")
    if label is None and when is None:
        return "->"
    inner = " ".join(
        p
        for p in (
            _label(label) if label is not None else None,
            f"when {when}" if when is not None else None,
        )
        if p
    )
    return f"-[{inner}]->"


def _edge_lines(edges: list[dict[str, Any]]) -> list[str]:
    lines: list[str] = []
    chain: list[str] = []
    last_dst: str | None = None
    for e in edges:
        if chain and e["from"] == last_dst:
            chain += [_arrow(e), e["to"]]
        else:
            if chain:
                lines.append(" ".join(chain))
            chain = [e["from"], _arrow(e), e["to"]]
        last_dst = e["to"]
    if chain:
        lines.append(" ".join(chain))
    return lines


def _workflow(doc: dict[str, Any], indent: int) -> str:
    pad = _INDENT * (indent + 1)
    lines = [f"workflow {doc['name']} {{"]
    for key in ("namespace", "description"):
        if key in doc:
            lines.append(f"{pad}{key}: {string(doc[key])}")
    for name, spec in doc.get("inputs", {}).items():
        default = f" = {value(spec['default'], '', indent + 1)}" if "default" in spec else ""
        lines.append(f"{pad}input {name}: {spec['type']}{default}")
    for name, expr in doc.get("outputs", {}).items():
        lines.append(f"{pad}output {name} = {expr}")
    if len(lines) > 1 and doc["nodes"]:
        lines.append("")
    width = max((len(n["id"]) for n in doc["nodes"]), default=0)
    for n in doc["nodes"]:
        head = f"{pad}{n['id'].ljust(width)} = "
        lines.append(head + _node_spec(n, indent + 1, used=len(head)))
    edge_lines = _edge_lines(doc["edges"])
    if edge_lines and doc["nodes"]:
        lines.append("")
    lines += [pad + line for line in edge_lines]
    lines.append(_INDENT * indent + "}")
    return "\n".join(lines)


def to_dsl(wf: Workflow) -> str:
    """The canonical DSL text of a workflow, ending in a newline."""
    return _workflow(to_document(wf), 0) + "\n"
