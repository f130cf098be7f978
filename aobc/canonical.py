"""Canonical JSON: the byte form that is hashed, diffed and patched.

Keys sorted, no insignificant whitespace, UTF-8, no NaN or infinities. Two equal documents
always give the same bytes, so the same base and patches always give the same hashes.
"""

from __future__ import annotations

import hashlib
import json
from json.encoder import encode_basestring
from typing import Any, Final

import msgspec

_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)
# The C encoder `_ENCODER.encode` builds anew on every call (most of the cost of encoding a
# small value), made once: the same function with the same settings, so the same bytes and
# errors. Without the circular-reference markers (a dict it would share between calls and
# threads): a cycle recurses until RecursionError, reported as the ValueError `encode` raises.
_make = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE: Final = (
    _make(None, _ENCODER.default, encode_basestring, None, ":", ",", True, False, False)
    if _make is not None
    else None
)


# A flat dict of strings, integers, booleans and nulls (most event data, a run's outputs of
# scalars) goes to msgspec's sorted encoder: for exactly these types it writes the same bytes
# (UTF-8 with only `"`, `\\` and control characters escaped, keys in code-point order,
# integers of any size), ~7x faster on small values, where the json module's per-call set-up
# dominates. Floats are not among them (msgspec writes 1e16 where json writes 1e+16), nor are
# subclasses; anything else takes the json path.
_FLAT: Final = msgspec.json.Encoder(order="sorted").encode
_SCALARS: Final = frozenset({str, int, bool, type(None)})


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of a JSON value."""
    if type(value) is dict:
        for k, v in value.items():
            if type(k) is not str or type(v) not in _SCALARS:
                break
        else:
            try:
                return _FLAT(value)
            except UnicodeEncodeError:
                pass  # a lone surrogate: the json path raises it, with its own message
    if _C_ENCODE is None or isinstance(value, str):
        return _ENCODER.encode(value).encode("utf-8")
    try:
        return "".join(_C_ENCODE(value, 0)).encode("utf-8")
    except RecursionError:
        raise ValueError("Circular reference detected (or nesting too deep)") from None


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """`sha256:<hex>` of a JSON value's canonical bytes."""
    return "sha256:" + sha256_hex(canonical_bytes(value))


def pretty(value: Any) -> str:
    """Stable, readable JSON for files people look at."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True, indent=2) + "\n"


class DocumentHasher:
    """Hashes of workflow documents that share most of their nodes, computed incrementally.

    A patched version shares every node and edge dict it did not touch with the previous
    version (copy-on-write), so their canonical encodings are cached by identity and the
    document's bytes are assembled around them: exactly `canonical_bytes(doc)`, at the cost
    of the changed parts plus one sha256.
    """

    def __init__(self) -> None:
        self._parts: dict[int, tuple[Any, bytes]] = {}

    def _item(self, value: Any) -> bytes:
        hit = self._parts.get(id(value))
        if hit is not None and hit[0] is value:
            return hit[1]
        data = canonical_bytes(value)
        if len(self._parts) > 500_000:
            self._parts.clear()
        self._parts[id(value)] = (value, data)
        return data

    def canonical_bytes(self, doc: dict[str, Any]) -> bytes:
        out = [b"{"]
        for n, key in enumerate(sorted(doc)):
            if n:
                out.append(b",")
            out.append(canonical_bytes(key) + b":")
            value = doc[key]
            if key in ("nodes", "edges") and isinstance(value, list):
                out.append(b"[" + b",".join(self._item(v) for v in value) + b"]")
            else:
                out.append(canonical_bytes(value))
        out.append(b"}")
        return b"".join(out)

    def content_hash(self, doc: dict[str, Any]) -> str:
        return "sha256:" + sha256_hex(self.canonical_bytes(doc))
