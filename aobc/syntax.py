"""The lark parser over grammar/aob.lark, built once per process.

Both the DSL frontend (start symbol `file`) and the expression language (start symbol
`expr`) use this one parser, so the two can never drift apart.
"""

from __future__ import annotations

import functools

from lark import Lark


@functools.cache
def parser() -> Lark:
    """The LALR parser for workflow files and expressions."""
    return Lark.open_from_package(
        "aobc.grammar",
        "aob.lark",
        ("",),
        parser="lalr",
        lexer="contextual",
        start=["file", "expr"],
        propagate_positions=True,
        maybe_placeholders=True,
    )


def grammar_text() -> str:
    """The grammar source, as installed (used by hypothesis' `from_lark` in tests)."""
    from importlib.resources import files

    return files("aobc.grammar").joinpath("aob.lark").read_text(encoding="utf-8")
