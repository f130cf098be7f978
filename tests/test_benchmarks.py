"""The benchmark code runs: the table (aobc's systems, short budgets, no peers) and every
phase suite once. Timings are never asserted here (the benchmarks print them); this only
keeps `./dev bench` from breaking unnoticed when an API it drives changes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("AOBC_PUREPYTHON", None)
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )


def test_the_benchmark_table_is_printed() -> None:
    done = _run("-m", "benchmarks", "--quick", "--no-peers")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for workload in ("chain 1,000", "fan-out 1->1,000->1", "layered 50x100", "tiny 3-node"):
        assert workload in out
    for system in ("plain loop (lower bound)", "aobc fast path, unfused", "pure-Python core"):
        assert system in out
    assert "compile -O1 1,000 nodes from JSON" in out
    assert "targets (issue 8)" in out


def test_every_phase_suite_runs_once() -> None:
    done = _run(
        "-m", "pytest", "--benchmark-disable", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
        "benchmarks/bench_runtime.py", "benchmarks/bench_compile.py",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert " passed" in done.stdout and "failed" not in done.stdout
