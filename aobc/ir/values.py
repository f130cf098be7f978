"""Immutable JSON values and durations, as they are held inside the IR.

Free-form configuration (an HTTP body, a function's arguments, an output schema) is frozen at
the boundary: objects become `FrozenDict`, arrays become tuples. That keeps every IR node
hashable and immutable, so passes can compare and key nodes structurally.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, Final, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class FrozenDict(Mapping[K, V]):
    """A hashable, read-only mapping that keeps insertion order."""

    __slots__ = ("_d", "_hash")

    def __init__(self, items: Mapping[K, V] | None = None) -> None:
        self._d: dict[K, V] = dict(items) if items else {}
        self._hash: int | None = None

    def __getitem__(self, key: K) -> V:
        return self._d[key]

    def __iter__(self) -> Iterator[K]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._d.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, FrozenDict):
            return self._d == other._d
        if isinstance(other, Mapping):
            return self._d == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenDict({self._d!r})"


EMPTY: Final[FrozenDict[Any, Any]] = FrozenDict()


def freeze(value: Any) -> Any:
    """A JSON value with dicts and lists replaced by FrozenDict and tuple."""
    if isinstance(value, dict):
        return FrozenDict({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze`: plain dicts and lists again."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [thaw(v) for v in value]
    return value


# --- durations -----------------------------------------------------------------------

_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DURATION_RE: Final = re.compile(r"(?:[0-9]+(?:ms|s|m|h|d))+")
_PART_RE: Final = re.compile(r"([0-9]+)(ms|s|m|h|d)")
MAX_DURATION_MS: Final = 366 * 86_400_000


def parse_duration(text: str) -> int | None:
    """Milliseconds of `10s`, `1h30m`, `500ms`; None when `text` is not a duration."""
    if not _DURATION_RE.fullmatch(text):
        return None
    return sum(int(n) * _UNIT_MS[u] for n, u in _PART_RE.findall(text))


def format_duration(ms: int) -> str:
    """The canonical spelling: whole units from days down, or plain milliseconds."""
    if ms == 0:
        return "0s"
    if ms % 1000:
        return f"{ms}ms"
    out = []
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
