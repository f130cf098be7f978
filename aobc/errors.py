"""The exception hierarchy. Every aobc error carries diagnostics, never just a string.

Code that can report several problems collects them in a `DiagnosticEngine` and raises one of
these at the end with all of them, so a user sees every error in one go.
"""

from __future__ import annotations

from collections.abc import Sequence

from aobc.diagnostics import Diagnostic


class AobcError(Exception):
    """Base class: one or more diagnostics, at least one of them an error."""

    def __init__(self, diagnostics: Diagnostic | Sequence[Diagnostic]) -> None:
        diags = (diagnostics,) if isinstance(diagnostics, Diagnostic) else tuple(diagnostics)
        self.diagnostics: tuple[Diagnostic, ...] = diags
        first = next((d for d in diags if d.is_error), diags[0] if diags else None)
        super().__init__(first.message if first is not None else "error")

    @property
    def codes(self) -> list[str]:
        return [d.code.name for d in self.diagnostics if d.code is not None]


class FrontendError(AobcError):
    """The input does not parse or does not fit the schema."""


class PatchError(AobcError):
    """A patch is malformed, does not apply, or is refused by policy."""


class VerifyError(AobcError):
    """The workflow parses but breaks a rule of the graph, security or limits."""


class PassError(AobcError):
    """A pass pipeline is malformed, or a pass failed."""


class IRFormatError(AobcError):
    """A compiled IR file is truncated, tampered with or of an unknown version."""


class ExecutionError(AobcError):
    """A run failed in a way the runtime reports as a diagnostic."""
