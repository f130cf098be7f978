"""Schemathesis against the embedded backend's server; see `apischema.check_api`."""

from __future__ import annotations

import pytest
from apischema import CHECKS, check_api
from apiserver import Server
from schemathesis import GenerationMode


@pytest.mark.parametrize("mode", list(CHECKS), ids=lambda m: m.value)
def test_generated_requests_find_no_server_errors(server: Server, mode: GenerationMode) -> None:
    check_api(server, mode)
