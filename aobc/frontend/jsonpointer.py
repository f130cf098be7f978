"""RFC 6901 JSON pointers: parsing, formatting and read-only resolution.

A pointer is handled as a tuple of unescaped reference tokens; `()` is the whole document.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "PointerLookupError",
    "PointerSyntaxError",
    "array_index",
    "escape_token",
    "format_pointer",
    "parse_pointer",
    "resolve",
    "unescape_token",
]

# RFC 6901 section 4: an array index is "0" or digits without a leading zero. ASCII digits
# only, which is why this is a regex and not str.isdigit() (that accepts "٣").
_INDEX_RE = re.compile(r"0|[1-9][0-9]*")
_BAD_ESCAPE_RE = re.compile(r"~(?![01])")


class PointerSyntaxError(ValueError):
    """A string is not a valid RFC 6901 JSON pointer."""


class PointerLookupError(LookupError):
    """A valid pointer names nothing in the document."""


def escape_token(token: str) -> str:
    """Escape one reference token: `~` -> `~0`, then `/` -> `~1`."""
    return token.replace("~", "~0").replace("/", "~1")


def unescape_token(token: str) -> str:
    """Undo `escape_token`; the order (`~1` first) makes `~01` decode to `~1`, not `/`."""
    if "~" not in token:
        return token
    bad = _BAD_ESCAPE_RE.search(token)
    if bad is not None:
        esc = token[bad.start() : bad.start() + 2]
        raise PointerSyntaxError(
            f'"{esc}" is not a valid escape (only "~0" and "~1" are allowed)'
            if len(esc) == 2
            else 'a "~" at the end of a token must be followed by "0" or "1"'
        )
    return token.replace("~1", "/").replace("~0", "~")


def parse_pointer(ptr: str) -> tuple[str, ...]:
    """Split an RFC 6901 pointer into unescaped tokens; "" is the whole document."""
    if ptr == "":
        return ()
    if not ptr.startswith("/"):
        raise PointerSyntaxError(f'pointer "{ptr}" must be empty or start with "/"')
    try:
        return tuple(unescape_token(tok) for tok in ptr[1:].split("/"))
    except PointerSyntaxError as exc:
        raise PointerSyntaxError(f'pointer "{ptr}": {exc}') from None


def format_pointer(tokens: Iterable[str | int]) -> str:
    """Join tokens (array indices may be ints) into an RFC 6901 pointer."""
    return "".join("/" + escape_token(str(tok)) for tok in tokens)


def array_index(token: str) -> int | None:
    """The index a token names in an array, or None if it is not a canonical index."""
    if _INDEX_RE.fullmatch(token) is None:
        return None
    return int(token)


def resolve(doc: Any, tokens: Iterable[str]) -> Any:
    """The value `tokens` names in `doc`; raises `PointerLookupError` if it names nothing."""
    node = doc
    seen: list[str] = []
    for tok in tokens:
        where = format_pointer(seen) or "the root"
        if isinstance(node, dict):
            if tok not in node:
                raise PointerLookupError(f'the object at {where} has no member "{tok}"')
            node = node[tok]
        elif isinstance(node, list):
            idx = array_index(tok)
            if idx is None:
                raise PointerLookupError(f'"{tok}" is not an index into the array at {where}')
            if idx >= len(node):
                raise PointerLookupError(
                    f"index {idx} is out of range: the array at {where} has {len(node)} elements"
                )
            node = node[idx]
        else:
            raise PointerLookupError(f'{where} is not an object or array, so "{tok}" names nothing')
        seen.append(tok)
    return node
