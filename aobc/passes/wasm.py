"""`wasm{path=FILE,...}`: a WebAssembly pass plugin as an ordinary pass of the pipeline.

    aobc compile flow.aob --passes 'verify,wasm{path=my_pass.wasm,depth=2},verify'
    aobc compile flow.aob --pass-plugin my_pass.wasm --passes 'verify,my-pass{depth=2},verify'

Each plugin gets a pass class of its own, made from its manifest: the manifest's name is the
pass name, and its options schema becomes typed dataclass fields, so the pipeline parses and
checks a plugin's options like any pass's. The host's options (`fuel`, `timeout-ms`,
`memory-mb`, `output-kb`, `on-error`) override the policy's `[plugins]` defaults.

A run projects the workflow onto the fields the plugin reads, calls it in a fresh sandbox,
and checks its patch with the validator every agent and human patch goes through
(`Overlay.apply`: apply, load, verify, budgets); the plugin may also not remove or weaken an
effectful node that can run. Any failure is a `wasm-*` diagnostic naming the plugin, an
error or, with `on-error=warn`, a warning after which the compile goes on without the patch.
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Final, Literal

import jsonschema

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import PassError, PatchError
from aobc.frontend.overlay import Overlay
from aobc.frontend.patchfile import Patch
from aobc.ir import Effect, Graph, Workflow
from aobc.ir.reach import never_running
from aobc.passes.base import Pass, PassContext
from aobc.source import Loc

if typing.TYPE_CHECKING:
    from aobc.wasm import Limits, Plugin, PluginFailure

#: Dataclass fields the host reads; every other field is one of the plugin's options.
HOST_FIELDS: Final = ("path", "fuel", "timeout_ms", "memory_mb", "output_kb", "on_error")
_TYPES: Final[dict[str, type]] = {"boolean": bool, "integer": int, "number": float, "string": str}


@dataclass(frozen=True, kw_only=True)
class WasmPass(Pass):
    """Runs a WebAssembly pass plugin (ABI aobc-pass-v1) in a sandbox."""

    name: ClassVar[str] = "wasm"
    summary: ClassVar[str] = "run a WebAssembly pass plugin (ABI aobc-pass-v1), sandboxed"

    path: str = field(default="", metadata={"help": "the plugin module (.wasm, or WAT text)"})
    fuel: int = field(default=0, metadata={"help": "fuel per call (0: the policy's)"})
    timeout_ms: int = field(default=0, metadata={"help": "wall time per call (0: the policy's)"})
    memory_mb: int = field(default=0, metadata={"help": "memory cap (0: the policy's)"})
    output_kb: int = field(default=0, metadata={"help": "output size cap (0: the policy's)"})
    on_error: Literal["policy", "fail", "warn"] = field(
        default="policy", metadata={"help": "fail the compile, or warn and go on without it"}
    )

    def __post_init__(self) -> None:
        schema = self.manifest_options()
        if schema is not None:
            try:
                jsonschema.validate(self.plugin_options(), schema)
            except jsonschema.ValidationError as err:
                raise ValueError(f"its options do not fit its schema: {err.message}") from None

    @classmethod
    def specialize(cls, options: Mapping[str, str]) -> type[Pass]:
        """The pass class of the plugin `path=` names (the pipeline calls this first)."""
        if cls is not WasmPass:
            return cls
        path = options.get("path")
        if not path:
            raise PassError(
                Diagnostic.error(ec.PASS_OPTION, 'pass "wasm" needs the plugin: wasm{path=FILE}')
            )
        return plugin_pass_class(path)

    @classmethod
    def manifest_options(cls) -> dict[str, Any] | None:
        return None

    def plugin_options(self) -> dict[str, Any]:
        """The options the plugin receives, by the names its schema gives them."""
        return {
            f.name.replace("_", "-"): getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in HOST_FIELDS
        }

    def limits(self, ctx: PassContext) -> Limits:
        from aobc.wasm import Limits

        p = ctx.policy.plugins
        return Limits(
            fuel=self.fuel or p.fuel,
            timeout_ms=self.timeout_ms or p.timeout_ms,
            memory_mb=self.memory_mb or p.memory_mb,
            output_kb=self.output_kb or p.output_kb,
        )

    def run(self, wf: Workflow, ctx: PassContext) -> Workflow:
        from aobc.wasm import PluginFailure, load_plugin

        if not self.path:
            ctx.diagnostics.emit(
                Diagnostic.error(ec.PASS_OPTION, 'pass "wasm" needs the plugin: wasm{path=FILE}')
            )
            return wf
        try:
            plugin = load_plugin(self.path)
            return self._run(plugin, wf, ctx)
        except PluginFailure as failure:
            self._report(ctx, failure)
            return wf

    def _run(self, plugin: Plugin, wf: Workflow, ctx: PassContext) -> Workflow:
        from aobc.wasm import PluginFailure
        from aobc.wasm.output import OutputError, encode_input, parse_output, to_remark
        from aobc.wasm.projection import project

        data = encode_input(self.plugin_options(), project(wf, plugin.manifest.reads))
        raw = plugin.call(data, self.limits(ctx))
        try:
            out = parse_output(raw, f"<plugin {self.name}>")
        except OutputError as err:
            raise PluginFailure(ec.WASM_OUTPUT, err.message, err.notes) from None
        after = self._validated(wf, out.ops, ctx) if out.ops else wf
        ctx.rewriter.ops.extend(out.ops)
        locs: dict[str, Loc] = {str(n.loc): n.loc for n in wf.nodes if n.loc is not None}
        ctx.remarks.extend(to_remark(r, self.name, locs) for r in out.remarks)
        for stat, n in out.stats.items():
            ctx.count(stat, n)
        return after

    def _validated(self, wf: Workflow, ops: Any, ctx: PassContext) -> Workflow:
        """The plugin's patch applied by the validator all patches go through."""
        from aobc.wasm import PluginFailure

        patch = Patch(ops=tuple(ops), author_kind="optimizer", author=self.name)
        try:
            after = Overlay(wf, ctx.policy).apply(patch).workflow
        except PatchError as err:
            raise PluginFailure(
                ec.WASM_PATCH, "its patch was refused", tuple(err.diagnostics)
            ) from None
        _check_effects(wf, after)
        return after

    def _report(self, ctx: PassContext, failure: PluginFailure) -> None:
        mode = self.on_error if self.on_error != "policy" else ctx.policy.plugins.on_error
        message = f'pass plugin "{self.name}" ({self.path}): {failure.message}'
        if mode == "warn":
            note = Diagnostic.note(
                "the compile went on without this plugin's patch (on-error=warn)"
            )
            ctx.diagnostics.emit(
                Diagnostic.warning(failure.code, message, None, *failure.notes, note)
            )
        else:
            note = Diagnostic.note(
                "to go on without the plugin instead, set on-error=warn on the pass "
                'or on_error = "warn" under [plugins] in the policy'
            )
            ctx.diagnostics.emit(
                Diagnostic.error(failure.code, message, None, *failure.notes, note)
            )


def _check_effects(before: Workflow, after: Workflow) -> None:
    """Refuse a patch that removes, or declares weaker, an effectful node that can run.

    The verifier cannot see this (an agent may remove a node; an optimizer may not remove an
    effect), and removing a node that can never run removes no effect.
    """
    from aobc.wasm import PluginFailure

    graph = Graph.of(before)
    dead = never_running(graph) if graph.topo_order() is not None else {}
    kept = {n.id: n for n in after.nodes}
    for n in before.nodes:
        if n.effect is not Effect.EFFECTFUL or n.id in dead:
            continue
        now = kept.get(n.id)
        if now is None:
            raise PluginFailure(
                ec.WASM_EFFECT, f'its patch removes effectful node "{n.id}", which can run'
            )
        if now.effect is not Effect.EFFECTFUL:
            raise PluginFailure(
                ec.WASM_EFFECT,
                f'its patch declares effectful node "{n.id}" {now.effect.value}',
            )


_CLASSES: dict[tuple[str, str, str | None], type[WasmPass]] = {}
_CLASSES_LOCK: Final = threading.Lock()


def _option_type(prop: Mapping[str, Any]) -> Any:
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, str) for v in enum):
        return Literal[tuple(enum)]
    return _TYPES.get(str(prop.get("type")), str)


def plugin_pass_class(path: str | Path, name: str | None = None) -> type[WasmPass]:
    """The pass class of one plugin; raises PassError naming it when it cannot load.

    `name` overrides the manifest's pass name (as an entry point's name does).
    """
    from aobc.wasm import PluginFailure, load_plugin

    try:
        plugin = load_plugin(path)
    except PluginFailure as f:
        raise PassError(
            Diagnostic.error(f.code, f'pass plugin "{path}": {f.message}', None, *f.notes)
        ) from None
    key = (str(Path(path)), plugin.sha256, name)
    with _CLASSES_LOCK:
        hit = _CLASSES.get(key)
    if hit is not None:
        return hit
    manifest = plugin.manifest
    fields: list[tuple[str, Any, Any]] = [("path", str, field(default=str(path)))]
    for option, prop in manifest.properties.items():
        default = prop["default"] if "default" in prop else dataclasses.MISSING
        help_text = str(prop.get("description", ""))
        fields.append(
            (
                option.replace("-", "_"),
                _option_type(prop),
                field(default=default, metadata={"help": help_text}),
            )
        )
    schema = manifest.options

    def manifest_options(cls: type[WasmPass]) -> dict[str, Any]:
        return schema

    pass_name = name or manifest.name
    cls = dataclasses.make_dataclass(
        "Wasm_" + pass_name.replace("-", "_"),
        fields,
        bases=(WasmPass,),
        frozen=True,
        kw_only=True,
        namespace={
            "name": pass_name,
            "summary": manifest.summary
            or f"WebAssembly pass plugin {manifest.name} {manifest.version}",
            "manifest_options": classmethod(manifest_options),
            "__module__": __name__,
        },
    )
    with _CLASSES_LOCK:
        _CLASSES.setdefault(key, cls)
        return _CLASSES[key]
