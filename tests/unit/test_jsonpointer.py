"""RFC 6901 pointers: parsing, escaping, formatting and resolution."""

from __future__ import annotations

from typing import Any

import pytest

from aobc.frontend.jsonpointer import (
    PointerLookupError,
    PointerSyntaxError,
    array_index,
    escape_token,
    format_pointer,
    parse_pointer,
    resolve,
    unescape_token,
)

# The example document of RFC 6901 section 5.
RFC_DOC: dict[str, Any] = {
    "foo": ["bar", "baz"],
    "": 0,
    "a/b": 1,
    "c%d": 2,
    "e^f": 3,
    "g|h": 4,
    "i\\j": 5,
    'k"l': 6,
    " ": 7,
    "m~n": 8,
}


@pytest.mark.parametrize(
    ("ptr", "tokens"),
    [
        ("", ()),
        ("/", ("",)),
        ("/foo", ("foo",)),
        ("/foo/0", ("foo", "0")),
        ("/a~1b", ("a/b",)),
        ("/m~0n", ("m~n",)),
        ("/~01", ("~1",)),  # ~01 is "~" then "1", never "/"
        ("/~10", ("/0",)),
        ("//", ("", "")),
        ("/a/", ("a", "")),
        ("/ ", (" ",)),
    ],
)
def test_parse_pointer(ptr: str, tokens: tuple[str, ...]) -> None:
    assert parse_pointer(ptr) == tokens
    assert format_pointer(tokens) == ptr


@pytest.mark.parametrize("ptr", ["foo", "#/foo", " /foo", "/~", "/a~2", "/~a", "/x/~"])
def test_parse_pointer_rejects(ptr: str) -> None:
    with pytest.raises(PointerSyntaxError) as info:
        parse_pointer(ptr)
    assert ptr in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize(
    ("token", "escaped"),
    [("a", "a"), ("a/b", "a~1b"), ("m~n", "m~0n"), ("~/", "~0~1"), ("/~", "~1~0"), ("", "")],
)
def test_escape_round_trip(token: str, escaped: str) -> None:
    assert escape_token(token) == escaped
    assert unescape_token(escaped) == token


def test_format_pointer_accepts_ints() -> None:
    assert format_pointer(["nodes", 3, "a/b"]) == "/nodes/3/a~1b"
    assert format_pointer([]) == ""


@pytest.mark.parametrize(
    ("token", "index"),
    [
        ("0", 0),
        ("7", 7),
        ("10", 10),
        ("00", None),
        ("01", None),
        ("-1", None),
        ("+1", None),
        ("-", None),
        ("1e0", None),
        ("", None),
        (" 1", None),
        ("1 ", None),
        ("\u0663", None),
    ],
)
def test_array_index(token: str, index: int | None) -> None:
    assert array_index(token) == index


@pytest.mark.parametrize(
    ("ptr", "value"),
    [
        ("", RFC_DOC),
        ("/foo", ["bar", "baz"]),
        ("/foo/0", "bar"),
        ("/", 0),
        ("/a~1b", 1),
        ("/c%d", 2),
        ("/e^f", 3),
        ("/g|h", 4),
        ("/i\\j", 5),
        ('/k"l', 6),
        ("/ ", 7),
        ("/m~0n", 8),
    ],
)
def test_resolve_rfc_examples(ptr: str, value: Any) -> None:
    assert resolve(RFC_DOC, parse_pointer(ptr)) == value


@pytest.mark.parametrize(
    ("ptr", "fragment"),
    [
        ("/nope", 'no member "nope"'),
        ("/foo/2", "has 2 elements"),
        ("/foo/-", '"-" is not an index'),
        ("/foo/01", '"01" is not an index'),
        ("/foo/0/x", "not an object or array"),
        ("/a~1b/x", "not an object or array"),
    ],
)
def test_resolve_failures(ptr: str, fragment: str) -> None:
    with pytest.raises(PointerLookupError) as info:
        resolve(RFC_DOC, parse_pointer(ptr))
    assert fragment in str(info.value)
    assert isinstance(info.value, LookupError)


def test_resolve_scalar_root() -> None:
    assert resolve(5, ()) == 5
    with pytest.raises(PointerLookupError):
        resolve(5, ("a",))
