""" "Did you mean" hints."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from aobc.diagnostics import Diagnostic
from aobc.source import Loc


def closest(word: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `word`, when one is close enough to be a likely typo."""
    pool = list(candidates)
    matches = difflib.get_close_matches(word, pool, n=1, cutoff=0.6)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        matches = [lowered[word.lower()]] if word.lower() in lowered else []
    return matches[0] if matches else None


def did_you_mean(
    word: str, candidates: Iterable[str], loc: Loc | None = None
) -> tuple[Diagnostic, ...]:
    """A note suggesting the closest candidate, or nothing."""
    best = closest(word, candidates)
    return (Diagnostic.note(f'did you mean "{best}"?', loc),) if best is not None else ()
