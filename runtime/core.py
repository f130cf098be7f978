"""The coordinator core in use: the compiled Cython `_interp` when it was built, else the
pure-Python reference `interp_py`. `AOBC_PUREPYTHON=1` forces the reference.

Both expose the same names with the same behaviour; `IMPLEMENTATION` says which one this
process uses (`aobc --version` prints it), so a silently failed build is visible.

Callers import this module and look the functions up on it at each call (`core.complete`),
so `use` can switch implementations in one process, which is how the tests run a workflow
on both. For type checkers the names are the reference's: `_interp.pyi` declares the same
API, and the compiled module is only ever loaded by name, in `use`.
"""

from __future__ import annotations

import importlib
import os

from aobc.runtime.interp_py import (
    DONE,
    FAILED,
    PENDING,
    READY,
    RUNNING,
    SKIPPED,
    STATUS_NAMES,
    Region,
    Routing,
    complete,
    complete_many,
    complete_region,
    copy,
    drain,
    region_ready,
    settled,
    skip,
    start,
)

IMPLEMENTATION = "python"

_MODULES = {"python": "aobc.runtime.interp_py", "cython": "aobc.runtime._interp"}
# What differs between the implementations; the status codes are the same numbers in both.
_SWITCHED = (
    "Region",
    "Routing",
    "complete",
    "complete_many",
    "complete_region",
    "copy",
    "drain",
    "region_ready",
    "settled",
    "skip",
    "start",
)


def use(implementation: str) -> None:
    """Make `implementation` ("python" or "cython") the core of this process.

    Raises ImportError when the compiled core is asked for but was not built. Routing state
    made by one implementation must not be handed to the other, so switch between runs only.
    `aobc.runtime.IMPLEMENTATION` keeps the value chosen at import; this module's follows.
    """
    module = importlib.import_module(_MODULES[implementation])
    # Rebinding by name keeps a single declared type per name (the reference's) for mypy.
    globals().update({name: getattr(module, name) for name in _SWITCHED})
    globals()["IMPLEMENTATION"] = implementation


if not os.environ.get("AOBC_PUREPYTHON"):
    try:
        use("cython")
    except ImportError:
        pass  # not built (or built for another version of execir): the reference it is

__all__ = [
    "DONE",
    "FAILED",
    "IMPLEMENTATION",
    "PENDING",
    "READY",
    "RUNNING",
    "SKIPPED",
    "STATUS_NAMES",
    "Region",
    "Routing",
    "complete",
    "complete_many",
    "complete_region",
    "copy",
    "drain",
    "region_ready",
    "settled",
    "skip",
    "start",
    "use",
]
