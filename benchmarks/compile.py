"""Compile-time workloads: front end to IR, and the incremental path after a live patch."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

from aobc.backend.aobir import encode
from aobc.backend.lower import LowerCache, lower
from aobc.driver import compile_source
from aobc.frontend.jsonpatch import PatchOp
from aobc.frontend.overlay import Overlay
from aobc.frontend.patchfile import Patch
from aobc.passes.pipeline import PRESETS
from aobc.source import SourceFile
from benchmarks.workloads import dsl_text, json_text, workflow


def compile_text(text: str, name: str, level: str = "O0") -> bytes:
    """What `aobc compile -O0` does (or at `level`): parse, schema-check, verify through an
    overlay, run the preset's passes, lower; the bytes of its .aobir."""
    comp = compile_source(SourceFile.of(name, text), PRESETS[level])
    assert comp.ok, [d.message for d in comp.diagnostics if d.is_error]
    return encode(lower(comp.workflow))


def compile_optimized(text: str, name: str) -> bytes:
    """`aobc compile` at its default, -O1 (verify, prune-dead, cse, prune-dead, verify)."""
    return compile_text(text, name, "O1")


class Recompile:
    """Apply a one-op patch to a live overlay and recompile, as a running coordinator does."""

    def __init__(self, n: int) -> None:
        self.overlay = Overlay(workflow(n))
        self.cache = LowerCache()
        self.target = n // 2
        self.i = 0
        self()  # warm the caches, as a long-running coordinator's are

    def __call__(self) -> bytes:
        self.i += 1
        op = PatchOp("add", f"/nodes/{self.target}/timeout", f"{self.i % 3600 + 1}s")
        v = self.overlay.apply(Patch(ops=(op,), base=self.overlay.head.hash))
        return encode(
            lower(v.workflow, document=v.document, workflow_hash=v.hash, cache=self.cache)
        )


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of `repeat` runs, in seconds (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def rows(*, quick: bool = False) -> list[tuple[str, float, str]]:
    out = []
    sizes = ((1_000, 1),) if quick else ((1_000, 7), (10_000, 3))
    for n, repeat in sizes:
        js, dsl = json_text(n), dsl_text(n)
        t_json = best_of(functools.partial(compile_text, js, "bench.json"), repeat)
        t_dsl = best_of(functools.partial(compile_text, dsl, "bench.aob"), repeat)
        t_opt = best_of(functools.partial(compile_optimized, js, "bench.json"), repeat)
        out.append((f"compile {n:,} nodes from JSON", t_json, f"{t_json / n * 1e6:.1f} us/node"))
        out.append((f"compile {n:,} nodes from DSL", t_dsl, f"{t_dsl / n * 1e6:.1f} us/node"))
        out.append((f"compile -O1 {n:,} nodes from JSON", t_opt, f"{t_opt / n * 1e6:.1f} us/node"))
    rec = Recompile(1_000)
    t_rec = best_of(rec, 3 if quick else 30)
    t_full = best_of(lambda: compile_text(json_text(1_000), "bench.json"), 1 if quick else 7)
    out.append(
        (
            "one-op patch + recompile, 1,000 nodes",
            t_rec,
            f"{t_full / t_rec:.1f}x faster than a full compile",
        )
    )
    return out
