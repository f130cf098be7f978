"""Build the packaged plugins from `src/`, or check that the committed ones rebuild exactly.

    python -m aobc.wasm_passes.build            # rebuild wasm_passes/*.wasm in place
    python -m aobc.wasm_passes.build --check    # rebuild elsewhere, compare byte for byte

The .wasm files are committed and shipped, so installing aobc needs no toolchain; `--check`
(`make wasm-check`, and a test) proves they are what the sources say. It needs the
`wasm-build` extra (the `ziglang` wheel, pinned: another Zig release may emit other bytes).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
from pathlib import Path
from typing import Final

from aobc.kit.toolchain import ZIG_VERSION, ToolchainError, compile_wasm, zig_version

HERE: Final = Path(__file__).resolve().parent
#: Packaged plugin -> its source, relative to this directory.
SOURCES: Final = {"prune_dead": "src/prune_dead.zig", "cse": "src/cse.zig"}


def build(out_dir: Path) -> dict[str, Path]:
    """Build every packaged plugin into `out_dir`; their paths by name."""
    built = {}
    for name, src in SOURCES.items():
        path = out_dir / f"{name}.wasm"
        compile_wasm(HERE / src, path)
        built[name] = path
    return built


def check() -> list[str]:
    """Rebuild into a temporary directory; the names whose bytes differ from the committed."""
    with tempfile.TemporaryDirectory(prefix="aobc-wasm-check-") as tmp:
        built = build(Path(tmp))
        return [
            name
            for name, path in built.items()
            if not (HERE / f"{name}.wasm").is_file()
            or (HERE / f"{name}.wasm").read_bytes() != path.read_bytes()
        ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m aobc.wasm_passes.build")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args(argv)
    try:
        version = zig_version()
        if version != ZIG_VERSION:
            print(f"note: zig {version}; the committed plugins are built with {ZIG_VERSION}")
        if args.check:
            differ = check()
            for name in differ:
                print(
                    f"{name}.wasm does not match what src/ builds; run make wasm", file=sys.stderr
                )
            if not differ:
                print(f"{len(SOURCES)} plugins rebuild byte for byte (zig {version})")
            return 1 if differ else 0
        for path in build(HERE).values():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
            print(
                f"built {path.relative_to(HERE.parent)} ({path.stat().st_size:,} bytes, {digest})"
            )
        return 0
    except ToolchainError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
