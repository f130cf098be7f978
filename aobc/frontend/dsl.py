"""The DSL frontend: text to the workflow document, with a span for every pointer.

The text is parsed into located values, which are then assembled top-down into the same JSON
document a JSON author would write. The schema loader takes it from there, so the DSL and JSON
forms of a workflow give equal IR and identical diagnostics (located by span here).

`parse_dsl` parses with the hand-written parser in `aobc.frontend.dsl_parser`;
`parse_dsl_reference` parses with lark and the grammar itself (`_Builder` turns lark's tree
into the same located values). Both must give identical documents, source maps and syntax
diagnostics; tests compare them.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Any

from lark import Token, Tree, v_args
from lark.exceptions import UnexpectedInput, VisitError
from lark.tree import Meta

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.expr.ast import Attr, Expr, Index, Lit, Var, to_source
from aobc.expr.parse import ExprBuilder, ExprSyntaxError, decode_string, lark_error_message, number
from aobc.source import Loc, SourceFile, Span
from aobc.syntax import parser


@dataclass(slots=True)
class Located:
    """A value from the source and where it was written.

    `value` is a JSON scalar, a list of Located (arrays), a list of `Pair` (objects) or a
    `NodeSpec`; `assemble` turns it into plain JSON.
    """

    value: Any
    span: Span


@dataclass(slots=True)
class Pair:
    key: str
    value: Located
    span: Span


@dataclass(slots=True)
class NodeSpec:
    kind: str
    kind_span: Span
    positional: list[tuple[str, Located]]
    config: Located | None


@dataclass(slots=True)
class WorkflowSpec:
    name: str
    items: list[Any]
    span: Span


@dataclass(slots=True)
class DslSourceMap:
    """Spans by JSON pointer; a pointer with no span of its own takes its parent's."""

    spans: dict[str, Span] = field(default_factory=dict)
    per_field: bool = True

    def loc(self, pointer: str) -> Loc | None:
        ptr = pointer
        while True:
            span = self.spans.get(ptr)
            if span is not None or not ptr:
                return span
            ptr = ptr.rsplit("/", 1)[0]


class _ObjectMarker:
    """Marks Located values that hold object pairs (so `[]` objects and arrays differ)."""


_OBJECT = _ObjectMarker()


@v_args(inline=True)
class _Builder(ExprBuilder):
    def __init__(self, src: SourceFile) -> None:
        super().__init__()
        self.src = src

    def span(self, meta: Meta | Token) -> Span:
        return Span(
            self.src.name,
            meta.line or 1,
            meta.column or 1,
            meta.end_line or 1,
            meta.end_column or 1,
        )

    # --- values -------------------------------------------------------------------------

    @v_args(meta=True, inline=True)
    def string(self, meta: Meta, tok: Token) -> Located:
        return Located(decode_string(str(tok)), self.span(meta))

    @v_args(meta=True, inline=True)
    def int(self, meta: Meta, tok: Token) -> Located:
        return Located(number(str(tok)), self.span(meta))

    @v_args(meta=True, inline=True)
    def neg_int(self, meta: Meta, tok: Token) -> Located:
        return Located(number(str(tok), negative=True), self.span(meta))

    float = int
    neg_float = neg_int

    @v_args(meta=True, inline=True)
    def duration(self, meta: Meta, tok: Token) -> Located:
        return Located(str(tok), self.span(meta))

    symbol = duration

    @v_args(meta=True, inline=True)
    def true(self, meta: Meta) -> Located:
        return Located(True, self.span(meta))

    @v_args(meta=True, inline=True)
    def false(self, meta: Meta) -> Located:
        return Located(False, self.span(meta))

    @v_args(meta=True, inline=True)
    def null(self, meta: Meta) -> Located:
        return Located(None, self.span(meta))

    @v_args(meta=True, inline=True)
    def ref(self, meta: Meta, head: Token, *steps: Token) -> Located:
        e: Expr = Var(str(head))
        for tok in steps:
            if tok.type == "NAME":
                e = Attr(e, str(tok))
            elif tok.type == "INT":
                e = Index(e, Lit(int(tok)))
            else:
                e = Index(e, Lit(decode_string(str(tok))))
        return Located("${" + to_source(e) + "}", self.span(meta))

    @v_args(meta=True, inline=True)
    def array(self, meta: Meta, *items: Located | None) -> Located:
        return Located([i for i in items if i is not None], self.span(meta))

    @v_args(meta=True, inline=True)
    def pair(self, meta: Meta, key: Token, value: Located) -> Pair:
        k = decode_string(str(key)) if key.type == "STRING" else str(key)
        return Pair(k, value, self.span(meta))

    @v_args(meta=True, inline=True)
    def object(self, meta: Meta, *pairs: Pair) -> Located:
        return Located((_OBJECT, list(pairs)), self.span(meta))

    # --- nodes --------------------------------------------------------------------------

    @v_args(meta=True, inline=True)
    def node_spec(self, meta: Meta, spec: NodeSpec) -> Located:
        return Located(spec, self.span(meta))

    def _spec(
        self, meta: Meta, kind: str, positional: list[tuple[str, Located]], config: Located | None
    ) -> NodeSpec:
        kind_span = Span(self.src.name, meta.line, meta.column, meta.line, meta.column + len(kind))
        return NodeSpec(kind, kind_span, positional, config)

    @v_args(meta=True, inline=True)
    def http_spec(
        self, meta: Meta, method: Token, url: Located, config: Located | None
    ) -> NodeSpec:
        return self._spec(
            meta,
            "http",
            [("method", Located(str(method), self.span(method))), ("url", url)],
            config,
        )

    @v_args(meta=True, inline=True)
    def function_spec(self, meta: Meta, fn: Token, config: Located | None) -> NodeSpec:
        return self._spec(
            meta, "function", [("fn", Located(decode_string(str(fn)), self.span(fn)))], config
        )

    @v_args(meta=True, inline=True)
    def map_spec(self, meta: Meta, over: Expr, config: Located | None) -> NodeSpec:
        return self._spec(
            meta, "map", [("over", Located(to_source(over), self.span(meta)))], config
        )

    @v_args(meta=True, inline=True)
    def join_spec(self, meta: Meta, mode: Token, config: Located | None) -> NodeSpec:
        positional: list[tuple[str, Located]] = []
        if mode.type == "INT":
            positional.append(("n", Located(int(mode), self.span(mode))))
        elif str(mode) != "all":  # `all` is the default, and documents leave defaults out
            positional.append(("mode", Located(str(mode), self.span(mode))))
        return self._spec(meta, "join", positional, config)

    def join_mode(self, tok: Token) -> Token:
        return tok

    @v_args(meta=True, inline=True)
    def condition_spec(self, meta: Meta, expr: Expr, config: Located | None) -> NodeSpec:
        return self._spec(
            meta, "condition", [("expr", Located(to_source(expr), self.span(meta)))], config
        )

    @v_args(meta=True, inline=True)
    def composite_spec(self, meta: Meta, wf: WorkflowSpec, config: Located | None) -> NodeSpec:
        return self._spec(meta, "composite", [("workflow", Located(wf, wf.span))], config)

    @v_args(meta=True, inline=True)
    def agent_spec(self, meta: Meta, config: Located | None) -> NodeSpec:
        return self._spec(meta, "agent", [], config)

    @v_args(meta=True, inline=True)
    def approval_spec(self, meta: Meta, config: Located | None) -> NodeSpec:
        return self._spec(meta, "approval", [], config)

    @v_args(meta=True, inline=True)
    def timer_spec(
        self, meta: Meta, arg: tuple[str, Located] | None, config: Located | None
    ) -> NodeSpec:
        return self._spec(meta, "timer", [arg] if arg is not None else [], config)

    @v_args(meta=True, inline=True)
    def timer_for(self, meta: Meta, tok: Token) -> tuple[str, Located]:
        return ("duration", Located(str(tok), self.span(meta)))

    @v_args(meta=True, inline=True)
    def timer_until(self, meta: Meta, value: Located) -> tuple[str, Located]:
        return ("until", value)

    # --- workflow items -----------------------------------------------------------------

    @v_args(meta=True, inline=True)
    def input_decl(
        self, meta: Meta, name: Token, typ: Token, default: Located | None
    ) -> tuple[Any, ...]:
        return ("input", str(name), self.span(meta), str(typ), self.span(typ), default)

    @v_args(meta=True, inline=True)
    def output_decl(self, meta: Meta, name: Token, expr: Expr) -> tuple[Any, ...]:
        return ("output", str(name), self.span(meta), to_source(expr))

    @v_args(meta=True, inline=True)
    def setting(self, meta: Meta, name: Token, value: Located) -> tuple[Any, ...]:
        return ("setting", str(name), self.span(meta), value)

    @v_args(meta=True, inline=True)
    def node_decl(self, meta: Meta, name: Token, spec: Located) -> tuple[Any, ...]:
        return ("node", str(name), self.span(meta), self.span(name), spec.value)

    @v_args(meta=True, inline=True)
    def edge_chain(self, meta: Meta, *parts: Any) -> tuple[Any, ...]:
        # Node names become located strings; arrows stay (label, when) pairs.
        return (
            "edges",
            [Located(str(p), self.span(p)) if isinstance(p, Token) else p for p in parts],
        )

    def plain_arrow(self) -> tuple[str | None, str | None]:
        return (None, None)

    def labelled_arrow(self, label: str, when: Expr | None) -> tuple[str | None, str | None]:
        return (label, to_source(when) if when is not None else None)

    def guarded_arrow(self, when: Expr) -> tuple[str | None, str | None]:
        return (None, to_source(when))

    def label(self, tok: Token) -> str:
        return decode_string(str(tok)) if tok.type == "STRING" else str(tok)

    @v_args(meta=True, inline=True)
    def workflow(self, meta: Meta, name: Token, *items: Any) -> WorkflowSpec:
        return WorkflowSpec(str(name), list(items), self.span(meta))

    def file(self, wf: WorkflowSpec) -> WorkflowSpec:
        return wf


class _Assembler:
    """Located values to a JSON document, recording the span of every pointer.

    This runs on every DSL load, so the hot paths avoid repeated attribute lookups.
    """

    def __init__(self, diags: list[Diagnostic]) -> None:
        self.smap = DslSourceMap()
        self.spans = self.smap.spans
        self.diags = diags

    def value(self, v: Located, ptr: str) -> Any:
        spans = self.spans
        if ptr not in spans:
            spans[ptr] = v.span
        raw = v.value
        cls = type(raw)
        if cls is tuple and raw and raw[0] is _OBJECT:
            return self.pairs(raw[1], ptr)
        if cls is list:
            value = self.value
            return [value(item, f"{ptr}/{i}") for i, item in enumerate(raw)]
        if cls is NodeSpec:
            return self.node(raw, ptr, v.span)
        if cls is WorkflowSpec:
            return self.workflow(raw, ptr)
        return raw

    def pairs(
        self, pairs: list[Pair], ptr: str, into: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        out: dict[str, Any] = {} if into is None else into
        spans = self.spans
        value = self.value
        for p in pairs:
            key = p.key
            if key in out:
                self.diags.append(
                    Diagnostic.error(ec.INVALID_VALUE, f'"{key}" is given twice', p.span)
                )
                continue
            kptr = f"{ptr}/{_esc(key) if '~' in key or '/' in key else key}"
            spans[kptr] = p.span
            out[key] = value(p.value, kptr)
        return out

    def node(self, spec: NodeSpec, ptr: str, span: Span) -> dict[str, Any]:
        out: dict[str, Any] = {"type": spec.kind}
        spans = self.spans
        if ptr not in spans:
            spans[ptr] = span
        spans[f"{ptr}/type"] = spec.kind_span
        for key, v in spec.positional:
            out[key] = self.value(v, f"{ptr}/{key}")
        if spec.config is not None:
            self.pairs(spec.config.value[1], ptr, into=out)
        return out

    def workflow(self, wf: WorkflowSpec, ptr: str) -> dict[str, Any]:
        spans = self.spans
        spans[ptr] = wf.span
        doc: dict[str, Any] = {"name": wf.name}
        inputs: dict[str, Any] = {}
        outputs: dict[str, Any] = {}
        nodes: list[Any] = []
        edges: list[Any] = []
        for item in wf.items:
            tag = item[0]
            if tag == "node":
                _, name, span, name_span, spec = item
                nptr = f"{ptr}/nodes/{len(nodes)}"
                spans[nptr] = span
                node = self.node(spec, nptr, span)
                node = {"id": name, **node}
                spans[f"{nptr}/id"] = name_span
                nodes.append(node)
            elif tag == "edges":
                self._edges(item[1], ptr, edges)
            elif tag == "input":
                self._input(item, ptr, inputs)
            elif tag == "output":
                _, name, span, expr = item
                outputs[name] = expr
                spans[f"{ptr}/outputs/{name}"] = span
            else:
                _, name, span, value = item
                self._setting(doc, name, span, value, ptr)
        if inputs:
            doc["inputs"] = inputs
        if outputs:
            doc["outputs"] = outputs
        doc["nodes"] = nodes
        doc["edges"] = edges
        return doc

    def _input(self, item: tuple[Any, ...], ptr: str, inputs: dict[str, Any]) -> None:
        _, name, span, typ, typ_span, default = item
        iptr = f"{ptr}/inputs/{name}"
        if name in inputs:
            self.diags.append(
                Diagnostic.error(ec.DUPLICATE_ID, f'input "{name}" is declared twice', span)
            )
            return
        self.spans[iptr] = span
        self.spans[f"{iptr}/type"] = typ_span
        spec: dict[str, Any] = {"type": typ}
        if default is not None:
            spec["default"] = self.value(default, f"{iptr}/default")
        inputs[name] = spec

    def _setting(
        self, doc: dict[str, Any], name: str, span: Span, value: Located, ptr: str
    ) -> None:
        if name not in ("namespace", "description"):
            self.diags.append(
                Diagnostic.error(
                    ec.UNKNOWN_FIELD,
                    f'unknown workflow setting "{name}"; settings are namespace and description',
                    span,
                )
            )
            return
        self.spans[f"{ptr}/{name}"] = span
        doc[name] = self.value(value, f"{ptr}/{name}")

    def _edges(self, parts: list[Any], ptr: str, edges: list[Any]) -> None:
        spans = self.spans
        src: Located = parts[0]
        s = src.span
        for i in range(1, len(parts), 2):
            (label, when), dst = parts[i], parts[i + 1]
            eptr = f"{ptr}/edges/{len(edges)}"
            d = dst.span
            spans[eptr] = Span(s.file, s.line, s.col, d.end_line, d.end_col)
            spans[eptr + "/from"] = s
            spans[eptr + "/to"] = d
            edge: dict[str, Any] = {"from": src.value, "to": dst.value}
            if label is not None:
                edge["label"] = label
            if when is not None:
                edge["when"] = when
            edges.append(edge)
            src, s = dst, d


def _esc(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def parse_dsl(
    src: SourceFile, diags: list[Diagnostic]
) -> tuple[dict[str, Any] | None, DslSourceMap]:
    """The workflow document of a DSL source and its source map; problems go to `diags`."""
    from aobc.frontend.dsl_parser import DslSyntaxError, parse_file, syntax_diagnostic

    # Parsing allocates hundreds of thousands of objects and no reference cycles. With the
    # cyclic collector running, each collection walks the whole growing tree, which tripled
    # the time of a 10,000-node file; reference counting frees everything here anyway.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    before = len(diags)
    try:
        try:
            spec = parse_file(src)
            return _assemble(spec, diags)
        except DslSyntaxError as err:
            diags.append(syntax_diagnostic(err))
            return None, DslSourceMap()
        except RecursionError:
            # Nesting too deep for recursive descent: lark's LALR parser has no such limit.
            del diags[before:]
            return _parse_deep(src, diags)
    finally:
        if gc_was_enabled:
            gc.enable()


def parse_dsl_reference(
    src: SourceFile, diags: list[Diagnostic]
) -> tuple[dict[str, Any] | None, DslSourceMap]:
    """`parse_dsl` by lark and the grammar itself: slower, and the reference for tests."""
    spec = _parse_reference(src, diags)
    if spec is None:
        return None, DslSourceMap()
    return _assemble(spec, diags)


def _parse_reference(src: SourceFile, diags: list[Diagnostic]) -> WorkflowSpec | None:
    try:
        tree: Tree[Token] = parser().parse(src.text, start="file")
    except UnexpectedInput as err:
        diags.append(_syntax_diagnostic(src, err))
        return None
    try:
        spec: WorkflowSpec = _Builder(src).transform(tree)
    except VisitError as err:
        if isinstance(err.orig_exc, ExprSyntaxError):
            line = getattr(err.obj, "meta", None)
            loc = None
            if line is not None and not line.empty:
                loc = Span(src.name, line.line, line.column, line.end_line, line.end_column)
            diags.append(Diagnostic.error(ec.SYNTAX, err.orig_exc.message, loc))
            return None
        raise
    return spec


def _parse_deep(
    src: SourceFile, diags: list[Diagnostic]
) -> tuple[dict[str, Any] | None, DslSourceMap]:
    """Parse a deeply nested text with lark; a syntax error if even that recurses too deep."""
    before = len(diags)
    try:
        return parse_dsl_reference(src, diags)
    except (RecursionError, VisitError):  # lark's transformer wraps what its rules raise
        del diags[before:]
        diags.append(
            Diagnostic.error(
                ec.SYNTAX, "the input is nested too deeply", Span(src.name, 1, 1, 1, 2)
            )
        )
        return None, DslSourceMap()


def _assemble(
    spec: WorkflowSpec, diags: list[Diagnostic]
) -> tuple[dict[str, Any] | None, DslSourceMap]:
    asm = _Assembler(diags)
    doc = asm.workflow(spec, "")
    return doc, asm.smap


def _syntax_diagnostic(src: SourceFile, err: UnexpectedInput) -> Diagnostic:
    line = err.line if isinstance(err.line, int) and err.line > 0 else 1
    col = err.column if isinstance(err.column, int) and err.column > 0 else 1
    token = getattr(err, "token", None)
    width = len(str(token)) if token is not None and token.type != "$END" else 1
    if token is not None and token.type == "$END":
        line, col = src.position(len(src.text))
    span = Span(src.name, line, col, line, col + max(width, 1))
    return Diagnostic.error(ec.SYNTAX, lark_error_message(err), span)
