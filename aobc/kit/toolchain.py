"""Building plugins: Zig or C to a wasm32 module, with the `ziglang` wheel from PyPI.

The toolchain is Zig's (`python -m ziglang`), which compiles both languages for
`wasm32-freestanding` with nothing else installed. It is an optional dependency (the
`wasm-build` extra): only people who build plugins need it, never people who run them.

Builds are reproducible: the same source and Zig version give the same bytes. The compiler
runs in the source's directory on relative paths, with a private cache for the sources, and
debug information is stripped, so neither paths nor times reach the module.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

#: The Zig release the packaged plugins are built (and checked) with.
ZIG_VERSION: Final = "0.17.0"
EXPORTS: Final = ("abi_version", "alloc", "run", "meta")


class ToolchainError(Exception):
    """The toolchain is missing or the compiler refused the source (message has its output)."""


def zig() -> list[str]:
    """The command that runs Zig, or ToolchainError saying how to get it."""
    if importlib.util.find_spec("ziglang") is None:
        raise ToolchainError(
            "building WebAssembly plugins needs the ziglang wheel: "
            "pip install 'aobc[wasm-build]' (or pip install ziglang==" + ZIG_VERSION + ")"
        )
    return [sys.executable, "-m", "ziglang"]


def zig_version() -> str:
    done = subprocess.run([*zig(), "version"], capture_output=True, text=True, check=False)
    return done.stdout.strip()


def _global_cache() -> Path:
    """Zig's cache of its own libraries (compiler-rt): kept, so builds after the first are
    fast; it holds no trace of the sources, so it cannot change what a build emits."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aobc" / "zig"


#: ReleaseSafe keeps Zig's bounds and overflow checks: a bug in a plugin then traps (a
#: `wasm-trap` diagnostic) instead of quietly writing a wrong patch. It also ran the packaged
#: passes faster than ReleaseSmall did, for a module about twice as large.
RELEASE: Final = "ReleaseSafe"


def compile_wasm(source: Path, output: Path, *, release: str = RELEASE) -> None:
    """Compile one Zig or C file (with what it includes, from its directory) to `output`."""
    source = source.resolve()
    if source.suffix not in (".zig", ".c"):
        raise ToolchainError(f"{source.name}: a plugin source is a .zig or a .c file")
    with tempfile.TemporaryDirectory(prefix="aobc-zig-") as tmp:
        built = Path(tmp) / "out.wasm"
        cmd = [
            *zig(),
            "build-exe",
            source.name,
            "-target",
            "wasm32-freestanding",
            "-O",
            release,
            "-fno-entry",
            "-fstrip",
            # Zig's @export names a symbol the linker must still be told to export; C's
            # export_name attribute (aobc_pass.h) exports by itself.
            *(f"--export={name}" for name in EXPORTS if source.suffix == ".zig"),
            "--cache-dir",
            str(Path(tmp) / "cache"),
            "--global-cache-dir",
            str(_global_cache()),
            f"-femit-bin={built}",
        ]
        done = subprocess.run(cmd, cwd=source.parent, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise ToolchainError(f"zig could not build {source.name}:\n{done.stderr.strip()}")
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, output)
