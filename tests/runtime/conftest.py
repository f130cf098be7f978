"""Fixtures for the runtime tests (tests/runtime is on sys.path, see pyproject)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import Harness

from aobc.runtime.stores.embedded import EmbeddedStores


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    stores = EmbeddedStores.open(tmp_path / "store")
    try:
        yield Harness(tmp_path / "store", stores)
    finally:
        stores.close()
