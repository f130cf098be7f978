"""A hand-written parser for DSL files, more than ten times faster than lark.

`grammar/aob.lark` stays the definition of the language, and `parse_dsl_reference` in
`aobc.frontend.dsl` still parses with it; this module implements the `file` start symbol by
recursive descent and must build exactly what the reference builds: the same located values
with the same spans for every text lark accepts, and the `syntax` diagnostic lark's path gives
(same place, same message) for every text it rejects. Tests compare the two on examples,
generated workflows, hypothesis texts from the grammar and mutated texts.

Lexing mirrors lark's *contextual* lexer, which matches only the terminals the LALR parser can
accept in its current state. Three consequences shape this file:

* A keyword is a keyword only where the state accepts it; elsewhere it reads as a name
  (`x: map`, `-[else]->`, `a.if`, `{true: 1}`). A keyword is always a whole word (`mapper` is
  never `map per`), and so are numbers: `5s` where no duration may stand is not `5` then `s`
  but an error at `5s`.
* Where a state accepts a shorter terminal but not the longer one the text starts with, the
  shorter one is read: `1.5` after `join` is `1` then `.`, `]->` in an array is `]` then `->`,
  `-[` in a value is `-` then `[`, and `==` after `output x` is `=` then `=`.
* LALR merges lookaheads, so a state can accept more than is valid in the context at hand.
  After an expression, lark's state always accepts `]->`, `else`, `in` and `not`, so
  `{a: map b else: 1}` fails at `else` although a key could stand there. (After any value it
  accepts `input` and `output` too, but those are keywords only where no ":" follows.)

The text is first cut into tokens as lark's catch-all "root" lexer would (one `findall`); at the
few places where the contextual lexer reads a shorter token, the parser splits the token it
holds and re-reads the rest (`_Tokens.split`). Where no terminal matches, the root lexer
fails; after a digit that starts no number that token is the rest of the text, so that
spotting it costs one check at the end. Keywords are recognised by the parser, by text, only
where lark's state has them. Expressions are parsed by `aobc.expr.fastparse`'s precedence
climbing, run on this token stream by a subclass. Error messages name what lark's lexer or
parser state would have taken, which `_M_*` (lexer states) and `_E_*` (parser expectations)
spell out per place.

Values are built in the order lark's transformer builds them (children first), so when several
strings hold bad escapes the first one it would meet is the one reported, and such errors only
count once the whole file has parsed, as with lark.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable
from itertools import accumulate, chain, repeat
from operator import add, sub
from typing import Any, Final

from aobc import errorcodes as ec
from aobc.diagnostics import Diagnostic
from aobc.expr.ast import DictExpr, Expr, Lit, to_source
from aobc.expr.fastparse import _KEYWORDS as _EXPR_KEYWORDS
from aobc.expr.fastparse import Token as ExprToken
from aobc.expr.fastparse import _Parser as _ExprParser
from aobc.expr.parse import TERMINAL_NAMES, ExprSyntaxError, decode_string, message_order, number
from aobc.frontend.dsl import _OBJECT, Located, NodeSpec, Pair, WorkflowSpec
from aobc.source import SourceFile, Span

# --- tokens ------------------------------------------------------------------------------
# The grammar's terminals as lark's root lexer reads them. Where two can match at the same
# place they are tried in lark's order: DURATION (priority 2) before FLOAT before INT, and
# longer fixed strings before their prefixes; NAME, which overlaps nothing (keywords, whole
# words too, are read as names and told apart by the parser), goes first because it is the
# most common. A digit where no number ends at a word boundary (`5x`) starts no token: the
# rest of the text is taken as one, which `_Tokens` turns into `_BAD` (lark stops there).
# `[\s\S]` catches a character no terminal matches and `\Z` is the end. Each match is
# (whitespace and comments skipped, token).
_TOKEN: Final = re.compile(
    r"""
    ((?:[ \t\f\r\n]+|\#[^\n]*)*)
    ( [A-Za-z_][A-Za-z0-9_]*
    | \]->|->|-\[|==|!=|<=|>=|//
    | [{}=:\-.\[\],<>+*/%()]
    | (?s:\"\"\"(?:[^"\\]|\\.|"(?!""))*\"\"\")
    | "(?:[^"\\\n]|\\.)*"
    | (?:[0-9]+(?:ms|s|m|h|d))+(?![A-Za-z0-9_])
    | (?:[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)(?![A-Za-z0-9_])
    | [0-9]+(?![A-Za-z0-9_])
    | [0-9][\s\S]*
    | [\s\S]
    | \Z
    )
    """,
    re.VERBOSE,
)
#: A number token, as the root lexer reads one (anything else that starts with a digit is bad).
_NUMBER: Final = re.compile(
    r"(?:[0-9]+(?:ms|s|m|h|d))+(?![A-Za-z0-9_])"
    r"|(?:[0-9]+\.[0-9]+(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)(?![A-Za-z0-9_])"
    r"|[0-9]+(?![A-Za-z0-9_])"
)
#: Stands for the text from a digit no terminal matches: no terminal, so an error wherever it
#: is read (messages show the character in the source).
_BAD: Final = "\x00"
#: A string with nothing for `json.loads` to decode or reject: its value is its body.
_PLAIN_STRING: Final = re.compile(r'"[^"\\\x00-\x1f]*"')

_NAME_START: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGIT: Final = frozenset("0123456789")
_UNITS: Final = frozenset("smhd")
_PUNCT: Final = frozenset("{ } = : - . [ ] , < > + * / % ( ) ]-> -> -[ == != <= >= //".split())
_NODE_KINDS: Final = (
    "agent",
    "approval",
    "composite",
    "condition",
    "function",
    "http",
    "join",
    "map",
    "timer",
)
_NODE_KIND_SET: Final = frozenset(_NODE_KINDS)
#: Keywords the state after any config value accepts (the next workflow item may start),
#: unless ":" follows them.
_ITEM_KEYWORDS: Final = frozenset({"input", "output"})
#: Keywords where a config value starts.
_LITERALS: Final[dict[str, Any]] = {"true": True, "false": False, "null": None}
#: Keywords where the value of a config pair starts (the only value that may be a node).
_VALUE_KEYWORDS: Final = _NODE_KIND_SET | frozenset(_LITERALS)
_REF_STEP: Final = frozenset({".", "["})
#: The (label, guard) of an unlabelled arrow.
_PLAIN_ARROW: Final = (None, None)

#: Kinds for the expression parser (fastparse's token kinds).
_EXPR_KINDS: Final[dict[str, str]] = {
    **{p: "OP" for p in _PUNCT},
    **{k: "KW" for k in _EXPR_KEYWORDS},
    "": "END",
}

#: Extra end-of-input tokens, so that looking a few tokens ahead never runs off the list.
_PAD: Final = 4


def _line_starts(text: str) -> list[int]:
    """The offset where each line starts (lines end at "\\n", as lark counts them)."""
    starts = [0]
    find = text.find
    pos = find("\n")
    while pos >= 0:
        starts.append(pos + 1)
        pos = find("\n", pos + 1)
    return starts


def _is_word(t: str) -> bool:
    return t[:1] in _NAME_START


def _number_kind(t: str) -> str:
    if t[-1] in _UNITS:
        return "DURATION"
    if "." in t or "e" in t or "E" in t:
        return "FLOAT"
    return "INT"


def _expr_kind(t: str) -> str:
    kind = _EXPR_KINDS.get(t)
    if kind is not None:
        return kind
    c = t[0]
    if c in _NAME_START:
        return "NAME"
    if c in _DIGIT:
        return _number_kind(t)
    if c == '"' and len(t) > 1:
        return "STRING"
    return "ERR"


def _digits(t: str) -> int:
    """How many leading digits `t` has."""
    return len(t) - len(t.lstrip("0123456789"))


def _describe(names: Iterable[str]) -> str:
    """Expected terminals as lark's messages list them (`describe_expected`'s format)."""
    shown = sorted({TERMINAL_NAMES.get(n, f'"{n}"') for n in names}, key=message_order)
    if len(shown) > 8:
        shown = [*shown[:8], "..."]
    return ", ".join(shown)


# --- error messages --------------------------------------------------------------------
# Lark words a syntax error after what failed. If its contextual lexer could not read the
# next token, the message lists what that lexer state could read. If the lexer read it and
# the parser could not take it, the message lists what the parser state takes; at the end of
# input, that is what the lexer state could read unless the state may end there. The states
# below are lark's lexer states (terminal names, keywords by their text) at each place.
_M_NAME: Final = frozenset({"NAME"})
_M_STRING: Final = frozenset({"STRING"})
_M_COLON: Final = frozenset({":"})
_M_LBRACE: Final = frozenset({"{"})
_M_RSQB: Final = frozenset({"]"})
_M_EQUAL: Final = frozenset({"="})
_M_IN: Final = frozenset({"in"})
_M_WORKFLOW: Final = frozenset({"workflow"})
_M_NODE_KIND: Final = _NODE_KIND_SET
_M_ITEM: Final = frozenset({"input", "output", "NAME", "}"})
_M_AFTER_NAME: Final = frozenset({":", "=", "->", "-["})
_M_VALUE: Final = frozenset(
    {"true", "false", "null", "DURATION", "FLOAT", "INT", "NAME", "STRING", "-", "[", "{"}
)
_M_PAIR_VALUE: Final = _M_VALUE | _NODE_KIND_SET
_M_ARRAY_ITEM: Final = _M_VALUE | {"]"}
_M_NUMBER: Final = frozenset({"FLOAT", "INT"})
_M_KEY: Final = frozenset({"NAME", "STRING", "}"})
_M_REF_INDEX: Final = frozenset({"INT", "STRING"})
_M_JOIN: Final = frozenset({"INT", "NAME"})
_M_LABEL: Final = frozenset({"false", "true", "when", "NAME", "STRING"})
_M_WHEN: Final = frozenset({"when", "]->"})
_M_VALUE_END: Final = frozenset({",", "input", "output", "{", "}", "]", "NAME", "STRING"})
_M_REF_END: Final = _M_VALUE_END | {".", "["}
#: After a node that may still take its config object: what follows nodes, and "{".
_M_SPEC_END: Final = frozenset({",", "input", "output", "{", "}", "NAME", "STRING"})
_M_TIMER_END: Final = _M_SPEC_END | {"DURATION", "until"}
_M_WORKFLOW_END: Final = _M_SPEC_END | {"$END"}
_M_EDGE_END: Final = frozenset({"input", "output", "NAME", "}", "->", "-["})
_M_TYPE_END: Final = frozenset({"=", "input", "output", "NAME", "}"})
#: Where an expression may start; after an operator "not" is a name there.
_M_EXPR: Final = frozenset(
    {"true", "false", "null", "NAME", "INT", "FLOAT", "STRING", "(", "-", "[", "{"}
)
_M_EXPR_NOT: Final = _M_EXPR | {"not"}
#: After any expression: LALR merges what follows expressions everywhere.
_M_EXPR_END: Final = frozenset(
    {"$END", "and", "else", "if", "in", "not", "or", "input", "output", "NAME", "STRING"}
    | set(", . { } [ ] ) ]-> < > <= >= == != - + * / // %".split())
)
#: Tokens after which an expression starts without "not".
_OPERATORS: Final = frozenset("- + * / // % == != < <= > >= in".split())

# What the parser takes where it fails on a token its lexer read.
_E_ITEM: Final = _describe(["NAME", "}", "input", "output"])
_E_AFTER_PAIR: Final = _describe(["NAME", "STRING", "}", ","])
#: After a complete node: what follows a node declaration or a config pair.
_E_AFTER_NODE: Final = _describe(_M_SPEC_END - {"{"})
_E_AFTER_ITEM: Final = _describe([",", "]"])
_E_AFTER_LATER_ITEM: Final = _describe([")", ",", "]"])  # one state for lists and calls
_E_ARROW_END: Final = _describe(["]->"])
_E_END: Final = _describe(["$END"])
#: After a complete comparison ("a < b < c" fails there).
_E_AFTER_COMPARISON: Final = _describe(
    [*") , ] ]-> and else if input or output { }".split(), "NAME", "STRING", "$END"]
)
#: After a complete `or` test ("a else" fails there).
_E_AFTER_OR_TEST: Final = _describe(
    [")", ",", "]", "]->", "if", "input", "output", "{", "}", "NAME", "STRING", "$END"]
)
#: The comparison operators, which do not chain.
_COMPARISONS: Final = frozenset({"==", "!=", "<", "<=", ">", ">=", "in", "not"})
#: fastparse's words for what it expected where lark's lexer state is fixed.
_EXPR_MODES: Final = {"a name": _M_NAME, '":"': _M_COLON, '"in"': _M_IN}
_ATOM_PHRASE: Final = '"(", "-", "[", "{", a name, a number or a string'


def _describe_lexer(mode: frozenset[str]) -> str:
    """What lark's lexer in `mode` could have matched, as its message lists it."""
    return _describe(m for m in mode if m != "$END")


def _int_prefix(t: str) -> int:
    """How much of number token `t` a lexer state with INT but not t's kind reads: the digits
    if a "." follows them (`1.5` is `1` then `.`), else nothing (`1e5`, `5s`)."""
    d = _digits(t)
    return d if t[d : d + 1] == "." else 0


def _lex(t: str, mode: frozenset[str]) -> tuple[str, str] | None:
    """(terminal, text) lark's lexer in `mode` reads where the root lexer reads `t`."""
    kind = _expr_kind(t)
    if kind == "ERR":
        return None
    if kind == "NAME" or kind == "KW":
        if "NAME" in mode:
            return (t if t in mode else "NAME"), t
        return (t, t) if t in mode else None
    if kind == "STRING":
        return ("STRING", t) if "STRING" in mode else None
    if kind in ("INT", "FLOAT", "DURATION"):
        if kind in mode:
            return kind, t
        d = _int_prefix(t) if "INT" in mode else 0
        return ("INT", t[:d]) if d else None
    if t in mode:
        return t, t
    return (t[0], t[0]) if len(t) > 1 and t[0] in mode else None


class DslSyntaxError(ExprSyntaxError):
    """The file does not parse, or a value in it is invalid; `span` is where to point."""

    def __init__(self, message: str, offset: int, span: Span) -> None:
        super().__init__(message, offset)
        self.span = span


class _Tokens:
    """The token stream: texts, offsets and 1-based positions, in parallel lists."""

    __slots__ = ("C", "EC", "EL", "L", "S", "T", "line_starts", "src")

    def __init__(self, src: SourceFile) -> None:
        text = src.text
        pairs: list[tuple[str, str]] = _TOKEN.findall(text)
        # `\Z` can match twice at the end; keep one end token.
        while len(pairs) > 1 and pairs[-2][1] == "":
            pairs.pop()
        # A digit that starts no number takes the rest of the text, so only the last token
        # before the end can be one.
        bad = len(pairs) > 1 and pairs[-2][1][:1] in _DIGIT and not _NUMBER.match(pairs[-2][1])
        # Positions are computed by whole-list operations that run in C: this is most of the
        # lexing time of a large file.
        ws = [p[0] for p in pairs]
        toks = [p[1] for p in pairs]
        lens = list(map(len, toks))
        starts = list(accumulate(map(add, map(len, ws), chain((0,), lens))))
        # Only whitespace, comments and triple-quoted strings hold newlines.
        newlines = list(map(str.count, ws, repeat("\n")))
        multiline = []
        if '"""' in text:
            in_toks = list(map(str.count, toks, repeat("\n")))
            multiline = [k for k, n in enumerate(in_toks) if n]
            for k in multiline:
                newlines[k + 1] += in_toks[k]
        lines = list(accumulate(newlines, initial=1))[1:]
        line_starts = _line_starts(text)
        # col = start - line_start + 1; base[line] is line_start - 1 for that 1-based line.
        base = [0, *(s - 1 for s in line_starts)]
        cols = list(map(sub, starts, map(base.__getitem__, lines)))
        end_cols = list(map(add, cols, lens))
        end_lines = lines
        if multiline:
            end_lines = list(lines)
            for k in multiline:
                t = toks[k]
                end_lines[k] = lines[k] + t.count("\n")
                end_cols[k] = len(t) - t.rfind("\n")
        if bad:
            toks[-2] = _BAD
        n = len(text)
        last = (lines[-1], cols[-1])
        for _ in range(_PAD):
            toks.append("")
            starts.append(n)
            lines.append(last[0])
            cols.append(last[1])
            if end_lines is not lines:
                end_lines.append(last[0])
            end_cols.append(last[1])
        self.src = src
        self.T = toks
        self.S = starts
        self.L = lines
        self.C = cols
        self.EL = end_lines
        self.EC = end_cols
        self.line_starts = line_starts

    def position(self, offset: int) -> tuple[int, int]:
        """1-based (line, column) of a character offset."""
        idx = bisect_right(self.line_starts, offset) - 1
        return idx + 1, offset - self.line_starts[idx] + 1

    def split(self, i: int, n: int) -> None:
        """Keep the first `n` characters of token `i` and re-read the rest from there.

        Re-reading goes on until a token starts where one of the old tokens did; from there
        on the old tokens are what the root lexer would read anyway.
        """
        T, S = self.T, self.S
        text = self.src.text
        cut = S[i] + n
        T[i] = T[i][:n]
        self.EC[i] = self.C[i] + n
        new_t: list[str] = []
        new_s: list[int] = []
        pos = cut
        k = i + 1
        while True:
            m = _TOKEN.match(text, pos)
            assert m is not None  # every position matches: `[\s\S]` or `\Z`
            start = m.start(2)
            while S[k] < start:  # the padding ends the list at the text's end
                k += 1
            if start == S[k]:
                break
            new_t.append(m.group(2))
            new_s.append(start)
            pos = m.end()
        T[i + 1 : k] = new_t
        S[i + 1 : k] = new_s
        positions = [self.position(s) for s in new_s]
        ends = [self.position(s + len(t)) for s, t in zip(new_s, new_t, strict=True)]
        self.L[i + 1 : k] = [p[0] for p in positions]
        self.C[i + 1 : k] = [p[1] for p in positions]
        if self.EL is not self.L:
            self.EL[i + 1 : k] = [p[0] for p in ends]
        self.EC[i + 1 : k] = [p[1] for p in ends]


class _Parser(_ExprParser):
    """Recursive descent over `_Tokens`; the expression rules are fastparse's."""

    __slots__ = (
        "C",
        "EC",
        "EL",
        "L",
        "S",
        "T",
        "deferred",
        "file",
        "item_at",
        "item_close",
        "mark_at",
        "mark_mode",
        "src",
        "tokens",
    )

    def __init__(self, src: SourceFile) -> None:
        super().__init__([])
        tokens = _Tokens(src)
        self.src = src
        self.file = src.name
        self.tokens = tokens
        self.T = tokens.T
        self.S = tokens.S
        self.L = tokens.L
        self.C = tokens.C
        self.EL = tokens.EL
        self.EC = tokens.EC
        #: Lark's lexer state after the construct that ended last (at token `mark_at`), where
        #: it depends on what that construct was: after any expression, for instance, it is
        #: the one state shared by all expressions, with "]->" and "else" in it.
        self.mark_at = -1
        self.mark_mode: frozenset[str] = frozenset()
        #: Where a list or call item may start (or the list or call close), for messages.
        self.item_at = -1
        self.item_close = ""
        #: The first value error lark's transformer would meet: (end, -start, message, span).
        self.deferred: tuple[int, int, str, Span] | None = None

    # --- positions and errors -------------------------------------------------------------

    def span(self, a: int, b: int) -> Span:
        """From the start of token `a` to the end of token `b`."""
        return Span(self.file, self.L[a], self.C[a], self.EL[b], self.EC[b])

    def error(self, i: int, expected: str, token: str | None = None) -> DslSyntaxError:
        """A syntax error at token `i`, worded and placed as lark's diagnostic would be.

        `token` is what lark's lexer read there if that is shorter than the token at `i`.
        """
        t = self.T[i] if token is None else token
        line, col = self.L[i], self.C[i]
        if not t:
            found = "unexpected end of input"
            line, col = self.tokens.position(len(self.src.text))
            width = 1
        elif _expr_kind(t) == "ERR":
            found = f'unexpected character "{self.src.text[self.S[i]]}"'
            width = 1
        else:
            found = f'unexpected "{t}"'
            width = len(t)
        span = Span(self.file, line, col, line, col + width)
        return DslSyntaxError(f"{found}; expected {expected}", self.S[i], span)

    def unexpected(self, i: int, mode: frozenset[str]) -> DslSyntaxError:
        """A syntax error at token `i` where lark's lexer is in `mode` and the grammar takes
        what the mode has."""
        if not self.T[i]:
            return self.error(i, _describe(mode))
        return self.error(i, _describe_lexer(mode))

    def mark(self, i: int, mode: frozenset[str]) -> None:
        """Note lark's lexer state at token `i`, unless a construct inside ended there too."""
        if self.mark_at != i:
            self.mark_at = i
            self.mark_mode = mode

    def context_error(
        self, i: int, mode: frozenset[str], expected: str, marked: bool = True
    ) -> DslSyntaxError:
        """A syntax error at token `i` after a construct, where lark's state depends on it.

        `mode` is lark's lexer state unless (if `marked`) a mark says otherwise, and
        `expected` what the context takes.
        """
        if marked and self.mark_at == i:
            mode = self.mark_mode
        if mode is _M_EXPR_END:
            mode = self.expr_end_mode(i)
        t = self.T[i]
        if not t:
            return self.error(i, expected if "$END" in mode else _describe(mode))
        read = _lex(t, mode)
        if read is None:
            return self.error(i, _describe_lexer(mode))
        return self.error(i, expected, read[1])

    def expr_end_mode(self, i: int) -> frozenset[str]:
        """Lark's lexer state at token `i`, after an expression: after a name, "(" too."""
        prev = self.T[i - 1]
        if _is_word(prev) and prev not in _LITERALS and self.T[i - 2] != ".":
            return _M_EXPR_END | {"("}
        return _M_EXPR_END

    def defer(self, a: int, b: int, message: str) -> None:
        """Note a value error in the construct from token `a` to `b`; keep the first one the
        transformer would raise (it builds children before parents, left to right)."""
        key = (b, -a)
        if self.deferred is None or key < self.deferred[:2]:
            self.deferred = (b, -a, message, self.span(a, b))

    def string(self, i: int) -> str:
        t = self.T[i]
        if _PLAIN_STRING.fullmatch(t):
            return t[1:-1]
        try:
            return decode_string(t)
        except ExprSyntaxError as err:
            self.defer(i, i, err.message)
            return ""

    def key_string(self, i: int, a: int, b: int) -> str:
        """A string decoded by a parent rule: its error belongs to tokens `a` to `b`."""
        t = self.T[i]
        if _PLAIN_STRING.fullmatch(t):
            return t[1:-1]
        try:
            return decode_string(t)
        except ExprSyntaxError as err:
            self.defer(a, b, err.message)
            return ""

    def num(self, t: str, a: int, b: int, negative: bool = False) -> int | float:
        try:
            return number(t, negative)
        except ExprSyntaxError as err:
            self.defer(a, b, err.message)
        except ValueError:  # more digits than int() converts
            self.defer(a, b, f"number {t[:20]}... is too long")
        return 0

    def integer(self, i: int, a: int, b: int) -> int:
        try:
            return int(self.T[i])
        except ValueError:  # more digits than int() converts
            self.defer(a, b, f"number {self.T[i][:20]}... is too long")
            return 0

    def int_token(self, i: int, mode: frozenset[str]) -> None:
        """Check that a lexer state with INT but no other number (`mode`) reads one at `i`."""
        t = self.T[i]
        if not t.isdigit():
            d = _int_prefix(t) if t[:1] in _DIGIT else 0
            if not d:
                raise self.unexpected(i, mode)
            self.tokens.split(i, d)

    def equal(self, i: int) -> bool:
        """Whether token `i` is "=" where `==` is not acceptable (so `==` reads as two)."""
        t = self.T[i]
        if t == "=":
            return True
        if t == "==":
            self.tokens.split(i, 1)
            return True
        return False

    # --- file and workflow items ----------------------------------------------------------

    def parse_file(self) -> WorkflowSpec:
        wf, i = self.workflow(0)
        if self.T[i]:
            raise self.context_error(i, _M_WORKFLOW_END, _E_END)
        return wf

    def workflow(self, i: int) -> tuple[WorkflowSpec, int]:
        T = self.T
        if T[i] != "workflow":
            raise self.unexpected(i, _M_WORKFLOW)
        start = i
        if not _is_word(T[i + 1]):
            raise self.unexpected(i + 1, _M_NAME)
        name = T[i + 1]
        if T[i + 2] != "{":
            raise self.unexpected(i + 2, _M_LBRACE)
        i += 3
        items: list[Any] = []
        while True:
            t = T[i]
            if t == "}":
                break
            # `input` and `output` followed by ":" are names (here, settings; in objects, keys).
            if t == "input" and T[i + 1] != ":":
                i = self.input_decl(i, items)
            elif t == "output" and T[i + 1] != ":":
                i = self.output_decl(i, items)
            elif _is_word(t):
                i = self.named_item(i, items)
            else:
                raise self.context_error(i, _M_ITEM, _E_ITEM)
        self.mark(i + 1, _M_WORKFLOW_END)
        return WorkflowSpec(name, items, self.span(start, i)), i + 1

    def input_decl(self, i: int, items: list[Any]) -> int:
        T = self.T
        if not _is_word(T[i + 1]):
            raise self.unexpected(i + 1, _M_NAME)
        if T[i + 2] != ":":
            raise self.unexpected(i + 2, _M_COLON)
        if not _is_word(T[i + 3]):
            raise self.unexpected(i + 3, _M_NAME)
        typ = i + 3
        default: Located | None = None
        end = typ
        j = i + 4
        if self.equal(j):
            default, j = self.value(j + 1, _M_VALUE)
            self.mark(j, _M_VALUE_END)
            end = j - 1
        else:
            self.mark(j, _M_TYPE_END)
        typ_span = Span(self.file, self.L[typ], self.C[typ], self.EL[typ], self.EC[typ])
        items.append(("input", T[i + 1], self.span(i, end), T[typ], typ_span, default))
        return j

    def output_decl(self, i: int, items: list[Any]) -> int:
        T = self.T
        if not _is_word(T[i + 1]):
            raise self.unexpected(i + 1, _M_NAME)
        if not self.equal(i + 2):
            raise self.unexpected(i + 2, _M_EQUAL)
        e, j = self.expression(i + 3)
        items.append(("output", T[i + 1], self.span(i, j - 1), to_source(e)))
        return j

    def named_item(self, i: int, items: list[Any]) -> int:
        T = self.T
        t = T[i + 1]
        if t == ":":
            value, j = self.value(i + 2, _M_VALUE)
            self.mark(j, _M_VALUE_END)
            items.append(("setting", T[i], self.span(i, j - 1), value))
            return j
        if t == "->" or t == "-[":
            return self.edge_chain(i, items)
        if self.equal(i + 1):
            kind = T[i + 2]
            if kind not in _NODE_KIND_SET:
                raise self.unexpected(i + 2, _M_NODE_KIND)
            spec, j = self.node_spec(i + 2, kind)
            self.mark(j, _M_VALUE_END)
            name_span = Span(self.file, self.L[i], self.C[i], self.EL[i], self.EC[i])
            items.append(("node", T[i], self.span(i, j - 1), name_span, spec))
            return j
        raise self.unexpected(i + 1, _M_AFTER_NAME)

    def name_at(self, i: int) -> Located:
        if not _is_word(self.T[i]):
            raise self.unexpected(i, _M_NAME)
        return Located(self.T[i], self.span(i, i))

    def edge_chain(self, i: int, items: list[Any]) -> int:
        T, L, C, EL, EC, file = self.T, self.L, self.C, self.EL, self.EC, self.file
        parts: list[Any] = [Located(T[i], Span(file, L[i], C[i], EL[i], EC[i]))]
        j = i + 1
        while True:
            t = T[j]
            if t == "->":
                j += 1
                if T[j][:1] not in _NAME_START:
                    raise self.unexpected(j, _M_NAME)
                parts.append(_PLAIN_ARROW)
                parts.append(Located(T[j], Span(file, L[j], C[j], EL[j], EC[j])))
                j += 1
            elif t == "-[":
                arrow, j = self.labelled_arrow(j + 1)
                parts.append(arrow)
                parts.append(self.name_at(j))
                j += 1
            else:
                break
        self.mark(j, _M_EDGE_END)
        items.append(("edges", parts))
        return j

    def labelled_arrow(self, j: int) -> tuple[tuple[str | None, str | None], int]:
        """The label and guard after "-[", and the index after "]->"."""
        T = self.T
        label: str | None = None
        when: str | None = None
        t = T[j]
        if t != "when":  # "-[]->" is no arrow: brackets hold a label, a guard or both
            if t[:1] == '"' and len(t) > 1:
                label = self.string(j)
            elif _is_word(t):
                label = t
            else:
                raise self.unexpected(j, _M_LABEL)
            j += 1
            if T[j] == "]->":
                return (label, None), j + 1
            if T[j] != "when":
                raise self.unexpected(j, _M_WHEN)
        e, j = self.expression(j + 1)
        when = to_source(e)
        if T[j] != "]->":
            raise self.context_error(j, _M_EXPR_END, _E_ARROW_END)
        return (label, when), j + 1

    # --- values ---------------------------------------------------------------------------

    def pair_value(self, i: int) -> tuple[Located, int]:
        """The value of a config pair at token `i`, which may be a node, and the index after."""
        t = self.T[i]
        if t in _NODE_KIND_SET:
            spec, j = self.node_spec(i, t)
            return Located(spec, self.span(i, j - 1)), j
        return self.value(i, _M_PAIR_VALUE)

    def value(self, i: int, mode: frozenset[str]) -> tuple[Located, int]:
        """The config value starting at token `i`, and the index after it; `mode` is lark's
        lexer state there, for messages."""
        T = self.T
        t = T[i]
        c = t[:1]
        if c in _NAME_START:
            # Here lark's state has true, false and null as keywords (node kinds are names).
            if t in _LITERALS:
                v: Any = _LITERALS[t]
            else:
                nxt = T[i + 1]
                if nxt == "." or nxt == "[":
                    return self.ref(i)
                self.mark(i + 1, _M_REF_END)
                v = t
        elif c == '"' and len(t) > 1:
            v = t[1:-1] if _PLAIN_STRING.fullmatch(t) else self.string(i)
        elif c in _DIGIT:
            if t.isdigit():
                v = self.integer(i, i, i)
            elif t[-1] in _UNITS:
                v = t
            else:
                v = self.num(t, i, i)
        elif c == "{":
            return self.object(i)
        elif c == "[":
            return self.array(i)
        elif c == "-":
            return self.negative(i)
        else:
            raise self.unexpected(i, mode)
        return Located(v, Span(self.file, self.L[i], self.C[i], self.EL[i], self.EC[i])), i + 1

    def negative(self, i: int) -> tuple[Located, int]:
        """`-` and a number; this state has "-" but no arrow, and no duration after it."""
        T = self.T
        if T[i] != "-":
            self.tokens.split(i, 1)
        t = T[i + 1]
        if t[:1] in _DIGIT and t[-1] not in _UNITS:
            if t.isdigit():
                v: int | float = -self.integer(i + 1, i, i + 1)
            else:
                v = self.num(t, i, i + 1, negative=True)
            return Located(v, self.span(i, i + 1)), i + 2
        raise self.unexpected(i + 1, _M_NUMBER)

    def ref(self, i: int) -> tuple[Located, int]:
        """`a.b[0]["c"]` (at least one step) as a template holding the path."""
        T = self.T
        steps: list[int] = []  # token indexes of the names and indexes
        j = i + 1
        while True:
            t = T[j]
            if t == ".":
                if not _is_word(T[j + 1]):
                    raise self.unexpected(j + 1, _M_NAME)
                steps.append(j + 1)
                j += 2
            elif t == "[":
                self.ref_index(j + 1)
                steps.append(j + 1)
                j += 3
            else:
                break
        end = j - 1
        self.mark(j, _M_REF_END)
        # The path prints as `to_source` prints Var/Attr/Index; its index steps are decoded
        # once the whole ref has parsed, as the transformer does.
        out = [T[i]]
        for k in steps:
            t = T[k]
            if T[k - 1] == ".":
                out.append("." + t)
            elif t[:1] == '"':
                out.append(f"[{to_source(Lit(self.key_string(k, i, end)))}]")
            else:
                out.append(f"[{self.integer(k, i, end)}]")
        return Located("${" + "".join(out) + "}", self.span(i, end)), j

    def ref_index(self, k: int) -> None:
        """Check the `[0]` or `["a"]` step of a ref whose index is token `k`."""
        T = self.T
        t = T[k]
        if not (t[:1] == '"' and len(t) > 1):
            self.int_token(k, _M_REF_INDEX)
        if T[k + 1] != "]":
            if T[k + 1] != "]->":
                raise self.unexpected(k + 1, _M_RSQB)
            self.tokens.split(k + 1, 1)  # "]" is acceptable here, "]->" is not

    def array(self, i: int) -> tuple[Located, int]:
        T = self.T
        items: list[Located] = []
        j = i + 1
        while True:
            t = T[j]
            if t == "]":
                break
            if t == "]->":  # "]" is acceptable here, "]->" is not
                self.tokens.split(j, 1)
                break
            v, j = self.value(j, _M_ARRAY_ITEM)
            items.append(v)
            self.mark(j, _M_VALUE_END)
            t = T[j]
            if t == ",":
                j += 1
            elif t == "]":
                break
            elif t == "]->" and self.mark_mode is not _M_EXPR_END:
                self.tokens.split(j, 1)
                break
            else:
                raise self.context_error(j, _M_VALUE_END, _E_AFTER_ITEM)
        return Located(items, self.span(i, j)), j + 1

    def object(self, i: int) -> tuple[Located, int]:
        """`{ key: value, ... }` from token `i`; commas between pairs are optional."""
        T, L, C, EL, EC, file = self.T, self.L, self.C, self.EL, self.EC, self.file
        pairs: list[Pair] = []
        j = i + 1
        comma = True  # after "{" or ",", where lark's state has no keywords
        while True:
            t = T[j]
            if t == "}":
                break
            c = t[:1]
            if c in _NAME_START:
                if not comma and t in _ITEM_KEYWORDS and T[j + 1] != ":":
                    raise self.context_error(j, _M_VALUE_END, _E_AFTER_PAIR)
                key: str | None = t
            elif c == '"' and len(t) > 1:
                key = None
            elif comma:
                raise self.unexpected(j, _M_KEY)
            else:
                raise self.context_error(j, _M_VALUE_END, _E_AFTER_PAIR)
            if T[j + 1] != ":":
                raise self.unexpected(j + 1, _M_COLON)
            k = j
            j += 2
            # Inline the commonest values (a bare symbol, a plain string); `value` does the rest.
            t = T[j]
            c = t[:1]
            if c in _NAME_START and t not in _VALUE_KEYWORDS and T[j + 1] not in _REF_STEP:
                v = Located(t, Span(file, L[j], C[j], EL[j], EC[j]))
                j += 1
                self.mark_at = j  # nothing inside a name ends here
                self.mark_mode = _M_REF_END
            elif c == '"' and _PLAIN_STRING.fullmatch(t):
                v = Located(t[1:-1], Span(file, L[j], C[j], EL[j], EC[j]))
                j += 1
            else:
                v, j = self.pair_value(j)
            if key is None:
                key = self.key_string(k, k, j - 1)
            pairs.append(Pair(key, v, Span(file, L[k], C[k], EL[j - 1], EC[j - 1])))
            if T[j] == ",":
                j += 1
                comma = True
            else:
                self.mark(j, _M_VALUE_END)
                comma = False
        return Located((_OBJECT, pairs), Span(file, L[i], C[i], EL[j], EC[j])), j + 1

    def spec_end(self, k: int) -> None:
        """Check what follows a map or condition node that ends with its expression.

        Lark's lexer is in the state after an expression; a token it reads there that cannot
        follow a node (")", "]", "]->", the end) fails in the node's own rule.
        """
        t = self.T[k]
        if not t:
            raise self.error(k, _describe(_M_SPEC_END))
        read = _lex(t, _M_EXPR_END)
        if read is not None and read[0] not in _M_SPEC_END:
            raise self.error(k, _describe(_M_SPEC_END), read[1])

    def config(self, j: int) -> tuple[Located | None, int]:
        """The optional config object after a node's positional arguments."""
        if self.T[j] == "{":
            config, k = self.object(j)
            self.value_after_node(k, _E_AFTER_NODE)
            return config, k
        return None, j

    def value_after_node(self, k: int, expected: str) -> None:
        """Fail at token `k` after a node that ends with a value, if lark's lexer state after
        values reads there what cannot follow a node ("{" after its config, "]"): its parser
        fails in the node's rule, which takes `expected`."""
        t = self.T[k]
        if t == "{" or t == "]":
            raise self.error(k, expected)
        if t == "]->":
            raise self.error(k, expected, "]")

    def node_spec(self, i: int, kind: str) -> tuple[NodeSpec, int]:  # noqa: C901 - per kind
        """A node of `kind` (the keyword at token `i`), and the index after it."""
        T = self.T
        kind_span = Span(self.file, self.L[i], self.C[i], self.L[i], self.C[i] + len(kind))
        positional: list[tuple[str, Located]] = []
        j = i + 1
        # Where the node ends with a value (an http URL, `timer until`), lark's lexer state
        # after it is the value's; after a keyword, a join mode or a duration it is its own.
        ends_with_value = False
        if kind == "function":
            if not (T[j][:1] == '"' and len(T[j]) > 1):
                raise self.unexpected(j, _M_STRING)
            config, k = self.config(j + 1)
            if config is None:
                self.mark(k, _M_SPEC_END)
            # The function name is decoded by its node's rule, after the config.
            fn = self.key_string(j, i, k - 1)
            positional.append(("fn", Located(fn, self.span(j, j))))
            return NodeSpec(kind, kind_span, positional, config), k
        if kind == "http":
            method = self.name_at(j)
            url, j = self.value(j + 1, _M_VALUE)
            positional += [("method", method), ("url", url)]
            ends_with_value = True
        elif kind == "map" or kind == "condition":
            e, j = self.expression(j)
            config, k = self.config(j)
            if config is None:
                self.spec_end(k)
            src = Located(to_source(e), self.span(i, k - 1))
            positional.append(("over" if kind == "map" else "expr", src))
            return NodeSpec(kind, kind_span, positional, config), k
        elif kind == "join":
            t = T[j]
            if t[:1] in _DIGIT:
                self.int_token(j, _M_JOIN)
                positional.append(("n", Located(self.integer(j, j, j), self.span(j, j))))
            elif _is_word(t):
                if t != "all":  # `all` is the default, and documents leave defaults out
                    positional.append(("mode", Located(t, self.span(j, j))))
            else:
                raise self.unexpected(j, _M_JOIN)
            j += 1
        elif kind == "composite":
            wf, j = self.workflow(j)
            positional.append(("workflow", Located(wf, wf.span)))
            if not T[j]:  # lark's state after "}" may end, so it fails in this rule
                raise self.error(j, _describe(_M_SPEC_END))
        elif kind == "timer":
            t = T[j]
            if t[:1] in _DIGIT and t[-1] in _UNITS:
                positional.append(("duration", Located(t, self.span(j, j))))
                j += 1
            elif t == "until":
                until, j = self.value(j + 1, _M_VALUE)
                positional.append(("until", until))
                ends_with_value = True
            else:
                self.mark(j, _M_TIMER_END)
        config, j = self.config(j)
        if config is None:
            if ends_with_value:
                self.value_after_node(j, _describe(_M_SPEC_END))
            else:
                self.mark(j, _M_SPEC_END)
        return NodeSpec(kind, kind_span, positional, config), j

    # --- expressions (fastparse's rules on this stream) -----------------------------------

    def expression(self, i: int) -> tuple[Expr, int]:
        self.i = i
        e = self.expr()
        j = self.i
        self.mark(j, _M_EXPR_END)
        t = self.T[j]
        # Lark's state after an expression reads these as keywords or operators; none can
        # follow, and its parser fails on them inside the expression's rules.
        if t in _COMPARISONS:
            raise self.error(j, _E_AFTER_COMPARISON)
        if t == "else":
            raise self.error(j, _E_AFTER_OR_TEST)
        return e, j

    def peek(self) -> ExprToken:
        t = self.T[self.i]
        return (_expr_kind(t), t, self.S[self.i])

    def take(self) -> ExprToken:
        tok = self.peek()
        self.i += 1
        return tok

    def at(self, text: str) -> bool:
        i = self.i
        t = self.T[i]
        if t == text:
            return True
        if text == "-":
            # Expression states have "-" but no arrows: `a -[1]` is `a - [1]`.
            if t == "-[" or t == "->":
                self.tokens.split(i, 1)
                return True
        elif text == "]" and t == "]->" and self.T[i - 1] in ("[", ","):
            # Where a list may close, the state has "]" but not "]->"; after an element it
            # has "]->" too (merged in from edge guards), and `[a]->` fails at "]->".
            self.tokens.split(i, 1)
            return True
        return False

    def fail(self, expected: str) -> ExprSyntaxError:
        # fastparse says what it expected in its own words; say it in lark's.
        i = self.i
        mode = _EXPR_MODES.get(expected)
        if mode is not None:
            return self.unexpected(i, mode)
        if expected == _ATOM_PHRASE:
            mode = _M_EXPR if self.T[i - 1] in _OPERATORS else _M_EXPR_NOT
            if self.item_at == i:  # where a list or call item may start, it may also close
                mode = mode | {self.item_close}
            return self.unexpected(i, mode)
        # After an element: "]" of an index, ")" of parentheses, "else" of a conditional.
        return self.after_element(expected)

    def after_element(self, expected: str) -> DslSyntaxError:
        """A syntax error after a complete expression inside another one."""
        i = self.i
        t = self.T[i]
        if t in _COMPARISONS:  # lark fails on these in the expression's own rules
            return self.error(i, _E_AFTER_COMPARISON)
        if t == "else" and expected != '"else"':
            return self.error(i, _E_AFTER_OR_TEST)
        return self.context_error(i, _M_EXPR_END, expected, marked=False)

    def items(self, close: str) -> tuple[Expr, ...]:
        # As fastparse's, noting where an item may start, for messages. Lark's state after a
        # first item is the list's or the call's own; after a later one it is shared by both,
        # and fails there unless the token is the other closer, which takes it to its own.
        out: list[Expr] = []
        while not self.at(close):
            self.item_at = self.i
            self.item_close = close
            out.append(self.expr())
            if self.at(","):
                self.i += 1
            elif not self.at(close):
                own = len(out) == 1 or self.T[self.i] in (")", "]")
                raise self.after_element(_describe([",", close]) if own else _E_AFTER_LATER_ITEM)
        self.i += 1
        return tuple(out)

    def number_lit(self, text: str, pos: int) -> Expr:
        i = self.i - 1
        return Lit(self.num(text, i, i))

    def string_lit(self, text: str, pos: int) -> Expr:
        return Lit(self.string(self.i - 1))

    def dict(self) -> Expr:
        # As fastparse's, but a string key is decoded after its value (post-order).
        T = self.T
        pairs: list[tuple[str, Expr]] = []
        while not self.at("}"):
            k = self.i
            t = T[k]
            if not (_is_word(t) or (t[:1] == '"' and len(t) > 1)):
                raise self.unexpected(k, _M_KEY)
            self.i += 1
            self.expect(":")
            value = self.expr()
            key = t if _is_word(t) else self.key_string(k, k, self.i - 1)
            pairs.append((key, value))
            if self.at(","):
                self.i += 1
            elif not self.at("}"):
                raise self.after_element(_describe([",", "}"]))
        self.i += 1
        return DictExpr(tuple(pairs))


def parse_file(src: SourceFile) -> WorkflowSpec:
    """The located workflow of a DSL text.

    Raises DslSyntaxError if the text does not parse, or if a value in it is invalid (a bad
    string escape, a number out of range); RecursionError if it nests deeper than Python's
    recursion limit allows.
    """
    p = _Parser(src)
    wf = p.parse_file()
    if p.deferred is not None:
        _, _, message, span = p.deferred
        raise DslSyntaxError(message, 0, span)
    return wf


def syntax_diagnostic(err: DslSyntaxError) -> Diagnostic:
    """The `syntax` diagnostic for a parse error."""
    return Diagnostic.error(ec.SYNTAX, err.message, err.span)
