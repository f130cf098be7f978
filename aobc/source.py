"""Source locations: a span in a DSL file, or an RFC 6901 pointer into a JSON document.

Locations ride along on IR objects but never take part in equality, so the same workflow
loaded from DSL and from JSON compares equal.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Span:
    """A range in a text source; 1-based lines and columns, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True, slots=True)
class JsonLoc:
    """A place in a JSON document, as an RFC 6901 pointer (optionally with line/col)."""

    file: str
    pointer: str
    line: int | None = None
    col: int | None = None

    def __str__(self) -> str:
        return f"{self.file}#{self.pointer}"

    def child(self, *tokens: str | int) -> JsonLoc:
        """The location of a member or element below this one."""
        ptr = self.pointer
        for tok in tokens:
            ptr += "/" + str(tok).replace("~", "~0").replace("/", "~1")
        return JsonLoc(self.file, ptr)


Loc = Span | JsonLoc


@dataclass(frozen=True, slots=True)
class SourceFile:
    """The text of one input with a line index, for rendering carets under spans."""

    name: str
    text: str
    _line_starts: tuple[int, ...] = field(default=(), compare=False, repr=False)

    @staticmethod
    def of(name: str, text: str) -> SourceFile:
        starts = [0]
        find = text.find
        pos = find("\n")
        while pos >= 0:
            starts.append(pos + 1)
            pos = find("\n", pos + 1)
        return SourceFile(name, text, tuple(starts))

    def line_text(self, line: int) -> str:
        """The text of 1-based `line`, without its newline ("" when out of range)."""
        if line < 1 or line > len(self._line_starts):
            return ""
        start = self._line_starts[line - 1]
        end = self.text.find("\n", start)
        return self.text[start : end if end >= 0 else len(self.text)].rstrip("\r")

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        idx = bisect.bisect_right(self._line_starts, offset) - 1
        return idx + 1, offset - self._line_starts[idx] + 1

    def span(self, start: int, end: int) -> Span:
        line, col = self.position(start)
        end_line, end_col = self.position(max(start, end))
        return Span(self.name, line, col, end_line, end_col)
