"""The WebAssembly pass-plugin host: ABI "aobc-pass-v1" on wasmtime (see wasm_passes/ABI.md).

`load_plugin(path)` compiles a module once (cached on disk), checks its exports and reads its
manifest; `Plugin.call(input, limits)` runs it in a fresh store under fuel, wall-time, memory
and output limits, and turns every failure into a `PluginFailure` with a diagnostic code.
`aobc.passes.wasm.WasmPass` makes a plugin an ordinary pass of the pipeline.
"""

from __future__ import annotations

from aobc.wasm.abi import ABI_NAME, ABI_VERSION, Manifest, PluginFailure
from aobc.wasm.host import Limits, Plugin, load_plugin

__all__ = [
    "ABI_NAME",
    "ABI_VERSION",
    "Limits",
    "Manifest",
    "Plugin",
    "PluginFailure",
    "load_plugin",
]
