"""Node outputs as content-addressed JSON values.

A value's hash is the sha256 of its canonical JSON bytes, so equal outputs have equal hashes
whatever produced them, and a replay can say exactly which outputs diverged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from aobc.canonical import canonical_bytes, sha256_hex
from aobc.runtime.stores.base import CAS


class ValueError_(TypeError):
    """A node produced something that is not JSON (a set, a datetime, NaN...)."""


def check_json(value: Any, path: str = "output") -> None:
    """Raise ValueError_ unless `value` is plain JSON data."""
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        v, p = stack.pop()
        if v is None or isinstance(v, bool | int | str):
            continue
        if isinstance(v, float):
            if not math.isfinite(v):
                raise ValueError_(f"{p} is {v}, which JSON cannot carry")
            continue
        if isinstance(v, list | tuple):
            stack.extend((x, f"{p}[{i}]") for i, x in enumerate(v))
        elif isinstance(v, Mapping):
            for k, x in v.items():
                if not isinstance(k, str):
                    raise ValueError_(f"{p} has a key {k!r} that is not a string")
                stack.append((x, f"{p}.{k}"))
        else:
            raise ValueError_(f"{p} is a {type(v).__name__}, which is not JSON")


def encode_value(value: Any) -> bytes:
    try:
        return canonical_bytes(value)
    except (TypeError, ValueError) as err:
        check_json(value)  # names the offending part
        raise ValueError_(str(err)) from None


def value_hash(value: Any) -> str:
    return sha256_hex(encode_value(value))


SMALL = 256  # bytes: outputs up to this size have their digest remembered (`Values.put`)


class Values:
    """Reads and writes JSON values in a CAS, with a small in-memory cache of recent ones.

    Small values also have their digest remembered by their bytes: many runs of one workflow
    put the same small outputs, and a CAS never forgets an object (its objects are immutable
    and never deleted), so a value this instance has put is there already, and putting it
    again would only hash it and take the CAS's lock to learn that.
    """

    def __init__(self, cas: CAS, cache_size: int = 4096) -> None:
        self.cas = cas
        self._cache: dict[str, Any] = {}
        self._digests: dict[bytes, str] = {}
        self._size = cache_size

    def put(self, value: Any) -> str:
        data = encode_value(value)
        digest = self._store(data)
        self._remember(digest, value)
        return digest

    def put_json(self, value: Any) -> tuple[str, bytes]:
        """`put`, also giving the value's canonical JSON (what the CAS holds)."""
        data = encode_value(value)
        digest = self._store(data)
        self._remember(digest, value)
        return digest, data

    def _store(self, data: bytes) -> str:
        digest = self._digests.get(data)
        if digest is None:
            digest = self.cas.put(data)
            if len(data) <= SMALL:
                if len(self._digests) >= self._size:
                    del self._digests[next(iter(self._digests))]
                self._digests[data] = digest
        return digest

    def get(self, digest: str) -> Any:
        if digest in self._cache:
            return self._cache[digest]
        value = json.loads(self.cas.get(digest))
        self._remember(digest, value)
        return value

    def _remember(self, digest: str, value: Any) -> None:
        if len(self._cache) >= self._size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[digest] = value
