"""Canonical JSON: the byte form that is hashed, diffed and patched.

Keys sorted, no insignificant whitespace, UTF-8, no NaN or infinities. Two equal documents
always give the same bytes, so the same base and patches always give the same hashes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Final

_ENCODER: Final = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, sort_keys=True, separators=(",", ":")
)


def canonical_bytes(value: Any) -> bytes:
    """The canonical encoding of a JSON value."""
    return _ENCODER.encode(value).encode("utf-8")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_hash(value: Any) -> str:
    """`sha256:<hex>` of a JSON value's canonical bytes."""
    return "sha256:" + sha256_hex(canonical_bytes(value))


def pretty(value: Any) -> str:
    """Stable, readable JSON for files people look at."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, sort_keys=True, indent=2) + "\n"
