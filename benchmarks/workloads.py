"""Seeded inputs shared by the benchmark runner and the pytest-benchmark suites."""

from __future__ import annotations

import functools
import json
import random

from aobc.backend.serialize import to_document
from aobc.frontend.printer import to_dsl
from aobc.ir import Workflow
from aobc.testing.generate import random_workflow

SEED = 20261121


@functools.cache
def workflow(n: int) -> Workflow:
    """A seeded random workflow of `n` nodes with every node kind."""
    return random_workflow(random.Random(SEED + n), n)


@functools.cache
def json_text(n: int) -> str:
    return json.dumps(to_document(workflow(n)))


@functools.cache
def dsl_text(n: int) -> str:
    return to_dsl(workflow(n))
