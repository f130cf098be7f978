"""The cyclic garbage collector, paused while the compiler works."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No cyclic garbage collection inside (as mypy does while it builds).

    Compiling allocates many objects that live for a while (parse trees, documents, the
    graphs of every rewrite), and each burst of allocations triggers collections that walk
    the whole heap again: on a 10,000-node workflow the parser spent a third of its time in
    the collector and cse more than half. What the compiler drops is almost all freed by
    reference counting; the cycles among it wait for the first collection after. Nested
    pauses end with the outermost. (Another thread ending its own pause may turn the
    collector back on early, which costs only speed.)"""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
