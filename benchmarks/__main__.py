"""`python -m benchmarks` (or `./dev bench`): every workload on aobc and its peers, one table.

Every figure is measured in this run, and every ratio is to the plain loop measured in this
run: the machine is shared, so compare ratios, not absolute times across runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from dataclasses import asdict
from importlib import metadata

from benchmarks import suite
from benchmarks.report import Table, print_compile, print_targets

PEER_DISTRIBUTIONS = ("langgraph", "dask", "distributed", "sf-hamilton")


def _log(message: str) -> None:
    print(f"  .. {message}", file=sys.stderr, flush=True)


def _versions() -> str:
    found = []
    for dist in PEER_DISTRIBUTIONS:
        try:
            found.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            found.append(f"{dist} (not installed)")
    return ", ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short budgets, a smoke test")
    parser.add_argument("--no-peers", action="store_true", help="aobc and the bounds only")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile rows")
    parser.add_argument("--worker", choices=["pure"], help=argparse.SUPPRESS)
    parser.add_argument("--settings", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker == "pure":  # the pure-Python core's subprocess: rows as JSON on stdout
        settings = suite.Settings(**json.loads(args.settings))
        print(json.dumps([asdict(r) for r in suite.pure_worker(settings, _log)]))
        return 0

    settings = suite.Settings(peers=not args.no_peers)
    if args.quick:
        settings = suite.Settings(
            budget=0.2, max_runs=5, tiny_count=300, tiny_budget=1.0, peers=not args.no_peers
        )
    from aobc.runtime import IMPLEMENTATION

    print(f"aobc benchmarks on {platform.machine()}, Python {platform.python_version()}")
    print(f"coordinator core: {IMPLEMENTATION}; peers: {_versions()}")
    print("per run: the fastest of `runs` (tiny: the mean); x loop: per run / the plain loop's")
    rows = suite.run_all(settings, _log)
    compile_rows = []
    if not args.no_compile:
        from benchmarks import compile as compile_bench

        _log("compile times")
        compile_rows = compile_bench.rows(quick=args.quick)
    table = Table(rows)
    table.print(print)
    if compile_rows:
        print_compile(compile_rows, print)
    print_targets(table, print)
    return 0


if __name__ == "__main__":
    sys.exit(main())
