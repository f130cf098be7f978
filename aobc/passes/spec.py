"""Pipeline strings, MLIR style: `verify,prune-dead{aggressive=true},fixpoint(cse,prune-dead)`.

    pipeline := item ("," item)*
    item     := NAME options?                       a pass
              | "fixpoint" options? "(" pipeline ")" repeat until nothing changes
    options  := "{" NAME "=" VALUE ("," NAME "=" VALUE)* "}"

A parsed pipeline prints back exactly as written (options in their given order), so a
reproducer or a log line can be pasted back on the command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.errors import PassError
from aobc.source import Span

_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_VALUE: Final = re.compile(r"[^,{}()=\s]+")
FIXPOINT: Final = "fixpoint"


@dataclass(frozen=True, slots=True)
class PassSpec:
    name: str
    options: tuple[tuple[str, str], ...] = ()
    col: int = 0

    def __str__(self) -> str:
        return self.name + _options(self.options)


@dataclass(frozen=True, slots=True)
class FixpointSpec:
    items: tuple[PassSpec | FixpointSpec, ...]
    options: tuple[tuple[str, str], ...] = ()
    col: int = 0

    def __str__(self) -> str:
        return f"{FIXPOINT}{_options(self.options)}({','.join(str(i) for i in self.items)})"


Item = PassSpec | FixpointSpec


def _options(opts: tuple[tuple[str, str], ...]) -> str:
    return "{" + ",".join(f"{k}={v}" for k, v in opts) + "}" if opts else ""


def format_pipeline(items: tuple[Item, ...]) -> str:
    return ",".join(str(i) for i in items)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, message: str) -> PassError:
        col = self.pos + 1
        return PassError(
            Diagnostic.error(
                ec.PIPELINE_SYNTAX,
                f"{message} (column {col})",
                Span("<pipeline>", 1, col, 1, col + 1),
            )
        )

    def skip_ws(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip_ws()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, ch: str) -> None:
        if self.peek() != ch:
            found = repr(self.peek()) if self.peek() else "the end"
            raise self.fail(f'expected "{ch}", found {found}')
        self.pos += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        self.skip_ws()
        m = pattern.match(self.text, self.pos)
        if m is None:
            found = repr(self.text[self.pos]) if self.pos < len(self.text) else "the end"
            raise self.fail(f"expected {what}, found {found}")
        self.pos = m.end()
        return m.group(0)

    def pipeline(self) -> tuple[Item, ...]:
        items = [self.item()]
        while self.peek() == ",":
            self.pos += 1
            items.append(self.item())
        return tuple(items)

    def item(self) -> Item:
        self.skip_ws()
        col = self.pos + 1
        name = self.match(_NAME, "a pass name")
        opts = self.options() if self.peek() == "{" else ()
        if name == FIXPOINT:
            self.expect("(")
            items = self.pipeline()
            self.expect(")")
            return FixpointSpec(items, opts, col)
        return PassSpec(name, opts, col)

    def options(self) -> tuple[tuple[str, str], ...]:
        self.expect("{")
        out = []
        seen = set()
        while True:
            key = self.match(_NAME, "an option name")
            if key in seen:
                raise self.fail(f'option "{key}" is given twice')
            seen.add(key)
            self.expect("=")
            out.append((key, self.match(_VALUE, "an option value")))
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect("}")
            return tuple(out)


def parse_pipeline(text: str) -> tuple[Item, ...]:
    """Parse a pipeline string; raises PassError (pipeline-syntax) with the column."""
    p = _Parser(text)
    if not text.strip():
        raise p.fail("the pipeline is empty")
    items = p.pipeline()
    if p.peek():
        raise p.fail(f"unexpected {p.peek()!r}")
    return items


def walk(items: tuple[Item, ...]) -> list[PassSpec]:
    """Every pass spec, inside fixpoint groups too."""
    out: list[PassSpec] = []
    for i in items:
        if isinstance(i, FixpointSpec):
            out += walk(i.items)
        else:
            out.append(i)
    return out
