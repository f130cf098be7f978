"""Where a fast-path run spends the time above the plain loop: `python -m benchmarks.profile`.

Profiles repeated runs of one workload on the embedded engine (fast path, in-memory stores)
with cProfile, after a warm-up run (so the plan, the fused code and the imports are
cached, as in the table), and prints the functions by their own time, plus the share spent
in the workload's own function, `step`: the rest is the engine's.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys

from benchmarks import graphs
from benchmarks.runtime import Aobc

WORKLOADS = {"chain": graphs.chain, "fan": graphs.fan, "layered": graphs.layered}


def profile(workload: str, *, fuse: bool, runs: int, top: int) -> None:
    graph = WORKLOADS[workload]()
    system = Aobc("aobc", mode="fast", fuse=fuse)
    batch = system.prepare(graph)
    batch(1)  # the warm-up: plan, fused code, imports
    prof = cProfile.Profile()
    prof.enable()
    times, _ = batch(runs)
    prof.disable()
    system.close()
    stats = pstats.Stats(prof)
    # pstats keys are (file, line, function); values start (calls, ncalls, tottime, cumtime).
    entries = stats.stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in entries.values())
    own = ("step", "<built-in method builtins.sum>", "<method 'values' of 'dict' objects>")
    in_step = sum(v[2] for k, v in entries.items() if k[2] in own)
    print(f"{graph.name}, fast path, {'fused' if fuse else 'unfused'}: {runs} runs")
    print(
        f"  profiled time {total * 1e3 / runs:.2f} ms per run ({min(times) * 1e3:.2f} ms unprofiled best)"
    )
    print(
        f"  in step() and its sum(values()): {in_step / total:.0%}; the engine: {1 - in_step / total:.0%}"
    )
    stats.sort_stats("tottime").print_stats(top)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile", description=__doc__)
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("--unfused", action="store_true", help="run with fusion turned off")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    profile(args.workload, fuse=not args.unfused, runs=args.runs, top=args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
