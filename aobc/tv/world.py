"""A deterministic world for translation validation: fake functions, HTTP, agents, people.

Every node that would touch the outside world gets an answer that depends only on what it
asked (its function or URL and its inputs), so the same question gets the same answer in
the unoptimized and the optimized program. Effectful calls are recorded, with what they
asked, so the two programs' effects can be compared. A batched HTTP request is answered
and recorded as its component requests, exactly as if they had been separate nodes.

Approvals are decided by a hash of the seed and the node, timers fire at once. A function
whose module is named `fail` (`fail:f`, `pkg.fail:f`) raises, so that failing runs can be
generated too.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from aobc.canonical import canonical_bytes
from aobc.expr import ExprError, evaluate, parse_expr, truthy


def _h(*parts: Any) -> int:
    return int.from_bytes(hashlib.sha256(canonical_bytes(list(parts))).digest()[:6], "big")


def fake_value(*question: Any) -> dict[str, Any]:
    """A rich, deterministic JSON answer: the fields generated workflows read are all there."""
    h = _h(*question)
    items = [
        {"id": f"i{(h >> k) % 97}", "score": ((h >> k) % 100) / 100, "n": (h >> k) % 10}
        for k in range(h % 4)
    ]
    return {
        "value": h % 1000,
        "n": h % 10,
        "ok": bool(h % 2),
        "items": items,
        "body": {"n": h % 7, "items": items, "value": h % 100},
        "label": ("a", "b", "c")[h % 3],
    }


class WorldFailure(Exception):
    """What a world function of a `fail` module raises."""


@dataclass(frozen=True, slots=True)
class Call:
    """One effectful call: what was asked, and by which kind of node."""

    kind: str  # "function" | "http" | "agent"
    target: str  # the function, or "METHOD url"
    payload: str  # canonical JSON of the inputs or body

    def sort_key(self) -> tuple[str, str, str]:
        return (self.kind, self.target, self.payload)


@dataclass
class World:
    seed: int
    calls: list[Call] = field(default_factory=list)  # effectful calls, in the order made
    order: list[str] = field(default_factory=list)  # node paths of those calls, same order

    def decide(self, node_id: str) -> str:
        return "approved" if _h(self.seed, node_id) % 3 else "rejected"

    def function(self, path: str, fn: str, inputs: Any, effect: str) -> Any:
        module = fn.partition(":")[0]
        if module == "fail" or module.endswith(".fail"):
            raise WorldFailure(f"{fn} fails in this world")
        if effect == "effectful":
            self._record(path, Call("function", fn, _canon(inputs)))
        return fake_value("fn", fn, inputs)

    def http(
        self, path: str, method: str, url: str, body: Any, effect: str, filter_spec: Any
    ) -> Any:
        if effect == "effectful":
            self._record(path, Call("http", f"{method} {url}", _canon(body)))
        answer = fake_value("http", method, _base_url(url, filter_spec), body)
        # Beside the real response fields, the answer's own fields, so that expressions
        # written against any node's output (`x.n`, `x.items`) mean something here too.
        response = {**answer, "status": 200, "headers": {}, "body": answer["body"], "url": url}
        if filter_spec is not None:
            response = _apply_filter(response, url, filter_spec)
        return response

    def agent(self, path: str, model: str, prompt: str, effect: str) -> Any:
        if effect == "effectful":
            self._record(path, Call("agent", model, _canon(prompt)))
        return fake_value("agent", model, prompt)

    def _record(self, path: str, call: Call) -> None:
        self.calls.append(call)
        self.order.append(path)


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _base_url(url: str, filter_spec: Any) -> str:
    """The URL without the filter parameter: the source's data does not depend on it."""
    if filter_spec is None:
        return url
    parts = urllib.parse.urlsplit(url)
    query = [
        (k, v)
        for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if k != filter_spec["param"]
    ]
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _apply_filter(response: dict[str, Any], url: str, spec: Any) -> dict[str, Any]:
    """A source that declares filter support applies the `where` expression it was sent to
    the item list at `spec["items"]` (a path like `body.items`) of its response."""
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query, keep_blank_values=True))
    where = query.get(spec["param"])
    if where is None:
        return response
    expr = parse_expr(where)
    path = [p for p in str(spec["items"]).split(".") if p]
    holder: Any = response
    for key in path[:-1]:
        holder = holder.get(key) if isinstance(holder, dict) else None
    if not path or not isinstance(holder, dict) or not isinstance(holder.get(path[-1]), list):
        return response
    kept = []
    for item in holder[path[-1]]:
        try:
            if truthy(evaluate(expr, {"item": item})):
                kept.append(item)
        except ExprError:
            continue
    holder[path[-1]] = kept
    return response
