"""JSON: `aobc compile --emit json`, the canonical workflow document, pretty-printed.

Key order is `to_document`'s (id, type, effect first, as an author writes them), not sorted:
this output is for reading. Hashes are taken over `canonical_bytes`, which sorts, so the two
never disagree about content.
"""

from __future__ import annotations

import json
from typing import ClassVar

from aobc.backend.emit.base import Emitter
from aobc.backend.serialize import to_document
from aobc.ir import Workflow

__all__ = ["JsonEmitter"]


class JsonEmitter(Emitter):
    """The whole document at once: `to_document` already knows every node kind."""

    name: ClassVar[str] = "json"

    def emit(self, wf: Workflow) -> str:
        return json.dumps(to_document(wf), indent=2, ensure_ascii=False) + "\n"
