"""`canonical_bytes` reuses one C encoder instead of `json.JSONEncoder.encode` building one per
call, and hands flat dicts of scalars to msgspec: the bytes (hashed everywhere: IR, CAS,
patches) and the errors must be exactly those of the documented settings."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aobc.canonical import canonical_bytes

JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=40,
)


def reference(value: Any) -> bytes:
    return json.dumps(
        value, ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")


@given(JSON)
def test_the_bytes_are_the_documented_encoding(value: Any) -> None:
    assert canonical_bytes(value) == reference(value)


SCALAR = st.none() | st.booleans() | st.integers() | st.text()


@given(st.dictionaries(st.text(), SCALAR, max_size=8))
def test_flat_dicts_of_scalars_take_the_fast_encoder_to_the_same_bytes(value: Any) -> None:
    assert canonical_bytes(value) == reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70, "neg": -(2**64), "t": True, "n": None},
        {"\U0001f600": 1, "\uffff": 2, "\u00e9": 3, "e": 4, "": 5},
        {"s": '\x00\x1f\x7f\u2028\u2029"\\/<>&\U0001f600'},
        {"f": 1e16},  # a float: not the fast path (msgspec would write 1e16)
    ],
)
def test_the_fast_encoder_s_edges(value: Any) -> None:
    assert canonical_bytes(value) == reference(value)


def test_a_lone_surrogate_fails_as_on_the_json_path() -> None:
    with pytest.raises(UnicodeEncodeError) as ours:
        canonical_bytes({"a": "x\ud800"})
    with pytest.raises(UnicodeEncodeError) as theirs:
        reference({"a": "x\ud800"})
    assert str(ours.value) == str(theirs.value)


def test_what_json_accepts_beyond_json_is_encoded_alike() -> None:
    value = [{2: (1, 2.5e-7), 1: [1e16, -0.0, 2**70]}, {"\u2028\x00": "é\x1f", "a": None}]
    assert canonical_bytes(value) == reference(value)


@pytest.mark.parametrize("bad", [float("nan"), [float("inf")], {"a": object()}, {"k": {1, 2}}])
def test_the_errors_are_the_documented_ones(bad: Any) -> None:
    with pytest.raises((ValueError, TypeError)) as ours:
        canonical_bytes(bad)
    with pytest.raises((ValueError, TypeError)) as theirs:
        reference(bad)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_a_cycle_is_a_value_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(ValueError, match="Circular"):
        canonical_bytes(cycle)
