"""`aobc pass new NAME --lang python|zig|c`: a working pass project to start from.

The templates (aobc/kit/templates/LANG) hold a small pass that already works, its build file,
a golden test case and a README; Zig and C projects also get a copy of the SDK (the ABI glue
and helpers in aobc_pass.zig or aobc_pass.h) from aobc.wasm_passes, the same files the
packaged plugins are built with.
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.kit.project import LANGS

_NAME: Final = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
SDK: Final = {"zig": "aobc_pass.zig", "c": "aobc_pass.h"}


def names(name: str) -> dict[str, str]:
    """The spellings a template uses: kebab name, snake identifier, class name."""
    ident = name.replace("-", "_")
    cls = "".join(part.capitalize() for part in name.split("-"))
    cls += "" if cls.endswith("Pass") else "Pass"
    return {"name": name, "ident": ident, "Class": cls}


def _walk(node: Traversable, rel: str = "") -> list[tuple[str, Traversable]]:
    out: list[tuple[str, Traversable]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        path = f"{rel}/{child.name}" if rel else child.name
        if child.is_dir():
            out += _walk(child, path)
        elif child.name.endswith(".tmpl"):
            out.append((path.removesuffix(".tmpl"), child))
    return out


def _fail(message: str) -> AobcError:
    return AobcError(Diagnostic.error(ec.USAGE, message))


def new_pass(name: str, lang: str, parent: Path) -> Path:
    """Write a new pass project `parent/NAME`; its path. Refuses to overwrite anything."""
    if not _NAME.fullmatch(name):
        raise _fail(f'pass name "{name}" must be kebab-case: lowercase words joined by "-"')
    if lang not in LANGS:
        raise _fail(f"--lang must be one of {', '.join(LANGS)}")
    from aobc.passes.registry import available_passes

    if name in available_passes():
        raise _fail(f'"{name}" is already a registered pass; pick another name')
    root = parent / name
    if root.exists():
        raise _fail(f"{root} already exists")
    subst = names(name)
    templates = files("aobc.kit").joinpath("templates", lang)
    for rel, src in _walk(templates):
        text = src.read_text(encoding="utf-8")
        for key, value in subst.items():
            text = text.replace("{{" + key + "}}", value)
            rel = rel.replace(f"__{key}__", value)
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    if lang in SDK:
        sdk = files("aobc.wasm_passes").joinpath("src", SDK[lang])
        (root / "src" / SDK[lang]).write_text(sdk.read_text(encoding="utf-8"), encoding="utf-8")
    return root
