"""`python -m benchmarks`: run every workload once and print one table."""

from __future__ import annotations

import platform
import sys

from benchmarks import compile as compile_bench
from benchmarks import runtime as runtime_bench


def main() -> int:
    print(
        f"aobc benchmarks on {platform.processor() or platform.machine()}, Python {sys.version.split()[0]}"
    )
    print("times are the best of several runs, measured now; compare ratios within this table\n")
    rows = compile_bench.rows() + runtime_bench.rows()
    width = max(len(r[0]) for r in rows)
    print(f"{'workload'.ljust(width)}  {'time':>10}  note")
    for name, seconds, note in rows:
        print(f"{name.ljust(width)}  {seconds * 1000:8.2f} ms  {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
