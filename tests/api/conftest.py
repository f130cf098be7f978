"""One `aobc serve` per test module (tests/api/apiserver.py starts it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from apiserver import Server, start


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    d: Path = tmp_path_factory.mktemp("serve")
    s = start(d / "store", d / "tokens.toml", "--heartbeat", "0.2")
    try:
        yield s
    finally:
        s.stop()
