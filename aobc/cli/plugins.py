"""`--pass-plugin FILE`, on every command that takes `--passes`.

The plugin's manifest name becomes a pass name for that command only, as LLVM's
`-load-pass-plugin` does: `aobc compile w.aob --pass-plugin p.wasm --passes 'verify,p,verify'`.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import PassError


def takes_passes(p: argparse.ArgumentParser) -> bool:
    return any("--passes" in a.option_strings for a in p._actions)


def add_plugin_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--pass-plugin",
        action="append",
        default=[],
        metavar="FILE",
        help="load a WebAssembly pass plugin; its name can then be used in --passes (repeatable)",
    )


@contextlib.contextmanager
def plugin_scope(args: argparse.Namespace) -> Iterator[None]:
    """Register the `--pass-plugin` files for the duration of the command."""
    files: list[str] = getattr(args, "pass_plugin", None) or []
    if not files:
        yield
        return
    from aobc.passes.registry import Target, loaded_passes
    from aobc.passes.wasm import plugin_pass_class

    table: dict[str, Target] = {}
    for f in files:
        cls = plugin_pass_class(f)
        if table.get(cls.name, cls) is not cls:
            raise PassError(
                Diagnostic.error(
                    ec.DUPLICATE_PASS, f'two --pass-plugin files define pass "{cls.name}"'
                )
            )
        table[cls.name] = cls
    with loaded_passes(table):
        yield
