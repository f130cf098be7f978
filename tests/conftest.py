"""Shared test configuration: the hypothesis CI profile, `--update-goldens`, paths."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# Real servers for the integration tests: the `servers`, `kafka_url`... fixtures.
pytest_plugins = ["aobc.testing.pytest_services"]

# CI runs derandomized with no deadline: a test that passes once passes every time, and a
# slow shared machine never turns into a flaky failure.
settings.register_profile(
    "ci",
    derandomize=True,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("dev", deadline=None, max_examples=50)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))


def pytest_configure(config: pytest.Config) -> None:
    # WebAssembly pass plugins are compiled once and cached on disk (aobc.wasm.cache); the
    # tests keep that cache in a temporary directory, never in the user's ~/.cache.
    if "AOBC_WASM_CACHE" not in os.environ:
        os.environ["AOBC_WASM_CACHE"] = tempfile.mkdtemp(prefix="aobc-test-wasm-cache-")
        config.add_cleanup(lambda: shutil.rmtree(os.environ.pop("AOBC_WASM_CACHE"), True))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-goldens", action="store_true", help="rewrite golden files from actual output"
    )


@pytest.fixture
def update_goldens(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-goldens"))


def shared_dir() -> Path:
    """`../shared` beside the project, or $AOBC_SHARED_DIR."""
    env = os.environ.get("AOBC_SHARED_DIR")
    return Path(env) if env else ROOT.parent / "shared"
