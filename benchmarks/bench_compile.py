"""Compile phases, one benchmark each, with a fixed seed."""

from __future__ import annotations

import json

import pytest

from aobc.backend.lower import lower
from aobc.backend.serialize import to_document
from aobc.frontend import load_text, parse_source
from aobc.frontend.overlay import Overlay
from aobc.passes.pipeline import PRESETS, PassPipeline
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from aobc.source import SourceFile
from benchmarks.compile import Recompile
from benchmarks.workloads import dsl_text, json_text, workflow

SIZES = [1_000, 10_000]


@pytest.mark.parametrize("n", SIZES)
def test_parse_json(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(parse_source, SourceFile.of("b.json", json_text(n)))


@pytest.mark.parametrize("n", SIZES)
def test_parse_dsl(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(parse_source, SourceFile.of("b.aob", dsl_text(n)))


@pytest.mark.parametrize("n", SIZES)
def test_load_json(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(load_text, json_text(n), "b.json")


@pytest.mark.parametrize("n", SIZES)
def test_load_dsl(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(load_text, dsl_text(n), "b.aob")


@pytest.mark.parametrize("n", SIZES)
def test_verify(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(verify, workflow(n), DEFAULT_POLICY)


# -O2 takes seconds on 1,000 nodes (its fixpoint reruns every pass over the whole graph),
# so 10,000 would dominate the suite: the sizes here are smaller.
@pytest.mark.parametrize("n", [100, 1_000])
def test_optimize_o2(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    pipeline = PassPipeline.parse(PRESETS["O2"])
    wf = workflow(n)

    def optimize() -> None:
        result = pipeline.run(Overlay(wf))
        assert result.ok, result.diagnostics[0].message

    benchmark.pedantic(optimize, rounds=3 if n >= 1_000 else 10)


@pytest.mark.parametrize("n", SIZES)
def test_lower(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(lower, workflow(n))


@pytest.mark.parametrize("n", SIZES)
def test_serialize(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(lambda: json.dumps(to_document(workflow(n))))


def test_recompile_after_one_op_patch(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(Recompile(1_000))
