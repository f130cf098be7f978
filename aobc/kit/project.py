"""A pass project: the directory `aobc pass new` makes, described by its `aobc-pass.toml`.

    [pass]
    name = "my-pass"              # the pass name pipelines use
    lang = "zig"                  # python | zig | c
    source = "src/my_pass.zig"    # zig, c: the file to compile; python: the import root
    output = "my_pass.wasm"       # zig, c: the module built
    module = "my_pass:MyPass"     # python: the pass class

    [test]
    cases = "tests"               # golden cases (*.test)
    seeds = 20                    # generated workflows for translation validation
    nodes = 12                    # and their size

Commands find it from the current directory upwards, as git finds its repository.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import AobcError
from aobc.source import JsonLoc

FILE: Final = "aobc-pass.toml"
LANGS: Final = ("python", "zig", "c")


@dataclass(frozen=True, slots=True)
class PassProject:
    root: Path
    name: str
    lang: str
    source: Path
    output: Path | None = None
    module: str | None = None
    cases: Path | None = None
    seeds: int = 20
    nodes: int = 12

    @property
    def wasm(self) -> bool:
        return self.lang in ("zig", "c")


def _fail(path: Path, message: str, pointer: str = "") -> AobcError:
    return AobcError(Diagnostic.error(ec.USAGE, message, JsonLoc(str(path), pointer)))


def find_project(start: Path) -> Path:
    """The nearest directory at or above `start` holding an aobc-pass.toml."""
    for d in (start.resolve(), *start.resolve().parents):
        if (d / FILE).is_file():
            return d
    raise AobcError(
        Diagnostic.error(
            ec.USAGE,
            f"no {FILE} in {start} or above it; make a pass with: aobc pass new NAME --lang zig",
        )
    )


def load_project(start: Path) -> PassProject:
    root = find_project(start)
    path = root / FILE
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise _fail(path, f"cannot read it: {err}") from None
    p = raw.get("pass")
    if not isinstance(p, dict):
        raise _fail(path, "it needs a [pass] table", "/pass")
    for key in ("name", "lang", "source"):
        if not isinstance(p.get(key), str):
            raise _fail(path, f'[pass] needs {key} = "..."', f"/pass/{key}")
    if p["lang"] not in LANGS:
        raise _fail(path, f"lang must be one of {', '.join(LANGS)}", "/pass/lang")
    test = raw.get("test", {})
    if p["lang"] == "python" and not isinstance(p.get("module"), str):
        raise _fail(path, '[pass] needs module = "package:Class"', "/pass/module")
    if p["lang"] != "python" and not isinstance(p.get("output"), str):
        raise _fail(path, '[pass] needs output = "name.wasm"', "/pass/output")
    return PassProject(
        root=root,
        name=p["name"],
        lang=p["lang"],
        source=root / p["source"],
        output=root / p["output"] if isinstance(p.get("output"), str) else None,
        module=p.get("module"),
        cases=root / str(test.get("cases", "tests")),
        seeds=int(test.get("seeds", 20)),
        nodes=int(test.get("nodes", 12)),
    )
