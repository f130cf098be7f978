"""Pass plugins compiled to WebAssembly (aobc.wasm_passes), shipped ready-built.

`prune_dead.wasm` and `cse.wasm` are aobc's `prune-dead` and `cse` rewritten as plugins
(sources in `src/`, built by `build.py`). They are registered through the `aobc.passes` entry
points as `wasm-prune-dead` and `wasm-cse`, like any third-party plugin; the classes below
are made from their manifests on first use.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from aobc.passes.wasm import WasmPass

#: Entry-point class name -> (module file, pass name).
PACKAGED: Final = {
    "WasmPruneDeadPass": ("prune_dead.wasm", "wasm-prune-dead"),
    "WasmCsePass": ("cse.wasm", "wasm-cse"),
}


def packaged(file: str) -> Path:
    """The path of a packaged module."""
    return Path(str(files(__name__).joinpath(file)))


def __getattr__(attr: str) -> type[WasmPass]:
    if attr not in PACKAGED:
        raise AttributeError(attr)
    from aobc.passes.wasm import plugin_pass_class

    file, name = PACKAGED[attr]
    return plugin_pass_class(packaged(file), name)
