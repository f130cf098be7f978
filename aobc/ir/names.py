"""Identifiers: what a node id, input or output name may be.

Ids are identifiers (letters, digits and `_`, not starting with a digit) and not reserved
words, so that every JSON workflow prints as DSL and every id can be named in an expression.
"""

from __future__ import annotations

import re
from typing import Final

IDENT_RE: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

#: Words of the DSL grammar (a test checks this against grammar/aob.lark).
KEYWORDS: Final = frozenset(
    {
        "workflow", "input", "output", "when", "until", "true", "false", "null",
        "if", "else", "and", "or", "not", "in",
        "http", "function", "map", "join", "condition", "composite", "agent", "approval",
        "timer",
    }
)  # fmt: skip

#: Names that expressions bind besides node ids: workflow inputs and the map item.
EXPR_ROOTS: Final = frozenset({"inputs", "item"})

RESERVED: Final = KEYWORDS | EXPR_ROOTS


def is_identifier(name: str) -> bool:
    return IDENT_RE.fullmatch(name) is not None


def id_problem(name: str) -> str | None:
    """Why `name` cannot be an id, or None when it can."""
    if not is_identifier(name):
        return f'"{name}" is not an identifier (letters, digits and "_", not starting with a digit)'
    if name in RESERVED:
        return f'"{name}" is a reserved word'
    return None
