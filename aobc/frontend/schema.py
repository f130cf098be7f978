"""JSON documents to IR: the one place where the workflow schema is checked.

Both frontends end here. The JSON loader hands over the parsed file; the DSL frontend hands
over the document its parse tree describes, with a source map from JSON pointers to spans.
So a workflow written both ways gives equal IR by construction, and every schema error reads
the same, located by span or by pointer.

Every problem is reported, not only the first: a converter that fails records a diagnostic and
returns `INVALID`, and a node with any invalid field is dropped from the result.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Protocol

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.expr import (
    ExprSyntaxError,
    check_calls,
    parse_expr,
    parse_template,
    template_source,
    to_source,
)
from aobc.ir import (
    BATCH,
    EMPTY,
    HTTP_METHODS,
    NO_RETRY,
    AgentNode,
    ApprovalNode,
    CompositeNode,
    ConditionNode,
    Edge,
    Effect,
    FrozenDict,
    FunctionNode,
    HttpNode,
    InputDecl,
    JoinMode,
    JoinNode,
    MapNode,
    Node,
    NodeKind,
    OnTimeout,
    OutputDecl,
    Priority,
    RetryPolicy,
    TimerNode,
    ValueType,
    Workflow,
    id_problem,
    parse_duration,
)
from aobc.source import JsonLoc, Loc
from aobc.suggest import did_you_mean


class SourceMap(Protocol):
    """Where the value at a JSON pointer was written."""

    @property
    def per_field(self) -> bool:
        """True when fields have locations of their own worth storing (DSL spans); otherwise
        a field's location is derived from its node's when needed."""
        ...

    def loc(self, pointer: str) -> Loc | None: ...


@dataclass(frozen=True, slots=True)
class JsonSourceMap:
    """Locations inside a JSON file are just pointers into it."""

    file: str
    per_field: bool = False

    def loc(self, pointer: str) -> Loc | None:
        return JsonLoc(self.file, pointer)


@dataclass(frozen=True, slots=True)
class Reuse:
    """IR already built for document parts, by the identity of their dicts.

    Patches are applied copy-on-write, so a node the patch did not touch keeps the very
    dict it had; its IR node can be reused without validating it again. Entries hold the
    dict itself, so an `id()` can never be confused with a later object's.
    """

    nodes: dict[int, tuple[Any, Node]]
    edges: dict[int, tuple[Any, Edge]]

    @staticmethod
    def of(doc: dict[str, Any], wf: Workflow) -> Reuse:
        raw_nodes = doc.get("nodes", ())
        raw_edges = doc.get("edges", ())
        return Reuse(
            nodes={id(r): (r, n) for r, n in zip(raw_nodes, wf.nodes, strict=False)},
            edges={id(r): (r, e) for r, e in zip(raw_edges, wf.edges, strict=False)},
        )


def _reused(table: dict[int, tuple[Any, Any]], raw: Any) -> Any:
    hit = table.get(id(raw))
    return hit[1] if hit is not None and hit[0] is raw else None


class _Invalid:
    def __repr__(self) -> str:
        return "INVALID"


INVALID: Final = _Invalid()

_COMMON: Final = frozenset(
    {"id", "type", "effect", "priority", "timeout", "retry", "retries", "cost", "cache"}
)
_KIND_FIELDS: Final[dict[NodeKind, frozenset[str]]] = {
    NodeKind.HTTP: frozenset(
        {"method", "url", "headers", "body", "batchable", "auth", "requests", "filter"}
    ),
    NodeKind.FUNCTION: frozenset({"fn", "args"}),
    NodeKind.MAP: frozenset({"over", "body", "concurrency"}),
    NodeKind.JOIN: frozenset({"mode", "n"}),
    NodeKind.CONDITION: frozenset({"expr"}),
    NodeKind.COMPOSITE: frozenset({"workflow", "args"}),
    NodeKind.AGENT: frozenset(
        {
            "model",
            "prompt",
            "provider",
            "system",
            "tools",
            "output_schema",
            "may_patch",
            "spawn_budget",
            "max_tokens",
            "temperature",
        }
    ),
    NodeKind.APPROVAL: frozenset({"approvers", "escalate", "on_timeout", "message"}),
    NodeKind.TIMER: frozenset({"duration", "until"}),
}
_WORKFLOW_FIELDS: Final = frozenset(
    {"name", "namespace", "description", "inputs", "outputs", "nodes", "edges"}
)
_EDGE_FIELDS: Final = frozenset({"from", "to", "label", "when"})
_RETRY_FIELDS: Final = frozenset({"max_attempts", "backoff", "max_backoff", "multiplier"})
_FN_RE: Final = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_.]*"
)
_NAMESPACE_RE: Final = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
PROVIDERS: Final = ("openai", "anthropic", "scripted")
_MAX_INT: Final = 2**53
_MIN_INT: Final = -(2**63)
_MAX_U64: Final = 2**64 - 1


def _jtype(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


class Loader:
    """Converts one document, collecting every diagnostic."""

    def __init__(
        self, smap: SourceMap, diags: list[Diagnostic], reuse: Reuse | None = None
    ) -> None:
        self.smap = smap
        self.diags = diags
        #: Ids of top-level nodes left out because their fields are invalid.
        self.dropped: set[str] = set()
        self.reuse = reuse

    # --- reporting ------------------------------------------------------------------

    def error(self, code: ec.ErrorCode, message: str, ptr: str, *notes: Diagnostic) -> _Invalid:
        self.diags.append(Diagnostic.error(code, message, self.smap.loc(ptr), *notes))
        return INVALID

    def wrong_type(self, what: str, want: str, value: Any, ptr: str) -> _Invalid:
        return self.error(ec.WRONG_TYPE, f"{what} must be {want}, not {_jtype(value)}", ptr)

    def unknown_fields(
        self, obj: Mapping[str, Any], allowed: frozenset[str], what: str, ptr: str
    ) -> None:
        for key in obj:
            if key not in allowed:
                self.error(
                    ec.UNKNOWN_FIELD,
                    f'unknown field "{key}" in {what}',
                    f"{ptr}/{_esc(key)}",
                    *did_you_mean(key, allowed),
                )

    # --- scalar converters ----------------------------------------------------------

    def string(self, v: Any, ptr: str, what: str, *, nonempty: bool = True) -> str | _Invalid:
        if not isinstance(v, str):
            return self.wrong_type(what, "a string", v, ptr)
        if nonempty and not v:
            return self.error(ec.INVALID_VALUE, f"{what} must not be empty", ptr)
        return v

    def boolean(self, v: Any, ptr: str, what: str) -> bool | _Invalid:
        if not isinstance(v, bool):
            return self.wrong_type(what, "true or false", v, ptr)
        return v

    def integer(
        self, v: Any, ptr: str, what: str, lo: int = 0, hi: int = _MAX_INT
    ) -> int | _Invalid:
        if isinstance(v, bool) or not isinstance(v, int):
            if isinstance(v, float) and v.is_integer():
                v = int(v)
            else:
                return self.wrong_type(what, "an integer", v, ptr)
        if not lo <= v <= hi:
            return self.error(
                ec.INVALID_VALUE, f"{what} must be between {lo} and {hi}, not {v}", ptr
            )
        return int(v)

    def number(self, v: Any, ptr: str, what: str, lo: float, hi: float) -> float | _Invalid:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return self.wrong_type(what, "a number", v, ptr)
        if not lo <= v <= hi:
            return self.error(
                ec.INVALID_VALUE, f"{what} must be between {lo} and {hi}, not {v}", ptr
            )
        return float(v)

    def enum(self, v: Any, ptr: str, what: str, cls: type[Any]) -> Any:
        if not isinstance(v, str):
            return self.wrong_type(what, "a string", v, ptr)
        try:
            return cls(v)
        except ValueError:
            options = [m.value for m in cls]
            return self.error(
                ec.INVALID_VALUE,
                f'{what} must be one of {", ".join(options)}, not "{v}"',
                ptr,
                *did_you_mean(v, options),
            )

    def duration(self, v: Any, ptr: str, what: str) -> int | _Invalid:
        """Milliseconds from `"10s"`/`"1h30m"`, or from a number of seconds."""
        if isinstance(v, bool):
            return self.wrong_type(what, 'a duration like "10s"', v, ptr)
        if isinstance(v, int | float):
            if not 0 <= v <= 366 * 86400:
                return self.error(ec.INVALID_VALUE, f"{what} is out of range: {v}", ptr)
            return round(v * 1000)
        if not isinstance(v, str):
            return self.wrong_type(what, 'a duration like "10s"', v, ptr)
        ms = parse_duration(v)
        if ms is None:
            return self.error(
                ec.INVALID_VALUE,
                f'{what} must be a duration like "500ms", "10s", "5m", "4h" or "1d", not "{v}"',
                ptr,
            )
        if ms > 366 * 86_400_000:
            return self.error(ec.INVALID_VALUE, f"{what} is longer than a year: {v}", ptr)
        return ms

    def expr(self, v: Any, ptr: str, what: str) -> str | _Invalid:
        """An expression string, returned in canonical spelling."""
        if not isinstance(v, str):
            return self.wrong_type(what, "an expression string", v, ptr)
        try:
            tree = parse_expr(v)
        except ExprSyntaxError as err:
            at = f" (at character {err.offset + 1})" if err.offset else ""
            return self.error(
                ec.EXPR_SYNTAX, f"invalid expression in {what}: {err.message}{at}", ptr
            )
        problems = check_calls(tree)
        for p in problems:
            self.error(ec.UNKNOWN_FUNCTION, f"{p} in {what}", ptr)
        return INVALID if problems else to_source(tree)

    def template(self, v: Any, ptr: str, what: str) -> str | _Invalid:
        """A template string, returned in canonical spelling."""
        if not isinstance(v, str):
            return self.wrong_type(what, "a string", v, ptr)
        if "$" not in v:
            return v
        try:
            tpl = parse_template(v)
        except ExprSyntaxError as err:
            return self.error(
                ec.EXPR_SYNTAX,
                f"invalid template in {what}: {err.message} (at character {err.offset + 1})",
                ptr,
            )
        problems = [p for e in tpl.exprs for p in check_calls(e)]
        for p in problems:
            self.error(ec.UNKNOWN_FUNCTION, f"{p} in {what}", ptr)
        return INVALID if problems else template_source(tpl)

    def json_templates(self, v: Any, ptr: str, what: str) -> Any:
        """Any JSON value whose strings are templates; frozen for the IR."""
        if isinstance(v, str):
            return self.template(v, ptr, what)
        if isinstance(v, dict):
            out = {k: self.json_templates(x, f"{ptr}/{_esc(k)}", what) for k, x in v.items()}
            return INVALID if any(x is INVALID for x in out.values()) else FrozenDict(out)
        if isinstance(v, list):
            items = [self.json_templates(x, f"{ptr}/{i}", what) for i, x in enumerate(v)]
            return INVALID if any(x is INVALID for x in items) else tuple(items)
        return self.plain_json(v, ptr, what)

    def plain_json(self, v: Any, ptr: str, what: str) -> Any:
        """A JSON value as data (no templates), frozen; numbers must fit a 64-bit field."""
        if isinstance(v, dict):
            out = {k: self.plain_json(x, f"{ptr}/{_esc(k)}", what) for k, x in v.items()}
            return INVALID if any(x is INVALID for x in out.values()) else FrozenDict(out)
        if isinstance(v, list):
            items = [self.plain_json(x, f"{ptr}/{i}", what) for i, x in enumerate(v)]
            return INVALID if any(x is INVALID for x in items) else tuple(items)
        if isinstance(v, float) and v != v:  # NaN never equals itself; JSON has no NaN
            return self.error(ec.INVALID_VALUE, f"{what} holds NaN, which JSON cannot carry", ptr)
        if isinstance(v, int) and not isinstance(v, bool) and not _MIN_INT <= v <= _MAX_U64:
            # msgpack, and so the IR file, holds integers in [-2**63, 2**64 - 1].
            return self.error(
                ec.INVALID_VALUE, f"{what} holds an integer too large to store: {v}", ptr
            )
        return v

    def string_list(
        self, v: Any, ptr: str, what: str, *, nonempty: bool = False
    ) -> tuple[str, ...] | _Invalid:
        if not isinstance(v, list):
            return self.wrong_type(what, "an array of strings", v, ptr)
        items = [self.string(x, f"{ptr}/{i}", f"{what}[{i}]") for i, x in enumerate(v)]
        if any(x is INVALID for x in items):
            return INVALID
        if nonempty and not items:
            return self.error(ec.INVALID_VALUE, f"{what} must not be empty", ptr)
        return tuple(x for x in items if isinstance(x, str))

    def template_object(self, v: Any, ptr: str, what: str) -> FrozenDict[str, Any] | _Invalid:
        if not isinstance(v, dict):
            return self.wrong_type(what, "an object", v, ptr)
        out = self.json_templates(v, ptr, what)
        return INVALID if out is INVALID else out  # type: ignore[no-any-return]

    # --- structure ------------------------------------------------------------------

    def workflow(self, doc: Any, ptr: str = "", default_name: str = "main") -> Workflow | None:
        if not isinstance(doc, dict):
            self.wrong_type("a workflow", "an object", doc, ptr)
            return None
        self.unknown_fields(doc, _WORKFLOW_FIELDS, "the workflow", ptr)
        name = doc.get("name", default_name)
        if isinstance(name, str) and id_problem(name) is None:
            pass
        elif isinstance(name, str):
            self.error(ec.INVALID_ID, f"workflow name {id_problem(name)}", f"{ptr}/name")
        else:
            self.wrong_type("the workflow name", "a string", name, f"{ptr}/name")
        namespace = doc.get("namespace", "default")
        if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
            self.error(
                ec.INVALID_VALUE,
                "namespace must be lower-case letters, digits and '-', at most 63 characters",
                f"{ptr}/namespace",
            )
        description = doc.get("description")
        if description is not None and not isinstance(description, str):
            self.wrong_type("description", "a string", description, f"{ptr}/description")
        inputs = self.inputs(doc.get("inputs", {}), f"{ptr}/inputs")
        outputs = self.outputs(doc.get("outputs", {}), f"{ptr}/outputs")
        nodes = self.nodes(doc.get("nodes"), f"{ptr}/nodes")
        edges = self.edges(doc.get("edges", []), f"{ptr}/edges")
        if nodes is None or edges is None or not isinstance(name, str):
            return None
        return Workflow(
            name=name,
            namespace=namespace if isinstance(namespace, str) else "default",
            description=description if isinstance(description, str) else None,
            inputs=inputs,
            outputs=outputs,
            nodes=nodes,
            edges=edges,
            loc=self.smap.loc(ptr),
        )

    def inputs(self, v: Any, ptr: str) -> tuple[InputDecl, ...]:
        if not isinstance(v, dict):
            self.wrong_type("inputs", "an object of input declarations", v, ptr)
            return ()
        out = []
        for name, spec in v.items():
            iptr = f"{ptr}/{_esc(name)}"
            problem = id_problem(name)
            if problem is not None:
                self.error(ec.INVALID_ID, f"input name {problem}", iptr)
                continue
            if isinstance(spec, str):
                spec = {"type": spec}
            if not isinstance(spec, dict):
                self.wrong_type(f'input "{name}"', 'an object like {"type": "str"}', spec, iptr)
                continue
            self.unknown_fields(spec, frozenset({"type", "default"}), f'input "{name}"', iptr)
            vtype = self.enum(spec.get("type", "any"), f"{iptr}/type", "input type", ValueType)
            if vtype is INVALID:
                continue
            has_default = "default" in spec
            default = (
                self.plain_json(
                    spec["default"], f"{iptr}/default", f'the default of input "{name}"'
                )
                if has_default
                else None
            )
            if default is INVALID:
                continue
            out.append(
                InputDecl(
                    name=name,
                    type=vtype,
                    default=default,
                    required=not has_default,
                    loc=self.smap.loc(iptr),
                )
            )
        return tuple(sorted(out, key=lambda d: d.name))

    def outputs(self, v: Any, ptr: str) -> tuple[OutputDecl, ...]:
        if not isinstance(v, dict):
            self.wrong_type("outputs", "an object of output expressions", v, ptr)
            return ()
        out = []
        for name, src in v.items():
            optr = f"{ptr}/{_esc(name)}"
            problem = id_problem(name)
            if problem is not None:
                self.error(ec.INVALID_ID, f"output name {problem}", optr)
                continue
            expr = self.expr(src, optr, f'output "{name}"')
            if isinstance(expr, str):
                out.append(OutputDecl(name=name, expr=expr, loc=self.smap.loc(optr)))
        return tuple(sorted(out, key=lambda d: d.name))

    def nodes(self, v: Any, ptr: str) -> tuple[Node, ...] | None:
        if v is None:
            self.error(ec.MISSING_FIELD, 'a workflow needs a "nodes" array', ptr.rsplit("/", 1)[0])
            return None
        if not isinstance(v, list):
            self.wrong_type('"nodes"', "an array", v, ptr)
            return None
        reuse = self.reuse.nodes if self.reuse is not None and ptr == "/nodes" else {}
        out = [_reused(reuse, raw) or self.node(raw, f"{ptr}/{i}") for i, raw in enumerate(v)]
        if ptr == "/nodes":
            for raw, node in zip(v, out, strict=True):
                if node is None and isinstance(raw, dict) and isinstance(raw.get("id"), str):
                    self.dropped.add(raw["id"])
        return tuple(n for n in out if n is not None)

    def edges(self, v: Any, ptr: str) -> tuple[Edge, ...] | None:
        if not isinstance(v, list):
            self.wrong_type('"edges"', "an array", v, ptr)
            return None
        reuse = self.reuse.edges if self.reuse is not None and ptr == "/edges" else {}
        out = [_reused(reuse, raw) or self.edge(raw, f"{ptr}/{i}") for i, raw in enumerate(v)]
        return tuple(e for e in out if e is not None)

    def edge(self, raw: Any, ptr: str) -> Edge | None:
        if not isinstance(raw, dict):
            self.wrong_type("an edge", 'an object like {"from": "a", "to": "b"}', raw, ptr)
            return None
        self.unknown_fields(raw, _EDGE_FIELDS, "an edge", ptr)
        ends: list[str | _Invalid] = []
        for key in ("from", "to"):
            if key not in raw:
                self.error(ec.MISSING_FIELD, f'an edge needs "{key}"', ptr)
                ends.append(INVALID)
            else:
                ends.append(self.string(raw[key], f"{ptr}/{key}", f'edge "{key}"'))
        label = raw.get("label")
        if label is not None:
            label = self.string(label, f"{ptr}/label", "edge label")
        when = raw.get("when")
        if when is not None:
            when = self.expr(when, f"{ptr}/when", "edge condition")
        src, dst = ends
        if not (isinstance(src, str) and isinstance(dst, str)):
            return None
        if isinstance(label, _Invalid) or isinstance(when, _Invalid):
            return None
        loc = self.smap.loc(ptr)
        return Edge(
            src=src,
            dst=dst,
            label=label,
            when=when,
            loc=loc,
            field_locs=_field_locs(self.smap, raw, ptr, loc),
        )

    def node(self, raw: Any, ptr: str, *, body_of: str | None = None) -> Node | None:
        """One node; `body_of` names the map whose body this is (a body has no id)."""
        if not isinstance(raw, dict):
            self.wrong_type(
                "a node", 'an object like {"id": "a", "type": "function", ...}', raw, ptr
            )
            return None
        ok = True
        if body_of is None:
            nid = raw.get("id")
            if nid is None:
                self.error(ec.MISSING_FIELD, 'a node needs an "id"', ptr)
                ok = False
            elif not isinstance(nid, str):
                self.wrong_type("a node id", "a string", nid, f"{ptr}/id")
                ok = False
            elif (problem := id_problem(nid)) is not None:
                self.error(ec.INVALID_ID, f"node id {problem}", f"{ptr}/id")
                ok = False
        else:
            nid = "body"
            if "id" in raw:
                self.error(
                    ec.UNKNOWN_FIELD,
                    f'the body of map "{body_of}" has no id of its own',
                    f"{ptr}/id",
                )
                ok = False
        what = (
            f'node "{nid}"'
            if isinstance(nid, str) and body_of is None
            else f'the body of map "{body_of}"'
        )
        kind = self._kind(raw, ptr, what)
        if kind is None:
            return None
        self.unknown_fields(raw, _COMMON | _KIND_FIELDS[kind], f"{kind.value} {what}", ptr)
        fields: dict[str, Any] = {}
        build = _BUILDERS[kind]
        build(self, raw, ptr, what, fields)
        common = self._common(raw, ptr, what, kind, fields)
        if not ok or common is None or any(v is INVALID for v in fields.values()):
            return None
        cls = _CLASSES[kind]
        loc = self.smap.loc(ptr)
        field_locs = _field_locs(self.smap, raw, ptr, loc)
        return cls(id=nid, loc=loc, field_locs=field_locs, **common, **fields)  # type: ignore[arg-type]

    def _kind(self, raw: dict[str, Any], ptr: str, what: str) -> NodeKind | None:
        kind_name = raw.get("type")
        if kind_name is None:
            self.error(ec.MISSING_FIELD, f'{what} needs a "type"', ptr)
            return None
        if not isinstance(kind_name, str):
            self.wrong_type(f"the type of {what}", "a string", kind_name, f"{ptr}/type")
            return None
        try:
            return NodeKind(kind_name)
        except ValueError:
            kinds = [k.value for k in NodeKind]
            self.error(
                ec.UNKNOWN_NODE_TYPE,
                f'{what} has unknown type "{kind_name}"; node types are {", ".join(kinds)}',
                f"{ptr}/type",
                *did_you_mean(kind_name, kinds),
            )
            return None

    def _common(
        self, raw: dict[str, Any], ptr: str, what: str, kind: NodeKind, fields: dict[str, Any]
    ) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        if "effect" in raw:
            out["effect"] = self.enum(
                raw["effect"], f"{ptr}/effect", f"the effect of {what}", Effect
            )
        else:
            default = _default_effect(kind, fields)
            if default is None:
                self.error(
                    ec.MISSING_FIELD,
                    f'{what} must declare its "effect": pure, idempotent or effectful',
                    ptr,
                )
                return None
            out["effect"] = default
        if "priority" in raw:
            out["priority"] = self.enum(raw["priority"], f"{ptr}/priority", "priority", Priority)
        if "timeout" in raw:
            out["timeout_ms"] = self.duration(raw["timeout"], f"{ptr}/timeout", "timeout")
        retry = self._retry(raw, ptr)
        if retry is not NO_RETRY:
            out["retry"] = retry
        if "cost" in raw:
            out["cost_ms"] = self.duration(raw["cost"], f"{ptr}/cost", "cost")
        if "cache" in raw:
            out["cache"] = self._cache(raw["cache"], f"{ptr}/cache")
        return None if any(v is INVALID for v in out.values()) else out

    def _cache(self, spec: Any, ptr: str) -> Any:
        """`{"key": [names the output depends on]}`, as cache-mark writes it."""
        if not isinstance(spec, dict):
            return self.wrong_type("cache", 'an object like {"key": [...]}', spec, ptr)
        self.unknown_fields(spec, frozenset({"key"}), "cache", ptr)
        key = self.string_list(spec.get("key", []), f"{ptr}/key", "cache key")
        return INVALID if key is INVALID else FrozenDict({"key": key})

    def _retry(self, raw: dict[str, Any], ptr: str) -> Any:
        if "retries" in raw and "retry" in raw:
            return self.error(ec.INVALID_VALUE, 'give either "retries" or "retry", not both', ptr)
        if "retries" in raw:
            n = self.integer(raw["retries"], f"{ptr}/retries", "retries", 0, 100)
            return n if n is INVALID else RetryPolicy(max_attempts=n + 1)  # type: ignore[operator]
        spec = raw.get("retry")
        if spec is None:
            return NO_RETRY
        rptr = f"{ptr}/retry"
        if not isinstance(spec, dict):
            return self.wrong_type("retry", "an object", spec, rptr)
        self.unknown_fields(spec, _RETRY_FIELDS, "retry", rptr)
        kw: dict[str, Any] = {}
        if "max_attempts" in spec:
            kw["max_attempts"] = self.integer(
                spec["max_attempts"], f"{rptr}/max_attempts", "max_attempts", 1, 101
            )
        if "backoff" in spec:
            kw["backoff_ms"] = self.duration(spec["backoff"], f"{rptr}/backoff", "backoff")
        if "max_backoff" in spec:
            kw["max_backoff_ms"] = self.duration(
                spec["max_backoff"], f"{rptr}/max_backoff", "max_backoff"
            )
        if "multiplier" in spec:
            kw["multiplier"] = self.number(
                spec["multiplier"], f"{rptr}/multiplier", "multiplier", 1.0, 10.0
            )
        if any(v is INVALID for v in kw.values()):
            return INVALID
        return RetryPolicy(**kw)


# --- per-kind field builders -----------------------------------------------------------

Builder = Callable[[Loader, dict[str, Any], str, str, dict[str, Any]], None]


def _required(ld: Loader, raw: dict[str, Any], key: str, ptr: str, what: str) -> Any:
    if key not in raw:
        return ld.error(ec.MISSING_FIELD, f'{what} needs "{key}"', ptr)
    return raw[key]


def _http(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    method = _required(ld, raw, "method", ptr, what)
    if method is not INVALID:
        method = ld.string(method, f"{ptr}/method", "method")
        if isinstance(method, str) and method.upper() not in (*HTTP_METHODS, BATCH):
            method = ld.error(
                ec.INVALID_VALUE,
                f'unknown HTTP method "{method}"; use one of {", ".join(HTTP_METHODS)}',
                f"{ptr}/method",
            )
    out["method"] = method.upper() if isinstance(method, str) else method
    url = _required(ld, raw, "url", ptr, what)
    out["url"] = url if url is INVALID else ld.template(url, f"{ptr}/url", "url")
    _batch(ld, raw, ptr, what, out)
    if "filter" in raw:
        out["filter"] = _filter(ld, raw["filter"], f"{ptr}/filter")
    if "headers" in raw:
        headers = raw["headers"]
        if not isinstance(headers, dict):
            out["headers"] = ld.wrong_type(
                "headers", "an object of strings", headers, f"{ptr}/headers"
            )
        else:
            vals = {
                k: ld.template(v, f"{ptr}/headers/{_esc(k)}", f'header "{k}"')
                for k, v in headers.items()
            }
            out["headers"] = INVALID if INVALID in vals.values() else FrozenDict(vals)
    if "body" in raw:
        out["body"] = ld.json_templates(raw["body"], f"{ptr}/body", "body")
    if "batchable" in raw:
        out["batchable"] = ld.boolean(raw["batchable"], f"{ptr}/batchable", "batchable")
    if "auth" in raw:
        out["auth"] = ld.string(raw["auth"], f"{ptr}/auth", "auth")


_REQUEST_FIELDS: Final = frozenset({"method", "url", "headers", "body"})


def _batch(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    """A batch's requests: present exactly when the method is BATCH."""
    is_batch = out["method"] == BATCH
    if "requests" not in raw:
        if is_batch:
            out["requests"] = ld.error(
                ec.MISSING_FIELD, f'{what} is a BATCH and needs "requests"', ptr
            )
        return
    rptr = f"{ptr}/requests"
    if not is_batch:
        out["requests"] = ld.error(ec.UNKNOWN_FIELD, '"requests" belongs to a BATCH node', rptr)
        return
    items = raw["requests"]
    if not isinstance(items, list) or not items:
        out["requests"] = ld.wrong_type("requests", "a non-empty array of requests", items, rptr)
        return
    reqs: list[FrozenDict[str, Any] | _Invalid] = []
    for i, item in enumerate(items):
        iptr = f"{rptr}/{i}"
        if not isinstance(item, dict):
            reqs.append(ld.wrong_type("a batched request", "an object", item, iptr))
            continue
        ld.unknown_fields(item, _REQUEST_FIELDS, "a batched request", iptr)
        sub: dict[str, Any] = {}
        _http(
            ld,
            {k: v for k, v in item.items() if k in _REQUEST_FIELDS},
            iptr,
            "a batched request",
            sub,
        )
        if sub.get("method") == BATCH:
            sub["method"] = ld.error(
                ec.INVALID_VALUE, "a batch cannot hold a batch", f"{iptr}/method"
            )
        if any(v is INVALID for v in sub.values()):
            reqs.append(INVALID)
            continue
        doc = {"method": sub["method"], "url": sub["url"]}
        if sub.get("headers"):
            doc["headers"] = sub["headers"]
        if sub.get("body") is not None:
            doc["body"] = sub["body"]
        reqs.append(FrozenDict(doc))
    out["requests"] = INVALID if any(r is INVALID for r in reqs) else tuple(reqs)


def _filter(ld: Loader, spec: Any, ptr: str) -> Any:
    """`{"param": query parameter, "items": path}`: the source filters its items itself."""
    if not isinstance(spec, dict):
        return ld.wrong_type(
            "filter", 'an object like {"param": "q", "items": "body.items"}', spec, ptr
        )
    ld.unknown_fields(spec, frozenset({"param", "items"}), "filter", ptr)
    param = ld.string(spec.get("param"), f"{ptr}/param", "filter param")
    items = ld.expr(spec.get("items", "body"), f"{ptr}/items", "filter items")
    if INVALID in (param, items):
        return INVALID
    return FrozenDict({"param": param, "items": items})


def _function(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    fn = _required(ld, raw, "fn", ptr, what)
    if fn is not INVALID:
        fn = ld.string(fn, f"{ptr}/fn", "fn")
        if isinstance(fn, str) and not _FN_RE.fullmatch(fn):
            fn = ld.error(
                ec.INVALID_VALUE, f'fn must be written "module:function", not "{fn}"', f"{ptr}/fn"
            )
    out["fn"] = fn
    if "args" in raw:
        out["args"] = ld.template_object(raw["args"], f"{ptr}/args", "args")


_BODY_KINDS: Final = (
    NodeKind.HTTP,
    NodeKind.FUNCTION,
    NodeKind.MAP,
    NodeKind.COMPOSITE,
    NodeKind.AGENT,
    NodeKind.TIMER,
)


def _map(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    over = _required(ld, raw, "over", ptr, what)
    out["over"] = over if over is INVALID else ld.expr(over, f"{ptr}/over", "map source")
    body = _required(ld, raw, "body", ptr, what)
    if body is not INVALID:
        owner = raw.get("id") if isinstance(raw.get("id"), str) else "?"
        node = ld.node(body, f"{ptr}/body", body_of=owner)
        if node is not None and node.KIND not in _BODY_KINDS:
            kinds = ", ".join(k.value for k in _BODY_KINDS)
            node = None
            ld.error(ec.INVALID_VALUE, f"a map body must be one of {kinds}", f"{ptr}/body/type")
        body = node if node is not None else INVALID
    out["body"] = body
    if "concurrency" in raw:
        out["concurrency"] = ld.integer(
            raw["concurrency"], f"{ptr}/concurrency", "concurrency", 1, 10_000
        )


def _join(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    mode = ld.enum(raw["mode"], f"{ptr}/mode", "join mode", JoinMode) if "mode" in raw else None
    n = ld.integer(raw["n"], f"{ptr}/n", "n", 1, 100_000) if "n" in raw else None
    if mode is None:
        mode = JoinMode.N_OF_M if n is not None else JoinMode.ALL
    if mode is JoinMode.N_OF_M and n is None:
        n = ld.error(ec.MISSING_FIELD, f'{what} joins "n_of_m" and needs "n"', ptr)
    elif mode in (JoinMode.ALL, JoinMode.ANY) and n is not None:
        n = ld.error(
            ec.INVALID_VALUE, f'"n" only applies to mode "n_of_m", not "{mode.value}"', f"{ptr}/n"
        )
    out["mode"] = mode
    if n is not None:
        out["n"] = n


def _condition(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    expr = _required(ld, raw, "expr", ptr, what)
    out["expr"] = expr if expr is INVALID else ld.expr(expr, f"{ptr}/expr", "condition")


def _composite(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    sub = _required(ld, raw, "workflow", ptr, what)
    if sub is not INVALID:
        wf = ld.workflow(sub, f"{ptr}/workflow", default_name="sub")
        sub = wf if wf is not None else INVALID
    out["workflow"] = sub
    if "args" in raw:
        out["args"] = ld.template_object(raw["args"], f"{ptr}/args", "args")


def _agent(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    model = _required(ld, raw, "model", ptr, what)
    out["model"] = model if model is INVALID else ld.string(model, f"{ptr}/model", "model")
    prompt = _required(ld, raw, "prompt", ptr, what)
    out["prompt"] = prompt if prompt is INVALID else ld.template(prompt, f"{ptr}/prompt", "prompt")
    if "provider" in raw:
        prov = ld.string(raw["provider"], f"{ptr}/provider", "provider")
        if isinstance(prov, str) and prov not in PROVIDERS:
            prov = ld.error(
                ec.INVALID_VALUE,
                f'unknown provider "{prov}"; use one of {", ".join(PROVIDERS)}',
                f"{ptr}/provider",
                *did_you_mean(prov, PROVIDERS),
            )
        out["provider"] = prov
    if "system" in raw:
        out["system"] = ld.template(raw["system"], f"{ptr}/system", "system prompt")
    if "tools" in raw:
        out["tools"] = ld.string_list(raw["tools"], f"{ptr}/tools", "tools")
    if "output_schema" in raw:
        schema = raw["output_schema"]
        if isinstance(schema, dict):
            out["output_schema"] = ld.plain_json(schema, f"{ptr}/output_schema", "output_schema")
        else:
            out["output_schema"] = ld.wrong_type(
                "output_schema", "a JSON Schema object", schema, f"{ptr}/output_schema"
            )
    if "may_patch" in raw:
        out["may_patch"] = ld.boolean(raw["may_patch"], f"{ptr}/may_patch", "may_patch")
    if "spawn_budget" in raw:
        out["spawn_budget"] = ld.integer(
            raw["spawn_budget"], f"{ptr}/spawn_budget", "spawn_budget", 0, 1000
        )
    if "max_tokens" in raw:
        out["max_tokens"] = ld.integer(
            raw["max_tokens"], f"{ptr}/max_tokens", "max_tokens", 1, 1_000_000
        )
    if "temperature" in raw:
        out["temperature"] = ld.number(
            raw["temperature"], f"{ptr}/temperature", "temperature", 0.0, 2.0
        )


def _approval(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    approvers = _required(ld, raw, "approvers", ptr, what)
    if approvers is not INVALID:
        approvers = ld.string_list(approvers, f"{ptr}/approvers", "approvers", nonempty=True)
    out["approvers"] = approvers
    if "escalate" in raw:
        out["escalate"] = ld.string_list(raw["escalate"], f"{ptr}/escalate", "escalate")
        if out["escalate"] and "timeout" not in raw:
            ld.error(ec.MISSING_FIELD, f'{what} escalates, so it needs a "timeout" per level', ptr)
            out["escalate"] = INVALID
    if "on_timeout" in raw:
        out["on_timeout"] = ld.enum(raw["on_timeout"], f"{ptr}/on_timeout", "on_timeout", OnTimeout)
    if "message" in raw:
        out["message"] = ld.template(raw["message"], f"{ptr}/message", "message")


def _timer(ld: Loader, raw: dict[str, Any], ptr: str, what: str, out: dict[str, Any]) -> None:
    if ("duration" in raw) == ("until" in raw):
        out["duration_ms"] = ld.error(
            ec.MISSING_FIELD, f'{what} needs exactly one of "duration" or "until"', ptr
        )
        return
    if "duration" in raw:
        out["duration_ms"] = ld.duration(raw["duration"], f"{ptr}/duration", "duration")
    else:
        out["until"] = ld.template(raw["until"], f"{ptr}/until", "until")


_BUILDERS: Final[dict[NodeKind, Builder]] = {
    NodeKind.HTTP: _http,
    NodeKind.FUNCTION: _function,
    NodeKind.MAP: _map,
    NodeKind.JOIN: _join,
    NodeKind.CONDITION: _condition,
    NodeKind.COMPOSITE: _composite,
    NodeKind.AGENT: _agent,
    NodeKind.APPROVAL: _approval,
    NodeKind.TIMER: _timer,
}
_CLASSES: Final[dict[NodeKind, type[Node]]] = {
    NodeKind.HTTP: HttpNode,
    NodeKind.FUNCTION: FunctionNode,
    NodeKind.MAP: MapNode,
    NodeKind.JOIN: JoinNode,
    NodeKind.CONDITION: ConditionNode,
    NodeKind.COMPOSITE: CompositeNode,
    NodeKind.AGENT: AgentNode,
    NodeKind.APPROVAL: ApprovalNode,
    NodeKind.TIMER: TimerNode,
}
_EFFECT_ORDER: Final = {Effect.PURE: 0, Effect.IDEMPOTENT: 1, Effect.EFFECTFUL: 2}


def strongest_effect(effects: list[Effect]) -> Effect:
    return max(effects, key=_EFFECT_ORDER.__getitem__, default=Effect.PURE)


def effect_at_least(effect: Effect, floor: Effect) -> bool:
    return _EFFECT_ORDER[effect] >= _EFFECT_ORDER[floor]


def _default_effect(kind: NodeKind, fields: dict[str, Any]) -> Effect | None:
    """The effect a node has when it declares none; None where it must be declared."""
    if kind in (NodeKind.JOIN, NodeKind.CONDITION, NodeKind.TIMER):
        return Effect.PURE
    if kind is NodeKind.APPROVAL:
        return Effect.EFFECTFUL
    if kind is NodeKind.AGENT:
        return Effect.IDEMPOTENT
    if kind is NodeKind.MAP:
        body = fields.get("body")
        return body.effect if isinstance(body, Node) else Effect.EFFECTFUL
    if kind is NodeKind.COMPOSITE:
        sub = fields.get("workflow")
        return (
            strongest_effect([n.effect for n in sub.nodes])
            if isinstance(sub, Workflow)
            else Effect.EFFECTFUL
        )
    return None


def _field_locs(
    smap: SourceMap, raw: dict[str, Any], ptr: str, loc: Loc | None
) -> FrozenDict[str, Loc]:
    if not smap.per_field or isinstance(loc, JsonLoc):
        return EMPTY  # derived on demand from the node's pointer
    out: dict[str, Loc] = {}
    for key in raw:
        floc = smap.loc(f"{ptr}/{_esc(key)}")
        if floc is not None and floc != loc:
            out[key] = floc
    return FrozenDict(out)


def _esc(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def load_document(
    doc: Any, smap: SourceMap, diags: list[Diagnostic], default_name: str = "main"
) -> Workflow | None:
    """Convert a workflow document to IR; every problem is appended to `diags`."""
    return Loader(smap, diags).workflow(doc, "", default_name)


def load_partial(
    doc: Any, smap: SourceMap, diags: list[Diagnostic], default_name: str = "main"
) -> tuple[Workflow | None, frozenset[str]]:
    """Like `load_document`, also returning the ids of nodes dropped for schema errors.

    With errors, the workflow holds only the valid nodes; the caller can still verify it
    (ignoring the dropped ids) so that every problem is reported in one go.
    """
    loader = Loader(smap, diags)
    wf = loader.workflow(doc, "", default_name)
    return wf, frozenset(loader.dropped)


def load_node(doc: dict[str, Any], where: str = "<rewrite>") -> Node:
    """A node from its document; ValueError when it does not fit the schema.

    For passes, which build node documents themselves: a failure here is a pass bug, and
    the pass manager reports it with a reproducer.
    """
    diags: list[Diagnostic] = []
    node = Loader(JsonSourceMap(where), diags).node(doc, "")
    if node is None or any(d.is_error for d in diags):
        raise ValueError("; ".join(d.message for d in diags if d.is_error) or "invalid node")
    return node
