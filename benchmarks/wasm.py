"""`python -m benchmarks.wasm`: WebAssembly pass plugins against their native twins.

- `prune-dead` and `cse`, native and as the packaged plugins, on 1,000- and 10,000-node
  workflows (a plugin's time includes projecting the workflow, the sandboxed call, and
  validating its patch as every patch is validated; the call alone is shown beside it);
- the fixed cost of one call: loading a module cold (compiled, or read from the disk cache)
  and calling a trivial plugin with the module cache warm;
- the cost of the JSON projection, and what projecting only the fields a pass reads saves.

Every figure is measured in this run; the machine is shared, so compare within the table.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from aobc.diagnostics import DiagnosticEngine
from aobc.ir import Edge, Effect, FrozenDict, FunctionNode, OutputDecl, Workflow
from aobc.passes.base import Pass, PassContext
from aobc.passes.cse import CsePass
from aobc.passes.prune_dead import PruneDeadPass
from aobc.wasm import Limits, load_plugin
from aobc.wasm.cache import ENV
from aobc.wasm.host import forget_plugins, runtime_cache
from aobc.wasm.output import encode_input
from aobc.wasm.projection import ALL_FIELDS, project
from aobc.wasm_passes import WasmCsePass, WasmPruneDeadPass, packaged
from benchmarks.workloads import workflow

Row = tuple[str, float, str]
NOOP = Path(__file__).resolve().parents[1] / "wasm_passes" / "fixtures" / "noop.wat"


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def duplicates(n: int, share: float = 0.01, seed: int = 7) -> Workflow:
    """`n` pure functions in layers, `share` of them copies of an earlier node (same function,
    arguments and predecessors): a workload where `cse` merges a fixed share of the nodes."""
    rng = random.Random(seed)
    nodes: list[FunctionNode] = []
    edges: list[Edge] = []
    preds: dict[str, list[str]] = {}
    for i in range(n):
        nid = f"n{i}"
        if i > 10 and rng.random() < share:
            src = nodes[rng.randrange(10, i)]
            nodes.append(FunctionNode(id=nid, effect=Effect.PURE, fn=src.fn, args=src.args))
            parents = preds[src.id]
        else:
            parents = (
                sorted({f"n{rng.randrange(max(0, i - 20), i)}" for _ in range(2)}) if i else []
            )
            args = FrozenDict({f"a{k}": f"{p}.value" for k, p in enumerate(parents)}) or None
            nodes.append(FunctionNode(id=nid, effect=Effect.PURE, fn=f"m:f{i}", args=args))
        preds[nid] = parents
        edges.extend(Edge(src=p, dst=nid) for p in parents)
    sinks = sorted(set(preds) - {p for ps in preds.values() for p in ps})
    outputs = tuple(OutputDecl(name=f"o{k}", expr=f"{s}.value") for k, s in enumerate(sinks))
    return Workflow(name="dups", nodes=tuple(nodes), edges=tuple(edges), outputs=outputs)


def _run(p: Pass, wf: Workflow) -> int:
    ctx = PassContext(DiagnosticEngine())
    p.run(wf, ctx)
    problems = [d.message for d in ctx.diagnostics.diagnostics]
    assert not problems, problems
    return len(ctx.rewriter.ops)


def _call_only(file: str, wf: Workflow, options: dict[str, object]) -> float:
    plugin = load_plugin(packaged(file))
    data = encode_input(options, project(wf, plugin.manifest.reads))
    return best_of(lambda: plugin.call(data, Limits(fuel=0, timeout_ms=600_000)), 1)


def pass_rows() -> list[Row]:
    out: list[Row] = []
    cases = [
        ("prune-dead", PruneDeadPass(), WasmPruneDeadPass(), "prune_dead.wasm", workflow),
        # The default fuel (2e10) does not cover cse's scan-per-merge at 10,000 nodes.
        ("cse", CsePass(), WasmCsePass(fuel=10**13, timeout_ms=600_000), "cse.wasm", duplicates),
    ]
    for name, native, plugin, file, make in cases:
        for n in (1_000, 10_000):
            wf = make(n)
            repeat = 3 if n <= 1_000 else 1
            ops = _run(native, wf)
            twins = "same" if _run(plugin, wf) == ops else "DIFFERENT"
            t_native = best_of(lambda native=native, wf=wf: _run(native, wf), repeat)
            t_wasm = best_of(lambda plugin=plugin, wf=wf: _run(plugin, wf), repeat)
            t_call = _call_only(file, wf, {})
            label = f"{name} {n:,} nodes"
            out.append((f"{label}, native", t_native, f"{ops} ops ({twins} op count in wasm)"))
            out.append(
                (
                    f"{label}, wasm",
                    t_wasm,
                    f"{t_wasm / t_native:.2f}x native; the sandboxed call alone "
                    f"{t_call * 1000:.1f} ms",
                )
            )
    return out


def fixed_cost_rows() -> list[Row]:
    out: list[Row] = []
    cse = packaged("cse.wasm")
    saved = os.environ.get(ENV)
    with tempfile.TemporaryDirectory(prefix="aobc-wasm-bench-") as tmp:
        os.environ[ENV] = tmp
        try:

            def cold_compile() -> None:
                forget_plugins()
                for f in Path(tmp).glob("*.cwasm"):
                    f.unlink()
                load_plugin(cse)
                assert runtime_cache().last_source == "compiled"

            def cold_disk() -> None:
                forget_plugins()
                load_plugin(cse)
                assert runtime_cache().last_source == "disk"

            t_compile = best_of(cold_compile, 3)
            t_disk = best_of(cold_disk, 5)
        finally:
            if saved is None:
                os.environ.pop(ENV, None)
            else:
                os.environ[ENV] = saved
    size = cse.stat().st_size
    out.append(("load cse.wasm cold, compiled", t_compile, f"{size:,}-byte module"))
    out.append(("load cse.wasm cold, disk cache", t_disk, f"{t_compile / t_disk:.0f}x faster"))
    noop = load_plugin(NOOP)
    data = encode_input({}, project(Workflow(name="w", nodes=(), edges=(), outputs=()), ()))
    t_call = best_of(lambda: noop.call(data, Limits()), 200)
    out.append(("one call, module cache warm", t_call, "fresh store + instance + run"))
    return out


def projection_rows() -> list[Row]:
    out: list[Row] = []
    wf = workflow(10_000)
    reads = {
        "every field": ALL_FIELDS,
        "cse's fields": load_plugin(packaged("cse.wasm")).manifest.reads,
        "prune-dead's fields": load_plugin(packaged("prune_dead.wasm")).manifest.reads,
        "ids only": (),
    }
    t_all = 0.0
    for label, fields in reads.items():
        t = best_of(lambda fields=fields: encode_input({}, project(wf, fields)), 3)
        size = len(encode_input({}, project(wf, fields)))
        t_all = t_all or t
        note = f"{size / 1e6:.1f} MB" + (f", saves {1 - t / t_all:.0%}" if t != t_all else "")
        out.append((f"project + encode 10,000 nodes, {label}", t, note))
    return out


def rows() -> list[Row]:
    return fixed_cost_rows() + projection_rows() + pass_rows()


def main() -> int:
    width = 52
    print(f"{'workload'.ljust(width)}  {'time':>11}  note")
    for group in (fixed_cost_rows, projection_rows, pass_rows):
        for name, seconds, note in group():
            print(f"{name.ljust(width)}  {seconds * 1000:9.2f} ms  {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
