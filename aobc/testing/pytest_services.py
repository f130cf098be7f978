"""Pytest fixtures for real servers (a plugin: `pytest_plugins` in tests/conftest.py).

`servers` (session) starts Kafka, PostgreSQL, S3 and Redis from aobc.testing.services the first
time a test asks for one, all four at once (S3 alone takes seconds), and stops them at the end
of the session. `kafka_url`, `postgres_url`, `s3_url` and `redis_url` give each one's URL, or
the outside server's named by `AOBC_TEST_KAFKA`, `AOBC_TEST_POSTGRES`, `AOBC_TEST_S3` and
`AOBC_TEST_REDIS`. Fault tests that stop or pause a server ask `servers.own(kind)` for one of
ours, whatever the environment says.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from aobc.testing.services import LAUNCHERS, Service, external, launch_all


class Servers:
    """The session's servers, started on first use."""

    def __init__(self) -> None:
        self._started: dict[str, Service] = {}
        self._lock = threading.Lock()

    def _start(self, kinds: list[str]) -> None:
        with self._lock:
            missing = [k for k in kinds if k not in self._started]
            if missing:
                self._started.update(launch_all(missing))

    def url(self, kind: str) -> str:
        """The URL of the outside server of this kind if configured, else of ours."""
        outside = external(kind)
        if outside is not None:
            return outside
        # Start every kind not configured outside at once: a test wanting one usually wants
        # the others too, and starting them in parallel saves the S3 start-up time.
        self._start([k for k in LAUNCHERS if external(k) is None])
        return self._started[kind].url

    def own(self, kind: str) -> Service:
        """A server of ours (started if needed), for tests that stop, pause or kill it."""
        self._start([kind])
        return self._started[kind]

    def close(self) -> None:
        with self._lock:
            started, self._started = self._started, {}
        for service in started.values():
            service.close()


@pytest.fixture(scope="session")
def servers() -> Iterator[Servers]:
    registry = Servers()
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture(scope="session")
def kafka_url(servers: Servers) -> str:
    return servers.url("kafka")


@pytest.fixture(scope="session")
def postgres_url(servers: Servers) -> str:
    return servers.url("postgres")


@pytest.fixture(scope="session")
def s3_url(servers: Servers) -> str:
    return servers.url("s3")


@pytest.fixture(scope="session")
def redis_url(servers: Servers) -> str:
    return servers.url("redis")
