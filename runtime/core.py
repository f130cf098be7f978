"""The coordinator core in use: the compiled Cython `_interp` when it was built, else the
pure-Python reference `interp_py`. `AOBC_PUREPYTHON=1` forces the reference.

Both expose the same names with the same behaviour; `IMPLEMENTATION` says which one this
process uses (`aobc --version` prints it), so a silently failed build is visible.
"""

from __future__ import annotations

import os

from aobc.runtime.interp_py import (
    DONE,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    STATUS_NAMES,
    Routing,
    complete,
    drain,
    settled,
    skip,
    start,
)

IMPLEMENTATION = "python"

if not os.environ.get("AOBC_PUREPYTHON"):
    try:
        from aobc.runtime._interp import (  # type: ignore[import-not-found,no-redef]
            Routing,
            complete,
            drain,
            settled,
            skip,
            start,
        )

        IMPLEMENTATION = "cython"
    except ImportError:
        pass

__all__ = [
    "DONE",
    "FAILED",
    "IMPLEMENTATION",
    "PENDING",
    "READY",
    "RUNNING",
    "SKIPPED",
    "STATUS_NAMES",
    "Routing",
    "complete",
    "drain",
    "settled",
    "skip",
    "start",
]
