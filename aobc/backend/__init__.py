"""The backend: a workflow to the runtime's ExecIR, the `.aobir` file, and text renderings.

- `lower(wf, origins)`: a verified `Workflow` to an `ExecIR` (`aobc.backend.lower`);
- `encode`/`decode`/`read`/`write`/`ir_hash`: the checked `.aobir` file (`aobc.backend.aobir`);
- `ir_to_text`: the readable, golden-testable text of an ExecIR (`aobc.backend.text`);
- `get_emitter(name).emit(wf)`: JSON, DOT or Mermaid for a workflow (`aobc.backend.emit`);
- `to_document`, `workflow_hash`: the canonical document (`aobc.backend.serialize`).

The names are imported on first use: the frontends import `aobc.backend.serialize`, and that
must not drag in msgspec and the emitters, nor create import cycles with the runtime, which
itself reads `.aobir` files.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from aobc.backend.aobir import decode, encode, ir_hash, read, validate, write
    from aobc.backend.emit import Emitter, get_emitter
    from aobc.backend.lower import lower
    from aobc.backend.serialize import node_document, to_document, workflow_hash
    from aobc.backend.text import ir_to_text

__all__ = [
    "Emitter",
    "decode",
    "encode",
    "get_emitter",
    "ir_hash",
    "ir_to_text",
    "lower",
    "node_document",
    "read",
    "to_document",
    "validate",
    "workflow_hash",
    "write",
]

_HOMES: Final = {
    "decode": "aobc.backend.aobir",
    "encode": "aobc.backend.aobir",
    "ir_hash": "aobc.backend.aobir",
    "read": "aobc.backend.aobir",
    "validate": "aobc.backend.aobir",
    "write": "aobc.backend.aobir",
    "Emitter": "aobc.backend.emit",
    "get_emitter": "aobc.backend.emit",
    "lower": "aobc.backend.lower",
    "node_document": "aobc.backend.serialize",
    "to_document": "aobc.backend.serialize",
    "workflow_hash": "aobc.backend.serialize",
    "ir_to_text": "aobc.backend.text",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
