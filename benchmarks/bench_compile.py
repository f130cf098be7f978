"""Compile phases, one benchmark each, with a fixed seed."""

from __future__ import annotations

import json

import pytest

from aobc.backend.lower import lower
from aobc.backend.serialize import to_document
from aobc.frontend import load_text
from aobc.passes.verify import verify
from aobc.policy import DEFAULT_POLICY
from benchmarks.compile import Recompile
from benchmarks.workloads import dsl_text, json_text, workflow

SIZES = [1_000, 10_000]


@pytest.mark.parametrize("n", SIZES)
def test_load_json(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(load_text, json_text(n), "b.json")


@pytest.mark.parametrize("n", SIZES)
def test_load_dsl(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(load_text, dsl_text(n), "b.aob")


@pytest.mark.parametrize("n", SIZES)
def test_verify(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(verify, workflow(n), DEFAULT_POLICY)


@pytest.mark.parametrize("n", SIZES)
def test_lower(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(lower, workflow(n))


@pytest.mark.parametrize("n", SIZES)
def test_serialize(benchmark, n: int) -> None:  # type: ignore[no-untyped-def]
    benchmark(lambda: json.dumps(to_document(workflow(n))))


def test_recompile_after_one_op_patch(benchmark) -> None:  # type: ignore[no-untyped-def]
    benchmark(Recompile(1_000))
