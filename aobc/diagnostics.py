"""Diagnostics: data first, text second.

A `Diagnostic` is a record with a severity, a stable code, a message and a location. A
`DiagnosticEngine` collects them for one compilation; renderers turn them into text (with the
source line and a caret, for DSL inputs) or JSON lines (`--output json`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from aobc.errorcodes import ErrorCode
from aobc.source import JsonLoc, Loc, SourceFile, Span


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One message about the input. `message` starts lower-case and has no final period."""

    severity: Severity
    code: ErrorCode | None
    message: str
    loc: Loc | None = None
    notes: tuple[Diagnostic, ...] = ()

    @staticmethod
    def error(
        code: ErrorCode, message: str, loc: Loc | None = None, *notes: Diagnostic
    ) -> Diagnostic:
        return Diagnostic(Severity.ERROR, code, message, loc, tuple(notes))

    @staticmethod
    def warning(
        code: ErrorCode, message: str, loc: Loc | None = None, *notes: Diagnostic
    ) -> Diagnostic:
        return Diagnostic(Severity.WARNING, code, message, loc, tuple(notes))

    @staticmethod
    def note(message: str, loc: Loc | None = None) -> Diagnostic:
        return Diagnostic(Severity.NOTE, None, message, loc)

    def with_notes(self, *notes: Diagnostic) -> Diagnostic:
        return Diagnostic(self.severity, self.code, self.message, self.loc, self.notes + notes)

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def to_json(self) -> dict[str, Any]:
        """The machine form: mypy's keys plus `pointer`."""
        loc = self.loc
        out: dict[str, Any] = {
            "file": loc.file if loc is not None else None,
            "line": None,
            "column": None,
            "end_line": None,
            "end_column": None,
            "pointer": None,
            "severity": self.severity.value,
            "code": self.code.name if self.code is not None else None,
            "message": self.message,
            "notes": [n.to_json() for n in self.notes],
        }
        if isinstance(loc, Span):
            out.update(line=loc.line, column=loc.col, end_line=loc.end_line, end_column=loc.end_col)
        elif isinstance(loc, JsonLoc):
            out.update(pointer=loc.pointer, line=loc.line, column=loc.col)
        return out


@dataclass
class DiagnosticEngine:
    """Collects diagnostics for one run of the compiler and knows the sources they point into."""

    diagnostics: list[Diagnostic] = field(default_factory=list)
    sources: dict[str, SourceFile] = field(default_factory=dict)

    def add_source(self, source: SourceFile) -> None:
        self.sources[source.name] = source

    def emit(self, diag: Diagnostic) -> None:
        self.diagnostics.append(diag)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        self.diagnostics.extend(diags)

    @property
    def has_errors(self) -> bool:
        return any(d.is_error for d in self.diagnostics)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.diagnostics)

    def __len__(self) -> int:
        return len(self.diagnostics)


def _location_prefix(loc: Loc | None) -> str:
    if loc is None:
        return ""
    if isinstance(loc, Span):
        return f"{loc.file}:{loc.line}:{loc.col}: "
    if loc.line is not None:
        return f"{loc.file}:{loc.line}:{loc.col}#{loc.pointer}: "
    return f"{loc.file}#{loc.pointer}: "


def _caret_lines(loc: Span, sources: dict[str, SourceFile]) -> list[str]:
    src = sources.get(loc.file)
    if src is None:
        return []
    text = src.line_text(loc.line)
    if not text.strip():
        return []
    start = max(loc.col - 1, 0)
    end = loc.end_col - 1 if loc.end_line == loc.line else len(text)
    width = max(end - start, 1)
    # Tabs before the caret keep their width so the caret lines up in a terminal.
    lead = "".join(ch if ch == "\t" else " " for ch in text[:start])
    return ["    " + text, "    " + lead + "^" + "~" * (width - 1)]


def _render_one(diag: Diagnostic, sources: dict[str, SourceFile]) -> list[str]:
    code = f"  [{diag.code.name}]" if diag.code is not None else ""
    lines = [f"{_location_prefix(diag.loc)}{diag.severity.value}: {diag.message}{code}"]
    if isinstance(diag.loc, Span):
        lines.extend(_caret_lines(diag.loc, sources))
    for note in diag.notes:
        lines.extend(_render_one(note, sources))
    return lines


def render_text(diags: Sequence[Diagnostic], sources: dict[str, SourceFile] | None = None) -> str:
    """Human form: `file:line:col: severity: message  [code]`, then the line and a caret."""
    out: list[str] = []
    for d in diags:
        out.extend(_render_one(d, sources or {}))
    return "\n".join(out) + ("\n" if out else "")


def render_json(diags: Sequence[Diagnostic]) -> str:
    """Machine form: one JSON object per line."""
    return "".join(json.dumps(d.to_json(), sort_keys=True) + "\n" for d in diags)


def summary_line(diags: Sequence[Diagnostic]) -> str:
    n_err = sum(1 for d in diags if d.severity is Severity.ERROR)
    n_warn = sum(1 for d in diags if d.severity is Severity.WARNING)
    parts = []
    if n_err:
        parts.append(f"{n_err} error{'s' if n_err != 1 else ''}")
    if n_warn:
        parts.append(f"{n_warn} warning{'s' if n_warn != 1 else ''}")
    return ", ".join(parts) or "no problems"
