"""`Values`: node outputs in the CAS, with the digests of small ones remembered."""

from __future__ import annotations

import hashlib

from aobc.canonical import canonical_bytes
from aobc.runtime.stores.memory import MemoryCAS
from aobc.runtime.values import SMALL, Values


class CountingCAS(MemoryCAS):
    def __init__(self) -> None:
        super().__init__()
        self.puts: list[bytes] = []

    def put(self, data: bytes) -> str:
        self.puts.append(data)
        return super().put(data)


def test_a_small_value_is_put_once_and_its_digest_is_the_content_hash() -> None:
    cas = CountingCAS()
    values = Values(cas)
    first = values.put({"o": 3})
    assert values.put({"o": 3}) == first
    assert values.put_json({"o": 3}) == (first, b'{"o":3}')
    assert cas.puts == [b'{"o":3}']
    assert first == hashlib.sha256(b'{"o":3}').hexdigest()
    assert cas.get(first) == b'{"o":3}'
    # An equal value with other bytes is another object: 1 and 1.0 are different JSON.
    assert values.put({"o": 3.0}) != first


def test_a_large_value_goes_to_the_cas_every_time() -> None:
    cas = CountingCAS()
    values = Values(cas)
    big = {"text": "x" * SMALL}
    assert len(canonical_bytes(big)) > SMALL
    assert values.put(big) == values.put(big)
    assert len(cas.puts) == 2


def test_the_remembered_digests_are_bounded() -> None:
    cas = CountingCAS()
    values = Values(cas, cache_size=4)
    for k in range(10):
        values.put(k)
    values.put(0)  # forgotten: put again
    values.put(9)  # remembered
    assert len(cas.puts) == 11
