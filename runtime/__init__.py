"""The aobc runtime (aobc.runtime): interpreter, executors and stores.

`IMPLEMENTATION` names the coordinator core in use: "cython" or "python".
"""

from __future__ import annotations

from aobc.runtime.core import IMPLEMENTATION

__all__ = ["IMPLEMENTATION"]
